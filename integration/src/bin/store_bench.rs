//! Store benchmark: `cargo run --release -p integration --bin store_bench [SECONDS]`.
//!
//! Measures, on this machine and in this run: the raw `fdatasync` rate of the disk (the ceiling
//! of any store that syncs each commit), then for each store commits per second and records
//! per second with batches of 1, 8, 64 and 512 records of 256 bytes (each commit puts a batch
//! and removes the previous one, as a session in steady state does), and the time to load a
//! session of 100,000 records. Prints markdown tables.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use mooring_core::store::{Batch, OutboundRecord, SessionKey, SessionStore, StoreError, StoreOp};

const RECORD_SIZE: usize = 256;
const BATCH_SIZES: [u64; 4] = [1, 8, 64, 512];
const LOAD_RECORDS: u64 = 100_000;

struct Throughput {
    commits_per_sec: f64,
    records_per_sec: f64,
}

async fn steady_commits(
    store: &dyn SessionStore,
    batch_size: u64,
    seconds: f64,
) -> Result<Throughput, StoreError> {
    let key = SessionKey::new("mqtt://bench:1883", format!("batch-{batch_size}"));
    let record = OutboundRecord::Publish(Bytes::from(vec![0x5Au8; RECORD_SIZE]));
    let start = Instant::now();
    let mut commits = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        let first = commits * batch_size;
        let mut ops = Vec::with_capacity(2 * batch_size as usize);
        for seq in first..first + batch_size {
            ops.push(StoreOp::PutOutbound {
                seq,
                record: record.clone(),
            });
            if let Some(old) = seq.checked_sub(batch_size) {
                ops.push(StoreOp::RemoveOutbound { seq: old });
            }
        }
        store.commit(&key, Batch::from(ops)).await?;
        commits += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Throughput {
        commits_per_sec: commits as f64 / elapsed,
        records_per_sec: (commits * batch_size) as f64 / elapsed,
    })
}

async fn load_time(store: &dyn SessionStore) -> Result<Duration, StoreError> {
    let key = SessionKey::new("mqtt://bench:1883", "load");
    let record = OutboundRecord::Publish(Bytes::from(vec![0x5Au8; RECORD_SIZE]));
    for chunk in 0..LOAD_RECORDS / 1_000 {
        let ops: Batch = (chunk * 1_000..(chunk + 1) * 1_000)
            .map(|seq| StoreOp::PutOutbound {
                seq,
                record: record.clone(),
            })
            .collect();
        store.commit(&key, ops).await?;
    }
    let start = Instant::now();
    let loaded = store.load(&key).await?;
    let elapsed = start.elapsed();
    if loaded.outbound.len() as u64 != LOAD_RECORDS {
        return Err(StoreError::backend(
            "bench",
            format!("loaded {} records", loaded.outbound.len()),
        ));
    }
    Ok(elapsed)
}

async fn run(seconds: f64) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let append_rate = integration::fdatasync_rate(dir.path(), seconds, true)?;
    let sync_rate = integration::fdatasync_rate(dir.path(), seconds, false)?;
    println!(
        "Raw fdatasync rate: {sync_rate:.0}/s overwriting a 4 KiB block, {append_rate:.0}/s appending 4 KiB\n"
    );

    let stores: Vec<(&str, Box<dyn SessionStore>)> = vec![
        (
            "memory",
            Box::new(mooring_store_memory::MemoryStore::default()),
        ),
        (
            "redb",
            Box::new(mooring_store_redb::RedbStore::open(
                dir.path().join("bench.redb"),
            )?),
        ),
        (
            "sled",
            Box::new(mooring_store_sled::SledStore::open(
                dir.path().join("bench.sled"),
            )?),
        ),
    ];
    println!("| Store | Records per commit | Commits/s | Records/s | Commits/s ÷ fdatasync/s |");
    println!("|---|---:|---:|---:|---:|");
    let mut loads = Vec::new();
    for (name, store) in &stores {
        for batch_size in BATCH_SIZES {
            let t = steady_commits(store.as_ref(), batch_size, seconds).await?;
            println!(
                "| {name} | {batch_size} | {:.0} | {:.0} | {:.2} |",
                t.commits_per_sec,
                t.records_per_sec,
                t.commits_per_sec / sync_rate
            );
        }
        loads.push((name, load_time(store.as_ref()).await?));
    }
    println!("\n| Store | Load a session of {LOAD_RECORDS} records of {RECORD_SIZE} B |");
    println!("|---|---:|");
    for (name, elapsed) in loads {
        println!("| {name} | {:.1} ms |", elapsed.as_secs_f64() * 1000.0);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(seconds)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
