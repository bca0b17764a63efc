//! A durable bridge: reads lines from standard input (or simulates a sensor) and publishes each
//! at QoS 2. Kill it at any moment and start it again: nothing accepted is lost or sent twice.
//!
//! ```text
//! MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin gateway < readings.txt
//! cargo run -p examples --bin gateway -- --simulate 100
//! cargo run -p examples --features sled --bin gateway     # the sled store instead of redb
//! ```
//! The store lives at `GATEWAY_STORE` (default `gateway.redb` or `gateway.sled`).
#![forbid(unsafe_code)]

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use mooring::store::SessionStore;
use mooring::{Client, ClientEvent, QoS};

#[cfg(not(feature = "sled"))]
fn open_store(path: &str) -> Result<Arc<dyn SessionStore>, mooring::store::StoreError> {
    Ok(Arc::new(mooring::store::RedbStore::open(path)?))
}

#[cfg(feature = "sled")]
fn open_store(path: &str) -> Result<Arc<dyn SessionStore>, mooring::store::StoreError> {
    Ok(Arc::new(mooring::store::SledStore::open(path)?))
}

const DEFAULT_STORE: &str = if cfg!(feature = "sled") {
    "gateway.sled"
} else {
    "gateway.redb"
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let path = std::env::var("GATEWAY_STORE").unwrap_or_else(|_| DEFAULT_STORE.into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let simulate: Option<u64> = match args.as_slice() {
        [flag, n] if flag == "--simulate" => Some(n.parse()?),
        [] => None,
        _ => return Err("usage: gateway [--simulate N] (lines come from standard input)".into()),
    };

    // start(), not connect(): a gateway must run, and queue durably, while the broker is away.
    let (client, _messages) = Client::builder()
        .server(url)
        .client_id("mooring-gateway")
        .session_expiry(Duration::from_secs(7 * 86_400))
        .store_arc(open_store(&path)?)
        .start()
        .await?;
    let mut events = client.events();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match event {
                ClientEvent::Connected {
                    server,
                    session_present,
                    ..
                } => {
                    eprintln!("connected to {server} (session present: {session_present})")
                }
                ClientEvent::ConnectionLost { reason, .. } => {
                    eprintln!("connection lost: {reason}")
                }
                _ => {}
            }
        }
    });

    let lines: Box<dyn Iterator<Item = String> + Send> = match simulate {
        Some(n) => {
            Box::new((0..n).map(|i| format!("temperature={:.1} seq={i}", 20.0 + (i % 7) as f64)))
        }
        None => Box::new(
            std::io::stdin()
                .lock()
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
                .into_iter(),
        ),
    };
    let mut deliveries = Vec::new();
    for line in lines {
        // Durable in the store when this returns; the broker gets it whenever it is reachable.
        deliveries.push(
            client
                .publish("gateway/readings", line, QoS::ExactlyOnce)
                .await?,
        );
    }
    let accepted = deliveries.len();
    for delivery in deliveries {
        delivery.await?;
    }
    eprintln!("{accepted} readings accepted and delivered");
    client.disconnect().await?;
    Ok(())
}
