//! Exactly-once reaches the application with automatic ack. A feeder publishes numbered
//! messages to an application (`handler_child`) that reads them the obvious way, `while let
//! Some(message) = messages.recv().await`, taking 5 ms to handle each, on a redb store with
//! automatic ack; this test kills it with SIGKILL at random moments and starts it again.
//! Its ledger `received` says which message `recv` handed over in which incarnation.
//!
//! - Both QoS: every number published was handed to the application at least once.
//! - QoS 2: a number is handed over again only if the process was killed while the
//!   application held it: the earlier hand-over was the last of its incarnation (from `recv`
//!   returning it until the next `recv` returned, the application holds it). So there are at
//!   most as many repeats as kills.
//!
//! `HANDLING_KILLS` (default 5), `HANDLING_MESSAGES` (default 600) and `HANDLING_SEED` tune
//! it; `scripts/handling.sh N` runs a long one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::{complete_lines, env_or, wait_until};
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

struct Handler {
    child: Child,
    subscribed: Arc<AtomicBool>,
}

/// SIGKILL, also when a failed assertion unwinds past it.
impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_handler(dir: &Path, url: &str, qos: u8) -> Handler {
    let mut child = Command::new(env!("CARGO_BIN_EXE_handler_child"))
        .arg("redb")
        .arg(dir.join("handler.redb"))
        .arg(url)
        .arg(dir.join("ledgers"))
        .arg(qos.to_string())
        .arg("5")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("handler_child starts");
    let subscribed = Arc::new(AtomicBool::new(false));
    let stdout = child.stdout.take().unwrap();
    let flag = subscribed.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "SUBSCRIBED" {
                flag.store(true, Ordering::SeqCst);
            }
        }
    });
    Handler { child, subscribed }
}

#[derive(Debug, Default)]
struct Report {
    messages: u64,
    kills: u64,
    handed_over: usize,
    never_handed_over: usize,
    /// Hand-overs of a number handed over before.
    repeats: usize,
    /// Repeats of a number the application no longer held at a kill: the violations.
    repeats_not_held_at_a_kill: Vec<String>,
}

async fn prove(qos: QoS) -> Report {
    let qos_n: u8 = if qos == QoS::ExactlyOnce { 2 } else { 1 };
    let kills = env_or("HANDLING_KILLS", 5);
    let messages = env_or("HANDLING_MESSAGES", 600);
    let seed = env_or("HANDLING_SEED", fastrand::u64(..));
    println!(
        "handling proof: QoS {qos_n}, {messages} messages, {kills} kills, HANDLING_SEED={seed}"
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::with_config(&MosquittoConfig {
        extra: vec!["max_queued_messages 0".into()],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let ledgers = dir.path().join("ledgers");
    let mut handler = spawn_handler(dir.path(), &broker.url(), qos_n);
    let flag = handler.subscribed.clone();
    wait_until("the first subscription", Duration::from_secs(20), || {
        flag.load(Ordering::SeqCst)
    })
    .await;

    let (feeder, _inbox) = Client::builder()
        .server(broker.url())
        .client_id("proof-handling-feeder")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    let feeding = tokio::spawn(async move {
        let mut deliveries = Vec::new();
        for n in 0..messages {
            deliveries.push(
                feeder
                    .publish(format!("proof/handle/{n}"), n.to_string(), qos)
                    .await
                    .unwrap(),
            );
        }
        for d in deliveries {
            d.await.unwrap();
        }
        feeder.disconnect().await.unwrap();
    });

    let mut report = Report {
        messages,
        ..Report::default()
    };
    for kill in 0..kills {
        // Each incarnation has written its start before the kill's timer runs.
        let started = kill as usize + 1;
        wait_until("the incarnation's start", Duration::from_secs(20), || {
            complete_lines(&ledgers.join("incarnation")).len() >= started
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100 + rng.u64(..700))).await;
        drop(handler);
        report.kills += 1;
        handler = spawn_handler(dir.path(), &broker.url(), qos_n);
    }
    tokio::time::timeout(Duration::from_secs(120), feeding)
        .await
        .expect("the feeder finishes")
        .unwrap();
    let everything = || {
        let received = complete_lines(&ledgers.join("received"));
        let seen: std::collections::HashSet<&str> = received
            .iter()
            .filter_map(|l| l.split(' ').next())
            .collect();
        seen.len() as u64 >= messages
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !everything() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(handler.child.stdin.take());
    let status = tokio::task::block_in_place(|| handler.child.wait()).unwrap();
    assert!(status.success(), "the last run exits cleanly: {status}");

    // Which incarnation handed each number over, in order, and each incarnation's last.
    let received = complete_lines(&ledgers.join("received"));
    let mut last_of: BTreeMap<u64, String> = BTreeMap::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut held_at_kill: Vec<(String, u64)> = Vec::new();
    for line in &received {
        let (n, incarnation) = line.split_once(' ').unwrap();
        last_of.insert(incarnation.parse().unwrap(), n.to_owned());
    }
    for line in &received {
        let (n, incarnation) = line.split_once(' ').unwrap();
        let incarnation: u64 = incarnation.parse().unwrap();
        report.handed_over += 1;
        if let Some(before) = seen.insert(n.to_owned(), incarnation) {
            report.repeats += 1;
            // Allowed only if, in the incarnation before, the application held it at the kill.
            let held = before < incarnation && last_of.get(&before).map(String::as_str) == Some(n);
            if held {
                held_at_kill.push((n.to_owned(), before));
            } else {
                report.repeats_not_held_at_a_kill.push(line.clone());
            }
        }
    }
    report.never_handed_over = (0..messages)
        .filter(|n| !seen.contains_key(&n.to_string()))
        .count();
    for line in &report.repeats_not_held_at_a_kill {
        let n = line.split(' ').next().unwrap_or_default();
        let earlier: Vec<&String> = received
            .iter()
            .filter(|l| l.starts_with(&format!("{n} ")))
            .collect();
        println!("{n}: handed over as {earlier:?}; each incarnation's last: {last_of:?}");
    }
    println!("{report:?}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_automatic_ack_hands_over_again_only_what_the_application_held_at_a_kill() {
    let r = prove(QoS::ExactlyOnce).await;
    assert_eq!(r.never_handed_over, 0, "messages lost: {r:?}");
    assert!(
        r.repeats_not_held_at_a_kill.is_empty(),
        "handed over again although the application was done with it: {r:?}"
    );
    assert!(
        r.repeats as u64 <= r.kills,
        "more repeats than kills: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_automatic_ack_hands_every_message_to_the_application_across_kills() {
    let r = prove(QoS::AtLeastOnce).await;
    assert_eq!(r.never_handed_over, 0, "messages lost: {r:?}");
    println!(
        "QoS 1: {} hand-overs of {} messages, {} repeats across {} kills",
        r.handed_over, r.messages, r.repeats, r.kills
    );
}
