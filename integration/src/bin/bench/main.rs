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
mod recovery;
mod rows;
mod sessions;
mod tls;
mod windows;

use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use mooring::store::{MemoryStore, RedbStore, SessionStore, SledStore};

use rows::{
    Measured, Row, WINDOW, mooring_row, parse_measured, peak_rss_kib, qos, rumqttc_qos, rumqttc_row,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

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
                recovery::fill(store, path, count.parse()?).await
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
                recovery::recover(started, store, path, url).await
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
