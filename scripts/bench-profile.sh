#!/usr/bin/env bash
# Where imei-lockd's CPU goes: runs the release daemon under valgrind's callgrind, imports and
# binds --sims SIMs, zeroes the counters, sends exactly --requests requests with imei-lock-load,
# then prints the instructions per request and the costliest functions (callgrind_annotate).
# Instruction counts are repeatable for the same binary and inputs whatever else the machine is
# doing, so this compares builds where a timed run on a busy machine cannot.
#
# Usage: scripts/bench-profile.sh [--proto radius|gx] [--requests N] [--sims N] [--window W]
#                                 [--profile-connections C]
# Output: bench-results/profile/callgrind.<proto>.out* (open with callgrind_annotate or
# kcachegrind). Environment: BIN_DIR, OUT as for the other bench scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/env.sh
export OUT="${OUT:-$PWD/bench-results/profile}"
args=("$@")
[[ " ${args[*]} " == *" --sims "* ]] || args+=(--sims 5000)
[[ " ${args[*]} " == *" --window "* ]] || args+=(--window 32)
exec python3 bench/bench.py profile "${args[@]}"
