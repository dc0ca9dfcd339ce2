#!/usr/bin/env bash
# Cluster mode on this machine: three etcd members (Debian's etcd-server, started here on
# loopback ports in a temporary directory, removed on exit) and two imei-lockd nodes (release)
# on them, plus an embedded-mode daemon for comparison. Figures:
#   a. RADIUS answers per node CPU-second, etcd mode vs embedded mode, the same closed-loop load
#      (imei-lock-load) on bound SIMs, the daemon pinned to one CPU (target >= 80 %);
#   b. PUT imei-management -> processed -> the other node answers per the new value, p50/p99
#      (target p99 <= 50 ms), and stale first answers (must be 0);
#   c. first binds per second through etcd (fresh locked SIMs, half through each node);
#   d. bulk import (POST /v1/sims:import) into etcd, SIMs/s, per max_txn_ops (target >= 50 000/s);
#   e. (full run) 1M SIMs in etcd: database size and RSS per member, a node's cache rebuild time.
# With each figure: the CPU of the etcd members, the nodes and the rest of the machine, and the
# members' WAL fsyncs (what limits it). Prints a table; writes bench-results/cluster.{json,md}
# (cluster-quick.{json,md} with --quick).
#
# Usage: scripts/bench-cluster.sh [--quick] [--phases b,a,c,d,e] [--txn-ops 128,1024]
#                                 [--import-sims N] [--file-rows N] [--seconds S] [--rounds R]
#                                 [--steady-sims N] [--bind-sims N] [--vis-rounds N] [--tmp DIR]
#   --quick   smaller sets (20k SIMs for a, 100k imported), no figure e (about 4 minutes)
#   full run: 50k SIMs for a, 1M imported for d and e (about 20 minutes on 2 cores, a few GB
#   of disk in --tmp)
#   --name N  results in bench-results/N.{json,md}
# Environment: BIN_DIR (binaries to use; default: build target/release), OUT (results dir),
# GOGC (passed to the etcd members, Go's GC target: what etcd's CPU per write depends on most
# after the writes themselves; recorded in the results).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
exec python3 bench/cluster.py "$@"
