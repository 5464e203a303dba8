# What infra/postgres.sh and infra/mariadb.sh share, sourced by both: a private database server
# in a temporary directory, run by an unprivileged user on a free loopback port, and stopped by
# its process id (infra/emulator.sh takes `running` and `stop_server` from here too). A script sets `name` (for messages), `state` (the folder of its bookkeeping)
# and `stop_signal`, defines `start_server` (which writes the environment to "$state/env"),
# and ends with `main "$@"`.

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

# Installs a distribution package, without letting it start a server of its own; `what` says
# what to install by hand where there is no apt-get.
install_package() {
  local package=$1 what=$2
  if ! command -v apt-get > /dev/null; then
    echo "$name is missing and there is no apt-get to install it: install $what" >&2
    exit 1
  fi
  echo "installing $name from the distribution's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  local policy=/usr/sbin/policy-rc.d added=''
  if [ ! -e "$policy" ] && [ -w /usr/sbin ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added=1
  fi
  local status=0
  apt-get install -y -qq "$package" > /dev/null \
    || { apt-get update -qq && apt-get install -y -qq "$package" > /dev/null; } || status=$?
  # Removed whatever the install did, or later installs would start no service either.
  if [ -n "$added" ]; then rm -f "$policy"; fi
  return "$status"
}

# A random secret, in hex.
secret() {
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# Sets `dir` to a new temporary data directory (owned by an unprivileged user when run as
# root: the servers refuse to run as root) and starts the bookkeeping in "$state".
new_server() {
  rm -rf "$state"
  mkdir -p "$state"
  dir=$(mktemp -d "/tmp/datarequest-$1.XXXXXX")
  echo "$dir" > "$state/dir"
  local owner
  owner=$(id -un)
  if [ "$(id -u)" = 0 ]; then
    owner=nobody
    chown "$owner" "$dir"
  fi
  echo "$owner" > "$state/owner"
}

# Sets `port` to a free loopback port, chosen just before the server starts.
free_port() {
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "$port" > "$state/port"
}

# Stops the server by its process id (with `stop_signal`, waiting up to 20 s) and deletes its
# data directory and bookkeeping.
stop_server() {
  if running; then
    local pid
    pid=$(cat "$state/pid")
    kill "-${stop_signal:-TERM}" "$pid"
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -f "$state/dir" ]; then
    rm -rf "$(cat "$state/dir")"
  fi
  rm -rf "$state"
}

main() {
  case "${1:-}" in
    start)
      if ! running; then
        start_server
      fi
      cat "$state/env"
      ;;
    env)
      running || { echo "$name is not running: $0 start" >&2; exit 1; }
      cat "$state/env"
      ;;
    stop)
      stop_server
      ;;
    *)
      echo "usage: $0 start|env|stop" >&2
      exit 2
      ;;
  esac
}
