#!/usr/bin/env bash
# Builds the bench programs of the peers kept outside the workspace and runs `bench windows`
# with them, so that they are measured beside Mooring in the same interleaved runs:
#   - bench-mqtt5/: the `mqtt5` crate's client (state in memory);
#   - bench-paho/: paho-mqtt with Paho C's file persistence (built with CMake; skipped, with a
#     warning, where cmake is missing).
#   scripts/bench-peers.sh [COUNT] [RUNS] [windows|big|rtt]
# Needs mosquitto.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
CARGO_TARGET_DIR="$target/bench-mqtt5" cargo build --release --locked --manifest-path bench-mqtt5/Cargo.toml
export MOORING_BENCH_MQTT5="$target/bench-mqtt5/release/bench-mqtt5"
if command -v cmake >/dev/null; then
  CARGO_TARGET_DIR="$target/bench-paho" cargo build --release --locked --manifest-path bench-paho/Cargo.toml
  export MOORING_BENCH_PAHO="$target/bench-paho/release/bench-paho"
else
  echo "bench-peers: no cmake (apt-get install cmake): paho-mqtt is left out" >&2
fi
cargo run --release -p integration --bin bench -- windows "$@"
