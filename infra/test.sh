#!/usr/bin/env bash
# Runs every check and test from a fresh clone: formatting, lints, unit and handler tests, and
# the black-box tests that start the real binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo build (the binaries the black-box tests start)"
cargo build --workspace --bins --locked

echo "== cargo test"
cargo test --workspace --locked
