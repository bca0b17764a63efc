//! paho-mqtt (the Rust binding of Paho C) publishing the bench's workload, for the end-to-end
//! bench to measure beside Mooring in the same run.
//!
//! ```text
//! bench-paho row paho STORE URL QOS PAYLOAD TASKS COUNT WINDOW
//! ```
//!
//! STORE is `file` (Paho C's file persistence, in a temporary directory) or `none`. TASKS tasks
//! publish COUNT messages in all, each keeping at most WINDOW × 5 publishes unacknowledged, as a
//! Mooring task of the bench does (WINDOW being accepted, four windows awaiting their ack). It
//! prints `ROW msg/s p50_µs p99_µs peak_rss_KiB 0 cpu_µs_per_msg`, the line the bench reads from
//! its own rows.
//!
//! Paho C's file persistence writes one file per queued publish and one per sent packet
//! (`fopen`, `fwrite`, `fclose`) and deletes them on the ack; it never calls `fsync`, so what it
//! stores survives the process being killed but not a power failure (see BENCHMARKS.md).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use paho_mqtt as mqtt;

mod row;

use row::{Error, Row, Run, WINDOWS_OUTSTANDING};

fn main() -> std::process::ExitCode {
    row::main_with("bench-paho", |args| async move { dispatch(&args).await })
}

async fn dispatch(args: &[String]) -> Result<String, Error> {
    let row = Row::parse(args, "bench-paho", "paho")?;
    let persistence = match row.store.as_str() {
        "none" => None,
        "file" => Some(tempfile::tempdir()?),
        other => return Err(format!("store `{other}`: `file` or `none`").into()),
    };
    publish(&row.url, persistence.as_ref().map(|d| d.path()), &row).await
}

/// Publishes the row and returns its `ROW` line.
async fn publish(url: &str, dir: Option<&std::path::Path>, row: &Row) -> Result<String, Error> {
    let persistence = match dir {
        Some(d) => mqtt::PersistenceType::FilePath(d.to_path_buf()),
        None => mqtt::PersistenceType::None,
    };
    let outstanding = row.window * WINDOWS_OUTSTANDING;
    let client = mqtt::CreateOptionsBuilder::new()
        .server_uri(url.replace("mqtt://", "tcp://"))
        .client_id(format!("paho-{}", std::process::id()))
        .persistence(persistence)
        // Paho C refuses a publish once this many wait for a slot (default 100).
        .max_buffered_messages(i32::try_from(row.tasks * outstanding).unwrap_or(i32::MAX))
        .mqtt_version(mqtt::MQTT_VERSION_5)
        .create_client()?;
    let connect = mqtt::ConnectOptionsBuilder::new_v5()
        .clean_start(true)
        .keep_alive_interval(Duration::from_secs(60))
        // As many in flight as the tasks keep unacknowledged; the broker's Receive Maximum
        // lowers it.
        .max_inflight(i32::try_from(row.tasks * outstanding).unwrap_or(i32::MAX))
        .finalize();
    client.connect(connect).await?;
    let topic = format!("bench/{}", std::process::id());
    let payload = vec![0x5Au8; row.payload];
    let per_task = row.count / row.tasks;
    let run = std::sync::Arc::new(Run::start(row.count));
    let mut tasks = Vec::new();
    for _ in 0..row.tasks {
        let (client, topic, payload, run) =
            (client.clone(), topic.clone(), payload.clone(), run.clone());
        let qos = i32::from(row.qos);
        tasks.push(tokio::spawn(async move {
            let mut acking = FuturesUnordered::new();
            for _ in 0..per_task {
                let t0 = Instant::now();
                let token = client.publish(mqtt::Message::new(&topic, payload.clone(), qos));
                acking.push(async move { token.await.map(|_| t0.elapsed()) });
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
    client.disconnect(None).await?;
    Ok(line)
}
