//! [`SqliteStore`]: the durable session store on [SQLite](https://sqlite.org), built in
//! (rusqlite's `bundled` feature: the same SQLite on every target, no system library).
//!
//! One file holds every session, in one table. Each commit is one SQLite transaction.
//!
//! # Durability: `journal_mode = WAL`, `synchronous = FULL`
//!
//! In WAL mode a transaction is appended to the write-ahead log (`<file>-wal`) and later
//! copied into the database by a checkpoint. With `synchronous = FULL` SQLite syncs the log
//! (`fsync`/`fdatasync`) at the end of every transaction, so when a commit returns its batch
//! survives the process being killed and the machine losing power, as far as the disk honours
//! a sync; a transaction torn by a crash is not in the log's checksummed frames and is rolled
//! back when the file is next opened. `synchronous = NORMAL`, the usual WAL setting, syncs
//! only at checkpoints: a commit would survive `kill -9` (the log is in the kernel's hands)
//! but the last commits could be lost with the power, which a store that acknowledges
//! messages must not do. `FULL` costs one sync per commit; the client's group commit spreads
//! it over every publish gathered meanwhile.
//!
//! # One process at a time: `locking_mode = EXCLUSIVE`
//!
//! The store takes the database's write lock when it opens and keeps it until it is dropped,
//! so a second store on the same file, in this process or another, is refused with
//! `StoreError::Locked` at once (no waiting). Exclusive mode also keeps the WAL index in the
//! process's memory: there is no `-shm` file.
//!
//! # Space: compacted at open once drained
//!
//! SQLite reuses the pages a drained queue freed for the next fill but does not give them
//! back to the file system, so the file stays as large as the longest queue it held. When a
//! store opens a file of at least [`COMPACT_FILE_BYTES`] whose records fill at most
//! [`COMPACT_MOST_USED_BYTES`], it rewrites it (`VACUUM`): quick, as only what is in use is
//! copied. A file full of records is never compacted at start-up, and a compaction that fails
//! (a full disk) leaves the file as it was, with a warning: the store opens all the same.
//!
//! # The schema, for the `sqlite3` shell
//!
//! ```sql
//! CREATE TABLE mooring_records (
//!     key   BLOB PRIMARY KEY NOT NULL,
//!     value BLOB NOT NULL
//! ) WITHOUT ROWID;
//! ```
//!
//! Keys and values are those of `mooring_core::store::layout` (every key starts with its
//! session; values carry a format version, a record kind and a CRC-32), so a store reads the
//! same in any backend. The `sqlite3` shell can look (while no client holds the file):
//! `SELECT hex(key), length(value), char(unicode(substr(value, 2, 1))) FROM mooring_records;`
//! lists each record with its kind letter. The `mooring` command decodes them (it tells a
//! SQLite file by its header): `mooring store list|show|export|verify FILE`, which open it
//! with [`SqliteBackend::open_path_read_only`] and leave a killed client's log as it was.
//!
//! Blocking file I/O runs on the store's own thread (see `KvStore`), never on an async
//! executor.
//!
//! ```no_run
//! use mooring_store_sqlite::SqliteStore;
//!
//! let store = SqliteStore::open("gateway.sqlite")?;
//! # Ok::<(), mooring_core::store::StoreError>(())
//! ```
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mooring_core::store::layout::KvWrite;
use mooring_core::store::{KvBackend, KvOpen, KvStore, StoreError};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

/// The durable session store on SQLite.
pub type SqliteStore = KvStore<SqliteBackend>;

const NAME: &str = "sqlite store";

/// The table that holds every record; see the crate documentation.
pub const TABLE: &str = "mooring_records";

/// SQLite's page cache: the working set of a session store is its in-flight window and the
/// two ends of its queue, so a small cache keeps memory flat however long the queue grows.
pub const CACHE_KIB: i64 = 32 * 1024;

