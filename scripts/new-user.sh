#!/usr/bin/env bash
# Builds Mooring as a new user's project would: a fresh crate outside this workspace that
# depends on mooring-mqtt with every feature, without a lock file, so cargo resolves the
# newest compatible version of every dependency (this workspace's Cargo.lock pins older ones).
# Fails on any warning or error in Mooring's crates, such as a deprecation a newer release of
# a dependency brought.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

features=$(awk '
  /^\[features\]/ { inside = 1; next }
  /^\[/ { inside = 0 }
  inside && /^[a-z][a-z0-9_-]* *=/ { sub(/ *=.*/, ""); if ($0 != "default") printf "\"%s\", ", $0 }
' Cargo.toml)

project=$(mktemp -d)
trap 'rm -rf "$project"' EXIT
mkdir -p "$project/src"
cat > "$project/Cargo.toml" <<TOML
[package]
name = "new-user"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
mooring-mqtt = { path = "$repo", features = [$features] }
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }

[workspace]
TOML
cat > "$project/src/main.rs" <<'RUST'
use mooring::{Client, QoS, store::RedbStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _messages) = Client::builder()
        .server("mqtt://127.0.0.1:1883")
        .client_id("new-user")
        .store(RedbStore::open("new-user.redb")?)
        .start()
        .await?;
    let delivery = client.publish("t", "x", QoS::ExactlyOnce).await?;
    drop(delivery);
    client.disconnect().await?;
    Ok(())
}
RUST

log="$project/build.log"
# Its own target directory: the workspace's holds builds against the pinned versions.
CARGO_TARGET_DIR="$repo/target/new-user" \
  cargo check --manifest-path "$project/Cargo.toml" --message-format short >"$log" 2>&1 || {
  cat "$log" >&2
  echo "a new user's project does not build" >&2
  exit 1
}
if grep -E '^(warning|error)|: (warning|error)' "$log" >/dev/null; then
  grep -E '^(warning|error)|: (warning|error)' "$log" >&2
  echo "a new user's build of mooring-mqtt has warnings (above)" >&2
  exit 1
fi
grep -E 'Checking (rustls|tokio|redb) ' "$log" | sed 's/^ */resolved: /' || true
echo "a new user's project builds mooring-mqtt with every feature and the newest dependencies, without warnings"
