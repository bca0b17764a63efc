#!/usr/bin/env bash
# The proof that exactly-once reaches the application with automatic ack, long: an
# application reading numbered messages the obvious way (5 ms of handling each) is killed N
# times with SIGKILL (default 100); every number must reach it, and at QoS 2 a number comes
# again only if the application held it at a kill (see integration/tests/handling_proof.rs).
# Usage: scripts/handling.sh [N] [MESSAGES]    (HANDLING_SEED=... replays a run)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-100}
HANDLING_KILLS=$kills HANDLING_MESSAGES=${2:-$((kills * 120))} \
  cargo test --release -p integration --test handling_proof -- --nocapture --test-threads 1
