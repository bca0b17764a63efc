//! The demo: a gateway publishing a numbered QoS 2 stream is killed with SIGKILL part-way
//! through, restarts on the same redb store, and finishes; an independent subscriber counts
//! what arrived.
//!
//! ```text
//! bash scripts/demo          # installs mosquitto if needed, then runs this
//! cargo run --release -p integration --bin demo [COUNT]
//! ```
//!
//! It starts its own mosquitto on a free port of 127.0.0.1 and its gateway as a child process
//! (this same program, `demo gateway ...`), and stops both before it exits. Exit status 0 means
//! the verdict was "0 lost, 0 duplicated".
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use integration::mosquitto::Mosquitto;
use integration::proxy::{Fault, FaultProxy};
use mooring::client::ServerUrl;
use mooring::packet::{Codec, Decoded, Packet};
use mooring::store::{
    MemoryStore, OutboundRecord, RedbStore, SessionKey, SessionStore, StoredSession,
};
use mooring::{Client, QoS};

type Error = Box<dyn std::error::Error + Send + Sync>;

const GATEWAY_ID: &str = "demo-gateway";
const TOPIC: &str = "demo/stream";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("gateway") => runtime.block_on(gateway(&args)),
        _ => runtime.block_on(orchestrate(args.first())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----- the gateway (child process) -----

/// `demo gateway STORE URL COUNT`: publishes 0..COUNT on the demo topic at QoS 2, one line
/// `ACCEPTED n` per message once it is durable, then `DONE` once every one is delivered.
async fn gateway(args: &[String]) -> Result<(), Error> {
    let [_, store_path, url, count] = args else {
        return Err("usage: demo gateway STORE URL COUNT".into());
    };
    let count: u64 = count.parse()?;
    let store = open_store(Path::new(store_path))?;
    let key = SessionKey::new(url.parse::<ServerUrl>()?.to_string(), GATEWAY_ID);
    // Recovery: whatever the store holds is the gateway's own work. It resumes after the
    // highest number there or in its ledger (a message can be durable in the store and the
    // gateway killed before it noted it down).
    let stored = store.load(&key).await?;
    let held = Held::of(&stored);
    let ledger_path = PathBuf::from(format!("{store_path}.ledger"));
    let recorded = std::fs::read_to_string(&ledger_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse::<u64>().ok())
        .max();
    let next = recorded.max(held.highest).map_or(0, |n| n + 1);
    println!(
        "RESUMED {} {} {} {next}",
        held.publishes, held.releases, held.queued
    );
    let (client, _messages) = Client::builder()
        .server(url.clone())
        .client_id(GATEWAY_ID)
        .session_expiry(Duration::from_secs(3600))
        .store(store)
        .connect()
        .await?;
    let mut ledger = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ledger_path)?;
    let mut deliveries = Vec::new();
    for n in next..count {
        deliveries.push(
            client
                .publish(TOPIC, n.to_string(), QoS::ExactlyOnce)
                .await?,
        );
        writeln!(ledger, "{n}")?;
        ledger.sync_data()?;
        println!("ACCEPTED {n}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for d in deliveries {
        d.await?;
    }
    println!("DONE");
    client.disconnect().await?;
    Ok(())
}

fn open_store(path: &Path) -> Result<RedbStore, Error> {
    // A killed gateway's file lock can outlive it by a moment.
    Ok(integration::open_when_free(|| RedbStore::open(path))?)
}

/// What a stored session holds: PUBLISH records (awaiting PUBREC), PUBREL records (awaiting
/// PUBCOMP), queued messages, and the highest message number among them.
#[derive(Default)]
struct Held {
    publishes: usize,
    releases: usize,
    queued: usize,
    highest: Option<u64>,
}

impl Held {
    fn of(stored: &StoredSession) -> Self {
        let number = |bytes: &[u8]| -> Option<u64> {
            let mut buf = BytesMut::from(bytes);
            match Codec::default().decode(&mut buf) {
                Ok(Decoded::Packet(Packet::Publish(p))) => {
                    std::str::from_utf8(&p.payload).ok()?.parse().ok()
                }
                _ => None,
            }
        };
        let mut held = Self::default();
        for (_, record) in &stored.outbound {
            match record {
                OutboundRecord::Publish(bytes) => {
                    held.publishes += 1;
                    held.highest = held.highest.max(number(bytes));
                }
                OutboundRecord::PubRel { .. } => held.releases += 1,
            }
        }
        for (_, queued) in &stored.queue {
            held.queued += 1;
            held.highest = held.highest.max(number(&queued.packet));
        }
        held
    }
}

// ----- the orchestrator -----

struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(store: &Path, url: &str, count: u64) -> Result<Gateway, Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("gateway")
        .arg(store)
        .arg(url)
        .arg(count.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout from the gateway")?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok(Gateway { child, lines })
}

fn bar(done: u64, total: u64) -> String {
    let width = 30;
    let filled = (done * width / total.max(1)) as usize;
    format!(
        "{}{}",
        "█".repeat(filled),
        "░".repeat(width as usize - filled.min(width as usize))
    )
}

/// Follows the gateway's output until `until` says stop; shows a live counter.
fn follow(
    gateway: &Gateway,
    total: u64,
    mut until: impl FnMut(&str, u64) -> bool,
) -> Result<(u64, Vec<String>), Error> {
    let mut accepted = 0;
    let mut other = Vec::new();
    loop {
        let line = gateway
            .lines
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the gateway went silent")?;
        if let Some(n) = line.strip_prefix("ACCEPTED ") {
            accepted = n.parse::<u64>()? + 1;
            if std::io::stdout().is_terminal() {
                print!(
                    "\r      sent {accepted:>5}/{total} {}",
                    bar(accepted, total)
                );
                std::io::stdout().flush()?;
            } else if accepted % (total / 10).max(1) == 0 {
                println!("      sent {accepted:>5}/{total}");
            }
        } else {
            other.push(line.clone());
        }
        if until(&line, accepted) {
            if std::io::stdout().is_terminal() {
                println!();
            }
            return Ok((accepted, other));
        }
    }
}

async fn orchestrate(count: Option<&String>) -> Result<(), Error> {
    let total: u64 = count.map_or(Ok(2_000), |c| c.parse())?;
    if total < 10 {
        return Err("COUNT must be at least 10".into());
    }
    println!(
        "Mooring demo: a gateway killed with SIGKILL mid-stream loses and duplicates nothing.\n"
    );
    let broker = Mosquitto::start()?;
    // The gateway reaches the broker over a slow link (5 ms each way), so that messages are
    // in flight when it dies.
    let link = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], broker.port())))?;
    link.set(Fault::Delay(Duration::from_millis(5)));
    let url = link.url();
    println!(
        "  broker  mosquitto on 127.0.0.1:{} (pid {}); the gateway's link adds 5 ms each way",
        broker.port(),
        broker.pid().unwrap_or(0)
    );
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("gateway.redb");
    println!("  store   redb, {}", store.display());

    // The independent subscriber, there before the first message.
    let (subscriber, mut inbox) = Client::builder()
        .server(broker.url())
        .client_id("demo-subscriber")
        .store(MemoryStore::default())
        .connect()
        .await?;
    subscriber.subscribe(TOPIC, QoS::ExactlyOnce).await?;
    let counter = tokio::spawn(async move {
        let mut seen: HashMap<u64, u32> = HashMap::new();
        while let Some(m) = inbox.recv().await {
            if let Some(n) = std::str::from_utf8(m.payload())
                .ok()
                .and_then(|s| s.parse().ok())
            {
                *seen.entry(n).or_default() += 1;
            }
        }
        seen
    });

    let kill_at = total * 3 / 10 + random_below(total * 4 / 10);
    let first = start_gateway(&store, &url, total)?;
    println!(
        "\n[1/4] gateway started (pid {}), publishing {total} numbered QoS 2 messages",
        first.child.id()
    );
    let (sent, _) = follow(&first, total, |_, accepted| accepted >= kill_at)?;
    let pid = first.child.id();
    drop(first); // SIGKILL, then reaped
    println!("[2/4] kill -9 {pid} after {sent} messages were accepted");

    let held = {
        let store = open_store(&store)?;
        let key = SessionKey::new(url.parse::<ServerUrl>()?.to_string(), GATEWAY_ID);
        Held::of(&store.load(&key).await?)
    };
    println!(
        "      the store held {} PUBLISH awaiting PUBREC, {} PUBREL awaiting PUBCOMP, {} queued",
        held.publishes, held.releases, held.queued
    );

    let second = start_gateway(&store, &url, total)?;
    println!(
        "[3/4] gateway restarted (pid {}) on the same store",
        second.child.id()
    );
    let (_, lines) = follow(&second, total, |line, _| {
        line == "DONE" || line.starts_with("RESUMED")
    })?;
    if let Some(resumed) = lines.iter().find_map(|l| l.strip_prefix("RESUMED ")) {
        let f: Vec<&str> = resumed.split(' ').collect();
        if let [p, r, _, next] = f.as_slice() {
            println!(
                "      retransmitting {p} PUBLISH (DUP set) and {r} PUBREL from the store; continuing at {next}"
            );
        }
    }
    follow(&second, total, |line, _| line == "DONE")?;
    drop(second);

    // Wait for the stream to arrive, then a little longer for any duplicate.
    let deadline = Instant::now() + Duration::from_secs(30);
    while subscriber.stats().received < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    subscriber.disconnect().await?;
    let seen = counter.await?;
    let received: u64 = seen.values().map(|c| u64::from(*c)).sum();
    let lost = (0..total).filter(|n| !seen.contains_key(n)).count();
    let duplicated: u64 = seen.values().map(|c| u64::from(c - 1)).sum();
    println!("[4/4] the independent subscriber counted:\n");
    println!("      {total} sent, {received} received, {lost} lost, {duplicated} duplicated\n");
    drop(link);
    drop(broker);
    if lost == 0 && duplicated == 0 {
        Ok(())
    } else {
        Err("the verdict is not clean".into())
    }
}

fn random_below(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    nanos % n.max(1)
}
