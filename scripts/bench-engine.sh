#!/usr/bin/env bash
# Engine decisions/s on one core with 10k and 1M SIMs stored (release build).
# Usage: scripts/bench-engine.sh [--sims 10000,1000000] [--seconds 5]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo bench --locked --bench engine --no-run
# The decision loop is one thread (the figure is decisions/s single-threaded); the store's
# last-seen flusher runs on its own background thread, as in the daemon.
exec cargo bench --locked --bench engine -- "$@"
