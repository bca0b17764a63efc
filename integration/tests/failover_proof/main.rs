//! The failover proof: three pairs of gateway processes (`gateway_child`, store `postgres`),
//! each pair one client identifier with its session in one shared PostgreSQL database, one
//! gateway active and one standby, publishing numbered QoS 2 messages and consuming a numbered
//! QoS 2 stream, each process with manual or automatic ack (at random). Every gateway reaches
//! the broker and PostgreSQL through fault proxies of its own. Each round does one fault
//! (`FaultKind`) to the active gateway of a pair chosen at random, or to PostgreSQL: SIGKILL;
//! SIGSTOP past the lease, woken after the broker closed its connection or before; SIGSTOP
//! within the lease (no takeover); its database connections reset, or dropped into a black
//! hole (nothing answers, nothing closes); PostgreSQL restarted (one owner's way to it returning
//! late, so that its standby takes over; the other standbys may or may not); its lease clock
//! stepped ahead (no takeover).
//!
//! Past the lease the standby takes over. The proof holds the standby's way to the broker
//! shut until the old owner is dealt with (except when the old one is to wake after the
//! broker closed its connection, which the standby's CONNECT does): the old one, woken or
//! reaching its database again, must be fenced: it exits with status 3 having sent the broker
//! nothing, not a byte on any connection the broker held open, a new one included (its proxy
//! counts them), and the broker's log (`log_type all`) shows nothing received from that client
//! identifier from the moment the standby owned the session to the standby's CONNECT. A write
//! the old one had already begun past its last lease check when it froze can still land in a
//! connection the broker closed, where no one reads it: the proof counts such bytes and prints
//! them. That the client writes nothing it held waiting once its lease ran out is
//! `tests/ownership.rs`'s deterministic test. The dead or fenced one starts again as the new
//! standby.
//!
//! At the end an independent subscriber that is not Mooring (`mosquitto_sub`) and the ledgers
//! are checked: every accepted message arrived exactly once and nothing twice, every number
//! sent to the gateways was consumed, none after its ack, and no owner's application was
//! handed a message after a later owner had started (a number may be consumed by two owners
//! only when the first had it before the takeover and never acked it).
//!
//! `FAILOVER_TAKEOVERS` (rounds, default 8: the first eight do each fault once, in a random
//! order), `FAILOVER_SEED` and `FAILOVER_LEASE_MS` (default 1000) tune it;
//! `scripts/failover.sh N` runs a long one. It prints each fault kind with its count and the
//! verdict `N accepted, N delivered, 0 lost, 0 duplicated`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod gateway;
mod verdict;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gateway::{FaultKind, Gateway, Identity, Setup, TASKS, signal};
use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::mosquitto_sub::MosquittoSub;
use integration::postgres::Postgres;
use integration::proxy::Fault;
use integration::{env_or, ledger, wait_until};
use mooring::store::MemoryStore;
use mooring::{Client, QoS};
use verdict::{broker_heard_the_old_owner, handed_over, median};

const PAIRS: usize = 3;
const PER_TASK_PER_ROUND: u64 = 20;
const INBOUND_PER_ROUND: u64 = 20;

/// One client identifier: its session, its ledgers, and the two gateways that share it.
struct Pair {
    who: Identity,
    active: Gateway,
    standby: Gateway,
}

impl Pair {
    fn dir(&self) -> PathBuf {
        self.who.ledgers.parent().unwrap().to_owned()
    }
}

/// What the rounds saw, beside the ledgers.
#[derive(Default)]
struct Tally {
    faults: HashMap<FaultKind, u32>,
    /// From the fault to the standby owning the session.
    takeovers: Vec<Duration>,
    /// Pairs whose standby took over across a restart of PostgreSQL, and pairs whose owner
    /// kept its session.
    restart_takeovers: u32,
    restart_kept: u32,
    /// Bytes woken gateways wrote into connections the broker had closed (see the top).
    unread_after_waking: u64,
    /// Connections fenced gateways opened before their ownership check stopped them.
    dials_after_waking: u64,
    auto_acks: u32,
}

