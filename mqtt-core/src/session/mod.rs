//! The session engine: the client side of MQTT v5 as a state machine with no I/O.
//!
//! It is fed events (a publish from the application, a packet from the server, a CONNACK, a
//! lost connection) and polled for what to do: [`Session::poll_output`] returns an [`Output`]
//! holding the store operations that must be committed *and then* the packets that may go on
//! the wire; [`Session::poll_event`] returns what the application should learn. The engine
//! never reads a clock, opens a socket or touches a store; the driver does, in that order.
//!
//! # What it covers
//!
//! Packet identifiers; outbound QoS 1/2 flows with their store records; the server's Receive
//! Maximum; the durable offline queue; CONNECT and CONNACK; retransmission on reconnect
//! (Session Present 1: in order, DUP set, within the new Receive Maximum; Session Present 0:
//! resent as new messages, PUBREL and markers dropped, reported); inbound PUBLISH with
//! automatic or manual ack, acks in arrival order, the durable PUBREC marker, PUBREL/PUBCOMP,
//! the client's Receive Maximum (excess held back from the application); Topic Aliases both ways; a defined meaning for an ack
//! after a lost connection ([`Session::ack`]); keep alive; SUBSCRIBE/UNSUBSCRIBE; DISCONNECT
//! both ways; session metadata and expiry; enhanced authentication through an
//! [`Authenticator`]; one dispatcher for every packet from the server
//! ([`Session::handle_incoming`]). A model-based property test checks its invariants across
//! random sequences with connection losses and crashes.

mod aliases;
mod auth;
mod clock;
mod connection;
mod error;
mod event;
mod inbound;
mod options;
mod outbound;
mod packet_id;
mod queue;
mod requests;
mod subscriptions;
mod withdraw;

pub use auth::{AuthError, Authenticator};
pub use connection::ConnectCredentials;
pub use error::{
    AckError, ConnectPacketError, ProtocolViolation, PublishError, RequestError, SessionError,
};
pub use event::Event;
pub use options::{
    DEFAULT_HELD_BYTES_LIMIT, DEFAULT_MAXIMUM_PACKET_SIZE, DEFAULT_QUEUE_WINDOW,
    DEFAULT_V311_IN_FLIGHT, LostSession, SessionOptions,
};
pub use queue::QueueRead;
pub use withdraw::{Withdrawn, announced_alias, restore_topic};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::packet::{
    Codec, Connect, ConnectProperties, DecodeError, Decoded, EncodeError, Packet, ProtocolVersion,
    Publish, QoS, ReasonCode, Subscribe,
};
use crate::store::{Batch, OutboundRecord, SessionMeta, StoreOp, StoredSession};
use aliases::OutAliases;
use packet_id::PacketIds;

/// Identifies an inbound message for [`Session::ack`]. QoS 0 messages need no ack.
pub type MessageTag = u64;

/// Identifies a SUBSCRIBE or UNSUBSCRIBE in later [`Event`]s.
pub type RequestId = u64;

/// Identifies a publish accepted by [`Session::publish`] in later [`Event`]s.
pub type PublishId = u64;

/// Packets to write at once, store operations to commit, then packets to send, in that order.
///
/// The packets in `send` may depend on the operations (a PUBLISH on its record, a PUBREL on the
/// record that says PUBREC arrived): sending one before the commit returned `Ok` could make the
/// server hold a message the client would forget in a crash. Those in `early` depend only on
/// what earlier outputs stored, as the driver reported ([`Session::written`]), and follow every
/// packet written before: a queued message whose record is durable goes out while a commit is
/// in flight, without waiting for it. Drivers write `early`, commit `commit`, write `send`, and
/// then report the output's [`generation`](Output::generation) with [`Session::written`] and,
/// once every operation of it is durable, [`Session::durable`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "the store operations must be committed before the packets are sent"]
pub struct Output {
    /// Write these now, before the commit, in order.
    pub early: Vec<Packet>,
    /// Commit these (group commit: everything gathered since the last poll).
    pub commit: Batch,
    /// Then send these, in order.
    pub send: Vec<Packet>,
    /// The number of this output, counting from 1: what the driver reports back.
    pub generation: u64,
    /// Whether `commit` only removes records of finished flows: nothing in `send` depends on
    /// it and nobody waits for it, so it may wait to join a later commit. A crash before it is
    /// durable resends what the server already acknowledged (a duplicate QoS 1 allows, a PUBREL
    /// the server answers with PUBCOMP), never loses anything.
    pub deferrable: bool,
}

