#!/usr/bin/env bash
# Memory under overload (release build): measures the daemon's peak answer rate for RADIUS and
# for Gx (closed loop, one protocol at a time), then drives both at once, open loop, at twice
# those rates for --seconds, sampling the daemon's VmRSS every second. Prints the RSS before,
# the maximum and at the end, and what the overload cost: RADIUS drops by reason, the kernel's
# UDP RcvbufErrors, Diameter 3004 answers, and what the load generator saw.
#
# Usage: scripts/bench-overload.sh [--seconds 60] [--sims 10000] [--debug] [--no-build]
#   --debug uses the debug build (target/debug), e.g. for a quick CI smoke run with
#   --seconds 2; --no-build uses the binaries already built (`cargo build --all-targets`).
#   A benchmark, not a test: it asserts nothing but that the daemon survived.
# Diagnostics: OVERLOAD_HOOK=CMD runs `CMD <daemon pid>` once, after OVERLOAD_HOOK_AT (default 30)
#   RSS samples of the overload phase, e.g. a script that attaches gdb and calls malloc_stats().
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
sims=10000
profile=release
build=yes
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --sims) sims="$2"; shift 2 ;;
    --debug) profile=debug; shift ;;
    --no-build) build=no; shift ;;
    *) echo "usage: $0 [--seconds N] [--sims N] [--debug] [--no-build]" >&2; exit 2 ;;
    esac
done

if [ "$build" = yes ]; then
    # --all-targets: the same features as the test build, so nothing is rebuilt for it.
    if [ "$profile" = release ]; then
        cargo build --locked --release --bin imei-lockd --bin imei-lock-load
    else
        cargo build --locked --all-targets
    fi
fi
bin="target/$profile"

work="$(mktemp -d)"
daemon_pid=""
cleanup() {
    if [ -n "$daemon_pid" ]; then kill -9 "$daemon_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
api=$(free_port); metrics=$(free_port); auth=$(free_port); acct=$(free_port); dia=$(free_port)
token="bench-token"

cat >"$work/imei-lockd.toml" <<EOF
[node]
data_dir = "$work/data"
[log]
level = "warn"
[radius]
auth_listen = "127.0.0.1:$auth"
acct_listen = "127.0.0.1:$acct"
[[radius.clients]]
name = "local"
address = "127.0.0.1/32"
secret = "testing123"
[diameter]
listen = ["tcp://127.0.0.1:$dia"]
[[diameter.peers]]
origin_host = "load1.localdomain"
[[diameter.peers]]
origin_host = "load2.localdomain"
[api]
listen = "127.0.0.1:$api"
token = "$token"
[metrics]
listen = "127.0.0.1:$metrics"
EOF

"$bin/imei-lockd" --config "$work/imei-lockd.toml" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$api/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$api/healthz" >/dev/null || { cat "$work/daemon.log"; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$daemon_pid/status"; }
metric() { # metric NAME LABEL-SUBSTRING: sum of the matching series
    curl -sf "http://127.0.0.1:$metrics/metrics" |
        awk -v n="$1" -v l="$2" 'index($0, n) == 1 && index($0, l) > 0 && !/^#/ {s += $NF} END {print s + 0}'
}
rcvbuf_errors() { awk '/^Udp:/ {n++; if (n == 2) print $4 + 0}' /proc/net/snmp; }
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"v": v}))' "$1"; }

# Locked SIMs, numbered as the generator numbers them (IMSI 001010000000000 + i).
python3 - "$sims" >"$work/sims.csv" <<'EOF'
import sys
print("imsi,msisdn,profile,imei_management")
for i in range(int(sys.argv[1])):
    print(f"{1010000000000 + i:015},,,lock")
EOF
id=$(curl -sf -X POST -H "Authorization: Bearer $token" --data-binary @"$work/sims.csv" \
    "http://127.0.0.1:$api/v1/sims:import" | json_field 'v["request_id"]')
curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$api/v1/requests/$id?wait=30" >/dev/null

load_radius() { "$bin/imei-lock-load" radius --target "127.0.0.1:$auth" --sims "$sims" --json "$@"; }
load_gx() {
    "$bin/imei-lock-load" gx --target "127.0.0.1:$dia" --sims "$sims" --connections 2 \
        --origin-host load1.localdomain,load2.localdomain --json "$@"
}

echo "== peak (closed loop, 5 s each; the first pass binds every SIM)"
load_radius --duration 5 --sockets 2 --window 64 >/dev/null
radius_peak=$(load_radius --duration 5 --sockets 2 --window 64 | json_field 'int(v["answers_per_s"])')
gx_peak=$(load_gx --duration 5 --window 128 | json_field 'int(v["answers_per_s"])')
echo "RADIUS peak: $radius_peak answers/s; Gx peak: $gx_peak answers/s"

radius_rate=$((2 * radius_peak))
gx_rate=$((2 * gx_peak))
echo "== overload: RADIUS at $radius_rate/s and Gx at $gx_rate/s at once, open loop, ${seconds} s"
rss_before=$(rss_kib)
kernel_before=$(rcvbuf_errors)
drops_before=$(metric imei_lockd_radius_drops_total 'reason="overload"')
busy_before=$(metric imei_lockd_diameter_answers_total 'result_code="3004"')
# Windows large enough that the generator keeps sending at its rate when answers lag (open loop),
# Gx beyond the daemon's 256 in flight per connection.
load_radius --duration "$seconds" --rate "$radius_rate" --sockets 4 --window 256 --timeout-ms 1000 \
    >"$work/radius.json" &
radius_job=$!
load_gx --duration "$seconds" --rate "$gx_rate" --window 1024 --timeout-ms 2000 >"$work/gx.json" &
gx_job=$!
rss_max=$rss_before
samples=0
series=""
while kill -0 "$radius_job" 2>/dev/null || kill -0 "$gx_job" 2>/dev/null; do
    r=$(rss_kib)
    samples=$((samples + 1))
    [ "$r" -gt "$rss_max" ] && rss_max=$r
    [ $((samples % 10)) -eq 1 ] && series="$series $((r / 1024))"
    [ -n "${OVERLOAD_HOOK:-}" ] && [ "$samples" -eq "${OVERLOAD_HOOK_AT:-30}" ] && $OVERLOAD_HOOK "$daemon_pid"
    sleep 1
done
wait "$radius_job" "$gx_job"
rss_end=$(rss_kib)
kill -0 "$daemon_pid" || { echo "the daemon died"; cat "$work/daemon.log"; exit 1; }

echo "RSS: before ${rss_before} KiB, max ${rss_max} KiB (${samples} samples, 1/s), end ${rss_end} KiB"
echo "RSS every 10 s (MiB):$series"
echo "RADIUS drops (overload): $(($(metric imei_lockd_radius_drops_total 'reason="overload"') - drops_before))"
echo "RADIUS drops by reason (total): $(curl -sf "http://127.0.0.1:$metrics/metrics" |
    grep '^imei_lockd_radius_drops_total' | tr '\n' ' ')"
echo "kernel UDP RcvbufErrors: +$(($(rcvbuf_errors) - kernel_before))"
echo "Diameter 3004 answers: $(($(metric imei_lockd_diameter_answers_total 'result_code="3004"') - busy_before))"
printf 'RADIUS load: '
json_field '"sent %d answered %d (%.0f/s) timeouts %d codes %s" % (v["sent"], v["answered"], v["answers_per_s"], v["timeouts"], v["codes"])' <"$work/radius.json"
printf 'Gx load: '
json_field '"sent %d answered %d (%.0f/s) timeouts %d codes %s" % (v["sent"], v["answered"], v["answers_per_s"], v["timeouts"], v["codes"])' <"$work/gx.json"
