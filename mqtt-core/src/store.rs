//! Session storage: the [`SessionStore`] trait, what a session holds, and how a store fails.
//!
//! Everything the session engine must not forget across a crash goes through this trait: the
//! QoS 1/2 messages sent and not yet acknowledged, the QoS 2 messages received and acknowledged
//! with PUBREC, the offline queue, and the session's metadata. The engine never writes to a
//! store directly; it emits a [`Batch`] of [`StoreOp`]s, the driver commits it, and only then
//! do the packets that depend on it go on the wire.
//!
//! # Implementing a store
//!
//! A store keeps, for each [`SessionKey`], four kinds of record and applies a [`Batch`]
//! atomically and durably. The contract, which the conformance suite
//! (`mooring_core::conformance`, feature `conformance`) checks in full:
//!
//! - [`SessionStore::commit`] applies every operation of the batch, in order, or none of them,
//!   never a part. When it returns `Ok`, the batch survives the process being killed (and,
//!   where the backend promises it, power loss). Putting a record that exists replaces it;
//!   removing one that does not exist does nothing.
//! - When a commit fails, the batch was not acknowledged, and its fate is all or nothing but
//!   otherwise unknown: a sync that fails after the write may or may not have reached the disk,
//!   so after a restart the batch may be there. The store then refuses every later write with
//!   [`StoreError::Poisoned`] until it is opened again: after a failed fsync the file's state is
//!   unknown, and retrying as if nothing happened can acknowledge data that was lost.
//! - [`SessionStore::resume`] returns outbound records and the queue in ascending sequence
//!   number (the engine assigns sequence numbers in the order things happen, so this is the
//!   order they were stored, however 16-bit packet identifiers wrap), and inbound markers in
//!   ascending packet identifier. It returns only the head of the queue that fits the
//!   [`QueueWindow`] asked for, with a [`QueueSummary`] of the whole queue that is exact (the
//!   count and bytes of every queued record, the highest sequence number) without reading it;
//!   [`SessionStore::read_queue`] reads on from any sequence number, in the same order. A
//!   session's queue can therefore be far larger than memory: the engine holds a window of it.
//! - Sessions never see each other's records, whatever their keys (`"a"` and `"ab"` are two
//!   sessions).
//! - A record that cannot be read is a [`StoreError::Corrupt`] naming the session and the
//!   record; never a panic, never wrong data, never a record silently skipped.
//!
//! Key-value backends can use [`layout`], which maps sessions and records to ordered byte keys
//! and checksummed, versioned values; the memory, redb and sled stores all do.

mod error;
mod kv;
pub mod layout;
mod maintenance;
mod meta;
mod records;
mod set_aside;

pub use error::{StoreError, described};
pub use kv::{Acquired, Entries, KvBackend, KvOpen, KvStore, visit_map};
pub use maintenance::{HeldMessages, Tidied, move_session, stranded_sessions, tidy_sessions};
pub use meta::{ClockCorrection, SessionClock, SessionMeta};
pub use records::{
    Batch, ClassQueue, LatestValue, OutboundRecord, QueueSummary, QueueWindow, QueuedPublish,
    SeenKey, StoreOp, StoredSession, StoredSubscription,
};
pub use set_aside::{SetAside, open_or_set_aside};

use std::fmt;

use async_trait::async_trait;

/// Whose session: a server (or a cluster sharing session state) and a client identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    scope: SessionScope,
    client_id: String,
}

/// Where a session lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionScope {
    /// One server, named by its address (`mqtts://broker.example:8883`).
    Server(String),
    /// A cluster of servers that share session state, named by the user.
    Cluster(String),
}

impl SessionKey {
    /// The session of `client_id` on the server at `server`.
    pub fn new(server: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            scope: SessionScope::Server(server.into()),
            client_id: client_id.into(),
        }
    }

    /// The session of `client_id` in the same scope (server or cluster) as this one.
    pub fn with_client_id(&self, client_id: impl Into<String>) -> Self {
        Self {
            scope: self.scope.clone(),
            client_id: client_id.into(),
        }
    }

    /// The session of `client_id` on a cluster of servers that share session state.
    pub fn cluster(scope: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            scope: SessionScope::Cluster(scope.into()),
            client_id: client_id.into(),
        }
    }

    /// A key from its parts.
    pub fn from_parts(scope: SessionScope, client_id: impl Into<String>) -> Self {
        Self {
            scope,
            client_id: client_id.into(),
        }
    }

    /// The server or cluster.
    pub fn scope(&self) -> &SessionScope {
        &self.scope
    }

    /// The client identifier.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            SessionScope::Server(server) => write!(f, "client {:?} on {server}", self.client_id),
            SessionScope::Cluster(scope) => {
                write!(f, "client {:?} on cluster {scope}", self.client_id)
            }
        }
    }
}

