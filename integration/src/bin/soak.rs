//! A week in an hour: a gateway (`gateway_child`) publishes QoS 1 and QoS 2 from 16 tasks and
//! consumes QoS 2 with manual ack for MINUTES, while the fault proxy cuts its connection every
//! 30 s and mosquitto (persistence on) restarts every 5 minutes (halfway through a run shorter
//! than 10 minutes). Every 10 s it samples the gateway's RSS, open file descriptors, store size
//! and queue depth. It ends with a verdict, and exits non-zero when one fails:
//!
//! - after the warm-up (the first fifth of the run, at least 10 s), RSS and descriptors stay
//!   flat: no sample above 110 % of the first one after the warm-up (descriptors: or 4 more);
//! - the store stays bounded: in the second half of the run no larger than 125 % of its
//!   largest size in the first half (plus 1 MiB);
//! - every accepted QoS 2 message arrived exactly once, every QoS 1 message at least once, in
//!   per-task order; every message sent to the gateway was consumed, none delivered again
//!   after its ack returned.
//!
//! Usage: `soak MINUTES [STORE]` (STORE: redb, the default, or sled); `scripts/soak.sh`.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::proxy::FaultProxy;
use integration::{Arrivals, ledger};
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

type Error = Box<dyn std::error::Error + Send + Sync>;

const TASKS: u32 = 16;
/// Each task publishes one message per this many milliseconds: 16 tasks, 800 messages/s.
const PACE_MS: u64 = 20;
const CUT_EVERY: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The broker's window and the gateway's Receive Maximum (half of it, see crash_proof.rs).
const BROKER_WINDOW: u16 = 20;
const GATEWAY_RECEIVE_MAXIMUM: u16 = 10;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: f64,
    rss_kib: u64,
    fds: u64,
    store_bytes: u64,
    queued: u64,
}

fn proc_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

struct Gateway {
    child: Child,
    queued: Arc<AtomicU64>,
    subscribed: Arc<AtomicU64>,
    published: Arc<AtomicU64>,
}

fn spawn_gateway(store: &str, dir: &Path, url: &str, until_ms: u64) -> Result<Gateway, Error> {
    let mut child = Command::new(sibling("gateway_child")?)
        .env("GATEWAY_UNTIL", until_ms.to_string())
        .env("GATEWAY_STATS", "1")
        .arg(store)
        .arg(dir.join(format!("gateway.{store}")))
        .arg(url)
        .arg(dir.join("ledgers"))
        .arg("mixed")
        .arg(TASKS.to_string())
        .arg(u64::MAX.to_string())
        .arg(PACE_MS.to_string())
        .arg(GATEWAY_RECEIVE_MAXIMUM.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let queued = Arc::new(AtomicU64::new(0));
    let subscribed = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let (q, s, p) = (queued.clone(), subscribed.clone(), published.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(stats) = line.strip_prefix("STATS ") {
                if let Some(n) = stats.split(' ').next().and_then(|n| n.parse().ok()) {
                    q.store(n, Ordering::Relaxed);
                }
            } else if line == "SUBSCRIBED" {
                s.store(1, Ordering::Relaxed);
            } else if line == "PUBLISHED" {
                p.store(1, Ordering::Relaxed);
            }
        }
    });
    Ok(Gateway {
        child,
        queued,
        subscribed,
        published,
    })
}

/// A binary built next to this one.
fn sibling(name: &str) -> Result<std::path::PathBuf, Error> {
    let me = std::env::current_exe()?;
    Ok(me.with_file_name(name))
}

#[derive(Debug, Default)]
struct Deliveries {
    accepted_qos2: usize,
    accepted_qos1: usize,
    missing: usize,
    qos2_duplicates: usize,
    qos1_duplicates: usize,
    order_violations: usize,
    unconsumed: usize,
    redelivered_after_ack: usize,
}

