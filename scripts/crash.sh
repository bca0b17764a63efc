#!/usr/bin/env bash
# The end-to-end crash-safety proof, long: a gateway process publishing and consuming numbered
# QoS 2 (then QoS 1) messages is killed N times with SIGKILL (default 200), its network cut and
# the broker restarted between kills; then every message is checked (see
# integration/tests/crash_proof.rs).
# Usage: scripts/crash.sh STORE [N]    STORE: redb | sled | sqlite    (CRASH_SEED=... replays a run)
# MQTT_VERSION=3.1.1 runs the gateway's session at MQTT 3.1.1 (the `*_at_3_1_1` test always
# does, so it runs at every call).
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:?usage: scripts/crash.sh redb|sled|sqlite [N]}
CRASH_STORE=$store CRASH_KILLS=${2:-200} cargo test --release -p integration --test crash_proof \
  -- --nocapture --test-threads 1 "$store"
