//! [`MemoryStore`]: the session store in memory, for tests and for applications that want
//! sessions only while the process lives.
//!
//! It keeps each session's records as they are given (the packets' `Bytes` shared, not
//! copied), with none of the encoding, checksums and keys a store on disk needs, and passes the
//! same conformance suite as the durable stores (but the checks of damaged records: nothing in
//! memory is damaged by a crash). It forgets everything when the last handle to its
//! [`MemoryBackend`] is dropped.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use mooring_core::store::{
    Batch, ClassQueue, LatestValue, OutboundRecord, QueueSummary, QueueWindow, QueuedPublish,
    SeenKey, SessionKey, SessionMeta, SessionStore, StoreError, StoreOp, StoredSession,
    StoredSubscription, described,
};

const NAME: &str = "memory store";

/// One session's records.
#[derive(Debug, Clone, Default)]
struct Records {
    meta: Option<SessionMeta>,
    outbound: BTreeMap<u64, OutboundRecord>,
    inbound: BTreeSet<u16>,
    queue: BTreeMap<u64, QueuedPublish>,
    /// The sum of the queued packets' lengths, kept with every change.
    queue_bytes: u64,
    /// By Topic Filter, whose byte order is `String`'s.
    subscriptions: BTreeMap<String, StoredSubscription>,
    seen_keys: BTreeMap<u64, SeenKey>,
    /// By topic, whose byte order is `String`'s.
    latest_values: BTreeMap<String, LatestValue>,
    /// The priority classes' queues, by class and sequence number.
    class_queues: BTreeMap<(u8, u64), QueuedPublish>,
}

impl Records {
    fn is_empty(&self) -> bool {
        self.meta.is_none()
            && self.outbound.is_empty()
            && self.inbound.is_empty()
            && self.queue.is_empty()
            && self.subscriptions.is_empty()
            && self.seen_keys.is_empty()
            && self.latest_values.is_empty()
            && self.class_queues.is_empty()
    }

    fn apply(&mut self, op: &StoreOp) {
        match op {
            StoreOp::SetMeta(meta) => self.meta = Some(meta.clone()),
            StoreOp::PutOutbound { seq, record } => {
                self.outbound.insert(*seq, record.clone());
            }
            StoreOp::RemoveOutbound { seq } => {
                self.outbound.remove(seq);
            }
            StoreOp::PutInbound { packet_id } => {
                self.inbound.insert(*packet_id);
            }
            StoreOp::RemoveInbound { packet_id } => {
                self.inbound.remove(packet_id);
            }
            StoreOp::PushQueue { seq, message } => {
                self.queue_bytes += message.packet.len() as u64;
                if let Some(old) = self.queue.insert(*seq, message.clone()) {
                    self.queue_bytes -= old.packet.len() as u64;
                }
            }
            StoreOp::RemoveQueue { seq } => {
                if let Some(old) = self.queue.remove(seq) {
                    self.queue_bytes -= old.packet.len() as u64;
                }
            }
            StoreOp::PutSubscription(subscription) => {
                self.subscriptions
                    .insert(subscription.filter.clone(), subscription.clone());
            }
            StoreOp::RemoveSubscription { filter } => {
                self.subscriptions.remove(filter);
            }
            StoreOp::PutSeenKey { seq, seen } => {
                self.seen_keys.insert(*seq, seen.clone());
            }
            StoreOp::RemoveSeenKey { seq } => {
                self.seen_keys.remove(seq);
            }
            StoreOp::PutLatestValue(latest) => {
                self.latest_values
                    .insert(latest.topic.clone(), latest.clone());
            }
            StoreOp::RemoveLatestValue { topic } => {
                self.latest_values.remove(topic);
            }
            StoreOp::PushClassQueue {
                class,
                seq,
                message,
            } => {
                self.class_queues.insert((*class, *seq), message.clone());
            }
            StoreOp::RemoveClassQueue { class, seq } => {
                self.class_queues.remove(&(*class, *seq));
            }
        }
    }

    /// The queue from `from` on, as much as `window` admits.
    fn queue_from(&self, from: u64, window: QueueWindow) -> Vec<(u64, QueuedPublish)> {
        take_window(self.queue.range(from..).map(|(seq, m)| (*seq, m)), window)
    }

    /// The queue of class `class` from `from` on, as much as `window` admits.
    fn class_queue_from(
        &self,
        class: u8,
        from: u64,
        window: QueueWindow,
    ) -> Vec<(u64, QueuedPublish)> {
        let records = self.class_queues.range((class, from)..=(class, u64::MAX));
        take_window(records.map(|((_, seq), m)| (*seq, m)), window)
    }

    /// Every class queue: its head within `head`, and its summary.
    fn class_queues(&self, head: QueueWindow) -> Vec<ClassQueue> {
        let classes: BTreeSet<u8> = self.class_queues.keys().map(|(class, _)| *class).collect();
        classes
            .into_iter()
            .map(|class| {
                let all = self.class_queue_from(class, 0, QueueWindow::ALL);
                ClassQueue {
                    class,
                    queue: self.class_queue_from(class, 0, head),
                    summary: QueueSummary::of(&all),
                }
            })
            .collect()
    }

    fn stored(&self, head: QueueWindow) -> StoredSession {
        StoredSession {
            meta: self.meta.clone(),
            outbound: self.outbound.iter().map(|(s, r)| (*s, r.clone())).collect(),
            inbound: self.inbound.iter().copied().collect(),
            queue: self.queue_from(0, head),
            queue_summary: QueueSummary {
                messages: self.queue.len() as u64,
                bytes: self.queue_bytes,
                last_seq: self.queue.last_key_value().map(|(seq, _)| *seq),
            },
            subscriptions: self.subscriptions.values().cloned().collect(),
            seen_keys: self
                .seen_keys
                .iter()
                .map(|(s, k)| (*s, k.clone()))
                .collect(),
            latest_values: self.latest_values.values().cloned().collect(),
            class_queues: self.class_queues(head),
        }
    }
}

