#!/usr/bin/env bash
# The bridge proof: the `bridge` example forwards numbered QoS 2 messages from one mosquitto
# to another and is killed with SIGKILL N times mid-stream (default 20), restarting on its
# store each time; mosquitto_pub feeds broker A, mosquitto_sub (a persistent session) counts
# what reaches broker B. Ends with `N sent, N received, 0 lost, 0 duplicated`; exits non-zero
# otherwise. See examples/tests/bridge_proof.rs.
# Usage: scripts/bridge.sh [N]    (BRIDGE_MESSAGES=..., BRIDGE_SEED=... replays a run)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-mosquitto.sh >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
BRIDGE_KILLS=${1:-20} cargo test --release -p examples --test bridge_proof -- --nocapture \
  >"$log" 2>&1 || status=$?
grep -v ' sent, .* received, ' "$log" >&2 || true
line=$(grep -E '^[0-9]+ sent, [0-9]+ received, [0-9]+ lost, [0-9]+ duplicated$' "$log" | tail -1 || true)
echo "${line:-the proof did not finish: see the output above}"
exit "$status"
