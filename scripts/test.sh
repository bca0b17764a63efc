#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, docs, every test of the workspace, and
# a short fuzz run of the packet decoder (FUZZ_SECONDS, default 30; 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# The tests against a real broker spawn their own mosquitto.
bash scripts/install-mosquitto.sh

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo doc --workspace --no-deps (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

fuzz_seconds=${FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" -gt 0 ]; then
  step "scripts/fuzz.sh $fuzz_seconds"
  bash scripts/fuzz.sh "$fuzz_seconds"
fi

# Last, so that its summary closes the output.
step "cargo test --workspace"
cargo test --workspace
