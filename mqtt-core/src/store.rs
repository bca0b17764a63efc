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
//! (`mqtt_core::conformance`, feature `conformance`) checks in full:
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
//! - [`SessionStore::load`] returns outbound records and the queue in ascending sequence number
//!   (the engine assigns sequence numbers in the order things happen, so this is the order they
//!   were stored, however 16-bit packet identifiers wrap), and inbound markers in ascending
//!   packet identifier.
//! - Sessions never see each other's records, whatever their keys (`"a"` and `"ab"` are two
//!   sessions).
//! - A record that cannot be read is a [`StoreError::Corrupt`] naming the session and the
//!   record; never a panic, never wrong data, never a record silently skipped.
//!
//! Key-value backends can use [`layout`], which maps sessions and records to ordered byte keys
//! and checksummed, versioned values; the memory, redb and sled stores all do.

mod kv;
pub mod layout;
mod maintenance;
mod set_aside;

pub use kv::{Entries, KvBackend, KvOpen, KvStore};
pub use maintenance::{HeldMessages, Tidied, move_session, tidy_sessions};
pub use set_aside::{SetAside, open_or_set_aside};

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::packet::{ProtocolVersion, QoS};

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

/// What a session knows about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionMeta {
    /// The Session Expiry Interval in force, in seconds; `0xFFFF_FFFF` never expires.
    pub session_expiry_interval: u32,
    /// When the last connection ended, in milliseconds since the UNIX epoch; `None` while a
    /// connection is up or before the first one.
    pub disconnected_at_ms: Option<u64>,
    /// The client identifier the server assigned, when the client sent none.
    pub assigned_client_id: Option<String>,
    /// While a connection is up: a time (milliseconds since the UNIX epoch) by which the
    /// server will have noticed the connection gone if the process dies now, without a word
    /// (SIGKILL, power loss). The session therefore expires on the server no earlier than
    /// this plus the expiry interval; the engine moves it forward while the process lives.
    pub alive_until_ms: Option<u64>,
    /// The protocol the session speaks: a session is never resumed with the other one.
    pub protocol: ProtocolVersion,
}

impl SessionMeta {
    /// Whether the session has expired at `now_ms` (milliseconds since the UNIX epoch): its
    /// connection ended and the expiry interval has passed since.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        if self.session_expiry_interval == u32::MAX {
            return false;
        }
        let lifetime = u64::from(self.session_expiry_interval) * 1000;
        // A connection that ended cleanly says when; one the process never saw end (a kill
        // while connected) ended before `alive_until_ms` at the latest. Without either, the
        // session's end is unknown and it is kept.
        match self.disconnected_at_ms.or(self.alive_until_ms) {
            Some(ended) => now_ms >= ended.saturating_add(lifetime),
            None => false,
        }
    }
}

/// An outbound QoS 1/2 flow not yet complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundRecord {
    /// A PUBLISH sent (or about to be) and not yet acknowledged, in MQTT wire format, with its
    /// packet identifier and its full topic (never a topic alias).
    Publish(Bytes),
    /// PUBREC arrived for this packet identifier: PUBREL is (re)sent until PUBCOMP arrives.
    PubRel {
        /// The packet identifier.
        packet_id: u16,
    },
}

/// A message accepted while no packet identifier could be given (no connection, or no send
/// quota): it waits in FIFO order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPublish {
    /// The QoS it is to be sent at.
    pub qos: QoS,
    /// The PUBLISH in MQTT wire format, encoded at QoS 0 so that it carries no packet
    /// identifier; the engine sets QoS and identifier when it sends it.
    pub packet: Bytes,
    /// When its Message Expiry Interval runs out (milliseconds since the UNIX epoch), if it
    /// has one: it is sent with what remains of it, and never after.
    pub expires_at_ms: Option<u64>,
}

/// One change to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Replace the session's metadata.
    SetMeta(SessionMeta),
    /// Store an outbound record under sequence number `seq` (replacing what is there).
    PutOutbound {
        /// The sequence number: the engine's order of events.
        seq: u64,
        /// The record.
        record: OutboundRecord,
    },
    /// Remove the outbound record with sequence number `seq`.
    RemoveOutbound {
        /// The sequence number.
        seq: u64,
    },
    /// Mark an inbound QoS 2 PUBLISH as acknowledged with PUBREC.
    PutInbound {
        /// Its packet identifier.
        packet_id: u16,
    },
    /// Remove the PUBREC marker (PUBREL arrived).
    RemoveInbound {
        /// Its packet identifier.
        packet_id: u16,
    },
    /// Append a message to the offline queue under sequence number `seq`.
    PushQueue {
        /// The sequence number.
        seq: u64,
        /// The message.
        message: QueuedPublish,
    },
    /// Remove a message from the offline queue.
    RemoveQueue {
        /// The sequence number.
        seq: u64,
    },
    /// Keep a subscription the server granted, to make again when the server loses the
    /// session (replacing one with the same filter).
    PutSubscription(StoredSubscription),
    /// Forget the subscription with this Topic Filter.
    RemoveSubscription {
        /// The Topic Filter.
        filter: String,
    },
}

/// A subscription kept with the session: its Topic Filter, and a SUBSCRIBE packet in MQTT wire
/// format that makes it again (the filter with its options, and the request's Subscription
/// Identifier and User Properties). Stores keep the packet as bytes and never parse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The Topic Filter: the record's identity (one record per filter).
    pub filter: String,
    /// The SUBSCRIBE, as the engine encoded it.
    pub packet: Bytes,
}

/// Operations committed together, atomically and durably, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    ops: Vec<StoreOp>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an operation.
    pub fn push(&mut self, op: StoreOp) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[StoreOp] {
        &self.ops
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends every operation of `other`, after this batch's own.
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
}

