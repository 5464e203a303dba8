#!/usr/bin/env bash
# A private PostgreSQL cluster for the source tests and for trying the sample shop database:
#   infra/postgres.sh start   install PostgreSQL from the distribution when missing, create a cluster in
#                             a temporary directory (run by an unprivileged user), start it on a free
#                             loopback port, load examples/postgres/schema.sql into the database `shop`,
#                             and print the environment (KEY=value lines) that reaches it
#   infra/postgres.sh env     print that environment again
#   infra/postgres.sh stop    stop it (by its process id) and delete the cluster
#
# Two roles: `postgres` (superuser, password in the environment, for tests that change data) and
# `datarequest` (may read the shop's tables, nothing else: what Datarequest itself uses).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.postgres"

bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ] && command -v pg_config > /dev/null; then
    dir=$(pg_config --bindir)
  fi
  [ -n "$dir" ] && [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

install() {
  if ! command -v apt-get > /dev/null; then
    echo "PostgreSQL is missing and there is no apt-get to install it: install the PostgreSQL server (with initdb and the citext extension)" >&2
    exit 1
  fi
  echo "installing PostgreSQL from the distribution's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql > /dev/null || { apt-get update -qq && apt-get install -y -qq postgresql > /dev/null; }
}

running() {
  [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null
}

# Runs a command as the cluster's owner.
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
    bin=$(bindir) || true
    if [ -z "$bin" ]; then
      install
      bin=$(bindir) || { echo "PostgreSQL was installed but its server programs are not found" >&2; exit 1; }
    fi
    rm -rf "$state"
    mkdir -p "$state"
    dir=$(mktemp -d /tmp/datarequest-postgres.XXXXXX)
    echo "$dir" > "$state/dir"
    # The server refuses to run as root: a cluster owned by an unprivileged user.
    owner=$(id -un)
    if [ "$(id -u)" = 0 ]; then
      owner=nobody
      chown "$owner" "$dir"
    fi
    echo "$owner" > "$state/owner"
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    reader=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    as_owner sh -c "umask 077; printf '%s\n' '$password' > '$dir/pwfile'"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 > "$state/initdb.log" 2>&1 || { cat "$state/initdb.log" >&2; exit 1; }
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "$port" > "$state/port"
    as_owner "$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$dir" \
      -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
      > "$dir/postgres.log" 2>&1 &
    for _ in $(seq 1 100); do
      [ -f "$dir/data/postmaster.pid" ] && "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
      sleep 0.1
    done
    head -n 1 "$dir/data/postmaster.pid" > "$state/pid" 2>/dev/null || true
    running || { cat "$dir/postgres.log" >&2; echo "PostgreSQL did not start" >&2; exit 1; }
    psql() { PGPASSWORD="$password" "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }
    psql -d postgres -c "CREATE ROLE datarequest LOGIN PASSWORD '$reader'" -c "CREATE DATABASE shop"
    psql -d shop -f "$root/examples/postgres/schema.sql" > /dev/null
    psql -d shop -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO datarequest"
    {
      echo "SHOP_DATABASE_URL=postgres://datarequest:$reader@127.0.0.1:$port/shop"
      echo "DATAREQUEST_TEST_POSTGRES_URL=postgres://postgres:$password@127.0.0.1:$port/postgres"
      echo "DATAREQUEST_TEST_POSTGRES_READER=datarequest:$reader"
    } > "$state/env"
    cat "$state/env"
    ;;
  env)
    running || { echo "PostgreSQL is not running: infra/postgres.sh start" >&2; exit 1; }
    cat "$state/env"
    ;;
  stop)
    if running; then
      pid=$(cat "$state/pid")
      kill -INT "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
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
