#!/usr/bin/env bash
# Installs imei-lockd from this source tree: builds the release binaries, installs them, the
# systemd unit and (only if there is none yet) the configuration file.
#
#   scripts/install.sh [--dry-run] [--no-build]
#
#   --dry-run   print what would be done, change nothing (no build either)
#   --no-build  do not run `cargo build --release`; install the binaries already built
#
# Environment (defaults in brackets):
#   PREFIX      binaries go to $PREFIX/bin                          [/usr]
#   UNIT_DIR    where the unit goes (or /lib/systemd/system)        [/etc/systemd/system]
#   CONF_DIR    where imei-lockd.toml goes                          [/etc/imei-lockd]
#   DESTDIR     staging root prepended to every destination        []
#   BIN_DIR     where the built binaries are     [${CARGO_TARGET_DIR:-target}/release]
#
# The unit runs the daemon with DynamicUser= (no account to create), keeps RocksDB in its
# StateDirectory (/var/lib/imei-lockd, set by the unit's Environment=IMEI_LOCKD__NODE__DATA_DIR)
# and reads $CONF_DIR/imei-lockd.toml. An existing configuration file is never overwritten.
# Needs root for the default destinations.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

dry_run=0
build=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    --no-build) build=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install: unknown option $arg" >&2; usage >&2; exit 2 ;;
  esac
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="${PREFIX:-/usr}"
UNIT_DIR="${UNIT_DIR:-/etc/systemd/system}"
CONF_DIR="${CONF_DIR:-/etc/imei-lockd}"
DESTDIR="${DESTDIR:-}"
target="${CARGO_TARGET_DIR:-$repo/target}"
BIN_DIR="${BIN_DIR:-$target/release}"
bindir="$PREFIX/bin"

# Runs a command, or prints it under --dry-run.
run() {
  if ((dry_run)); then
    printf 'would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    echo "+ $*"
    "$@"
  fi
}

if ((build)); then
  run cargo build --release --locked --manifest-path "$repo/Cargo.toml" \
    --bin imei-lockd --bin imei-lockctl
fi

for b in imei-lockd imei-lockctl; do
  src="$BIN_DIR/$b"
  if [[ ! -x "$src" ]] && ! ((dry_run)) && ! ((build)); then
    echo "install: $src not found; build first (cargo build --release) or drop --no-build" >&2
    exit 1
  fi
  run install -D -m 0755 "$src" "$DESTDIR$bindir/$b"
done

# The unit names /usr/bin/imei-lockd and /etc/imei-lockd/imei-lockd.toml; point it at $PREFIX/bin
# and $CONF_DIR when those differ.
unit_src="$repo/systemd/imei-lockd.service"
unit_dst="$DESTDIR$UNIT_DIR/imei-lockd.service"
if [[ "$bindir" == /usr/bin && "$CONF_DIR" == /etc/imei-lockd ]]; then
  run install -D -m 0644 "$unit_src" "$unit_dst"
elif ((dry_run)); then
  echo "would write: $unit_dst (from $unit_src with $bindir/imei-lockd, $CONF_DIR/imei-lockd.toml)"
else
  echo "+ write $unit_dst (from $unit_src with $bindir/imei-lockd, $CONF_DIR/imei-lockd.toml)"
  install -d -m 0755 "$(dirname "$unit_dst")"
  sed -e "s|/usr/bin/imei-lockd|$bindir/imei-lockd|g" \
    -e "s|/etc/imei-lockd/imei-lockd.toml|$CONF_DIR/imei-lockd.toml|g" "$unit_src" >"$unit_dst"
  chmod 0644 "$unit_dst"
fi

# The configuration: only if absent (it is the operator's from then on). Readable by the
# unit's dynamic user, hence 0644: prefer api.token_file for the API token.
conf_dst="$DESTDIR$CONF_DIR/imei-lockd.toml"
if [[ -e "$conf_dst" ]]; then
  echo "keep existing: $conf_dst"
else
  run install -D -m 0644 "$repo/conf/imei-lockd.toml" "$conf_dst"
fi

# Reload systemd's view of the units when installing for real on a systemd host.
if [[ -z "$DESTDIR" && -d /run/systemd/system ]]; then
  run systemctl daemon-reload
fi

if ((dry_run)); then
  echo "dry run: nothing changed"
else
  cat <<EOF
installed. Next:
  edit $CONF_DIR/imei-lockd.toml (RADIUS clients, Diameter peers, api.token: change it)
  $bindir/imei-lockd check-config --config $CONF_DIR/imei-lockd.toml
  systemctl enable --now imei-lockd
  systemctl reload imei-lockd    # after editing clients or peers (SIGHUP)
EOF
fi
