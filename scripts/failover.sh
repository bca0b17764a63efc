#!/usr/bin/env bash
# The failover proof, long: gateway A active and gateway B standby on one session in
# PostgreSQL (started for the run, like mosquitto), publishing and consuming numbered QoS 2
# messages; N rounds (default 100), each doing one fault to the active one: SIGKILL, SIGSTOP
# past the lease, SIGSTOP within it (no takeover), its database connections reset, or dropped
# into a black hole. Past the lease the standby takes over; the old one, woken or reaching its
# database again, must be fenced (it neither connects again nor sends a byte on a connection
# the broker held open) and restarts as the standby. Then every message is checked, and the
# verdict line printed (see integration/tests/failover_proof.rs).
# Usage: scripts/failover.sh [N]    (FAILOVER_SEED=... replays a run; FAILOVER_LEASE_MS=...)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-mosquitto.sh
bash scripts/install-postgres.sh
FAILOVER_TAKEOVERS=${1:-100} cargo test --release -p integration --test failover_proof \
  -- --nocapture --test-threads 1
