# Sourced by scripts/bench-{radius,diameter,scale}.sh: picks the binaries and builds them if
# needed. Full runs use the release profile (built here unless BIN_DIR is given); --smoke uses
# the dev profile that `cargo build --all-targets` (CI) has already built, so CI never builds a
# release. Sets BIN_DIR (absolute) for bench/bench.py.
smoke=0
for arg in "$@"; do
  [[ "$arg" == --smoke ]] && smoke=1
  [[ "$arg" == -h || "$arg" == --help ]] && { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0; }
done
if ((smoke)); then profile=debug; cargo_flags=(); else profile=release; cargo_flags=(--release); fi
if [[ -z "${BIN_DIR:-}" ]]; then
  BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/$profile"
  if ! ((smoke)); then
    scripts/setup.sh --test
  fi
  if ! ((smoke)) || [[ ! -x "$BIN_DIR/imei-lockd" || ! -x "$BIN_DIR/imei-lock-load" ]]; then
    cargo build --locked "${cargo_flags[@]}" --bin imei-lockd --bin imei-lock-load
  fi
fi
BIN_DIR="$(cd "$BIN_DIR" && pwd)"
export BIN_DIR