struct Proof {
    setup: Setup,
    broker: Mosquitto,
    lease: Duration,
    rng: fastrand::Rng,
    tally: Tally,
}

impl Proof {
    /// A gateway for `who` that acks automatically or by hand, at random: the session is
    /// shared, the ack mode is each process's.
    fn spawn(&mut self, who: &Identity) -> Gateway {
        let auto_ack = self.rng.bool();
        self.tally.auto_acks += u32::from(auto_ack);
        self.setup.spawn(who, auto_ack)
    }
}

/// What an old owner's way to the broker had carried when its lease lapsed.
struct Sent {
    bytes: u64,
    connections: u64,
    unread: u64,
}

fn sent(gateway: &Gateway) -> Sent {
    Sent {
        bytes: gateway.proxy.bytes_to_server(),
        connections: gateway.proxy.connections(),
        unread: gateway.proxy.bytes_after_server_closed(),
    }
}

/// The old owner, woken or reaching its database again, must stop fenced (status 3) without
/// a byte to the broker since `before`. It may have opened a connection: the ownership check
/// comes after the transport, right before CONNECT.
fn expect_fenced(tally: &mut Tally, old: &mut Gateway, before: &Sent, round: u32, kind: FaultKind) {
    let status = tokio::task::block_in_place(|| old.wait_exit(Duration::from_secs(30)))
        .unwrap_or_else(|| panic!("round {round}: the old owner ({kind:?}) did not stop"));
    assert_eq!(
        status.code(),
        Some(3),
        "round {round}: the old owner ({kind:?}) was not fenced ({status})"
    );
    assert!(old.said.fenced.load(Ordering::SeqCst));
    assert_eq!(
        old.proxy.bytes_to_server(),
        before.bytes,
        "round {round}: the fenced gateway ({kind:?}) sent bytes to the broker ({} connections \
         opened after the takeover)",
        old.proxy.connections() - before.connections
    );
    tally.unread_after_waking += old.proxy.bytes_after_server_closed() - before.unread;
    tally.dials_after_waking += old.proxy.connections() - before.connections;
}

/// Lets the standby, which owns the session, reach the broker; checks the broker's log from
/// `log_mark` (taken once the old owner's lease had lapsed); the old one starts again as the
/// standby.
async fn finish_takeover(
    proof: &mut Proof,
    pair: &mut Pair,
    log_mark: usize,
    round: u32,
    kind: FaultKind,
) {
    pair.standby.proxy.set(Fault::Pass);
    let standby = pair.standby.said.clone();
    wait_until(
        "the new owner to subscribe",
        Duration::from_secs(30),
        || standby.subscribed.load(Ordering::SeqCst),
    )
    .await;
    let log = proof.broker.log();
    if let Err(heard) =
        broker_heard_the_old_owner(log.get(log_mark..).unwrap_or(""), &pair.who.client_id)
    {
        panic!(
            "round {round} ({kind:?}): the broker heard from {} after its standby owned the \
             session, before the standby connected:\n{heard}",
            pair.who.client_id
        );
    }
    let next = proof.spawn(&pair.who);
    let old = std::mem::replace(&mut pair.active, std::mem::replace(&mut pair.standby, next));
    drop(old);
}

