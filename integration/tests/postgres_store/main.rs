//! PostgresStore against a real PostgreSQL per test: the conformance suite, a connection cut in
//! the middle of commits, the database restarting, TLS, a database that stops answering, the
//! schema's migration and the purge of a shared database; ownership (a standby waiting for the
//! lease, a takeover, fencing of a stale owner, lost answers) is in `ownership.rs`.

// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod ownership;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration::postgres::Postgres;
use integration::proxy::{Fault, FaultProxy};
use mooring_core::conformance::{self, Damage, StoreFactory};
use mooring_core::packet::QoS;
use mooring_core::store::{Batch, QueuedPublish, SessionKey, SessionStore, StoreError, StoreOp};
use mooring_store_postgres::{DatabaseTls, PostgresBackend, PostgresOptions, PostgresStore};

/// Runs `f` on a thread of its own: the backend drives its connection on a runtime of its own,
/// which may not be entered from a runtime's worker thread (the store itself always calls it
/// from its own thread).
fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().unwrap()
}

/// Connection options through `proxy` to the database `dbname`.
fn through(proxy: &FaultProxy, dbname: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user=mooring dbname={dbname} connect_timeout=2",
        proxy.port()
    )
}

struct Factory {
    pg: Postgres,
    /// Every store's connections go through it; cutting it fails the next commit.
    proxy: FaultProxy,
    next: AtomicUsize,
}

impl Factory {
    fn options(&self, dbname: &str) -> PostgresOptions {
        // No retries: a cut connection fails the commit, as a failing disk would.
        PostgresOptions::new(through(&self.proxy, dbname)).outage_limit(Duration::ZERO)
    }
}

#[async_trait::async_trait]
impl StoreFactory for Factory {
    type Store = PostgresStore;
    type Location = String;

    async fn create(&self) -> Result<(PostgresStore, String), StoreError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let name = format!("store_{n}");
        self.pg
            .create_database(&name)
            .map_err(|e| StoreError::backend("test", e))?;
        Ok((PostgresStore::open(self.options(&name))?, name))
    }

    async fn reopen(&self, name: &String) -> Result<PostgresStore, StoreError> {
        PostgresStore::open(self.options(name))
    }

    async fn damage(
        &self,
        name: &String,
        session: &SessionKey,
        damage: Damage,
    ) -> Result<bool, StoreError> {
        let options = self.options(name);
        let session = session.clone();
        off_runtime(move || {
            let backend = PostgresBackend::connect(options)?;
            conformance::damage_kv_record(&backend, &session, damage)
        })
    }

    fn fail_next_commit(&self, _store: &PostgresStore) -> bool {
        self.proxy.cut();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let pg = Postgres::start().unwrap();
    let proxy = FaultProxy::start(pg.addr()).unwrap();
    let factory = Factory {
        pg,
        proxy,
        next: AtomicUsize::new(0),
    };
    let report = conformance::run(&factory).await;
    assert!(report.passed_all(), "{report}");
}

/// A store on `pg`'s database for the process named `holder`.
fn open_as(pg: &Postgres, holder: &str, lease: Duration) -> PostgresStore {
    PostgresStore::open(
        PostgresOptions::new(pg.connection())
            .lease(lease)
            .holder(holder),
    )
    .unwrap()
}

fn key() -> SessionKey {
    SessionKey::new("mqtt://broker:1883", "gateway-1")
}

