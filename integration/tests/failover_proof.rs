//! The failover proof: two gateway processes (`gateway_child`, store `postgres`) on one
//! session in PostgreSQL, one active and one standby, publishing numbered QoS 2 messages and
//! consuming a numbered QoS 2 stream, each process with manual or automatic ack (at random).
//! Each gateway reaches PostgreSQL through a
//! fault proxy of its own. Each round does one of these to the active one (`FaultKind`): kills
//! it with SIGKILL; freezes it with SIGSTOP past its lease; freezes it for a quarter of its
//! lease (the standby must not take over, and it goes on); resets its connections to the
//! database and refuses new ones; or drops its connections to the database into a black hole
//! (nothing answers, nothing closes). Past the lease the standby takes over; a frozen one is
//! then woken with SIGCONT, and one cut off from the database reaches it again, and it must
//! be fenced: it exits with status 3 having sent the broker
//! nothing, not a byte on any connection the broker held open, a new one included (each
//! gateway reaches the broker through a proxy of its own, which counts them). The broker
//! closed the frozen one's connection when the standby connected; a write the process had
//! already begun past its last lease check when it froze can still land in that closed
//! connection, where no one reads it: the proof counts such bytes and prints them. That the
//! client writes nothing it held waiting once its lease ran out is `tests/ownership.rs`'s
//! deterministic test. The dead or fenced one starts again as the new standby. At the end an
//! independent
//! subscriber and the ledgers are checked: every accepted message arrived exactly once and
//! nothing twice, every number sent to the gateways was consumed, none after its ack, and no
//! owner's application was handed a message after a later owner had started (a number may be
//! consumed by two owners only when the first had it before the takeover and never acked it).
//!
//! `FAILOVER_TAKEOVERS` (rounds, default 5), `FAILOVER_SEED` and `FAILOVER_LEASE_MS` (default
//! 1000) tune it; `scripts/failover.sh N` runs a long one. It prints each fault kind with its
//! count and the verdict `N accepted, N delivered, 0 lost, 0 duplicated`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::postgres::Postgres;
use integration::proxy::{Fault, FaultProxy};
use integration::{Arrivals, ledger, wait_until};
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

const TASKS: u32 = 2;
const PER_TASK_PER_ROUND: u64 = 30;
const INBOUND_PER_ROUND: u64 = 40;

/// What a gateway process said on its standard output.
#[derive(Default)]
struct Said {
    active: AtomicBool,
    subscribed: AtomicBool,
    published: AtomicBool,
    fenced: AtomicBool,
}

struct Gateway {
    child: Child,
    stdin: Option<ChildStdin>,
    said: Arc<Said>,
    /// Its own way to the broker, counting what it sends.
    proxy: FaultProxy,
    /// Its own way to PostgreSQL, for partitions and black holes.
    db: FaultProxy,
}

/// What a round does to the active gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FaultKind {
    /// SIGKILL.
    Kill,
    /// SIGSTOP until the standby took over, then SIGCONT: it must find itself fenced.
    Freeze,
    /// SIGSTOP for a quarter of the lease, then SIGCONT: no takeover, it goes on.
    ShortFreeze,
    /// Its connections to PostgreSQL reset and new ones refused until the standby took over.
    DatabaseReset,
    /// Its connections to PostgreSQL fall into a black hole (nothing answers, nothing
    /// closes), new ones refused, until the standby took over.
    DatabaseBlackHole,
}

impl FaultKind {
    const ALL: [FaultKind; 5] = [
        FaultKind::Kill,
        FaultKind::Freeze,
        FaultKind::ShortFreeze,
        FaultKind::DatabaseReset,
        FaultKind::DatabaseBlackHole,
    ];

    /// Whether the standby takes the session over.
    fn takes_over(self) -> bool {
        self != FaultKind::ShortFreeze
    }

    /// Whether the old owner lives on to be fenced.
    fn survives(self) -> bool {
        self != FaultKind::Kill
    }
}

