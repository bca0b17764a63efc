//! Model-based property test of the engine: random sequences of application calls, server
//! behaviour, connection losses, reconnects and crashes, checked against invariants.
//!
//! The test plays the driver (it writes each [`Output`]'s early packets at once, commits the
//! output to an in-memory store while the next one is polled, then hands the rest of its
//! packets to the server), the server (a small model that answers as a broker would) and the
//! application (it publishes and acks). A crash rebuilds the engine from the committed records
//! alone; uncommitted output is lost, as it would be, even when a commit was in flight and
//! packets polled after it had gone out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use proptest::prelude::*;

use super::tests::Committed;
use super::*;
use crate::packet::ConnAckProperties;
use crate::packet::*;
use crate::store::QueueWindow;

const NOW_MS: u64 = 1_764_000_000_000;
/// The client's Receive Maximum.
const CLIENT_RECEIVE_MAXIMUM: u16 = 8;
/// How far the server model may go over the client's Receive Maximum, as mosquitto 2.0 does:
/// the engine holds the excess back from the application.
const SERVER_OVER_QUOTA: usize = 2;
/// The server allows two topic aliases, so that the model's topics compete for them.
const SERVER_TOPIC_ALIAS_MAXIMUM: u16 = 2;

#[derive(Debug, Clone)]
enum Action {
    Publish(bool),
    /// The driver commits and sends what the session made; `true`: the last commit is left in
    /// flight (a crash now loses it).
    Flush(bool),
    /// The server answers the n-th QoS 1/2 PUBLISH it holds unanswered; `bool`: with an error.
    ServerAnswersPublish(usize, bool),
    /// The server answers the n-th PUBREL it holds with PUBCOMP.
    ServerAnswersPubRel(usize),
    /// The server sends a new QoS 2 message.
    ServerSendsQos2,
    /// The server sends the n-th unanswered QoS 2 message again (DUP).
    ServerRedelivers(usize),
    /// The server sends PUBREL for the n-th message it got PUBREC for.
    ServerReleases(usize),
    /// The application acks the n-th message it holds.
    AppAcks(usize),
    /// The caller of the n-th publish not yet answered (not committed, or in the commit in
    /// flight) gives up: the driver withdraws it.
    Withdraw(usize),
    ConnectionLost,
    Reconnect {
        session_present: bool,
        receive_maximum: u16,
    },
    Crash,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => any::<bool>().prop_map(Action::Publish),
        4 => any::<bool>().prop_map(Action::Flush),
        4 => (any::<usize>(), prop::bool::weighted(0.1))
            .prop_map(|(n, e)| Action::ServerAnswersPublish(n, e)),
        2 => any::<usize>().prop_map(Action::ServerAnswersPubRel),
        3 => Just(Action::ServerSendsQos2),
        1 => any::<usize>().prop_map(Action::ServerRedelivers),
        2 => any::<usize>().prop_map(Action::ServerReleases),
        3 => any::<usize>().prop_map(Action::AppAcks),
        2 => any::<usize>().prop_map(Action::Withdraw),
        1 => Just(Action::ConnectionLost),
        1 => (prop::bool::weighted(0.8), 1u16..6)
            .prop_map(|(s, r)| Action::Reconnect { session_present: s, receive_maximum: r }),
        1 => Just(Action::Crash),
    ]
}

/// The broker, as far as this client's session goes.
#[derive(Default)]
struct Server {
    connected: bool,
    receive_maximum: u16,
    /// QoS 1/2 PUBLISH received and not yet answered: packet id → (QoS, delivery id).
    unanswered: BTreeMap<u16, (QoS, u64)>,
    /// PUBREL received, PUBCOMP not yet sent.
    pubrels: Vec<u16>,
    /// QoS 2 messages the server sent, PUBREC not yet received: id → message uid.
    sent_qos2: BTreeMap<u16, u64>,
    /// PUBREC received, PUBREL not yet sent or not yet answered: id → uid.
    released: BTreeMap<u16, u64>,
    next_inbound_id: u16,
    next_uid: u64,
    /// Topic Alias mappings the client set on this connection.
    aliases: BTreeMap<u16, String>,
    /// Outbound publishes (by uid) the server answered with PUBACK or PUBREC, ever.
    answered: BTreeSet<u64>,
    /// Outbound QoS 2 delivery ids the server has taken ownership of (PUBREC sent), ever.
    owned: BTreeSet<u64>,
    /// PUBREC sent, PUBREL not yet received: packet id → delivery id. A PUBLISH repeated under
    /// such an id is a retransmission the server answers without delivering again.
    awaiting_pubrel: BTreeMap<u16, u64>,
    /// The last outbound publish (uid) on this connection: they come in the order accepted.
    /// Per priority class (model/c is class 1), the last publish it got on this connection.
    last_uid: BTreeMap<u8, u64>,
}

