//! Opening a store file as what it is (redb or sled, told from the file itself), and naming
//! its sessions the way `mooring store list` prints them.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use mooring::store::{
    KvBackend, RedbStore, SessionKey, SessionScope, SessionStore, SledStore, StoreError,
};

use crate::Failure;

/// The backends the command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One redb file.
    Redb,
    /// A sled directory.
    Sled,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Redb => "redb",
            Self::Sled => "sled",
        })
    }
}

/// redb writes this magic number at the start of its file.
const REDB_MAGIC: &[u8] = b"redb";

/// Tells what the store at `path` is, without opening (or creating) anything.
pub fn detect(path: &Path) -> Result<Kind, Failure> {
    let metadata = std::fs::metadata(path).map_err(|e| {
        Failure::new(format!(
            "there is no store at {}: {e}; give the file a client opened with RedbStore or the \
             directory of a SledStore",
            path.display()
        ))
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
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match read {
        Ok(()) if magic == REDB_MAGIC => Ok(Kind::Redb),
        Ok(()) => Err(Failure::new(format!(
            "{} is not a store file: it does not start with redb's magic number, and a sled \
             store is a directory",
            path.display()
        ))),
        Err(e) => Err(Failure::new(format!(
            "cannot read {}: {e} (a redb store file is never shorter than its header)",
            path.display()
        ))),
    }
}

/// An open store of either kind.
pub enum StoreFile {
    /// A redb file.
    Redb(RedbStore),
    /// A sled directory.
    Sled(SledStore),
}

impl StoreFile {
    /// Opens the store at `path`. `purpose` ends the sentence that explains a refusal when
    /// a running client holds the store ("to read it", "to change it").
    pub fn open(path: &Path, purpose: &str) -> Result<Self, Failure> {
        let kind = detect(path)?;
        let opened = match kind {
            Kind::Redb => RedbStore::open(PathBuf::from(path)).map(Self::Redb),
            Kind::Sled => SledStore::open(PathBuf::from(path)).map(Self::Sled),
        };
        opened.map_err(|e| match e {
            StoreError::Locked { .. } => Failure::new(format!(
                "the {kind} store at {} is held by a running client; stop that client {purpose} \
                 (it releases the store when it exits)",
                path.display()
            )),
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
        }
    }
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
        ))),
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
