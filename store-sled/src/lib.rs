//! [`SledStore`]: the durable session store on [sled](https://docs.rs/sled) 0.34.
//!
//! Each commit is one `apply_batch` (atomic: after a crash all of the batch or none of it is
//! there) followed by `flush`, which returns once sled has written its buffers to the file.
//!
//! # Durability: process crash yes, power loss not promised
//!
//! On Linux, sled 0.34 makes its log durable with `sync_file_range(2)`
//! (`SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER`), not `fsync`/`fdatasync`. That call
//! pushes the file's dirty pages to the device, but it neither flushes the device's volatile
//! write cache nor writes the file's metadata (its size, for a file that grew). So:
//!
//! - a committed batch survives the process being killed (`kill -9`): the data was written
//!   to the kernel before `commit` returned;
//! - a committed batch is **not** promised to survive a power failure, a kernel crash or a
//!   pulled disk. Use [`RedbStore`](https://docs.rs/mooring-store-redb) when that matters.
//!
//! sled also flushes by itself every 500 ms (its `flush_every_ms` default); the store does not
//! rely on that, since every commit flushes before it returns.
//!
//! The evidence is in ARCHITECTURE.md ("Storage"), from `strace` of committing processes.
//! Also there: once in 1,500 SIGKILLs in our crash test, a sled 0.34 database would not open
//! again ("Read corrupted data").
//!
//! Blocking I/O runs on the store's own thread (see `KvStore`), never on an async executor.
//!
//! ```no_run
//! use mooring_store_sled::SledStore;
//!
//! let store = SledStore::open("gateway.sled")?;
//! # Ok::<(), mooring_core::store::StoreError>(())
//! ```
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use fs2::FileExt;

use mooring_core::store::layout::KvWrite;
use mooring_core::store::{KvBackend, KvOpen, KvStore, StoreError};

/// The session store on sled.
pub type SledStore = KvStore<SledBackend>;

const NAME: &str = "sled store";

fn backend_error(e: sled::Error) -> StoreError {
    StoreError::backend(NAME, e)
}

/// The sled database behind [`SledStore`].
pub struct SledBackend {
    db: sled::Db,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend").finish_non_exhaustive()
    }
}

/// sled's page cache (its default is 1 GiB): the working set of a session store is its
/// in-flight window and the two ends of its queue, so a small cache keeps memory flat however
/// long the queue grows.
pub const CACHE_BYTES: u64 = 32 * 1024 * 1024;

impl SledBackend {
    /// Opens or creates the database in the directory `path`.
    pub fn open_path(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                // sled says a held lock only in the words of an `Other` I/O error; ask the
                // lock itself instead of reading them.
                sled::Error::Io(io) if io.kind() == ErrorKind::Other && lock_is_held(&path) => {
                    StoreError::Locked {
                        path: path.display().to_string(),
                    }
                }
                corrupt @ sled::Error::Corruption { .. } => StoreError::open(&path, true, corrupt),
                other => StoreError::open(&path, false, other),
            })?;
        Ok(Self { db })
    }
}

/// Whether another handle holds the lock sled takes on `<path>/db` (an exclusive `flock`).
fn lock_is_held(path: &Path) -> bool {
    let Ok(file) = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))
    else {
        return false;
    };
    // Dropping the file releases the probe's own lock when it got one.
    match file.try_lock_exclusive() {
        Ok(()) => false,
        Err(e) => e.raw_os_error() == fs2::lock_contended_error().raw_os_error(),
    }
}

impl KvOpen for SledBackend {
    type Options = PathBuf;

    fn open(path: PathBuf) -> Result<Self, StoreError> {
        Self::open_path(path)
    }
}

impl KvBackend for SledBackend {
    const NAME: &'static str = NAME;
    const BLOCKING: bool = true;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(backend_error)?.map(|v| v.to_vec()))
    }

    fn visit_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let entries = match end {
            Some(end) => self.db.range(start..end),
            None => self.db.range(start..),
        };
        for entry in entries {
            let (k, v) = entry.map_err(backend_error)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn last_key_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db.range(start..end).next_back() {
            Some(entry) => Ok(Some(entry.map_err(backend_error)?.0.to_vec())),
            None => Ok(None),
        }
    }

    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for write in writes {
            match write {
                KvWrite::Put(k, v) => batch.insert(k.as_slice(), v.as_slice()),
                KvWrite::Delete(k) => batch.remove(k.as_slice()),
            }
        }
        self.db.apply_batch(batch).map_err(backend_error)?;
        self.db.flush().map_err(backend_error)?;
        Ok(())
    }
}
