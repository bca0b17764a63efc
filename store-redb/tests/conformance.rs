//! The store conformance suite against RedbStore, on a real file. Commit failures are injected
//! by a storage backend that wraps redb's own file backend and fails the next sync when armed.

// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mooring_core::conformance::{self, Damage, StoreFactory};
use mooring_core::store::{SessionKey, StoreError};
use mooring_store_redb::{RedbBackend, RedbStore};
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// redb's file backend, with a switch that makes the next `sync_data` fail.
#[derive(Debug)]
struct FailingSync {
    file: FileBackend,
    fail_next_sync: Arc<AtomicBool>,
}

impl StorageBackend for FailingSync {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.fail_next_sync.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.file.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(s, e)
    }
}

struct Factory {
    dir: tempfile::TempDir,
    fail_next_sync: Arc<AtomicBool>,
    next: std::sync::atomic::AtomicUsize,
}

impl Factory {
    fn open(&self, path: &std::path::Path) -> Result<RedbStore, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::backend("test", e))?;
        let file = FileBackend::new(file).map_err(|e| StoreError::backend("test", e))?;
        let backend = RedbBackend::with_storage(FailingSync {
            file,
            fail_next_sync: Arc::clone(&self.fail_next_sync),
        })?;
        Ok(RedbStore::new(backend))
    }
}

#[async_trait::async_trait]
impl StoreFactory for Factory {
    type Store = RedbStore;
    type Location = PathBuf;

    async fn create(&self) -> Result<(RedbStore, PathBuf), StoreError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("store-{n}.redb"));
        Ok((self.open(&path)?, path))
    }

    async fn reopen(&self, path: &PathBuf) -> Result<RedbStore, StoreError> {
        self.open(path)
    }

    async fn damage(
        &self,
        path: &PathBuf,
        session: &SessionKey,
        damage: Damage,
    ) -> Result<bool, StoreError> {
        // Rewrite one record's value below the session layer, as a bad sector would.
        conformance::damage_kv_record(&RedbBackend::open_path(path.clone())?, session, damage)
    }

    fn fail_next_commit(&self, _store: &RedbStore) -> bool {
        self.fail_next_sync.store(true, Ordering::SeqCst);
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_passes_the_conformance_suite() {
    let factory = Factory {
        dir: tempfile::tempdir().unwrap(),
        fail_next_sync: Arc::new(AtomicBool::new(false)),
        next: Default::default(),
    };
    let report = conformance::run(&factory).await;
    assert!(report.passed_all(), "{report}");
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.redb");
    let _first = RedbStore::open(path.clone()).unwrap();
    match RedbStore::open(path.clone()) {
        Err(StoreError::Locked { path: p }) => assert!(p.ends_with("held.redb")),
        other => panic!("second open gave {other:?}"),
    }
}

#[test]
fn a_creation_killed_half_way_leaves_nothing_that_blocks_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.redb");
    // What a process killed inside redb's first write of a new file leaves behind.
    std::fs::write(dir.path().join("gateway.redb.creating"), [0xAB; 700]).unwrap();
    let store = RedbStore::open(path.clone()).unwrap();
    drop(store);
    assert!(path.exists());
    assert!(!dir.path().join("gateway.redb.creating").exists());
    // And an existing database is opened, not replaced.
    RedbStore::open(path).unwrap();
}