/// A fault past the lease to `pair`'s active gateway: the standby takes over, the old one is
/// fenced (or dead).
async fn takeover(proof: &mut Proof, pair: &mut Pair, kind: FaultKind, round: u32) {
    // Held back from the broker until the old owner is dealt with.
    pair.standby.proxy.set(Fault::Refuse);
    let active = &mut pair.active;
    let stopped_at = Instant::now();
    match kind {
        FaultKind::Kill => signal(&active.child, "-KILL"),
        FaultKind::Freeze | FaultKind::WokenBeforeBrokerClosed => {
            signal(&active.child, "-STOP");
        }
        FaultKind::DatabaseReset => {
            active.db.set(Fault::Refuse);
            active.db.cut();
        }
        FaultKind::DatabaseBlackHole => {
            active.db.set(Fault::Refuse);
            active.db.lose_open_connections();
        }
        other => panic!("{other:?} is not a takeover"),
    }
    let standby = pair.standby.said.clone();
    wait_until(
        "the standby to own the session",
        Duration::from_secs(30),
        || standby.active.load(Ordering::SeqCst),
    )
    .await;
    proof.tally.takeovers.push(stopped_at.elapsed());
    // The old owner's lease has lapsed: from here on the broker must hear nothing from it.
    let log_mark = proof.broker.log().len();
    match kind {
        FaultKind::Kill => {}
        FaultKind::Freeze => {
            // The standby connects with the same client identifier: the broker closes the
            // frozen one's connection; everything it sent before has reached its proxy.
            pair.standby.proxy.set(Fault::Pass);
            wait_until(
                "the broker to close the frozen gateway's connection",
                Duration::from_secs(30),
                || active.proxy.open_connections() == 0,
            )
            .await;
            let before = sent(active);
            signal(&active.child, "-CONT");
            expect_fenced(&mut proof.tally, active, &before, round, kind);
        }
        FaultKind::WokenBeforeBrokerClosed => {
            // Past its keep alive as the broker counts it, from the last bytes it got, so that
            // the woken gateway has a PINGREQ due; the broker closes the connection half a
            // keep alive after that, by which time the standby must own the session.
            let owned_after = stopped_at.elapsed();
            let last_sent = active.proxy.last_sent_to_server().unwrap_or(stopped_at);
            tokio::time::sleep_until(
                (last_sent + proof.setup.keep_alive() + proof.lease / 10).into(),
            )
            .await;
            assert!(
                active.proxy.open_connections() > 0,
                "round {round}: the broker no longer held the frozen gateway's connection \
                 (its last bytes {:?} before the stop, the standby owned the session {:?} \
                 after it, woken {:?} after it)",
                stopped_at.saturating_duration_since(last_sent),
                owned_after,
                stopped_at.elapsed(),
            );
            let before = sent(active);
            signal(&active.child, "-CONT");
            expect_fenced(&mut proof.tally, active, &before, round, kind);
        }
        _ => {
            // Cut off from its database, it stopped writing when its lease ran out, before
            // the standby could take over; it may be dialling the broker again meanwhile,
            // each attempt held at the ownership check that comes before CONNECT.
            let before = sent(active);
            active.db.set(Fault::Pass);
            expect_fenced(&mut proof.tally, active, &before, round, kind);
        }
    }
    finish_takeover(proof, pair, log_mark, round, kind).await;
}

/// A fault within the lease to `pair`'s active gateway: it wakes still the owner, and the
/// standby waits on.
async fn within_lease(proof: &mut Proof, pair: &mut Pair, kind: FaultKind, round: u32) {
    let active = &mut pair.active;
    match kind {
        FaultKind::ShortFreeze => {
            signal(&active.child, "-STOP");
            tokio::time::sleep(proof.lease / 4).await;
            signal(&active.child, "-CONT");
        }
        FaultKind::ClockStep => {
            active.said.stepped.store(false, Ordering::SeqCst);
            active.step_clock(3 * proof.setup.lease_ms);
            let said = active.said.clone();
            wait_until("the lease clock to step", Duration::from_secs(10), || {
                said.stepped.load(Ordering::SeqCst)
            })
            .await;
        }
        other => panic!("{other:?} is not a fault within the lease"),
    }
    tokio::time::sleep(proof.lease * 2).await;
    assert!(
        !pair.standby.said.active.load(Ordering::SeqCst),
        "round {round}: the standby took over from an owner that kept its lease ({kind:?})"
    );
    assert!(
        active.running(),
        "round {round}: an owner that kept its lease stopped ({kind:?})"
    );
}

