//! Fuzzes the session engine: the input is a script of server packets (raw bytes through the
//! decoder, or built to hit packet identifiers in use), application calls, connection losses,
//! the passing of time and crashes. Whatever the script, the engine never panics, stays within
//! its bounds, never sends a packet after DISCONNECT, always loads from what it committed, and
//! every QoS 1/2 message that reached the store is still stored or was reported finished, and
//! every packet it sends can be written by its own codec. The first byte picks the protocol
//! (odd: MQTT 3.1.1).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mooring_core::packet::{
    Codec, ConnAck, Decoded, Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode, SubscribeProperties,
    Subscription, UnsubscribeProperties,
};
use mooring_core::session::{Event, Session, SessionOptions};
use mooring_core::store::{
    Batch, OutboundRecord, QueueSummary, QueueWindow, QueuedPublish, SessionMeta, StoreOp,
    SeenKey, StoredSession, StoredSubscription,
};

const START_MS: u64 = 1_764_000_000_000;
const HELD_BYTES_LIMIT: usize = 4096;

/// What a store holds after the committed batches.
#[derive(Default)]
struct Store {
    meta: Option<SessionMeta>,
    outbound: BTreeMap<u64, OutboundRecord>,
    inbound: BTreeSet<u16>,
    queue: BTreeMap<u64, QueuedPublish>,
    subscriptions: BTreeMap<String, StoredSubscription>,
    seen_keys: BTreeMap<u64, SeenKey>,
    latest_values: BTreeMap<String, mooring_core::store::LatestValue>,
    /// The priority class of each queued message above class 0 (they share `queue`'s
    /// numbering; a store keeps them apart).
    class_of: BTreeMap<u64, u8>,
}

/// The packet identifier of a stored outbound record.
fn packet_id(record: &OutboundRecord) -> Option<u16> {
    match record {
        OutboundRecord::PubRel { packet_id } => Some(*packet_id),
        OutboundRecord::Publish(bytes) => match Codec::default().decode(&mut BytesMut::from(&bytes[..])) {
            Ok(Decoded::Packet(Packet::Publish(p))) => Some(p.packet_id),
            _ => None,
        },
    }
}

impl Store {
    /// Applies a batch; returns the QoS 1/2 messages it stored, each with the record it
    /// continues (a PUBREL record replaces its PUBLISH or queue record under a new number).
    fn apply(&mut self, batch: &Batch) -> Vec<(u64, Option<u64>)> {
        let mut stored = Vec::new();
        let mut removed: Vec<(u64, Option<u16>)> = Vec::new();
        for op in batch.ops() {
            match op.clone() {
                StoreOp::SetMeta(meta) => self.meta = Some(meta),
                StoreOp::PutOutbound { seq, record } => {
                    let continues = match &record {
                        // The PUBLISH record it replaces was removed just before it.
                        OutboundRecord::PubRel { packet_id } => removed
                            .iter()
                            .rev()
                            .find(|(_, id)| *id == Some(*packet_id))
                            .map(|(old, _)| *old),
                        OutboundRecord::Publish(_) => None,
                    };
                    stored.push((seq, continues));
                    self.outbound.insert(seq, record);
                }
                StoreOp::RemoveOutbound { seq } => {
                    if let Some(record) = self.outbound.remove(&seq) {
                        removed.push((seq, packet_id(&record)));
                    }
                }
                StoreOp::PutInbound { packet_id } => {
                    self.inbound.insert(packet_id);
                }
                StoreOp::RemoveInbound { packet_id } => {
                    self.inbound.remove(&packet_id);
                }
                StoreOp::PushQueue { seq, message } => {
                    if message.qos != QoS::AtMostOnce {
                        stored.push((seq, None));
                    }
                    self.queue.insert(seq, message);
                }
                StoreOp::PushClassQueue { class, seq, message } => {
                    if message.qos != QoS::AtMostOnce {
                        stored.push((seq, None));
                    }
                    self.queue.insert(seq, message);
                    self.class_of.insert(seq, class);
                }
                StoreOp::RemoveQueue { seq } | StoreOp::RemoveClassQueue { seq, .. } => {
                    self.class_of.remove(&seq);
                    // A message sent from the queue keeps its queue record until PUBREC, under
                    // the identifier its sequence number fixes.
                    if let Some(message) = self.queue.remove(&seq) {
                        let packet_id = (message.qos != QoS::AtMostOnce)
                            .then(|| u16::try_from(seq % 65_535 + 1).unwrap_or(0));
                        removed.push((seq, packet_id));
                    }
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
            }
        }
        stored
    }

    fn holds(&self, seq: u64) -> bool {
        self.outbound.contains_key(&seq) || self.queue.contains_key(&seq)
    }

    /// The QoS 1/2 messages stored now.
    fn messages(&self) -> impl Iterator<Item = u64> + '_ {
        let queued = self.queue.iter().filter(|(_, q)| q.qos != QoS::AtMostOnce);
        self.outbound.keys().chain(queued.map(|(seq, _)| seq)).copied()
    }

