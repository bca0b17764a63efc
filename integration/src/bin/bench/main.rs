//! The end-to-end benchmark against a real mosquitto, with rumqttc measured in the same run.
//!
//! ```text
//! cargo run --release -p integration --bin bench            # the full table (a few minutes)
//! cargo run --release -p integration --bin bench -- smoke   # every row once, tiny counts
//! cargo run --release -p integration --bin bench -- full 0  # mosquitto max_inflight_messages 0
//! cargo run --release -p integration --bin bench -- queue 1000000  # a queue offline, drained
//! cargo run --release -p integration --bin bench -- postgres  # PostgresStore, group commit, failover
//! cargo run --release -p integration --bin bench -- windows   # broker windows, 4 KiB, 20 ms RTT; ×3 interleaved
//! cargo run --release -p integration --bin bench -- receive   # the receiving side, ×3 interleaved
//! cargo run --release -p integration --bin bench -- sessions 10000 500  # 10,000 clients, one store
//! ```
//!
//! It starts its own mosquitto, measures the machine's ceilings (raw `fdatasync` rate, what
//! mosquitto forwards at QoS 0 between its own command-line clients), then for QoS 0/1/2,
//! payloads of 64 B and 4 KiB, 1 and 16 publishing tasks and each store (memory, redb, sled)
//! measures messages per second from the first publish to the last acknowledgement (QoS 0: to
//! the last message counted by a subscriber), publish-to-ack latency p50/p99, peak RSS and the
//! average group-commit batch, and the same workload through rumqttc. Every measurement runs in
//! a child process of its own (this program, `bench row ...`) so that its peak RSS is its own.
//! Finally the recovery time: from process start to every one of 100,000 stored messages
//! retransmitted and acknowledged, per durable store. It prints markdown tables.
#![forbid(unsafe_code)]

mod backlog;
mod chart;
mod postgres;
mod queue;
mod quic;
mod receive;
mod sessions;
mod tls;
mod windows;

use std::collections::HashMap;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use integration::mosquitto::{Mosquitto, MosquittoConfig};
use mooring::store::{MemoryStore, RedbStore, SessionStore, SledStore};
use mooring::{Client, QoS};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Publishes each task keeps waiting to be accepted.
const WINDOW: usize = 64;

/// Accepted publishes each task keeps waiting for their ack, in windows.
const UNACKED_PER_WINDOW: usize = 4;

#[derive(Clone, Copy)]
struct Row {
    qos: u8,
    payload: usize,
    tasks: usize,
    count: usize,
}

