//! The crash-safety proof: a gateway process (`gateway_child`) publishes numbered messages from
//! several tasks and consumes a numbered stream with manual ack, while this test kills it with
//! SIGKILL at random moments, cuts its network and restarts the broker (persistence on). At the
//! end an independent subscriber and the gateway's own ledgers are checked:
//!
//! - QoS 2: every message the gateway reported accepted arrived exactly once, in per-task
//!   order, and no message arrived twice; every number sent to the gateway was consumed, and
//!   none was delivered again after its ack returned.
//! - QoS 1: nothing accepted is missing and nothing sent is unconsumed; duplicates are allowed
//!   and counted.
//!
//! `CRASH_KILLS` (default 20 at QoS 2, 10 at QoS 1), `CRASH_SEED` (replays a run) and
//! `CRASH_STORE` (run one store only) tune it; `scripts/crash.sh STORE N` runs a long one.
//! `MQTT_VERSION=3.1.1` runs the gateway's session at MQTT 3.1.1; the `*_at_3_1_1` tests always
//! do. The `*_read_back_from_the_store` tests hold at most two queued messages in memory, so
//! that the queue lives in the store and kills land while it is read back.
//! `CRASH_BROKER_LOG=1` prints what a failing run needs: the broker's log lines about the
//! gateway by kind, any CONNACK without a session, and the missing messages.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "crash_harness/broker.rs"]
mod broker;
#[path = "crash_harness/gateway.rs"]
mod gateway;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use broker::ProofBroker;
use gateway::{Launch, Variant, spawn_gateway};
use integration::proxy_servers::{ProxyProgram, ProxyServer};
use integration::{Arrivals, ledger, wait_until};
use mooring::packet::ProtocolVersion;
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

const TASKS: u32 = 4;
/// Messages per publishing task and numbers sent to the gateway, per kill: enough work that
/// the gateway is busy at every kill (it is alive 250 ms on average between kills).
const PER_TASK_PER_KILL: u64 = 20;
const INBOUND_PER_KILL: u64 = 50;
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Default)]
struct Report {
    expected: u64,
    kills: u32,
    cuts: u32,
    broker_restarts: u32,
    accepted: usize,
    arrived: usize,
    unrecorded_arrivals: usize,
    duplicates: usize,
    missing: usize,
    order_violations: usize,
    consumed: usize,
    unconsumed: usize,
    redelivered_after_ack: usize,
}

