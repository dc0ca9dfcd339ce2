#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/fuzz_targets/): scripts/fuzz.sh [TARGET|all] [SECONDS] [JOBS]
#   TARGET   radius, diameter, imei, csv_import, store_value, s13, or all (default, one after another)
#   SECONDS  per target (default 600)
#   JOBS     parallel fuzzing processes per target (default 1)
# Installs cargo-fuzz (cargo install --locked) when missing. Only stable Rust is needed:
# RUSTC_BOOTSTRAP=1 lets stable rustc take the nightly-only sanitizer flags cargo-fuzz passes.
# Runs under nice -n 19. The committed seeds (fuzz/corpus/<target>/, scripts/fuzz-seeds.sh) are
# read only; what the fuzzer learns goes to fuzz/work/<target>/ (not committed; kept between
# runs). Crashes go to fuzz/artifacts/<target>/: once fixed, copy the input to
# fuzz/regressions/<target>/ so that integration-tests/fuzz_smoke.rs replays it in CI.
# The fuzz crate builds the library without RocksDB (default-features = false), so the first
# build takes a few minutes, not RocksDB's C++.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=${1:-all}
SECONDS_PER=${2:-600}
JOBS=${3:-1}
ALL=(radius diameter imei csv_import store_value s13)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

export RUSTC_BOOTSTRAP=1
targets=("$TARGET")
[[ $TARGET == all ]] && targets=("${ALL[@]}")
cd fuzz
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  echo "fuzz: $t for ${SECONDS_PER}s"
  par=()
  ((JOBS > 1)) && par=(-jobs="$JOBS" -workers="$JOBS")
  # -a: debug assertions (overflow checks) on; -malloc_limit_mb catches oversized allocations.
  nice -n 19 cargo fuzz run -a "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER" -rss_limit_mb=1024 -malloc_limit_mb=128 \
    -timeout=5 -max_len=8192 -print_final_stats=1 "${par[@]}"
done