fn check_deliveries(dir: &Path, arrivals: &[String], fed: u64) -> Deliveries {
    let accepted = ledger(dir, "accepted");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for a in arrivals {
        *counts.entry(a.as_str()).or_default() += 1;
    }
    let mut d = Deliveries::default();
    for line in &accepted {
        let qos2 = line
            .split(' ')
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .is_some_and(|t| t % 2 == 1);
        let n = counts.get(line.as_str()).copied().unwrap_or(0);
        if qos2 {
            d.accepted_qos2 += 1;
            d.qos2_duplicates += n.saturating_sub(1);
        } else {
            d.accepted_qos1 += 1;
            d.qos1_duplicates += n.saturating_sub(1);
        }
        if n == 0 {
            d.missing += 1;
        }
    }
    let mut last: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut seen = HashSet::new();
    for a in arrivals {
        if !seen.insert(a.as_str()) {
            continue;
        }
        let v: Vec<u64> = a.split(' ').filter_map(|x| x.parse().ok()).collect();
        if let [t, n, run] = v[..]
            && let Some(prev) = last.insert(t, (n, run))
            && (n, run) <= prev
        {
            d.order_violations += 1;
        }
    }
    let consumed: HashSet<String> = ledger(dir, "consumed").into_iter().collect();
    let unconsumed: Vec<u64> = (0..fed)
        .filter(|n| !consumed.contains(&n.to_string()))
        .collect();
    if !unconsumed.is_empty() {
        println!(
            "never consumed: {:?}",
            unconsumed.iter().take(10).collect::<Vec<_>>()
        );
    }
    d.unconsumed = unconsumed.len();
    d.redelivered_after_ack = ledger(dir, "redelivered").len();
    d
}

/// Whether `samples` after the warm-up stay within `ratio` of the first one after it (or
/// `slack` above it), by `value`.
fn flat(samples: &[Sample], value: impl Fn(&Sample) -> u64, ratio: f64, slack: u64) -> bool {
    let Some(first) = samples.first().map(&value) else {
        return true;
    };
    let limit = (first as f64 * ratio).max((first + slack) as f64);
    samples.iter().all(|s| value(s) as f64 <= limit)
}

