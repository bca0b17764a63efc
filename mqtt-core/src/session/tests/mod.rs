//! Unit tests of the engine, one per rule, named after it: the harness here, the tests by
//! concern in the files below.

mod aliases;
mod auth;
mod clock;
mod connection;
mod idempotency;
mod inbound;
mod lifecycle;
mod limits;
mod lost_session;
mod outbound;
mod reconnect;
mod subscriptions;
mod withdraw;

use std::collections::{BTreeMap, BTreeSet};

use crate::store::Batch;
use std::time::{Duration, Instant};

use crate::packet::{SubscribeProperties, Subscription, UnsubscribeProperties};

use super::*;
use crate::packet::*;
use crate::packet::{ConnAckProperties, PacketType, Publish};
use crate::store::StoreOp;
use crate::store::{QueuedPublish, StoredSubscription};

/// Wall-clock milliseconds used as "now" by the tests.
const NOW_MS: u64 = 1_764_000_000_000;

/// Options of a session that outlives its connections by an hour.
fn options() -> SessionOptions {
    let mut options = SessionOptions::new("c");
    options.properties.session_expiry_interval = Some(3600);
    options
}

/// What a store holds after committing the batches: the test's stand-in for a real store.
#[derive(Default)]
pub(super) struct Committed {
    meta: Option<SessionMeta>,
    outbound: BTreeMap<u64, OutboundRecord>,
    inbound: BTreeSet<u16>,
    queue: BTreeMap<u64, QueuedPublish>,
    subscriptions: BTreeMap<String, StoredSubscription>,
    seen_keys: BTreeMap<u64, crate::store::SeenKey>,
    pub(super) latest_values: BTreeMap<String, crate::store::LatestValue>,
    class_queues: BTreeMap<(u8, u64), QueuedPublish>,
}

impl Committed {
    pub(super) fn apply(&mut self, batch: &Batch) {
        for op in batch.ops() {
            match op.clone() {
                StoreOp::SetMeta(meta) => self.meta = Some(meta),
                StoreOp::PutOutbound { seq, record } => {
                    self.outbound.insert(seq, record);
                }
                StoreOp::RemoveOutbound { seq } => {
                    self.outbound.remove(&seq);
                }
                StoreOp::PutInbound { packet_id } => {
                    self.inbound.insert(packet_id);
                }
                StoreOp::RemoveInbound { packet_id } => {
                    self.inbound.remove(&packet_id);
                }
                StoreOp::PushQueue { seq, message } => {
                    self.queue.insert(seq, message);
                }
                StoreOp::RemoveQueue { seq } => {
                    self.queue.remove(&seq);
                }
                StoreOp::PutSubscription(subscription) => {
                    self.subscriptions
                        .insert(subscription.filter.clone(), subscription);
                }
                StoreOp::RemoveSubscription { filter } => {
                    self.subscriptions.remove(&filter);
                }
                StoreOp::PutSeenKey { seq, seen } => {
                    self.seen_keys.insert(seq, seen);
                }
                StoreOp::RemoveSeenKey { seq } => {
                    self.seen_keys.remove(&seq);
                }
                StoreOp::PutLatestValue(latest) => {
                    self.latest_values.insert(latest.topic.clone(), latest);
                }
                StoreOp::RemoveLatestValue { topic } => {
                    self.latest_values.remove(&topic);
                }
                StoreOp::PushClassQueue {
                    class,
                    seq,
                    message,
                } => {
                    self.class_queues.insert((class, seq), message);
                }
                StoreOp::RemoveClassQueue { class, seq } => {
                    self.class_queues.remove(&(class, seq));
                }
            }
        }
    }

    pub(super) fn stored(&self) -> StoredSession {
        let queue: Vec<(u64, QueuedPublish)> = self.queue.clone().into_iter().collect();
        StoredSession {
            meta: self.meta.clone(),
            outbound: self.outbound.clone().into_iter().collect(),
            inbound: self.inbound.iter().copied().collect(),
            queue_summary: crate::store::QueueSummary::of(&queue),
            queue,
            subscriptions: self.subscriptions.values().cloned().collect(),
            seen_keys: self.seen_keys.clone().into_iter().collect(),
            latest_values: self.latest_values.values().cloned().collect(),
            class_queues: self.class_queues(crate::store::QueueWindow::ALL),
        }
    }

    /// What a store's `resume` returns: the queue's head that `head` admits.
    pub(super) fn resumed(&self, head: crate::store::QueueWindow) -> StoredSession {
        StoredSession {
            queue: self.read_queue(0, head),
            class_queues: self.class_queues(head),
            ..self.stored()
        }
    }

    /// The class queues: each one's head that `head` admits, and its summary.
    fn class_queues(&self, head: crate::store::QueueWindow) -> Vec<crate::store::ClassQueue> {
        let classes: BTreeSet<u8> = self.class_queues.keys().map(|(c, _)| *c).collect();
        classes
            .into_iter()
            .map(|class| crate::store::ClassQueue {
                class,
                queue: self.read_class_queue(class, 0, head),
                summary: crate::store::QueueSummary::of(&self.read_class_queue(
                    class,
                    0,
                    crate::store::QueueWindow::ALL,
                )),
            })
            .collect()
    }

    /// What a store's `read_class_queue` returns.
    pub(super) fn read_class_queue(
        &self,
        class: u8,
        from: u64,
        window: crate::store::QueueWindow,
    ) -> Vec<(u64, QueuedPublish)> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for ((_, seq), message) in self.class_queues.range((class, from)..=(class, u64::MAX)) {
            if !window.admits(out.len(), bytes, message.packet.len()) {
                break;
            }
            bytes += message.packet.len();
            out.push((*seq, message.clone()));
        }
        out
    }

    /// What a store's `read_queue` returns.
    pub(super) fn read_queue(
        &self,
        from: u64,
        window: crate::store::QueueWindow,
    ) -> Vec<(u64, QueuedPublish)> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for (seq, message) in self.queue.range(from..) {
            if !window.admits(out.len(), bytes, message.packet.len()) {
                break;
            }
            bytes += message.packet.len();
            out.push((*seq, message.clone()));
        }
        out
    }
}

/// A session and the store it commits to, driven as a driver would.
struct Harness {
    session: Session,
    store: Committed,
}

impl Harness {
    fn new() -> Self {
        Self {
            session: Session::new(options(), StoredSession::default(), NOW_MS).unwrap(),
            store: Committed::default(),
        }
    }

    /// Commits what the session asks and returns the packets it then sends.
    fn flush(&mut self) -> Vec<Packet> {
        let mut sent = Vec::new();
        while let Some(output) = self.session.poll_output(Instant::now()) {
            sent.extend(output.early);
            self.store.apply(&output.commit);
            sent.extend(output.send);
            self.session.durable(output.generation);
        }
        sent
    }

    fn connack(&mut self, session_present: bool, receive_maximum: Option<u16>) -> Vec<Packet> {
        let mut connack = ConnAck::new(session_present);
        connack.properties = ConnAckProperties {
            receive_maximum,
            ..ConnAckProperties::default()
        };
        self.session
            .handle_connack(&connack, Instant::now())
            .unwrap();
        self.flush()
    }

    fn publish(&mut self, qos: QoS, payload: &'static str) -> PublishId {
        let mut p = Publish::new("t/1", payload);
        p.qos = qos;
        self.session.publish(p).unwrap()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    /// Rebuilds the session from what was committed, as after a crash.
    fn crash(&mut self) {
        self.session = Session::new(options(), self.store.stored(), NOW_MS).unwrap();
    }
}

fn publishes(sent: &[Packet]) -> Vec<(u16, bool, Bytes)> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.packet_id, p.dup, p.payload.clone())),
            _ => None,
        })
        .collect()
}
