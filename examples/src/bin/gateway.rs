//! A durable bridge: reads lines from standard input (or simulates a sensor) and publishes each
//! at QoS 2. Kill it at any moment and start it again: nothing accepted is lost or sent twice.
//!
//! ```text
//! MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin gateway < readings.txt
//! tail -f readings.log | cargo run -p examples --bin gateway     # each line as it comes
//! cargo run -p examples --bin gateway -- --simulate 100
//! cargo run -p examples --bin gateway -- --config examples/gateway.toml --simulate 100
//! cargo run -p examples --features sled --bin gateway     # the sled store instead of redb
//! cargo run -p examples --features sqlite --bin gateway   # the SQLite store instead of redb
//! GATEWAY_POSTGRES="host=db user=gw dbname=mooring" cargo run -p examples --features postgres --bin gateway
//! ```
//! The store is the configuration's `[store]` section, else `GATEWAY_STORE` (default
//! `gateway.redb`, `gateway.sqlite` or `gateway.sled`), or, with the `postgres` feature and `GATEWAY_POSTGRES`
//! set, that PostgreSQL database: run the same command on a second machine and it waits as
//! the standby, takes the session over when this one dies, and this one exits (status 3) if it
//! comes back to find the session taken. With `--config FILE` every client setting comes from
//! that TOML file (see `examples/gateway.toml`); without it, the server is `MQTT_URL`.
//!
//! Logs go through `tracing` (`RUST_LOG=mooring=debug` for every connection attempt). SIGTERM
//! or Ctrl-C stops reading, lets what is in flight be acknowledged, and disconnects; what is
//! not acknowledged by then stays in the store for the next start.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use mooring::client::{ClientConfig, DeliveryError};
use mooring::store::SessionStore;
use mooring::{Client, ClientBuilder, ClientEvent, QoS};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tracing::{info, warn};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a reading's delivery came to.
type Delivered = Result<mooring::ReasonCode, DeliveryError>;

/// Publishes in flight at most: each is a task awaiting its commit, then its acknowledgement.
const IN_FLIGHT: usize = 10_000;

#[cfg(not(any(feature = "sled", feature = "sqlite")))]
fn open_store(path: &str) -> Result<Arc<dyn SessionStore>, mooring::store::StoreError> {
    Ok(Arc::new(mooring::store::RedbStore::open(path)?))
}

#[cfg(feature = "sled")]
fn open_store(path: &str) -> Result<Arc<dyn SessionStore>, mooring::store::StoreError> {
    Ok(Arc::new(mooring::store::SledStore::open(path)?))
}

#[cfg(all(feature = "sqlite", not(feature = "sled")))]
fn open_store(path: &str) -> Result<Arc<dyn SessionStore>, mooring::store::StoreError> {
    Ok(Arc::new(mooring::store::SqliteStore::open(path)?))
}

const DEFAULT_STORE: &str = if cfg!(feature = "sled") {
    "gateway.sled"
} else if cfg!(feature = "sqlite") {
    "gateway.sqlite"
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
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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

    let (builder, store) = match config {
        // Every setting from the file: servers, identity, queue, Will, TLS, the store, ...
        Some(file) => {
            let config = ClientConfig::load(&file)?;
            let store = match &config.store {
                Some(_) => config.open_store()?,
                None => default_store(&path)?,
            };
            (ClientBuilder::from_config(&config)?, store)
        }
        None => (
            Client::builder()
                .protocol(examples::mqtt_version()?)
                .server(url)
                .client_id("mooring-gateway")
                .session_expiry(Duration::from_secs(7 * 86_400)),
            default_store(&path)?,
        ),
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
                } => info!(%server, session_present, "connected"),
                ClientEvent::SessionLost { resent, .. } => {
                    warn!(
                        resent,
                        "the broker had lost the session; messages sent again"
                    )
                }
                ClientEvent::ConnectionLost { reason, .. } => warn!(%reason, "connection lost"),
                ClientEvent::SessionTakenOver { holder, .. } => {
                    // Another gateway owns the session now: restart as its standby.
                    warn!(%holder, "the session was taken over; exiting");
                    std::process::exit(3);
                }
                _ => {}
            }
        }
    });

    // Each reading is a task: publishes made together share one store commit, and a slow
    // broker never holds up reading (the durable queue absorbs the difference). One task
    // awaiting each publish in turn would run at the store's commit rate.
    let mut in_flight = JoinSet::new();
    let mut accepted = 0u64;
    let mut undelivered = 0u64;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut stopped = false;
    loop {
        let line = tokio::select! {
            line = source.next_line() => line?,
            _ = sigterm.recv() => { stopped = true; None }
            _ = tokio::signal::ctrl_c() => { stopped = true; None }
        };
        let Some(line) = line else { break };
        while in_flight.len() >= IN_FLIGHT {
            undelivered += settled(in_flight.join_next().await);
        }
        let client = client.clone();
        in_flight.spawn(async move {
            // Durable in the store once this returns; the broker gets it whenever it is
            // reachable.
            let delivery = client
                .publish("gateway/readings", line, QoS::ExactlyOnce)
                .await?;
            Ok::<_, Error>(delivery.await)
        });
        accepted += 1;
        while let Some(done) = in_flight.try_join_next() {
            undelivered += settled(Some(done));
        }
    }
    // The input ended: wait for the acknowledgements, unless told to stop.
    while !stopped {
        tokio::select! {
            done = in_flight.join_next() => match done {
                Some(done) => undelivered += settled(Some(done)),
                None => break,
            },
            _ = sigterm.recv() => stopped = true,
            _ = tokio::signal::ctrl_c() => stopped = true,
        }
    }
    info!(accepted, undelivered, "readings accepted");
    eprintln!("{accepted} readings accepted, {undelivered} not delivered");
    // What is in flight gets `drain_timeout` to be acknowledged, then DISCONNECT; what is not
    // acknowledged by then stays in the store for the next start.
    client.disconnect().await?;
    in_flight.shutdown().await;
    // Everything released and finished before the process ends (a shared store hands its
    // sessions to a standby at once).
    store.close().await?;
    Ok(())
}

/// What became of one reading's task; 1 when it was not delivered. A reading the queue
/// dropped (the `drop_oldest` policy) or that expired is logged, not fatal: the gateway goes
/// on with the newer ones.
fn settled(done: Option<Result<Result<Delivered, Error>, tokio::task::JoinError>>) -> u64 {
    match done {
        Some(Ok(Ok(Ok(_)))) | None => 0,
        Some(Ok(Ok(Err(error)))) => {
            warn!(%error, "a reading was not delivered");
            1
        }
        Some(Ok(Err(error))) => {
            warn!(%error, "a reading was not accepted");
            1
        }
        Some(Err(error)) => {
            warn!(%error, "a publishing task failed");
            1
        }
    }
}

/// The store when the configuration names none: PostgreSQL with `GATEWAY_POSTGRES` (feature
/// `postgres`), else the file or directory at `path`.
fn default_store(path: &str) -> Result<Arc<dyn SessionStore>, Error> {
    #[cfg(feature = "postgres")]
    if let Ok(connection) = std::env::var("GATEWAY_POSTGRES") {
        let store = mooring::store::PostgresStore::open(connection.as_str())?;
        info!("session in PostgreSQL: waiting until this gateway owns it");
        return Ok(Arc::new(store));
    }
    Ok(open_store(path)?)
}
