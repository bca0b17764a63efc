#!/usr/bin/env bash
# The Cargo features of mooring-mqtt compose (they are additive): the library builds and lints
# clean with no default features, with each feature alone and with all of them, and its unit
# tests pass without default features (where an address needing `tls` or `websocket` is
# refused naming the feature). The feature list is read from Cargo.toml, so a new feature is
# checked without touching this script.
set -euo pipefail
cd "$(dirname "$0")/.."

features=$(awk '
  /^\[features\]/ { inside = 1; next }
  /^\[/ { inside = 0 }
  inside && /^[a-z][a-z0-9_-]* *=/ { sub(/ *=.*/, ""); if ($0 != "default") print }
' Cargo.toml)
if [ -z "$features" ]; then
  echo "no features found in Cargo.toml" >&2
  exit 1
fi

lint() {
  echo "--- mooring-mqtt $*"
  cargo clippy --quiet -p mooring-mqtt --lib "$@" -- -D warnings
}

lint --no-default-features
for feature in $features; do
  lint --no-default-features --features "$feature"
done
lint --all-features
echo "--- unit tests without default features"
cargo test --quiet -p mooring-mqtt --lib --no-default-features
echo "mooring-mqtt builds with no default features, with each of: $(echo $features | tr '\n' ' ')and with all"
