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
    // B closes cleanly: C, which waits for leases, gets the session at once.
    b.close().await.unwrap();
    assert!(
        matches!(b.commit(&k, one_push(9)).await, Err(StoreError::Closed)),
        "a closed store takes no more writes"
    );
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

/// A standby that gives up waiting for a lease (a timeout, Ctrl-C in a `select!`) stops
/// waiting: it does not go on trying in the background and take the session later, which would
/// keep every other standby out with a lease its process never uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_gives_up_waiting_never_takes_the_session_later() {
    let pg = Postgres::start().unwrap();
    let k = key();
    let open = |holder: &str| open_as(&pg, holder, Duration::from_secs(2));
    let a = open("A");
    a.acquire(&k).await.unwrap();
    let b = open("B");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), b.acquire(&k))
            .await
            .is_err(),
        "B took a session whose lease runs"
    );
    // A hands the session on; B, still open, must not be the one that takes it.
    a.close().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = open("C");
    tokio::time::timeout(Duration::from_secs(5), c.acquire(&k))
        .await
        .expect("a standby that gave up went on waiting and took the session")
        .unwrap();
    c.commit(&k, one_push(1)).await.unwrap();
    drop(b);
}

/// A claim that wins just as its caller gave up (its answer was on the way) is handed back:
/// nobody in that process would use the session or release it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_won_after_its_caller_gave_up_is_handed_back() {
    let pg = Postgres::start().unwrap();
    let proxy = FaultProxy::start(pg.addr()).unwrap();
    let k = key();
    // A long lease: the statement deadline (a third) outlasts the stall below.
    let lease = Duration::from_secs(9);
    let b = PostgresStore::open(
        PostgresOptions::new(through(&proxy, "postgres"))
            .lease(lease)
            .holder("B"),
    )
    .unwrap();
    // B's claim is held on the way, its caller gives up, then the claim goes through.
    proxy.set(Fault::Stall);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), b.acquire(&k))
            .await
            .is_err()
    );
    proxy.set(Fault::Pass);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = open_as(&pg, "C", lease);
    tokio::time::timeout(Duration::from_secs(3), c.acquire(&k))
        .await
        .expect("the session won for nobody was kept, not handed back")
        .unwrap();
    drop(b);
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

fn one_marker(packet_id: u16) -> Batch {
    vec![StoreOp::PutInbound { packet_id }].into()
}

/// Gateway A through `proxy` and, once A's answers are lost, standby B: A's commit of marker 2
/// reaches the database but its answer does not; B takes the session over meanwhile. Returns
/// both stores, the commit's outcome once A hears from the database again (after `between`
/// ran), and the markers B sees.
async fn commit_answer_lost_across_a_takeover(
    pg: &Postgres,
    proxy: &FaultProxy,
    lose: impl FnOnce(&FaultProxy),
    between: impl FnOnce(),
) -> (Result<(), StoreError>, Vec<u16>, PostgresStore) {
    let lease = Duration::from_secs(3);
    let a = PostgresStore::open(
        PostgresOptions::new(through(proxy, "postgres"))
            .lease(lease)
            .holder("A")
            .outage_limit(Duration::from_secs(60)),
    )
    .unwrap();
    let k = key();
    a.acquire(&k).await.unwrap();
    a.commit(&k, one_marker(1)).await.unwrap();
    lose(proxy);
    let committing = {
        let (a, k) = (a.clone(), k.clone());
        tokio::spawn(async move { a.commit(&k, one_marker(2)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = open_as(pg, "B", lease);
    tokio::time::timeout(Duration::from_secs(20), b.acquire(&k))
        .await
        .expect("B never took over")
        .unwrap();
    let markers = b.load(&k).await.unwrap().inbound;
    between();
    proxy.set(Fault::Pass);
    let outcome = tokio::time::timeout(Duration::from_secs(60), committing)
        .await
        .expect("A's commit never ended")
        .unwrap();
    if outcome.is_ok() {
        assert!(
            matches!(
                a.commit(&k, one_marker(3)).await,
                Err(StoreError::Fenced { .. })
            ),
            "A goes on writing after the takeover"
        );
    }
    (outcome, markers, b)
}

/// A commit that landed but whose answer was lost, retried after a standby took over, is
/// read back and reported done: the standby resumes with it and will act on it, so a refusal
/// would make the application send it again (a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_is_read_back_and_reported_done_after_a_takeover() {
    let pg = Postgres::start().unwrap();
    let proxy = FaultProxy::start(pg.addr()).unwrap();
    let (outcome, markers, _b) =
        commit_answer_lost_across_a_takeover(&pg, &proxy, |p| p.set(Fault::Deaf), || {}).await;
    assert_eq!(markers, vec![1, 2], "the commit reached the database");
    assert!(
        outcome.is_ok(),
        "a commit that landed was reported {outcome:?}"
    );
}

/// The same, when the database can no longer tell (the epoch's mark is gone, as after many
/// takeovers): the outcome is reported unknown, naming the new owner, and not as a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_that_cannot_be_read_back_is_an_unknown_outcome_not_a_refusal() {
    let pg = Postgres::start().unwrap();
    let proxy = FaultProxy::start(pg.addr()).unwrap();
    let forget_marks = || {
        pg.sql("postgres", "DELETE FROM mooring_commits").unwrap();
    };
    let (outcome, markers, _b) =
        commit_answer_lost_across_a_takeover(&pg, &proxy, |p| p.set(Fault::Deaf), forget_marks)
            .await;
    assert_eq!(markers, vec![1, 2]);
    assert!(
        matches!(&outcome, Err(StoreError::OutcomeUnknown { holder: Some(h), .. }) if h == "B"),
        "{outcome:?}"
    );
}

/// A commit lost on the way (it never reached the database), retried after a takeover, is
/// refused: read back, it did not land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_lost_on_the_way_is_refused_after_a_takeover() {
    let pg = Postgres::start().unwrap();
    let proxy = FaultProxy::start(pg.addr()).unwrap();
    let lose = |p: &FaultProxy| {
        p.lose_open_connections();
        p.set(Fault::Refuse);
    };
    let (outcome, markers, _b) =
        commit_answer_lost_across_a_takeover(&pg, &proxy, lose, || {}).await;
    assert_eq!(markers, vec![1], "the commit never reached the database");
    assert!(
        matches!(&outcome, Err(StoreError::Fenced { holder, .. }) if holder == "B"),
        "{outcome:?}"
    );
}

/// Two live processes given the same holder name (a configuration copied to both machines)
/// cannot both own a session: the second is refused with the clash named, instead of winning
/// as if it were the first claiming again. Each store draws the instance that tells processes
/// apart, so two stores here stand for the two processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_given_the_same_holder_name_cannot_both_own_a_session() {
    let pg = Postgres::start().unwrap();
    let open = || {
        PostgresStore::open(
            PostgresOptions::new(pg.connection())
                .lease(Duration::from_secs(30))
                .holder("gateway"),
        )
        .unwrap()
    };
    let (first, second) = (open(), open());
    let k = key();
    first.acquire(&k).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), second.acquire(&k))
        .await
        .expect("the second process waits instead of being told");
    assert!(
        matches!(&refused, Err(StoreError::Backend { message, .. }) if message.contains("also names itself")),
        "{refused:?}"
    );
    first.commit(&k, one_marker(1)).await.unwrap();
}

