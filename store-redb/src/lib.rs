//! [`RedbStore`]: the durable session store on [redb](https://docs.rs/redb), Mooring's default.
//!
//! One file holds every session. Each commit is one redb write transaction with
//! `Durability::Immediate`: when it returns, redb has written the transaction and synced the
//! file with `fsync`/`fdatasync`, so the batch survives the process being killed and the
//! machine losing power, as far as the disk honours a sync. redb's two-phase commit with
//! checksums means a torn write leaves the previous transaction in place, never a mix.
//! A test in this crate shows it: a storage backend that drops every write not yet synced, at
//! random moments, loses no acknowledged batch.
//!
//! Blocking file I/O runs on the store's own thread (see `KvStore`), never on an async executor.
//!
//! ```no_run
//! use mooring_store_redb::RedbStore;
//!
//! let store = RedbStore::open("gateway.redb")?;
//! # Ok::<(), mooring_core::store::StoreError>(())
//! ```
//!
//! Opening a file that another process holds open fails with
//! `mooring_core::store::StoreError::Locked`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use mooring_core::store::layout::KvWrite;
use mooring_core::store::{KvBackend, KvOpen, KvStore, StoreError};
use redb::{
    Database, DatabaseError, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTableMetadata,
    StorageBackend, StorageError, TableDefinition,
};

/// The durable session store on redb.
pub type RedbStore = KvStore<RedbBackend>;

/// All records of all sessions, under the keys of [`mooring_core::store::layout`].
const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("mooring_sessions");

const NAME: &str = "redb store";

/// redb's page cache (its default is 1 GiB): the working set of a session store is its
/// in-flight window and the two ends of its queue, so a small cache keeps memory flat however
/// long the queue grows.
pub const CACHE_BYTES: usize = 32 * 1024 * 1024;

fn open_database(path: &Path) -> Result<Database, StoreError> {
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.display().to_string(),
            },
            other => {
                let damaged = is_damage(&other);
                StoreError::open(path, damaged, redb::Error::from(other))
            }
        })
}

/// A file at least this large that holds at most [`COMPACT_MOST_RECORDS`] records is
/// compacted when it is opened.
const COMPACT_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// See [`COMPACT_FILE_BYTES`]: few enough records that compacting them is quick.
const COMPACT_MOST_RECORDS: u64 = 65_536;

/// Compacts a large file that holds few records (a queue drained): redb reuses the pages a
/// drain frees while the database stays open, but once it is closed and opened again it does
/// not find them for the next fill, and the file grew by the whole queue again (measured:
/// 272 MiB after a million queued messages, 440 MiB after the second million). The record
/// count is kept in the table's root, so deciding costs nothing; a file full of records is
/// never compacted at start-up.
fn compact_if_mostly_free(
    db: &mut Database,
    path: &Path,
    min_file_bytes: u64,
) -> Result<(), StoreError> {
    let file_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    if file_bytes < min_file_bytes {
        return Ok(());
    }
    let records = {
        let txn = db.begin_read().map_err(backend_error)?;
        match txn.open_table(SESSIONS) {
            Ok(table) => table.len().map_err(backend_error)?,
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(backend_error(e)),
        }
    };
    if records > COMPACT_MOST_RECORDS {
        return Ok(());
    }
    while db
        .compact()
        .map_err(|e| StoreError::backend(NAME, e.to_string()))?
    {}
    Ok(())
}

/// Whether redb refused the file for what is in it: not a redb database, or corrupted.
fn is_damage(error: &DatabaseError) -> bool {
    match error {
        DatabaseError::Storage(StorageError::Corrupted(_)) => true,
        DatabaseError::Storage(StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    }
}

fn backend_error(e: impl Into<redb::Error>) -> StoreError {
    StoreError::backend(NAME, e.into())
}

/// The redb database behind [`RedbStore`].
pub struct RedbBackend {
    db: Handle,
}

/// The database, opened to write or only to read.
enum Handle {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend").finish_non_exhaustive()
    }
}

impl RedbBackend {
    /// Opens the database file at `path`, creating it if there is none.
    ///
    /// Creation is atomic: the new database is built under `<name>.creating`, committed, and
    /// only then renamed to `path` (and the directory synced). A process killed while creating
    /// leaves no half-written file at `path`, only a `.creating` file that never held a session
    /// and is removed on the next start.
    pub fn open_path(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        if !path.exists() {
            Self::create_atomically(&path)?;
        }
        let mut db = open_database(&path)?;
        compact_if_mostly_free(&mut db, &path, COMPACT_FILE_BYTES)?;
        Self::from_database(db)
    }

