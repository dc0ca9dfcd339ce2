#!/usr/bin/env bash
# RADIUS side by side, one run, same machine, same load generator (imei-lock-load), server
# pinned to one CPU and the load generator to another (taskset):
#   (1) echo ceiling: `imei-lock-load echo-radius` (a valid Access-Accept for every request),
#   (2) FreeRADIUS 3.2 (Debian `freeradius`) with the same IMEI lock in memory
#       (bench/freeradius/radiusd.conf.in: rlm_files IMSI -> IMEI, Message-Authenticator required),
#   (3) imei-lockd (release) on RocksDB, the same SIMs locked and bound.
# Prints req/s at peak (closed loop), server CPU seconds per 100k requests (/proc/PID/stat),
# p50/p99 at 50 % of each server's peak (open loop), RcvbufErrors (/proc/net/snmp) and the
# ratios; writes bench-results/radius.{json,svg,md}.
#
# Usage: scripts/bench-radius.sh [--smoke] [--seconds S] [--sims N] [--window W] [--sockets K]
#                                [--freeradius-threads T]
#   --smoke   a few seconds on the dev build (CI), results in bench-results/smoke/
# Environment: BIN_DIR (binaries to use; default: build target/release), OUT (results dir).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
exec python3 bench/bench.py radius "$@"
