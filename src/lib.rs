//! Mooring: an MQTT v5 client for Rust whose persistent sessions survive crashes.
//!
//! This crate is what applications depend on: the package `mooring-mqtt`, whose library is
//! `mooring` (the name `mooring` on crates.io belongs to an unrelated crate). It holds the tokio
//! driver ([`client`]) and re-exports the runtime-free core (`mooring-core`: the wire format,
//! the session engine, the storage contract) and the stores chosen by feature flag.
//!
//! | Feature | Default | Gives |
//! |---|---|---|
//! | `redb` | yes | [`store::RedbStore`], durable (kill -9 and power loss) |
//! | `tls` | yes | `mqtts://` and `wss://` through rustls |
//! | `metrics` | no | counters, gauges, histograms through the `metrics` facade ([`client::metrics`]) |
//! | `toml` | yes | `ClientConfig::load`/`from_toml`/`to_toml`, `ClientBuilder::from_config_file` |
//! | `sqlite` | no | `store::SqliteStore`: SQLite built in, durable (kill -9 and power loss: WAL, `synchronous = FULL`), readable with the `sqlite3` shell |
//! | `sled` | no | `store::SledStore`: no acknowledged batch lost to kill -9, but 1 in 1,500 kills left a database that would not open; not for power loss |
//! | `postgres` | no | `store::PostgresStore`: the session in PostgreSQL, owned by one process at a time, for a standby gateway on another machine |
//! | `websocket` | no | `ws://` and `wss://` |
//! | `quic` | no | `quic://`: MQTT over QUIC (quinn), one stream, TLS 1.3 with the same settings |
//! | `pkcs11` | no | [`client::Pkcs11Key`]: TLS client keys that stay in a PKCS#11 token (HSM, TPM, secure element) |
//! | `conformance` | no | the store conformance suite, to test a store of your own |
//!
//! ```no_run
//! use std::time::Duration;
//! use mooring::{Client, QoS, store::RedbStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut builder = Client::builder()
//!     .server("mqtt://127.0.0.1:1883")
//!     .client_id("gateway-7")
//!     .session_expiry(Duration::from_secs(86_400))
//!     .store(RedbStore::open("gateway.redb")?);
//! let _events = builder.events(); // every event, the first connection's included
//! let (client, mut messages) = builder.connect().await?;
//! client.subscribe("plant/+/telemetry", QoS::ExactlyOnce).await?;
//! let delivery = client.publish("site/7/status", "up", QoS::ExactlyOnce).await?; // durable
//! delivery.await?; // PUBCOMP
//! // Each recv acks the message before it: one the process dies handling comes again.
//! while let Some(message) = messages.recv().await {
//!     println!("{}: {:?}", message.topic(), message.payload());
//! #   break;
//! }
//! client.disconnect().await?;
//! # Ok(()) }
//! ```
//!
//! See [`client`] for the guided tour.
#![forbid(unsafe_code)]

pub mod client;

pub use client::{
    Backoff, Client, ClientBuilder, ClientError, ClientEvent, ConnectPace, Delivery, DeliveryError,
    DrainRate, Message, Messages, QueuePolicy, Refusal, Router,
};
pub use mooring_core::idempotency;
pub use mooring_core::packet;
pub use mooring_core::packet::{QoS, ReasonCode};
pub use mooring_core::session;

#[cfg(feature = "conformance")]
pub use mooring_core::conformance;

/// The names most programs use, in one import.
///
/// ```no_run
/// use mooring::prelude::*;
///
/// # async fn run() -> Result<(), ClientError> {
/// let (client, mut messages) = Client::builder()
///     .server("mqtt://127.0.0.1:1883")
///     .client_id("gateway-7")
///     .store(MemoryStore::default())
///     .start()
///     .await?;
/// let options = PublishOptions::new(QoS::AtLeastOnce).retain(true);
/// let delivery: Delivery = client.publish_with_options("site/7/state", "up", options).await?;
/// # let _ = (delivery, messages.recv().await); Ok(()) }
/// ```
pub mod prelude {
    pub use crate::client::{
        Backoff, Client, ClientBuilder, ClientConfig, ClientError, ClientEvent, Delivery,
        DeliveryError, Message, Messages, PublishOptions, QueuePolicy, Redelivery,
    };
    pub use crate::packet::{QoS, ReasonCode};
    #[cfg(feature = "redb")]
    pub use crate::store::RedbStore;
    pub use crate::store::{MemoryStore, SessionStore};
}

/// Session storage: the [`SessionStore`](store::SessionStore) trait and the stores.
///
/// | Store | Feature | Survives `kill -9` | Survives power loss |
/// |---|---|---|---|
/// | `RedbStore` | `redb` (default) | yes | yes (`fdatasync` per commit) |
/// | `SqliteStore` | `sqlite` | yes | yes (WAL synced per commit, `synchronous = FULL`) |
/// | `SledStore` | `sled` | yes | not promised (`sync_file_range`, no `fdatasync`) |
/// | `PostgresStore` | `postgres` | yes, and the machine's loss (a standby resumes) | as the database's `synchronous_commit` promises |
/// | `MemoryStore` | always | no | no |
pub mod store {
    pub use mooring_core::store::*;
    pub use mooring_store_memory::{MemoryBackend, MemoryStore};
    #[cfg(feature = "postgres")]
    pub use mooring_store_postgres::{
        BootClock, DatabaseTls, LeaseClock, PostgresBackend, PostgresOptions, PostgresStore,
    };
    #[cfg(feature = "redb")]
    pub use mooring_store_redb::{RedbBackend, RedbStore};
    #[cfg(feature = "sled")]
    pub use mooring_store_sled::{SledBackend, SledStore};
    #[cfg(feature = "sqlite")]
    pub use mooring_store_sqlite::{SqliteBackend, SqliteStore};
}