async fn prove(store: &str, qos: QoS, kills: u32, seed: u64, variant: Variant) -> Report {
    let qos_n: u8 = if qos == QoS::ExactlyOnce { 2 } else { 1 };
    println!(
        "crash proof: store {store}, QoS {qos_n}, {variant:?}, {kills} kills, CRASH_SEED={seed}"
    );
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let mut broker = ProofBroker::start(variant);
    let socks = variant
        .through_proxy
        .then(|| ProxyServer::start(ProxyProgram::Microsocks, None).unwrap());
    let fast = integration::fast_backoff();

    // The independent subscriber: a session of its own straight to the broker.
    let subscriber = Arrivals::subscribe(&broker.url(), "proof-subscriber", "proof/out/#", qos)
        .await
        .unwrap();

    let mut report = Report::default();
    let per_task = PER_TASK_PER_KILL * u64::from(kills.max(1));
    let inbound = INBOUND_PER_KILL * u64::from(kills.max(1));
    report.expected = u64::from(TASKS) * per_task;
    let gateway_url = broker.gateway_url();
    let env = broker.gateway_env();
    let launch = Launch {
        store,
        dir: dir.path(),
        url: &gateway_url,
        qos: qos_n,
        tasks: TASKS,
        per_task,
        env: &env,
    };
    let spawn = || spawn_gateway(&launch, variant, socks.as_ref());
    let mut gateway = spawn();
    let subscribed = gateway.subscribed.clone();
    wait_until("the first subscription", Duration::from_secs(20), || {
        subscribed.load(Ordering::SeqCst)
    })
    .await;

    // The feeder: numbered messages for the gateway, paced over the run.
    let (feeder, _feeder_inbox) = Client::builder()
        .server(broker.url())
        .client_id("proof-feeder")
        .store(MemoryStore::default())
        .reconnect(fast)
        .connect()
        .await
        .unwrap();
    let feeding = tokio::spawn({
        let feeder = feeder.clone();
        async move {
            let mut deliveries = Vec::new();
            for n in 0..inbound {
                deliveries.push(
                    feeder
                        .publish(format!("proof/in/{n}"), n.to_string(), qos)
                        .await
                        .unwrap(),
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for d in deliveries {
                d.await.unwrap();
            }
        }
    });

    for kill in 0..kills {
        let alive = Duration::from_millis(50 + rng.below(400));
        let cut_at = (kill % 3 == 1).then(|| alive / 2);
        match cut_at {
            Some(half) => {
                tokio::time::sleep(half).await;
                broker.cut();
                report.cuts += 1;
                tokio::time::sleep(alive - half).await;
            }
            None => tokio::time::sleep(alive).await,
        }
        gateway.kill();
        report.kills += 1;
        if variant.broker_restarts && kill % 5 == 4 {
            tokio::task::block_in_place(|| broker.restart());
            report.broker_restarts += 1;
        }
        gateway = spawn();
    }

    // The last run finishes the work and stops cleanly.
    let published = gateway.published.clone();
    wait_until("every task to finish", Duration::from_secs(120), || {
        published.load(Ordering::SeqCst)
    })
    .await;
    timeout_join(feeding, "the feeder").await;
    // What is still unconsumed after this is reported (and the broker's log with it).
    let d = dir.path().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (ledger(&d, "consumed").len() as u64) < inbound && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let accepted: HashSet<String> = ledger(dir.path(), "accepted").into_iter().collect();
    let arrived_all = || subscriber.include(&accepted);
    // Whatever is still missing after this is reported as missing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !arrived_all() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(gateway.stdin.take());
    let status = tokio::task::block_in_place(|| gateway.child.wait()).unwrap();
    assert!(
        status.success(),
        "the last gateway run exits cleanly: {status}"
    );
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrivals = subscriber.finish().await.unwrap();
    feeder.disconnect().await.unwrap();

    if std::env::var("CRASH_BROKER_LOG").is_ok() {
        let log = broker.log();
        let copy = std::env::temp_dir().join(format!("crash-broker-{store}-qos{qos_n}.log"));
        if std::fs::write(&copy, &log).is_ok() {
            println!("the broker's whole log: {}", copy.display());
        }
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for line in log.lines().filter(|l| l.contains("proof-gateway")) {
            let key: String = line
                .split_whitespace()
                .skip(1)
                .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                .take(8)
                .collect::<Vec<_>>()
                .join(" ");
            *reasons.entry(key).or_default() += 1;
        }
        for (k, v) in reasons {
            println!("{v:>6} {k}");
        }
        for line in log
            .lines()
            .filter(|l| l.contains("CONNACK to proof-gateway"))
        {
            if !line.contains("(1, 0)") {
                println!("{line}");
            }
        }
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for a in &arrivals {
        *counts.entry(a.as_str()).or_default() += 1;
    }
    report.accepted = accepted.len();
    report.arrived = arrivals.len();
    report.duplicates = counts.values().map(|c| c - 1).sum();
    report.missing = accepted
        .iter()
        .filter(|a| !counts.contains_key(a.as_str()))
        .count();
    report.unrecorded_arrivals = counts.keys().filter(|a| !accepted.contains(**a)).count();
    if std::env::var("CRASH_BROKER_LOG").is_ok() {
        let mut missing: Vec<&String> = accepted
            .iter()
            .filter(|a| !counts.contains_key(a.as_str()))
            .collect();
        missing.sort();
        println!("missing: {missing:?}");
        let starts = ledger(dir.path(), "incarnation").len();
        println!("incarnations: {starts}");
        let acc = ledger(dir.path(), "accepted");
        for m in missing.iter().take(3) {
            let pos = acc.iter().position(|a| a == *m);
            println!("{m} accepted at line {pos:?}");
        }
    }
    let mut last: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for a in &arrivals {
        let v: Vec<u64> = a.split(' ').map(|x| x.parse().unwrap()).collect();
        let (t, key) = (v[0], (v[1], v[2]));
        if let Some(prev) = last.insert(t, key)
            && key <= prev
        {
            report.order_violations += 1;
        }
    }
    let consumed = ledger(dir.path(), "consumed");
    let unique: HashSet<&String> = consumed.iter().collect();
    assert_eq!(
        unique.len(),
        consumed.len(),
        "the consumed ledger has no repeats"
    );
    report.consumed = consumed.len();
    report.unconsumed = (0..inbound)
        .filter(|n| !unique.contains(&n.to_string()))
        .count();
    report.redelivered_after_ack = ledger(dir.path(), "redelivered").len();
    if std::env::var("CRASH_BROKER_LOG").is_ok() {
        for n in ledger(dir.path(), "redelivered").iter().take(3) {
            println!("delivered again after its ack: {n}");
            let topic = format!("'proof/in/{n}'");
            let log = broker.log();
            // The packet identifiers the broker used for it, and every gateway line about them.
            let ids: Vec<String> = log
                .lines()
                .filter(|l| l.contains(&topic) && l.contains("proof-gateway"))
                .filter_map(|l| l.split(", m").nth(1))
                .filter_map(|rest| rest.split(',').next().map(str::to_owned))
                .collect();
            for line in log.lines().filter(|l| {
                l.contains(&topic)
                    || (l.contains("proof-gateway")
                        && ids.iter().any(|id| {
                            l.contains(&format!("m{id},")) || l.contains(&format!("m{id})"))
                        }))
                    || l.contains("New client connected")
                    || l.contains("terminating")
            }) {
                println!("   {line}");
            }
            let deliveries = ledger(dir.path(), "deliveries");
            for line in deliveries.iter().filter(|l| l.split(' ').next() == Some(n)) {
                println!("   gateway: {line}");
            }
        }
    }
    println!("{report:?}");
    if let Some(socks) = &socks {
        assert!(
            socks.tunnels() > report.kills as usize,
            "every gateway run went through the proxy: {} tunnels for {} runs",
            socks.tunnels(),
            report.kills + 1
        );
    }
    report
}

async fn timeout_join(task: tokio::task::JoinHandle<()>, what: &str) {
    tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
        .unwrap();
}

fn settings(default_kills: u32) -> (u32, u64) {
    let kills = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_kills);
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    (kills, seed)
}

/// Whether `CRASH_STORE` (unset: every store) selects `store`. A run skipped says so; a name
/// that is no store fails, so that a misspelt one cannot pass without proving anything.
fn selected(store: &str) -> bool {
    let Ok(chosen) = std::env::var("CRASH_STORE") else {
        return true;
    };
    assert!(
        ["redb", "sled", "sqlite"].contains(&chosen.as_str()),
        "CRASH_STORE={chosen:?} names no store: use redb, sled or sqlite"
    );
    if chosen != store {
        eprintln!("skipped: CRASH_STORE={chosen} selects another store than {store}");
    }
    chosen == store
}

async fn exactly_once(store: &str, variant: Variant) {
    if !selected(store) {
        return;
    }
    let (kills, seed) = settings(20);
    let r = prove(store, QoS::ExactlyOnce, kills, seed, variant).await;
    assert_eq!(r.missing, 0, "accepted messages lost: {r:?}");
    assert_eq!(r.duplicates, 0, "messages arrived twice: {r:?}");
    assert_eq!(r.order_violations, 0, "per-task order broken: {r:?}");
    assert_eq!(
        r.unconsumed, 0,
        "numbers sent to the gateway never consumed: {r:?}"
    );
    assert_eq!(
        r.redelivered_after_ack, 0,
        "delivered again after the ack: {r:?}"
    );
    assert_eq!(
        r.accepted as u64, r.expected,
        "every publish was accepted in the end: {r:?}"
    );
}

async fn at_least_once(store: &str) {
    if !selected(store) {
        return;
    }
    let (kills, seed) = settings(10);
    let r = prove(store, QoS::AtLeastOnce, kills, seed, Variant::of(version())).await;
    assert_eq!(r.missing, 0, "accepted messages lost: {r:?}");
    assert_eq!(
        r.unconsumed, 0,
        "numbers sent to the gateway never consumed: {r:?}"
    );
    println!(
        "QoS 1 on {store}: {} duplicates at the subscriber, {} redeliveries after ack",
        r.duplicates, r.redelivered_after_ack
    );
}

/// The protocol `MQTT_VERSION` asks for (5 when unset).
fn version() -> ProtocolVersion {
    integration::mqtt_version().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_qos2_exactly_once_across_kills_cuts_and_broker_restarts() {
    exactly_once("redb", Variant::of(version())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_qos2_exactly_once_across_kills_cuts_and_broker_restarts() {
    exactly_once("sled", Variant::of(version())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_qos2_exactly_once_across_kills_cuts_and_broker_restarts() {
    exactly_once("sqlite", Variant::of(version())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_qos2_exactly_once_at_3_1_1() {
    exactly_once("sqlite", Variant::of(ProtocolVersion::V311)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_qos2_exactly_once_at_3_1_1() {
    exactly_once("redb", Variant::of(ProtocolVersion::V311)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_qos2_exactly_once_at_3_1_1() {
    exactly_once("sled", Variant::of(ProtocolVersion::V311)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_qos2_exactly_once_with_the_queue_read_back_from_the_store() {
    exactly_once(
        "redb",
        Variant {
            queue_window: Some(2),
            ..Variant::of(version())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_qos2_exactly_once_with_the_queue_read_back_from_the_store() {
    exactly_once(
        "sled",
        Variant {
            queue_window: Some(2),
            ..Variant::of(version())
        },
    )
    .await;
}

/// A broker window of 2: queued messages go out while a commit is in flight, under
/// identifiers their sequence numbers fix, so after a restart the client cannot tell a message
/// it sent from one it did not. A design tried before lost QoS 2 messages here (mosquitto
/// refused a PUBLISH over its quota with 0x97, see BENCHMARKS.md). This run proves exactly
/// once at that window; the order that avoids 0x97 (PUBRELs first) is held by the engine test
/// `pubrels_go_before_publishes_on_a_new_connection_so_a_receive_maximum_of_2_is_never_exceeded`
/// (putting the old order back did not fail 60 kills here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_qos2_exactly_once_with_a_broker_receive_maximum_of_2() {
    exactly_once(
        "redb",
        Variant {
            broker_window: 2,
            ..Variant::of(version())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_qos2_exactly_once_with_a_broker_receive_maximum_of_2() {
    exactly_once(
        "sled",
        Variant {
            broker_window: 2,
            ..Variant::of(version())
        },
    )
    .await;
}

/// The gateway behind a SOCKS5 proxy that the environment names: every connection of every
/// run goes gateway → microsocks → the fault proxy (cuts) → mosquitto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_qos2_exactly_once_through_a_socks5_proxy_the_environment_names() {
    exactly_once(
        "redb",
        Variant {
            through_proxy: true,
            ..Variant::of(version())
        },
    )
    .await;
}

/// The gateway speaks MQTT over QUIC to the `mqttv5` broker (a broker this project did not
/// write), through a UDP relay; every third kill also moves the relay's side of the path to
/// a new port (a NAT that rebinds) mid-run. The broker is not restarted: mqttv5 0.29.10 does
/// not keep a QoS 2 exchange across its own restart (it answers the PUBREL that completes
/// one with 0x92, Packet Identifier not found), which no client can make exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_qos2_exactly_once_over_quic() {
    exactly_once(
        "redb",
        Variant {
            over_quic: true,
            broker_restarts: false,
            ..Variant::of(version())
        },
    )
    .await;
}

/// The gateway's TLS client key stays in a SoftHSM2 token (PKCS#11); mosquitto requires the
/// certificate. Every run of the gateway opens the token and signs a full handshake with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_qos2_exactly_once_with_the_tls_key_in_a_pkcs11_token() {
    exactly_once(
        "redb",
        Variant {
            key_in_token: true,
            ..Variant::of(version())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_qos1_at_least_once_across_kills() {
    at_least_once("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_qos1_at_least_once_across_kills() {
    at_least_once("sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_qos1_at_least_once_across_kills() {
    at_least_once("sqlite").await;
}
