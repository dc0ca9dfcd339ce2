#!/usr/bin/env bash
# Cluster import speed: an embedded imei-lockd data directory of --sims locked SIMs, every one
# bound over RADIUS (so each SIM also has its imei_bound event), moved by `imei-lockctl cluster
# import` into three etcd members (Debian's etcd-server, started here on loopback ports in a
# temporary directory). For each value M of --max-txn-ops: three fresh members started with
# `--max-txn-ops M` (etcd's default is 128), `cluster.etcd.max_txn_ops = M`, one import; prints
# the import's summary and SIMs/s (records of every kind are written in that time), the CPU
# seconds of the etcd members and of the importer (and the SIMs/s the members' CPU allows on
# this machine's cores when nothing else runs), and writes bench-results/cluster-import.json.
#
# Usage: scripts/bench-cluster-import.sh [--sims 100000] [--max-txn-ops 128,1024,8192]
#                                        [--in-flight 16] [--no-build] [--tmp DIR]
# Environment: BIN_DIR (binaries to use; default: build target/release), OUT (results dir).
set -euo pipefail
cd "$(dirname "$0")/.."

sims=100000
txn_ops=128,1024,8192
in_flight=16
build=1
tmp_base="${TMPDIR:-/tmp}"
while (($#)); do
  case "$1" in
    --sims) sims="$2"; shift 2 ;;
    --max-txn-ops) txn_ops="$2"; shift 2 ;;
    --in-flight) in_flight="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --tmp) tmp_base="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in etcd etcdctl curl python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/setup.sh --test installs it)" >&2; exit 2; }
done
if [[ -z "${BIN_DIR:-}" ]]; then
  BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release"
  if ((build)); then
    cargo build --release --bin imei-lockd --bin imei-lockctl --bin imei-lock-load
  fi
fi
OUT="${OUT:-bench-results}"
mkdir -p "$OUT"

tmp="$(mktemp -d "$tmp_base/bench-cluster-import.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# N distinct free loopback ports (TCP and UDP), held until all are chosen.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
held, ports = [], []
while len(ports) < int(sys.argv[1]):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        continue
    held += [t, u]; ports.append(p)
print(" ".join(map(str, ports)))
EOF
}

# CPU seconds (user + system) the processes $@ have used.
etcd_cpu() {
  local ticks=0 p t
  for p in "$@"; do
    t=$(awk '{ print $14 + $15 }' "/proc/$p/stat")
    ticks=$((ticks + t))
  done
  python3 -c "print($ticks / $(getconf CLK_TCK))"
}

# 1. The embedded daemon, provisioned and used.
read -r api_port ra rc dia met < <(free_ports 5)
token=bench-token
daemon_conf() { # $1: data directory, $2: extra TOML
  cat <<EOF
[node]
data_dir = "$1"
[log]
level = "warn"
[radius]
auth_listen = "127.0.0.1:$ra"
acct_listen = "127.0.0.1:$rc"
[[radius.clients]]
name = "local"
address = "127.0.0.1/32"
secret = "testing123"
[diameter]
listen = ["tcp://127.0.0.1:$dia"]
[api]
listen = "127.0.0.1:$api_port"
token = "$token"
[metrics]
listen = "127.0.0.1:$met"
$2
EOF
}
daemon_conf "$tmp/data" "" >"$tmp/embedded.toml"
"$BIN_DIR/imei-lockd" --config "$tmp/embedded.toml" >"$tmp/daemon.log" 2>&1 &
daemon=$!
pids+=("$daemon")
until curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null; do
  kill -0 "$daemon" 2>/dev/null || { echo "imei-lockd exited:" >&2; cat "$tmp/daemon.log" >&2; exit 1; }
  sleep 0.1
done
api() { curl -sSf -H "Authorization: Bearer $token" "$@"; }
echo "embedded: importing $sims locked SIMs over the API"
awk -v n="$sims" 'BEGIN { print "imsi,msisdn,profile,imei_management";
  for (i = 0; i < n; i++) printf "00101%010d,,,lock\n", i }' >"$tmp/sims.csv"
id=$(api -X POST --data-binary "@$tmp/sims.csv" -H 'Content-Type: text/csv' \
  "http://127.0.0.1:$api_port/v1/sims:import" | python3 -c 'import json,sys; print(json.load(sys.stdin)["request_id"])')
for _ in $(seq 20); do
  status=$(api "http://127.0.0.1:$api_port/v1/requests/$id?wait=30" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [[ "$status" == pending ]] || break
done
[[ "$status" == processed ]] || { echo "CSV import request $id: $status" >&2; exit 1; }
echo "embedded: binding every SIM over RADIUS"
"$BIN_DIR/imei-lock-load" radius --target "127.0.0.1:$ra" --sims "$sims" --count "$sims" \
  --duration 300 --json >"$tmp/bind.json"
accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["codes"].get("accept", 0))' "$tmp/bind.json")
[[ "$accepted" == "$sims" ]] || { echo "only $accepted of $sims sessions accepted" >&2; cat "$tmp/bind.json" >&2; exit 1; }
kill -TERM "$daemon"
wait "$daemon" || { echo "the embedded daemon did not stop cleanly" >&2; exit 1; }
echo "embedded: $sims SIMs bound, daemon stopped; data directory $(du -sh "$tmp/data" | cut -f1)"

