//! Space test of the durable stores: 100,000 put/remove cycles of a 256-byte record leave an
//! emptied session, and the store must not keep growing. Prints the size after each stage.

// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use bytes::Bytes;
use mooring_core::store::{Batch, OutboundRecord, SessionKey, SessionStore, StoreOp};

const CYCLES: u64 = 100_000;
const PER_COMMIT: u64 = 100;

fn size_on_disk(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| size_on_disk(&e.unwrap().path()))
            .sum()
    } else {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }
}

async fn cycle_and_measure(name: &str, path: &Path, store: impl SessionStore) -> Vec<u64> {
    let key = SessionKey::new("mqtt://space.test:1883", "space");
    let record = OutboundRecord::Publish(Bytes::from(vec![0x5Au8; 256]));
    let mut sizes = Vec::new();
    let mut seq = 0u64;
    while seq < CYCLES {
        // Each commit removes the previous commit's records and puts as many new ones.
        let mut ops = Vec::new();
        for s in seq..seq + PER_COMMIT {
            if let Some(old) = s.checked_sub(PER_COMMIT) {
                ops.push(StoreOp::RemoveOutbound { seq: old });
            }
            ops.push(StoreOp::PutOutbound {
                seq: s,
                record: record.clone(),
            });
        }
        store.commit(&key, Batch::from(ops)).await.unwrap();
        seq += PER_COMMIT;
        if seq.is_multiple_of(20_000) {
            sizes.push(size_on_disk(path));
        }
    }
    let last: Batch = (CYCLES - PER_COMMIT..CYCLES)
        .map(|seq| StoreOp::RemoveOutbound { seq })
        .collect();
    store.commit(&key, last).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_empty());
    sizes.push(size_on_disk(path));
    let kib: Vec<String> = sizes.iter().map(|s| format!("{} KiB", s / 1024)).collect();
    println!("{name}: size after 20k, 40k, 60k, 80k, 100k cycles, then emptied: {kib:?}");
    sizes
}

/// The store may grow while it settles, but the second half of the run must not add more
/// than the first 20,000 cycles did, plus slack for allocator granularity.
fn assert_bounded(name: &str, sizes: &[u64]) {
    let first = sizes[0];
    let peak = *sizes.iter().max().unwrap();
    assert!(
        peak <= 2 * first + (4 << 20),
        "{name} grew from {first} bytes after 20,000 cycles to {peak} bytes: {sizes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_does_not_grow_with_put_remove_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("space.redb");
    let store = mooring_store_redb::RedbStore::open(path.clone()).unwrap();
    let sizes = cycle_and_measure("redb", &path, store).await;
    assert_bounded("redb", &sizes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_does_not_grow_with_put_remove_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("space.sled");
    let store = mooring_store_sled::SledStore::open(path.clone()).unwrap();
    let sizes = cycle_and_measure("sled", &path, store).await;
    assert_bounded("sled", &sizes);
}
