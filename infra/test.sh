#!/usr/bin/env bash
# Runs every check and test from a fresh clone: formatting, lints, the template checks
# (cfn-lint, checkov), unit and handler tests, the black-box tests of the local binary, and the
# AWS adapters and Lambda binaries against a local AWS emulator that this script starts and stops,
# and the PostgreSQL and MySQL sources against a private PostgreSQL cluster and MariaDB server it
# starts and stops (infra/postgres.sh, infra/mariadb.sh). It installs what it needs (Python venvs
# under .venv/, Chromium from the distribution for the HTML report's browser test, PostgreSQL and
# MariaDB when missing) on the first run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The Python tools' venvs: under .venv/ unless DATAREQUEST_VENVS names a folder kept between
# clones (as .ci/run does), so a fresh clone does not install them again.
export DATAREQUEST_VENVS="${DATAREQUEST_VENVS:-$root/.venv}"
venvs=$DATAREQUEST_VENVS

# Nothing here may reach AWS: dummy credentials, a region, and no instance-metadata probe.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

# Where the time goes: each stage starts with `== name` and ends with `-- name: N s`, and a
# table of them all comes before the tests' count (which stays the closing line), or at the
# end of a run that fails.
stage_names=() stage_seconds=() stage_name='' stage_start=$SECONDS
stage() {
  stage_end
  stage_name=$1 stage_start=$SECONDS
  echo "== $1"
}
stage_end() {
  if [[ -z $stage_name ]]; then return 0; fi
  local seconds=$((SECONDS - stage_start))
  stage_names+=("$stage_name") stage_seconds+=("$seconds")
  echo "-- $stage_name: $seconds s"
  stage_name=''
}
stage_table() {
  stage_end
  echo "== time by stage"
  local i
  for i in "${!stage_names[@]}"; do printf '%6d s  %s\n' "${stage_seconds[i]}" "${stage_names[i]}"; done
  printf '%6d s  total\n' "$SECONDS"
}
on_exit() {
  local status=$?
  if ((status != 0)); then stage_table; fi
}
trap on_exit EXIT

stage "cargo fmt --check"
cargo fmt --all --check

stage "cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

stage "AWS emulator"
./infra/emulator.sh stop
trap 'on_exit; ./infra/emulator.sh stop' EXIT
./infra/emulator.sh start > /dev/null

stage "PostgreSQL (a private cluster on loopback for the source tests; installed when missing)"
./infra/postgres.sh stop
trap 'on_exit; ./infra/emulator.sh stop; ./infra/postgres.sh stop' EXIT
postgres_env=$(./infra/postgres.sh start)
while IFS= read -r line; do export "$line"; done <<< "$postgres_env"

stage "MariaDB (a private server on loopback for the MySQL source tests; installed when missing)"
./infra/mariadb.sh stop
trap 'on_exit; ./infra/emulator.sh stop; ./infra/postgres.sh stop; ./infra/mariadb.sh stop' EXIT
mariadb_env=$(./infra/mariadb.sh start)
while IFS= read -r line; do export "$line"; done <<< "$mariadb_env"

stage "cfn-lint template.yaml"
"$venvs/emulator/bin/cfn-lint" template.yaml

stage "checkov template.yaml"
if ! "$venvs/checkov/bin/checkov" --version > /dev/null 2>&1; then
  python3 -m venv "$venvs/checkov"
  "$venvs/checkov/bin/pip" install --quiet --disable-pip-version-check 'checkov>=3,<4'
fi
# --skip-download: no calls to the vendor's platform; every finding is fixed or suppressed
# with its reason next to the resource in template.yaml.
BC_SKIP_MAPPING=TRUE "$venvs/checkov/bin/checkov" -f template.yaml --framework cloudformation --compact --quiet --skip-download

stage "cargo build (the binaries the black-box tests start)"
cargo build --workspace --bins --all-features --locked

stage "schemathesis against the local server"
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
./infra/fuzz.sh "$target/debug/datarequest"

stage "datarequest sources check (the sample mapping on the sample shop)"
DATAREQUEST_SOURCES=examples/postgres/sources.toml "$target/debug/datarequest" sources check
DATAREQUEST_SOURCES=examples/mysql/sources.toml "$target/debug/datarequest" sources check

stage "chromium (renders the HTML report in the black-box tests)"
if ! command -v chromium > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium > /dev/null || { apt-get update -qq && apt-get install -y -qq chromium > /dev/null; }
fi
chromium --version

stage "cargo test"
log=$(mktemp)
cargo test --workspace --all-features --locked 2>&1 | tee "$log"
stage_table
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
