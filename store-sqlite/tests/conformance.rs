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
use mooring_core::store::layout::KvWrite;
use mooring_core::store::{KvBackend, SessionKey, StoreError};
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

/// "At once": well under the 5 s SQLite would wait for a lock with its default busy timeout.
const ONCE: std::time::Duration = std::time::Duration::from_secs(1);

#[test]
fn a_second_open_of_the_same_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.sqlite");
    let first = SqliteStore::open(path.clone()).unwrap();
    let asked = std::time::Instant::now();
    match SqliteStore::open(path.clone()) {
        Err(StoreError::Locked { path: p }) => assert!(p.ends_with("held.sqlite")),
        other => panic!("second open gave {other:?}"),
    }
    // No busy timeout: SQLite's default would wait 5 s for the lock.
    assert!(
        asked.elapsed() < ONCE,
        "refused after {:?}",
        asked.elapsed()
    );
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

/// The files of a store as a process killed now would leave them: the database and its
/// write-ahead log, copied while the store is open (no checkpoint has run on close).
fn killed_copy(dir: &std::path::Path) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let live = dir.join("live.sqlite");
    let store = SqliteStore::open(live.clone()).unwrap();
    for n in 0u8..20 {
        store
            .backend()
            .apply(&[KvWrite::Put(vec![b'k', n], vec![n; 100])])
            .unwrap();
    }
    let copy = dir.join("killed.sqlite");
    let database = std::fs::read(&live).unwrap();
    let log = std::fs::read(dir.join("live.sqlite-wal")).unwrap();
    assert!(!log.is_empty(), "the commits are in the log");
    std::fs::write(&copy, &database).unwrap();
    std::fs::write(dir.join("killed.sqlite-wal"), &log).unwrap();
    drop(store);
    (copy, database, log)
}

#[test]
fn a_read_only_open_reads_a_killed_clients_log_and_changes_no_file() {
    use mooring_store_sqlite::SqliteBackend;
    let dir = tempfile::tempdir().unwrap();
    let (path, database, log) = killed_copy(dir.path());
    let reader = SqliteBackend::open_path_read_only(path.clone()).unwrap();
    for n in 0u8..20 {
        assert_eq!(
            reader.get(&[b'k', n]).unwrap(),
            Some(vec![n; 100]),
            "record {n}"
        );
    }
    let refused = reader.apply(&[KvWrite::Delete(vec![b'k', 0])]);
    assert!(refused.is_err(), "a read-only store refuses commits");
    drop(reader);
    assert!(
        std::fs::read(&path).unwrap() == database,
        "the database file changed"
    );
    let wal = dir.path().join("killed.sqlite-wal");
    assert!(
        std::fs::read(&wal).unwrap() == log,
        "the write-ahead log changed"
    );
    assert!(
        !dir.path().join("killed.sqlite-shm").exists(),
        "no -shm file made"
    );
}

#[test]
fn a_read_only_open_reads_a_cleanly_closed_store() {
    use mooring_store_sqlite::SqliteBackend;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closed.sqlite");
    let store = SqliteStore::open(path.clone()).unwrap();
    store
        .backend()
        .apply(&[KvWrite::Put(b"key".to_vec(), b"value".to_vec())])
        .unwrap();
    drop(store);
    let before = std::fs::read(&path).unwrap();
    let reader = SqliteBackend::open_path_read_only(path.clone()).unwrap();
    assert_eq!(reader.get(b"key").unwrap(), Some(b"value".to_vec()));
    match SqliteStore::open(path.clone()) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("a client opening the store being read gave {other:?}"),
    }
    drop(reader);
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the database file changed"
    );
    // SQLite makes the log a WAL file reads from; an empty one is the same as none.
    let log = std::fs::read(dir.path().join("closed.sqlite-wal")).unwrap_or_default();
    assert!(log.is_empty(), "{} bytes in the log", log.len());
    SqliteStore::open(path).expect("a client opens the store once the reader is gone");
}

#[test]
fn a_read_only_open_of_a_held_store_is_refused_at_once() {
    use mooring_store_sqlite::SqliteBackend;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.sqlite");
    let client = SqliteStore::open(path.clone()).unwrap();
    let asked = std::time::Instant::now();
    match SqliteBackend::open_path_read_only(path.clone()) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("a read-only open of a held store gave {other:?}"),
    }
    assert!(
        asked.elapsed() < ONCE,
        "refused after {:?}",
        asked.elapsed()
    );
    drop(client);
    let missing = dir.path().join("missing.sqlite");
    assert!(SqliteBackend::open_path_read_only(missing.clone()).is_err());
    assert!(!missing.exists(), "a read-only open creates nothing");
}

#[test]
fn a_large_file_holding_little_is_compacted_at_open_and_one_holding_more_is_not() {
    use mooring_store_sqlite::{COMPACT_FILE_BYTES, COMPACT_MOST_USED_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drained.sqlite");
    let key = |n: u32| [b"q".as_slice(), &n.to_be_bytes()].concat();
    let records = (COMPACT_FILE_BYTES / 4096 + 1024) as u32;
    let store = SqliteStore::open(path.clone()).unwrap();
    for chunk in (0..records).collect::<Vec<_>>().chunks(512) {
        let writes: Vec<_> = chunk
            .iter()
            .map(|&n| KvWrite::Put(key(n), vec![7; 4000]))
            .collect();
        store.backend().apply(&writes).unwrap();
    }
    // Keep more than the compaction limit: the file is not rewritten at open.
    let kept = (COMPACT_MOST_USED_BYTES / 4096 + 1024) as u32;
    let keep_below = |store: &SqliteStore, from: u32| {
        let writes: Vec<_> = (from..records).map(|n| KvWrite::Delete(key(n))).collect();
        store.backend().apply(&writes).unwrap();
    };
    keep_below(&store, kept);
    drop(store);
    let before = std::fs::metadata(&path).unwrap().len();
    assert!(before >= COMPACT_FILE_BYTES, "{before} bytes");
    let store = SqliteStore::open(path.clone()).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        before,
        "compacted while holding more than the limit"
    );
    keep_below(&store, 1);
    drop(store);
    let store = SqliteStore::open(path.clone()).unwrap();
    let compacted = std::fs::metadata(&path).unwrap().len();
    assert!(
        compacted < 1024 * 1024,
        "{compacted} bytes after the reopen"
    );
    assert_eq!(store.backend().get(&key(0)).unwrap(), Some(vec![7; 4000]));
}