/// PostgreSQL stops (a fast shutdown) and starts again under every pair, one owner's way to it
/// returning late: whether a standby takes over depends on how its
/// owner's lease ran. Each pair either keeps its owner, or its standby owns the session and
/// the old owner is fenced.
async fn restart_database(proof: &mut Proof, pg: &mut Postgres, pairs: &mut [Pair], round: u32) {
    let kind = FaultKind::DatabaseRestart;
    for pair in pairs.iter() {
        pair.standby.proxy.set(Fault::Refuse);
    }
    // One owner's way to the database comes back only after the restart and the watch (a
    // route that takes longer to return): its standby must take over. The others race their
    // standbys when the database returns (mostly the owners' renewals win).
    let slow_route = proof.rng.usize(..pairs.len());
    pairs[slow_route].active.db.set(Fault::Refuse);
    pairs[slow_route].active.db.cut();
    // Down for up to two leases.
    let down_for = Duration::from_millis(proof.rng.u64(..2 * proof.setup.lease_ms));
    let began = Instant::now();
    tokio::task::block_in_place(|| {
        pg.stop();
        std::thread::sleep(down_for);
        pg.restart()
    })
    .unwrap();
    // When each standby was first seen owning its session.
    let mut owned: Vec<Option<(usize, Sent, Duration)>> = pairs.iter().map(|_| None).collect();
    let watch_until = Instant::now() + proof.lease * 5;
    while Instant::now() < watch_until {
        for (pair, owned) in pairs.iter().zip(owned.iter_mut()) {
            if owned.is_none() && pair.standby.said.active.load(Ordering::SeqCst) {
                *owned = Some((
                    proof.broker.log().len(),
                    sent(&pair.active),
                    began.elapsed(),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pairs[slow_route].active.db.set(Fault::Pass);
    for (index, (pair, owned)) in pairs.iter_mut().zip(owned).enumerate() {
        match owned {
            None => {
                assert_ne!(
                    index, slow_route,
                    "round {round}: the standby of an owner cut off from the restarted database \
                     did not take over"
                );
                assert!(
                    pair.active.running(),
                    "round {round}: an owner that kept its session through PostgreSQL's \
                     restart stopped"
                );
                pair.standby.proxy.set(Fault::Pass);
                proof.tally.restart_kept += 1;
            }
            Some((log_mark, before, after)) => {
                proof.tally.takeovers.push(after);
                proof.tally.restart_takeovers += 1;
                expect_fenced(&mut proof.tally, &mut pair.active, &before, round, kind);
                finish_takeover(proof, pair, log_mark, round, kind).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standbys_take_over_from_killed_frozen_or_cut_off_gateways_and_the_old_ones_are_fenced() {
    let takeovers: u32 = env_or("FAILOVER_TAKEOVERS", FaultKind::ALL.len() as u32);
    let lease_ms: u64 = env_or("FAILOVER_LEASE_MS", 1000);
    let seed: u64 = env_or(
        "FAILOVER_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    println!(
        "failover proof: {takeovers} rounds, {PAIRS} client ids, lease {lease_ms} ms, \
         FAILOVER_SEED={seed}"
    );
    let dir = tempfile::tempdir().unwrap();
    // `log_type all`: the broker logs every packet it receives, by client identifier.
    let broker = Mosquitto::with_config(&MosquittoConfig {
        persistence: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let mut pg = Postgres::start().unwrap();
    let subscriber = tokio::task::block_in_place(|| {
        MosquittoSub::subscribe(
            broker.port(),
            "failover-subscriber",
            &["+/out/#"],
            "probe/out/subscribed",
        )
    })
    .unwrap();

    let rounds = u64::from(takeovers) + 1;
    let per_task = PER_TASK_PER_ROUND * rounds;
    let inbound = INBOUND_PER_ROUND * rounds;
    let mut proof = Proof {
        setup: Setup {
            broker: SocketAddr::from(([127, 0, 0, 1], broker.port())),
            database: pg.addr(),
            per_task,
            lease_ms,
        },
        broker,
        lease: Duration::from_millis(lease_ms),
        rng: fastrand::Rng::with_seed(seed),
        tally: Tally::default(),
    };
    let mut pairs = Vec::new();
    for k in 0..PAIRS {
        let who = Identity {
            client_id: format!("proof-gateway-{k}"),
            topics: format!("proof{k}"),
            ledgers: dir.path().join(k.to_string()).join("ledgers"),
        };
        let active = proof.spawn(&who);
        let said = active.said.clone();
        wait_until(
            "the first gateway to subscribe",
            Duration::from_secs(30),
            || said.subscribed.load(Ordering::SeqCst),
        )
        .await;
        let standby = proof.spawn(&who);
        pairs.push(Pair {
            who,
            active,
            standby,
        });
    }

    // The feeder: numbered messages for whichever gateway of each pair is active.
    let (feeder, _feeder_inbox) = Client::builder()
        .server(proof.broker.url())
        .client_id("failover-feeder")
        .store(MemoryStore::default())
        .reconnect(integration::fast_backoff())
        .connect()
        .await
        .unwrap();
    let feeding = tokio::spawn({
        let feeder = feeder.clone();
        async move {
            let mut deliveries = Vec::new();
            for n in 0..inbound {
                for k in 0..PAIRS {
                    deliveries.push(
                        feeder
                            .publish(format!("proof{k}/in/{n}"), n.to_string(), QoS::ExactlyOnce)
                            .await
                            .unwrap(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for d in deliveries {
                d.await.unwrap();
            }
        }
    });

    // The first rounds do each fault once, in a random order.
    let mut order = FaultKind::ALL.to_vec();
    proof.rng.shuffle(&mut order);
    for round in 0..takeovers {
        tokio::time::sleep(Duration::from_millis(200 + proof.rng.u64(..600))).await;
        for pair in &pairs {
            assert!(
                !pair.standby.said.active.load(Ordering::SeqCst),
                "round {round}: {}'s standby became active while the active one ran",
                pair.who.client_id
            );
        }
        let kind = order
            .get(round as usize)
            .copied()
            .unwrap_or_else(|| FaultKind::ALL[proof.rng.usize(..FaultKind::ALL.len())]);
        *proof.tally.faults.entry(kind).or_default() += 1;
        if kind == FaultKind::DatabaseRestart {
            restart_database(&mut proof, &mut pg, &mut pairs, round).await;
            continue;
        }
        let pair = &mut pairs[proof.rng.usize(..PAIRS)];
        match kind {
            FaultKind::ShortFreeze | FaultKind::ClockStep => {
                within_lease(&mut proof, pair, kind, round).await;
            }
            _ => takeover(&mut proof, pair, kind, round).await,
        }
    }

    // The last active ones finish the work; the standbys go first, so that they stay ones.
    for pair in &mut pairs {
        let _ = pair.standby.child.kill();
        let _ = pair.standby.child.wait();
    }
    for pair in &pairs {
        let said = pair.active.said.clone();
        wait_until("every task to finish", Duration::from_secs(120), || {
            said.published.load(Ordering::SeqCst)
        })
        .await;
    }
    tokio::time::timeout(Duration::from_secs(120), feeding)
        .await
        .expect("the feeder finished")
        .unwrap();
    for pair in &pairs {
        let d = pair.dir();
        wait_until(
            "every number to be consumed",
            Duration::from_secs(60),
            || ledger(&d, "consumed").len() as u64 >= inbound,
        )
        .await;
    }
    // Each accepted line as the subscriber prints it: `<topic> <payload>`.
    let mut accepted = HashSet::new();
    for pair in &pairs {
        for line in ledger(&pair.dir(), "accepted") {
            let task = line.split(' ').next().unwrap_or_default();
            accepted.insert(format!("{}/out/{task} {line}", pair.who.topics));
        }
    }
    wait_until(
        "every accepted message to arrive",
        Duration::from_secs(60),
        || subscriber.include(&accepted),
    )
    .await;
    for pair in &mut pairs {
        drop(pair.active.stdin.take());
        let status = tokio::task::block_in_place(|| pair.active.wait_exit(Duration::from_secs(30)));
        assert!(
            status.is_some_and(|s| s.success()),
            "the last gateway of {} exits cleanly: {status:?}",
            pair.who.client_id
        );
    }
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrivals: Vec<String> = subscriber
        .lines()
        .into_iter()
        .filter(|l| !l.starts_with("probe/"))
        .collect();
    drop(subscriber);
    feeder.disconnect().await.unwrap();

    let mut counts: HashMap<&str, usize> = HashMap::new();
    for a in &arrivals {
        *counts.entry(a.as_str()).or_default() += 1;
    }
    let duplicates: Vec<(&&str, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    let unrecorded = counts.keys().filter(|a| !accepted.contains(**a)).count();
    let (mut consumed_total, mut unconsumed, mut before_takeover, mut late) = (0, 0, 0, 0);
    let mut redelivered = Vec::new();
    let mut traces = Vec::new();
    for pair in &pairs {
        let dir = pair.dir();
        let consumed = ledger(&dir, "consumed");
        let consumed_set: HashSet<&String> = consumed.iter().collect();
        unconsumed += (0..inbound)
            .filter(|n| !consumed_set.contains(&n.to_string()))
            .count();
        consumed_total += consumed.len();
        redelivered.extend(ledger(&dir, "redelivered"));
        let handed = handed_over(&dir, &consumed);
        before_takeover += handed.before_takeover;
        late += handed.late;
        if handed.late > 0 {
            traces.push(pair.who.client_id.clone());
            traces.extend(handed.traces);
        }
    }
    let lost = accepted
        .iter()
        .filter(|a| !counts.contains_key(a.as_str()))
        .count();
    let delivered = accepted.len() - lost;
    let tally = &proof.tally;
    let mut kinds: Vec<String> = FaultKind::ALL
        .iter()
        .map(|kind| format!("{kind:?} {}", tally.faults.get(kind).copied().unwrap_or(0)))
        .collect();
    kinds.sort();
    println!(
        "failover proof: faults: {}; across PostgreSQL's restarts {} standbys took over and {} \
         owners kept their session; gateways acking automatically: {}",
        kinds.join(", "),
        tally.restart_takeovers,
        tally.restart_kept,
        tally.auto_acks
    );
    println!(
        "failover proof: takeover (fault to the standby owning the session) median {:?}, max \
         {:?}; woken gateways wrote {} bytes into closed connections and opened {} without a \
         byte; {} accepted, {} arrived at mosquitto_sub, {unrecorded} published but unrecorded \
         (killed before the ledger), {} duplicates; {consumed_total} consumed, {unconsumed} \
         unconsumed, {} delivered again after their ack, {before_takeover} handed to a stopped \
         owner and again to the next (never acked)",
        median(&mut tally.takeovers.clone()),
        tally.takeovers.iter().max().copied().unwrap_or_default(),
        tally.unread_after_waking,
        tally.dials_after_waking,
        accepted.len(),
        arrivals.len(),
        duplicates.len(),
        redelivered.len(),
    );
    println!(
        "{} accepted, {delivered} delivered, {lost} lost, {} duplicated",
        accepted.len(),
        duplicates.len()
    );
    assert_eq!(lost, 0, "accepted and never delivered");
    assert!(duplicates.is_empty(), "arrived twice: {duplicates:?}");
    assert_eq!(
        late, 0,
        "an owner handed its application a message after another took the session over: \
         {traces:#?}"
    );
    assert_eq!(unconsumed, 0, "numbers never consumed");
    assert!(
        redelivered.is_empty(),
        "delivered after their ack: {redelivered:?}"
    );
    assert!(
        unrecorded <= (TASKS * takeovers) as usize,
        "{unrecorded} arrivals no ledger recorded, more than one per task per round"
    );
    assert!(
        !accepted.is_empty() && accepted.len() as u64 >= per_task * u64::from(TASKS) * PAIRS as u64
    );
}
