#!/usr/bin/env bash
# Installs imei-lockd from this source tree: builds the release binaries, installs them, the
# systemd unit, the configuration (only if there is none yet), the sysctl drop-in, shell
# completions and man pages, and creates the system account the unit runs as.
#
#   scripts/install.sh [--dry-run] [--no-build]
#
#   --dry-run   print what would be done, change nothing (no build either)
#   --no-build  do not run `cargo build --release`; install the binaries already built
#
# Environment (defaults in brackets):
#   PREFIX      binaries go to $PREFIX/bin, man pages and completions to $PREFIX/share  [/usr]
#   UNIT_DIR    where the unit goes (or /lib/systemd/system)        [/etc/systemd/system]
#   CONF_DIR    where imei-lockd.toml goes                          [/etc/imei-lockd]
#   SYSCTL_DIR  where the sysctl drop-in 60-imei-lockd.conf goes    [/etc/sysctl.d]
#   DESTDIR     staging root prepended to every destination        []
#   BIN_DIR     where the built binaries are     [${CARGO_TARGET_DIR:-target}/release]
#
# As the Debian package does: the unit runs as the static system account imei-lockd (created
# here if missing, home /var/lib/imei-lockd, no login), keeps RocksDB in its StateDirectory
# (/var/lib/imei-lockd, set by the unit's Environment=IMEI_LOCKD__NODE__DATA_DIR) and reads
# $CONF_DIR/imei-lockd.toml, which holds secrets: root:imei-lockd 0640 in a root:imei-lockd 0750
# directory (an existing file keeps its content and gets that owner and mode). The sysctl drop-in
# raises net.core.rmem_max to the RADIUS receive buffer (8 MiB) and is applied now unless the
# running limit already allows it. With DESTDIR (a staging root) the account is not created,
# ownership is not set and nothing is applied: the target system's installer does that.
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
SYSCTL_DIR="${SYSCTL_DIR:-/etc/sysctl.d}"
DESTDIR="${DESTDIR:-}"
target="${CARGO_TARGET_DIR:-$repo/target}"
BIN_DIR="${BIN_DIR:-$target/release}"
bindir="$PREFIX/bin"
share="$PREFIX/share"
user=imei-lockd
# The real system (not a staging root): create the account, set owners, apply the sysctl.
live=0
[[ -z "$DESTDIR" ]] && live=1

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

# Writes the standard output of a command into a file (mode 0644), or prints it under --dry-run.
run_to() {
  local dst="$1"
  shift
  if ((dry_run)); then
    printf 'would write %s from:' "$dst"
    printf ' %q' "$@"
    printf '\n'
  else
    echo "+ $* > $dst"
    install -d -m 0755 "$(dirname "$dst")"
    "$@" >"$dst"
    chmod 0644 "$dst"
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

# The system account of the unit's User=/Group=.
if ((live)); then
  # useradd/groupadd (shadow) rather than Debian's adduser: every distribution has them.
  if getent passwd "$user" >/dev/null 2>&1; then
    echo "keep existing account: $user"
  else
    getent group "$user" >/dev/null 2>&1 || run groupadd --system "$user"
    nologin=$(command -v nologin || echo /usr/sbin/nologin)
    run useradd --system --gid "$user" --no-create-home --home-dir /var/lib/imei-lockd \
      --shell "$nologin" "$user"
  fi
fi

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

# The configuration: only if absent (it is the operator's from then on). It holds secrets:
# readable by root and the account's group only.
conf_dst="$DESTDIR$CONF_DIR/imei-lockd.toml"
run install -d -m 0750 "$DESTDIR$CONF_DIR"
if [[ -e "$conf_dst" ]]; then
  echo "keep existing: $conf_dst"
  run chmod 0640 "$conf_dst"
else
  run install -m 0640 "$repo/conf/imei-lockd.toml" "$conf_dst"
fi
if ((live)); then
  run chown "root:$user" "$CONF_DIR" "$conf_dst"
fi

# The kernel limit of the RADIUS receive buffer.
sysctl_src="$repo/conf/sysctl.d/60-imei-lockd.conf"
sysctl_dst="$DESTDIR$SYSCTL_DIR/60-imei-lockd.conf"
run install -D -m 0644 "$sysctl_src" "$sysctl_dst"
if ((live)); then
  want=$(sed -n 's/^[[:space:]]*net\.core\.rmem_max[[:space:]]*=[[:space:]]*\([0-9][0-9]*\).*/\1/p' \
    "$sysctl_src" | tail -n 1)
  have=$(cat /proc/sys/net/core/rmem_max 2>/dev/null || true)
  if [[ -n "$have" && -n "$want" ]] && ((have >= want)); then
    echo "net.core.rmem_max is $have: already allows $want"
  elif ((dry_run)); then
    echo "would apply: $sysctl_dst"
  elif sysctl -q -p "$sysctl_dst" 2>/dev/null; then
    echo "+ sysctl -p $sysctl_dst"
  else
    echo "install: could not apply $sysctl_dst now (not permitted here, e.g. in a container);" \
      "it applies at the next boot" >&2
  fi
fi

# Shell completions and man pages, generated by the binaries being installed.
if [[ "$PREFIX" == /usr ]]; then
  zsh_dir="$share/zsh/vendor-completions"
else
  zsh_dir="$share/zsh/site-functions"
fi
for b in imei-lockd imei-lockctl; do
  run_to "$DESTDIR$share/bash-completion/completions/$b" "$BIN_DIR/$b" completions bash
  run_to "$DESTDIR$zsh_dir/_$b" "$BIN_DIR/$b" completions zsh
  run_to "$DESTDIR$share/fish/vendor_completions.d/$b.fish" "$BIN_DIR/$b" completions fish
done
run "$BIN_DIR/imei-lockd" manpages "$DESTDIR$share/man/man8"
run "$BIN_DIR/imei-lockctl" manpages "$DESTDIR$share/man/man1"

# Reload systemd's view of the units when installing for real on a systemd host.
if ((live)) && [[ -d /run/systemd/system ]]; then
  run systemctl daemon-reload
fi

if ((dry_run)); then
  echo "dry run: nothing changed"
else
  cat <<EOF2
installed. Next:
  edit $CONF_DIR/imei-lockd.toml (RADIUS clients, Diameter peers, api.token: change it)
  $bindir/imei-lockd check-config --config $CONF_DIR/imei-lockd.toml
  systemctl enable --now imei-lockd
  systemctl reload imei-lockd    # after editing clients or peers (SIGHUP)
EOF2
fi
