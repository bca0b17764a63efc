#!/usr/bin/env bash
# Installs the QUIC broker the QUIC tests and benchmark run against when it is missing: the
# `mqttv5` command of the mqttv5-cli crate (a broker this project did not write), built from
# crates.io with `cargo install`, at the version the tests were written against. Not
# `--locked`: its lock file names a webpki-roots release the registry mirror may not have.
set -euo pipefail
version=0.29.10
bin="${CARGO_HOME:-$HOME/.cargo}/bin/mqttv5"
for candidate in "${MQTTV5_BIN:-}" "$bin" "$(command -v mqttv5 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] \
    && [ "$("$candidate" --version 2>/dev/null)" = "mqttv5 $version" ]; then
    exit 0
  fi
done
echo "mqttv5 $version is missing: installing it (cargo install mqttv5-cli --version $version, a few minutes)" >&2
cargo install --quiet mqttv5-cli --version "$version"
