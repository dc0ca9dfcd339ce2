#!/usr/bin/env bash
# Starts imei-lockd with the shipped configuration on the embedded RocksDB store (./data).
# Extra arguments go to imei-lockd. Builds a release binary first (RocksDB is compiled from C++:
# about 10 minutes the first time; scripts/test.sh builds in the same profile, so whichever
# of the two runs first compiles it for both).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --locked --bin imei-lockd -- --config conf/imei-lockd.toml "$@"
