//! A store of your own: a journal file (every commit appended as one checksummed record and
//! fsync'd, replayed on open), given the whole session logic by `KvStore`, proved correct by
//! the conformance suite, then used by a client. `custom_store crash-child PATH` is the child
//! of its SIGKILL proof (`examples/tests/custom_store_crash.rs`, with the conformance
//! feature's crash harness).
//!
//! `MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin custom_store`
#![forbid(unsafe_code)]

mod journal;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use journal::{JournalBackend, JournalStore};
use mooring::conformance::{self, Damage, StoreFactory};
use mooring::store::{KvOpen, SessionKey, StoreError};
use mooring::{Client, QoS};

/// How the conformance suite makes, reopens and damages journal stores.
struct Factory(tempfile::TempDir, std::sync::atomic::AtomicU32);

#[async_trait::async_trait]
impl StoreFactory for Factory {
    type Store = JournalStore;
    type Location = PathBuf;

    async fn create(&self) -> Result<(JournalStore, PathBuf), StoreError> {
        let n = self.1.fetch_add(1, Ordering::SeqCst);
        let path = self.0.path().join(format!("store-{n}.journal"));
        Ok((JournalStore::open(path.clone())?, path))
    }

    async fn reopen(&self, path: &PathBuf) -> Result<JournalStore, StoreError> {
        JournalStore::open(path.clone())
    }

    async fn damage(
        &self,
        path: &PathBuf,
        session: &SessionKey,
        damage: Damage,
    ) -> Result<bool, StoreError> {
        // Damage the record through a backend of its own, as a bad disk would under the file.
        let backend = JournalBackend::open(path.clone())?;
        conformance::damage_kv_record(&backend, session, damage)
    }

    fn fail_next_commit(&self, store: &JournalStore) -> bool {
        store.backend().fail_next.store(true, Ordering::SeqCst);
        true
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `custom_store crash-child PATH`: the child of the SIGKILL proof (examples/tests/
    // custom_store_crash.rs), which commits to the journal at PATH until it is killed.
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, path] = args.as_slice()
        && mode == "crash-child"
    {
        let store = JournalStore::open(PathBuf::from(path))?;
        conformance::crash::run_child(&store).await?;
        return Ok(());
    }
    let report = conformance::run(&Factory(tempfile::tempdir()?, Default::default())).await;
    println!("{report}");
    if !report.passed_all() {
        return Err("the journal store fails the conformance suite".into());
    }

    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let dir = tempfile::tempdir()?;
    let store = Arc::new(JournalStore::open(dir.path().join("client.journal"))?);
    let (client, _messages) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url)
        .client_id("mooring-custom-store")
        .store_arc(store)
        .connect()
        .await?;
    let reason = client
        .publish("custom/store", "kept in a journal", QoS::ExactlyOnce)
        .await?
        .await?;
    println!("published through the journal store: {reason:?}");
    client.disconnect().await?;
    Ok(())
}
