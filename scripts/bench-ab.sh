#!/usr/bin/env bash
# A change measured against an earlier commit, as BENCHMARKS.md's before/after tables are:
# builds `bench` at REV (a git worktree in target/bench-ab/), starts mosquitto at each broker
# window, and runs rumqttc, Mooring at REV and Mooring as checked out in turn, RUNS times,
# 16 tasks. Prints each one's median msg/s and client CPU µs per message, and the ratios of
# the medians to rumqttc's (only ratios within one run mean anything across machines).
#   scripts/bench-ab.sh REV [COUNT] [RUNS] [PAYLOAD] [STORE] [WINDOW...]
#   scripts/bench-ab.sh be3d59d 64000 5 64 memory 20 100 0
# Needs mosquitto and git.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/bench-ab.sh REV [COUNT] [RUNS] [PAYLOAD] [STORE] [WINDOW...]}
count=${2:-64000}
runs=${3:-5}
payload=${4:-64}
store=${5:-memory}
shift $(($# < 5 ? $# : 5))
windows=("$@")
[ ${#windows[@]} -gt 0 ] || windows=(20 100 0)

target=${CARGO_TARGET_DIR:-$PWD/target}
base_tree="$target/bench-ab/tree"
work=$(mktemp -d)
broker=""
stop_broker() { [ -z "$broker" ] || { kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; }; broker=""; }
trap 'stop_broker; rm -rf "$work"; git worktree remove --force "$base_tree" >/dev/null 2>&1 || true' EXIT
rm -rf "$base_tree"
git worktree prune
git worktree add --detach "$base_tree" "$rev" >/dev/null
# Each build in a target dir of its own: a shared one mixes the two commits' artifacts.
CARGO_TARGET_DIR="$target/bench-ab/target" cargo build --release --locked -q \
  --manifest-path "$base_tree/Cargo.toml" -p integration --bin bench
cargo build --release --locked -q -p integration --bin bench
base="$target/bench-ab/target/release/bench"
this="$target/release/bench"
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)

# The median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "Before: $rev ($(git rev-parse --short "$rev")); after: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' with uncommitted changes')"
echo "$payload B, QoS 1, 16 tasks, $count messages, $store store, $runs runs interleaved"
echo
echo "| broker window | rumqttc msg/s | before msg/s | after msg/s | before ÷ rumqttc | after ÷ rumqttc | CPU µs/msg rumqttc / before / after | after ÷ before |"
echo "|---|---|---|---|---|---|---|---|"
for window in "${windows[@]}"; do
  port=$((20000 + RANDOM % 30000))
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages %s\nset_tcp_nodelay true\n' \
    "$port" "$window" >"$work/mosquitto.conf"
  "$mosquitto" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
  broker=$!
  sleep 0.5
  kill -0 "$broker" || { cat "$work/mosquitto.log" >&2; exit 1; }
  url="mqtt://127.0.0.1:$port"
  : >"$work/rows"
  for _ in $(seq "$runs"); do
    # ROW rate p50 p99 rss batch cpu
    echo "rumqttc $("$base" row rumqttc memory "$url" 1 "$payload" 16 "$count" 0)" >>"$work/rows"
    echo "before $("$base" row mooring "$store" "$url" 1 "$payload" 16 "$count" 64)" >>"$work/rows"
    echo "after $("$this" row mooring "$store" "$url" 1 "$payload" 16 "$count" 64)" >>"$work/rows"
  done
  stop_broker
  declare -A rate cpu
  for who in rumqttc before after; do
    rate[$who]=$(awk -v w="$who" '$1 == w { print $3 }' "$work/rows" | median)
    cpu[$who]=$(awk -v w="$who" '$1 == w { print $8 }' "$work/rows" | median)
  done
  awk -v win="$window" -v r="${rate[rumqttc]}" -v b="${rate[before]}" -v a="${rate[after]}" \
    -v cr="${cpu[rumqttc]}" -v cb="${cpu[before]}" -v ca="${cpu[after]}" 'BEGIN {
      printf "| %s | %d | %d | %d | %.2f | %.2f | %.2f / %.2f / %.2f | %.2f |\n",
        (win == 0 ? "0 (65,535)" : win), r, b, a, b / r, a / r, cr, cb, ca, a / b }'
done
