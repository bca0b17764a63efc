//! What a gateway keeps across SIGKILL: its subscriptions when the broker forgets the session,
//! and the knowledge of when its session expired although it never saw its connection end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use integration::mosquitto::Mosquitto;
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

const WAIT: Duration = Duration::from_secs(15);

/// A child whose output lines arrive on a channel; killed when dropped.
struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(broker: &Mosquitto, store: &std::path::Path, filter: Option<&str>) -> Self {
        Self::start_with(broker, store, filter, &[])
    }

    fn start_with(
        broker: &Mosquitto,
        store: &std::path::Path,
        filter: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_subscriber_child"))
            .envs(env.iter().copied())
            .arg(broker.url())
            .arg(store)
            .args(filter)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    /// Waits for a line starting with `prefix`; returns it.
    fn expect(&self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!("the subscriber never said {prefix:?}"),
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn publish(broker: &Mosquitto, topic: &str, payload: &str) {
    let (client, _m) = Client::builder()
        .server(broker.url())
        .client_id("restart-publisher")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    let delivery = client
        .publish(topic, payload.to_owned(), QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, delivery).await.unwrap().unwrap();
    client.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_survive_sigkill_and_a_broker_that_lost_the_session() {
    // No persistence: a broker restart forgets every session.
    let mut broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("subscriber.redb");

    let mut first = Subscriber::start(&broker, &store, Some("sensors/#"));
    first.expect("subscribed sensors/#");
    publish(&broker, "sensors/1", "before").await;
    first.expect("message sensors/1 before");
    first.kill();

    broker.restart().unwrap();
    // Started again on the same store, without subscribing: the store remembers.
    let second = Subscriber::start(&broker, &store, None);
    assert_eq!(second.expect("session lost"), "session lost resubscribed=1");
    second.expect("connected present=false");
    // The SUBSCRIBE went out before CONNACK was reported; give the broker a moment to apply
    // it, publishing until the subscriber has one.
    let mut received = None;
    for attempt in 0..20 {
        publish(&broker, "sensors/2", &format!("after {attempt}")).await;
        if let Ok(line) = second.lines.recv_timeout(Duration::from_millis(250)) {
            received = Some(line);
            break;
        }
    }
    let line = received.expect("the restarted subscriber received nothing");
    assert!(line.starts_with("message sensors/2 after"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_while_connected_expires_locally() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("expiring.redb");
    // Expiry 2 s: the alive time is stamped every second, and with keep alive 1 s the broker
    // notices a dead connection within 1.5 s: the session is surely gone 2 + 2 + 1.5 s after
    // the last stamp.
    let env = [("EXPIRY_SECS", "2"), ("KEEP_ALIVE_SECS", "1")];
    let mut first = Subscriber::start_with(&broker, &store, Some("expiring/#"), &env);
    first.expect("subscribed expiring/#");
    // Long enough for a stamp to be committed.
    std::thread::sleep(Duration::from_millis(1_500));
    first.kill();
    std::thread::sleep(Duration::from_millis(6_000));
    let second = Subscriber::start_with(&broker, &store, None, &env);
    second.expect("session expired");
    second.expect("connected present=false");
}
