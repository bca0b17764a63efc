//! [`MemoryStore`]: the session store over an ordered map in memory, for tests and for
//! applications that want sessions only while the process lives.
//!
//! It keeps the same records, in the same layout, as the durable stores, and passes the same
//! conformance suite; it only forgets everything when the last handle to its map is dropped.
//!
//! ```
//! use mooring_core::store::{Batch, SessionKey, SessionStore, StoreOp};
//! use mooring_store_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::default();
//! let key = SessionKey::new("mqtt://127.0.0.1:1883", "gateway-7");
//! store.commit(&key, Batch::from(vec![StoreOp::PutInbound { packet_id: 7 }])).await?;
//! assert_eq!(store.load(&key).await?.inbound, vec![7]);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mooring_core::store::layout::KvWrite;
use mooring_core::store::{KvBackend, KvStore, StoreError, visit_map};

/// The session store in memory. Clones share the same map.
pub type MemoryStore = KvStore<MemoryBackend>;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// The map behind [`MemoryStore`]. Clones share it, so a store built anew over a clone of
/// the backend sees everything committed before, as a reopened file would.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    map: Arc<Mutex<Map>>,
    fail_next_apply: Arc<AtomicBool>,
}

impl MemoryBackend {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next commit fail as a failing disk would, applying nothing. For tests of
    /// error handling.
    pub fn fail_next_commit(&self) {
        self.fail_next_apply.store(true, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Map> {
        // A panic while holding the lock cannot leave the map half-changed: `apply` changes it
        // only after every check has passed.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("entries", &self.lock().len())
            .finish()
    }
}

impl KvBackend for MemoryBackend {
    const NAME: &'static str = "memory store";
    const BLOCKING: bool = false;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    fn visit_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        visit_map(&self.lock(), start, end, visit);
        Ok(())
    }

    fn last_key_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .next_back()
            .map(|(k, _)| k.clone()))
    }

    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        self.apply_owned(writes.to_vec())
    }

    fn apply_owned(&self, writes: Vec<KvWrite>) -> Result<(), StoreError> {
        if self.fail_next_apply.swap(false, Ordering::SeqCst) {
            return Err(StoreError::backend(
                Self::NAME,
                std::io::Error::other("injected write failure"),
            ));
        }
        let mut map = self.lock();
        // The keys and values move into the map: no copy of either.
        for write in writes {
            match write {
                KvWrite::Put(k, v) => {
                    map.insert(k, v);
                }
                KvWrite::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }
}
