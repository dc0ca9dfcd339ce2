#!/usr/bin/env bash
# Store scale: imports 10k, 1M and 10M SIMs through the bulk path (POST /v1/sims:import, CSV
# files of --chunk rows, every SIM locked) into imei-lockd (release) on RocksDB, and reports
# SIMs/s, disk bytes per SIM (data directory after a restart has flushed the WAL into SST
# files and compaction has had --settle seconds), RSS, and decision p50/p99 (RADIUS, open loop
# at --rate over --probe bound SIMs spread evenly over the whole set, SIM cache cold), with the
# p99 relative to the smallest size; writes bench-results/scale.{json,svg,md}.
#
# Usage: scripts/bench-scale.sh [--smoke] [--sizes 10000,1000000,10000000] [--chunk 1000000]
#                               [--probe 10000] [--rate 20000] [--seconds S] [--tmp DIR]
#   --smoke   small sizes for a few seconds on the dev build (CI)
# 10M SIMs need about 2 GB of disk in --tmp (default: the system temp directory) and, on a
# 2-core machine, several minutes.
# Environment: BIN_DIR (binaries to use; default: build target/release), OUT (results dir).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
exec python3 bench/bench.py scale "$@"
