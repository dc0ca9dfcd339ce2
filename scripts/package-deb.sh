#!/usr/bin/env bash
# Builds the Debian package of imei-lockd with cargo-deb from the [package.metadata.deb] table of
# Cargo.toml: /usr/bin/imei-lockd and imei-lockctl, the systemd unit (enabled, started on
# install, restarted after an upgrade, stopped on removal), the configuration (a conffile,
# root:imei-lockd 0640), the sysctl drop-in, the maintainer scripts of debian/, shell
# completions and man pages, the README. Installs cargo-deb (from crates.io) first when it is
# missing.
#
#   scripts/package-deb.sh [--no-build] [--fast] [--deb-version VERSION] [--output PATH]
#
#   --no-build             package the release binaries already in target/release
#   --fast                 faster, larger compression (tests)
#   --deb-version VERSION  the package's version instead of Cargo.toml's (e.g. 0.1.0-2)
#   --output PATH          where the .deb goes (default: target/debian/)
#
# The completions and man pages are generated from the release binaries into target/assets/
# (`imei-lockctl completions SHELL`, and the hidden `manpages DIR` of both binaries) just before
# packaging. The .deb's path is printed, then its control data and contents are listed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

build=1
deb_args=()
while (($#)); do
  case "$1" in
    --no-build) build=0 ;;
    --fast) deb_args+=(--fast) ;;
    --deb-version | --output)
      if (($# < 2)); then
        echo "package-deb: $1 needs a value" >&2
        exit 2
      fi
      deb_args+=("$1" "$2")
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "package-deb: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "package-deb: installing cargo-deb"
  cargo install cargo-deb --locked --version 3.8.0
fi

bins=target/release
if ((build)); then
  cargo build --release --locked --bin imei-lockd --bin imei-lockctl
fi
for b in imei-lockd imei-lockctl; do
  if [[ ! -x "$bins/$b" ]]; then
    echo "package-deb: $bins/$b not found; build first (cargo build --release) or drop --no-build" >&2
    exit 1
  fi
done

# Completions and man pages, from the binaries' own command-line definitions (clap).
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets"/completions/{bash,zsh,fish} "$assets"/man/{man1,man8}
for b in imei-lockd imei-lockctl; do
  "$bins/$b" completions bash >"$assets/completions/bash/$b"
  "$bins/$b" completions zsh >"$assets/completions/zsh/_$b"
  "$bins/$b" completions fish >"$assets/completions/fish/$b.fish"
done
"$bins/imei-lockd" manpages "$assets/man/man8" >/dev/null
"$bins/imei-lockctl" manpages "$assets/man/man1" >/dev/null
gzip -9n "$assets"/man/man*/*

deb=$(cargo deb --locked --no-build "${deb_args[@]}" | tail -n 1)
echo "package-deb: $deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"