/// A file at least this large whose records fill at most [`COMPACT_MOST_USED_BYTES`] of it is
/// compacted (`VACUUM`) when it is opened.
pub const COMPACT_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// See [`COMPACT_FILE_BYTES`]: little enough to copy in a moment.
pub const COMPACT_MOST_USED_BYTES: u64 = 16 * 1024 * 1024;

fn backend_error(e: rusqlite::Error) -> StoreError {
    StoreError::backend(NAME, e)
}

/// The SQLite database behind [`SqliteStore`].
pub struct SqliteBackend {
    /// One connection, used from the store's thread only: the mutex is never contended.
    conn: Mutex<Connection>,
    /// Armed, the next commit is rolled back by SQLite's commit hook ([`Self::fail_next_commit`]).
    fail_next: Arc<AtomicBool>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").finish_non_exhaustive()
    }
}

/// How an error met while opening reads: the file is held, damaged, or cannot be opened.
fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
            path: path.display().to_string(),
        },
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::open(path, true, e)
        }
        _ => StoreError::open(path, false, e),
    }
}

impl SqliteBackend {
    /// Opens or creates the database file at `path`.
    pub fn open_path(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let mut conn = Connection::open(&path).map_err(|e| open_error(&path, e))?;
        setup(&conn).map_err(|e| open_error(&path, e))?;
        // A compaction that fails (a full disk: VACUUM needs room for a copy) changes
        // nothing, and the store opens as it is.
        if let Err(e) = compact_if_mostly_free(&conn) {
            tracing::warn!(path = %path.display(), error = %e, "could not compact the drained store");
        }
        let fail_next = Arc::new(AtomicBool::new(false));
        let armed = fail_next.clone();
        // Returning true turns the COMMIT into a ROLLBACK, and the commit fails.
        conn.commit_hook(Some(move || armed.swap(false, Ordering::SeqCst)))
            .map_err(|e| open_error(&path, e))?;
        Ok(Self {
            conn: Mutex::new(conn),
            fail_next,
        })
    }

    /// Opens the existing database file at `path` to read it, as a tool that inspects a
    /// store should: no write, and none of the checkpoint that folds the write-ahead log into
    /// the file when a writer closes, so the database and its log stay as a killed client
    /// left them. The log's committed transactions are read (its index in this process's
    /// memory, no `-shm` file); one torn by the kill is ignored, as a writer would roll it
    /// back. A file a client holds is refused with `StoreError::Locked`, and while this store
    /// is open a client is refused the same way. Every commit is refused.
    ///
    /// The file is opened for writing all the same (and must be writable): SQLite reads a
    /// log under an exclusive lock, which a file opened read-only cannot take, and a shared
    /// `-shm` index would be a new file beside the store.
    pub fn open_path_read_only(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        // Without CREATE: a missing file is an error, not a new store.
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&path, e))?;
        setup_read_only(&conn).map_err(|e| open_error(&path, e))?;
        Ok(Self {
            conn: Mutex::new(conn),
            fail_next: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Makes the next commit fail as a failing disk would: SQLite rolls the transaction back
    /// and the commit returns an error, leaving nothing of it. For tests of code built on the
    /// store (the conformance suite uses it); once it has fired, commits succeed again.
    pub fn fail_next_commit(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Locking, journal, sync and cache settings, the table, and the write lock taken now.
fn setup(conn: &Connection) -> rusqlite::Result<()> {
    // A file another store holds is refused at once, never waited for.
    conn.busy_timeout(Duration::ZERO)?;
    // Before the journal mode: the WAL index then lives in this process's memory.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    // A write transaction takes the exclusive lock, which exclusive mode keeps.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS {TABLE} (
             key BLOB PRIMARY KEY NOT NULL,
             value BLOB NOT NULL
         ) WITHOUT ROWID;
         COMMIT;"
    ))
}