    /// What `resume` returns: the queue's head within `head`, and its summary.
    fn resumed(&self, head: QueueWindow) -> StoredSession {
        let whole = self.read_class(0, 0, QueueWindow::ALL);
        let classes: BTreeSet<u8> = self.class_of.values().copied().collect();
        let class_queues = classes
            .into_iter()
            .map(|class| mooring_core::store::ClassQueue {
                class,
                queue: self.read_class(class, 0, head),
                summary: QueueSummary::of(&self.read_class(class, 0, QueueWindow::ALL)),
            })
            .collect();
        StoredSession {
            meta: self.meta.clone(),
            outbound: self.outbound.clone().into_iter().collect(),
            inbound: self.inbound.iter().copied().collect(),
            queue_summary: QueueSummary::of(&whole),
            queue: self.read_class(0, 0, head),
            subscriptions: self.subscriptions.values().cloned().collect(),
            seen_keys: self.seen_keys.clone().into_iter().collect(),
            latest_values: self.latest_values.values().cloned().collect(),
            class_queues,
        }
    }

    /// The queue of `class` (0: the offline queue) from `from` on, as `window` admits.
    fn read_class(&self, class: u8, from: u64, window: QueueWindow) -> Vec<(u64, QueuedPublish)> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let of_class = |seq: &u64| self.class_of.get(seq).copied().unwrap_or(0) == class;
        for (seq, message) in self.queue.range(from..).filter(|(seq, _)| of_class(seq)) {
            if !window.admits(out.len(), bytes, message.packet.len()) {
                break;
            }
            bytes += message.packet.len();
            out.push((*seq, message.clone()));
        }
        out
    }
}

fn options(protocol: ProtocolVersion) -> SessionOptions {
    let mut options = SessionOptions::new("fuzz");
    options.protocol = protocol;
    options.manual_ack = true;
    options.held_bytes_limit = HELD_BYTES_LIMIT;
    options.properties.session_expiry_interval = Some(3600);
    options.properties.receive_maximum = Some(4);
    options.properties.topic_alias_maximum = Some(4);
    options.properties.maximum_packet_size = Some(2048);
    // A small window: queues spill to the store and are read back.
    options.queue_window = QueueWindow::new(3, 512);
    // One topic of a priority class: a queue of its own, read back apart.
    options.backlog.priorities = vec![("b/c".to_owned(), 1)];
    options
}

struct World {
    protocol: ProtocolVersion,
    session: Session,
    store: Store,
    now: Instant,
    now_ms: u64,
    connected: bool,
    /// Message tags the application still holds.
    tags: Vec<u64>,
    /// Store record → the message (as the engine names it) it holds: a PUBREL record holds
    /// the message of the PUBLISH record it replaced.
    message_of: BTreeMap<u64, u64>,
    /// Messages reported finished.
    finished: BTreeSet<u64>,
}

impl World {
    fn new(protocol: ProtocolVersion) -> Self {
        let now_ms = START_MS;
        Self {
            protocol,
            session: Session::new(options(protocol), StoredSession::default(), now_ms)
                .expect("a new session"),
            store: Store::default(),
            now: Instant::now(),
            now_ms,
            connected: false,
            tags: Vec::new(),
            message_of: BTreeMap::new(),
            finished: BTreeSet::new(),
        }
    }

    /// A rule the server broke: the connection ends, as the driver ends it.
    fn end(&mut self, reason: ReasonCode) {
        self.session.close_with(reason);
        self.flush();
        self.session.connection_lost(self.now_ms);
        self.connected = false;
    }

