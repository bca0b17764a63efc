//! [`KvStore`]: a complete [`SessionStore`] over any ordered key-value backend.
//!
//! A backend provides four blocking primitives ([`KvBackend`]); `KvStore` adds the session
//! layout ([`super::layout`]), the queue totals kept exact in every commit, the refusal of
//! writes after a failed commit, and runs blocking calls on a thread of its own, so that no
//! async executor blocks and no runtime is needed: the futures resolve on whatever executor
//! polls them. The redb, sled and PostgreSQL stores are each a backend.

mod queue;
mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::layout::{self, KvWrite};
use super::{
    Batch, QueueWindow, QueuedPublish, SessionKey, SessionStore, StoreError, StoredSession,
};
use worker::{Job, Worker};

/// Key-value pairs, in ascending key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered map from byte keys to byte values. Its methods block; [`KvStore`] calls them from
/// its own thread when [`KvBackend::BLOCKING`] says so.
pub trait KvBackend: Send + Sync + 'static {
    /// The backend's name, for error messages.
    const NAME: &'static str;
    /// Whether calls do I/O and must stay off async worker threads.
    const BLOCKING: bool;

    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Calls `visit` with each entry whose key is at least `start` and below `end` (to the
    /// last key when `end` is `None`), in ascending key order, until `visit` returns `false`.
    fn visit_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    /// The greatest key that is at least `start` and below `end`.
    fn last_key_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies `writes` in order, atomically and durably: when this returns `Ok`, all of them
    /// survive a crash; when it returns `Err`, none of them may be visible.
    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError>;

    /// Whether dropping the last handle to the store waits for the store's thread to finish
    /// the calls already made. A file-backed backend says yes, so that a store dropped and
    /// opened again at once finds its file free. A backend whose calls can wait on a network
    /// says no: the thread then finishes them on its own, and the last handle may be dropped
    /// on an async worker without blocking it.
    const JOIN_ON_DROP: bool = true;

    /// One attempt at [`SessionStore::acquire`]: backends shared by several processes take
    /// ownership of the session here, or say how long another process still holds it.
    /// [`KvStore`] waits between attempts off the store's thread, so that other sessions'
    /// calls go on meanwhile and a caller that gives up stops waiting at once; a session won
    /// for a caller that gave up meanwhile is handed back with [`KvBackend::release`]. The
    /// default owns every session already.
    fn try_acquire(&self, _session: &SessionKey) -> Result<Acquired, StoreError> {
        Ok(Acquired::Owned)
    }

    /// The first key of every session that holds a record, in any order, where the backend
    /// can find them in one go (a database: one statement rather than one per session).
    /// `None`, the default, has [`KvStore`] seek from each session's prefix to the next.
    fn first_key_of_each_session(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Ok(None)
    }

    /// See [`SessionStore::is_shared`].
    const SHARED: bool = false;

    /// Whether [`KvStore`] may apply the commits of several sessions that wait together in
    /// one call to [`apply`](Self::apply): one `fdatasync` for many clients' publishes. Say no
    /// when `apply` can fail for one session alone (an ownership fence): a grouped write that
    /// failed would fail every session in it.
    const GROUP_COMMITS: bool = true;

    /// See [`SessionStore::clock_ms`].
    fn clock_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// See [`SessionStore::release`].
    fn release(&self, _session: &SessionKey) -> Result<(), StoreError> {
        Ok(())
    }

    /// See [`SessionStore::close`].
    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// See [`SessionStore::check_owner`].
    fn check_owner(&self, _session: &SessionKey) -> Result<(), StoreError> {
        Ok(())
    }

    /// See [`SessionStore::owned_until`]. Called on the caller's thread: it must not block.
    fn owned_until(&self, _session: &SessionKey) -> Option<std::time::Instant> {
        None
    }

    /// Every entry whose key starts with `prefix`, in ascending key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        let mut out = Vec::new();
        self.visit_range(prefix, None, &mut |k, v| {
            let inside = k.starts_with(prefix);
            if inside {
                out.push((k.to_vec(), v.to_vec()));
            }
            inside
        })?;
        Ok(out)
    }

    /// The smallest key that is greater than or equal to `start`.
    fn first_key_from(&self, start: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut first = None;
        self.visit_range(start, None, &mut |k, _| {
            first = Some(k.to_vec());
            false
        })?;
        Ok(first)
    }
}

/// How one attempt to own a session ended ([`KvBackend::try_acquire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// This process owned the session already.
    Owned,
    /// This attempt took the session: undone if nobody waits for it any more.
    Won,
    /// Another process holds it: try again after this long (it may release it sooner).
    HeldFor(Duration),
}

