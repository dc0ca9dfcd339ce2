#!/usr/bin/env bash
# Installs everything imei-lockd needs to build and to run its tests on a fresh Debian machine.
# Idempotent: packages already present are not fetched again. Needs root (or sudo) for apt-get.
set -euo pipefail

# Build: bindgen (librocksdb-sys) needs libclang; RocksDB itself is compiled from C++ by cargo;
# etcd-client's build compiles etcd's gRPC protocol with protoc (protobuf-compiler) and the
# well-known types it imports (libprotobuf-dev).
APT_BUILD=(libclang-dev g++ make protobuf-compiler libprotobuf-dev)
# Tests: real third-party peers; systemd for `systemd-analyze verify` of the unit; freeradius
# (the server) for scripts/bench-radius.sh (its smoke run is a test); qemu, busybox-static and
# cpio for the SCTP guest (scripts/sctp-guest.sh, which downloads its kernel); prometheus for
# promtool (checks the scrape, the alert rules and their unit tests; the server is not run);
# etcd-server (and etcd-client's etcdctl) for cluster mode: the tests start their own members on
# loopback ports, never the packaged service.
APT_TEST=(freeradius-utils freediameterd freediameter-extensions openssl systemd freeradius
  qemu-system-x86 busybox-static cpio prometheus etcd-server etcd-client iproute2)
PIP_TEST=(python-diameter==0.9.0 schemathesis==4.32.5)
# integration-tests/secrets.rs: curl --cacert against the HTTPS API (openssl makes its test CA).
APT_TEST+=(curl)
# Packaging test (integration-tests/packaging.rs): mmdebstrap makes the clean Debian root the
# .deb and scripts/install.sh are installed into.
APT_TEST+=(mmdebstrap)
# N5g-eir tests and scripts/bench-n5g.sh: nghttp (HTTP/2 client) and h2load.
APT_TEST+=(nghttp2-client)

want=("${APT_BUILD[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${APT_TEST[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  # Packages with a service (freeradius, freediameterd, prometheus, etcd-server) must not start it
  # or hold its ports (1812/1813, 3868, 9090, 2379/2380): the tests and benchmarks start their own instances (of
  # prometheus only promtool is used). Without a policy-rc.d already in place (containers have
  # one), add one for the install.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
    $SUDO chmod 755 $policy
    added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if ((added_policy)); then $SUDO rm -f $policy; fi
  # And not at the next boot either (systemd hosts).
  for service in freeradius prometheus etcd; do
    if [[ " ${missing[*]} " == *" $service "* && -d /run/systemd/system ]]; then
      $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
  done
fi

if [[ "${1:-}" == "--test" ]] && ((${#PIP_TEST[@]})); then
  python3 -m pip install -q --disable-pip-version-check "${PIP_TEST[@]}"
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }

# Packaging: cargo-deb builds the .deb (scripts/package-deb.sh, and its test).
CARGO_DEB_VERSION=3.8.0
if [[ "${1:-}" == "--test" ]] && ! cargo deb --version >/dev/null 2>&1; then
  echo "setup: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi
