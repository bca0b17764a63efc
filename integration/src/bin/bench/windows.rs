//! `bench windows [COUNT] [RUNS] [TABLE]`: publishing at the broker windows people run. Each row
//! measures rumqttc, Mooring in memory and Mooring on redb (16 tasks), interleaved: each of RUNS
//! runs (default 3) measures every one once; the table shows medians, spreads and ratios of
//! medians. TABLE picks one of the four (default: all):
//!
//! - `windows`: 64 B, QoS 1 and 2, mosquitto's `max_inflight_messages` 20 (its default), 100
//!   and 0 (no limit: Receive Maximum 65,535);
//! - `big`: 4 KiB, QoS 1, windows 100 and 0, beside the disk's write + `fdatasync` bandwidth;
//! - `rtt`: window 20 behind a link with a 20 ms round trip (the fault proxy adds 10 ms each
//!   way), QoS 1 and 2, beside the protocol's bound: window ÷ round trip for QoS 1, window ÷
//!   two round trips for QoS 2;
//! - `stores`: the durable stores side by side, Mooring on redb and on SQLite, 64 B and 4 KiB,
//!   QoS 1 and 2, window 100.
//!
//! With `MOORING_BENCH_PAHO` naming the paho-mqtt bench program and `MOORING_BENCH_MQTT5` the
//! `mqtt5` crate's (`scripts/bench-peers.sh` builds both and runs this), every table adds
//! paho-mqtt with Paho C's file persistence, the durable peer, and the `mqtt5` client, a second
//! peer in memory, measured in the same interleaved runs.

use std::time::Duration;

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::proxy::{Fault, FaultProxy};

use super::{CONTENDERS, Error, Measured, Row, WINDOW, measure, median, or_dash, peers, summarize};

/// The one-way latency the `rtt` table adds.
const ONE_WAY: Duration = Duration::from_millis(10);

/// One row measured RUNS times per contender.
struct Compared {
    /// Median msg/s of rumqttc, memory, redb (and paho-mqtt on files), and their spreads.
    rates: super::Summary,
    /// Median group-commit batch of redb.
    batch: f64,
    /// Per contender, median CPU µs per message of the client process and of the broker, as
    /// `client + broker`: on two cores, what the two spend per message bounds the rate.
    cpu: String,
}

/// Measures `row` RUNS times per contender, interleaved, against the broker at `url` whose
/// process is `broker` (for its CPU time).
fn compare(url: &str, broker: &Mosquitto, row: Row, runs: usize) -> Result<Compared, Error> {
    let peers = peers();
    let mut contenders = CONTENDERS.to_vec();
    contenders.extend(&peers);
    let broker_pid = broker.pid().map_or("-".to_owned(), |p| p.to_string());
    let mut measured: Vec<Vec<Measured>> = contenders.iter().map(|_| Vec::new()).collect();
    let mut broker_cpu: Vec<Vec<f64>> = contenders.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (((lib, store), out), spent) in contenders
            .iter()
            .zip(measured.iter_mut())
            .zip(broker_cpu.iter_mut())
        {
            let window = if *lib == "rumqttc" { 0 } else { WINDOW };
            let before = integration::process_cpu_seconds(&broker_pid);
            out.push(measure(lib, store, url, row, window)?);
            let after = integration::process_cpu_seconds(&broker_pid);
            spent.push((after - before) * 1e6 / row.count as f64);
        }
    }
    let cpu: Vec<String> = measured
        .iter()
        .zip(broker_cpu.iter_mut())
        .map(|(runs, broker)| {
            let client = median(&mut runs.iter().map(|m| m.cpu_us).collect::<Vec<_>>());
            format!("{client:.1} + {:.1}", median(broker))
        })
        .collect();
    let rates: Vec<Vec<f64>> = measured
        .iter()
        .map(|runs| runs.iter().map(|m| m.rate).collect())
        .collect();
    let batch = measured.get(2).map_or(0.0, |runs| {
        median(&mut runs.iter().map(|m| m.batch).collect::<Vec<_>>())
    });
    Ok(Compared {
        rates: summarize(&peers, &rates)?,
        batch,
        cpu: cpu.join(" / "),
    })
}

fn sixteen_tasks(qos: u8, payload: usize, count: usize) -> Row {
    Row {
        qos,
        payload,
        tasks: 16,
        count,
    }
}

fn broker(inflight: u16) -> Result<Mosquitto, Error> {
    Ok(Mosquitto::with_config(&MosquittoConfig {
        quiet_log: true,
        ..super::broker_config(inflight)
    })?)
}

fn shown(inflight: u16) -> String {
    if inflight == 0 {
        "0 (65,535)".to_owned()
    } else {
        inflight.to_string()
    }
}