struct Measured {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    rss_kib: u64,
    batch: f64,
    /// The client process's CPU time (user + system) per message while measured, in µs.
    cpu_us: f64,
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn rumqttc_qos(n: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS as RQoS;
    match n {
        0 => RQoS::AtMostOnce,
        1 => RQoS::AtLeastOnce,
        _ => RQoS::ExactlyOnce,
    }
}

fn peak_rss_kib() -> u64 {
    integration::proc_status_kib("self", "VmHWM")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

fn latencies(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// A subscriber that counts messages on `topic` (for QoS 0, which nothing acknowledges).
async fn counter(url: &str, topic: &str) -> Result<(Client, Arc<Mutex<usize>>), Error> {
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

async fn wait_count(count: &Mutex<usize>, want: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while count.lock().map_or(0, |n| *n) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn mooring_row(
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

async fn rumqttc_row(url: &str, row: Row) -> Result<Measured, Error> {
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

/// `bench fill STORE PATH COUNT`: stores COUNT QoS 1 publishes with no broker reachable, then
/// dies without a word (the process exits as a crash would leave it).
async fn fill(store_kind: &str, path: &str, count: usize) -> Result<(), Error> {
    let store = open(store_kind, path)?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (client, _m) = Client::builder()
        .server(format!("mqtt://{dead}"))
        .client_id("bench-recovery")
        .cluster_scope("bench")
        .store_arc(store)
        .queue_limit(count + 1, mooring::QueuePolicy::Fail)
        .start()
        .await?;
    let mut accepting = FuturesOrdered::new();
    for i in 0..count {
        let client = client.clone();
        accepting.push_back(async move {
            client
                .publish("bench/recovery", format!("{i}"), QoS::AtLeastOnce)
                .await
        });
        if accepting.len() >= 256
            && let Some(r) = accepting.next().await
        {
            drop(r?);
        }
    }
    while let Some(r) = accepting.next().await {
        drop(r?);
    }
    std::process::exit(0);
}

fn open(
    store_kind: &str,
    path: impl AsRef<std::path::Path>,
) -> Result<Arc<dyn SessionStore>, Error> {
    let path = path.as_ref();
    Ok(match store_kind {
        "redb" => Arc::new(RedbStore::open(path)?),
        "sled" => Arc::new(SledStore::open(path)?),
        "sqlite" => Arc::new(mooring::store::SqliteStore::open(path)?),
        other => return Err(format!("unknown store {other}").into()),
    })
}

/// A fresh store of the kind a row names: `memory`, `redb`, `sqlite` or `sled` (a file in `dir`), or
/// `postgres=<connection string>`.
fn store_in(store_kind: &str, dir: &std::path::Path) -> Result<Arc<dyn SessionStore>, Error> {
    if store_kind == "memory" {
        return Ok(Arc::new(MemoryStore::default()));
    }
    match store_kind.strip_prefix("postgres=") {
        Some(connection) => Ok(Arc::new(mooring::store::PostgresStore::open(connection)?)),
        None => open(store_kind, dir.join(format!("bench.{store_kind}"))),
    }
}

/// `bench recover STORE PATH URL`: from process start to every stored message acknowledged.
async fn recover(started: Instant, store_kind: &str, path: &str, url: &str) -> Result<(), Error> {
    // Both processes name the session by a cluster scope, so it follows them to this broker.
    let store = open(store_kind, path)?;
    let loaded = started.elapsed();
    let (client, _m) = Client::builder()
        .server(url)
        .client_id("bench-recovery")
        .cluster_scope("bench")
        .store_arc(store)
        .connect()
        .await?;
    loop {
        let s = client.stats();
        if s.outbound_in_flight == 0 && s.queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "RECOVERED {} {} {}",
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        peak_rss_kib()
    );
    client.disconnect().await?;
    Ok(())
}

fn child(args: &[String]) -> Result<String, Error> {
    run_child(&std::env::current_exe()?, args)
}

/// Runs `program` with `args` and returns what it printed.
fn run_child(program: &std::path::Path, args: &[String]) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("bench {args:?} failed: {}", out.status).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn parse_measured(line: &str) -> Result<Measured, Error> {
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

fn mosquitto_qos0_rate(port: u16, count: usize) -> Result<f64, Error> {
    let port = port.to_string();
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "ceiling",
            "-C",
            &count.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let mut publisher = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "ceiling",
            "-l",
            "-q",
            "0",
        ])
        .stdin(Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = publisher.stdin.take().ok_or("stdin")?;
        let line = format!("{}\n", "x".repeat(63));
        let block = line.repeat(count);
        stdin.write_all(block.as_bytes())?;
    }
    let _ = sub.wait()?;
    let elapsed = start.elapsed();
    let _ = publisher.kill();
    let _ = publisher.wait();
    Ok(count as f64 / elapsed.as_secs_f64())
}

fn main() -> ExitCode {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.first().map(String::as_str) {
            Some("row") => {
                // row LIB STORE URL QOS PAYLOAD TASKS COUNT WINDOW
                let [_, lib, store, url, q, payload, tasks, count, window] = args.as_slice() else {
                    return Err::<(), Error>("bad row arguments".into());
                };
                let row = Row {
                    qos: q.parse()?,
                    payload: payload.parse()?,
                    tasks: tasks.parse()?,
                    count: count.parse()?,
                };
                let m = if lib == "rumqttc" {
                    rumqttc_row(url, row).await?
                } else {
                    mooring_row(url, store, row, window.parse()?).await?
                };
                println!(
                    "ROW {} {} {} {} {} {}",
                    m.rate, m.p50_us, m.p99_us, m.rss_kib, m.batch, m.cpu_us
                );
                Ok(())
            }
            Some("fill") => {
                let [_, store, path, count] = args.as_slice() else {
                    return Err("bad fill arguments".into());
                };
                fill(store, path, count.parse()?).await
            }
            Some("queue-fill") => {
                let [_, store, path, count, end] = args.as_slice() else {
                    return Err("bad queue-fill arguments".into());
                };
                queue::fill(store, path, count.parse()?, end).await
            }
            Some("queue-drain") => {
                let [_, store, path, url] = args.as_slice() else {
                    return Err("bad queue-drain arguments".into());
                };
                queue::drain(store, path, url).await
            }
            Some("queue-live") => {
                let [_, store, path, url, count] = args.as_slice() else {
                    return Err("bad queue-live arguments".into());
                };
                queue::live(store, path, url, count.parse()?).await
            }
            Some("queue") => {
                let count = args.get(1).map_or(Ok(100_000), |v| v.parse())?;
                queue::run(count, args.get(2..).unwrap_or_default()).await
            }
            Some("postgres") => {
                let count = args.get(1).map_or(Ok(32_000), |v| v.parse())?;
                let runs = args.get(2).map_or(Ok(3), |v| v.parse())?;
                postgres::run(count, runs).await
            }
            Some("sessions-first") => {
                let [_, path, url, count] = args.as_slice() else {
                    return Err("bad sessions-first arguments".into());
                };
                sessions::first(path, url, count.parse()?).await
            }
            Some("sessions-restart") => {
                let [_, path, url, count, pace] = args.as_slice() else {
                    return Err("bad sessions-restart arguments".into());
                };
                sessions::restart(path, url, count.parse()?, pace.parse()?).await
            }
            Some("sessions") => {
                let count = args.get(1).map_or(Ok(1000), |v| v.parse())?;
                let pace = args.get(2).map_or(Ok(0), |v| v.parse())?;
                tokio::task::spawn_blocking(move || sessions::run(count, pace)).await?
            }
            Some("chart") => chart::from_args(args.get(1..).unwrap_or_default()),
            Some("tls") => tls::run(args.get(1).map_or(Ok(200), |v| v.parse())?).await,
            Some("quic") => {
                let count = args.get(1).map_or(Ok(2_000), |v| v.parse())?;
                let runs = args.get(2).map_or(Ok(3), |v| v.parse())?;
                quic::run(count, runs).await
            }
            Some("quic-stream") => {
                let [_, url, ca, count] = args.as_slice() else {
                    return Err("bad quic-stream arguments".into());
                };
                quic::child(url, ca, count.parse()?).await
            }
            Some("backlog") => {
                // backlog [N] [RATE] [TOPICS] [VALUES]
                let number =
                    |i: usize, default: usize| args.get(i).map_or(Ok(default), |v| v.parse());
                backlog::run(
                    number(1, 1_000_000)?,
                    u32::try_from(number(2, 20_000)?)?,
                    number(3, 10_000)?,
                    number(4, 20)?,
                )
                .await
            }
            Some("windows") => {
                let count = args.get(1).map_or(Ok(32_000), |v| v.parse())?;
                let runs = args.get(2).map_or(Ok(3), |v| v.parse())?;
                windows::run(count, runs, args.get(3).map(String::as_str))
            }
            Some("recv") => {
                // recv LIB STORE URL QOS ACKING COUNT
                let [_, lib, store, url, q, acking, count] = args.as_slice() else {
                    return Err("bad recv arguments".into());
                };
                let (q, acking, count) =
                    (q.parse()?, receive::Acking::parse(acking)?, count.parse()?);
                let received = if lib == "rumqttc" {
                    receive::rumqttc_receive(url, q, acking, count).await?
                } else {
                    receive::mooring_receive(store, url, q, acking, count).await?
                };
                println!("RECV {} {}", received.rate, received.cpu_us);
                Ok(())
            }
            Some("receive") => {
                let count = args.get(1).map_or(Ok(32_000), |v| v.parse())?;
                let runs = args.get(2).map_or(Ok(3), |v| v.parse())?;
                receive::run(count, runs)
            }
            Some("recover") => {
                let [_, store, path, url] = args.as_slice() else {
                    return Err("bad recover arguments".into());
                };
                recover(started, store, path, url).await
            }
            other => {
                // [full|smoke] [MAX_INFLIGHT]
                let inflight = args.get(1).map_or(Ok(100), |v| v.parse())?;
                run(other == Some("smoke"), inflight).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Measures one row in a child process of its own (`bench row ...`): `lib` is `mooring`,
/// `rumqttc`, or a peer whose program `peer_program` finds (`paho`, `mqtt5`); `window` the
/// publishes a Mooring, paho or mqtt5 task keeps outstanding.
fn measure(lib: &str, store: &str, url: &str, row: Row, window: usize) -> Result<Measured, Error> {
    let args = [
        "row".to_owned(),
        lib.to_owned(),
        store.to_owned(),
        url.to_owned(),
        row.qos.to_string(),
        row.payload.to_string(),
        row.tasks.to_string(),
        row.count.to_string(),
        window.to_string(),
    ];
    if let Some(program) = peer_program(lib) {
        return parse_measured(&run_child(&program, &args)?);
    }
    if lib == "paho" || lib == "mqtt5" {
        return Err(format!("no program measures {lib}: see scripts/bench-peers.sh").into());
    }
    parse_measured(&child(&args)?)
}

/// The bench program of a peer built outside the workspace (`scripts/bench-peers.sh` builds
/// them): paho-mqtt (`bench-paho/`, Paho C through CMake) when `MOORING_BENCH_PAHO` names it,
/// the `mqtt5` crate (`bench-mqtt5/`) when `MOORING_BENCH_MQTT5` does. Kept out of the
/// workspace so that the test command never builds them.
fn peer_program(lib: &str) -> Option<std::path::PathBuf> {
    let variable = match lib {
        "paho" => "MOORING_BENCH_PAHO",
        "mqtt5" => "MOORING_BENCH_MQTT5",
        _ => return None,
    };
    std::env::var_os(variable)
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
}

/// The peers measured beside CONTENDERS when their programs are there, in this order.
fn peers() -> Vec<(&'static str, &'static str)> {
    [PAHO_FILE, MQTT5]
        .into_iter()
        .filter(|(lib, _)| peer_program(lib).is_some())
        .collect()
}

/// The durable peer the publishing tables add when `paho_program` finds it: paho-mqtt with Paho
/// C's file persistence.
const PAHO_FILE: (&str, &str) = ("paho", "file");

/// The in-memory peer the publishing tables add when `peer_program` finds it: the `mqtt5`
/// crate's client (it advertises several hundred thousand messages per second).
const MQTT5: (&str, &str) = ("mqtt5", "-");

/// What the windows and receiving tables measure, in this order: the library and the store.
const CONTENDERS: [(&str, &str); 3] =
    [("rumqttc", "-"), ("mooring", "memory"), ("mooring", "redb")];

/// The medians of CONTENDERS' rates (and the peers', when measured) and their spreads.
struct Summary {
    peer: f64,
    memory: f64,
    redb: f64,
    paho_file: Option<f64>,
    mqtt5: Option<f64>,
    /// `min–max` per contender, in the order measured: CONTENDERS, then the peers.
    spreads: String,
}

/// `rates` holds the runs of CONTENDERS, then of each of `peers`, in order.
fn summarize(peers: &[(&str, &str)], rates: &[Vec<f64>]) -> Result<Summary, Error> {
    let medians: Vec<f64> = rates.iter().map(|r| median(&mut r.clone())).collect();
    let [peer, memory, redb, rest @ ..] = medians.as_slice() else {
        return Err("one median per contender".into());
    };
    if rest.len() != peers.len() {
        return Err("one median per peer".into());
    }
    let of = |wanted: (&str, &str)| {
        peers
            .iter()
            .zip(rest)
            .find(|(p, _)| **p == wanted)
            .map(|(_, m)| *m)
    };
    let spreads: Vec<String> = rates.iter().map(|r| spread(r)).collect();
    Ok(Summary {
        peer: *peer,
        memory: *memory,
        redb: *redb,
        paho_file: of(PAHO_FILE),
        mqtt5: of(MQTT5),
        spreads: spreads.join(" / "),
    })
}

/// `value` to `places` decimal places, or `–` where it was not measured.
fn or_dash(value: Option<f64>, places: usize) -> String {
    value.map_or("–".to_owned(), |v| format!("{v:.places$}"))
}

/// The median of `values` (sorted in place; the upper one of an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The range of `values`, as `min–max`.
fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    format!("{min:.0}–{max:.0}")
}

/// The CPU and its core count, for the tables' first line.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{} ({cores} cores)", cpu_model())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The broker every table measures against: no limit on queued messages, `inflight` as its
/// Receive Maximum, acks never held back by Nagle's algorithm.
fn broker_config(inflight: u16) -> MosquittoConfig {
    MosquittoConfig {
        extra: vec![
            "max_queued_messages 0".into(),
            // The Receive Maximum mosquitto announces: what either client keeps in flight.
            format!("max_inflight_messages {inflight}"),
            // Without it mosquitto's small acks wait for Nagle behind delayed ACKs (40 ms).
            "set_tcp_nodelay true".into(),
        ],
        ..MosquittoConfig::default()
    }
}

async fn run(smoke: bool, inflight: u16) -> Result<(), Error> {
    let broker = Mosquitto::with_config(&broker_config(inflight))?;
    let url = broker.url();
    let dir = tempfile::tempdir()?;
    println!(
        "Machine: {}; mosquitto on 127.0.0.1 with max_inflight_messages {inflight}\n",
        machine()
    );

    let fsync = integration::fdatasync_rate(dir.path(), if smoke { 0.2 } else { 2.0 }, false)?;
    let forward = mosquitto_qos0_rate(broker.port(), if smoke { 1_000 } else { 200_000 })?;
    println!("| ceiling | rate |\n|---|---|");
    println!("| raw fdatasync (4 KiB overwrite) | {fsync:.0}/s |");
    println!(
        "| mosquitto QoS 0 forwarding, mosquitto_pub → mosquitto_sub, 64 B | {forward:.0} msg/s |\n"
    );

    let mut rows = Vec::new();
    for q in [0u8, 1, 2] {
        for payload in [64usize, 4096] {
            for tasks in [1usize, 16] {
                let count = match (smoke, payload) {
                    (true, _) => 320,
                    (false, 64) => 32_000,
                    (false, _) => 16_000,
                };
                rows.push(Row {
                    qos: q,
                    payload,
                    tasks,
                    count,
                });
            }
        }
    }
    println!(
        "| QoS | payload | tasks | store | msg/s | p50 µs | p99 µs | peak RSS MiB | batch | rumqttc msg/s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let peer = measure("rumqttc", "-", &url, row, 0)?;
        for store in ["memory", "redb", "sled"] {
            let m = measure("mooring", store, &url, row, WINDOW)?;
            let lat = |v: f64| {
                if row.qos == 0 {
                    "–".to_owned()
                } else {
                    format!("{v:.0}")
                }
            };
            let batch = if store == "memory" {
                "–".to_owned()
            } else {
                format!("{:.1}", m.batch)
            };
            println!(
                "| {} | {} B | {} | {store} | {:.0} | {} | {} | {:.1} | {batch} | {:.0} | {:.2} |",
                row.qos,
                row.payload,
                row.tasks,
                m.rate,
                lat(m.p50_us),
                lat(m.p99_us),
                m.rss_kib as f64 / 1024.0,
                peer.rate,
                m.rate / peer.rate
            );
        }
    }

    // The natural loop: each task awaits every publish before the next one.
    println!("\nEach task awaiting every `publish` before the next (window 1), QoS 1, 64 B:\n");
    println!("| tasks | store | msg/s | p50 µs | p99 µs | batch |\n|---|---|---|---|---|---|");
    for tasks in [1usize, 16] {
        for store in ["memory", "redb", "sled"] {
            let count = if smoke {
                160
            } else if store == "memory" {
                32_000
            } else {
                8_000
            };
            let row = Row {
                qos: 1,
                payload: 64,
                tasks,
                count,
            };
            let m = measure("mooring", store, &url, row, 1)?;
            println!(
                "| {tasks} | {store} | {:.0} | {:.0} | {:.0} | {} |",
                m.rate,
                m.p50_us,
                m.p99_us,
                if store == "memory" {
                    "–".to_owned()
                } else {
                    format!("{:.1}", m.batch)
                }
            );
        }
    }

    let stored = if smoke { 1_000 } else { 100_000 };
    println!(
        "\nRecovery: {stored} QoS 1 messages stored with no broker reachable, the process dies, a new one starts:\n"
    );
    println!(
        "| store | store open | all retransmitted and acknowledged | peak RSS MiB |\n|---|---|---|---|"
    );
    for store in ["redb", "sled"] {
        let path = dir.path().join(format!("recovery.{store}"));
        let path = path.display().to_string();
        child(&[
            "fill".into(),
            store.into(),
            path.clone(),
            stored.to_string(),
        ])?;
        let out = child(&["recover".into(), store.into(), path, url.clone()])?;
        let v: Vec<f64> = out
            .split(' ')
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if let [open, total, rss] = v.as_slice() {
            println!(
                "| {store} | {:.0} ms | {:.2} s | {:.1} |",
                open * 1000.0,
                total,
                rss / 1024.0
            );
        }
    }
    drop(broker);
    Ok(())
}
