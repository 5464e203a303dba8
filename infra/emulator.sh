#!/usr/bin/env bash
# The local AWS emulator (moto server) for tests and for trying the functions:
#   infra/emulator.sh start            install moto if missing, start it on a free loopback port, create
#                                      every data resource of template.yaml, print the functions' environment
#   infra/emulator.sh env              print that environment again
#   infra/emulator.sh provision SUFFIX create another, uniquely named set of resources; print its environment
#   infra/emulator.sh stop             stop it
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${DATAREQUEST_VENVS:-$root/.venv}/emulator"
state="$root/.emulator"
python="$venv/bin/python"

ensure_venv() {
  if ! "$python" - 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
def v(name): return tuple(int(p) for p in version(name).split(".")[:3])
# moto before 5.2.5 breaks multipart upload completion. cryptography verifies Copernica-signed
# deliveries in the black-box tests (tests/verify_copernica.py).
sys.exit(0 if v("moto") >= (5, 2, 5) and v("cfn-lint") >= (1, 0, 0) and v("cryptography") >= (42, 0, 0) else 1)
PY
  then
    echo "installing moto server, cfn-lint and cryptography into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.2.5' 'cfn-lint>=1.20' 'cryptography>=42' >&2
  fi
}

name="the emulator"
# shellcheck source=infra/private-server.sh
. "$root/infra/private-server.sh"

provision() {
  "$python" "$root/infra/provision.py" --endpoint "http://127.0.0.1:$(cat "$state/port")" --suffix "$1"
}

case "${1:-}" in
  start)
    ensure_venv
    if running; then
      cat "$state/env"
      exit 0
    fi
    mkdir -p "$state"
    port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "$port" > "$state/port"
    AWS_EC2_METADATA_DISABLED=true nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$state/moto.log" 2>&1 &
    echo $! > "$state/pid"
    for _ in $(seq 1 150); do
      if "$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
        break
      fi
      running || { cat "$state/moto.log" >&2; echo "moto server did not start" >&2; exit 1; }
      sleep 0.2
    done
    # Keys would otherwise "restore" when read, which looks up their bucket and breaks
    # /moto-api/data.json (where tests read the mail SES took) once any bucket or key is gone.
    "$python" -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$port/moto-api/state-manager/set-transition', data=b'{\"model_name\": \"s3::keyrestore\", \"transition\": {\"progression\": \"manual\", \"times\": 1000000000}}', method='POST'))"
    provision local > "$state/env"
    cat "$state/env"
    ;;
  env)
    running || { echo "the emulator is not running: infra/emulator.sh start" >&2; exit 1; }
    cat "$state/env"
    ;;
  provision)
    running || { echo "the emulator is not running: infra/emulator.sh start" >&2; exit 1; }
    provision "${2:?a suffix}"
    ;;
  stop)
    stop_server
    ;;
  *)
    echo "usage: $0 start|env|provision SUFFIX|stop" >&2
    exit 2
    ;;
esac
