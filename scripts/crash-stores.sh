#!/usr/bin/env bash
# Kills a process committing to each durable store N times (default 200) with SIGKILL at random
# moments and checks after every kill that each acknowledged batch is whole in the store.
# Usage: scripts/crash-stores.sh [N]   (CRASH_SEED=... replays a run)
set -euo pipefail
cd "$(dirname "$0")/.."
CRASH_CYCLES=${1:-200} cargo test --release -p integration --test store_crash -- --nocapture --test-threads 1
