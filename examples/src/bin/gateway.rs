//! A durable bridge: reads lines from standard input (or simulates a sensor) and publishes each
//! at QoS 2. Kill it at any moment and start it again: nothing accepted is lost or sent twice.
//!
//! ```text
//! MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin gateway < readings.txt
//! tail -f readings.log | cargo run -p examples --bin gateway     # each line as it comes
//! cargo run -p examples --bin gateway -- --simulate 100
//! cargo run -p examples --bin gateway -- --config examples/gateway.toml --simulate 100
//! cargo run -p examples --features sled --bin gateway     # the sled store instead of redb
//! GATEWAY_POSTGRES="host=db user=gw dbname=mooring" cargo run -p examples --bin gateway
//! ```
//! The store lives at `GATEWAY_STORE` (default `gateway.redb` or `gateway.sled`), or, with
//! `GATEWAY_POSTGRES` set, in that PostgreSQL database: run the same command on a second
//! machine and it waits as the standby, takes the session over when this one dies, and this
//! one exits (status 3) if it comes back to find the session taken. With
//! `--config FILE` every client setting comes from that TOML file (see `examples/gateway.toml`);
//! without it, the server is `MQTT_URL`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use mooring::store::SessionStore;
use mooring::{Client, ClientBuilder, ClientEvent, QoS};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

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

/// Where the readings come from.
enum Source {
    /// Standard input, line by line as each arrives (`tail -f readings.log | gateway`).
    Stdin(tokio::io::Lines<BufReader<tokio::io::Stdin>>),
    /// A simulated sensor: this many readings, then the end.
    Simulated { next: u64, count: u64 },
}

impl Source {
    async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        match self {
            Self::Stdin(lines) => lines.next_line().await,
            Self::Simulated { next, count } => {
                if next >= count {
                    return Ok(None);
                }
                let i = *next;
                *next += 1;
                Ok(Some(format!(
                    "temperature={:.1} seq={i}",
                    20.0 + (i % 7) as f64
                )))
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let path = std::env::var("GATEWAY_STORE").unwrap_or_else(|_| DEFAULT_STORE.into());
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let config = match args.iter().position(|a| a == "--config") {
        Some(at) if at + 1 < args.len() => Some(args.drain(at..at + 2).nth(1).unwrap_or_default()),
        Some(_) => return Err("--config needs a file".into()),
        None => None,
    };
    let mut source = match args.as_slice() {
        [flag, n] if flag == "--simulate" => Source::Simulated {
            next: 0,
            count: n.parse()?,
        },
        [] => Source::Stdin(BufReader::new(tokio::io::stdin()).lines()),
        _ => {
            return Err(
                "usage: gateway [--config FILE] [--simulate N] (lines come from standard input)"
                    .into(),
            );
        }
    };

    let builder = match config {
        // Every setting from the file: servers, identity, queue, Will, TLS, ...
        Some(file) => ClientBuilder::from_config_file(&file)?,
        None => Client::builder()
            .protocol(examples::mqtt_version()?)
            .server(url)
            .client_id("mooring-gateway")
            .session_expiry(Duration::from_secs(7 * 86_400)),
    };
    let store = match std::env::var("GATEWAY_POSTGRES") {
        Ok(connection) => {
            let store: Arc<dyn SessionStore> =
                Arc::new(mooring::store::PostgresStore::open(connection.as_str())?);
            eprintln!("session in PostgreSQL: waiting until this gateway owns it");
            store
        }
        Err(_) => open_store(&path)?,
    };
    let mut builder = builder.store_arc(store.clone());
    // Taken before the start, so that the first connection's events are seen too.
    let mut events = builder.events();
    // start(), not connect(): a gateway must run, and queue durably, while the broker is away.
    let (client, _messages) = builder.start().await?;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                ClientEvent::Connected {
                    server,
                    session_present,
                    ..
                } => {
                    eprintln!("connected to {server} (session present: {session_present})")
                }
                ClientEvent::SessionLost { resent, .. } => {
                    eprintln!("the broker had lost the session; {resent} messages sent again")
                }
                ClientEvent::ConnectionLost { reason, .. } => {
                    eprintln!("connection lost: {reason}")
                }
                ClientEvent::SessionTakenOver { holder, .. } => {
                    // Another gateway owns the session now: restart as its standby.
                    eprintln!("{holder} took the session over; exiting");
                    std::process::exit(3);
                }
                _ => {}
            }
        }
    });

    // Each reading is published as it arrives; its delivery is awaited in the background, so
    // that a slow broker never holds up reading (the durable queue absorbs the difference).
    let mut deliveries = JoinSet::new();
    let mut accepted = 0u64;
    while let Some(line) = source.next_line().await? {
        // Durable in the store when this returns; the broker gets it whenever it is reachable.
        let delivery = client
            .publish("gateway/readings", line, QoS::ExactlyOnce)
            .await?;
        accepted += 1;
        deliveries.spawn(delivery);
        while let Some(done) = deliveries.try_join_next() {
            done??;
        }
    }
    while let Some(done) = deliveries.join_next().await {
        done??;
    }
    eprintln!("{accepted} readings accepted and delivered");
    client.disconnect().await?;
    // Everything released and finished before the process ends (a shared store hands its
    // sessions to a standby at once).
    store.close().await?;
    Ok(())
}