impl From<Vec<StoreOp>> for Batch {
    fn from(ops: Vec<StoreOp>) -> Self {
        Self { ops }
    }
}

impl FromIterator<StoreOp> for Batch {
    fn from_iter<I: IntoIterator<Item = StoreOp>>(iter: I) -> Self {
        Self {
            ops: iter.into_iter().collect(),
        }
    }
}

/// Everything stored for one session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredSession {
    /// The metadata, if it was ever set.
    pub meta: Option<SessionMeta>,
    /// Outbound flows, in ascending sequence number.
    pub outbound: Vec<(u64, OutboundRecord)>,
    /// Packet identifiers of inbound QoS 2 messages answered with PUBREC, ascending.
    pub inbound: Vec<u16>,
    /// The offline queue, in ascending sequence number (FIFO).
    pub queue: Vec<(u64, QueuedPublish)>,
    /// The subscriptions, in ascending order of their filters' bytes.
    pub subscriptions: Vec<StoredSubscription>,
}

impl StoredSession {
    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.meta.is_none()
            && self.outbound.is_empty()
            && self.inbound.is_empty()
            && self.queue.is_empty()
            && self.subscriptions.is_empty()
    }

    /// The next unused sequence number: one above the highest stored.
    pub fn next_seq(&self) -> u64 {
        let outbound = self.outbound.last().map(|(seq, _)| *seq);
        let queue = self.queue.last().map(|(seq, _)| *seq);
        outbound.max(queue).map_or(0, |seq| seq.saturating_add(1))
    }
}

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A stored record cannot be read. Nothing was returned for the session.
    #[error(
        "the record {record} of session {session} cannot be read ({reason}); the store is \
         damaged: restore it from a backup, or clear this session to start it anew"
    )]
    Corrupt {
        /// The session, as well as it could be read.
        session: String,
        /// Which record.
        record: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An earlier commit failed; the store accepts no writes until it is opened again.
    #[error(
        "an earlier commit failed ({cause}); the store refuses writes until it is reopened, \
         and nothing after that failure was acknowledged"
    )]
    Poisoned {
        /// What the failed commit reported.
        cause: String,
    },
    /// The session to write holds records already (see [`move_session`]).
    #[error("session {session} holds records already; clear it first or pick another")]
    Occupied {
        /// The session.
        session: String,
    },
    /// The store at `path` could not be opened. `damaged` says the file itself is unreadable
    /// (not a store, truncated, corrupted), as opposed to the system refusing it (permissions,
    /// a missing directory, a full disk); only a damaged store may be set aside
    /// ([`open_or_set_aside`]).
    #[error("cannot open the store at {path}: {cause}{}", if *damaged { " (the file is damaged)" } else { "" })]
    Open {
        /// The file or directory.
        path: String,
        /// Why, in the backend's words.
        cause: String,
        /// Whether the file is damaged.
        damaged: bool,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Another process holds the store open.
    #[error(
        "the store at {path} is open in another process; stop that process or use another path"
    )]
    Locked {
        /// Where the store is.
        path: String,
    },
    /// The backend reported an error (I/O, a full disk, a damaged file).
    #[error("{backend} failed: {message}")]
    Backend {
        /// Which store.
        backend: &'static str,
        /// What happened.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// The store at `path` cannot be opened because of `source`; `damaged` as in
    /// [`StoreError::Open`].
    pub fn open(
        path: &std::path::Path,
        damaged: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        let source = source.into();
        Self::Open {
            path: path.display().to_string(),
            cause: source.to_string(),
            damaged,
            source: Some(source),
        }
    }

    /// A backend error with its source.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        let source = source.into();
        Self::Backend {
            backend,
            message: source.to_string(),
            source: Some(source),
        }
    }
}

/// Durable storage of sessions. See the [module documentation](self) for the contract.
///
/// Methods take `&self` and may be called from many tasks at once; a store orders commits to
/// the same session itself. Stores that block (file I/O) do so off the async worker threads.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Everything stored for `key`; an empty [`StoredSession`] if there is nothing.
    async fn load(&self, key: &SessionKey) -> Result<StoredSession, StoreError>;

    /// Applies `batch` to the session `key`, atomically and durably.
    async fn commit(&self, key: &SessionKey, batch: Batch) -> Result<(), StoreError>;

    /// Removes everything stored for `key`.
    async fn clear(&self, key: &SessionKey) -> Result<(), StoreError>;

    /// The keys of all sessions that hold at least one record, in no particular order.
    async fn sessions(&self) -> Result<Vec<SessionKey>, StoreError>;

    /// Removes every session whose metadata says it expired at `now_ms` (milliseconds since
    /// the UNIX epoch, see [`SessionMeta::is_expired`]) and returns their keys.
    async fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError>;
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
            async fn commit(&self, key: &SessionKey, batch: Batch) -> Result<(), StoreError> {
                (**self).commit(key, batch).await
            }
            async fn clear(&self, key: &SessionKey) -> Result<(), StoreError> {
                (**self).clear(key).await
            }
            async fn sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
                (**self).sessions().await
            }
            async fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError> {
                (**self).purge_expired(now_ms).await
            }
        }
    };
}

forward_session_store!(std::sync::Arc);
forward_session_store!(Box);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let meta = |interval, ended| SessionMeta {
            session_expiry_interval: interval,
            disconnected_at_ms: ended,
            assigned_client_id: None,
            alive_until_ms: None,
            protocol: ProtocolVersion::V5,
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
            },
        ));
        assert_eq!(s.next_seq(), 8);
    }
}