# 2. For each --max-txn-ops: three etcd members, one import.
results=()
IFS=, read -ra ops_list <<<"$txn_ops"
for ops in "${ops_list[@]}"; do
  cluster=()
  endpoints=()
  members=()
  read -ra ports < <(free_ports 6)
  for i in 0 1 2; do
    cp=${ports[$((2 * i))]}; pp=${ports[$((2 * i + 1))]}
    members+=("m$i:$cp:$pp")
    cluster+=("m$i=http://127.0.0.1:$pp")
    endpoints+=("http://127.0.0.1:$cp")
  done
  initial=$(IFS=,; echo "${cluster[*]}")
  etcd_pids=()
  for m in "${members[@]}"; do
    IFS=: read -r name cp pp <<<"$m"
    env -u ETCDCTL_ENDPOINTS etcd --name "$name" --data-dir "$tmp/etcd-$ops/$name" \
      --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
      --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "bench-$ops" \
      --max-txn-ops "$ops" --logger zap --log-outputs stderr >"$tmp/etcd-$name-$ops.log" 2>&1 &
    etcd_pids+=($!)
    pids+=($!)
  done
  eps=$(IFS=,; echo "${endpoints[*]}")
  for _ in $(seq 200); do
    ETCDCTL_API=3 etcdctl --endpoints="$eps" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
  done
  quoted=$(printf '"%s", ' "${endpoints[@]}")
  daemon_conf "$tmp/cache" "[cluster]
backend = \"etcd\"
node_name = \"bench-0\"
[cluster.etcd]
endpoints = [${quoted%, }]
prefix = \"/bench\"
max_txn_ops = $ops
request_timeout_ms = 10000" >"$tmp/cluster-$ops.toml"
  echo "etcd (3 members, --max-txn-ops $ops): importing"
  etcd_cpu_before=$(etcd_cpu "${etcd_pids[@]}")
  /usr/bin/time -f "%U %S" -o "$tmp/time-$ops" "$BIN_DIR/imei-lockctl" cluster import \
    --from "$tmp/data" --config "$tmp/cluster-$ops.toml" --in-flight "$in_flight" --json \
    >"$tmp/import-$ops.json"
  etcd_cpu_after=$(etcd_cpu "${etcd_pids[@]}")
  db=$(ETCDCTL_API=3 etcdctl --endpoints="${endpoints[0]}" endpoint status -w json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])')
  line=$(python3 - "$tmp/import-$ops.json" "$db" "$etcd_cpu_before" "$etcd_cpu_after" \
    "$(cat "$tmp/time-$ops")" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
s["etcd_db_bytes"] = int(sys.argv[2])
s["etcd_cpu_s"] = float(sys.argv[4]) - float(sys.argv[3])
s["importer_cpu_s"] = sum(map(float, sys.argv[5].split()))
# What the members' CPU allows on this machine's cores with nothing else running.
s["sims_per_s_cpu_bound"] = s["records"]["sims"] / (s["etcd_cpu_s"] / int(sys.argv[6]))
s["load_average_after"] = float(sys.argv[7])
print(json.dumps(s))
EOF
)
  results+=("$line")
  python3 -c 'import json,sys; s = json.loads(sys.argv[1]); r = s["records"]
print("  %d SIMs, %d events, %d billing rows, %d keys in %d transactions (max_txn_ops %d, %d in flight): %.2f s = %.0f SIMs/s" % (
    r["sims"], r["events"], r["charges"], s["keys"], s["transactions"], s["max_txn_ops"], s["in_flight"],
    s["seconds"], s["sims_per_second"]))
print("  CPU: etcd members %.1f s (%.0f SIMs/s if they had the machine to themselves), importer %.1f s; etcd db %.1f MiB; load average %.1f" % (
    s["etcd_cpu_s"], s["sims_per_s_cpu_bound"], s["importer_cpu_s"], s["etcd_db_bytes"] / 1048576, s["load_average_after"]))' "$line"
  for p in "${etcd_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp/etcd-$ops"
done
printf '%s\n' "${results[@]}" | python3 -c '
import json, sys, platform, os, time
runs = [json.loads(l) for l in sys.stdin if l.strip()]
for r in runs:
    r.pop("source", None)
machine = {"cpus": os.cpu_count(), "kernel": platform.release(),
           "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
print(json.dumps({"machine": machine, "runs": runs}, indent=2))' \
  >"$OUT/cluster-import.json"
echo "results: $OUT/cluster-import.json"