/// A session key is its servers (or cluster scope) and client identifier, but the broker
/// knows only the identifier: a second key for an identifier another process owns is refused
/// (the two would take the connection from each other), unless shared identifiers are allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_identifier_under_two_session_keys_is_refused_unless_allowed() {
    let pg = Postgres::start().unwrap();
    let open = |holder: &str, shared: bool| {
        PostgresStore::open(
            PostgresOptions::new(pg.connection())
                .lease(Duration::from_secs(30))
                .holder(holder)
                .shared_client_ids(shared),
        )
        .unwrap()
    };
    let by_address = SessionKey::new("mqtt://10.0.0.5:1883", "gateway-7");
    let by_name = SessionKey::new("mqtt://broker.site:1883", "gateway-7");
    let a = open("A", false);
    a.acquire(&by_address).await.unwrap();
    // One process may hold both (a bridge to two brokers with one identifier).
    a.acquire(&SessionKey::new("mqtt://cloud.example:8883", "gateway-7"))
        .await
        .unwrap();
    let b = open("B", false);
    let refused = b.acquire(&by_name).await;
    assert!(
        matches!(&refused, Err(StoreError::Backend { message, .. }) if message.contains("same client identifier")),
        "{refused:?}"
    );
    // Refused, B holds nothing: C, allowed to share identifiers, takes that key at once.
    let c = open("C", true);
    tokio::time::timeout(Duration::from_secs(5), c.acquire(&by_name))
        .await
        .expect("the refused claim was left holding the session")
        .unwrap();
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

/// The real monotonic clock, plus jumps the test makes: a host suspended, or a clock that the
/// platform moved.
#[derive(Debug)]
struct JumpingClock {
    origin: Instant,
    jumped_ms: std::sync::atomic::AtomicU64,
}

impl mooring_store_postgres::LeaseClock for JumpingClock {
    fn elapsed(&self) -> Duration {
        self.origin.elapsed() + Duration::from_millis(self.jumped_ms.load(Ordering::SeqCst))
    }
}

/// The owner measures its lease on its lease clock: when that clock jumps past the lease (a
/// host woken from suspend), ownership has lapsed at once, before any timer or renewal runs,
/// until the database confirms it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_clock_that_jumps_past_the_lease_ends_ownership_at_once() {
    let pg = Postgres::start().unwrap();
    let clock = Arc::new(JumpingClock {
        origin: Instant::now(),
        jumped_ms: std::sync::atomic::AtomicU64::new(0),
    });
    // Long, so that no renewal runs during the test's few milliseconds.
    let lease = Duration::from_secs(60);
    let store = PostgresStore::open(
        PostgresOptions::new(pg.connection())
            .lease(lease)
            .lease_clock(clock.clone()),
    )
    .unwrap();
    let k = key();
    store.acquire(&k).await.unwrap();
    let until = store.owned_until(&k).unwrap();
    // The lease less a twentieth (rate) and a tenth (margin).
    let left = until.saturating_duration_since(Instant::now());
    assert!(
        left > lease * 8 / 10 && left <= lease * 17 / 20,
        "owned for {left:?} of a {lease:?} lease"
    );
    clock
        .jumped_ms
        .store(lease.as_millis() as u64, Ordering::SeqCst);
    assert!(
        store.owned_until(&k).unwrap() <= Instant::now(),
        "still owned after the lease clock passed the lease"
    );
    // A commit confirms ownership with the database: owned again, from then.
    store.commit(&k, one_marker(1)).await.unwrap();
    assert!(store.owned_until(&k).unwrap() > Instant::now() + lease / 2);
}
