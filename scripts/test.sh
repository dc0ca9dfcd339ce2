#!/usr/bin/env bash
# Runs every test of imei-lockd on a fresh machine: installs what the tests need, builds once
# and runs unit, integration and doc tests. Everything is built in the release profile, the one
# scripts/run.sh uses: RocksDB (C++, ~10 minutes on 2 cores) is compiled once in target/release
# for both README commands, whichever runs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test

export CARGO_TERM_COLOR=never
# Integration tests start the real binaries; build them and the tests in one go.
cargo build --release --all-targets --locked
cargo test --release --all-targets --locked
cargo test --release --doc --locked
