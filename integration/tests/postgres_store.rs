//! PostgresStore against a real PostgreSQL per test: the conformance suite, a connection cut in
//! the middle of commits, the database restarting, and ownership (a standby waiting for the
//! lease, a takeover, fencing of a stale owner).

// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    // Cut every connection at random moments while commits run.
    let done = Arc::new(AtomicBool::new(false));
    let cutter = {
        let (proxy, done) = (proxy.clone(), done.clone());
        std::thread::spawn(move || {
            let mut cuts = 0;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(fastrand::u64(5..40)));
                proxy.cut();
                cuts += 1;
            }
            cuts
        })
    };
    // Each commit appends two messages and removes the oldest: the queue the model holds.
    let mut model: Vec<u64> = Vec::new();
    let mut next = 0;
    for _ in 0..200 {
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
    }
    done.store(true, Ordering::SeqCst);
    let cuts = cutter.join().unwrap();
    let stored = store.load(&k).await.unwrap();
    let seqs: Vec<u64> = stored.queue.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, model, "the queue after {cuts} cuts");
    assert!(stored.queue.iter().all(|(seq, q)| *q == queued(*seq)));
    assert_eq!(stored.queue_summary.messages, model.len() as u64);
    assert!(
        proxy.connections() >= 10,
        "only {} connections: the cuts did not interrupt the commits",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_waits_for_the_lease_to_lapse_and_fences_the_owner() {
    let pg = Postgres::start().unwrap();
    let proxy = FaultProxy::start(pg.addr()).unwrap();
    let lease = Duration::from_secs(1);
    let active = PostgresStore::open(
        PostgresOptions::new(through(&proxy, "postgres"))
            .lease(lease)
            .holder("gateway A")
            .outage_limit(Duration::from_secs(5)),
    )
    .unwrap();
    let k = key();
    active.acquire(&k).await.unwrap();
    active.commit(&k, one_push(1)).await.unwrap();

    let standby = PostgresStore::open(
        PostgresOptions::new(pg.connection())
            .lease(lease)
            .holder("gateway B"),
    )
    .unwrap();
    let acquiring = {
        let (standby, k) = (standby.clone(), k.clone());
        tokio::spawn(async move { standby.acquire(&k).await })
    };
    // While A renews its lease, B waits.
    tokio::time::sleep(lease * 3).await;
    assert!(
        !acquiring.is_finished(),
        "the standby took a session whose lease runs"
    );
    active.commit(&k, one_push(2)).await.unwrap();

    // A is cut off from the database: its lease lapses and B takes over.
    proxy.set(Fault::Stall);
    proxy.cut();
    let cut_at = Instant::now();
    acquiring.await.unwrap().unwrap();
    let took = cut_at.elapsed();
    assert!(
        took >= lease / 2,
        "B took over {took:?} after A's last renewal"
    );
    let resumed = standby.load(&k).await.unwrap();
    assert_eq!(resumed.queue.len(), 2, "B resumes where A committed");
    assert!(
        active
            .owned_until(&k)
            .is_some_and(|until| until <= Instant::now()),
        "A still believes it owns the session"
    );

    // A reaches the database again: it is fenced, and stays so.
    proxy.set(Fault::Pass);
    let refused = active.commit(&k, one_push(3)).await;
    assert!(
        matches!(&refused, Err(StoreError::Fenced { holder, .. }) if holder == "gateway B"),
        "{refused:?}"
    );
    assert!(matches!(
        active.check_owner(&k).await,
        Err(StoreError::Fenced { .. })
    ));
    standby.commit(&k, one_push(4)).await.unwrap();
    let seqs = queued_seqs(&standby, &k).await;
    assert_eq!(seqs, vec![1, 2, 4], "nothing of the fenced owner's landed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_fences_a_live_owner_and_a_clean_close_hands_over_at_once() {
    let pg = Postgres::start().unwrap();
    let k = key();
    let open = |holder: &str, takeover: bool| {
        PostgresStore::open(
            PostgresOptions::new(pg.connection())
                .lease(Duration::from_secs(30))
                .holder(holder)
                .takeover(takeover),
        )
        .unwrap()
    };
    let a = open("A", false);
    a.acquire(&k).await.unwrap();
    a.commit(&k, one_push(1)).await.unwrap();
    // B is told to take over: it does at once, though A's lease has 30 s to run.
    let b = open("B", true);
    tokio::time::timeout(Duration::from_secs(5), b.acquire(&k))
        .await
        .expect("a takeover does not wait for the lease")
        .unwrap();
    assert!(matches!(
        a.commit(&k, one_push(2)).await,
        Err(StoreError::Fenced { .. })
    ));
    b.commit(&k, one_push(3)).await.unwrap();
    // B stops cleanly: C, which waits for leases, gets the session at once.
    drop(b);
    let c = open("C", false);
    tokio::time::timeout(Duration::from_secs(5), c.acquire(&k))
        .await
        .expect("a released session is taken without waiting for the lease")
        .unwrap();
    let seqs = queued_seqs(&c, &k).await;
    assert_eq!(seqs, vec![1, 3]);
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
