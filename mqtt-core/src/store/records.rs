//! The records a session is made of, the changes a commit applies to them, and how much of
//! the queue a read returns.

use bytes::Bytes;

use super::SessionMeta;
use crate::packet::QoS;

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
    /// When the application's publish was accepted (milliseconds since the UNIX epoch), for
    /// operators asking how old a queue is; `None` in records written before it was kept.
    pub accepted_at_ms: Option<u64>,
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
    /// Append a message to the queue of priority class `class` (1 to 255; class 0 is the
    /// offline queue of [`StoreOp::PushQueue`]) under sequence number `seq`, one numbering
    /// with the offline queue's.
    PushClassQueue {
        /// The priority class.
        class: u8,
        /// The sequence number.
        seq: u64,
        /// The message.
        message: QueuedPublish,
    },
    /// Remove a message from the queue of priority class `class`.
    RemoveClassQueue {
        /// The priority class.
        class: u8,
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
    /// Remember the idempotency key of a message the application handled, under `seq` (the
    /// subscriber's own numbering of the keys it keeps, oldest first).
    PutSeenKey {
        /// The key's number.
        seq: u64,
        /// The key.
        seen: SeenKey,
    },
    /// Forget the key numbered `seq`.
    RemoveSeenKey {
        /// The key's number.
        seq: u64,
    },
    /// Record which queued message holds the one value kept of a latest-value topic
    /// (replacing the topic's record).
    PutLatestValue(LatestValue),
    /// Forget the latest-value record of `topic` (its value left the queue).
    RemoveLatestValue {
        /// The topic.
        topic: String,
    },
}

/// The queued message that holds the only value kept of a topic whose older values are
/// dropped when a newer one is queued (latest-value compaction). The record exists only while
/// that message waits unsent, so a session resumed from the store knows which value a new one
/// replaces, however deep in the queue it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestValue {
    /// The topic (the record's identity: one record per topic).
    pub topic: String,
    /// The queued message's sequence number.
    pub seq: u64,
    /// The priority class of the queue it waits in (0: the offline queue).
    pub class: u8,
    /// Its stored size (the length of its queue record's packet), so that the queue's
    /// totals stay exact when it is dropped unread.
    pub len: u64,
}

/// The idempotency key of a message the application handled (see
/// `mooring_core::idempotency`): a copy that arrives again under it is acknowledged and not
/// handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenKey {
    /// The key, as the message carried it.
    pub key: String,
    /// When the application handled it (milliseconds since the UNIX epoch, the session's
    /// clock): keys older than the subscriber keeps them for are forgotten.
    pub seen_at_ms: u64,
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

    /// Moves every operation of `other` after this batch's own, leaving `other` empty (with
    /// its memory, for reuse).
    pub fn append(&mut self, other: &mut Batch) {
        self.ops.append(&mut other.ops);
    }

    /// Removes every operation, keeping the memory.
    pub fn clear(&mut self) {
        self.ops.clear();
    }

    /// Keeps only the operations `keep` accepts, in order.
    pub fn retain(&mut self, keep: impl FnMut(&StoreOp) -> bool) {
        self.ops.retain(keep);
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

/// How much of the offline queue one read returns: records in ascending sequence number, at
/// most `messages` of them, and no more than `bytes` of their packets, except that the first
/// record comes whatever its size (so a read with `messages` above 0 always makes progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueWindow {
    /// At most this many records.
    pub messages: usize,
    /// At most this many bytes of packets, after the first record.
    pub bytes: usize,
}

impl QueueWindow {
    /// The whole queue.
    pub const ALL: Self = Self {
        messages: usize::MAX,
        bytes: usize::MAX,
    };

    /// No record: only the [`QueueSummary`].
    pub const NONE: Self = Self {
        messages: 0,
        bytes: 0,
    };

    /// At most `messages` records and `bytes` bytes of packets.
    pub const fn new(messages: usize, bytes: usize) -> Self {
        Self { messages, bytes }
    }

