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

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use mqtt5::{ConnectOptions, MqttClient, QoS};

// The scaffold the bench's peer programs share, kept with bench-paho.
#[path = "../../bench-paho/src/row.rs"]
mod row;

use row::{Error, Row, Run, WINDOWS_OUTSTANDING};

fn main() -> std::process::ExitCode {
    row::main_with("bench-mqtt5", |args| async move { dispatch(&args).await })
}

async fn dispatch(args: &[String]) -> Result<String, Error> {
    let row = Row::parse(args, "bench-mqtt5", "mqtt5")?;
    if row.store != "-" {
        return Err(format!(
            "store `{}`: mqtt5 keeps its state in memory (`-`)",
            row.store
        )
        .into());
    }
    publish(&row.url, &row).await
}

/// Publishes the row and returns its `ROW` line.
async fn publish(url: &str, row: &Row) -> Result<String, Error> {
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
    let run = Arc::new(Run::start(row.count));
    let mut tasks = Vec::new();
    for _ in 0..row.tasks {
        let (client, topic, payload, run) =
            (client.clone(), topic.clone(), payload.clone(), run.clone());
        let qos = if row.qos == 2 {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
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
                    run.record(acking.next().await)?;
                }
            }
            while !acking.is_empty() {
                run.record(acking.next().await)?;
            }
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let line = run.row_line(per_task * row.tasks);
    client.disconnect().await?;
    Ok(line)
}
