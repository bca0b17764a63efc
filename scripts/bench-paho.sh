#!/usr/bin/env bash
# Builds the paho-mqtt bench program (bench-paho/: Paho C through CMake, so outside the
# workspace and CI) and runs `bench windows` with it, so that paho-mqtt with its file
# persistence is measured beside Mooring in the same interleaved runs.
#   scripts/bench-paho.sh [COUNT] [RUNS] [windows|big|rtt]
# Needs cmake (Debian: apt-get install cmake) and mosquitto.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cmake >/dev/null || { echo "bench-paho needs cmake (apt-get install cmake)" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}
CARGO_TARGET_DIR="$target/bench-paho" cargo build --release --locked --manifest-path bench-paho/Cargo.toml
MOORING_BENCH_PAHO="$target/bench-paho/release/bench-paho" \
  cargo run --release -p integration --bin bench -- windows "$@"
