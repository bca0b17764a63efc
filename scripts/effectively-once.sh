#!/usr/bin/env bash
# The proof of effectively-once delivery over QoS 1, long: a publisher that keys its QoS 1
# publishes and a subscriber that drops copies by key run against a mosquitto limited to QoS 1
# (`max_qos 1`); each is killed with SIGKILL N times (default 20) at random moments and the
# broker is restarted twice. Ends with "M sent, M received, 0 lost, 0 duplicated" as the
# subscriber's application counts it, and how many copies the key check removed; exits
# non-zero otherwise (see integration/tests/effectively_once.rs). Runs MQTT 5 (keys in a User
# Property) and 3.1.1 (keys in envelopes).
# Usage: scripts/effectively-once.sh [N] [MESSAGES]    (EO_SEED=... replays a run's kill times;
# EO_WITHOUT_KEYS=1 runs both sides without keys, to watch the duplicates come)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-20}
bash scripts/install-mosquitto.sh
EO_KILLS=$kills EO_MESSAGES=${2:-$((kills * 150))} \
  cargo test --release -p integration --test effectively_once -- --nocapture --test-threads 1
