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
name=PostgreSQL
stop_signal=INT
# shellcheck source=infra/private-server.sh
. "$root/infra/private-server.sh"

bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ] && command -v pg_config > /dev/null; then
    dir=$(pg_config --bindir)
  fi
  [ -n "$dir" ] && [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

start_server() {
  local bin password reader
  bin=$(bindir) || true
  if [ -z "$bin" ]; then
    install_package postgresql "the PostgreSQL server (with initdb and the citext extension)"
    bin=$(bindir) || { echo "PostgreSQL was installed but its server programs are not found" >&2; exit 1; }
  fi
  new_server postgres
  password=$(secret)
  reader=$(secret)
  as_owner sh -c "umask 077; printf '%s\n' '$password' > '$dir/pwfile'"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 > "$state/initdb.log" 2>&1 || { cat "$state/initdb.log" >&2; exit 1; }
  free_port
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
}

main "$@"
