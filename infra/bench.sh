#!/usr/bin/env bash
# The benchmark command: builds the release binaries, installs wrk if missing (Debian's package),
# starts the local AWS emulator, runs `bench` (which prints every figure with its ratio to its
# limit), and stops the emulator. Needs about 3 GB of free disk for the generated subjects.
# Arguments go to `bench`: `infra/bench.sh ingest` runs only the POST /ingest figures, `load` only
# the server load test, `webhook` only the web delivery figure; none runs everything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true

command -v wrk > /dev/null || apt-get install -y -q wrk > /dev/null
cargo build --release --workspace --bins --all-features --locked
trap './infra/emulator.sh stop' EXIT
./infra/emulator.sh start > /dev/null
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target/release/bench" "$@"