impl Server {
    fn in_flight_inbound(&self) -> usize {
        self.sent_qos2.len() + self.released.len()
    }

    fn next_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.next_inbound_id = self.next_inbound_id.wrapping_add(1).max(1);
            let id = self.next_inbound_id;
            if !self.sent_qos2.contains_key(&id) && !self.released.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }
}

struct World {
    session: Session,
    store: Committed,
    server: Server,
    /// Each outbound publish carries a uid of the model's in its payload.
    next_out_uid: u64,
    /// Delivery id → uid, for the engine of the current process (ids do not outlive a crash).
    delivery_uid: BTreeMap<u64, u64>,
    /// Uids of publishes accepted and not yet committed.
    uncommitted_publishes: Vec<u64>,
    /// Uids committed since the last crash: each must be reported Delivered or Failed.
    committed_now: BTreeSet<u64>,
    /// Uids ever committed: each must reach the server and be answered, crash or not.
    committed_all: BTreeSet<u64>,
    /// Uids reported Delivered or Failed.
    finished: BTreeSet<u64>,
    /// Publishes finished by the current engine (a crash may replay a finish: the removal of
    /// the record was not committed).
    finished_now: BTreeSet<u64>,
    /// Messages the application holds: tag → uid.
    held: Vec<(MessageTag, u64)>,
    /// Uids acked, ack not yet committed.
    acks_pending: Vec<u64>,
    /// Uids withdrawn: they must never reach the server, unless a crash found their record
    /// still stored (its removal was not committed yet).
    withdrawn: BTreeSet<u64>,
    /// Uids whose ack was committed: never delivered again.
    acks_committed: BTreeSet<u64>,
    session_lost: bool,
    /// An output whose commit is in flight (its early packets went out), with the publishes
    /// and acks it makes durable.
    in_flight: Option<(Output, Vec<u64>, Vec<u64>)>,
}

fn options() -> SessionOptions {
    let mut options = SessionOptions::new("model");
    options.manual_ack = true;
    options.properties.session_expiry_interval = Some(3600);
    options.properties.receive_maximum = Some(CLIENT_RECEIVE_MAXIMUM);
    // A tiny window: most of a queue lives in the store and is read back as it drains.
    options.queue_window = QueueWindow::new(2, 64);
    // One topic of a priority class: its queue of its own, read, resumed, discarded and
    // withdrawn from like the offline queue.
    options.backlog.priorities = vec![("model/c".to_owned(), 1)];
    options
}

/// A QoS 2 PUBLISH from the server carrying message `uid`.
fn inbound_qos2(packet_id: u16, uid: u64, dup: bool) -> Packet {
    let mut p = Publish::new("model/in", Bytes::copy_from_slice(&uid.to_be_bytes()));
    p.qos = QoS::ExactlyOnce;
    p.packet_id = packet_id;
    p.dup = dup;
    Packet::Publish(p)
}

fn uid_of(publish: &Publish) -> u64 {
    let mut bytes = [0u8; 8];
    for (b, p) in bytes.iter_mut().zip(publish.payload.iter()) {
        *b = *p;
    }
    u64::from_be_bytes(bytes)
}

impl World {
    fn new() -> Self {
        Self {
            session: Session::new(options(), StoredSession::default(), NOW_MS).unwrap(),
            store: Committed::default(),
            server: Server::default(),
            next_out_uid: 0,
            delivery_uid: BTreeMap::new(),
            uncommitted_publishes: Vec::new(),
            committed_now: BTreeSet::new(),
            committed_all: BTreeSet::new(),
            finished: BTreeSet::new(),
            finished_now: BTreeSet::new(),
            held: Vec::new(),
            acks_pending: Vec::new(),
            withdrawn: BTreeSet::new(),
            in_flight: None,
            acks_committed: BTreeSet::new(),
            session_lost: false,
        }
    }

