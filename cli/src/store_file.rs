//! Opening a store as what it is (redb, SQLite or sled, told from the file itself, or PostgreSQL,
//! named by a connection string), and naming its sessions the way `mooring store list`
//! prints them.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use mooring::store::{
    KvBackend, KvStore, PostgresOptions, PostgresStore, RedbBackend, RedbStore, SessionKey,
    SessionScope, SessionStore, SledStore, SqliteBackend, SqliteStore, StoreError,
};

use crate::{Class, Failure};

/// What a command does to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only: a redb file is opened read-only and never compacted, a SQLite file's log is
    /// never checkpointed.
    Read,
    /// Changes it (`drop-session`, `move-session`); `purpose` finishes the sentence that
    /// explains a refusal ("before dropping a session").
    Write(&'static str),
}

/// The backends the command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One redb file.
    Redb,
    /// A sled directory.
    Sled,
    /// One SQLite file.
    Sqlite,
    /// A PostgreSQL database, named by its connection string.
    Postgres,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Redb => "redb",
            Self::Sled => "sled",
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

/// Whether `store` is a PostgreSQL connection string (`postgres://…`, or libpq's `key=value`
/// pairs) rather than a path.
pub fn is_connection_string(store: &Path) -> bool {
    let text = store.to_string_lossy();
    text.starts_with("postgres://")
        || text.starts_with("postgresql://")
        || text.split_whitespace().any(|pair| {
            ["host=", "dbname=", "user=", "port="]
                .iter()
                .any(|key| pair.starts_with(key))
        })
}

/// redb writes this magic number at the start of its file.
const REDB_MAGIC: &[u8] = b"redb";
/// SQLite's file header starts with this.
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Tells what the store at `path` is, without opening (or creating) anything.
pub fn detect(path: &Path) -> Result<Kind, Failure> {
    if is_connection_string(path) {
        return Ok(Kind::Postgres);
    }
    let metadata = std::fs::metadata(path).map_err(|e| {
        Failure::new(format!(
            "there is no store at {}: {e}; give the file a client opened with RedbStore or \
             SqliteStore, or the directory of a SledStore",
            path.display()
        ))
        .of(Class::NotFound)
    })?;
    if metadata.is_dir() {
        if path.join("conf").is_file() && path.join("db").is_file() {
            return Ok(Kind::Sled);
        }
        return Err(Failure::new(format!(
            "{} is a directory but not a sled store (it has no conf and db files)",
            path.display()
        )));
    }
    let mut magic = Vec::with_capacity(SQLITE_MAGIC.len());
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(SQLITE_MAGIC.len() as u64).read_to_end(&mut magic));
    match read {
        Ok(_) if magic.starts_with(REDB_MAGIC) => Ok(Kind::Redb),
        Ok(_) if magic.starts_with(SQLITE_MAGIC) => Ok(Kind::Sqlite),
        Ok(_) => Err(Failure::new(format!(
            "{} is not a store file: it starts with neither redb's magic number nor SQLite's \
             header, and a sled store is a directory",
            path.display()
        ))),
        Err(e) => Err(Failure::new(format!("cannot read {}: {e}", path.display()))),
    }
}

/// An open store of either kind.
pub enum StoreFile {
    /// A redb file.
    Redb(RedbStore),
    /// A sled directory.
    Sled(SledStore),
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL database.
    Postgres(PostgresStore),
}

impl StoreFile {
    /// Opens the store at `path` for `access`. A redb file opened to read is opened
    /// read-only; one a killed client left needs recovery first (redb brings it back to its
    /// last commit), which is done, and said, without compacting it. A SQLite file opened to
    /// read is read as it is, its write-ahead log included, and left unchanged (a store closed
    /// cleanly may get an empty log beside it, which SQLite reads as none). sled has no
    /// read-only mode: its directory is opened as a client opens it.
    pub fn open(path: &Path, access: Access) -> Result<Self, Failure> {
        let kind = detect(path)?;
        let opened = match (kind, access) {
            (Kind::Redb, Access::Read) => {
                match RedbBackend::open_path_read_only(PathBuf::from(path)) {
                    Err(StoreError::NeedsRecovery { .. }) => {
                        eprintln!(
                            "mooring: {} was not closed cleanly (a killed client); recovering \
                             it to its last commit before reading",
                            path.display()
                        );
                        RedbBackend::open_path_uncompacted(PathBuf::from(path))
                    }
                    other => other,
                }
                .map(|backend| Self::Redb(KvStore::new(backend)))
            }
            (Kind::Redb, Access::Write(_)) => RedbStore::open(PathBuf::from(path)).map(Self::Redb),
            (Kind::Sled, _) => SledStore::open(PathBuf::from(path)).map(Self::Sled),
            // A killed client's log is read as it is, never folded into the file (no checkpoint).
            (Kind::Sqlite, Access::Read) => SqliteBackend::open_path_read_only(PathBuf::from(path))
                .map(|backend| Self::Sqlite(KvStore::new(backend))),
            (Kind::Sqlite, Access::Write(_)) => {
                SqliteStore::open(PathBuf::from(path)).map(Self::Sqlite)
            }
            (Kind::Postgres, Access::Read) => {
                PostgresStore::open(PostgresOptions::new(path.to_string_lossy()))
                    .map(Self::Postgres)
            }
            (Kind::Postgres, Access::Write(_)) => {
                return Err(Failure::new(
                    "drop-session and move-session change file stores; on PostgreSQL a \
                     session is owned by the client that runs it (its standby takes it over), so \
                     change it there"
                        .to_owned(),
                ));
            }
        };
        let purpose = match access {
            Access::Read => "to read it",
            Access::Write(purpose) => purpose,
        };
        opened.map_err(|e| match e {
            StoreError::Locked { .. } => Failure::new(format!(
                "the {kind} store at {} is held by {}; stop that client {purpose} (it releases \
                 the store when it exits)",
                path.display(),
                holder(path, kind).map_or_else(
                    || "a running client".to_owned(),
                    |(pid, name)| format!("process {pid} ({name})")
                ),
            ))
            .of(Class::Locked),
            StoreError::Open { damaged: true, .. } => Failure::damaged(format!(
                "{e}; the file cannot be read as a {kind} store: restore it from a backup"
            )),
            other => Failure::new(other.to_string()),
        })
    }

