#!/usr/bin/env bash
# Fuzzes with libFuzzer and AddressSanitizer on the stable toolchain, SECONDS (default 60) per
# target: `decode` (the packet decoder) and `session` (the session engine driven by scripts of
# server packets, application calls, losses, time and crashes). Usage: scripts/fuzz.sh [SECONDS]
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them, so no nightly toolchain is needed. Findings land in
# fuzz/artifacts/<target>/ and make this script fail. Each run ends with libFuzzer's
# statistics (stat::number_of_executed_units is the number of executions).
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/.."

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi

export RUSTC_BOOTSTRAP=1
for target in decode session; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus" "fuzz/seeds/$target"
  echo "fuzzing $target for ${seconds}s" >&2
  # -malloc_limit_mb: a single allocation above 64 MiB is a finding (inputs are at most 4 KiB).
  cargo fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -malloc_limit_mb=64 -print_final_stats=1
done