    fn incoming(&mut self, packet: Packet) {
        if let Err(violation) = self.session.handle_incoming(packet, self.now) {
            self.end(violation.reason_code());
        }
    }

    /// Commits and "sends" what the engine produced, and reads back the queue when asked (after
    /// committing everything polled, as the driver does).
    fn flush(&mut self) {
        loop {
            self.commit_and_send();
            let Some(read) = self.session.poll_queue_read() else {
                return;
            };
            let records = self.store.read_class(read.class, read.from, read.window);
            trace(&format!("read {read:?}: {} records", records.len()));
            if let Err(e) = self.session.queue_read(records) {
                panic!("the engine refused what its own store returned: {e}");
            }
        }
    }

    fn commit_and_send(&mut self) {
        while let Some(output) = self.session.poll_output(self.now) {
            trace(&format!(
                "early {:?}\ncommit {:?}\nsend {:?}",
                output.early,
                output.commit.ops(),
                output.send
            ));
            assert!(
                !output.early.iter().any(|p| matches!(p, Packet::Disconnect(_))),
                "DISCONNECT sent early"
            );
            for (seq, continues) in self.store.apply(&output.commit) {
                let message = continues
                    .and_then(|old| self.message_of.get(&old).copied())
                    .unwrap_or(seq);
                self.message_of.insert(seq, message);
            }
            if let Some(at) = output
                .send
                .iter()
                .position(|p| matches!(p, Packet::Disconnect(_)))
            {
                assert_eq!(at + 1, output.send.len(), "a packet after DISCONNECT");
            }
            // Whatever the engine sends, its codec can write (3.1.1 refuses v5-only forms).
            let codec = self.session.codec();
            for packet in output.early.iter().chain(&output.send) {
                if let Err(e) = codec.encode(packet, &mut BytesMut::new()) {
                    panic!("the engine sent what it cannot encode: {e}: {packet:?}");
                }
            }
            // Committed at once and written: as durable as it gets.
            self.session.durable(output.generation);
        }
    }

    fn events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            trace(&format!("event {event:?}"));
            match event {
                Event::Delivered { id, .. }
                | Event::Failed { id, .. }
                | Event::Expired { id, .. }
                | Event::Dropped { id, .. } => {
                    self.finished.insert(id);
                }
                Event::Message { tag, publish } if publish.qos != QoS::AtMostOnce => {
                    self.tags.push(tag)
                }
                _ => {}
            }
        }
    }

    fn check(&self) {
        assert!(self.session.held() <= usize::from(u16::MAX));
        let held: BTreeSet<u64> = self
            .message_of
            .iter()
            .filter(|(seq, _)| self.store.holds(**seq))
            .map(|(_, message)| *message)
            .collect();
        for message in self.message_of.values() {
            assert!(
                held.contains(message) || self.finished.contains(message),
                "message {message} left the store unreported"
            );
        }
    }

    fn crash(&mut self) {
        let stored = self.store.resumed(options(self.protocol).queue_window);
        self.session = Session::new(options(self.protocol), stored, self.now_ms)
            .expect("what the engine committed always loads");
        self.connected = false;
        self.tags.clear();
        // A new process: it answers for what the store holds now, named by record.
        self.message_of = self.store.messages().map(|seq| (seq, seq)).collect();
        self.finished.clear();
    }
}

/// With `FUZZ_TRACE` set, says what happens (to read a finding: `cargo fuzz run session FILE`).
fn trace(what: &str) {
    if std::env::var_os("FUZZ_TRACE").is_some() {
        eprintln!("{what}");
    }
}