    /// Whether a read that has taken `taken` records of `taken_bytes` bytes also takes a
    /// record whose packet is `next` bytes long.
    pub fn admits(&self, taken: usize, taken_bytes: usize, next: usize) -> bool {
        taken < self.messages && (taken == 0 || taken_bytes.saturating_add(next) <= self.bytes)
    }
}

/// The whole offline queue of a session in numbers, kept exact by the store so that no one
/// reads millions of records to count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSummary {
    /// How many messages are queued.
    pub messages: u64,
    /// The sum of their packets' lengths ([`QueuedPublish::packet`]).
    pub bytes: u64,
    /// The highest sequence number among them; `None` when the queue is empty.
    pub last_seq: Option<u64>,
}

impl QueueSummary {
    /// The summary of a whole queue held in memory.
    pub fn of(queue: &[(u64, QueuedPublish)]) -> Self {
        Self {
            messages: queue.len() as u64,
            bytes: queue.iter().map(|(_, q)| q.packet.len() as u64).sum(),
            last_seq: queue.iter().map(|(seq, _)| *seq).max(),
        }
    }
}

/// Everything stored for one session, or, from [`SessionStore::resume`](super::SessionStore::resume), everything but the
/// queue beyond its head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredSession {
    /// The metadata, if it was ever set.
    pub meta: Option<SessionMeta>,
    /// Outbound flows, in ascending sequence number.
    pub outbound: Vec<(u64, OutboundRecord)>,
    /// Packet identifiers of inbound QoS 2 messages answered with PUBREC, ascending.
    pub inbound: Vec<u16>,
    /// The offline queue, in ascending sequence number (FIFO): all of it, or its head when
    /// a [`QueueWindow`] limited the read.
    pub queue: Vec<(u64, QueuedPublish)>,
    /// The whole queue, however much of it `queue` holds.
    pub queue_summary: QueueSummary,
    /// The subscriptions, in ascending order of their filters' bytes.
    pub subscriptions: Vec<StoredSubscription>,
    /// The idempotency keys of messages handled, in ascending number (oldest first).
    pub seen_keys: Vec<(u64, SeenKey)>,
    /// The latest-value records, in ascending order of their topics' bytes.
    pub latest_values: Vec<LatestValue>,
    /// The queues of the priority classes above 0 that hold messages, in ascending class:
    /// each whole, or its head when a [`QueueWindow`] limited the read.
    pub class_queues: Vec<ClassQueue>,
}

/// The queue of one priority class above 0: messages of topics the application ranks above
/// the rest, sent before them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassQueue {
    /// The class (1 to 255).
    pub class: u8,
    /// Its messages, in ascending sequence number: all of them, or the head a
    /// [`QueueWindow`] admits.
    pub queue: Vec<(u64, QueuedPublish)>,
    /// The whole queue of the class, however much of it `queue` holds.
    pub summary: QueueSummary,
}

impl StoredSession {
    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.meta.is_none()
            && self.outbound.is_empty()
            && self.inbound.is_empty()
            && self.queue.is_empty()
            && self.queue_summary.messages == 0
            && self.subscriptions.is_empty()
            && self.seen_keys.is_empty()
            && self.latest_values.is_empty()
            && self.class_queues.is_empty()
    }

    /// The next unused sequence number: one above the highest stored.
    pub fn next_seq(&self) -> u64 {
        let outbound = self.outbound.last().map(|(seq, _)| *seq);
        let queue = self.queue.last().map(|(seq, _)| *seq);
        let classes = self
            .class_queues
            .iter()
            .filter_map(|class| {
                class
                    .summary
                    .last_seq
                    .max(class.queue.last().map(|(s, _)| *s))
            })
            .max();
        outbound
            .max(queue)
            .max(self.queue_summary.last_seq)
            .max(classes)
            .map_or(0, |seq| seq.saturating_add(1))
    }
}
