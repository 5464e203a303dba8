#!/usr/bin/env bash
# Fuzzes the local server with schemathesis against its own OpenAPI document (/openapi.json):
# coverage, fuzzing and stateful phases (following the document's links), with the checks
# not_a_server_error, status_code_conformance and response_schema_conformance, in at most
# FUZZ_SECONDS (default 90). Server and fuzzer run in a network namespace of their own with only
# loopback, so no generated web address can be reached.
#   infra/fuzz.sh PATH/TO/datarequest
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
binary=${1:?the datarequest binary}
venv="${DATAREQUEST_VENVS:-$root/.venv}/fuzz"

if [ "${2:-}" != "--inside" ]; then
  if ! "$venv/bin/schemathesis" --version > /dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
  fi
  exec unshare --map-root-user --net "$0" "$binary" --inside
fi

ip link set lo up
dir=$(mktemp -d)
"$binary" serve --demo --listen 127.0.0.1:0 --data-dir "$dir/data" > "$dir/out" 2> "$dir/server.log" &
server=$!
trap 'kill "$server" 2> /dev/null; wait "$server" 2> /dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 150); do
  grep -q '^Datarequest listening on ' "$dir/out" && break
  sleep 0.2
done
url=$(sed -n 's/^Datarequest listening on //p' "$dir/out")
token=$(sed -n 's/^TOKEN=//p' "$dir/out")
[ -n "$url" ] && [ -n "$token" ] || { cat "$dir/server.log" >&2; echo "the server did not start" >&2; exit 1; }

SCHEMATHESIS_HOOKS="$root/infra/schemathesis_hooks.py" "$venv/bin/schemathesis" run "$url/openapi.json" \
  --checks not_a_server_error,status_code_conformance,response_schema_conformance \
  --header "Authorization: Bearer $token" \
  --max-time "${FUZZ_SECONDS:-90}" \
  --seed "${FUZZ_SEED:-20261128}" \
  --no-color