    fn create_atomically(path: &Path) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::open(path, false, e);
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".creating");
        let creating = path.with_file_name(name);
        match std::fs::remove_file(&creating) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        // `from_database` commits the table durably before the file gets its real name.
        drop(Self::from_database(open_database(&creating)?)?);
        std::fs::rename(&creating, path).map_err(io)?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    /// Opens or creates a database on any redb [`StorageBackend`] (for fault injection in
    /// tests, or storage that is not a plain file).
    pub fn with_storage(storage: impl StorageBackend) -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(storage)
            .map_err(backend_error)?;
        Self::from_database(db)
    }

    /// Opens the database file at `path` without changing it: no compaction, no table
    /// created, and writes refused. For tools that only read (`mooring store list`). A file
    /// that was not closed cleanly (a killed client) must be repaired before it can be read
    /// this way: that is [`StoreError::NeedsRecovery`]
    /// (see [`RedbBackend::open_path_uncompacted`]).
    pub fn open_path_read_only(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(&path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: path.display().to_string(),
                },
                DatabaseError::RepairAborted => StoreError::NeedsRecovery {
                    path: path.display().to_string(),
                },
                other => {
                    let damaged = is_damage(&other);
                    StoreError::open(&path, damaged, redb::Error::from(other))
                }
            })?;
        Ok(Self {
            db: Handle::ReadOnly(db),
        })
    }

    /// Opens the existing database file at `path` to write, repairing it if a client was
    /// killed while it held it (redb brings it back to its last commit), but without the
    /// compaction [`RedbBackend::open_path`] may do.
    pub fn open_path_uncompacted(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        if !path.exists() {
            return Err(StoreError::open(
                &path,
                false,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        Self::from_database(open_database(&path)?)
    }

    fn from_database(db: Database) -> Result<Self, StoreError> {
        // Create the table up front, so that readers never meet a missing table.
        let txn = db.begin_write().map_err(backend_error)?;
        txn.open_table(SESSIONS).map_err(backend_error)?;
        txn.commit().map_err(backend_error)?;
        Ok(Self {
            db: Handle::Writable(db),
        })
    }

    /// Runs `f` over the sessions table in a read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let txn = match &self.db {
            Handle::Writable(db) => db.begin_read(),
            Handle::ReadOnly(db) => db.begin_read(),
        }
        .map_err(backend_error)?;
        let table = txn.open_table(SESSIONS).map_err(backend_error)?;
        f(&table).map_err(backend_error)
    }
}

impl KvOpen for RedbBackend {
    type Options = PathBuf;

    fn open(path: PathBuf) -> Result<Self, StoreError> {
        Self::open_path(path)
    }
}

impl KvBackend for RedbBackend {
    const NAME: &'static str = NAME;
    const BLOCKING: bool = true;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|t| Ok(t.get(key)?.map(|v| v.value().to_vec())))
    }

    fn visit_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        // One read transaction: the visit sees one committed state.
        self.read(|t| {
            let entries = match end {
                Some(end) => t.range(start..end)?,
                None => t.range(start..)?,
            };
            for entry in entries {
                let (k, v) = entry?;
                if !visit(k.value(), v.value()) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn last_key_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|t| {
            Ok(match t.range(start..end)?.next_back() {
                Some(entry) => Some(entry?.0.value().to_vec()),
                None => None,
            })
        })
    }

    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        let Handle::Writable(db) = &self.db else {
            return Err(StoreError::backend(
                NAME,
                "the store was opened read-only".to_owned(),
            ));
        };
        let mut txn = db.begin_write().map_err(backend_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::backend(NAME, e.to_string()))?;
        {
            let mut table = txn.open_table(SESSIONS).map_err(backend_error)?;
            for write in writes {
                match write {
                    KvWrite::Put(k, v) => {
                        table
                            .insert(k.as_slice(), v.as_slice())
                            .map_err(backend_error)?;
                    }
                    KvWrite::Delete(k) => {
                        table.remove(k.as_slice()).map_err(backend_error)?;
                    }
                }
            }
        }
        txn.commit().map_err(backend_error)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fill(db: &Database, from: u32, count: u32) {
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(SESSIONS).unwrap();
            for n in from..from + count {
                table
                    .insert(n.to_be_bytes().as_slice(), [7u8; 100].as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn empty(db: &Database, from: u32, count: u32) {
        for chunk in (from..from + count).step_by(1000) {
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(SESSIONS).unwrap();
                for n in chunk..chunk + 1000 {
                    table.remove(n.to_be_bytes().as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
    }

    #[test]
    fn a_drained_file_reopened_is_compacted_and_the_next_fill_reuses_its_space() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let size = || std::fs::metadata(&path).unwrap().len();
        let Handle::Writable(db) = RedbBackend::open_path(&path).unwrap().db else {
            panic!("opened to write");
        };
        fill(&db, 0, 50_000);
        empty(&db, 0, 50_000);
        let full = size();
        drop(db);
        let mut db = open_database(&path).unwrap();
        compact_if_mostly_free(&mut db, &path, 1).unwrap();
        assert!(size() < full / 4, "compacted: {} of {full} bytes", size());
        fill(&db, 0, 50_000);
        assert!(
            size() <= full,
            "the second fill took {} bytes, the first {full}",
            size()
        );
        // A file that holds many records is left as it is.
        fill(&db, 50_000, 30_000);
        drop(db);
        let mut db = open_database(&path).unwrap();
        let before = size();
        compact_if_mostly_free(&mut db, &path, 1).unwrap();
        assert_eq!(size(), before);
    }
}