    /// The store as a [`SessionStore`].
    pub fn sessions(&self) -> &dyn SessionStore {
        match self {
            Self::Redb(store) => store,
            Self::Sled(store) => store,
            Self::Sqlite(store) => store,
            Self::Postgres(store) => store,
        }
    }

    /// Visits the raw entries whose keys are in `start..end` (to the last key without `end`),
    /// in key order, until `visit` returns `false`.
    pub fn visit(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        match self {
            Self::Redb(store) => store.backend().visit_range(start, end, visit),
            Self::Sled(store) => store.backend().visit_range(start, end, visit),
            Self::Sqlite(store) => store.backend().visit_range(start, end, visit),
            Self::Postgres(store) => store.backend().visit_range(start, end, visit),
        }
    }
}

/// The process holding the lock on the store at `path` (the redb file, sled's `db` file), by
/// the kernel's table of file locks (`/proc/locks`), and its name; `None` where there is no
/// such table or no lock found.
fn holder(path: &Path, kind: Kind) -> Option<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let locked = match kind {
        Kind::Redb | Kind::Sqlite => path.to_path_buf(),
        Kind::Sled => path.join("db"),
        Kind::Postgres => return None,
    };
    let inode = std::fs::metadata(&locked).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        let device_inode = fields.iter().find(|f| f.matches(':').count() == 2)?;
        let at = fields.iter().position(|f| f == device_inode)?;
        let found: u64 = device_inode.rsplit(':').next()?.parse().ok()?;
        (found == inode)
            .then(|| fields.get(at.checked_sub(1)?)?.parse::<u32>().ok())
            .flatten()
    })?;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    Some((pid, name))
}

/// A session's name on the command line: `CLIENT_ID@SERVER` or `CLIENT_ID@cluster:SCOPE`.
pub fn session_name(key: &SessionKey) -> String {
    match key.scope() {
        SessionScope::Server(server) => format!("{}@{server}", key.client_id()),
        SessionScope::Cluster(scope) => format!("{}@cluster:{scope}", key.client_id()),
    }
}

/// The session `wanted` names: a name as `list` prints it, or a client identifier that only
/// one session has.
pub async fn find_session(store: &StoreFile, wanted: &str) -> Result<SessionKey, Failure> {
    let keys = store
        .sessions()
        .sessions()
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    if let Some(key) = keys.iter().find(|k| session_name(k) == wanted) {
        return Ok(key.clone());
    }
    let by_client: Vec<&SessionKey> = keys.iter().filter(|k| k.client_id() == wanted).collect();
    match by_client.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Failure::new(format!(
            "no session {wanted:?} in the store; `mooring store list` names them all"
        ))
        .of(Class::NotFound)),
        several => Err(Failure::new(format!(
            "client {wanted:?} has {} sessions here ({}); name one as `list` prints it",
            several.len(),
            several
                .iter()
                .map(|k| session_name(k))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_tell_servers_from_clusters() {
        let server = SessionKey::new("mqtt://h:1883", "gw");
        let cluster = SessionKey::cluster("site-7", "gw");
        assert_eq!(session_name(&server), "gw@mqtt://h:1883");
        assert_eq!(session_name(&cluster), "gw@cluster:site-7");
    }

    #[test]
    fn a_missing_path_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.redb");
        let err = detect(&path).unwrap_err();
        assert!(err.message.contains("there is no store"), "{}", err.message);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_store_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "hello, world").unwrap();
        let err = detect(&path).unwrap_err();
        assert!(err.message.contains("not a store file"), "{}", err.message);
    }
}