fn spawn_gateway(
    broker: &Mosquitto,
    pg: &Postgres,
    dir: &Path,
    per_task: u64,
    lease_ms: u64,
    auto_ack: bool,
) -> Gateway {
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], broker.port()))).unwrap();
    let db = FaultProxy::start(pg.addr()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway_child"))
        .env("GATEWAY_LEASE_MS", lease_ms.to_string())
        .env("GATEWAY_CLUSTER", "proof")
        .env("GATEWAY_AUTO_ACK", if auto_ack { "1" } else { "0" })
        .arg("postgres")
        .arg(format!(
            "host=127.0.0.1 port={} user=mooring dbname=postgres connect_timeout=2",
            db.port()
        ))
        .arg(proxy.url())
        .arg(dir.join("ledgers"))
        .arg("2")
        .arg(TASKS.to_string())
        .arg(per_task.to_string())
        .arg("2")
        .arg("10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gateway_child starts");
    let said = Arc::new(Said::default());
    let stdout = child.stdout.take().unwrap();
    let s = said.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let flag = match line.as_str() {
                "ACTIVE" => &s.active,
                "SUBSCRIBED" => &s.subscribed,
                "PUBLISHED" => &s.published,
                l if l.starts_with("FENCED") => &s.fenced,
                _ => continue,
            };
            flag.store(true, Ordering::SeqCst);
        }
    });
    let stdin = child.stdin.take();
    Gateway {
        child,
        stdin,
        said,
        proxy,
        db,
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
}