/// Gives a drained queue's space back to the file system. SQLite keeps the pages a drain
/// frees on its free list and reuses them for the next fill (after a reopen too), so the
/// file stays as large as the longest queue it held: 1.5 GiB after ten million messages,
/// drained. A large file holding little is rewritten at open, which copies only what it
/// holds; a file full of records is never compacted at start-up.
fn compact_if_mostly_free(conn: &Connection) -> rusqlite::Result<()> {
    let pragma = |name: &str| {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
    };
    let page = pragma("page_size")?;
    let pages = pragma("page_count")?;
    let used = pages.saturating_sub(pragma("freelist_count")?);
    if pages * page < COMPACT_FILE_BYTES || used * page > COMPACT_MOST_USED_BYTES {
        return Ok(());
    }
    conn.execute_batch("VACUUM")?;
    // The rewrite passed through the log: fold it into the file and empty it.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

/// The reading settings: exclusive mode before the first read (the log's index in memory),
/// no checkpoint when the connection closes, no statement that writes, then a read
/// transaction held until the store is dropped (one consistent view for every read).
fn setup_read_only(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::ZERO)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.execute_batch("BEGIN")?;
    // The first read takes the lock and finds a file that is not a store.
    conn.query_row(&format!("SELECT 1 FROM {TABLE} LIMIT 1"), [], |_| Ok(()))
        .optional()
        .map(drop)
}

impl KvOpen for SqliteBackend {
    type Options = PathBuf;

    fn open(path: PathBuf) -> Result<Self, StoreError> {
        Self::open_path(path)
    }
}

impl KvBackend for SqliteBackend {
    const NAME: &'static str = NAME;
    const BLOCKING: bool = true;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare_cached(&format!("SELECT value FROM {TABLE} WHERE key = ?1"))
            .map_err(backend_error)?;
        statement
            .query_row([key], |row| row.get(0))
            .optional()
            .map_err(backend_error)
    }

    fn visit_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        // BLOBs compare as memcmp does: byte order, a prefix first, as the layout needs.
        let mut statement = match end {
            Some(_) => conn.prepare_cached(&format!(
                "SELECT key, value FROM {TABLE} WHERE key >= ?1 AND key < ?2 ORDER BY key"
            )),
            None => conn.prepare_cached(&format!(
                "SELECT key, value FROM {TABLE} WHERE key >= ?1 ORDER BY key"
            )),
        }
        .map_err(backend_error)?;
        let mut rows = match end {
            Some(end) => statement.query(params![start, end]),
            None => statement.query(params![start]),
        }
        .map_err(backend_error)?;
        while let Some(row) = rows.next().map_err(backend_error)? {
            let key = row.get_ref(0).and_then(|v| Ok(v.as_blob()?));
            let value = row.get_ref(1).and_then(|v| Ok(v.as_blob()?));
            let (key, value) = (key.map_err(backend_error)?, value.map_err(backend_error)?);
            if !visit(key, value) {
                break;
            }
        }
        Ok(())
    }

    fn last_key_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare_cached(&format!(
                "SELECT key FROM {TABLE} WHERE key >= ?1 AND key < ?2 ORDER BY key DESC LIMIT 1"
            ))
            .map_err(backend_error)?;
        statement
            .query_row(params![start, end], |row| row.get(0))
            .optional()
            .map_err(backend_error)
    }

    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        // Dropped without commit (an error below), the transaction rolls back: nothing of it
        // is visible.
        let transaction = conn.transaction().map_err(backend_error)?;
        {
            let mut put = transaction
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO {TABLE} (key, value) VALUES (?1, ?2)"
                ))
                .map_err(backend_error)?;
            let mut delete = transaction
                .prepare_cached(&format!("DELETE FROM {TABLE} WHERE key = ?1"))
                .map_err(backend_error)?;
            for write in writes {
                match write {
                    KvWrite::Put(k, v) => put.execute(params![k, v]),
                    KvWrite::Delete(k) => delete.execute(params![k]),
                }
                .map_err(backend_error)?;
            }
        }
        transaction.commit().map_err(backend_error)
    }
}
