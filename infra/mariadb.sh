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
name=MariaDB
stop_signal=TERM
# shellcheck source=infra/private-server.sh
. "$root/infra/private-server.sh"

found() {
  command -v mariadbd > /dev/null || [ -x /usr/sbin/mariadbd ]
}

server() {
  command -v mariadbd || echo /usr/sbin/mariadbd
}

start_server() {
  local password reader
  found || install_package mariadb-server "the MariaDB server (mariadbd, mariadb-install-db)"
  found || { echo "MariaDB was installed but its server is not found" >&2; exit 1; }
  new_server mariadb
  password=$(secret)
  reader=$(secret)
  as_owner mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
    --skip-test-db > "$state/install.log" 2>&1 || { cat "$state/install.log" >&2; exit 1; }
  free_port
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
}

main "$@"
