#!/usr/bin/env bash
# A private MariaDB server for the MySQL source tests and for trying the sample shop database:
#   infra/mariadb.sh start   install MariaDB from the distribution when missing, bootstrap a data
#                            directory in a temporary directory (run by an unprivileged user), start
#                            the server on a free loopback port, load examples/mysql/schema.sql into
#                            the database `shop`, and print the environment (KEY=value lines) that
#                            reaches it
#   infra/mariadb.sh env     print that environment again
#   infra/mariadb.sh stop    stop it (by its process id) and delete the data directory
#
# Two accounts: `root` (all privileges, password in the environment, for tests that change data)
# and `datarequest` (may read the shop's tables, nothing else: what Datarequest itself uses).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.mariadb"

found() {
  command -v mariadbd > /dev/null || [ -x /usr/sbin/mariadbd ]
}

server() {
  command -v mariadbd || echo /usr/sbin/mariadbd
}

install() {
  if ! command -v apt-get > /dev/null; then
    echo "MariaDB is missing and there is no apt-get to install it: install the MariaDB server (mariadbd, mariadb-install-db)" >&2
    exit 1
  fi
  echo "installing MariaDB from the distribution's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package would start a server of its own: policy-rc.d keeps it from doing so.
  local policy=/usr/sbin/policy-rc.d added=''
  if [ ! -e "$policy" ] && [ -w /usr/sbin ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added=1
  fi
  apt-get install -y -qq mariadb-server > /dev/null || { apt-get update -qq && apt-get install -y -qq mariadb-server > /dev/null; }
  if [ -n "$added" ]; then rm -f "$policy"; fi
}

running() {
  [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null
}

# Runs a command as the data directory's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid="$(cat "$state/owner")" --regid="$(id -g "$(cat "$state/owner")")" --clear-groups -- "$@"
  else
    "$@"
  fi
}

case "${1:-}" in
  start)
    if running; then
      cat "$state/env"
      exit 0
    fi
    found || install
    found || { echo "MariaDB was installed but its server is not found" >&2; exit 1; }
    rm -rf "$state"
    mkdir -p "$state"
    dir=$(mktemp -d /tmp/datarequest-mariadb.XXXXXX)
    echo "$dir" > "$state/dir"
    owner=$(id -un)
    if [ "$(id -u)" = 0 ]; then
      owner=nobody
      chown "$owner" "$dir"
    fi
    echo "$owner" > "$state/owner"
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    reader=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    as_owner mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
      --skip-test-db > "$state/install.log" 2>&1 || { cat "$state/install.log" >&2; exit 1; }
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "$port" > "$state/port"
    as_owner "$(server)" --no-defaults --datadir="$dir/data" --port="$port" --bind-address=127.0.0.1 \
      --socket="$dir/mariadb.sock" --pid-file="$dir/mariadb.pid" --skip-name-resolve --max-connections=300 \
      --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --character-set-server=utf8mb4 \
      --collation-server=utf8mb4_unicode_ci > "$dir/mariadb.log" 2>&1 &
    for _ in $(seq 1 200); do
      [ -S "$dir/mariadb.sock" ] && [ -f "$dir/mariadb.pid" ] && break
      sleep 0.1
    done
    head -n 1 "$dir/mariadb.pid" > "$state/pid" 2>/dev/null || true
    running || { cat "$dir/mariadb.log" >&2; echo "MariaDB did not start" >&2; exit 1; }
    sql() { mariadb --no-defaults -S "$dir/mariadb.sock" -u root "$@"; }
    sql -e "CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY '$password';
            GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
            CREATE USER 'datarequest'@'127.0.0.1' IDENTIFIED BY '$reader';
            CREATE DATABASE shop;"
    sql shop < "$root/examples/mysql/schema.sql"
    sql -e "GRANT SELECT, SHOW VIEW ON shop.* TO 'datarequest'@'127.0.0.1'"
    {
      echo "SHOP_MYSQL_URL=mysql://datarequest:$reader@127.0.0.1:$port/shop"
      echo "DATAREQUEST_TEST_MARIADB_URL=mysql://root:$password@127.0.0.1:$port/mysql"
      echo "DATAREQUEST_TEST_MARIADB_READER=datarequest:$reader"
    } > "$state/env"
    cat "$state/env"
    ;;
  env)
    running || { echo "MariaDB is not running: infra/mariadb.sh start" >&2; exit 1; }
    cat "$state/env"
    ;;
  stop)
    if running; then
      pid=$(cat "$state/pid")
      kill -TERM "$pid"
      for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ -f "$state/dir" ]; then
      rm -rf "$(cat "$state/dir")"
    fi
    rm -rf "$state"
    ;;
  *)
    echo "usage: $0 start|env|stop" >&2
    exit 2
    ;;
esac
