#!/usr/bin/env bash
# Fuzzes the packet decoder for SECONDS (default 60) with libFuzzer and AddressSanitizer, on
# the stable toolchain. Usage: scripts/fuzz.sh [SECONDS]
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them, so no nightly toolchain is needed. Findings land in
# fuzz/artifacts/decode/ and make this script fail.
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/.."

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi

export RUSTC_BOOTSTRAP=1
corpus=fuzz/corpus/decode
mkdir -p "$corpus"
# -malloc_limit_mb: a single allocation above 64 MiB is a finding (inputs are at most 4 KiB).
cargo fuzz run decode "$corpus" fuzz/seeds/decode -- \
  -max_total_time="$seconds" -max_len=4096 -malloc_limit_mb=64 -print_final_stats=1
