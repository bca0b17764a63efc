//! [`KvStore`]: a complete [`SessionStore`] over any ordered key-value backend.
//!
//! A backend provides five blocking primitives ([`KvBackend`]); `KvStore` adds the session
//! layout ([`super::layout`]), the refusal of writes after a failed commit, and moves blocking
//! calls off the async worker threads. The memory, redb and sled stores are each a backend.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::layout::{self, KvWrite};
use super::{Batch, SessionKey, SessionStore, StoreError, StoredSession};

/// Key-value pairs, in ascending key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered map from byte keys to byte values. Its methods block; [`KvStore`] calls them from
/// a blocking thread when [`KvBackend::BLOCKING`] says so.
pub trait KvBackend: Send + Sync + 'static {
    /// The backend's name, for error messages.
    const NAME: &'static str;
    /// Whether calls do I/O and must stay off async worker threads.
    const BLOCKING: bool;

    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every entry whose key starts with `prefix`, in ascending key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError>;

    /// The smallest key that is greater than or equal to `start`.
    fn first_key_from(&self, start: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies `writes` in order, atomically and durably: when this returns `Ok`, all of them
    /// survive a crash; when it returns `Err`, none of them may be visible.
    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError>;
}

/// A backend that opens from options (a path, a configuration).
pub trait KvOpen: KvBackend + Sized {
    /// What opening needs.
    type Options;

    /// Opens (or creates) the backend.
    fn open(options: Self::Options) -> Result<Self, StoreError>;
}

struct Shared<B> {
    backend: B,
    /// The error of the first failed commit; once set, writes are refused.
    poisoned: Mutex<Option<String>>,
}

impl<B: KvBackend> Shared<B> {
    fn check_writable(&self) -> Result<(), StoreError> {
        match &*self.poisoned.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(cause) => Err(StoreError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn write(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        self.check_writable()?;
        let result = self.backend.apply(writes);
        if let Err(e) = &result {
            let mut poisoned = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
            poisoned.get_or_insert_with(|| e.to_string());
        }
        result
    }

    fn load(&self, key: &SessionKey) -> Result<StoredSession, StoreError> {
        let entries = self.backend.scan_prefix(&layout::session_prefix(key))?;
        layout::decode_session(key, entries)
    }

    fn clear(&self, key: &SessionKey) -> Result<(), StoreError> {
        let entries = self.backend.scan_prefix(&layout::session_prefix(key))?;
        if entries.is_empty() {
            return Ok(());
        }
        let deletes: Vec<KvWrite> = entries
            .into_iter()
            .map(|(k, _)| KvWrite::Delete(k))
            .collect();
        self.write(&deletes)
    }

    fn sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
        // Jump from one session's prefix to the next: one seek per session, not per record.
        let mut out = Vec::new();
        let mut start = Vec::new();
        while let Some(raw) = self.backend.first_key_from(&start)? {
            let key = layout::session_of_key(&raw)?;
            start = layout::session_upper_bound(&layout::session_prefix(&key));
            out.push(key);
        }
        Ok(out)
    }

    fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError> {
        let mut purged = Vec::new();
        for key in self.sessions()? {
            let Some(raw) = self.backend.get(&layout::meta_key(&key))? else {
                continue;
            };
            if layout::decode_meta(&key, &raw)?.is_expired(now_ms) {
                self.clear(&key)?;
                purged.push(key);
            }
        }
        Ok(purged)
    }
}

/// A [`SessionStore`] over a [`KvBackend`].
pub struct KvStore<B> {
    shared: Arc<Shared<B>>,
}

impl<B> Clone for KvStore<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B: KvBackend> KvStore<B> {
    /// A store over `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            shared: Arc::new(Shared {
                backend,
                poisoned: Mutex::new(None),
            }),
        }
    }

    /// The backend, for tools and tests that work below the session layer.
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// Runs `f` on the backend, on a blocking thread when the backend blocks and a tokio
    /// runtime is there to provide one.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared<B>) -> Result<T, StoreError> + Send + 'static,
    {
        if B::BLOCKING && tokio::runtime::Handle::try_current().is_ok() {
            let shared = Arc::clone(&self.shared);
            tokio::task::spawn_blocking(move || f(&shared))
                .await
                .map_err(|e| StoreError::Backend {
                    backend: B::NAME,
                    message: format!("the blocking store task ended abnormally: {e}"),
                    source: None,
                })?
        } else {
            f(&self.shared)
        }
    }
}

impl<B: KvOpen> KvStore<B> {
    /// Opens (or creates) the store: for a file-backed store, at a path.
    pub fn open(options: impl Into<B::Options>) -> Result<Self, StoreError> {
        B::open(options.into()).map(Self::new)
    }
}

impl<B: KvBackend + Default> Default for KvStore<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B> std::fmt::Debug for KvStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("backend", &std::any::type_name::<B>())
            .finish()
    }
}

#[async_trait]
impl<B: KvBackend> SessionStore for KvStore<B> {
    async fn load(&self, key: &SessionKey) -> Result<StoredSession, StoreError> {
        let key = key.clone();
        self.run(move |s| s.load(&key)).await
    }

    async fn commit(&self, key: &SessionKey, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return self.shared.check_writable();
        }
        let writes = layout::batch_writes(key, &batch);
        self.run(move |s| s.write(&writes)).await
    }

    async fn clear(&self, key: &SessionKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |s| s.clear(&key)).await
    }

    async fn sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
        self.run(|s| s.sessions()).await
    }

    async fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError> {
        self.run(move |s| s.purge_expired(now_ms)).await
    }
}
