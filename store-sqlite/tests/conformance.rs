//! The store conformance suite against SqliteStore, on real files. Commit failures come from
//! SQLite's commit hook, which turns an armed commit into a rollback.

// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use mooring_core::conformance::{self, Damage, StoreFactory};
use mooring_core::store::{SessionKey, StoreError};
use mooring_store_sqlite::SqliteStore;

struct Factory {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

#[async_trait::async_trait]
impl StoreFactory for Factory {
    type Store = SqliteStore;
    type Location = PathBuf;

    async fn create(&self) -> Result<(SqliteStore, PathBuf), StoreError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("store-{n}.sqlite"));
        Ok((SqliteStore::open(path.clone())?, path))
    }

    async fn reopen(&self, path: &PathBuf) -> Result<SqliteStore, StoreError> {
        SqliteStore::open(path.clone())
    }

    async fn damage(
        &self,
        path: &PathBuf,
        session: &SessionKey,
        damage: Damage,
    ) -> Result<bool, StoreError> {
        conformance::damage_kv_record(SqliteStore::open(path.clone())?.backend(), session, damage)
    }

    fn fail_next_commit(&self, store: &SqliteStore) -> bool {
        store.backend().fail_next_commit();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let factory = Factory {
        dir: tempfile::tempdir().unwrap(),
        next: AtomicUsize::new(0),
    };
    let report = conformance::run(&factory).await;
    assert!(report.passed_all(), "{report}");
}

#[test]
fn a_second_open_of_the_same_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.sqlite");
    let first = SqliteStore::open(path.clone()).unwrap();
    match SqliteStore::open(path.clone()) {
        Err(StoreError::Locked { path: p }) => assert!(p.ends_with("held.sqlite")),
        other => panic!("second open gave {other:?}"),
    }
    drop(first);
    SqliteStore::open(path).expect("the file is free once the first store is dropped");
}

#[test]
fn a_file_that_is_not_a_database_is_named_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.sqlite");
    std::fs::write(&path, vec![0x5Au8; 8192]).unwrap();
    match SqliteStore::open(path) {
        Err(StoreError::Open { damaged, .. }) => assert!(damaged),
        other => panic!("opening garbage gave {other:?}"),
    }
}

#[test]
fn the_file_is_in_wal_mode_with_the_documented_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.sqlite");
    drop(SqliteStore::open(path.clone()).unwrap());
    // What another tool sees once the store is closed.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'mooring_records'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(sql.contains("WITHOUT ROWID"), "{sql}");
}
