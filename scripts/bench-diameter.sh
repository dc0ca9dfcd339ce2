#!/usr/bin/env bash
# Diameter Gx CCR-I side by side over 1 and 8 TCP connections, then S13 ECR (ME-Identity-Check)
# over the widest connection count on the same daemon, one run, same load generator,
# server and load generator pinned to separate CPUs (taskset):
#   (1) echo ceiling: `imei-lock-load echo-diameter` (CEA 2001, CCA 2001 for every CCR),
#   (2) imei-lockd (release) on RocksDB, the same SIMs locked and bound.
# Prints CCR/s at peak (closed loop), server CPU seconds per 100k, p50/p99 at 50 % of each
# peak (open loop) and the ratio to the ceiling; writes bench-results/diameter.{json,svg,md}.
#
# Usage: scripts/bench-diameter.sh [--smoke] [--seconds S] [--sims N] [--window W]
#                                  [--connections 1,8]
#   --smoke   a few seconds on the dev build (CI), results in bench-results/smoke/
# Environment: BIN_DIR (binaries to use; default: build target/release), OUT (results dir).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
exec python3 bench/bench.py diameter "$@"