/// [`KvBackend::visit_range`] over an ordered map in memory: for backends that keep one (the
/// memory store, a journal replayed into a map).
pub fn visit_map(
    map: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    start: &[u8],
    end: Option<&[u8]>,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) {
    use std::ops::Bound;
    let end = end.map_or(Bound::Unbounded, Bound::Excluded);
    for (k, v) in map.range::<[u8], _>((Bound::Included(start), end)) {
        if !visit(k, v) {
            break;
        }
    }
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
    /// The queues' shapes, held while a commit reads and rewrites the queue totals (commits
    /// from many tasks reach a backend that does not block, and so runs them inline, at once).
    shapes: Mutex<queue::QueueShapes>,
    /// Atomic writes the backend has made.
    writes: AtomicU64,
}

impl<B: KvBackend> Shared<B> {
    fn try_acquire(&self, key: &SessionKey) -> Result<Acquired, StoreError> {
        let attempt = self.backend.try_acquire(key);
        if let Ok(Acquired::Won) = attempt {
            // Another process may have written the session since this store last did.
            self.shapes().remove(key);
        }
        attempt
    }

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
        self.writes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            let mut poisoned = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
            poisoned.get_or_insert_with(|| super::described(e));
        }
        result
    }

    fn sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
        if let Some(first_keys) = self.backend.first_key_of_each_session()? {
            return first_keys
                .iter()
                .map(|raw| layout::session_of_key(raw))
                .collect();
        }
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

    fn sessions_of(&self, client_id: &str) -> Result<Vec<SessionKey>, StoreError> {
        if let Some(first_keys) = self.backend.first_key_of_each_session()? {
            let mut keys = Vec::new();
            for raw in &first_keys {
                let key = layout::session_of_key(raw)?;
                if key.client_id() == client_id {
                    keys.push(key);
                }
            }
            return Ok(keys);
        }
        // Scopes are few (one per server), sessions many: jump from scope to scope and look
        // for the client's session in each, two seeks per scope.
        let mut out = Vec::new();
        let mut start = Vec::new();
        while let Some(raw) = self.backend.first_key_from(&start)? {
            let wanted = layout::session_of_key(&raw)?.with_client_id(client_id);
            let prefix = layout::session_prefix(&wanted);
            let held = self
                .backend
                .first_key_from(&prefix)?
                .is_some_and(|first| first.starts_with(&prefix));
            start = layout::scope_upper_bound(&wanted);
            if held {
                out.push(wanted);
            }
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
                match self.clear(&key) {
                    // Owned by a live process: not this one's to purge.
                    Err(StoreError::Fenced { .. }) => continue,
                    cleared => cleared?,
                }
                // A shared store: the claim the clear made must not keep others out.
                self.backend.release(&key)?;
                purged.push(key);
            }
        }
        Ok(purged)
    }
}

/// A [`SessionStore`] over a [`KvBackend`].
///
/// Clones share one backend (and, for a blocking backend, one thread). The backend is closed
/// when the last clone is dropped, after the calls already made have finished.
pub struct KvStore<B> {
    // Declared first so that it is dropped first: the thread finishes before the backend goes.
    worker: Option<Arc<Worker<B>>>,
    shared: Arc<Shared<B>>,
}