/// The records, in order, as many as `window` admits.
fn take_window<'a>(
    records: impl Iterator<Item = (u64, &'a QueuedPublish)>,
    window: QueueWindow,
) -> Vec<(u64, QueuedPublish)> {
    let mut out = Vec::new();
    let mut taken_bytes = 0usize;
    for (seq, message) in records {
        if !window.admits(out.len(), taken_bytes, message.packet.len()) {
            break;
        }
        taken_bytes = taken_bytes.saturating_add(message.packet.len());
        out.push((seq, message.clone()));
    }
    out
}

type Sessions = HashMap<SessionKey, Records>;

/// The sessions behind [`MemoryStore`]. Clones share them, so a store built anew over a clone
/// of the backend sees everything committed before, as a reopened file would.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    sessions: Arc<Mutex<Sessions>>,
    fail_next_apply: Arc<AtomicBool>,
}

impl MemoryBackend {
    /// No sessions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next commit fail as a failing disk would, applying nothing. For tests of
    /// error handling.
    pub fn fail_next_commit(&self) {
        self.fail_next_apply.store(true, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding the lock cannot leave a session half-changed: a batch's ops
        // cannot fail, so nothing panics between the first and the last.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("sessions", &self.lock().len())
            .finish()
    }
}

/// The session store in memory. Clones share the same sessions and the same state (a commit
/// that failed refuses later writes through every clone); a store made anew over the same
/// [`MemoryBackend`] starts without that refusal, as a store reopened would.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    backend: MemoryBackend,
    /// The error of the first failed commit; once set, writes are refused.
    poisoned: Mutex<Option<String>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("backend", &self.inner.backend)
            .finish()
    }
}

impl MemoryStore {
    /// A store over `backend`'s sessions.
    pub fn new(backend: MemoryBackend) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                poisoned: Mutex::new(None),
            }),
        }
    }

    /// The sessions behind this store.
    pub fn backend(&self) -> &MemoryBackend {
        &self.inner.backend
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        match &*self
            .inner
            .poisoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some(cause) => Err(StoreError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Applies `batches` under one lock: all of them, or, when the commit fails, none.
    fn write(&self, batches: &[(&SessionKey, &Batch)]) -> Result<(), StoreError> {
        self.check_writable()?;
        if self
            .inner
            .backend
            .fail_next_apply
            .swap(false, Ordering::SeqCst)
        {
            let error = StoreError::backend(NAME, std::io::Error::other("injected write failure"));
            let mut poisoned = self
                .inner
                .poisoned
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            poisoned.get_or_insert_with(|| described(&error));
            return Err(error);
        }
        let mut sessions = self.inner.backend.lock();
        for (key, batch) in batches {
            let records = match sessions.get_mut(*key) {
                Some(records) => records,
                None => sessions.entry((*key).clone()).or_default(),
            };
            for op in batch.ops() {
                records.apply(op);
            }
            if records.is_empty() {
                sessions.remove(*key);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn resume(
        &self,
        key: &SessionKey,
        head: QueueWindow,
    ) -> Result<StoredSession, StoreError> {
        Ok(self
            .inner
            .backend
            .lock()
            .get(key)
            .map(|records| records.stored(head))
            .unwrap_or_default())
    }

    async fn read_class_queue(
        &self,
        key: &SessionKey,
        class: u8,
        from: u64,
        window: QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
        Ok(self
            .inner
            .backend
            .lock()
            .get(key)
            .map(|records| records.class_queue_from(class, from, window))
            .unwrap_or_default())
    }

    async fn read_queue(
        &self,
        key: &SessionKey,
        from: u64,
        window: QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
        Ok(self
            .inner
            .backend
            .lock()
            .get(key)
            .map(|records| records.queue_from(from, window))
            .unwrap_or_default())
    }

    async fn commit(&self, key: &SessionKey, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return self.check_writable();
        }
        self.write(&[(key, &batch)])
    }

    async fn clear(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.check_writable()?;
        self.inner.backend.lock().remove(key);
        Ok(())
    }

    async fn commit_sessions(&self, batches: Vec<(SessionKey, Batch)>) -> Result<(), StoreError> {
        if batches.iter().all(|(_, batch)| batch.is_empty()) {
            return self.check_writable();
        }
        let batches: Vec<(&SessionKey, &Batch)> = batches.iter().map(|(k, b)| (k, b)).collect();
        self.write(&batches)
    }

    fn storage_id(&self) -> Option<usize> {
        // The state its clones share: one per store made.
        Some(Arc::as_ptr(&self.inner).cast::<()>() as usize)
    }

    async fn sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
        Ok(self.inner.backend.lock().keys().cloned().collect())
    }

    async fn sessions_of(&self, client_id: &str) -> Result<Vec<SessionKey>, StoreError> {
        Ok(self
            .inner
            .backend
            .lock()
            .keys()
            .filter(|key| key.client_id() == client_id)
            .cloned()
            .collect())
    }

    async fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError> {
        self.check_writable()?;
        let mut sessions = self.inner.backend.lock();
        let expired: Vec<SessionKey> = sessions
            .iter()
            .filter(|(_, records)| records.meta.as_ref().is_some_and(|m| m.is_expired(now_ms)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            sessions.remove(key);
        }
        Ok(expired)
    }
}
