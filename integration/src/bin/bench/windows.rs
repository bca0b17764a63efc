//! `bench windows [COUNT] [RUNS]`: publishing at the broker windows people run, mosquitto's
//! `max_inflight_messages` 20 (its default), 100 and 0 (no limit: Receive Maximum 65,535).
//! QoS 1 and 2, 64 B, 16 tasks: rumqttc, Mooring in memory and Mooring on redb, interleaved
//! (each run measures every one once), RUNS times (default 3); medians, spreads, and ratios of
//! medians.

use integration::mosquitto::{Mosquitto, MosquittoConfig};

use super::{Error, Measured, Row, WINDOW, measure, median, spread};

/// What a row measures: the library, the store, and the per-task window it is driven with.
const CONTENDERS: [(&str, &str); 3] =
    [("rumqttc", "-"), ("mooring", "memory"), ("mooring", "redb")];

pub(crate) fn run(count: usize, runs: usize) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    println!(
        "Machine: {} ({} cores); 64 B, 16 tasks, {count} messages per run, {runs} runs \
         interleaved; Mooring drives a window of {WINDOW} per task\n",
        super::cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let fsync = integration::fdatasync_rate(dir.path(), 2.0, false)?;
    println!("Raw fdatasync (4 KiB overwrite): {fsync:.0}/s\n");
    println!(
        "| broker window | QoS | rumqttc msg/s | memory msg/s | redb msg/s | memory ÷ rumqttc | \
         redb ÷ memory | redb batch | spreads (rumqttc / memory / redb) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for inflight in [20u16, 100, 0] {
        let broker = Mosquitto::with_config(&MosquittoConfig {
            quiet_log: true,
            ..super::broker_config(inflight)
        })?;
        for qos in [1u8, 2] {
            let mut measured: Vec<Vec<Measured>> = CONTENDERS.iter().map(|_| Vec::new()).collect();
            for _ in 0..runs {
                for ((lib, store), out) in CONTENDERS.iter().zip(measured.iter_mut()) {
                    let window = if *lib == "rumqttc" { 0 } else { WINDOW };
                    let row = Row {
                        qos,
                        payload: 64,
                        tasks: 16,
                        count,
                    };
                    out.push(measure(lib, store, &broker.url(), row, window)?);
                }
            }
            let rates: Vec<Vec<f64>> = measured
                .iter()
                .map(|runs| runs.iter().map(|m| m.rate).collect())
                .collect();
            let medians: Vec<f64> = rates.iter().map(|r| median(&mut r.clone())).collect();
            let [peer, memory, redb] = medians.as_slice() else {
                return Err("one median per contender".into());
            };
            let batch = measured.get(2).map_or(0.0, |runs| {
                median(&mut runs.iter().map(|m| m.batch).collect::<Vec<_>>())
            });
            let spreads: Vec<String> = rates.iter().map(|r| spread(r)).collect();
            let shown = if inflight == 0 {
                "0 (65,535)".to_owned()
            } else {
                inflight.to_string()
            };
            println!(
                "| {shown} | {qos} | {peer:.0} | {memory:.0} | {redb:.0} | {:.2} | {:.2} | {batch:.1} | {} |",
                memory / peer,
                redb / memory,
                spreads.join(" / ")
            );
        }
    }
    Ok(())
}