#[derive(Debug, Clone)]
enum Stage {
    /// PUBLISH sent (or to send), with its packet identifier and full topic, DUP clear;
    /// PUBACK or PUBREC awaited.
    Published(Box<Publish>),
    /// PUBREC arrived, PUBREL sent (or to send); PUBCOMP awaited. The PUBLISH is never sent
    /// again [MQTT-4.3.3-6], so it is not kept.
    Released,
}

impl Stage {
    fn is_released(&self) -> bool {
        matches!(self, Self::Released)
    }
}

#[derive(Debug, Clone, Copy)]
struct Inbound {
    tag: MessageTag,
    packet_id: u16,
    qos: QoS,
    acked: bool,
    /// The reason code its PUBACK or PUBREC carries: Success, or the application's refusal.
    reason: ReasonCode,
}

/// What decides whether a flow's packet may go early: the outputs reported written, and the
/// latest one with packets after its commit.
#[derive(Clone, Copy)]
struct Placing {
    written: u64,
    late_generation: u64,
}

impl Placing {
    /// Early when the packet's record and every packet before it are written (so the wire
    /// order stays the engine's), otherwise after the commit.
    fn place(self, pending: &mut Output, packet: Packet, record_generation: u64) {
        if record_generation <= self.written
            && self.late_generation <= self.written
            && pending.send.is_empty()
        {
            pending.early.push(packet);
        } else {
            pending.send.push(packet);
        }
    }
}

#[derive(Debug, Clone)]
struct Flow {
    /// The delivery id: the sequence number the PUBLISH was first stored under.
    id: PublishId,
    packet_id: u16,
    stage: Stage,
    /// Whether its current packet went out on the current connection.
    sent: bool,
    /// Whether the next PUBLISH is a retransmission (DUP 1) rather than a first send.
    retransmit: bool,
    /// Whether its PUBLISH took send quota on this connection (a PUBREL resent after a
    /// reconnect takes none [MQTT-3.3.4-8]), so that its end gives quota back.
    holds_quota: bool,
    /// Whether its record is the queue record under `id` (a message sent from the queue keeps
    /// it until PUBACK or PUBREC), rather than an outbound record under its key in `flows`.
    queued: bool,
    /// The output whose commit stores its current record (0: loaded from the store).
    record_generation: u64,
    /// The output that carried its first PUBLISH (0: loaded from the store): until that one
    /// is written, the message never reached the wire and can be taken back.
    first_sent_in: u64,
    /// Whether its outcome was reported already: a QoS 2 PUBLISH that no longer fits the
    /// server's Maximum Packet Size is reported failed and released with PUBREL only to
    /// free its identifier, so its PUBCOMP reports nothing more.
    reported: bool,
}

/// What the server announced in CONNACK, and the keep alive, for the current connection.
#[derive(Debug)]
struct Connection {
    send_quota: u16,
    /// The server's Receive Maximum: the send quota never grows above it.
    receive_maximum: u16,
    /// The first pass over the flows on this connection is still to come: it resends every
    /// PUBREL, which needs no send quota [MQTT-3.3.4-8], past PUBLISHes that wait for some.
    first_pass: bool,
    maximum_qos: QoS,
    retain_available: bool,
    wildcards_available: bool,
    subscription_ids_available: bool,
    shared_available: bool,
    /// The keep alive in force (the server's, if it set one); zero turns it off.
    keep_alive: Duration,
    last_sent: Instant,
    ping_sent: Option<Instant>,
    aliases: OutAliases,
    /// DISCONNECT was handed out: nothing may follow it [MQTT-3.14.4-1].
    closing: bool,
}

/// A SUBSCRIBE or UNSUBSCRIBE awaiting its answer.
#[derive(Debug, Clone)]
struct RequestInFlight {
    id: RequestId,
    /// The packet as sent: what SUBACK grants, or UNSUBACK removes, is kept or forgotten.
    packet: Packet,
}