    fn events(&mut self) -> Result<(), TestCaseError> {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Delivered { id, .. } | Event::Failed { id, .. } => {
                    prop_assert!(
                        self.finished_now.insert(id),
                        "publish {} finished twice",
                        id
                    );
                    if let Some(uid) = self.delivery_uid.get(&id) {
                        self.finished.insert(*uid);
                    }
                }
                Event::Message { tag, publish } => {
                    let uid = uid_of(&publish);
                    prop_assert!(
                        !self.acks_committed.contains(&uid),
                        "QoS 2 message {} delivered again after its ack was committed",
                        uid
                    );
                    self.held.push((tag, uid));
                }
                Event::SessionLost { .. } | Event::SessionExpired => self.session_lost = true,
                _ => {}
            }
        }
        // A message waits only while the application holds Receive Maximum unacked ones.
        if self.session.held() > 0 {
            prop_assert!(
                self.held.len() >= usize::from(CLIENT_RECEIVE_MAXIMUM),
                "{} held back while the application has only {} unacked",
                self.session.held(),
                self.held.len()
            );
        }
        Ok(())
    }

    /// The driver: early packets at once, then commit (the next output is polled while a
    /// commit is in flight), then the other packets.
    fn flush(&mut self) -> Result<(), TestCaseError> {
        self.flush_leaving(false)
    }

    fn flush_leaving(&mut self, leave_in_flight: bool) -> Result<(), TestCaseError> {
        loop {
            while let Some(mut output) = self.session.poll_output(Instant::now()) {
                if self.server.connected {
                    for packet in std::mem::take(&mut output.early) {
                        self.server_receives(packet)?;
                    }
                }
                let publishes = std::mem::take(&mut self.uncommitted_publishes);
                let acks = std::mem::take(&mut self.acks_pending);
                if let Some(previous) = self.in_flight.replace((output, publishes, acks)) {
                    self.complete(previous)?;
                }
            }
            if leave_in_flight && self.in_flight.is_some() {
                break;
            }
            if let Some(previous) = self.in_flight.take() {
                self.complete(previous)?;
                continue;
            }
            // Everything polled is committed: the queue may be read back.
            let Some(read) = self.session.poll_queue_read() else {
                break;
            };
            let records = match read.class {
                0 => self.store.read_queue(read.from, read.window),
                class => self.store.read_class_queue(class, read.from, read.window),
            };
            if let Err(e) = self.session.queue_read(records) {
                return Err(TestCaseError::fail(format!("queue read refused: {e}")));
            }
        }
        self.events()
    }

    /// The commit of an output returned: its packets go out, and the session hears of it.
    fn complete(
        &mut self,
        (output, publishes, acks): (Output, Vec<u64>, Vec<u64>),
    ) -> Result<(), TestCaseError> {
        self.store.apply(&output.commit);
        for uid in publishes
            .into_iter()
            .filter(|u| !self.withdrawn.contains(u))
        {
            self.committed_now.insert(uid);
            self.committed_all.insert(uid);
        }
        self.acks_committed.extend(acks);
        if self.server.connected {
            for packet in output.send {
                self.server_receives(packet)?;
            }
        }
        self.session.durable(output.generation);
        Ok(())
    }

    fn server_receives(&mut self, packet: Packet) -> Result<(), TestCaseError> {
        if let Packet::Publish(p) = &packet {
            let uid = uid_of(p);
            // Order holds per class; a retransmission after a restart carries its topic.
            let topic = match (p.topic.is_empty(), p.properties.topic_alias) {
                (true, Some(alias)) => self.server.aliases.get(&alias).cloned().unwrap_or_default(),
                _ => p.topic.clone(),
            };
            let class = u8::from(topic == "model/c");
            prop_assert!(
                !self.withdrawn.contains(&uid),
                "publish {} was withdrawn and reached the server",
                uid
            );
            prop_assert!(
                self.server
                    .last_uid
                    .get(&class)
                    .is_none_or(|last| *last < uid),
                "publish {} after {} on one connection: not in the order accepted",
                uid,
                self.server
                    .last_uid
                    .get(&class)
                    .copied()
                    .unwrap_or_default()
            );
            self.server.last_uid.insert(class, uid);
            match (p.properties.topic_alias, p.topic.is_empty()) {
                (Some(alias), false) => {
                    prop_assert!((1..=SERVER_TOPIC_ALIAS_MAXIMUM).contains(&alias));
                    self.server.aliases.insert(alias, p.topic.clone());
                }
                (Some(alias), true) => prop_assert!(
                    self.server.aliases.contains_key(&alias),
                    "alias {} used before it was mapped on this connection",
                    alias
                ),
                (None, empty) => prop_assert!(!empty, "a PUBLISH without topic or alias"),
            }
        }
        match packet {
            Packet::Publish(p) if p.qos != QoS::AtMostOnce => {
                prop_assert!(
                    !p.dup || (!p.topic.is_empty() && p.properties.topic_alias.is_none()),
                    "a retransmission with a topic alias or no topic: {:?}",
                    p
                );
                if self.server.unanswered.contains_key(&p.packet_id) {
                    prop_assert!(p.dup, "packet id {} reused while in flight", p.packet_id);
                }
                let delivery = uid_of(&p);
                // A repeat under the identifier the server already answered is answered with
                // PUBREC again and not delivered again [MQTT-4.3.3-10].
                let repeat = self.server.awaiting_pubrel.get(&p.packet_id) == Some(&delivery);
                if p.qos == QoS::ExactlyOnce && !repeat {
                    prop_assert!(
                        self.session_lost || !self.server.owned.contains(&delivery),
                        "QoS 2 publish {} reached the server twice as a new message",
                        delivery
                    );
                }
                self.server
                    .unanswered
                    .insert(p.packet_id, (p.qos, delivery));
                prop_assert!(
                    self.server.unanswered.len() <= usize::from(self.server.receive_maximum),
                    "{} unanswered QoS 1/2 publishes, Receive Maximum {}",
                    self.server.unanswered.len(),
                    self.server.receive_maximum
                );
            }
            Packet::PubRel(rel) => {
                self.server.awaiting_pubrel.remove(&rel.packet_id);
                if !self.server.pubrels.contains(&rel.packet_id) {
                    self.server.pubrels.push(rel.packet_id);
                }
            }
            Packet::PubRec(rec) => {
                if let Some(uid) = self.server.sent_qos2.remove(&rec.packet_id) {
                    self.server.released.insert(rec.packet_id, uid);
                }
            }
            Packet::PubComp(comp) => {
                self.server.released.remove(&comp.packet_id);
            }
            _ => {}
        }
        Ok(())
    }

    fn step(&mut self, action: Action) -> Result<(), TestCaseError> {
        let now = Instant::now();
        match action {
            Action::Publish(qos2) => {
                let topic = ["model/a", "model/b", "model/c"][(self.next_out_uid % 3) as usize];
                let mut p = Publish::new(topic, Bytes::new());
                p.qos = if qos2 {
                    QoS::ExactlyOnce
                } else {
                    QoS::AtLeastOnce
                };
                let uid = self.next_out_uid;
                self.next_out_uid += 1;
                p.payload = Bytes::copy_from_slice(&uid.to_be_bytes());
                let id = self.session.publish(p).unwrap();
                self.delivery_uid.insert(id, uid);
                self.uncommitted_publishes.push(uid);
            }
            Action::Flush(leave_in_flight) => self.flush_leaving(leave_in_flight)?,
            Action::ServerAnswersPublish(n, error) if self.server.connected => {
                let Some(&id) = self
                    .server
                    .unanswered
                    .keys()
                    .nth(n % self.server.unanswered.len().max(1))
                else {
                    return Ok(());
                };
                let (qos, delivery) = self.server.unanswered.remove(&id).unwrap();
                self.server.answered.insert(delivery);
                // A repeat of a message the server holds is answered as before: it took it.
                let error = error && self.server.awaiting_pubrel.get(&id) != Some(&delivery);
                let mut ack = PubAck::new(id);
                if error {
                    ack.reason_code = ReasonCode::QuotaExceeded;
                }
                let packet = if qos == QoS::AtLeastOnce {
                    Packet::PubAck(ack)
                } else {
                    if !error {
                        self.server.owned.insert(delivery);
                        self.server.awaiting_pubrel.insert(id, delivery);
                    }
                    Packet::PubRec(ack)
                };
                self.session.handle_incoming(packet, now).unwrap();
            }
            Action::ServerAnswersPubRel(n)
                if self.server.connected && !self.server.pubrels.is_empty() =>
            {
                let id = self.server.pubrels.remove(n % self.server.pubrels.len());
                self.session
                    .handle_incoming(Packet::PubComp(PubAck::new(id)), now)
                    .unwrap();
            }
            Action::ServerSendsQos2
                if self.server.connected
                    && self.server.in_flight_inbound()
                        < usize::from(CLIENT_RECEIVE_MAXIMUM) + SERVER_OVER_QUOTA =>
            {
                let Some(id) = self.server.next_id() else {
                    return Ok(());
                };
                self.server.next_uid += 1;
                let uid = self.server.next_uid;
                self.server.sent_qos2.insert(id, uid);
                self.session
                    .handle_incoming(inbound_qos2(id, uid, false), now)
                    .unwrap();
            }
            Action::ServerRedelivers(n)
                if self.server.connected && !self.server.sent_qos2.is_empty() =>
            {
                let (&id, &uid) = self
                    .server
                    .sent_qos2
                    .iter()
                    .nth(n % self.server.sent_qos2.len())
                    .unwrap();
                self.session
                    .handle_incoming(inbound_qos2(id, uid, true), now)
                    .unwrap();
            }
            Action::ServerReleases(n)
                if self.server.connected && !self.server.released.is_empty() =>
            {
                let (&id, _) = self
                    .server
                    .released
                    .iter()
                    .nth(n % self.server.released.len())
                    .unwrap();
                self.session
                    .handle_incoming(Packet::PubRel(PubAck::new(id)), now)
                    .unwrap();
            }
            Action::AppAcks(n) if !self.held.is_empty() => {
                let (tag, uid) = self.held.remove(n % self.held.len());
                if self.session.ack(tag).is_ok() {
                    self.acks_pending.push(uid);
                }
            }
            Action::Withdraw(n) => {
                let in_commit = self.in_flight.as_ref().map_or(&[][..], |f| &f.1[..]);
                let open: Vec<u64> = self
                    .uncommitted_publishes
                    .iter()
                    .chain(in_commit)
                    .copied()
                    .collect();
                let Some(&uid) = open.get(n % open.len().max(1)) else {
                    return Ok(());
                };
                let Some((&id, _)) = self.delivery_uid.iter().find(|(_, u)| **u == uid) else {
                    return Ok(());
                };
                if let Withdrawn::Taken { unwritten } = self.session.withdraw(id) {
                    self.withdrawn.insert(uid);
                    self.uncommitted_publishes.retain(|u| *u != uid);
                    if let (Some(packet_id), Some((output, _, _))) =
                        (unwritten, self.in_flight.as_mut())
                    {
                        // The driver drops the PUBLISH it has not written, as the client does.
                        if let Unwritten::Announced {
                            alias,
                            topic,
                            reannounced,
                        } = take_unwritten_publish(&mut [&mut output.send], packet_id)
                        {
                            self.session.unannounce_alias(alias, &topic, reannounced);
                        }
                    }
                }
            }
            Action::ConnectionLost if self.server.connected => {
                self.server.connected = false;
                // A commit in flight returns after the link went: its packets are dropped.
                if let Some(previous) = self.in_flight.take() {
                    self.complete(previous)?;
                }
                self.session.connection_lost(NOW_MS);
                self.events()?;
            }
            Action::Reconnect {
                session_present,
                receive_maximum,
            } if !self.server.connected => {
                self.server.connected = true;
                self.server.receive_maximum = receive_maximum;
                self.server.last_uid.clear();
                // Whatever was unanswered on the old connection comes again or is forgotten.
                self.server.unanswered.clear();
                self.server.pubrels.clear();
                self.server.aliases.clear();
                if !session_present {
                    self.server.sent_qos2.clear();
                    self.server.released.clear();
                    self.server.awaiting_pubrel.clear();
                }
                let connack = |session_present| {
                    let mut connack = ConnAck::new(session_present);
                    connack.properties = ConnAckProperties {
                        receive_maximum: Some(receive_maximum),
                        topic_alias_maximum: Some(SERVER_TOPIC_ALIAS_MAXIMUM),
                        ..ConnAckProperties::default()
                    };
                    Packet::ConnAck(Box::new(connack))
                };
                let answer = self.session.handle_incoming(connack(session_present), now);
                if session_present && answer.is_err() {
                    // A client without local state refuses the server's session and comes
                    // back with Clean Start 1 [MQTT-3.2.2-4].
                    prop_assert_eq!(answer.err(), Some(ProtocolViolation::SessionWithoutState));
                    prop_assert!(self.session.connect_packet().unwrap().clean_start);
                    self.session.connection_lost(NOW_MS);
                    self.server.sent_qos2.clear();
                    self.server.released.clear();
                    self.server.awaiting_pubrel.clear();
                    self.session.handle_incoming(connack(false), now).unwrap();
                } else {
                    answer.unwrap();
                }
                self.events()?;
                // The server resends what it had not seen answered.
                let pending: Vec<(u16, u64)> = self
                    .server
                    .sent_qos2
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .collect();
                for (id, uid) in pending {
                    self.session
                        .handle_incoming(inbound_qos2(id, uid, true), now)
                        .unwrap();
                }
                let released: Vec<u16> = self.server.released.keys().copied().collect();
                for id in released {
                    self.session
                        .handle_incoming(Packet::PubRel(PubAck::new(id)), now)
                        .unwrap();
                }
            }
            Action::Crash => {
                // Whatever was not committed is gone; so are the application's held messages.
                let held = self.store.stored();
                let before = (
                    held.outbound.len(),
                    held.queue.len() as u64
                        + held
                            .class_queues
                            .iter()
                            .map(|c| c.queue.len() as u64)
                            .sum::<u64>(),
                );
                let _ = self.session.poll_output(now);
                self.in_flight = None;
                self.uncommitted_publishes.clear();
                self.acks_pending.clear();
                self.held.clear();
                self.finished_now.clear();
                self.delivery_uid.clear();
                self.committed_now.clear();
                // A withdrawn publish whose removal was not committed is back: it goes out.
                let stored_session = self.store.stored();
                let classes = stored_session
                    .class_queues
                    .iter()
                    .flat_map(|c| c.queue.iter());
                let stored: BTreeSet<u64> = stored_session
                    .queue
                    .iter()
                    .chain(classes)
                    .filter_map(|(_, q)| decode_publish(&q.packet).ok())
                    .map(|p| uid_of(&p))
                    .collect();
                let back: Vec<u64> = self.withdrawn.intersection(&stored).copied().collect();
                for uid in back {
                    self.withdrawn.remove(&uid);
                    self.committed_all.insert(uid);
                }
                let resumed = self.store.resumed(options().queue_window);
                self.session = Session::new(options(), resumed, NOW_MS).unwrap();
                prop_assert_eq!(
                    (self.session.in_flight(), self.session.queued()),
                    before,
                    "the rebuilt session does not hold what the store holds"
                );
                self.server.connected = false;
            }
            _ => {}
        }
        self.events()
    }

    /// Reconnects with the session and lets the server answer everything, then checks that
    /// every committed publish ended.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        if self.server.connected {
            self.step(Action::ConnectionLost)?;
        }
        self.step(Action::Reconnect {
            session_present: true,
            receive_maximum: 5,
        })?;
        for _ in 0..10_000 {
            self.flush()?;
            if self.server.unanswered.is_empty() && self.server.pubrels.is_empty() {
                if self.session.in_flight() == 0 && self.session.queued() == 0 {
                    break;
                }
                continue;
            }
            if !self.server.unanswered.is_empty() {
                self.step(Action::ServerAnswersPublish(0, false))?;
            } else {
                self.step(Action::ServerAnswersPubRel(0))?;
            }
        }
        self.flush()?;
        prop_assert_eq!(self.session.in_flight(), 0);
        prop_assert_eq!(self.session.queued(), 0);
        for uid in &self.committed_now {
            prop_assert!(
                self.finished.contains(uid),
                "publish {} was committed and never reported delivered or failed",
                uid
            );
        }
        for uid in &self.committed_all {
            prop_assert!(
                self.server.answered.contains(uid),
                "publish {} was committed and never reached the server",
                uid
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_keeps_its_invariants(actions in prop::collection::vec(action(), 1..120)) {
        let mut world = World::new();
        world.step(Action::Reconnect { session_present: false, receive_maximum: 4 })?;
        for action in actions {
            world.step(action)?;
        }
        world.settle()?;
    }
}