/// Durable storage of sessions. See the [module documentation](self) for the contract.
///
/// Methods take `&self` and may be called from many tasks at once; a store orders commits to
/// the same session itself. Stores that block (file I/O) do so off the async worker threads.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Everything stored for `key`, the whole queue included; an empty [`StoredSession`] if
    /// there is nothing. For tools and tests: a client resumes with [`SessionStore::resume`],
    /// whose memory does not grow with the queue.
    async fn load(&self, key: &SessionKey) -> Result<StoredSession, StoreError> {
        self.resume(key, QueueWindow::ALL).await
    }

    /// What a client needs to resume `key`'s session: everything stored but the queue beyond
    /// the head that `head` admits, with the [`QueueSummary`] of the whole queue.
    async fn resume(
        &self,
        key: &SessionKey,
        head: QueueWindow,
    ) -> Result<StoredSession, StoreError>;

    /// Queued messages of `key`'s session from sequence number `from` on, in ascending
    /// sequence number, as many as `window` admits.
    async fn read_queue(
        &self,
        key: &SessionKey,
        from: u64,
        window: QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError>;

    /// Messages of the queue of priority class `class` (1 to 255) of `key`'s session from
    /// sequence number `from` on, in ascending sequence number, as many as `window` admits.
    /// The default refuses ([`StoreError::Unsupported`]): a store that keeps priority
    /// classes ([`StoreOp::PushClassQueue`]) overrides it, and the conformance suite checks
    /// it.
    async fn read_class_queue(
        &self,
        key: &SessionKey,
        class: u8,
        from: u64,
        window: QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
        let _ = (key, class, from, window);
        Err(StoreError::Unsupported {
            what: "keep priority classes",
        })
    }

    /// Applies `batch` to the session `key`, atomically and durably.
    async fn commit(&self, key: &SessionKey, batch: Batch) -> Result<(), StoreError>;

    /// Removes everything stored for `key`.
    async fn clear(&self, key: &SessionKey) -> Result<(), StoreError>;

    /// Applies the batches of several sessions as one commit: all of them or none, durably,
    /// each batch in order as [`commit`](Self::commit) applies it (two batches of one key
    /// apply one after the other). A client forwarding a message from one session to another
    /// (`Message::forward`) commits the copy it queues in one and the ack of the original in
    /// the other this way, so that after a crash either both happened or neither.
    ///
    /// The default commits a single batch with `commit` and refuses several with
    /// [`StoreError::Unsupported`]: a store that cannot write them in one transaction must
    /// not pretend to.
    async fn commit_sessions(&self, batches: Vec<(SessionKey, Batch)>) -> Result<(), StoreError> {
        let mut batches = batches.into_iter();
        match (batches.next(), batches.next()) {
            (None, _) => Ok(()),
            (Some((key, batch)), None) => self.commit(&key, batch).await,
            (Some(_), Some(_)) => Err(StoreError::Unsupported {
                what: "commit several sessions at once",
            }),
        }
    }

    /// Identifies the storage behind this handle: handles of one store (its clones, `Arc`s
    /// of it) answer the same, two stores open at once answer differently. A client forwards
    /// a message to another client in one commit only when both answer the same. `None` (the
    /// default): unknown, so no two handles count as one store.
    fn storage_id(&self) -> Option<usize> {
        None
    }

    /// The keys of all sessions that hold at least one record, in no particular order.
    async fn sessions(&self) -> Result<Vec<SessionKey>, StoreError>;

    /// The keys of `client_id`'s sessions that hold at least one record (one per server or
    /// cluster scope), in no particular order. A client asks this at every start, so a store
    /// of many sessions should answer without visiting them all; the default filters
    /// [`sessions`](Self::sessions).
    async fn sessions_of(&self, client_id: &str) -> Result<Vec<SessionKey>, StoreError> {
        let mut keys = self.sessions().await?;
        keys.retain(|key| key.client_id() == client_id);
        Ok(keys)
    }

    /// Whether processes on other machines use this store at the same time (a database): a
    /// client then touches no session but its own, and judges expiry by
    /// [`clock_ms`](Self::clock_ms). The default: no (an embedded store, one process's).
    fn is_shared(&self) -> bool {
        false
    }

    /// The store's own clock, in milliseconds since the UNIX epoch, where it has one that
    /// every process sharing it agrees on (a database's): expiry of sessions that other hosts
    /// stamped is judged by it rather than by this host's clock. The default: none.
    async fn clock_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Removes every session whose metadata says it expired at `now_ms` (milliseconds since
    /// the UNIX epoch, see [`SessionMeta::is_expired`]) and returns their keys. A session
    /// another process owns is left alone. On a shared store, pass the store's own clock
    /// ([`clock_ms`](Self::clock_ms)) where it has one, as [`tidy_sessions`] does.
    async fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError>;

    /// Makes this process the one owner of `key`'s session, waiting while another owns it.
    ///
    /// Cancel safety: dropping the future stops the wait at once, and a session won just as
    /// the caller gave up is handed back rather than held by nobody's use.
    ///
    /// A store that several machines reach (a database) lets one process at a time write a
    /// session: taking ownership fences the previous owner, whose writes and
    /// [`check_owner`](Self::check_owner) then fail with [`StoreError::Fenced`]. The client
    /// acquires each session before it resumes it. An embedded store, which one process at a
    /// time can open at all, owns every session already: the default does nothing.
    async fn acquire(&self, _key: &SessionKey) -> Result<(), StoreError> {
        Ok(())
    }

    /// Hands `key`'s session on: a store shared by several processes lets another take it at
    /// once, without waiting for a lease to lapse. Writing to it again needs
    /// [`acquire`](Self::acquire) first. The client calls it when it stops, after its last
    /// commit. The default does nothing.
    ///
    /// Cancel safety: dropping the future may leave the session owned until its lease lapses.
    async fn release(&self, _key: &SessionKey) -> Result<(), StoreError> {
        Ok(())
    }

    /// Releases every session this process owns and ends what the store runs in the
    /// background, waiting for both: after it, a standby takes over without waiting, and the
    /// store accepts no more writes (they fail with [`StoreError::Closed`]). Dropping the
    /// store does the same, in the background where waiting would block an async thread;
    /// call this when the process is about to exit. The default does nothing.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Confirms, with the store itself, that this process still owns `key`'s session:
    /// [`StoreError::Fenced`] if another took it over. The client calls it before every
    /// CONNECT, so that a fenced process never takes the client identifier back.
    async fn check_owner(&self, _key: &SessionKey) -> Result<(), StoreError> {
        Ok(())
    }

    /// Until when this process is sure to own `key`'s session without asking the store
    /// again: `None` when ownership never lapses (the default, for embedded stores). The
    /// client writes nothing to the server once this instant has passed, until
    /// [`check_owner`](Self::check_owner) has confirmed ownership, so that a process frozen
    /// past its lease sends nothing when it wakes.
    fn owned_until(&self, _key: &SessionKey) -> Option<std::time::Instant> {
        None
    }
}

/// Forwards the trait through a smart pointer, so `Arc<dyn SessionStore>` and
/// `Box<dyn SessionStore>` are stores too.
macro_rules! forward_session_store {
    ($($pointer:ident)::+) => {
        #[async_trait]
        impl<S: SessionStore + ?Sized> SessionStore for $($pointer)::+<S> {
            async fn load(&self, key: &SessionKey) -> Result<StoredSession, StoreError> {
                (**self).load(key).await
            }
            async fn resume(
                &self,
                key: &SessionKey,
                head: QueueWindow,
            ) -> Result<StoredSession, StoreError> {
                (**self).resume(key, head).await
            }
            async fn read_queue(
                &self,
                key: &SessionKey,
                from: u64,
                window: QueueWindow,
            ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
                (**self).read_queue(key, from, window).await
            }
            async fn read_class_queue(
                &self,
                key: &SessionKey,
                class: u8,
                from: u64,
                window: QueueWindow,
            ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
                (**self).read_class_queue(key, class, from, window).await
            }
            async fn commit(&self, key: &SessionKey, batch: Batch) -> Result<(), StoreError> {
                (**self).commit(key, batch).await
            }
            async fn clear(&self, key: &SessionKey) -> Result<(), StoreError> {
                (**self).clear(key).await
            }
            async fn commit_sessions(
                &self,
                batches: Vec<(SessionKey, Batch)>,
            ) -> Result<(), StoreError> {
                (**self).commit_sessions(batches).await
            }
            fn storage_id(&self) -> Option<usize> {
                (**self).storage_id()
            }
            async fn sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
                (**self).sessions().await
            }
            async fn sessions_of(&self, client_id: &str) -> Result<Vec<SessionKey>, StoreError> {
                (**self).sessions_of(client_id).await
            }
            async fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError> {
                (**self).purge_expired(now_ms).await
            }
            fn is_shared(&self) -> bool {
                (**self).is_shared()
            }
            async fn clock_ms(&self) -> Result<Option<u64>, StoreError> {
                (**self).clock_ms().await
            }
            async fn acquire(&self, key: &SessionKey) -> Result<(), StoreError> {
                (**self).acquire(key).await
            }
            async fn release(&self, key: &SessionKey) -> Result<(), StoreError> {
                (**self).release(key).await
            }
            async fn close(&self) -> Result<(), StoreError> {
                (**self).close().await
            }
            async fn check_owner(&self, key: &SessionKey) -> Result<(), StoreError> {
                (**self).check_owner(key).await
            }
            fn owned_until(&self, key: &SessionKey) -> Option<std::time::Instant> {
                (**self).owned_until(key)
            }
        }
    };
}