fn queued(n: u64) -> QueuedPublish {
    QueuedPublish {
        qos: QoS::ExactlyOnce,
        packet: Bytes::from(format!("packet {n:06}").into_bytes()),
        expires_at_ms: None,
        accepted_at_ms: Some(n),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_cut_mid_transaction_are_all_or_nothing_and_run_again() {
    let pg = Postgres::start().unwrap();
    let proxy = Arc::new(FaultProxy::start(pg.addr()).unwrap());
    let store = PostgresStore::open(
        PostgresOptions::new(through(&proxy, "postgres")).outage_limit(Duration::from_secs(30)),
    )
    .unwrap();
    let k = key();
    // Cut every connection at random moments while commits run. After a cut the cutter
    // waits for commits to get through before it cuts again: cuts still land at random
    // points of the commits that follow, but a machine on which a backend takes longer to
    // start than the gap between two cuts cannot keep every commit from ever completing
    // (with cuts 5-40 ms apart and nothing more, one such machine never connected again).
    let done = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let cuts = Arc::new(AtomicU64::new(0));
    let cutter = {
        let (proxy, done, committed, cuts) =
            (proxy.clone(), done.clone(), committed.clone(), cuts.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(fastrand::u64(5..40)));
                proxy.cut();
                cuts.fetch_add(1, Ordering::SeqCst);
                // Two commits after the cut: the second ran on a connection made after it
                // (the first may have had its answer before the cut), so the next cut
                // lands on a live connection, not on one already cut.
                let after = committed.load(Ordering::SeqCst);
                while committed.load(Ordering::SeqCst) < after + 2 && !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    // Each commit appends two messages and removes the oldest: the queue the model holds.
    // Commits go on until at least 200 have run and 12 cuts have landed among them (on a
    // fast machine 200 commits can end before the tenth cut).
    let mut model: Vec<u64> = Vec::new();
    let mut next = 0;
    for commit in 0.. {
        if commit >= 200 && cuts.load(Ordering::SeqCst) >= 12 {
            break;
        }
        assert!(commit < 20_000, "the cutter never cut 12 times");
        let mut batch = Batch::new();
        for _ in 0..2 {
            batch.push(StoreOp::PushQueue {
                seq: next,
                message: queued(next),
            });
            model.push(next);
            next += 1;
        }
        let oldest = model.remove(0);
        batch.push(StoreOp::RemoveQueue { seq: oldest });
        store.commit(&k, batch).await.unwrap();
        committed.fetch_add(1, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    cutter.join().unwrap();
    let cuts = cuts.load(Ordering::SeqCst);
    let stored = store.load(&k).await.unwrap();
    let seqs: Vec<u64> = stored.queue.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, model, "the queue after {cuts} cuts");
    assert!(stored.queue.iter().all(|(seq, q)| *q == queued(*seq)));
    assert_eq!(stored.queue_summary.messages, model.len() as u64);
    assert!(
        proxy.connections() >= 10,
        "only {} connections for {cuts} cuts: the cuts did not interrupt the commits",
        proxy.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waits_out_a_database_restart() {
    let mut pg = Postgres::start().unwrap();
    let store = PostgresStore::open(
        PostgresOptions::new(pg.connection()).outage_limit(Duration::from_secs(60)),
    )
    .unwrap();
    let k = key();
    let push = |n| -> Batch {
        vec![StoreOp::PushQueue {
            seq: n,
            message: queued(n),
        }]
        .into()
    };
    store.commit(&k, push(1)).await.unwrap();
    pg.stop();
    let restarted = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        pg.restart().unwrap();
        pg
    });
    let started = Instant::now();
    store.commit(&k, push(2)).await.unwrap();
    let waited = started.elapsed();
    let _pg = restarted.join().unwrap();
    assert!(
        waited >= Duration::from_secs(1),
        "committed after {waited:?} while down"
    );
    let seqs = queued_seqs(&store, &k).await;
    assert_eq!(seqs, vec![1, 2]);
}

/// The sequence numbers of the session's queue, in order.
async fn queued_seqs(store: &PostgresStore, k: &SessionKey) -> Vec<u64> {
    let stored = store.load(k).await.unwrap();
    stored.queue.iter().map(|(seq, _)| *seq).collect()
}

fn one_push(n: u64) -> Batch {
    vec![StoreOp::PushQueue {
        seq: n,
        message: queued(n),
    }]
    .into()
}

fn one_marker(packet_id: u16) -> Batch {
    vec![StoreOp::PutInbound { packet_id }].into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_is_reached_over_tls_and_an_untrusted_server_is_refused() {
    let pg = Postgres::start_with_tls().unwrap();
    let pki = pg.pki().unwrap();
    // By name, so that the certificate's name is checked.
    let connection = pg.connection().replace("host=127.0.0.1", "host=localhost");
    let store = PostgresStore::open(
        PostgresOptions::new(connection.clone()).tls(DatabaseTls::CaFile(pki.ca.clone())),
    )
    .unwrap();
    let k = key();
    store.commit(&k, one_push(1)).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap().queue.len(), 1);
    drop(store);
    // The server takes nothing but TLS: the store's connections were encrypted.
    let plain = PostgresStore::open(PostgresOptions::new(connection.clone()));
    assert!(
        matches!(&plain, Err(StoreError::Open { cause, .. }) if cause.contains("no encryption")),
        "{plain:?}"
    );

    // A CA that did not sign the server's certificate: refused, nothing sent.
    let other =
        integration::pki::Pki::generate(&tempfile::tempdir().unwrap().keep(), "other").unwrap();
    let refused = PostgresStore::open(
        PostgresOptions::new(connection).tls(DatabaseTls::CaFile(other.ca.clone())),
    );
    assert!(
        matches!(&refused, Err(StoreError::Open { cause, .. }) if cause.contains("certificate")),
        "{refused:?}"
    );
}

/// A connection that falls into a black hole (a firewall on the path forgot it: nothing
/// answers, nothing resets) is given up at the statement deadline, a third of the lease, and
/// the commit runs again on a new connection. TCP alone would wait for many minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_in_a_black_hole_is_given_up_at_the_statement_deadline() {
    let pg = Postgres::start().unwrap();
    let proxy = FaultProxy::start(pg.addr()).unwrap();
    let store = PostgresStore::open(
        PostgresOptions::new(through(&proxy, "postgres")).lease(Duration::from_secs(3)),
    )
    .unwrap();
    let k = key();
    store.commit(&k, one_push(1)).await.unwrap();
    proxy.lose_open_connections();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), store.commit(&k, one_push(2)))
        .await
        .expect("the commit waits on a dead connection")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the dead connection was given up after {took:?}, not at the 1 s deadline"
    );
    assert_eq!(queued_seqs(&store, &k).await, vec![1, 2]);
}

