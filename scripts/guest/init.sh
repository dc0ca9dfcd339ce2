#!/bin/busybox sh
# PID 1 of the SCTP test guest (scripts/sctp-guest.sh builds the initramfs around it): loads the
# kernel's SCTP module, runs imei-lockd over SCTP and the diameter-sctp-probe client against it,
# prints GUEST/PROBE/DAEMON lines on the serial console, and powers off.
#
# Phase 1: listen = ["sctp://127.0.0.1:3868"], `diameter-sctp-probe exchange`.
# Phase 2: a multi-homed endpoint, listen = ["sctp://127.0.0.1:3868", "sctp://127.0.0.2:3868"];
#          the client (bound to 127.0.0.3) connects to 127.0.0.2, which is then deleted from lo.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t devtmpfs dev /dev

say() { echo "GUEST $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
finish() {
  say "done $1 uptime=$(uptime_s)"
  poweroff -f
}
say "boot uptime=$(uptime_s)"

for m in crc32c_generic libcrc32c udp_tunnel ip6_udp_tunnel sctp; do
  insmod /lib/modules/$m.ko || { say "insmod $m failed"; finish failed; }
done
say "sctp loaded"

# Loopback with /32 addresses: with 127.0.0.0/8 on lo every 127.x address stays reachable, so a
# path could not be taken away by deleting its address.
ip link set lo up
ip addr del 127.0.0.1/8 dev lo
for a in 1 2 3; do ip addr add 127.0.0.$a/32 dev lo; done
# Fast path-failure detection (defaults: RTO 1-60 s, 5 retransmissions, 30 s heartbeats).
echo 200 >/proc/sys/net/sctp/rto_min
echo 500 >/proc/sys/net/sctp/rto_initial
echo 1000 >/proc/sys/net/sctp/rto_max
echo 2 >/proc/sys/net/sctp/path_max_retrans
echo 500 >/proc/sys/net/sctp/hb_interval

config() { # name listen-array
  mkdir -p /etc/imei-lockd
  cat >/etc/imei-lockd/$1.toml <<CONF
[node]
data_dir = "/tmp/data-$1"
block_cache_mb = 8
sim_cache_entries = 10000
[log]
level = "info"
[radius]
auth_listen = "127.0.0.1:1812"
acct_listen = "127.0.0.1:1813"
[diameter]
listen = $2
[[diameter.peers]]
origin_host = "pgw.localdomain"
[api]
listen = "127.0.0.1:8080"
token = "guest-token"
[metrics]
listen = "127.0.0.1:13868"
CONF
}

# Runs the daemon with config $1 and the probe with the remaining arguments; prints the daemon's
# listener lines (and its log tail when something failed).
phase() {
  name=$1
  shift
  imei-lockd --config /etc/imei-lockd/$name.toml >/tmp/$name.log 2>&1 &
  pid=$!
  diameter-sctp-probe "$@"
  probe=$?
  kill -TERM $pid
  wait $pid
  daemon=$?
  grep 'diameter listening' /tmp/$name.log | sed "s/^/DAEMON $name /"
  say "phase $name probe_exit=$probe daemon_exit=$daemon uptime=$(uptime_s)"
  if [ $probe != 0 ] || [ $daemon != 0 ]; then
    tail -n 30 /tmp/$name.log | sed "s/^/DAEMON $name /"
    return 1
  fi
}

ok=ok
config single '["sctp://127.0.0.1:3868"]'
phase single exchange --server 127.0.0.1:3868 --window 200 --sims 200 --requests 200 || ok=failed
config multi '["sctp://127.0.0.1:3868", "sctp://127.0.0.2:3868"]'
phase multi multihome --server 127.0.0.2:3868 --bind 127.0.0.3 \
  --drop-cmd "ip addr del 127.0.0.2/32 dev lo" || ok=failed
finish $ok
