#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, packaging, docs, every test of the
# workspace, and a short fuzz run of the decoder and the engine (FUZZ_SECONDS, default 30; 0
# skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# The tests against a real broker spawn their own mosquitto, those of the PostgreSQL store
# their own PostgreSQL, those of proxies their own tinyproxy and microsocks, those of
# PKCS#11 their own SoftHSM2 token, and those of QUIC their own mqttv5 broker.
bash scripts/install-mosquitto.sh
bash scripts/install-postgres.sh
# The proxy tests go through real proxies: tinyproxy and microsocks.
bash scripts/install-proxies.sh
# The PKCS#11 tests keep their keys in SoftHSM2 tokens, made with OpenSC's pkcs11-tool.
bash scripts/install-softhsm.sh
# The QUIC tests run against the mqttv5 broker (a cargo install, a few minutes the first time).
bash scripts/install-mqttv5.sh
# bench quic's emulated link (its smoke test runs in CI): ip and iptables.
bash scripts/install-link-tools.sh

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "scripts/features.sh: mooring-mqtt with no default features, each feature alone, all"
bash scripts/features.sh

step "scripts/new-user.sh: a fresh crate on the newest dependencies builds without warnings"
bash scripts/new-user.sh

step "mooring-core without default features depends on no async runtime (cargo tree)"
runtimes=$(cargo tree -p mooring-core -e normal --no-default-features --prefix none \
  | grep -E '^(tokio|async-std|smol|async-executor|async-io|glommio) ' || true)
if [ -n "$runtimes" ]; then
  printf 'mooring-core depends on an async runtime:\n%s\n' "$runtimes" >&2
  exit 1
fi
echo "no runtime in mooring-core's dependencies"

# Every crate a user depends on packages and builds from its package alone, as it would from
# the registry (the workspace's unpublished crates resolve from a local overlay).
step "cargo package (the published crates)"
# cargo unpacks the overlay's crates into $CARGO_HOME/registry/src/-<hash>/ (the hash is of
# this checkout's path) and reuses an earlier unpacking and build of the same version, as it
# may for a published crate: mooring-mqtt was once verified against a stale mooring-core. Drop
# both, so that every run verifies against the crates it has just packaged.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/mooring-*
rm -rf "${CARGO_TARGET_DIR:-target}"/debug/.fingerprint/mooring-*
cargo package --quiet --allow-dirty -p mooring-core -p mooring-store-memory -p mooring-store-redb \
  -p mooring-store-sled -p mooring-store-sqlite -p mooring-store-postgres -p mooring-mqtt -p mooring-cli
echo "mooring-core, mooring-store-{memory,redb,sled,sqlite,postgres}, mooring-mqtt, mooring-cli package"

step "cargo doc --workspace --no-deps (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

fuzz_seconds=${FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" -gt 0 ]; then
  step "scripts/fuzz.sh $fuzz_seconds"
  bash scripts/fuzz.sh "$fuzz_seconds"
fi

# Last, so that its summary closes the output.
step "cargo test --workspace"
cargo test --workspace
