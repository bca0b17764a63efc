//! Backlog replay by policy across SIGKILL: a gateway whose `reading/+` topics keep only their
//! newest unsent value and whose alarms are of a higher priority class is killed while the
//! broker is down, again and again; when the broker comes back it drains, at its drain rate,
//! every alarm first, then one value per reading topic (the last accepted before a kill, or
//! one published as it died).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use integration::mosquitto::Mosquitto;
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

const TOPICS: u32 = 20;
const RATE: u32 = 50;

fn gateway(
    url: &str,
    store: &std::path::Path,
    env: &[(&str, String)],
) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_backlog_child"))
        .arg(url)
        .arg(store)
        .arg(TOPICS.to_string())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_go_first_latest_values_stay_one_per_topic_across_kills_and_the_backlog_drains_at_its_rate()
 {
    let mut broker = Mosquitto::start().unwrap();
    let url = broker.url();
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("gateway.redb");
    let kills: usize = integration::env_or("BACKLOG_KILLS", 3);
    let mut last_reading: BTreeMap<String, u64> = BTreeMap::new();
    let mut alarms_accepted: BTreeSet<u64> = BTreeSet::new();
    let mut next = 0u64;
    for _ in 0..kills {
        let (mut child, lines) = gateway(&url, &store, &[("FIRST", next.to_string())]);
        let stop_after = fastrand::usize(100..400);
        for _ in 0..stop_after {
            let line = lines
                .recv_timeout(Duration::from_secs(20))
                .expect("the gateway stopped accepting publishes");
            let mut words = line.split(' ');
            let (Some("accepted"), Some(topic), Some(n)) =
                (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let n: u64 = n.parse().unwrap();
            if topic.starts_with("alarm/") {
                alarms_accepted.insert(n);
            } else {
                last_reading.insert(topic.to_owned(), n);
                next = next.max(n + 1);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Numbers of the next run start past any the killed one may have published.
        next += 1_000;
    }

    broker.restart().unwrap();
    let (subscriber, mut messages) = Client::builder()
        .server(url.clone())
        .client_id("backlog-subscriber")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    subscriber
        .subscribe("reading/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    subscriber
        .subscribe("alarm/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (mut child, _lines) = gateway(
        &url,
        &store,
        &[("PUBLISH", "0".to_owned()), ("RATE", RATE.to_string())],
    );
    let expected = last_reading.len() + alarms_accepted.len();
    let mut readings: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut alarms: Vec<u64> = Vec::new();
    let mut arrivals: Vec<bool> = Vec::new();
    let mut first_at = None;
    let mut last_at = Instant::now();
    // Quiet for 3 s after the last arrival: the backlog is drained (a value published as a
    // kill came may add one alarm beyond those accepted).
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(3), messages.recv()).await
    {
        last_at = Instant::now();
        first_at.get_or_insert(last_at);
        let n: u64 = String::from_utf8_lossy(message.payload()).parse().unwrap();
        arrivals.push(message.topic().starts_with("alarm/"));
        if message.topic().starts_with("alarm/") {
            alarms.push(n);
        } else {
            readings
                .entry(message.topic().to_owned())
                .or_default()
                .push(n);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    subscriber.disconnect().await.unwrap();
    broker.stop();

    for (topic, last) in &last_reading {
        let got = readings.get(topic).cloned().unwrap_or_default();
        assert!(
            got.len() == 1 && got[0] >= *last,
            "{topic}: the last value accepted was {last}, the broker got {got:?}"
        );
    }
    for alarm in &alarms_accepted {
        assert_eq!(
            alarms.iter().filter(|a| *a == alarm).count(),
            1,
            "alarm {alarm} arrived {:?} times",
            alarms.iter().filter(|a| *a == alarm).count()
        );
    }
    // Class 1 before class 0: no alarm arrives after a reading.
    let first_reading = arrivals.iter().position(|alarm| !alarm);
    let last_alarm = arrivals.iter().rposition(|alarm| *alarm);
    assert!(
        first_reading.is_none() || last_alarm.is_none() || last_alarm < first_reading,
        "an alarm (#{last_alarm:?}) arrived after a reading (#{first_reading:?})"
    );
    let received = readings.values().map(Vec::len).sum::<usize>() + alarms.len();
    assert!(received >= expected, "{received} of {expected} arrived");
    // Bursts are a tenth of a second's worth: the rest leaves at the rate.
    let paced = received.saturating_sub(1 + (RATE as usize / 10));
    let floor = Duration::from_secs_f64(paced as f64 / f64::from(RATE) * 0.9);
    let took = last_at - first_at.unwrap();
    assert!(
        took >= floor,
        "{received} messages at {RATE}/s took {took:?}, less than {floor:?}"
    );
    eprintln!(
        "{kills} kills: {} readings, {} alarms accepted; {received} arrived in {took:?}",
        last_reading.len(),
        alarms_accepted.len()
    );
}
