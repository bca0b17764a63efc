//! The bridge proof: the `bridge` example forwards numbered QoS 2 messages from one mosquitto
//! to another and is killed with SIGKILL mid-stream `BRIDGE_KILLS` times (default 3), then
//! started again on its store. `mosquitto_pub -l` publishes the numbers into broker A as the
//! run goes on, `mosquitto_sub` (a persistent session, independent of Mooring) counts what
//! arrives at broker B. It ends with one line, `N sent, N received, 0 lost, 0 duplicated`, and
//! fails otherwise. `scripts/bridge.sh N` runs it with N kills (`BRIDGE_MESSAGES`, default
//! 200 per kill, `BRIDGE_SEED` replays a run).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::mosquitto::{Mosquitto, MosquittoConfig};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn broker() -> Mosquitto {
    Mosquitto::with_config(&MosquittoConfig {
        // The bridge's session on A queues while it is dead: keep every message.
        extra: vec!["max_queued_messages 0".into()],
        quiet_log: true,
        ..MosquittoConfig::default()
    })
    .unwrap()
}

/// A child killed with SIGKILL when dropped (a failed assertion leaves none behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Bridge {
    child: Killed,
    bridging: Arc<AtomicBool>,
}

fn start_bridge(store: &Path, from: &Mosquitto, to: &Mosquitto) -> Bridge {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .args(["plant/#", "bridged/"])
        .env("BRIDGE_FROM", from.url())
        .env("BRIDGE_TO", to.url())
        .env("BRIDGE_STORE", store)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the bridge starts");
    let stdout = child.stdout.take().unwrap();
    let bridging = Arc::new(AtomicBool::new(false));
    let flag = bridging.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("BRIDGING") {
                flag.store(true, Ordering::SeqCst);
            }
        }
    });
    Bridge {
        child: Killed(child),
        bridging,
    }
}

fn wait_for(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_bridge_killed_mid_stream_delivers_every_qos2_message_exactly_once() {
    let kills = setting("BRIDGE_KILLS", 3);
    let messages = setting("BRIDGE_MESSAGES", 200 * kills.max(1));
    let seed = setting("BRIDGE_SEED", fastrand_seed());
    println!("bridge proof: {messages} messages, {kills} kills, BRIDGE_SEED={seed}");
    let mut rng = Xorshift(seed | 1);
    let (a, b) = (broker(), broker());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("bridge.redb");

    // The independent subscriber on B, connected throughout.
    let mut sub = Killed(
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &b.port().to_string()])
            .args(["-V", "mqttv311", "-c", "-i", "proof-subscriber", "-q", "2"])
            .args(["-t", "bridged/#"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub (mosquitto-clients) starts"),
    );
    let arrived = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let out = sub.0.stdout.take().unwrap();
        let arrived = arrived.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                arrived.lock().unwrap().push(line);
            }
        })
    };

    let mut bridge = start_bridge(&store, &a, &b);
    wait_for("the bridge's subscription", Duration::from_secs(20), || {
        bridge.bridging.load(Ordering::SeqCst)
    });
    // mosquitto_sub subscribes as it connects; give it that moment before anything flows.
    std::thread::sleep(Duration::from_millis(300));

    // The publisher into A: the numbers over the run, a line per message.
    let mut publisher = Killed(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &a.port().to_string()])
            .args([
                "-i",
                "proof-publisher",
                "-q",
                "2",
                "-t",
                "plant/numbers",
                "-l",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub starts"),
    );
    let feeding = {
        let mut input = publisher.0.stdin.take().unwrap();
        let pace = Duration::from_millis(300 * kills.max(1) / messages.max(1))
            .max(Duration::from_micros(200));
        std::thread::spawn(move || {
            for n in 0..messages {
                writeln!(input, "{n}").unwrap();
                std::thread::sleep(pace);
            }
        })
    };

    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(150 + rng.below(500)));
        drop(bridge);
        bridge = start_bridge(&store, &a, &b);
        wait_for("the bridge to start again", Duration::from_secs(20), || {
            bridge.bridging.load(Ordering::SeqCst)
        });
    }
    feeding.join().unwrap();
    let status = publisher.0.wait().unwrap();
    assert!(status.success(), "mosquitto_pub: {status}");
    let unique = || {
        let arrived = arrived.lock().unwrap();
        arrived
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len() as u64
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while unique() < messages && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The last bridge stops cleanly; late duplicates would arrive meanwhile.
    drop(bridge.child.0.stdin.take());
    let _ = bridge.child.0.wait();
    std::thread::sleep(Duration::from_millis(500));
    drop(sub);
    reader.join().unwrap();

    let arrived = arrived.lock().unwrap().clone();
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for n in &arrived {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    let lost = (0..messages)
        .filter(|n| !counts.contains_key(n.to_string().as_str()))
        .count();
    let duplicated: u64 = counts.values().map(|c| c - 1).sum();
    let strangers = counts
        .keys()
        .filter(|n| n.parse::<u64>().map_or(true, |n| n >= messages))
        .count();
    println!(
        "{messages} sent, {} received, {lost} lost, {duplicated} duplicated",
        arrived.len()
    );
    assert_eq!((lost, duplicated, strangers), (0, 0, 0), "seed {seed}");
}

/// A seed from the clock, so that each run kills at other moments.
fn fastrand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