/// One client session: what is in flight, what waits, and the current connection's limits.
#[derive(Debug)]
pub struct Session {
    options: SessionOptions,
    codec: Codec,
    /// Outbound flows by store sequence number: the order of retransmission.
    flows: BTreeMap<u64, Flow>,
    /// The lowest sequence number that may hold a flow not yet sent on this connection;
    /// `None` when all went out. `drain` starts there instead of scanning every flow, which
    /// with many flows in flight and a small quota would cost a full scan per ack.
    unsent_from: Option<u64>,
    /// Sequence number of each in-flight packet identifier.
    by_packet_id: HashMap<u16, u64>,
    ids: PacketIds,
    /// Accepted publishes without an identifier yet, FIFO: the oldest in memory, the rest in
    /// the store.
    queue: queue::Queue,
    /// Inbound QoS 2 PUBLISH answered with PUBREC (durable markers), awaiting PUBREL.
    inbound_pubrec: BTreeSet<u16>,
    /// Inbound QoS 1/2 messages of the current connection, in arrival order: acks go out in
    /// this order [MQTT-4.6.0-2, MQTT-4.6.0-3].
    acks: VecDeque<Inbound>,
    /// Inbound messages delivered on an earlier connection and not yet acked, by tag.
    stale: HashMap<MessageTag, Inbound>,
    /// Messages beyond the client's Receive Maximum, waiting for an ack to make room.
    held: VecDeque<Publish>,
    /// Packet identifiers of `acks` and `held`: unanswered on this connection.
    inbound_in_use: HashMap<u16, QoS>,
    /// Topic and payload bytes of `held`.
    held_bytes: usize,
    held_total: u64,
    /// Entries of `acks` not acked yet (kept to avoid a scan per message).
    awaiting_application: usize,
    /// Topic Alias mappings the server set on this connection.
    aliases_in: HashMap<u16, String>,
    next_tag: MessageTag,
    /// SUBSCRIBE/UNSUBSCRIBE in flight, by packet identifier.
    requests: HashMap<u16, RequestInFlight>,
    /// SUBSCRIBE/UNSUBSCRIBE waiting for a free packet identifier.
    requests_waiting: VecDeque<(RequestId, Packet)>,
    /// Granted subscriptions, by filter, as kept in the store (one SUBSCRIBE each).
    subscriptions: BTreeMap<String, Subscribe>,
    /// Requests the session made itself to restore subscriptions.
    resubscribing: HashSet<RequestId>,
    /// Per filter, a SUBSCRIBE or UNSUBSCRIBE an earlier process recorded and perhaps sent,
    /// never answered: sent again on each connection until answered, so that the server's
    /// session ends as the application asked.
    in_doubt: BTreeMap<String, Packet>,
    /// Requests the session made itself to settle what is in doubt.
    settling: HashSet<RequestId>,
    /// A restoring SUBSCRIBE went unanswered: restore again on the next connection.
    resubscribe_needed: bool,
    next_request: RequestId,
    /// Enhanced authentication, when the application supplied it.
    authenticator: Option<Box<dyn Authenticator>>,
    /// The Authentication Method the current connection's CONNECT carried: every AUTH on the
    /// connection uses it [MQTT-4.12.0-5, MQTT-4.12.1-1].
    auth_method: Option<String>,
    /// The session's metadata as last emitted for the store.
    meta: SessionMeta,
    /// Whether `meta` was ever emitted (or loaded): it must reach the store at least once.
    meta_stored: bool,
    next_seq: u64,
    connection: Option<Connection>,
    /// When `meta.alive_until_ms` was last moved forward (see `note_alive`).
    alive_stamped_ms: Option<u64>,
    /// The wall clock as last told (`new`, `tick`), in milliseconds since the UNIX epoch.
    clock_ms: u64,
    /// The first sequence number of the clock's current frame: what a step corrects starts
    /// here (or earlier, after an unsure start; see clock.rs).
    clock_epoch_seq: u64,
    /// Since when the session, never stamped, has waited for a commit to carry its first
    /// clock stamp (see clock.rs).
    clock_unstamped_since: Option<u64>,
    /// Queued messages with a Message Expiry Interval, by deadline, and each one's deadline.
    expiries: BTreeSet<(u64, PublishId)>,
    deadlines: HashMap<PublishId, u64>,
    /// Whether a CONNACK with Success was ever received (later connects resume the session).
    connected_once: bool,
    /// Whether the client holds session state the server may share: a stored session that
    /// has not expired, or a successful CONNACK in this run [MQTT-3.2.2-4].
    local_state: bool,
    /// The server resumed a session this client has no state for: the next CONNECT starts
    /// clean, so the session begins anew instead of failing forever.
    start_clean: bool,
    pending: Output,
    /// An output the driver gave back ([`Session::recycle`]), emptied: its lists take the
    /// next output's, so that they do not grow from empty (a copy at each doubling) per turn.
    spare: Option<Output>,
    /// Operations in `pending.commit` that only remove records of finished flows.
    deferrable_ops: usize,
    /// The next output must not be deferrable: a packet identifier waits for the removal of
    /// its previous flow's record to be durable.
    force_commit: bool,
    /// The generation the next output gets.
    generation: u64,
    /// Outputs up to this one have been committed (deferrable operations aside) and written.
    written: u64,
    /// Outputs up to this one are wholly durable.
    durable: u64,
    /// The latest output with packets in `send`: nothing goes early before it is written.
    late_generation: u64,
    /// Packet identifiers whose last flow ended, and the output that removes its record: not
    /// given to a queued message again before that output is durable, or a crash could leave
    /// two records with one identifier (an old PUBREL would release the new message).
    cooling: HashMap<u16, u64>,
    cooling_order: VecDeque<(u64, u16)>,
    /// Queued messages below this sequence number were stored before the session was resumed:
    /// they may have gone out before a crash, so they go out with DUP set [MQTT-3.3.1-1].
    resumed_below: u64,
    events: VecDeque<Event>,
}

