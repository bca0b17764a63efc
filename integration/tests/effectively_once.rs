//! Effectively-once over QoS 1, across SIGKILL and broker restarts. A publisher that keys its
//! QoS 1 publishes and a subscriber that drops copies by key (`effectively_once_child`, each on
//! its redb store) run against a mosquitto limited to QoS 1 (`max_qos 1`, persistence on);
//! this test kills each of them with SIGKILL `EO_KILLS` times at random moments (default 3;
//! `scripts/effectively-once.sh N` for long runs), restarts the broker twice (SIGTERM, so it
//! keeps its sessions), and checks, from the two applications' ledgers:
//!
//! - nothing the publisher's application saw accepted is missing at the subscriber's;
//! - the subscriber's application never got a message again after its `ack` returned: QoS 1
//!   delivered copies (the publisher resending after a kill, the broker after its restart),
//!   and the keys the subscriber kept in its store recognised them;
//! - copies of a message the application held at a kill, not yet acked, come again (that is
//!   what it had not finished), and are counted apart.
//!
//! It prints `N sent, N received, 0 lost, 0 duplicated` and how many copies the key check
//! removed. `EO_WITHOUT_KEYS=1` runs both sides without keys: then the duplicates show.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::{complete_lines, env_or, wait_until};

/// One side, running; SIGKILL on drop, also when a failed assertion unwinds past it.
struct Side {
    child: Child,
    /// How many times it said `SUBSCRIBED` or `PUBLISHED`.
    ready: Arc<AtomicU64>,
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(role: &str, dir: &Path, url: &str, number: u64, protocol: &str) -> Side {
    let mut child = Command::new(env!("CARGO_BIN_EXE_effectively_once_child"))
        .arg(role)
        .arg(dir.join(format!("{role}.redb")))
        .arg(url)
        .arg(dir.join("ledgers"))
        .arg(number.to_string())
        .env("MQTT_VERSION", protocol)
        // Spread over the kills: about 2 s for 450 messages.
        .env("EO_PACE_MS", "4")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("effectively_once_child starts");
    let ready = Arc::new(AtomicU64::new(0));
    let stdout = child.stdout.take().unwrap();
    let said = ready.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "SUBSCRIBED" || line == "PUBLISHED" {
                said.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Side { child, ready }
}

#[derive(Debug, Default)]
struct Report {
    sent: usize,
    received: usize,
    lost: Vec<String>,
    /// Hand-overs of a message whose ack had returned: the violations.
    duplicated: Vec<String>,
    /// Hand-overs again of a message the application held, unacked, at a kill.
    again_after_a_kill: usize,
    /// Arrivals of payloads the publisher was killed before it could record as accepted.
    unrecorded: usize,
    /// Copies the subscriber's key check removed (each run's last count, summed: a lower
    /// bound, as a kill loses up to 100 ms of counting).
    removed_by_key: u64,
    kills: u64,
    broker_restarts: u64,
}

async fn prove(protocol: &str) -> Report {
    let kills = env_or("EO_KILLS", 3);
    let messages = env_or("EO_MESSAGES", 150 * kills.max(1));
    let seed = env_or("EO_SEED", fastrand::u64(..));
    println!(
        "effectively-once proof: MQTT {protocol}, {messages} messages, {kills} kills of each \
         side, 2 broker restarts, EO_SEED={seed}"
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let ledgers = dir.path().join("ledgers");
    let mut broker = Mosquitto::with_config(&MosquittoConfig {
        persistence: true,
        extra: vec!["max_qos 1".into(), "max_queued_messages 0".into()],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let url = broker.url();
    let mut subscriber = spawn("subscribe", dir.path(), &url, 2, protocol);
    let ready = subscriber.ready.clone();
    wait_until("the subscription", Duration::from_secs(20), || {
        ready.load(Ordering::SeqCst) > 0
    })
    .await;
    let mut publisher = spawn("publish", dir.path(), &url, messages, protocol);

    let mut report = Report::default();
    // Each side is killed `kills` times, in a random order, with the broker restarted after
    // a third and after two thirds of the kills.
    let mut order: Vec<bool> = (0..kills * 2).map(|i| i % 2 == 0).collect();
    rng.shuffle(&mut order);
    let restarts_at = [order.len() / 3, order.len() * 2 / 3];
    let incarnations = |role: &str| complete_lines(&ledgers.join(format!("{role}-incarnation")));
    let mut spawned: HashMap<&str, usize> = HashMap::from([("publish", 1), ("subscribe", 1)]);
    for (i, kill_publisher) in order.into_iter().enumerate() {
        if restarts_at.contains(&i) {
            broker.stop();
            tokio::time::sleep(Duration::from_millis(rng.u64(50..300))).await;
            broker.restart().unwrap();
            report.broker_restarts += 1;
        }
        let role = if kill_publisher {
            "publish"
        } else {
            "subscribe"
        };
        // The run about to be killed has written its start.
        let runs = spawned[role];
        wait_until("the run's start", Duration::from_secs(20), || {
            incarnations(role).len() >= runs
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.u64(100..800))).await;
        if kill_publisher {
            drop(publisher);
            publisher = spawn("publish", dir.path(), &url, messages, protocol);
        } else {
            drop(subscriber);
            subscriber = spawn("subscribe", dir.path(), &url, 2, protocol);
        }
        report.kills += 1;
        *spawned.entry(role).or_default() += 1;
    }
    let published = publisher.ready.clone();
    wait_until(
        "the publisher's last number",
        Duration::from_secs(120),
        || published.load(Ordering::SeqCst) > 0,
    )
    .await;
    let accepted = complete_lines(&ledgers.join("accepted"));
    let handled_payloads = || -> HashSet<String> {
        complete_lines(&ledgers.join("handled"))
            .into_iter()
            .map(|line| {
                line.rsplit_once(' ')
                    .map_or(line.clone(), |(p, _)| p.to_owned())
            })
            .collect()
    };
    let everything_handled = || {
        let handled = handled_payloads();
        accepted.iter().all(|a| handled.contains(a))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !everything_handled() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Copies still on their way (a resend after the last kill) arrive in the next moments.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for side in [&mut publisher, &mut subscriber] {
        drop(side.child.stdin.take());
        let status = tokio::task::block_in_place(|| side.child.wait()).unwrap();
        assert!(status.success(), "the last run exits cleanly: {status}");
    }

    // Received: handed to the application, which records it before it acks (a kill after
    // the ack and before the `acked` line leaves it handled, its key kept).
    let handled = handled_payloads();
    let accepted_set: HashSet<&String> = accepted.iter().collect();
    report.sent = accepted.len();
    report.lost = accepted
        .iter()
        .filter(|a| !handled.contains(*a))
        .cloned()
        .collect();
    report.received = report.sent - report.lost.len();
    report.duplicated = complete_lines(&ledgers.join("duplicated"));
    let mut handed: HashMap<String, usize> = HashMap::new();
    for line in complete_lines(&ledgers.join("handled")) {
        let payload = line.rsplit_once(' ').map_or(line.as_str(), |(p, _)| p);
        *handed.entry(payload.to_owned()).or_default() += 1;
    }
    let repeats: usize = handed.values().map(|n| n - 1).sum();
    report.again_after_a_kill = repeats.saturating_sub(report.duplicated.len());
    report.unrecorded = handed.keys().filter(|p| !accepted_set.contains(p)).count();
    let mut last_count: BTreeMap<u64, u64> = BTreeMap::new();
    for line in complete_lines(&ledgers.join("dropped")) {
        if let Some((run, count)) = line.split_once(' ') {
            last_count.insert(run.parse().unwrap(), count.parse().unwrap());
        }
    }
    report.removed_by_key = last_count.values().sum();
    println!(
        "{} sent, {} received, {} lost, {} duplicated",
        report.sent,
        report.received,
        report.lost.len(),
        report.duplicated.len()
    );
    println!(
        "the key check removed at least {} copies of messages the application had handled or \
         held; {} messages came again because the application held them, unacked, at a kill; \
         {} arrivals of publishes the publisher was killed before recording; {} kills, {} \
         broker restarts",
        report.removed_by_key,
        report.again_after_a_kill,
        report.unrecorded,
        report.kills,
        report.broker_restarts
    );
    if !report.lost.is_empty() || !report.duplicated.is_empty() {
        println!("broker log:\n{}", broker.log());
    }
    report
}

fn check(r: &Report) {
    assert!(r.sent > 0, "nothing was sent: {r:?}");
    assert!(r.lost.is_empty(), "accepted messages lost: {r:?}");
    assert!(
        r.duplicated.is_empty(),
        "handed over again after their ack returned: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_qos1_loses_nothing_and_nothing_comes_again_after_its_ack_across_kills_and_broker_restarts()
 {
    check(&prove("5").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_qos1_in_envelopes_loses_nothing_and_nothing_comes_again_after_its_ack_at_3_1_1() {
    check(&prove("3.1.1").await);
}
