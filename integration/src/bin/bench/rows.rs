//! One row of the table: a workload measured through Mooring or rumqttc in a child process
//! (rate, latency percentiles, peak RSS, group-commit batch, CPU per message).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

use super::{Error, store_in};

/// Publishes each task keeps waiting to be accepted.
pub(super) const WINDOW: usize = 64;

/// Accepted publishes each task keeps waiting for their ack, in windows.
pub(super) const UNACKED_PER_WINDOW: usize = 4;

#[derive(Clone, Copy)]
pub(super) struct Row {
    pub(super) qos: u8,
    pub(super) payload: usize,
    pub(super) tasks: usize,
    pub(super) count: usize,
}

pub(super) struct Measured {
    pub(super) rate: f64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) rss_kib: u64,
    pub(super) batch: f64,
    /// The client process's CPU time (user + system) per message while measured, in µs.
    pub(super) cpu_us: f64,
}

pub(super) fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

pub(super) fn rumqttc_qos(n: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS as RQoS;
    match n {
        0 => RQoS::AtMostOnce,
        1 => RQoS::AtLeastOnce,
        _ => RQoS::ExactlyOnce,
    }
}

pub(super) fn peak_rss_kib() -> u64 {
    integration::proc_status_kib("self", "VmHWM")
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

pub(super) fn latencies(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// A subscriber that counts messages on `topic` (for QoS 0, which nothing acknowledges).
pub(super) async fn counter(url: &str, topic: &str) -> Result<(Client, Arc<Mutex<usize>>), Error> {
    let (client, mut inbox) = Client::builder()
        .server(url)
        .client_id(format!("bench-counter-{}", std::process::id()))
        .store(MemoryStore::default())
        .connect()
        .await?;
    client.subscribe(topic, QoS::AtMostOnce).await?;
    let count = Arc::new(Mutex::new(0usize));
    let c = count.clone();
    tokio::spawn(async move {
        while inbox.recv().await.is_some() {
            if let Ok(mut n) = c.lock() {
                *n += 1;
            }
        }
    });
    Ok((client, count))
}

pub(super) async fn wait_count(count: &Mutex<usize>, want: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while count.lock().map_or(0, |n| *n) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub(super) async fn mooring_row(
    url: &str,
    store_kind: &str,
    row: Row,
    window: usize,
) -> Result<Measured, Error> {
    let dir = tempfile::tempdir()?;
    let store = store_in(store_kind, dir.path())?;
    let topic = format!("bench/{}", std::process::id());
    let counting = if row.qos == 0 {
        Some(counter(url, &topic).await?)
    } else {
        None
    };
    let (client, _m) = Client::builder()
        .server(url)
        .client_id(format!("bench-{}", std::process::id()))
        .store_arc(store)
        .queue_limit(1_000_000, mooring::QueuePolicy::Wait)
        .connect()
        .await?;
    let payload = bytes::Bytes::from(vec![0x5Au8; row.payload]);
    let per_task = row.count / row.tasks;
    let latency = Arc::new(Mutex::new(Vec::with_capacity(row.count)));
    let cpu_before = integration::process_cpu_seconds("self");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..row.tasks {
        let (client, payload, topic, latency) = (
            client.clone(),
            payload.clone(),
            topic.clone(),
            latency.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut accepting = FuturesOrdered::new();
            let mut acking = FuturesUnordered::new();
            let mut sent = 0;
            while sent < per_task || !accepting.is_empty() {
                while sent < per_task && accepting.len() < window {
                    let (client, payload, topic) = (client.clone(), payload.clone(), topic.clone());
                    let t0 = Instant::now();
                    accepting.push_back(async move {
                        client
                            .publish(topic, payload, qos(row.qos))
                            .await
                            .map(|d| (t0, d))
                    });
                    sent += 1;
                }
                if let Some(accepted) = accepting.next().await {
                    let (t0, delivery) = accepted?;
                    acking.push(async move { delivery.await.map(|_| t0.elapsed()) });
                }
                while acking.len() > window * UNACKED_PER_WINDOW {
                    if let Some(done) = acking.next().await
                        && let Ok(mut l) = latency.lock()
                    {
                        l.push(done?.as_secs_f64() * 1e6);
                    }
                }
            }
            while let Some(done) = acking.next().await {
                if let Ok(mut l) = latency.lock() {
                    l.push(done?.as_secs_f64() * 1e6);
                }
            }
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    if let Some((_, count)) = &counting {
        wait_count(count, per_task * row.tasks, Duration::from_secs(60)).await;
    }
    let elapsed = start.elapsed();
    let cpu = integration::process_cpu_seconds("self") - cpu_before;
    let stats = client.stats();
    client.disconnect().await?;
    if let Some((c, _)) = counting {
        c.disconnect().await?;
    }
    let (p50, p99) = if row.qos == 0 {
        (0.0, 0.0)
    } else {
        latencies(latency.lock().map(|l| l.clone()).unwrap_or_default())
    };
    Ok(Measured {
        rate: (per_task * row.tasks) as f64 / elapsed.as_secs_f64(),
        p50_us: p50,
        p99_us: p99,
        rss_kib: peak_rss_kib(),
        batch: if store_kind == "memory" {
            0.0
        } else {
            stats.average_batch()
        },
        cpu_us: cpu * 1e6 / (per_task * row.tasks) as f64,
    })
}

pub(super) async fn rumqttc_row(url: &str, row: Row) -> Result<Measured, Error> {
    use rumqttc::Outgoing;
    use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};
    let port: u16 = url.rsplit(':').next().ok_or("port")?.parse()?;
    let topic = format!("bench/{}", std::process::id());
    let counting = if row.qos == 0 {
        Some(counter(url, &topic).await?)
    } else {
        None
    };
    let mut options =
        MqttOptions::new(format!("rumqttc-{}", std::process::id()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_max_packet_size(Some(1 << 20));
    // At most as many in flight as Mooring's tasks keep unacknowledged (each: WINDOW being
    // accepted, UNACKED_PER_WINDOW × WINDOW awaiting their ack). Unbounded, rumqttc fills a
    // Receive Maximum of 65,535, and mosquitto walks a list of that length for every QoS 2 flow
    // (`db__message_store_find`, 86 % of its CPU): 1,700 msg/s (BENCHMARKS.md).
    let unacked = row.tasks * WINDOW * (1 + UNACKED_PER_WINDOW);
    options.set_outgoing_inflight_upper_limit(u16::try_from(unacked).unwrap_or(u16::MAX));
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let per_task = row.count / row.tasks;
    let total = per_task * row.tasks;
    let latency = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let l = latency.clone();
    let want_acks = row.qos > 0;
    let events = tokio::spawn(async move {
        let mut sent: HashMap<u16, Instant> = HashMap::new();
        let mut acked = 0usize;
        let mut done = Some(done_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                    sent.insert(pkid, Instant::now());
                }
                Ok(Event::Incoming(Incoming::PubAck(a))) => {
                    if let (Some(t), Ok(mut l)) = (sent.remove(&a.pkid), l.lock()) {
                        l.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    acked += 1;
                }
                Ok(Event::Incoming(Incoming::PubComp(c))) => {
                    if let (Some(t), Ok(mut l)) = (sent.remove(&c.pkid), l.lock()) {
                        l.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    acked += 1;
                }
                Ok(_) => {}
                Err(e) => return Err::<(), Error>(e.into()),
            }
            if want_acks
                && acked >= total
                && let Some(tx) = done.take()
            {
                let _ = tx.send(());
            }
        }
    });
    let payload = bytes::Bytes::from(vec![0x5Au8; row.payload]);
    let cpu_before = integration::process_cpu_seconds("self");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..row.tasks {
        let (client, payload, topic) = (client.clone(), payload.clone(), topic.clone());
        let q = rumqttc_qos(row.qos);
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                client
                    .publish(topic.clone(), q, false, payload.clone())
                    .await?;
            }
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    if want_acks {
        tokio::time::timeout(Duration::from_secs(120), done_rx).await??;
    } else if let Some((_, count)) = &counting {
        wait_count(count, total, Duration::from_secs(60)).await;
    }
    let elapsed = start.elapsed();
    let cpu = integration::process_cpu_seconds("self") - cpu_before;
    events.abort();
    if let Some((c, _)) = counting {
        c.disconnect().await?;
    }
    let (p50, p99) = latencies(latency.lock().map(|l| l.clone()).unwrap_or_default());
    Ok(Measured {
        rate: total as f64 / elapsed.as_secs_f64(),
        p50_us: p50,
        p99_us: p99,
        rss_kib: peak_rss_kib(),
        batch: 0.0,
        cpu_us: cpu * 1e6 / total as f64,
    })
}

pub(super) fn parse_measured(line: &str) -> Result<Measured, Error> {
    let v: Vec<f64> = line
        .split(' ')
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [rate, p50, p99, rss, batch, cpu_us] = v.as_slice() else {
        return Err(format!("bad row output {line:?}").into());
    };
    Ok(Measured {
        rate: *rate,
        p50_us: *p50,
        p99_us: *p99,
        rss_kib: *rss as u64,
        batch: *batch,
        cpu_us: *cpu_us,
    })
}
