#!/usr/bin/env bash
# Runs every test of imei-lockd on a fresh machine: installs what the tests need, builds once
# (one cargo profile for unit and integration tests), runs unit, integration and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test

export CARGO_TERM_COLOR=never
# Integration tests start the real binaries; build them and the tests in one go.
cargo build --all-targets --locked
cargo test --all-targets --locked
cargo test --doc --locked