impl<B> Clone for KvStore<B> {
    fn clone(&self) -> Self {
        Self {
            worker: self.worker.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

fn worker_gone(backend: &'static str) -> StoreError {
    StoreError::Backend {
        backend,
        message: "the store's thread ended abnormally".to_owned(),
        source: None,
    }
}

impl<B: KvBackend> KvStore<B> {
    /// A store over `backend`. A blocking backend gets a thread of its own.
    pub fn new(backend: B) -> Self {
        let shared = Arc::new(Shared {
            backend,
            poisoned: Mutex::new(None),
            shapes: Mutex::new(queue::QueueShapes::new()),
            writes: AtomicU64::new(0),
        });
        let worker = if B::BLOCKING {
            Worker::start(Arc::clone(&shared)).map(Arc::new)
        } else {
            None
        };
        Self { worker, shared }
    }

    /// How many atomic writes the backend has made since the store opened (failed ones
    /// included): one per commit, or one for the commits of many sessions that reached the
    /// store together. With many clients on one store, commits divided by writes says how
    /// many commits share each `fdatasync`.
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    /// The backend, for tools and tests that work below the session layer.
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// Where the store's thread takes its jobs; `None` when calls run inline.
    fn jobs(&self) -> Option<&std::sync::mpsc::Sender<Job<B>>> {
        self.worker.as_ref().and_then(|w| w.jobs())
    }

    /// Runs `f` on the backend: on the store's thread when the backend blocks.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared<B>) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(jobs) = self.jobs() else {
            return f(&self.shared);
        };
        let (reply, answer) = futures_channel::oneshot::channel();
        let job = Job::Call(Box::new(move |shared: &Shared<B>| {
            let _ = reply.send(f(shared));
        }));
        jobs.send(job).map_err(|_| worker_gone(B::NAME))?;
        answer.await.map_err(|_| worker_gone(B::NAME))?
    }

    /// One attempt to own `key`'s session. If the caller gives up while the attempt runs and
    /// it wins, the session is handed back at once: nobody would use or release it otherwise,
    /// and the lease would keep another process out.
    async fn try_acquire(&self, key: &SessionKey) -> Result<Acquired, StoreError> {
        let Some(jobs) = self.jobs() else {
            return self.shared.try_acquire(key);
        };
        let key = key.clone();
        let (reply, answer) = futures_channel::oneshot::channel();
        let job = Job::Call(Box::new(move |shared: &Shared<B>| {
            // `send` gives the answer back when the receiver is gone.
            if let Err(Ok(Acquired::Won)) = reply.send(shared.try_acquire(&key)) {
                let _ = shared.backend.release(&key);
            }
        }));
        jobs.send(job).map_err(|_| worker_gone(B::NAME))?;
        answer.await.map_err(|_| worker_gone(B::NAME))?
    }
}

/// Waits `wait` without a runtime: the core depends on none. A thread sleeps and wakes the
/// caller; a waiting standby naps a few times per lease, so a thread per nap costs nothing
/// that matters, and a caller that gives up simply stops listening.
async fn nap(wait: Duration, backend: &'static str) -> Result<(), StoreError> {
    let (wake, woken) = futures_channel::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("mooring-store-nap".to_owned())
        .spawn(move || {
            std::thread::sleep(wait);
            let _ = wake.send(());
        })
        .map_err(|e| StoreError::Backend {
            backend,
            message: format!("cannot start a thread to wait for the session's owner: {e}"),
            source: None,
        })?;
    let _ = woken.await;
    Ok(())
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
    async fn resume(
        &self,
        key: &SessionKey,
        head: QueueWindow,
    ) -> Result<StoredSession, StoreError> {
        let key = key.clone();
        self.run(move |s| s.resume(&key, head)).await
    }

    async fn read_queue(
        &self,
        key: &SessionKey,
        from: u64,
        window: QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
        let key = key.clone();
        self.run(move |s| s.read_queue(&key, from, window)).await
    }

    async fn read_class_queue(
        &self,
        key: &SessionKey,
        class: u8,
        from: u64,
        window: QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
        let key = key.clone();
        self.run(move |s| s.read_class_queue(&key, class, from, window))
            .await
    }

    async fn commit(&self, key: &SessionKey, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return self.shared.check_writable();
        }
        let Some(jobs) = self.jobs() else {
            return self.shared.commit(key, &batch);
        };
        let (reply, answer) = futures_channel::oneshot::channel();
        let key = key.clone();
        jobs.send(Job::Commit { key, batch, reply })
            .map_err(|_| worker_gone(B::NAME))?;
        answer.await.map_err(|_| worker_gone(B::NAME))?
    }

    async fn clear(&self, key: &SessionKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |s| s.clear(&key)).await
    }

    async fn commit_sessions(&self, batches: Vec<(SessionKey, Batch)>) -> Result<(), StoreError> {
        if batches.iter().all(|(_, batch)| batch.is_empty()) {
            return self.shared.check_writable();
        }
        self.run(move |s| s.commit_sessions(&batches)).await
    }

    fn storage_id(&self) -> Option<usize> {
        // The state its clones share: one per store opened.
        Some(Arc::as_ptr(&self.shared).cast::<()>() as usize)
    }

    async fn sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
        self.run(|s| s.sessions()).await
    }

    async fn sessions_of(&self, client_id: &str) -> Result<Vec<SessionKey>, StoreError> {
        let client_id = client_id.to_owned();
        self.run(move |s| s.sessions_of(&client_id)).await
    }

    async fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError> {
        self.run(move |s| s.purge_expired(now_ms)).await
    }

    fn is_shared(&self) -> bool {
        B::SHARED
    }

    async fn clock_ms(&self) -> Result<Option<u64>, StoreError> {
        self.run(|s| s.backend.clock_ms()).await
    }

    async fn acquire(&self, key: &SessionKey) -> Result<(), StoreError> {
        loop {
            match self.try_acquire(key).await? {
                Acquired::Owned | Acquired::Won => return Ok(()),
                Acquired::HeldFor(wait) => nap(wait, B::NAME).await?,
            }
        }
    }

    async fn release(&self, key: &SessionKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |s| s.backend.release(&key)).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.run(|s| s.backend.close()).await
    }

    async fn check_owner(&self, key: &SessionKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |s| s.backend.check_owner(&key)).await
    }

    fn owned_until(&self, key: &SessionKey) -> Option<std::time::Instant> {
        self.shared.backend.owned_until(key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
