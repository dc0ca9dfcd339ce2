#!/usr/bin/env bash
# Boots a qemu guest (software emulation, TCG) with a Debian kernel that has SCTP and runs the
# real imei-lockd and the project's SCTP Diameter client (examples/diameter-sctp-probe.rs)
# inside it; the guest's serial console is copied to stdout. Run by integration-tests/sctp_guest.rs,
# which asserts the console's PROBE/GUEST/DAEMON lines; scripts/guest/init.sh is what the guest runs.
#
# Usage: scripts/sctp-guest.sh            (after `cargo build --all-targets`)
# Env:   SCTP_GUEST_DAEMON, SCTP_GUEST_PROBE   binaries (default target/debug/imei-lockd and
#                                              target/debug/examples/diameter-sctp-probe)
#        SCTP_GUEST_TIMEOUT                    seconds before the guest is killed (170)
#        SCTP_GUEST_MEM                        guest memory in MiB (1024)
#
# The kernel package (linux-image-6.1.0-*-amd64, the one linux-image-amd64 depends on) is fetched
# with `apt-get download` once and kept in ${XDG_CACHE_HOME:-$HOME/.cache}/imei-lockd/guest-kernel.
# Needs qemu-system-x86, busybox-static and cpio (scripts/setup.sh --test installs them). Exit 0
# when the guest ran to its end, 1 otherwise (including when something cannot be had).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "sctp-guest: $*" >&2; exit 1; }

DAEMON=${SCTP_GUEST_DAEMON:-target/debug/imei-lockd}
PROBE=${SCTP_GUEST_PROBE:-target/debug/examples/diameter-sctp-probe}
TIMEOUT=${SCTP_GUEST_TIMEOUT:-170}
MEM=${SCTP_GUEST_MEM:-1024}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/imei-lockd/guest-kernel
MODULES=(crc32c_generic libcrc32c udp_tunnel ip6_udp_tunnel sctp)

# --- tools -------------------------------------------------------------------------------------
for t in qemu-system-x86_64 cpio gzip objcopy ldd dpkg-deb apt-get apt-cache timeout; do
  command -v "$t" >/dev/null ||
    die "$t not found; install qemu-system-x86 busybox-static cpio (scripts/setup.sh --test does)"
done
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found; install busybox-static (scripts/setup.sh --test does)"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked; install busybox-static (scripts/setup.sh --test does)"
fi
for b in "$DAEMON" "$PROBE"; do
  [[ -x $b ]] || die "$b not built; run cargo build --all-targets"
done

# --- kernel ------------------------------------------------------------------------------------
mkdir -p "$CACHE"
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
  awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
deb=""
if [[ -n $pkg ]]; then
  deb=$(ls -1 "$CACHE/${pkg}"_*.deb 2>/dev/null | tail -n 1 || true)
  if [[ -z $deb ]]; then
    echo "sctp-guest: downloading $pkg into $CACHE" >&2
    dl=$(mktemp -d "$CACHE/dl.XXXXXX")
    if (cd "$dl" && apt-get download -q "$pkg" >&2 2>"$dl/log"); then
      deb=$(ls -1 "$dl"/*.deb | head -n 1)
      mv "$deb" "$CACHE/" && deb="$CACHE/$(basename "$deb")"
      # Keep only the current package (and its unpacked files).
      find "$CACHE" -maxdepth 1 -name 'linux-image-*' ! -name "$(basename "$deb")" \
        ! -name "$(basename "$deb" .deb)" -exec rm -rf {} +
    else
      grep -v '^W: Download is performed unsandboxed' "$dl/log" >&2 || true
      echo "sctp-guest: apt-get download $pkg failed" >&2
    fi
    rm -rf "$dl"
  fi
fi
if [[ -z $deb ]]; then
  deb=$(ls -1 "$CACHE"/linux-image-*.deb 2>/dev/null | tail -n 1 || true)
  [[ -n $deb ]] || die "no kernel package: apt-cache knows no linux-image-6.1.0-*-amd64 for \
linux-image-amd64 (run apt-get update) and none is cached in $CACHE"
  echo "sctp-guest: using the cached $(basename "$deb")" >&2
fi
kdir="$CACHE/$(basename "$deb" .deb)"
if [[ ! -f $kdir/ok ]]; then
  rm -rf "$kdir" && mkdir -p "$kdir/x"
  pats=('./boot/vmlinuz-*')
  for m in "${MODULES[@]}"; do pats+=("*/$m.ko*"); done
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kdir/x" --wildcards "${pats[@]}" ||
    die "cannot unpack $deb"
  cp "$kdir"/x/boot/vmlinuz-* "$kdir/vmlinuz"
  for m in "${MODULES[@]}"; do
    f=$(find "$kdir/x" -name "$m.ko*" | head -n 1)
    [[ -n $f ]] || die "$deb has no $m module"
    case $f in
      *.ko) cp "$f" "$kdir/$m.ko" ;;
      *.ko.xz) xz -dc "$f" >"$kdir/$m.ko" ;;
      *.ko.zst) zstd -qdc "$f" >"$kdir/$m.ko" ;;
      *) die "unknown module format $f" ;;
    esac
  done
  rm -rf "$kdir/x"
  touch "$kdir/ok"
fi

# --- initramfs ---------------------------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,usr/bin,lib/modules,etc,proc,sys,dev,tmp,run}
cp "$BUSYBOX" "$root/bin/busybox"
cp scripts/guest/init.sh "$root/init"
chmod 755 "$root/init"
for m in "${MODULES[@]}"; do cp "$kdir/$m.ko" "$root/lib/modules/"; done
for b in "$DAEMON" "$PROBE"; do
  objcopy --strip-debug "$b" "$root/usr/bin/$(basename "$b")"
  # Shared libraries and the dynamic loader, at the paths the binary names.
  ldd "$b" | awk '/=> \// { print $3 } /^[[:space:]]*\/[^ ]*ld-linux/ { print $1 }' |
    while read -r lib; do
      [[ -e $root$lib ]] || { mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"; }
    done
done
(cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet) >"$work/initrd.gz"

# --- boot --------------------------------------------------------------------------------------
echo "sctp-guest: booting $(basename "$kdir") ($(du -k "$work/initrd.gz" | cut -f1) KiB initramfs)" >&2
start=$EPOCHREALTIME
set +e
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg -m "$MEM" -nographic -no-reboot -nic none \
  -kernel "$kdir/vmlinuz" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1" </dev/null | tr -d '\r' | tee "$work/console"
qemu=${PIPESTATUS[0]}
set -e
secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
echo "sctp-guest: qemu exit $qemu after ${secs}s" >&2
if ! grep -q '^GUEST done' "$work/console"; then
  ((qemu == 124)) && die "the guest did not finish within ${TIMEOUT}s"
  die "the guest stopped before its end (qemu exit $qemu)"
fi
