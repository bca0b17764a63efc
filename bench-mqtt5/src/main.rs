//! The `mqtt5` crate's client publishing the bench's workload, for the end-to-end bench to
//! measure beside Mooring in the same run.
//!
//! ```text
//! bench-mqtt5 row mqtt5 - URL QOS PAYLOAD TASKS COUNT WINDOW
//! ```
//!
//! TASKS tasks publish COUNT messages in all, each keeping at most WINDOW × 5 publishes
//! unacknowledged, as a Mooring task of the bench does (WINDOW being accepted, four windows
//! awaiting their ack). `publish_qos` resolves on PUBACK/PUBCOMP, so a publish in the air is a
//! future awaiting it. The client keeps its state in memory only. It prints
//! `ROW msg/s p50_µs p99_µs peak_rss_KiB 0 cpu_µs_per_msg`, the line the bench reads.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use mqtt5::{ConnectOptions, MqttClient, QoS};

// The bench's own reading of /proc, shared by path (this crate is outside the workspace).
#[path = "../../integration/src/proc_stat.rs"]
mod proc_stat;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Windows a task keeps awaiting their ack beside the one being accepted (the bench's
/// `UNACKED_PER_WINDOW` + 1).
const WINDOWS_OUTSTANDING: usize = 5;

struct Row {
    qos: QoS,
    payload: usize,
    tasks: usize,
    count: usize,
    window: usize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(dispatch(&args)));
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-mqtt5: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(args: &[String]) -> Result<String, Error> {
    let [cmd, lib, _store, url, qos, payload, tasks, count, window] = args else {
        return Err("usage: bench-mqtt5 row mqtt5 - URL QOS PAYLOAD TASKS COUNT WINDOW".into());
    };
    if cmd != "row" || lib != "mqtt5" {
        return Err(format!("bench-mqtt5 measures `row mqtt5 ...`, not `{cmd} {lib}`").into());
    }
    let row = Row {
        qos: match qos.as_str() {
            "1" => QoS::AtLeastOnce,
            "2" => QoS::ExactlyOnce,
            other => return Err(format!("the mqtt5 rows measure QoS 1 and 2, not {other}").into()),
        },
        payload: payload.parse()?,
        tasks: tasks.parse()?,
        count: count.parse()?,
        window: window.parse::<usize>()?.max(1),
    };
    let m = publish(url, &row).await?;
    Ok(format!(
        "ROW {} {} {} {} 0 {}",
        m.rate,
        m.p50_us,
        m.p99_us,
        peak_rss_kib(),
        m.cpu_us
    ))
}

/// What one row measured.
struct Measured {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    /// This process's CPU time per message, in µs.
    cpu_us: f64,
}

async fn publish(url: &str, row: &Row) -> Result<Measured, Error> {
    let outstanding = row.window * WINDOWS_OUTSTANDING;
    let client = MqttClient::new(format!("mqtt5-{}", std::process::id()));
    let options = ConnectOptions::new(format!("mqtt5-{}", std::process::id()))
        .with_clean_start(true)
        .with_keep_alive(Duration::from_secs(60));
    client.connect_with_options(url, options).await?;
    let client = Arc::new(client);
    let topic = format!("bench/{}", std::process::id());
    let payload = vec![0x5Au8; row.payload];
    let per_task = row.count / row.tasks;
    let latency = Arc::new(Mutex::new(Vec::with_capacity(row.count)));
    let cpu_before = proc_stat::process_cpu_seconds("self");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..row.tasks {
        let (client, topic, payload, latency) = (
            client.clone(),
            topic.clone(),
            payload.clone(),
            latency.clone(),
        );
        let qos = row.qos;
        tasks.push(tokio::spawn(async move {
            let mut acking = FuturesUnordered::new();
            for _ in 0..per_task {
                let t0 = Instant::now();
                let (client, topic, payload) = (client.clone(), topic.clone(), payload.clone());
                acking.push(async move {
                    client
                        .publish_qos(topic, payload, qos)
                        .await
                        .map(|_| t0.elapsed())
                });
                while acking.len() >= outstanding {
                    record(&latency, acking.next().await)?;
                }
            }
            while !acking.is_empty() {
                record(&latency, acking.next().await)?;
            }
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    let cpu = proc_stat::process_cpu_seconds("self") - cpu_before;
    client.disconnect().await?;
    let mut l = latency.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_by(f64::total_cmp);
    let at = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let total = (per_task * row.tasks) as f64;
    Ok(Measured {
        rate: total / elapsed.as_secs_f64(),
        p50_us: at(0.5),
        p99_us: at(0.99),
        cpu_us: cpu * 1e6 / total,
    })
}

fn record(
    latency: &Mutex<Vec<f64>>,
    done: Option<Result<Duration, mqtt5::MqttError>>,
) -> Result<(), Error> {
    if let Some(done) = done {
        let took = done?;
        if let Ok(mut l) = latency.lock() {
            l.push(took.as_secs_f64() * 1e6);
        }
    }
    Ok(())
}

/// Peak resident set of this process, from /proc.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