forward_session_store!(std::sync::Arc);
forward_session_store!(Box);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{ProtocolVersion, QoS};
    use bytes::Bytes;

    #[test]
    fn expiry() {
        let meta = |interval, ended| SessionMeta {
            session_expiry_interval: interval,
            disconnected_at_ms: ended,
            assigned_client_id: None,
            alive_until_ms: None,
            protocol: ProtocolVersion::V5,
            in_flight_limit: None,
            clock: Default::default(),
        };
        let killed = |interval, alive_until| SessionMeta {
            alive_until_ms: Some(alive_until),
            ..meta(interval, None)
        };
        // Killed while connected: expired once the expiry passed from the alive-until time.
        assert!(!killed(10, 5_000).is_expired(14_999));
        assert!(killed(10, 5_000).is_expired(15_000));
        // A clean end says exactly when; it wins over an older alive-until time.
        assert!(
            !SessionMeta {
                disconnected_at_ms: Some(9_000),
                ..killed(10, 5_000)
            }
            .is_expired(15_000)
        );
        assert!(!meta(10, None).is_expired(u64::MAX));
        assert!(!meta(10, Some(1_000)).is_expired(10_999));
        assert!(meta(10, Some(1_000)).is_expired(11_000));
        assert!(meta(0, Some(1_000)).is_expired(1_000));
        assert!(!meta(u32::MAX, Some(0)).is_expired(u64::MAX));
        assert!(!meta(u32::MAX - 1, Some(u64::MAX - 5)).is_expired(u64::MAX - 1));
    }

    #[test]
    fn next_seq_follows_the_highest_record() {
        let mut s = StoredSession::default();
        assert_eq!(s.next_seq(), 0);
        s.outbound
            .push((7, OutboundRecord::PubRel { packet_id: 1 }));
        s.queue.push((
            3,
            QueuedPublish {
                qos: QoS::AtLeastOnce,
                packet: Bytes::new(),
                expires_at_ms: None,
                accepted_at_ms: None,
            },
        ));
        assert_eq!(s.next_seq(), 8);
        // The queue's tail, beyond the head read, counts too.
        s.queue_summary.last_seq = Some(40);
        assert_eq!(s.next_seq(), 41);
    }

    #[test]
    fn a_window_always_admits_a_first_record_and_then_counts_bytes() {
        let w = QueueWindow::new(3, 100);
        assert!(w.admits(0, 0, 1_000), "the first, whatever its size");
        assert!(w.admits(1, 60, 40));
        assert!(!w.admits(1, 60, 41));
        assert!(!w.admits(3, 0, 0), "three at most");
        assert!(!QueueWindow::NONE.admits(0, 0, 0));
        assert!(QueueWindow::ALL.admits(usize::MAX - 1, usize::MAX, usize::MAX));
    }
}