/// Whether a packet that may carry them only when the client asked for problem information
/// has a Reason String or User Properties.
fn carries_problem_information(packet: &Packet) -> bool {
    let (reason_string, user_properties) = match packet {
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            (&p.properties.reason_string, &p.properties.user_properties)
        }
        Packet::SubAck(p) => (&p.properties.reason_string, &p.properties.user_properties),
        Packet::UnsubAck(p) => (&p.properties.reason_string, &p.properties.user_properties),
        Packet::Auth(p) => (&p.properties.reason_string, &p.properties.user_properties),
        _ => return false,
    };
    reason_string.is_some() || !user_properties.is_empty()
}

fn decode_publish(bytes: &Bytes) -> Result<Publish, String> {
    let mut buf = BytesMut::from(&bytes[..]);
    match Codec::default().decode(&mut buf) {
        Ok(Decoded::Packet(Packet::Publish(p))) if buf.is_empty() => Ok(p),
        Ok(other) => Err(format!("not one PUBLISH: {other:?}")),
        Err(DecodeError { violation, .. }) => Err(violation.to_string()),
    }
}

fn encode(publish: &Publish) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    Codec::default().encode(&Packet::Publish(publish.clone()), &mut buf)?;
    Ok(buf.freeze())
}

impl Session {
    /// A session resumed from what the store held (an empty [`StoredSession`] for a new one).
    /// `now_ms` is the wall-clock time in milliseconds since the UNIX epoch: a stored session
    /// whose expiry has passed is treated as gone on the server ([`Event::SessionExpired`]).
    pub fn new(
        options: SessionOptions,
        stored: StoredSession,
        now_ms: u64,
    ) -> Result<Self, SessionError> {
        let expired = stored.meta.as_ref().is_some_and(|m| m.is_expired(now_ms));
        let meta_stored = stored.meta.is_some();
        let protocol = options.protocol;
        if let Some(meta) = stored.meta.as_ref().filter(|m| m.protocol != protocol) {
            return Err(SessionError::ProtocolMismatch {
                stored: meta.protocol,
                requested: protocol,
            });
        }
        let meta = stored.meta.clone().unwrap_or_else(|| SessionMeta {
            session_expiry_interval: kept_expiry(&options),
            protocol,
            ..SessionMeta::default()
        });
        let corrections = stored
            .meta
            .as_ref()
            .map_or(&[][..], |m| &m.clock.corrections[..]);
        let (queue, deadlines) = queue::Queue::resume(&stored, options.queue_window, corrections)?;
        let mut session = Self {
            options,
            codec: Codec {
                protocol,
                ..Codec::default()
            },
            flows: BTreeMap::new(),
            unsent_from: Some(0),
            by_packet_id: HashMap::new(),
            ids: PacketIds::default(),
            queue,
            inbound_pubrec: stored.inbound.iter().copied().collect(),
            acks: VecDeque::new(),
            stale: HashMap::new(),
            held: VecDeque::new(),
            inbound_in_use: HashMap::new(),
            held_bytes: 0,
            held_total: 0,
            awaiting_application: 0,
            aliases_in: HashMap::new(),
            next_tag: 1,
            requests: HashMap::new(),
            requests_waiting: VecDeque::new(),
            subscriptions: BTreeMap::new(),
            resubscribing: HashSet::new(),
            in_doubt: BTreeMap::new(),
            settling: HashSet::new(),
            resubscribe_needed: false,
            next_request: 1,
            authenticator: None,
            auth_method: None,
            meta,
            meta_stored,
            next_seq: stored.next_seq(),
            connection: None,
            alive_stamped_ms: None,
            clock_ms: now_ms,
            clock_epoch_seq: stored.next_seq(),
            clock_unstamped_since: None,
            expiries: BTreeSet::new(),
            deadlines: HashMap::new(),
            connected_once: false,
            local_state: meta_stored && !expired,
            start_clean: false,
            pending: Output::default(),
            spare: None,
            deferrable_ops: 0,
            force_commit: false,
            generation: 1,
            written: 0,
            durable: 0,
            late_generation: 0,
            cooling: HashMap::new(),
            cooling_order: VecDeque::new(),
            resumed_below: stored.next_seq(),
            events: VecDeque::new(),
        };
        for (seq, record) in stored.outbound {
            let bad = |reason: String| SessionError::BadRecord { seq, reason };
            let (packet_id, stage) = match record {
                OutboundRecord::Publish(bytes) => {
                    let publish = decode_publish(&bytes).map_err(bad)?;
                    if publish.qos == QoS::AtMostOnce {
                        return Err(bad("QoS 0 has no flow to resume".to_owned()));
                    }
                    (publish.packet_id, Stage::Published(Box::new(publish)))
                }
                OutboundRecord::PubRel { packet_id } => (packet_id, Stage::Released),
            };
            if !session.ids.insert(packet_id) {
                return Err(bad(format!(
                    "packet identifier {packet_id} is in flight twice"
                )));
            }
            session.by_packet_id.insert(packet_id, seq);
            session.flows.insert(
                seq,
                Flow {
                    id: seq,
                    packet_id,
                    stage,
                    sent: false,
                    // It may have gone out before the restart.
                    retransmit: true,
                    holds_quota: false,
                    queued: false,
                    record_generation: 0,
                    first_sent_in: 0,
                    reported: false,
                },
            );
        }
        for stored in stored.subscriptions {
            session.load_subscription(stored)?;
        }
        for (seq, at) in deadlines {
            session.expiries.insert((at, seq));
            session.deadlines.insert(seq, at);
        }
        if expired {
            session.events.push_back(Event::SessionExpired);
            session.session_lost(session.meta.in_flight_limit);
        }
        session.drop_expired();
        Ok(session)
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The CONNECT for a new connection (it starts the authenticator, if there is one).
    pub(crate) fn connect_packet(&mut self) -> Result<Connect, AuthError> {
        // An identifier the server assigned names the session to resume.
        let client_id = match &self.meta.assigned_client_id {
            Some(assigned) if self.options.client_id.is_empty() => assigned.clone(),
            _ => self.options.client_id.clone(),
        };
        let mut connect = Connect::new(client_id);
        connect.clean_start = self.clean_flag();
        connect.keep_alive = self.options.keep_alive;
        connect.properties = match self.options.protocol {
            ProtocolVersion::V311 => ConnectProperties::default(),
            _ => self.options.properties.clone(),
        };
        connect.will = self.options.will.clone();
        connect.username = self.options.username.clone();
        connect.password = self.options.password.clone();
        self.auth_method = None;
        if self.options.protocol == ProtocolVersion::V311 && self.authenticator.is_some() {
            return Err(AuthError(
                "enhanced authentication needs MQTT 5; the session speaks 3.1.1".to_owned(),
            ));
        }
        if let Some(auth) = self.authenticator.as_mut() {
            connect.properties.authentication_data = auth.start()?;
            connect.properties.authentication_method = Some(auth.method().to_owned());
            self.auth_method = Some(auth.method().to_owned());
        }
        Ok(connect)
    }

    /// Whether the next CONNECT asks for a clean start.
    fn asks_clean_start(&self) -> bool {
        (self.options.clean_start && !self.connected_once) || self.start_clean
    }

    /// The next CONNECT's Clean Start (v5) or Clean Session (3.1.1) flag. 3.1.1 has no Session
    /// Expiry: Clean Session 1 both starts and ends the session with the connection, so a
    /// session that outlives its connections (expiry above 0) always says 0 but where a clean
    /// start is asked for, and one that does not always says 1.
    fn clean_flag(&self) -> bool {
        match self.options.protocol {
            // An empty Client Identifier asks the server for one it never tells a 3.1.1
            // client: no session could be resumed under it [MQTT-3.1.3-7].
            ProtocolVersion::V311 => {
                self.asks_clean_start()
                    || !self.outlives_connections()
                    || self.options.client_id.is_empty()
            }
            _ => self.asks_clean_start(),
        }
    }

    /// Whether the session is asked to outlive its connections (a Session Expiry above 0).
    fn outlives_connections(&self) -> bool {
        outlives_connections(&self.options)
    }

    /// Store operations to commit and then packets to send, gathered since the last call;
    /// `None` when there is nothing.
    ///
    /// `now` is when the driver will send the packets: keep alive counts from it.
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        if let Some(conn) = self.connection.as_mut() {
            let send = &mut self.pending.send;
            if conn.closing {
                // What the session made after DISCONNECT (acks, pings) never goes out
                // [MQTT-3.14.4-1]; the flows behind them resume on the next connection.
                send.clear();
                self.pending.early.clear();
            } else if let Some(at) = send.iter().position(|p| matches!(p, Packet::Disconnect(_))) {
                send.truncate(at + 1);
                conn.closing = true;
            }
            if !send.is_empty() || !self.pending.early.is_empty() {
                conn.last_sent = now;
            }
        }
        self.stamp_clock_with_commit();
        let force = std::mem::take(&mut self.force_commit);
        let pending = &self.pending;
        if pending.commit.is_empty()
            && pending.send.is_empty()
            && pending.early.is_empty()
            && !force
        {
            return None;
        }
        let next = self.spare.take().unwrap_or_default();
        let mut output = std::mem::replace(&mut self.pending, next);
        output.generation = self.generation;
        output.deferrable = !force && output.commit.len() == self.deferrable_ops;
        self.deferrable_ops = 0;
        if !output.send.is_empty() {
            self.late_generation = self.generation;
        }
        // The queued messages it stores can be read back once it is written.
        self.queue.polled(self.generation);
        self.generation += 1;
        Some(output)
    }