pub(crate) fn run(count: usize, runs: usize, table: Option<&str>) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    println!(
        "Machine: {}; 16 tasks, {runs} runs interleaved; Mooring drives a window of {WINDOW} \
         per task\n",
        super::machine()
    );
    let fsync = integration::fdatasync_rate(dir.path(), 2.0, false)?;
    let bandwidth = integration::write_sync_bandwidth(dir.path(), 1 << 20, 3.0)?;
    println!(
        "Raw fdatasync (4 KiB overwrite): {fsync:.0}/s; sequential write + fdatasync of 1 MiB \
         blocks: {:.0} MB/s\n",
        bandwidth / 1e6
    );
    if table.is_none_or(|t| t == "windows") {
        windows(count, runs)?;
    }
    if table.is_none_or(|t| t == "big") {
        big(count / 2, runs, bandwidth)?;
    }
    if table.is_none_or(|t| t == "rtt") {
        rtt((count / 8).max(1_000), runs)?;
    }
    if table.is_none_or(|t| t == "stores") {
        stores(count, runs)?;
    }
    Ok(())
}

fn windows(count: usize, runs: usize) -> Result<(), Error> {
    println!("64 B, {count} messages per run:\n");
    println!(
        "| broker window | QoS | rumqttc msg/s | memory msg/s | redb msg/s | paho file msg/s | \
         mqtt5 msg/s | memory ÷ rumqttc | memory ÷ mqtt5 | redb ÷ memory | redb ÷ paho file | \
         redb batch | CPU µs/msg, client + broker (rumqttc / memory / redb / peers) | \
         spreads (rumqttc / memory / redb / peers) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut groups = Vec::new();
    for inflight in [20u16, 100, 0] {
        let broker = broker(inflight)?;
        for qos in [1u8, 2] {
            let Compared {
                rates: c,
                batch,
                cpu,
            } = compare(&broker.url(), &broker, sixteen_tasks(qos, 64, count), runs)?;
            if qos == 1 {
                let mut bars = vec![
                    ("rumqttc", c.peer),
                    ("Mooring in memory", c.memory),
                    ("Mooring on redb", c.redb),
                ];
                if let Some(paho) = c.paho_file {
                    bars.push(("paho-mqtt on files", paho));
                }
                if let Some(mqtt5) = c.mqtt5 {
                    bars.push(("mqtt5 crate", mqtt5));
                }
                groups.push(super::chart::Group {
                    label: shown(inflight),
                    bars,
                });
            }
            println!(
                "| {} | {qos} | {:.0} | {:.0} | {:.0} | {} | {} | {:.2} | {} | {:.2} | {} | {:.1} | {cpu} | {} |",
                shown(inflight),
                c.peer,
                c.memory,
                c.redb,
                or_dash(c.paho_file, 0),
                or_dash(c.mqtt5, 0),
                c.memory / c.peer,
                or_dash(c.mqtt5.map(|m| c.memory / m), 2),
                c.redb / c.memory,
                or_dash(c.paho_file.map(|p| c.redb / p), 2),
                batch,
                c.spreads
            );
        }
    }
    println!();
    // The picture of this table (BENCHMARKS.md shows the one of its last run).
    let out = std::env::var("MOORING_BENCH_SVG").unwrap_or_else(|_| "bench-windows.svg".into());
    std::fs::write(&out, super::chart::svg(super::chart::TITLE, &groups))?;
    println!("chart of the QoS 1 rows written to {out}\n");
    Ok(())
}

fn big(count: usize, runs: usize, bandwidth: f64) -> Result<(), Error> {
    const PAYLOAD: usize = 4096;
    println!("4 KiB, QoS 1, {count} messages per run:\n");
    println!(
        "| broker window | rumqttc msg/s | memory msg/s | redb msg/s | paho file msg/s | \
         mqtt5 msg/s | memory ÷ rumqttc | memory ÷ mqtt5 | redb ÷ memory | redb ÷ paho file | \
         redb payload MB/s | ÷ disk bandwidth | redb batch | \
         CPU µs/msg, client + broker (rumqttc / memory / redb / peers) | \
         spreads (rumqttc / memory / redb / peers) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for inflight in [100u16, 0] {
        let broker = broker(inflight)?;
        let Compared {
            rates: c,
            batch,
            cpu,
        } = compare(
            &broker.url(),
            &broker,
            sixteen_tasks(1, PAYLOAD, count),
            runs,
        )?;
        let payload_bytes = c.redb * PAYLOAD as f64;
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.2} | {} | {:.2} | {} | {:.1} | {:.2} | {:.1} | {cpu} | {} |",
            shown(inflight),
            c.peer,
            c.memory,
            c.redb,
            or_dash(c.paho_file, 0),
            or_dash(c.mqtt5, 0),
            c.memory / c.peer,
            or_dash(c.mqtt5.map(|m| c.memory / m), 2),
            c.redb / c.memory,
            or_dash(c.paho_file.map(|p| c.redb / p), 2),
            payload_bytes / 1e6,
            payload_bytes / bandwidth,
            batch,
            c.spreads
        );
    }
    println!();
    Ok(())
}

