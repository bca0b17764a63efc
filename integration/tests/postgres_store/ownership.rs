//! Who owns a session in the shared database: a standby waiting for the lease, a takeover
//! that fences the live owner, callers that gave up, commits whose answer was lost across a
//! takeover, holder names and client identifiers that must not be shared, a lease clock that
//! jumps.

use super::*;

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
