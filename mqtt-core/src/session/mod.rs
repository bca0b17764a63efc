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
mod backlog;
mod classes;
mod clock;
mod connection;
mod error;
mod event;
mod flow_end;
mod inbound;
mod options;
mod outbound;
mod output;
mod packet_id;
mod queue;
mod records;
mod requests;
mod seen_keys;
mod subscriptions;
mod withdraw;

pub use auth::{AuthError, Authenticator};
pub use connection::ConnectCredentials;
pub use error::{
    AckError, ConnectPacketError, ProtocolViolation, PublishError, RequestError, SessionError,
};
pub use event::Event;
pub use options::{
    BacklogPolicy, DEFAULT_HELD_BYTES_LIMIT, DEFAULT_MAXIMUM_PACKET_SIZE, DEFAULT_QUEUE_WINDOW,
    DEFAULT_V311_IN_FLIGHT, Deduplication, LostSession, PublishLimits, SessionOptions,
};
pub use output::Output;
pub use queue::QueueRead;
pub use withdraw::{Unwritten, Withdrawn, announced_alias, take_unwritten_publish};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::packet::{
    Codec, Connect, ConnectProperties, DecodeError, Decoded, Packet, ProtocolVersion, Publish, QoS,
    ReasonCode,
};
use crate::store::{OutboundRecord, SessionMeta, StoreOp, StoredSession};
use aliases::OutAliases;

/// Identifies an inbound message for [`Session::ack`]. QoS 0 messages need no ack.
pub type MessageTag = u64;

/// Identifies a SUBSCRIBE or UNSUBSCRIBE in later [`Event`]s.
pub type RequestId = u64;

/// Identifies a publish accepted by [`Session::publish`] in later [`Event`]s.
pub type PublishId = u64;

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
    /// The priority class of the queue that record is in.
    class: u8,
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
    /// What the client sends: flows in flight, their identifiers, expiries.
    outbound: outbound::OutboundState,
    /// Accepted publishes without an identifier yet, FIFO: the oldest in memory, the rest in
    /// the store.
    queue: queue::Queue,
    /// What arrived from the server: markers, acks in order, held messages, aliases.
    inbound: inbound::InboundState,
    /// SUBSCRIBE and UNSUBSCRIBE: in flight, waiting, granted, in doubt.
    requests: requests::Requests,
    /// Enhanced authentication.
    auth: auth::AuthState,
    /// The session's metadata as last emitted for the store.
    meta: SessionMeta,
    /// Whether `meta` was ever emitted (or loaded): it must reach the store at least once.
    meta_stored: bool,
    next_seq: u64,
    connection: Option<Connection>,
    /// The wall clock as last told, and what stamps it (see clock.rs).
    clock: clock::ClockState,
    /// Whether a CONNACK with Success was ever received (later connects resume the session).
    connected_once: bool,
    /// Whether the client holds session state the server may share: a stored session that
    /// has not expired, or a successful CONNACK in this run [MQTT-3.2.2-4].
    local_state: bool,
    /// The server resumed a session this client has no state for: the next CONNECT starts
    /// clean, so the session begins anew instead of failing forever.
    start_clean: bool,
    /// The outputs: the one being gathered, and how far earlier ones got.
    out: output::OutputState,
    events: VecDeque<Event>,
    /// Where queue records are encoded (records.rs).
    records: records::RecordRoom,
    /// Idempotency keys of messages handled and held (deduplication).
    seen_keys: seen_keys::SeenKeys,
    /// Which queued message holds each latest-value topic's value, and the send allowance.
    backlog: backlog::Backlog,
    /// The queues of the priority classes above 0 (classes.rs); one of them may be in
    /// `queue`'s place while code that handles a queue runs on it.
    lanes: std::collections::BTreeMap<u8, queue::Queue>,
    /// The class of the queue in `queue`'s place: 0, the offline queue, but while
    /// [`Session::with_queue`] runs.
    queue_class: u8,
    /// The class whose queue has a read out.
    read_out: Option<u8>,
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
    let mut buf = bytes.clone();
    match Codec::default().decode_shared(&mut buf) {
        Ok(Decoded::Packet(Packet::Publish(p))) if buf.is_empty() => Ok(p),
        Ok(other) => Err(format!("not one PUBLISH: {other:?}")),
        Err(DecodeError { violation, .. }) => Err(violation.to_string()),
    }
}

