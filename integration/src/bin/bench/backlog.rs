//! `bench backlog N RATE`: backlog replay by policy, two tables.
//!
//! Drain: a gateway queues N QoS 1 readings (64 B) while no broker is reachable, then starts
//! on its full redb store with a drain rate of RATE messages per second while an alarm is
//! published every 250 ms; a subscriber measures how long each alarm took from its publish to
//! the broker's delivery, and the rate the backlog arrived at. Once with alarms of priority
//! class 1, once (the same store, copied) with every topic class 0.
//!
//! Compaction: 10,000 topics get 20 values each while the broker is unreachable; the store's
//! size and the messages queued, with the topics latest-value and without.

use std::path::Path;
use std::time::{Duration, Instant};

use integration::mosquitto::Mosquitto;
use mooring::store::{MemoryStore, RedbStore};
use mooring::{Client, DrainRate, QoS};

use super::Error;
use super::queue::publish_all;

const ALARM: &str = "bench/alarm";
const ALARM_EVERY: Duration = Duration::from_millis(250);
/// Publishing tasks of the compaction table.
const TASKS: usize = 16;

/// A client id and a store path's client on a server that is not there.
async fn offline(path: &Path, latest_values: bool) -> Result<(Client, mooring::Messages), Error> {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut builder = Client::builder()
        .server(format!("mqtt://{dead}"))
        .client_id("bench-backlog")
        .cluster_scope("bench")
        .store(RedbStore::open(path)?)
        .queue_limit(usize::MAX, mooring::QueuePolicy::Fail)
        .drain_timeout(Duration::from_millis(1));
    if latest_values {
        builder = builder.latest_value_topics(["bench/topic/+"]);
    }
    Ok(builder.start().await?)
}

/// Stops `client` and waits until its store is closed.
async fn close(client: Client, messages: mooring::Messages) -> Result<(), Error> {
    client.disconnect().await?;
    drop((client, messages));
    // The driver drops the store as it ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// One drain: the backlog's arrival rate and the alarms' latencies (milliseconds, sorted).
struct Drained {
    seconds: f64,
    readings: u64,
    latencies: Vec<u64>,
}

async fn drain(
    url: &str,
    path: &Path,
    rate: u32,
    ranked: bool,
    count: u64,
) -> Result<Drained, Error> {
    let (watcher, mut arrivals) = Client::builder()
        .server(url)
        .client_id("bench-backlog-watcher")
        .store(MemoryStore::default())
        .connect()
        .await?;
    watcher.subscribe(ALARM, QoS::AtLeastOnce).await?;
    watcher.subscribe("bench/queue", QoS::AtMostOnce).await?;
    let mut builder = Client::builder()
        .server(url)
        .client_id("bench-backlog")
        .cluster_scope("bench")
        .store(RedbStore::open(path)?)
        .queue_limit(usize::MAX, mooring::QueuePolicy::Fail)
        .drain_rate(DrainRate::messages(rate));
    if ranked {
        builder = builder.priority(1, [ALARM]);
    }
    let (gateway, gateway_messages) = builder.connect().await?;
    let started = Instant::now();
    let published = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let alarms = {
        let gateway = gateway.clone();
        let published = published.clone();
        tokio::spawn(async move {
            loop {
                let sent_ms = integration::now_ms();
                if gateway
                    .publish(ALARM, sent_ms.to_be_bytes().to_vec(), QoS::AtLeastOnce)
                    .await
                    .is_err()
                {
                    return;
                }
                published.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(ALARM_EVERY).await;
            }
        })
    };
    let mut readings = 0u64;
    let mut latencies = Vec::new();
    let mut drained_at = None;
    // Until the backlog arrived, and then every alarm published while it drained.
    while readings < count || latencies.len() < published.load(std::sync::atomic::Ordering::SeqCst)
    {
        if readings >= count && drained_at.is_none() {
            drained_at = Some(started.elapsed().as_secs_f64());
            alarms.abort();
        }
        let message = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await
            .map_err(|_| format!("the backlog stalled after {readings} of {count}"))?
            .ok_or("the watcher stopped")?;
        if message.topic() == ALARM {
            let mut sent = [0u8; 8];
            if let Some(bytes) = message.payload().get(..8) {
                sent.copy_from_slice(bytes);
            }
            latencies.push(integration::now_ms().saturating_sub(u64::from_be_bytes(sent)));
        } else {
            readings += 1;
        }
    }
    let seconds = drained_at.unwrap_or_else(|| started.elapsed().as_secs_f64());
    alarms.abort();
    latencies.sort_unstable();
    close(gateway, gateway_messages).await?;
    watcher.disconnect().await?;
    Ok(Drained {
        seconds,
        readings,
        latencies,
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let index = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(index).copied().unwrap_or(0)
}

pub(super) async fn run(
    count: usize,
    rate: u32,
    topics: usize,
    values: usize,
) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let mut broker = Mosquitto::start()?;
    let url = broker.url();
    let full = dir.path().join("backlog.redb");
    let filled = Instant::now();
    let (client, messages) = offline(&full, false).await?;
    publish_all(&client, count).await?;
    close(client, messages).await?;
    let fill_seconds = filled.elapsed().as_secs_f64();
    let copy = dir.path().join("backlog-copy.redb");
    std::fs::copy(&full, &copy)?;
    println!(
        "\n### Backlog drained at a set rate with live alarms ({count} readings queued offline in {fill_seconds:.1} s, redb; an alarm every {} ms)\n",
        ALARM_EVERY.as_millis()
    );
    println!(
        "| alarms | rate set msg/s | backlog arrived msg/s | drain s | alarms | alarm latency median ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, path, ranked) in [
        ("class 1", &full, true),
        ("class 0 (no classes)", &copy, false),
    ] {
        let drained = drain(&url, path, rate, ranked, count as u64).await?;
        let l = &drained.latencies;
        println!(
            "| {label} | {rate} | {:.0} | {:.1} | {} | {} | {} | {} |",
            drained.readings as f64 / drained.seconds,
            drained.seconds,
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.99),
            l.last().copied().unwrap_or(0),
        );
    }
    broker.stop();

    println!(
        "\n### Latest-value compaction: {topics} topics × {values} values queued offline (redb)\n"
    );
    println!("| topics | publishes | queued | store size MiB | fill s |");
    println!("|---|---|---|---|---|");
    for latest in [true, false] {
        let path = dir.path().join(format!("compaction-{latest}.redb"));
        let (client, messages) = offline(&path, latest).await?;
        let started = Instant::now();
        // Tasks of their own topics, each topic's values in order.
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..values {
                    for topic in (task..topics).step_by(TASKS) {
                        let delivery = client
                            .publish(
                                format!("bench/topic/{topic}"),
                                round.to_string(),
                                QoS::AtLeastOnce,
                            )
                            .await?;
                        drop(delivery);
                    }
                }
                Ok::<(), mooring::ClientError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let seconds = started.elapsed().as_secs_f64();
        let queued = client.stats().queued;
        close(client, messages).await?;
        println!(
            "| {} | {} | {queued} | {:.1} | {seconds:.1} |",
            if latest {
                "latest-value"
            } else {
                "every value kept"
            },
            topics * values,
            integration::disk_bytes(&path) as f64 / (1024.0 * 1024.0),
        );
    }
    Ok(())
}
