//! An opt-in way for a gateway that must keep running to get past a damaged store: move it
//! aside, never delete it, and start afresh.

use std::path::{Path, PathBuf};

use super::StoreError;

/// A damaged store moved out of the way by [`open_or_set_aside`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Where the store was, and where a fresh one is now.
    pub path: PathBuf,
    /// Where the damaged one went: next to it, named `<name>.damaged-<milliseconds since the
    /// UNIX epoch>`, untouched, for support to read.
    pub moved_to: PathBuf,
    /// Why it would not open.
    pub cause: String,
}

/// Opens the store at `path` with `open` (for example `RedbStore::open`). If it will not open
/// because it is damaged ([`StoreError::Open`] with `damaged`), renames it aside and opens a
/// fresh one in its place: the session it held is lost to this process (its messages are in
/// the moved file), so report the [`SetAside`] (the client does with
/// `ClientBuilder::store_set_aside`). Any other error (the store is locked, the system refuses
/// the file, the fresh one fails too) is returned as it is; nothing is moved then.
pub fn open_or_set_aside<S>(
    path: impl AsRef<Path>,
    open: impl Fn(PathBuf) -> Result<S, StoreError>,
) -> Result<(S, Option<SetAside>), StoreError> {
    let path = path.as_ref();
    let cause = match open(path.to_owned()) {
        Err(StoreError::Open {
            damaged: true,
            cause,
            ..
        }) => cause,
        other => return other.map(|store| (store, None)),
    };
    let moved_to = free_name(path);
    std::fs::rename(path, &moved_to).map_err(|e| StoreError::open(path, false, e))?;
    // Make the rename durable before the fresh store is built under the old name.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::open(path, false, e))?;
    }
    let store = open(path.to_owned())?;
    Ok((
        store,
        Some(SetAside {
            path: path.to_owned(),
            moved_to,
            cause,
        }),
    ))
}

/// `<path>.damaged-<ms>`, with a counter if that exists already.
fn free_name(path: &Path) -> PathBuf {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-{ms}"));
    let mut candidate = path.with_file_name(&name);
    let mut n = 1;
    while candidate.exists() {
        let mut numbered = name.clone();
        numbered.push(format!("-{n}"));
        candidate = path.with_file_name(numbered);
        n += 1;
    }
    candidate
}