/// Dropping the last handle to a store never blocks its caller, even on an async worker while
/// the store's thread waits on a database that stopped answering: the thread finishes on its
/// own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_store_whose_database_stopped_answering_returns_at_once() {
    let pg = Postgres::start().unwrap();
    let proxy = FaultProxy::start(pg.addr()).unwrap();
    let store = PostgresStore::open(
        PostgresOptions::new(through(&proxy, "postgres")).lease(Duration::from_secs(30)),
    )
    .unwrap();
    let k = key();
    store.commit(&k, one_push(1)).await.unwrap();
    proxy.lose_open_connections();
    proxy.set(Fault::Stall);
    // The commit waits on the dead connection for the 10 s statement deadline; its caller
    // gives up first.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), store.commit(&k, one_push(2)))
            .await
            .is_err()
    );
    let dropping = Instant::now();
    drop(store);
    let took = dropping.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "dropping the store blocked its caller for {took:?}"
    );
}

/// A database made by the first schema version is brought up to this one when a store opens
/// it, its sessions kept; a database from a newer Mooring is refused, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_migrated_with_its_sessions_and_a_newer_one_refused() {
    let pg = Postgres::start().unwrap();
    let k = key();
    {
        let store = PostgresStore::open(PostgresOptions::new(pg.connection())).unwrap();
        store.commit(&k, one_marker(7)).await.unwrap();
        store.close().await.unwrap();
    }
    // Back to version 1: what this build added is not there.
    pg.sql(
        "postgres",
        "DROP TABLE mooring_commits; DROP INDEX mooring_owners_client_id; \
         ALTER TABLE mooring_owners DROP COLUMN instance, DROP COLUMN client_id; \
         UPDATE mooring_schema SET version = 1",
    )
    .unwrap();
    let store = PostgresStore::open(PostgresOptions::new(pg.connection())).unwrap();
    assert_eq!(
        pg.sql("postgres", "SELECT version FROM mooring_schema")
            .unwrap()
            .trim(),
        "2"
    );
    store.acquire(&k).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap().inbound, vec![7]);
    store.commit(&k, one_marker(8)).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap().inbound, vec![7, 8]);
    store.close().await.unwrap();

    pg.sql("postgres", "UPDATE mooring_schema SET version = 3")
        .unwrap();
    let refused = PostgresStore::open(PostgresOptions::new(pg.connection()));
    assert!(
        matches!(&refused, Err(StoreError::Open { cause, .. }) if cause.contains("version 3")),
        "{refused:?}"
    );
}

fn expired_meta(disconnected_at_ms: u64) -> Batch {
    vec![
        StoreOp::SetMeta(mooring_core::store::SessionMeta {
            session_expiry_interval: 60,
            disconnected_at_ms: Some(disconnected_at_ms),
            ..Default::default()
        }),
        StoreOp::PutInbound { packet_id: 1 },
    ]
    .into()
}

/// The operator's pass over a database that several gateways share: expiry is judged on the
/// database's clock (not a host's, which may be days off), a session another process owns is
/// skipped, and one purged is released at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_shared_database_judges_expiry_on_its_clock_and_leaves_owned_sessions() {
    use mooring_core::store::tidy_sessions;
    let pg = Postgres::start().unwrap();
    let open = |holder: &str| open_as(&pg, holder, Duration::from_secs(30));
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let day = 86_400_000;
    let (recent, long_gone, owned) = (
        SessionKey::cluster("site", "stamped-by-a-host-ahead"),
        SessionKey::cluster("site", "long-gone"),
        SessionKey::cluster("site", "still-owned"),
    );
    {
        let writer = open("writer");
        // Stamped by a host whose clock runs a day ahead: not expired by the database's clock.
        writer
            .commit(&recent, expired_meta(now_ms + day))
            .await
            .unwrap();
        writer
            .commit(&long_gone, expired_meta(1_000))
            .await
            .unwrap();
        writer.close().await.unwrap();
    }
    let owner = open("owner");
    owner.acquire(&owned).await.unwrap();
    owner.commit(&owned, expired_meta(1_000)).await.unwrap();

    // The operator's host is two days ahead.
    let operator = open("operator");
    assert_eq!(
        operator.clock_ms().await.unwrap().map(|ms| ms / day),
        Some(now_ms / day),
        "the store's clock is the database's"
    );
    let tidied = tidy_sessions(&operator, now_ms + 2 * day, None, &[])
        .await
        .unwrap();
    assert_eq!(tidied.purged, vec![long_gone.clone()]);
    assert_eq!(operator.load(&recent).await.unwrap().inbound, vec![1]);
    assert_eq!(owner.load(&owned).await.unwrap().inbound, vec![1]);
    owner.commit(&owned, one_marker(2)).await.unwrap();
    // Purged and released: another process takes that key at once.
    let next = open("next");
    tokio::time::timeout(Duration::from_secs(5), next.acquire(&long_gone))
        .await
        .expect("the operator kept the purged session's lease")
        .unwrap();
}