async fn soak(minutes: f64, store: &str) -> Result<bool, Error> {
    let run = Duration::from_secs_f64(minutes * 60.0);
    let restart_every = if run < Duration::from_secs(600) {
        run / 2
    } else {
        Duration::from_secs(300)
    };
    let warm_up = (run / 5).max(Duration::from_secs(10));
    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join(format!("gateway.{store}"));
    let mut broker = Mosquitto::with_config(&MosquittoConfig {
        persistence: true,
        extra: vec!["max_queued_messages 0".into()],
        max_inflight_messages: Some(BROKER_WINDOW),
        quiet_log: true,
        ..MosquittoConfig::default()
    })?;
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], broker.port())))?;
    let fast = integration::fast_backoff();
    let subscriber = Arrivals::subscribe(
        &broker.url(),
        "soak-subscriber",
        "proof/out/#",
        QoS::ExactlyOnce,
    )
    .await?;
    let started = Instant::now();
    let until_ms = integration::now_ms() + run.as_millis() as u64;
    let mut gateway = spawn_gateway(store, dir.path(), &proxy.url(), until_ms)?;
    let pid = gateway.child.id();
    // Messages for the gateway are sent once it listens for them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.subscribed.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline {
            return Err("the gateway never subscribed".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The feeder: numbered QoS 2 messages for the gateway, 100 a second, until the end.
    let (feeder, _feeder_inbox) = Client::builder()
        .server(broker.url())
        .client_id("soak-feeder")
        .store(MemoryStore::default())
        .reconnect(fast)
        .connect()
        .await?;
    let fed = Arc::new(AtomicU64::new(0));
    let feeding = tokio::spawn({
        let (feeder, fed) = (feeder.clone(), fed.clone());
        async move {
            let mut outstanding = std::collections::VecDeque::new();
            while started.elapsed() < run {
                let n = fed.load(Ordering::Relaxed);
                let d = feeder
                    .publish(format!("proof/in/{n}"), n.to_string(), QoS::ExactlyOnce)
                    .await?;
                fed.fetch_add(1, Ordering::Relaxed);
                outstanding.push_back(d);
                if outstanding.len() > 100
                    && let Some(d) = outstanding.pop_front()
                {
                    d.await?;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for d in outstanding {
                d.await?;
            }
            Ok::<(), Error>(())
        }
    });

    let mut samples = Vec::new();
    let (mut next_sample, mut next_cut, mut next_restart) =
        (SAMPLE_EVERY, CUT_EVERY, restart_every);
    let (mut cuts, mut restarts) = (0, 0);
    println!("| s | RSS MiB | fds | store MiB | queued |\n|---|---|---|---|---|");
    while started.elapsed() < run {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = started.elapsed();
        if now >= next_cut {
            proxy.cut();
            cuts += 1;
            next_cut += CUT_EVERY;
        }
        // No restart in the last 10 s: the run ends with the broker settled.
        if now >= next_restart && now + SAMPLE_EVERY < run {
            tokio::task::block_in_place(|| {
                broker.stop();
                broker.restart()
            })?;
            restarts += 1;
            next_restart += restart_every;
        }
        if now >= next_sample {
            let s = Sample {
                at_s: now.as_secs_f64(),
                rss_kib: integration::proc_status_kib(&pid.to_string(), "VmRSS"),
                fds: proc_fds(pid),
                store_bytes: integration::disk_bytes(&store_path),
                queued: gateway.queued.load(Ordering::Relaxed),
            };
            println!(
                "| {:.0} | {:.1} | {} | {:.1} | {} |",
                s.at_s,
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.store_bytes as f64 / 1_048_576.0,
                s.queued
            );
            let _ = std::io::stdout().flush();
            samples.push(s);
            next_sample += SAMPLE_EVERY;
        }
    }
    // The gateway stops publishing by itself at the end; let it deliver what it holds.
    let deadline = Instant::now() + Duration::from_secs(180);
    while gateway.published.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    feeding.await??;
    let fed = fed.load(Ordering::Relaxed);
    let accepted: HashSet<String> = ledger(dir.path(), "accepted").into_iter().collect();
    let waited = Instant::now();
    let deadline = waited + Duration::from_secs(60);
    while Instant::now() < deadline {
        if subscriber.include(&accepted) && ledger(dir.path(), "consumed").len() as u64 >= fed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "waited {:.1} s for the last messages to arrive and be consumed",
        waited.elapsed().as_secs_f64()
    );
    drop(gateway.child.stdin.take());
    let status = tokio::task::block_in_place(|| gateway.child.wait())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrivals = subscriber.finish().await?;
    feeder.disconnect().await?;

    let d = check_deliveries(dir.path(), &arrivals, fed);
    let settled: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.at_s >= warm_up.as_secs_f64())
        .collect();
    let half = run.as_secs_f64() / 2.0;
    let first_half_max = settled
        .iter()
        .filter(|s| s.at_s < half)
        .map(|s| s.store_bytes)
        .max()
        .unwrap_or(0);
    let second_half_max = settled
        .iter()
        .filter(|s| s.at_s >= half)
        .map(|s| s.store_bytes)
        .max()
        .unwrap_or(0);
    let verdicts = [
        (
            "RSS flat after warm-up (within 10 %)",
            flat(&settled, |s| s.rss_kib, 1.10, 0),
        ),
        (
            "descriptors flat after warm-up (within 10 % or 4)",
            flat(&settled, |s| s.fds, 1.10, 4),
        ),
        (
            "store bounded (second half within 125 % of the first, plus 1 MiB)",
            second_half_max as f64 <= first_half_max as f64 * 1.25 + 1_048_576.0,
        ),
        (
            "QoS 2: every accepted message exactly once",
            d.missing == 0 && d.qos2_duplicates == 0,
        ),
        (
            "QoS 1: every accepted message at least once",
            d.missing == 0,
        ),
        ("per-task order", d.order_violations == 0),
        (
            "every message sent to the gateway consumed, none after its ack",
            d.unconsumed == 0 && d.redelivered_after_ack == 0,
        ),
        ("the gateway stopped cleanly", status.success()),
    ];
    println!(
        "\nsoak: {minutes} min on {store}: {cuts} cuts, {restarts} broker restarts, {fed} messages \
         sent to the gateway, {} samples ({} after a warm-up of {} s)\n{d:?}",
        samples.len(),
        settled.len(),
        warm_up.as_secs()
    );
    let mut ok = true;
    for (what, passed) in verdicts {
        println!("{} {what}", if passed { "PASS" } else { "FAIL" });
        ok &= passed;
    }
    drop(broker);
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes: f64 = match args.first().map(|m| m.parse()) {
        Some(Ok(m)) if m > 0.0 => m,
        _ => {
            eprintln!("usage: soak MINUTES [redb|sled]");
            return ExitCode::FAILURE;
        }
    };
    let store = args.get(1).map_or("redb", String::as_str).to_owned();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(soak(minutes, &store)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}