impl Gateway {
    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

/// SIGKILL (after SIGCONT, for a frozen one), also when a failed assertion unwinds past it.
impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the ledgers say about messages handed to more than one owner's application.
struct HandedOver {
    /// Deliveries to an owner's application after a later owner had started: a frozen owner
    /// that woke must hand out nothing (the client holds its inbox back once the lease lapsed).
    late: usize,
    /// Numbers consumed by two owners, none of those deliveries late: the first had it before
    /// the takeover and stopped before its ack returned (the `redelivered` ledger, checked
    /// apart, holds that no ack had returned), so the server sent it to the next owner.
    before_takeover: usize,
    /// The late deliveries and every owner's start, for the failure message.
    traces: Vec<String>,
}

/// Reads every delivery and every owner's start from the ledgers.
fn handed_over(dir: &Path, consumed: &[String]) -> HandedOver {
    // `start <ms>` per incarnation, in order.
    let starts: Vec<u64> = ledger(dir, "incarnation")
        .iter()
        .filter_map(|l| l.strip_prefix("start ")?.parse().ok())
        .collect();
    let mut late = Vec::new();
    for line in ledger(dir, "deliveries") {
        // `<n> delivered m<id> dup=<dup> run <incarnation> at <ms>`
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(run), Some(at)) = (
            fields.get(5).and_then(|r| r.parse::<usize>().ok()),
            fields.get(7).and_then(|t| t.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if starts.iter().skip(run + 1).any(|&start| start <= at) {
            late.push(line.clone());
        }
    }
    let mut seen = HashSet::new();
    let twice: HashSet<&String> = consumed.iter().filter(|n| !seen.insert(*n)).collect();
    let late_numbers: HashSet<&str> = late.iter().filter_map(|l| l.split(' ').next()).collect();
    let before_takeover = twice
        .iter()
        .filter(|n| !late_numbers.contains(n.as_str()))
        .count();
    let mut traces = late.clone();
    traces.extend(
        starts
            .iter()
            .enumerate()
            .map(|(run, at)| format!("run {run} started at {at}")),
    );
    HandedOver {
        late: late.len(),
        before_takeover,
        traces,
    }
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_or_frozen_gateway_and_the_old_one_is_fenced() {
    let takeovers: u32 = env_or("FAILOVER_TAKEOVERS", 5);
    let lease_ms: u64 = env_or("FAILOVER_LEASE_MS", 1000);
    let seed: u64 = env_or(
        "FAILOVER_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    println!("failover proof: {takeovers} takeovers, lease {lease_ms} ms, FAILOVER_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::with_config(&MosquittoConfig {
        persistence: true,
        quiet_log: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let pg = Postgres::start().unwrap();
    let fast = integration::fast_backoff();

    let subscriber = Arrivals::subscribe(
        &broker.url(),
        "failover-subscriber",
        "proof/out/#",
        QoS::ExactlyOnce,
    )
    .await
    .unwrap();

    let rounds = u64::from(takeovers) + 1;
    let per_task = PER_TASK_PER_ROUND * rounds;
    let inbound = INBOUND_PER_ROUND * rounds;
    // Each gateway acks automatically or by hand, at random: the session is shared, the ack
    // mode is each process's.
    let mut auto_acks = 0;
    let mut spawn = |rng: &mut fastrand::Rng| {
        let auto_ack = rng.bool();
        auto_acks += u32::from(auto_ack);
        spawn_gateway(&broker, &pg, dir.path(), per_task, lease_ms, auto_ack)
    };
    let mut active = spawn(&mut rng);
    wait_until(
        "the first gateway to subscribe",
        Duration::from_secs(30),
        || active.said.subscribed.load(Ordering::SeqCst),
    )
    .await;
    let mut standby = spawn(&mut rng);

    // The feeder: numbered messages for whichever gateway is active.
    let (feeder, _feeder_inbox) = Client::builder()
        .server(broker.url())
        .client_id("failover-feeder")
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
                        .publish(format!("proof/in/{n}"), n.to_string(), QoS::ExactlyOnce)
                        .await
                        .unwrap(),
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for d in deliveries {
                d.await.unwrap();
            }
        }
    });

    let mut takeover_times = Vec::new();
    let mut faults: HashMap<FaultKind, u32> = HashMap::new();
    // Bytes woken gateways wrote into connections the broker had closed (see the top).
    let mut unread_after_waking = 0;
    // Connections fenced gateways opened before their ownership check stopped them.
    let mut dials_after_waking = 0;
    let lease = Duration::from_millis(lease_ms);
    for round in 0..takeovers {
        tokio::time::sleep(Duration::from_millis(200 + rng.u64(..600))).await;
        assert!(
            !standby.said.active.load(Ordering::SeqCst),
            "round {round}: the standby became active while the active one ran"
        );
        let kind = FaultKind::ALL[rng.usize(..FaultKind::ALL.len())];
        *faults.entry(kind).or_default() += 1;
        let stopped_at = Instant::now();
        match kind {
            FaultKind::Kill => signal(&active.child, "-KILL"),
            FaultKind::Freeze | FaultKind::ShortFreeze => signal(&active.child, "-STOP"),
            FaultKind::DatabaseReset => {
                active.db.set(Fault::Refuse);
                active.db.cut();
            }
            FaultKind::DatabaseBlackHole => {
                active.db.set(Fault::Refuse);
                active.db.lose_open_connections();
            }
        }
        if !kind.takes_over() {
            // Within its lease: it wakes still the owner, and the standby waits on.
            tokio::time::sleep(lease / 4).await;
            signal(&active.child, "-CONT");
            tokio::time::sleep(lease * 2).await;
            assert!(
                !standby.said.active.load(Ordering::SeqCst),
                "round {round}: the standby took over from an owner frozen within its lease"
            );
            assert!(
                active.child.try_wait().unwrap().is_none(),
                "round {round}: an owner frozen within its lease stopped"
            );
            continue;
        }
        let new_active = &standby.said;
        wait_until("the standby to take over", Duration::from_secs(30), || {
            new_active.subscribed.load(Ordering::SeqCst)
        })
        .await;
        takeover_times.push(stopped_at.elapsed());
        if kind.survives() {
            if kind == FaultKind::Freeze {
                // The broker closed the frozen one's connection when the standby connected
                // with its client identifier; everything it sent before has reached the proxy.
                wait_until(
                    "the broker to close the frozen gateway's connection",
                    Duration::from_secs(10),
                    || active.proxy.open_connections() == 0,
                )
                .await;
            } else {
                // Cut off from its database, it stopped writing when its lease ran out, before
                // the standby could take over; it may be dialling the broker again meanwhile,
                // each attempt held at the ownership check that comes before CONNECT.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let sent_before = active.proxy.bytes_to_server();
            let connections_before = active.proxy.connections();
            let unread_before = active.proxy.bytes_after_server_closed();
            // It comes back: woken, or reaching its database again.
            if kind == FaultKind::Freeze {
                signal(&active.child, "-CONT");
            } else {
                active.db.set(Fault::Pass);
            }
            let status = tokio::task::block_in_place(|| active.wait_exit(Duration::from_secs(30)))
                .unwrap_or_else(|| panic!("round {round}: the old owner ({kind:?}) did not stop"));
            assert_eq!(
                status.code(),
                Some(3),
                "round {round}: the old owner ({kind:?}) was not fenced ({status})"
            );
            assert!(active.said.fenced.load(Ordering::SeqCst));
            // It may have opened a connection: the ownership check comes after the transport,
            // right before CONNECT. Not one byte may have gone over it.
            assert_eq!(
                active.proxy.bytes_to_server(),
                sent_before,
                "round {round}: the fenced gateway ({kind:?}) sent bytes to the broker ({} \
                 connections opened after the takeover)",
                active.proxy.connections() - connections_before
            );
            unread_after_waking += active.proxy.bytes_after_server_closed() - unread_before;
            dials_after_waking += active.proxy.connections() - connections_before;
        }
        // The dead or fenced one starts again, as the standby.
        let old = std::mem::replace(
            &mut active,
            std::mem::replace(&mut standby, spawn(&mut rng)),
        );
        drop(old);
    }

    // The last active one finishes the work; the standby goes first, so that it stays one.
    drop(standby);
    wait_until("every task to finish", Duration::from_secs(120), || {
        active.said.published.load(Ordering::SeqCst)
    })
    .await;
    tokio::time::timeout(Duration::from_secs(120), feeding)
        .await
        .expect("the feeder finished")
        .unwrap();
    let d = dir.path().to_owned();
    wait_until(
        "every number to be consumed",
        Duration::from_secs(60),
        || ledger(&d, "consumed").len() as u64 >= inbound,
    )
    .await;
    let accepted: HashSet<String> = ledger(dir.path(), "accepted").into_iter().collect();
    let all_arrived = || subscriber.include(&accepted);
    wait_until(
        "every accepted message to arrive",
        Duration::from_secs(60),
        all_arrived,
    )
    .await;
    drop(active.stdin.take());
    let status = tokio::task::block_in_place(|| active.wait_exit(Duration::from_secs(30)));
    assert!(
        status.is_some_and(|s| s.success()),
        "the last gateway exits cleanly: {status:?}"
    );
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrivals = subscriber.finish().await.unwrap();
    feeder.disconnect().await.unwrap();

    let mut counts: HashMap<&str, usize> = HashMap::new();
    for a in &arrivals {
        *counts.entry(a.as_str()).or_default() += 1;
    }
    let duplicates: Vec<(&&str, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    let unrecorded = counts.keys().filter(|a| !accepted.contains(**a)).count();
    let consumed = ledger(dir.path(), "consumed");
    let consumed_set: HashSet<&String> = consumed.iter().collect();
    let unconsumed = (0..inbound)
        .filter(|n| !consumed_set.contains(&n.to_string()))
        .count();
    let redelivered = ledger(dir.path(), "redelivered");
    let handed_over = handed_over(dir.path(), &consumed);
    let lost = accepted
        .iter()
        .filter(|a| !counts.contains_key(a.as_str()))
        .count();
    let delivered = accepted.len() - lost;
    let mut kinds: Vec<String> = FaultKind::ALL
        .iter()
        .map(|kind| format!("{kind:?} {}", faults.get(kind).copied().unwrap_or(0)))
        .collect();
    kinds.sort();
    println!(
        "failover proof: faults: {}; gateways acking automatically: {auto_acks}",
        kinds.join(", ")
    );
    println!(
        "failover proof: takeover (stop to the standby's \
         SUBACK) median {:?}, max {:?}; woken gateways wrote {unread_after_waking} bytes into \
         closed connections and opened {dials_after_waking} without a byte; {} accepted, {} \
         arrived, {unrecorded} published but unrecorded (killed before the ledger), {} \
         duplicates; {} consumed, {unconsumed} \
         unconsumed, {} delivered again after their ack, {} handed to a stopped owner and \
         again to the next (never acked)",
        median(&mut takeover_times.clone()),
        takeover_times.iter().max().copied().unwrap_or_default(),
        accepted.len(),
        arrivals.len(),
        duplicates.len(),
        consumed.len(),
        redelivered.len(),
        handed_over.before_takeover,
    );
    println!(
        "{} accepted, {delivered} delivered, {lost} lost, {} duplicated",
        accepted.len(),
        duplicates.len()
    );
    assert_eq!(lost, 0, "accepted and never delivered");
    assert!(duplicates.is_empty(), "arrived twice: {duplicates:?}");
    assert_eq!(
        handed_over.late, 0,
        "an owner handed its application a message after another took the session over: \
         {:#?}",
        handed_over.traces
    );
    assert_eq!(unconsumed, 0, "numbers never consumed");
    assert!(
        redelivered.is_empty(),
        "delivered after their ack: {redelivered:?}"
    );
    assert!(
        unrecorded <= (TASKS * takeovers) as usize,
        "{unrecorded} arrivals no ledger recorded, more than one per task per takeover"
    );
    assert!(!accepted.is_empty() && accepted.len() as u64 >= per_task * u64::from(TASKS));
}
