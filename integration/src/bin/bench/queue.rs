//! `bench queue N [STORE...]`: a gateway offline for a long time. Fills a store with N queued
//! QoS 1 messages (64 B, from 16 tasks) while no broker is reachable, starts again on the full
//! store and drains it into mosquitto, then fills it once more to see whether the space was
//! reused; beside it, the same N publishes made live with an empty queue. Each phase runs in a
//! process of its own, so its peak RSS (`VmHWM`) is its own, and prints one line: time, rate,
//! peak RSS and the store's size on disk.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use integration::mosquitto::{Mosquitto, MosquittoConfig};
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

use super::{Error, child, open, peak_rss_kib};

/// Publishing tasks, as a gateway's sources.
const TASKS: usize = 16;
/// Publishes each task keeps outstanding.
const OUTSTANDING: usize = 64;
const PAYLOAD: usize = 64;
const TOPIC: &str = "bench/queue";

/// Publishes `count` messages from `TASKS` tasks, each with `OUTSTANDING` in the air.
pub(super) async fn publish_all(client: &Client, count: usize) -> Result<(), Error> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let client = client.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut outstanding = FuturesUnordered::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count as u64 {
                    break;
                }
                let mut payload = n.to_be_bytes().to_vec();
                payload.resize(PAYLOAD, b'q');
                let client = client.clone();
                outstanding.push(async move {
                    let delivery = client.publish(TOPIC, payload, QoS::AtLeastOnce).await?;
                    Ok::<_, Error>(delivery)
                });
                if outstanding.len() >= OUTSTANDING
                    && let Some(r) = outstanding.next().await
                {
                    drop(r?);
                }
            }
            while let Some(r) = outstanding.next().await {
                drop(r?);
            }
            Ok::<(), Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// What the store at `path` takes on disk: the file or directory, and SQLite's write-ahead
/// log beside a file (`<path>-wal`), which holds what no checkpoint has copied yet.
fn store_bytes(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    integration::disk_bytes(path) + integration::disk_bytes(Path::new(&wal))
}