    /// Gives back an output whose packets and operations the driver has taken: the next
    /// output reuses its lists' memory (its number and flags are set anew when it is polled).
    /// Whatever it still holds is dropped.
    pub fn recycle(&mut self, mut output: Output) {
        output.early.clear();
        output.commit.clear();
        output.send.clear();
        self.spare = Some(output);
    }

    /// The driver committed every output up to `generation` (operations that were
    /// [`deferrable`](Output::deferrable) aside) and wrote their packets: their records can be
    /// read back, and queued messages stored by them may go out [`early`](Output::early).
    pub fn written(&mut self, generation: u64) {
        if generation <= self.written {
            return;
        }
        self.written = generation;
        self.queue.written(generation);
        self.drain();
    }

    /// Every operation of the outputs up to `generation` is durable, deferrable ones too (and
    /// their packets were written): packet identifiers of the flows they ended may be reused.
    pub fn durable(&mut self, generation: u64) {
        if generation <= self.durable {
            return;
        }
        self.durable = generation;
        while let Some(&(at, packet_id)) = self.cooling_order.front() {
            if at > generation {
                break;
            }
            self.cooling_order.pop_front();
            if self.cooling.get(&packet_id) == Some(&at) {
                self.cooling.remove(&packet_id);
            }
        }
        self.written = self.written.max(generation);
        self.queue.written(generation);
        self.drain();
    }

