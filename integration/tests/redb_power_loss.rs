//! Power-loss test of RedbStore: redb runs on a simulated disk whose writes are lost unless
//! synced. At a random moment the disk "loses power": everything written since the last
//! `sync_data` is dropped and every later operation fails. A new disk starts from what was
//! synced, redb opens it, and every batch whose commit returned `Ok` must be there, whole.
//!
//! `POWER_LOSS_ROUNDS` sets the number of power failures (default 40).

// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mooring_core::conformance::crash::{batch, last_whole_batch, session};
use mooring_core::store::{SessionStore, StoreError};
use mooring_store_redb::{RedbBackend, RedbStore};
use redb::StorageBackend;

#[derive(Debug, Default)]
struct Disk {
    /// What reads see: every write so far.
    current: Vec<u8>,
    /// What survives a power failure: the state at the last sync.
    durable: Vec<u8>,
    /// Operations left before the power fails; `None` never fails.
    ops_left: Option<u64>,
    failed: bool,
}

#[derive(Debug, Clone)]
struct VolatileDisk(Arc<Mutex<Disk>>);

impl VolatileDisk {
    fn from_image(image: Vec<u8>, ops_before_failure: Option<u64>) -> Self {
        Self(Arc::new(Mutex::new(Disk {
            current: image.clone(),
            durable: image,
            ops_left: ops_before_failure,
            failed: false,
        })))
    }

    /// The power fails now, whatever the budget says.
    fn cut_power(&self) {
        self.0.lock().unwrap().failed = true;
    }

    fn durable_image(&self) -> Vec<u8> {
        self.0.lock().unwrap().durable.clone()
    }

    /// Counts one operation against the power budget.
    fn tick(&self) -> io::Result<std::sync::MutexGuard<'_, Disk>> {
        let mut disk = self.0.lock().unwrap();
        if disk.failed {
            return Err(io::Error::other("the disk has lost power"));
        }
        if let Some(left) = disk.ops_left.as_mut() {
            if *left == 0 {
                disk.failed = true;
                return Err(io::Error::other("the disk lost power"));
            }
            *left -= 1;
        }
        Ok(disk)
    }
}

impl StorageBackend for VolatileDisk {
    fn len(&self) -> io::Result<u64> {
        Ok(self.tick()?.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let disk = self.tick()?;
        let start = offset as usize;
        let src = disk
            .current
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.tick()?.current.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut disk = self.tick()?;
        disk.durable = disk.current.clone();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut disk = self.tick()?;
        let end = offset as usize + data.len();
        if disk.current.len() < end {
            disk.current.resize(end, 0);
        }
        disk.current[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

fn seed() -> u64 {
    std::env::var("POWER_LOSS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_keeps_every_acknowledged_batch_through_power_loss() {
    let rounds: u64 = std::env::var("POWER_LOSS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed = seed();
    let mut rng = seed;
    let mut next_random = |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    println!("{rounds} power failures, POWER_LOSS_SEED={seed}");
    let key = session();
    let mut image = Vec::new();
    let mut highest_acked: Option<u64> = None;
    let mut mid_commit_failures = 0;
    for round in 0..rounds {
        // The first few hundred operations cover opening and some commits.
        let budget = 20 + next_random(2_000);
        let disk = VolatileDisk::from_image(image.clone(), Some(budget));
        if let Ok(backend) = RedbBackend::with_storage(disk.clone()) {
            let store = RedbStore::new(backend);
            let loaded = store.load(&key).await;
            if let Ok(loaded) = loaded {
                let mut next = last_whole_batch(&loaded)
                    .unwrap_or_else(|e| panic!("round {round}: {e}"))
                    .map_or(0, |n| n + 1);
                // Bounded, so that a store that never writes cannot run forever.
                for _ in 0..5_000 {
                    match store.commit(&key, batch(next)).await {
                        Ok(()) => {
                            highest_acked = Some(next);
                            next += 1;
                        }
                        Err(StoreError::Poisoned { .. }) => unreachable!("only one failure"),
                        Err(_) => {
                            mid_commit_failures += 1;
                            break;
                        }
                    }
                }
            }
            // The power fails while the store is open: no clean shutdown gets to sync.
            disk.cut_power();
        }
        // Power is back: only what was synced is on the disk.
        image = disk.durable_image();
        let recovered = VolatileDisk::from_image(image.clone(), None);
        let store = RedbStore::new(RedbBackend::with_storage(recovered.clone()).unwrap_or_else(
            |e| panic!("round {round}: redb does not open after power loss: {e} (POWER_LOSS_SEED={seed})"),
        ));
        let loaded = store
            .load(&key)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e} (POWER_LOSS_SEED={seed})"));
        let last = last_whole_batch(&loaded)
            .unwrap_or_else(|e| panic!("round {round}: {e} (POWER_LOSS_SEED={seed})"));
        if let Some(acked) = highest_acked {
            let last = last.unwrap_or_else(|| {
                panic!("round {round}: batch {acked} was acknowledged, the store is empty")
            });
            assert!(
                last == acked || last == acked + 1,
                "round {round}: batch {acked} was acknowledged, the last whole batch after \
                 power loss is {last} (POWER_LOSS_SEED={seed})"
            );
            highest_acked = Some(last);
        }
        drop(store);
        // Keep the recovered image: opening may have repaired it.
        image = recovered.durable_image();
    }
    println!(
        "{rounds} power failures, {mid_commit_failures} during a commit, last batch {highest_acked:?}"
    );
    assert!(
        highest_acked.unwrap_or(0) > rounds,
        "too few batches were committed for the test to mean anything"
    );
}