impl Session {
    /// A session resumed from what the store held (an empty [`StoredSession`] for a new one).
    /// `now_ms` is the wall-clock time in milliseconds since the UNIX epoch: a stored session
    /// whose expiry has passed is treated as gone on the server ([`Event::SessionExpired`]).
    pub fn new(
        options: SessionOptions,
        mut stored: StoredSession,
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
        let (queue, mut deadlines) = queue::Queue::resume(
            &stored.queue,
            stored.queue_summary,
            options.queue_window,
            corrections,
        )?;
        let (lanes, lane_deadlines) =
            classes::resume_lanes(&stored.class_queues, options.queue_window, corrections)?;
        deadlines.extend(lane_deadlines);
        let mut session = Self {
            outbound: outbound::OutboundState::new(stored.next_seq()),
            options,
            codec: Codec {
                protocol,
                ..Codec::default()
            },
            queue,
            inbound: inbound::InboundState::new(stored.inbound.iter().copied().collect()),
            requests: requests::Requests::default(),
            auth: auth::AuthState::default(),
            meta,
            meta_stored,
            next_seq: stored.next_seq(),
            connection: None,
            clock: clock::ClockState::new(now_ms, stored.next_seq()),
            connected_once: false,
            local_state: meta_stored && !expired,
            start_clean: false,
            out: output::OutputState::default(),
            events: VecDeque::new(),
            records: records::RecordRoom::default(),
            seen_keys: seen_keys::SeenKeys::resume(std::mem::take(&mut stored.seen_keys)),
            backlog: backlog::Backlog::resume(std::mem::take(&mut stored.latest_values)),
            lanes,
            queue_class: 0,
            read_out: None,
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
            if !session.outbound.ids.insert(packet_id) {
                return Err(bad(format!(
                    "packet identifier {packet_id} is in flight twice"
                )));
            }
            session.outbound.by_packet_id.insert(packet_id, seq);
            session.outbound.flows.insert(
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
                    class: 0,
                    record_generation: 0,
                    first_sent_in: 0,
                    reported: false,
                },
            );
        }
        for stored in stored.subscriptions {
            session.load_subscription(stored)?;
        }
        // A session that connected before may have sent up to its last in-flight limit of the
        // oldest queued messages; one that never did, none. Records older than the limit that
        // show a connection (it ended, or was alive) may have sent any of them.
        let connected_before =
            session.meta.alive_until_ms.is_some() || session.meta.disconnected_at_ms.is_some();
        session.outbound.may_have_gone_out = match session.meta.in_flight_limit {
            Some(limit) => u64::from(limit),
            None if meta_stored && connected_before => u64::MAX,
            None => 0,
        };
        for (seq, qos, deadline) in deadlines {
            session.outbound.track_resumed_deadline(seq, qos, deadline);
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

    /// The session's client identifier: the one asked for, or, when none was, the one the
    /// server assigned (empty before it did).
    fn client_id(&self) -> &str {
        match &self.meta.assigned_client_id {
            Some(assigned) if self.options.client_id.is_empty() => assigned,
            _ => &self.options.client_id,
        }
    }

    /// The CONNECT for a new connection (it starts the authenticator, if there is one).
    pub(crate) fn connect_packet(&mut self) -> Result<Connect, AuthError> {
        // An identifier the server assigned names the session to resume.
        let mut connect = Connect::new(self.client_id().to_owned());
        connect.clean_start = self.clean_flag();
        connect.keep_alive = self.options.keep_alive;
        connect.properties = match self.options.protocol {
            ProtocolVersion::V311 => ConnectProperties::default(),
            _ => self.options.properties.clone(),
        };
        connect.will = self.options.will.clone();
        connect.username = self.options.username.clone();
        connect.password = self.options.password.clone();
        self.auth.method = None;
        if self.options.protocol == ProtocolVersion::V311 && self.auth.authenticator.is_some() {
            return Err(AuthError(
                "enhanced authentication needs MQTT 5; the session speaks 3.1.1".to_owned(),
            ));
        }
        if let Some(auth) = self.auth.authenticator.as_mut() {
            connect.properties.authentication_data = auth.start()?;
            connect.properties.authentication_method = Some(auth.method().to_owned());
            self.auth.method = Some(auth.method().to_owned());
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

    fn set_meta(&mut self, meta: SessionMeta) {
        if meta != self.meta || !self.meta_stored {
            self.out.pending.commit.push(StoreOp::SetMeta(meta.clone()));
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
mod backlog_tests;
#[cfg(test)]
mod class_tests;
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
