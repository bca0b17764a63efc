#!/usr/bin/env bash
# The failover proof, long: gateway A active and gateway B standby on one session in
# PostgreSQL (started for the run, like mosquitto), publishing and consuming numbered QoS 2
# messages; N times (default 100) the active one is killed with SIGKILL or frozen with SIGSTOP,
# the standby takes over when the lease lapses, a frozen one is woken with SIGCONT and must be
# fenced (it neither connects again nor sends a byte on a connection the broker held open), and
# the old one restarts as the standby. Then every
# message is checked (see integration/tests/failover_proof.rs).
# Usage: scripts/failover.sh [N]    (FAILOVER_SEED=... replays a run; FAILOVER_LEASE_MS=...)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-mosquitto.sh
bash scripts/install-postgres.sh
FAILOVER_TAKEOVERS=${1:-100} cargo test --release -p integration --test failover_proof \
  -- --nocapture --test-threads 1