/// Waits until the client holds nothing: every message acknowledged.
async fn settled(client: &Client) {
    loop {
        let s = client.stats();
        if s.outbound_in_flight == 0 && s.queued == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `bench queue-fill STORE PATH N crash|stop`: queues N messages with no broker reachable,
/// then dies as a crash would (`crash`: the store is not closed) or stops cleanly (`stop`).
pub(super) async fn fill(
    store_kind: &str,
    path: &str,
    count: usize,
    end: &str,
) -> Result<(), Error> {
    let store = open(store_kind, path)?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (client, messages) = Client::builder()
        .server(format!("mqtt://{dead}"))
        .client_id("bench-queue")
        .cluster_scope("bench")
        .store_arc(store.clone())
        .queue_limit(usize::MAX, mooring::QueuePolicy::Fail)
        .drain_timeout(Duration::from_millis(1))
        .start()
        .await?;
    let started = Instant::now();
    publish_all(&client, count).await?;
    println!(
        "PHASE {} {} {}",
        started.elapsed().as_secs_f64(),
        client.stats().queued,
        peak_rss_kib()
    );
    if end == "crash" {
        std::process::exit(0);
    }
    // A clean stop: the client ends, and the store closes with the last handle.
    client.disconnect().await?;
    drop((client, messages));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Arc::strong_count(&store) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(store);
    Ok(())
}

/// `bench queue-drain STORE PATH URL`: starts on the full store and sends every message.
pub(super) async fn drain(store_kind: &str, path: &str, url: &str) -> Result<(), Error> {
    let start_ms = integration::now_ms();
    let started = Instant::now();
    let store = open(store_kind, path)?;
    let opened = started.elapsed();
    let (client, _m) = Client::builder()
        .server(url)
        .client_id("bench-queue")
        .cluster_scope("bench")
        .store_arc(store)
        .queue_limit(usize::MAX, mooring::QueuePolicy::Fail)
        .connect()
        .await?;
    let queued = client.stats().queued;
    settled(&client).await;
    let elapsed = started.elapsed();
    println!(
        "PHASE {} {} {} {} {}",
        elapsed.as_secs_f64(),
        queued,
        peak_rss_kib(),
        opened.as_secs_f64(),
        start_ms
    );
    client.disconnect().await?;
    Ok(())
}

/// `bench queue-live STORE PATH URL N`: the same publishes with the broker there all along.
pub(super) async fn live(
    store_kind: &str,
    path: &str,
    url: &str,
    count: usize,
) -> Result<(), Error> {
    let store = open(store_kind, path)?;
    let (client, _m) = Client::builder()
        .server(url)
        .client_id("bench-queue-live")
        .store_arc(store)
        .queue_limit(usize::MAX, mooring::QueuePolicy::Fail)
        .connect()
        .await?;
    let started = Instant::now();
    publish_all(&client, count).await?;
    settled(&client).await;
    println!(
        "PHASE {} {} {}",
        started.elapsed().as_secs_f64(),
        count,
        peak_rss_kib()
    );
    client.disconnect().await?;
    Ok(())
}

/// A subscriber that notes when the first message arrives (wall-clock milliseconds), then
/// unsubscribes: the broker forwards the rest of the drain to nobody, as in the live phase,
/// so that the two rates compare the client's work alone.
async fn first_arrival(url: &str) -> Result<(Client, tokio::task::JoinHandle<u64>), Error> {
    let (client, mut inbox) = Client::builder()
        .server(url)
        .client_id("bench-queue-watch")
        .store(MemoryStore::default())
        .connect()
        .await?;
    client.subscribe(TOPIC, QoS::AtMostOnce).await?;
    let watcher = client.clone();
    let first = tokio::spawn(async move {
        let _ = inbox.recv().await;
        let at = integration::now_ms();
        let _ = watcher.unsubscribe(TOPIC).await;
        // What arrived before the UNSUBSCRIBE took effect is dropped here, unread.
        drop(inbox);
        at
    });
    Ok((client, first))
}

fn phase(args: &[&str]) -> Result<Vec<f64>, Error> {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let line = child(&args)?;
    let fields = line
        .strip_prefix("PHASE ")
        .ok_or_else(|| format!("bad phase output {line:?}"))?;
    Ok(fields
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()?)
}

/// A gateway started on the full store drains it (watched by a subscriber): its time, the
/// messages it held, its peak RSS, and how soon the first message arrived.
async fn start_and_drain(
    store: &str,
    path: &str,
    url: &str,
) -> Result<(f64, f64, f64, String), Error> {
    let (watch, first) = first_arrival(url).await?;
    let drain = phase(&["queue-drain", store, path, url])?;
    let [secs, queued, rss, opened, start_ms] = drain[..] else {
        return Err("bad drain output".into());
    };
    let first_ms = first.await?;
    watch.disconnect().await?;
    let note = format!(
        "store open {opened:.3} s; first message at a subscriber {:.3} s after start",
        (first_ms as f64 - start_ms) / 1000.0
    );
    Ok((secs, queued, rss, note))
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// `bench queue N [STORE...]`: the table for each store (redb and sled unless named).
pub(super) async fn run(count: usize, stores: &[String]) -> Result<(), Error> {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        quiet_log: true,
        ..super::broker_config(100)
    })?;
    let url = broker.url();
    let stores: Vec<String> = if stores.is_empty() {
        vec!["redb".into(), "sled".into(), "sqlite".into()]
    } else {
        stores.to_vec()
    };
    let n = count.to_string();
    // Each record: a 64 B payload, its topic and header; the queue's bytes are the packets'.
    println!("N = {count} QoS 1 messages of {PAYLOAD} B from {TASKS} tasks\n");
    println!("| store | phase | time s | msg/s | peak RSS MiB | store MiB | note |");
    println!("|---|---|---|---|---|---|---|");
    for store in &stores {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store");
        let path_str = path.to_string_lossy().into_owned();
        let row = |phase: &str, secs: f64, msgs: f64, rss: f64, on: &Path, note: String| {
            println!(
                "| {store} | {phase} | {secs:.2} | {:.0} | {:.1} | {:.1} | {note} |",
                msgs / secs,
                mib(rss),
                store_bytes(on) as f64 / 1_048_576.0
            );
        };
        let fill = phase(&["queue-fill", store, &path_str, &n, "crash"])?;
        let [secs, queued, rss] = fill[..] else {
            return Err("bad fill output".into());
        };
        let full_bytes = store_bytes(&path);
        row(
            "fill (offline)",
            secs,
            queued,
            rss,
            &path,
            format!("{queued:.0} queued"),
        );
        let (secs, queued, rss, note) = start_and_drain(store, &path_str, &url).await?;
        row(
            "start + drain after a crash",
            secs,
            queued,
            rss,
            &path,
            note,
        );
        let drained_rate = queued / secs;
        let refill = phase(&["queue-fill", store, &path_str, &n, "stop"])?;
        let [secs, queued, rss] = refill[..] else {
            return Err("bad fill output".into());
        };
        let grew = store_bytes(&path) as f64 / full_bytes.max(1) as f64;
        row(
            "second fill (clean stop)",
            secs,
            queued,
            rss,
            &path,
            format!("file {grew:.2}× its size after the first fill"),
        );
        let (secs, queued, rss, note) = start_and_drain(store, &path_str, &url).await?;
        row(
            "start + drain after a clean stop",
            secs,
            queued,
            rss,
            &path,
            note,
        );
        let live_dir = tempfile::tempdir()?;
        let live_path = live_dir.path().join("store");
        let live_str = live_path.to_string_lossy().into_owned();
        let live = phase(&["queue-live", store, &live_str, &url, &n])?;
        let [secs, sent, rss] = live[..] else {
            return Err("bad live output".into());
        };
        row(
            "live (empty queue)",
            secs,
            sent,
            rss,
            &live_path,
            format!(
                "drain reached {:.0} % of this rate",
                100.0 * drained_rate / (sent / secs)
            ),
        );
    }
    drop(broker);
    Ok(())
}