fn rtt(count: usize, runs: usize) -> Result<(), Error> {
    const INFLIGHT: u16 = 20;
    let round_trip = ONE_WAY * 2;
    println!(
        "Window {INFLIGHT}, 64 B, a {} ms round trip (the fault proxy), {count} messages per run:\n",
        round_trip.as_millis()
    );
    println!(
        "| QoS | protocol bound msg/s | rumqttc msg/s | memory msg/s | redb msg/s | \
         paho file msg/s | mqtt5 msg/s | rumqttc ÷ bound | memory ÷ bound | redb ÷ bound | \
         paho file ÷ bound | mqtt5 ÷ bound | redb batch | spreads |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let broker = broker(INFLIGHT)?;
    let link = FaultProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], broker.port())))?;
    link.set(Fault::Latency(ONE_WAY));
    for qos in [1u8, 2] {
        // QoS 1 holds a slot for one round trip, QoS 2 for two.
        let bound = f64::from(INFLIGHT) / (round_trip.as_secs_f64() * f64::from(qos));
        let Compared {
            rates: c, batch, ..
        } = compare(&link.url(), &broker, sixteen_tasks(qos, 64, count), runs)?;
        println!(
            "| {qos} | {bound:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {} |",
            c.peer,
            c.memory,
            c.redb,
            or_dash(c.paho_file, 0),
            or_dash(c.mqtt5, 0),
            c.peer / bound,
            c.memory / bound,
            c.redb / bound,
            or_dash(c.paho_file.map(|p| p / bound), 2),
            or_dash(c.mqtt5.map(|m| m / bound), 2),
            batch,
            c.spreads
        );
    }
    println!();
    Ok(())
}

/// The durable stores compared, interleaved.
const STORES: [&str; 2] = ["redb", "sqlite"];

fn stores(count: usize, runs: usize) -> Result<(), Error> {
    const INFLIGHT: u16 = 100;
    println!("The durable stores, window {INFLIGHT}, {count} messages per run (4 KiB: half):\n");
    println!(
        "| payload | QoS | redb msg/s | SQLite msg/s | SQLite ÷ redb | redb batch | SQLite batch | \
         CPU µs/msg, client + broker (redb / SQLite) | spreads (redb / SQLite) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let broker = broker(INFLIGHT)?;
    let broker_pid = broker.pid().map_or("-".to_owned(), |p| p.to_string());
    for (payload, count) in [(64, count), (4096, count / 2)] {
        for qos in [1u8, 2] {
            let row = sixteen_tasks(qos, payload, count);
            let mut measured: Vec<Vec<Measured>> = STORES.iter().map(|_| Vec::new()).collect();
            let mut broker_cpu: Vec<Vec<f64>> = STORES.iter().map(|_| Vec::new()).collect();
            for _ in 0..runs {
                for ((store, out), spent) in STORES
                    .iter()
                    .zip(measured.iter_mut())
                    .zip(broker_cpu.iter_mut())
                {
                    let before = integration::process_cpu_seconds(&broker_pid);
                    out.push(measure("mooring", store, &broker.url(), row, WINDOW)?);
                    let after = integration::process_cpu_seconds(&broker_pid);
                    spent.push((after - before) * 1e6 / row.count as f64);
                }
            }
            let of = |runs: &[Measured], field: fn(&Measured) -> f64| {
                median(&mut runs.iter().map(field).collect::<Vec<_>>())
            };
            let rate: Vec<f64> = measured.iter().map(|r| of(r, |m| m.rate)).collect();
            let batch: Vec<f64> = measured.iter().map(|r| of(r, |m| m.batch)).collect();
            let cpu: Vec<String> = measured
                .iter()
                .zip(broker_cpu.iter_mut())
                .map(|(r, b)| format!("{:.1} + {:.1}", of(r, |m| m.cpu_us), median(b)))
                .collect();
            let spreads: Vec<String> = measured
                .iter()
                .map(|r| super::spread(&r.iter().map(|m| m.rate).collect::<Vec<_>>()))
                .collect();
            let [redb, sqlite] = rate.as_slice() else {
                return Err("one rate per store".into());
            };
            let [redb_batch, sqlite_batch] = batch.as_slice() else {
                return Err("one batch per store".into());
            };
            println!(
                "| {payload} B | {qos} | {redb:.0} | {sqlite:.0} | {:.2} | {redb_batch:.1} | \
                 {sqlite_batch:.1} | {} | {} |",
                sqlite / redb,
                cpu.join(" / "),
                spreads.join(" / ")
            );
        }
    }
    println!();
    Ok(())
}
