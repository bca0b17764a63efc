//! The store conformance suite against SledStore, on real files. Commit failures come from
//! sled's own failpoints (the "buffer write" point fails the flush of a commit).

// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mooring_core::conformance::{self, Damage, StoreFactory};
use mooring_core::store::{SessionKey, StoreError};
use mooring_store_sled::SledStore;

struct Factory {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

/// Opens the database, waiting a little for the file lock of a handle just dropped (sled
/// releases it from a background thread). An open stands for a new process, so injected
/// failures of the previous handle are cleared.
async fn open(path: &Path) -> Result<SledStore, StoreError> {
    sled::fail::reset();
    let mut attempts = 0;
    loop {
        match SledStore::open(path.to_path_buf()) {
            Err(StoreError::Locked { .. }) if attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

#[async_trait::async_trait]
impl StoreFactory for Factory {
    type Store = SledStore;
    type Location = PathBuf;

    async fn create(&self) -> Result<(SledStore, PathBuf), StoreError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("store-{n}.sled"));
        Ok((open(&path).await?, path))
    }

    async fn reopen(&self, path: &PathBuf) -> Result<SledStore, StoreError> {
        open(path).await
    }

    async fn damage(
        &self,
        path: &PathBuf,
        session: &SessionKey,
        damage: Damage,
    ) -> Result<bool, StoreError> {
        conformance::damage_kv_record(open(path).await?.backend(), session, damage)
    }

    fn fail_next_commit(&self, _store: &SledStore) -> bool {
        // Failpoints are global to the process: arm three consecutive failures, so that a
        // background flush of another database cannot use up the one meant for this commit.
        sled::fail::set("buffer write", 0b111);
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_passes_the_conformance_suite() {
    let factory = Factory {
        dir: tempfile::tempdir().unwrap(),
        next: AtomicUsize::new(0),
    };
    let report = conformance::run(&factory).await;
    sled::fail::reset();
    assert!(report.passed_all(), "{report}");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.sled");
    let _first = SledStore::open(path.clone()).unwrap();
    match SledStore::open(path.clone()) {
        Err(StoreError::Locked { path: p }) => assert!(p.ends_with("held.sled")),
        other => panic!("second open gave {other:?}"),
    }
}
