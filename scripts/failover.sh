#!/usr/bin/env bash
# The failover proof, long: three client ids, each a pair of gateways (one active, one
# standby) on one session in one PostgreSQL database (started for the run, like mosquitto),
# publishing and consuming numbered QoS 2 messages; N rounds (default 100), each doing one
# fault: to one pair's active gateway SIGKILL, SIGSTOP past the lease (woken after the broker
# closed its connection, or before), SIGSTOP within it (no takeover), its database connections
# reset or dropped into a black hole, its lease clock stepped ahead (no takeover); or a restart
# of PostgreSQL under all of them. Past the lease the standby takes over; the old one, woken
# or reaching its database again, must be fenced (it neither connects again nor sends a byte,
# as its proxy and the broker's log show) and restarts as the standby. Then every message is
# checked against mosquitto_sub and the ledgers, and the verdict line printed (see
# integration/tests/failover_proof/main.rs).
# Usage: scripts/failover.sh [N]    (FAILOVER_SEED=... replays a run; FAILOVER_LEASE_MS=...)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-mosquitto.sh
bash scripts/install-postgres.sh
FAILOVER_TAKEOVERS=${1:-100} cargo test --release -p integration --test failover_proof \
  -- --nocapture --test-threads 1
