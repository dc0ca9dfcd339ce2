#!/usr/bin/env bash
# Builds the Debian package of imei-lockd with cargo-deb from the [package.metadata.deb] table of
# Cargo.toml: /usr/bin/imei-lockd and imei-lockctl, the systemd unit, the configuration (a
# conffile) and the README. Installs cargo-deb (from crates.io) first when it is missing.
#
#   scripts/package-deb.sh [--no-build]
#
#   --no-build  package the release binaries already in target/release
#
# The .deb lands in target/debian/ and its contents are listed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

args=()
for arg in "$@"; do
  case "$arg" in
    --no-build) args+=(--no-build) ;;
    *) echo "package-deb: unknown option $arg" >&2; exit 2 ;;
  esac
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "package-deb: installing cargo-deb"
  cargo install cargo-deb --locked
fi
deb=$(cargo deb --locked "${args[@]}" | tail -n 1)
echo "package-deb: $deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"