fn qos(byte: u8) -> QoS {
    match byte % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fuzz_target!(|data: &[u8]| {
    let (protocol, data) = match data.split_first() {
        Some((first, rest)) if first & 1 == 1 => (ProtocolVersion::V311, rest),
        Some((_, rest)) => (ProtocolVersion::V5, rest),
        None => (ProtocolVersion::V5, data),
    };
    let mut world = World::new(protocol);
    let mut input = data.iter().copied();
    let mut next = move || input.next();
    while let Some(op) = next() {
        let arg = next().unwrap_or(0);
        trace(&format!("op {} arg {arg:#04x}", op % 12));
        match op % 12 {
            0 if !world.connected => {
                if world
                    .session
                    .start_connection(world.session.connect_credentials())
                    .is_err()
                {
                    continue;
                }
                world.flush();
                let mut connack = ConnAck::new(arg & 1 == 1);
                connack.properties.receive_maximum = Some(u16::from(arg >> 5) + 1);
                if arg & 2 == 2 {
                    connack.properties.maximum_packet_size = Some(64 + u32::from(arg) * 4);
                }
                if arg & 4 == 4 {
                    connack.properties.topic_alias_maximum = Some(2);
                }
                world.connected = true;
                world.incoming(Packet::ConnAck(Box::new(connack)));
            }
            1 => {
                // Raw bytes from the server, through the client's decoder.
                let len = usize::from(arg);
                let bytes: Vec<u8> = (0..len).filter_map(|_| next()).collect();
                let mut buf = BytesMut::from(&bytes[..]);
                loop {
                    match world.session.codec().decode(&mut buf) {
                        Ok(Decoded::Packet(packet)) => world.incoming(packet),
                        Ok(Decoded::Incomplete { .. }) => break,
                        Err(error) => {
                            world.end(error.violation.reason_code());
                            break;
                        }
                    }
                }
            }
            2 => {
                // A PUBLISH from the server with an identifier from a small range.
                let mut publish = Publish::new("in", Bytes::from(vec![0u8; usize::from(arg) * 8]));
                publish.qos = qos(arg);
                if publish.qos != QoS::AtMostOnce {
                    publish.packet_id = u16::from(arg % 8) + 1;
                    publish.dup = arg & 0x40 != 0;
                }
                world.incoming(Packet::Publish(publish));
            }
            3 => {
                // An acknowledgement from the server for an identifier from a small range.
                let mut ack = PubAck::new(u16::from(arg % 8) + 1);
                if arg & 0x80 != 0 {
                    ack.reason_code = ReasonCode::UnspecifiedError;
                }
                let packet = match (arg >> 3) % 4 {
                    0 => Packet::PubAck(ack),
                    1 => Packet::PubRec(ack),
                    2 => Packet::PubComp(ack),
                    _ => {
                        ack.reason_code = ReasonCode::Success;
                        Packet::PubRel(ack)
                    }
                };
                world.incoming(packet);
            }
            4 => {
                let mut publish = Publish::new(
                    ["a", "b/c", "d"][usize::from(arg % 3)],
                    Bytes::from(vec![1u8; usize::from(arg) * 4]),
                );
                publish.qos = qos(arg >> 2);
                publish.retain = arg & 0x10 != 0;
                if arg & 0x20 != 0 {
                    publish.properties.message_expiry_interval = Some(u32::from(arg % 5));
                }
                let _ = world.session.publish(publish);
            }
            5 if !world.tags.is_empty() => {
                let tag = world.tags.remove(usize::from(arg) % world.tags.len());
                let _ = if arg & 0x80 != 0 {
                    world.session.reject(tag, ReasonCode::UnspecifiedError)
                } else {
                    world.session.ack(tag)
                };
            }
            6 => world.flush(),
            7 if world.connected => {
                world.session.connection_lost(world.now_ms);
                world.connected = false;
            }
            8 => world.crash(),
            9 => {
                let secs = u64::from(arg);
                world.now += Duration::from_secs(secs);
                world.now_ms += secs * 1000;
                world.session.tick(world.now_ms);
                world.session.handle_timeout(world.now);
            }
            10 => {
                let filter = ["a/#", "b/+", "$share/g/c"][usize::from(arg % 3)].to_owned();
                let _ = if arg & 0x80 != 0 {
                    world
                        .session
                        .unsubscribe(vec![filter], UnsubscribeProperties::default())
                } else {
                    world.session.subscribe(
                        vec![Subscription::new(filter, qos(arg >> 2))],
                        SubscribeProperties::default(),
                    )
                };
            }
            11 => {
                let _ = world
                    .session
                    .disconnect(ReasonCode::Success, (arg & 1 == 1).then_some(60));
            }
            _ => {}
        }
        world.events();
        world.check();
    }
    world.flush();
    world.events();
    world.check();
});
