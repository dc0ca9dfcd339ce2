#!/usr/bin/env bash
# The fault harness of integration-tests/cluster_faults.rs in its long form: three etcd members
# and three imei-lockd nodes (release), each in a network namespace of its own, the mixed
# workload (RADIUS, Gx through python-diameter, provisioning flaps and resets over the API)
# through every node, and the six faults in turn (etcd leader kill -9, member SIGSTOP, node
# SIGSTOP, node cut off from etcd, minority member partitioned, compaction while a node is
# paused), each held 4-8 s, for N minutes. Then: the checker's one-line verdict, every node's
# cache compared with etcd, and the availability table per fault and node. Needs root (network
# namespaces) and the test packages (scripts/setup.sh --test).
#
# Usage: scripts/bench-cluster-faults.sh [--minutes N]   (default 20)
# Writes the output to bench-results/cluster-faults.log and the table to
# bench-results/cluster-faults.md; the history stays in /tmp/imei-lockd-faults-<pid>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=20
while (($#)); do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    *) echo "usage: $0 [--minutes N]" >&2; exit 2 ;;
  esac
done

scripts/setup.sh --test
mkdir -p bench-results
log=bench-results/cluster-faults.log
echo "cluster faults: ${minutes} minutes, started $(date -u +%FT%TZ) on $(nproc) CPUs" | tee "$log"
rc=0
FAULT_MINUTES="$minutes" cargo test --release --locked --test cluster_faults -- \
  --ignored faults_for_minutes --nocapture --test-threads 1 2>&1 | tee -a "$log" || rc=$?
{
  echo "# Cluster under faults: ${minutes}-minute run ($(date -u +%F))"
  echo
  grep -E '^checker: ' "$log" | head -1 || true
  echo
  grep -E '^\|' "$log" || true
} > bench-results/cluster-faults.md
exit "$rc"
