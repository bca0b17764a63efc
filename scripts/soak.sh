#!/usr/bin/env bash
# A week in an hour: a gateway publishes QoS 1 and 2 from 16 tasks and consumes QoS 2 with
# manual ack for MINUTES, while its connection is cut every 30 s and mosquitto restarts every
# 5 minutes; RSS, descriptors, store size and queue depth are sampled every 10 s, and the run
# ends with a verdict (see integration/src/bin/soak.rs). CI runs one minute of it
# (integration/tests/soak.rs).
# Usage: scripts/soak.sh MINUTES [redb|sled]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:?usage: scripts/soak.sh MINUTES [redb|sled]}
cargo build --release -p integration --bin soak --bin gateway_child
target/release/soak "$minutes" "${2:-redb}"
