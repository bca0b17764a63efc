//! An exactly-once bridge from one broker to another: every message received from broker A
//! under a filter is published to broker B under a mapped topic, at its own QoS. Each one is
//! forwarded with `Message::forward`, which stores the copy (in B's session) and the ack of
//! the original (in A's) in one commit of the one store both clients share: kill the bridge
//! at any moment and start it again, and a QoS 2 message reaches B exactly once. (QoS 1
//! messages reach it at least once: a QoS 1 ack leaves no marker to store.)
//!
//! ```text
//! BRIDGE_FROM=mqtt://10.0.0.5 BRIDGE_TO=mqtts://cloud.example:8883 \
//!     cargo run -p examples --bin bridge -- 'plant/#' site-7/
//! ```
//! Arguments: the filter to bridge (default `plant/#`) and the prefix each topic gets on B
//! (default `bridged/`); `plant/1/temp` becomes `site-7/plant/1/temp`. `BRIDGE_FROM` and
//! `BRIDGE_TO` default to `mqtt://127.0.0.1:1883` and `mqtt://127.0.0.1:1884`, the store to
//! `bridge.redb` (`BRIDGE_STORE`). Prints `BRIDGING` once subscribed; stops cleanly on Ctrl-C,
//! SIGTERM or when its standard input closes.
#![forbid(unsafe_code)]

use std::time::Duration;

use mooring::store::RedbStore;
use mooring::{Client, QoS};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Resolves on Ctrl-C, SIGTERM, or the end of standard input.
async fn stop_requested() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let stdin_closed =
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        _ = stdin_closed => {}
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let from = env_or("BRIDGE_FROM", "mqtt://127.0.0.1:1883");
    let to = env_or("BRIDGE_TO", "mqtt://127.0.0.1:1884");
    let mut args = std::env::args().skip(1);
    let filter = args.next().unwrap_or_else(|| "plant/#".into());
    let prefix = args.next().unwrap_or_else(|| "bridged/".into());
    // One store for both sessions: a forward commits to both at once.
    let store = RedbStore::open(env_or("BRIDGE_STORE", "bridge.redb"))?;
    let session = |server: &str| {
        Client::builder()
            .server(server)
            .client_id("bridge")
            .session_expiry(Duration::from_secs(7 * 86_400))
            .store(store.clone())
    };
    // Both start offline if they must: copies queue durably until B is reachable.
    let (to_b, _nothing) = session(&to).start().await?;
    let (from_a, mut messages) = session(&from).start().await?;
    from_a.subscribe(filter.as_str(), QoS::ExactlyOnce).await?;
    println!("BRIDGING {filter} from {from} to {to} as {prefix}…");

    let bridging = async {
        while let Some(message) = messages.recv().await {
            let mut copy = message.publish().clone();
            copy.topic = format!("{prefix}{}", copy.topic);
            // Returns once the copy and the original's ack are durable, in one commit; the
            // delivery to B resolves later, on its own.
            drop(message.forward(&to_b, copy).await?);
        }
        Ok::<(), mooring::ClientError>(())
    };
    tokio::select! {
        done = bridging => done?,
        () = stop_requested() => {}
    }
    from_a.disconnect().await?;
    to_b.disconnect().await?;
    Ok(())
}