    /// Where a flow's packet goes: early when its record and every packet before it are
    /// written, otherwise after the commit.
    fn emit_flow_packet(&mut self, packet: Packet, record_generation: u64) {
        let placing = self.placing();
        placing.place(&mut self.pending, packet, record_generation);
    }

    fn placing(&self) -> Placing {
        Placing {
            written: self.written,
            late_generation: self.late_generation,
        }
    }

    fn set_meta(&mut self, meta: SessionMeta) {
        if meta != self.meta || !self.meta_stored {
            self.pending.commit.push(StoreOp::SetMeta(meta.clone()));
            self.meta_stored = true;
        }
        self.meta = meta;
    }

    /// The codec settings for this session's connection: the Maximum Packet Size the client
    /// announced for decoding, the server's for encoding.
    pub fn codec(&self) -> Codec {
        Codec {
            max_incoming_packet_size: self.options.properties.maximum_packet_size,
            ..self.codec
        }
    }

    /// Handles any packet from the server. An error is a rule the server broke: send
    /// DISCONNECT with its [`reason_code`](ProtocolViolation::reason_code) and close.
    pub fn handle_incoming(
        &mut self,
        packet: Packet,
        now: Instant,
    ) -> Result<(), ProtocolViolation> {
        if self.connection.is_none()
            && !matches!(
                packet,
                Packet::ConnAck(_) | Packet::Auth(_) | Packet::Disconnect(_)
            )
        {
            return Err(ProtocolViolation::Unexpected(
                "a packet other than CONNACK, AUTH or DISCONNECT before CONNACK [MQTT-3.2.0-1]",
            ));
        }
        if self.options.protocol == ProtocolVersion::V311 && matches!(packet, Packet::Disconnect(_))
        {
            return Err(ProtocolViolation::Unexpected(
                "a DISCONNECT from a server, which MQTT 3.1.1 never sends",
            ));
        }
        if self.options.properties.request_problem_information == Some(false)
            && carries_problem_information(&packet)
        {
            return Err(ProtocolViolation::Unexpected(
                "a Reason String or User Property on a packet other than PUBLISH, CONNACK or \
                 DISCONNECT after Request Problem Information 0 [MQTT-3.1.2-29]",
            ));
        }
        match packet {
            Packet::ConnAck(connack) => {
                if self.connection.is_some() {
                    return Err(ProtocolViolation::Unexpected(
                        "a second CONNACK on one connection [MQTT-3.2.0-2]",
                    ));
                }
                self.handle_connack(&connack, now)
            }
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => {
                self.handle_puback(&ack);
                Ok(())
            }
            Packet::PubRec(rec) => {
                self.handle_pubrec(&rec);
                Ok(())
            }
            Packet::PubRel(rel) => {
                self.handle_pubrel(&rel);
                Ok(())
            }
            Packet::PubComp(comp) => {
                self.handle_pubcomp(&comp);
                Ok(())
            }
            Packet::SubAck(ack) => self.handle_suback(ack),
            Packet::UnsubAck(ack) => self.handle_unsuback(ack),
            Packet::PingResp => {
                if let Some(conn) = self.connection.as_mut() {
                    conn.ping_sent = None;
                }
                Ok(())
            }
            Packet::Disconnect(packet) => self.handle_disconnect(packet),
            Packet::Auth(packet) => self.handle_auth(packet),
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq => Err(ProtocolViolation::Unexpected(
                "a packet only a client sends (CONNECT, SUBSCRIBE, UNSUBSCRIBE or PINGREQ)",
            )),
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod v311_rule_tests;
#[cfg(test)]
mod v311_tests;

/// Whether a session with these options is asked to outlive its connections (a Session
/// Expiry above 0).
fn outlives_connections(options: &SessionOptions) -> bool {
    options.properties.session_expiry_interval.unwrap_or(0) > 0
}

/// The Session Expiry the session keeps in its metadata until a server says otherwise.
/// 3.1.1 has no expiry: a session that outlives its connections lasts until the server drops
/// it.
fn kept_expiry(options: &SessionOptions) -> u32 {
    match options.protocol {
        ProtocolVersion::V311 if outlives_connections(options) => u32::MAX,
        _ => options.properties.session_expiry_interval.unwrap_or(0),
    }
}
