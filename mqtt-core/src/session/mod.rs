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
//! the client's Receive Maximum (0x93); Topic Aliases both ways; a defined meaning for an ack
//! after a lost connection ([`Session::ack`]); keep alive; SUBSCRIBE/UNSUBSCRIBE; DISCONNECT
//! both ways; session metadata and expiry; enhanced authentication through an
//! [`Authenticator`]; one dispatcher for every packet from the server
//! ([`Session::handle_incoming`]). A model-based property test checks its invariants across
//! random sequences with connection losses and crashes.

mod packet_id;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::packet::{
    AckProperties, Codec, ConnAck, Connect, ConnectProperties, DecodeError, Decoded, Disconnect,
    EncodeError, Packet, PacketType, PubAck, Publish, QoS, ReasonCode, SubAck, Subscribe,
    SubscribeProperties, Subscription, UnsubAck, Unsubscribe, UnsubscribeProperties,
};
use crate::store::{Batch, OutboundRecord, QueuedPublish, SessionMeta, StoreOp, StoredSession};
use packet_id::PacketIds;

/// What the client asks of a session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The client identifier; empty asks the server to assign one.
    pub client_id: String,
    /// Start without the server's session state on the first connection.
    pub clean_start: bool,
    /// Keep alive in seconds.
    pub keep_alive: u16,
    /// CONNECT properties (Session Expiry Interval, Receive Maximum, ...).
    pub properties: ConnectProperties,
    /// Acknowledge inbound QoS 1/2 messages only when the application calls [`Session::ack`];
    /// off, they are acknowledged as they are delivered.
    pub manual_ack: bool,
    /// How long to wait for PINGRESP before the connection counts as dead.
    pub ping_timeout: Duration,
    /// The Will Message, published by the server if the connection ends without DISCONNECT.
    pub will: Option<crate::packet::Will>,
    /// The user name, if any.
    pub username: Option<String>,
    /// The password, if any.
    pub password: Option<Bytes>,
    /// Replace repeated topics by Topic Aliases on the wire, up to the server's Topic Alias
    /// Maximum (least recently used mappings are reused). Stored records and retransmissions
    /// always carry the full topic.
    pub topic_aliases: bool,
}

impl SessionOptions {
    /// Options for `client_id` that resume the server's session (Clean Start 0).
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            clean_start: false,
            keep_alive: 60,
            properties: ConnectProperties::default(),
            manual_ack: false,
            ping_timeout: Duration::from_secs(10),
            will: None,
            username: None,
            password: None,
            topic_aliases: true,
        }
    }
}

/// Identifies an inbound message for [`Session::ack`]. QoS 0 messages need no ack.
pub type DeliveryTag = u64;

/// Identifies a SUBSCRIBE or UNSUBSCRIBE in later [`Event`]s.
pub type RequestId = u64;

/// Enhanced authentication (section 4.12) supplied by the application: SCRAM, Kerberos, a
/// token exchange. The session sends what it returns and checks what the server says.
pub trait Authenticator: Send + std::fmt::Debug {
    /// The Authentication Method, sent in CONNECT and in every AUTH.
    fn method(&self) -> &str;
    /// The Authentication Data to start with, in CONNECT or in a re-authentication.
    fn start(&mut self) -> Result<Option<Bytes>, AuthError>;
    /// The answer to a challenge (AUTH with 0x18 Continue authentication).
    fn challenge(&mut self, data: Option<&Bytes>) -> Result<Option<Bytes>, AuthError>;
    /// The server accepted (CONNACK or AUTH with Success); checks its final data, if any.
    fn success(&mut self, data: Option<&Bytes>) -> Result<(), AuthError>;
}

/// An authenticator's refusal: the exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("enhanced authentication failed: {0}")]
pub struct AuthError(pub String);

/// Identifies a publish accepted by [`Session::publish`] in later [`Event`]s.
pub type DeliveryId = u64;

/// Store operations to commit, then packets to send, in that order.
///
/// The packets may depend on the operations (a PUBLISH on its record, a PUBREL on the record that
/// says PUBREC arrived): sending one before the commit returned `Ok` could make the server hold a
/// message the client would forget in a crash. Drivers commit `commit`, then write `send`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "the store operations must be committed before the packets are sent"]
pub struct Output {
    /// Commit these first (group commit: everything gathered since the last poll).
    pub commit: Batch,
    /// Then send these, in order.
    pub send: Vec<Packet>,
}

/// What the application learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server acknowledged a QoS 1 publish (PUBACK) or completed a QoS 2 one (PUBCOMP).
    Delivered {
        /// The publish.
        id: DeliveryId,
        /// The reason code of PUBACK or PUBCOMP.
        reason: ReasonCode,
    },
    /// The server refused a publish (PUBACK or PUBREC with a reason code of 0x80 or more), or it
    /// could not be sent (it exceeds the server's limits).
    Failed {
        /// The publish.
        id: DeliveryId,
        /// Why.
        reason: ReasonCode,
    },
    /// A message from the server, to hand to the application.
    Message {
        /// What to pass to [`Session::ack`] (QoS 1/2 with manual ack).
        tag: DeliveryTag,
        /// The message, its topic resolved if it came by Topic Alias.
        publish: Publish,
    },
    /// The server accepted the connection.
    Connected {
        /// Whether the server resumed the session.
        session_present: bool,
        /// Everything CONNACK said (limits, Assigned Client Identifier, Server Reference,
        /// Response Information, Reason String, User Properties).
        properties: Box<crate::packet::ConnAckProperties>,
    },
    /// SUBACK: one reason code per subscription, in order (granted QoS, or why it failed).
    Subscribed {
        /// The request.
        id: RequestId,
        /// One per subscription.
        reason_codes: Vec<ReasonCode>,
        /// Reason String and User Properties.
        properties: AckProperties,
    },
    /// UNSUBACK: one reason code per Topic Filter, in order.
    Unsubscribed {
        /// The request.
        id: RequestId,
        /// One per filter.
        reason_codes: Vec<ReasonCode>,
        /// Reason String and User Properties.
        properties: AckProperties,
    },
    /// The connection ended before the server answered a SUBSCRIBE or UNSUBSCRIBE; whether it
    /// took effect is unknown. Requests are not resent on reconnect.
    RequestLost {
        /// The request.
        id: RequestId,
    },
    /// The server closed the connection with DISCONNECT.
    ServerDisconnected {
        /// Its reason code.
        reason: ReasonCode,
        /// Its Reason String.
        reason_string: Option<String>,
        /// Another server to use (with 0x9C Use another server or 0x9D Server moved).
        server_reference: Option<String>,
    },
    /// The session's expiry passed while the client was away (or its interval was 0): the
    /// server no longer has it. [`Event::SessionLost`] follows when anything was dropped.
    SessionExpired,
    /// The server sent no PINGRESP in time: the connection is dead; close it.
    KeepAliveTimeout,
    /// The server refused the connection.
    ConnectionRefused {
        /// Its reason code.
        reason: ReasonCode,
    },
    /// The server had no session although the client had one: QoS 1/2 publishes that were in
    /// flight are sent again as new messages; messages past PUBREC are taken as delivered.
    SessionLost {
        /// How many publishes are sent again.
        resent: usize,
        /// How many PUBREL flows were dropped (the server had received their messages).
        dropped_pubrel: usize,
        /// How many inbound PUBREC markers were dropped.
        dropped_inbound: usize,
    },
}

/// Why a publish was refused at once; nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The packet breaks a rule of the specification (a topic with a wildcard, ...).
    #[error("the publish is invalid: {0}")]
    Invalid(#[from] EncodeError),
    /// The QoS is above the server's Maximum QoS [MQTT-3.2.2-11].
    #[error("QoS {requested:?} is above the server's Maximum QoS {maximum:?}")]
    QosNotSupported {
        /// What was asked.
        requested: QoS,
        /// What the server allows.
        maximum: QoS,
    },
    /// The server does not keep retained messages [MQTT-3.2.2-14].
    #[error("the server does not support retained messages")]
    RetainNotSupported,
}

/// A rule the server broke; the connection must end with DISCONNECT and this reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A packet the client must never receive, or one out of order.
    #[error("{0}")]
    Unexpected(&'static str),
    /// Session Present 1 for a client that asked for a clean start [MQTT-3.2.2-4].
    #[error("the server resumed a session the client did not ask for [MQTT-3.2.2-4]")]
    UnexpectedSession,
    /// More unacknowledged QoS 1/2 publishes than the client's Receive Maximum.
    #[error("the server sent more than {0} unacknowledged QoS 1/2 publishes (Receive Maximum)")]
    ReceiveMaximumExceeded(u16),
    /// AUTH although CONNECT named no Authentication Method [MQTT-4.12.0-6], or a
    /// re-authentication request from the server (only a client starts one).
    #[error("the server sent an AUTH this session did not ask for [MQTT-4.12.0-6]")]
    UnexpectedAuth,
    /// AUTH or CONNACK with another Authentication Method than CONNECT's [MQTT-4.12.0-5].
    #[error("the server answered with another Authentication Method [MQTT-4.12.0-5]")]
    AuthMethodMismatch,
    /// The authenticator refused the server's challenge or final data.
    #[error("{0}")]
    AuthFailed(AuthError),
    /// A Session Expiry Interval in a DISCONNECT from the server [MQTT-3.14.2-2].
    #[error("the server's DISCONNECT carries a Session Expiry Interval [MQTT-3.14.2-2]")]
    ExpiryFromServer,
    /// A SUBACK or UNSUBACK that answers nothing in flight, or with the wrong number of codes.
    #[error("{0}")]
    BadAck(String),
    /// A Topic Alias that is 0, above the client's Topic Alias Maximum, or never mapped.
    #[error("Topic Alias {alias} is invalid: {why}")]
    TopicAliasInvalid {
        /// The alias.
        alias: u16,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl ProtocolViolation {
    /// The reason code to send in DISCONNECT.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::ReceiveMaximumExceeded(_) => ReasonCode::ReceiveMaximumExceeded,
            Self::TopicAliasInvalid { .. } => ReasonCode::TopicAliasInvalid,
            Self::UnexpectedAuth | Self::AuthMethodMismatch => ReasonCode::BadAuthenticationMethod,
            Self::AuthFailed(_) => ReasonCode::NotAuthorized,
            _ => ReasonCode::ProtocolError,
        }
    }
}

/// Why a SUBSCRIBE, UNSUBSCRIBE or DISCONNECT could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// There is no connection to send it on.
    #[error("not connected")]
    NotConnected,
    /// The packet breaks a rule of the specification.
    #[error("the request is invalid: {0}")]
    Invalid(#[from] EncodeError),
    /// CONNACK said the server does not support this.
    #[error("the server does not support {0}")]
    Unsupported(&'static str),
    /// Re-authentication without an authenticator.
    #[error("no authenticator is set")]
    NoAuthenticator,
    /// The authenticator failed to start.
    #[error("{0}")]
    Auth(AuthError),
    /// A Session Expiry Interval of 0 at CONNECT cannot become non-zero at DISCONNECT.
    #[error("the session was opened with Session Expiry Interval 0; DISCONNECT cannot extend it")]
    ExpiryExtended,
}

/// Why [`Session::ack`] refused a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The tag is not a QoS 1/2 message awaiting its ack (acked already, or never delivered).
    #[error("delivery {0} is not awaiting an acknowledgement (acked twice, or not QoS 1/2)")]
    NotAwaiting(DeliveryTag),
}

/// Why a stored session cannot be resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A stored PUBLISH does not decode.
    #[error("stored outbound record #{seq} is not a valid QoS 1/2 PUBLISH: {reason}")]
    BadRecord {
        /// Its sequence number.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// PUBLISH sent (or to send); PUBACK or PUBREC awaited.
    Published,
    /// PUBREC arrived, PUBREL sent (or to send); PUBCOMP awaited.
    Released,
}

#[derive(Debug, Clone, Copy)]
struct Inbound {
    tag: DeliveryTag,
    packet_id: u16,
    qos: QoS,
    acked: bool,
}

#[derive(Debug, Clone)]
struct Flow {
    /// The delivery id: the sequence number the PUBLISH was first stored under.
    id: DeliveryId,
    packet_id: u16,
    /// The PUBLISH with its packet identifier and full topic, DUP clear.
    publish: Publish,
    stage: Stage,
    /// Whether its current packet went out on the current connection.
    sent: bool,
    /// Whether the next PUBLISH is a retransmission (DUP 1) rather than a first send.
    retransmit: bool,
}

/// What the server announced in CONNACK, and the keep alive, for the current connection.
#[derive(Debug)]
struct Connection {
    send_quota: u16,
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
}

/// Outbound Topic Alias mappings of one connection: assigned on first use, the least recently
/// used one reassigned when all the server allows are taken.
#[derive(Debug, Default)]
struct OutAliases {
    maximum: u16,
    by_topic: HashMap<String, (u16, u64)>,
    clock: u64,
}

impl OutAliases {
    /// Rewrites a first transmission to use an alias: the topic alone maps it, an empty topic
    /// reuses the mapping [MQTT-3.3.2-9: never above the server's maximum].
    fn apply(&mut self, publish: &mut Publish) {
        if self.maximum == 0 || publish.topic.is_empty() {
            return;
        }
        self.clock += 1;
        if let Some((alias, used)) = self.by_topic.get_mut(&publish.topic) {
            *used = self.clock;
            publish.properties.topic_alias = Some(*alias);
            publish.topic.clear();
            return;
        }
        let alias = if self.by_topic.len() < usize::from(self.maximum) {
            // Aliases 1..=len are taken, so the next is free and within the maximum.
            (self.by_topic.len() + 1) as u16
        } else {
            let victim = self
                .by_topic
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(topic, (alias, _))| (topic.clone(), *alias));
            match victim {
                Some((topic, alias)) => {
                    self.by_topic.remove(&topic);
                    alias
                }
                None => return,
            }
        };
        self.by_topic
            .insert(publish.topic.clone(), (alias, self.clock));
        publish.properties.topic_alias = Some(alias);
    }
}

/// A SUBSCRIBE or UNSUBSCRIBE awaiting its answer.
#[derive(Debug, Clone, Copy)]
struct Request {
    id: RequestId,
    kind: PacketType,
    filters: usize,
}

/// One client session: what is in flight, what waits, and the current connection's limits.
#[derive(Debug)]
pub struct Session {
    options: SessionOptions,
    codec: Codec,
    /// Outbound flows by store sequence number: the order of retransmission.
    flows: BTreeMap<u64, Flow>,
    /// Sequence number of each in-flight packet identifier.
    by_packet_id: HashMap<u16, u64>,
    ids: PacketIds,
    /// Accepted publishes without an identifier yet, FIFO, with their delivery ids.
    queue: VecDeque<(DeliveryId, Publish)>,
    /// Inbound QoS 2 PUBLISH answered with PUBREC (durable markers), awaiting PUBREL.
    inbound_pubrec: BTreeSet<u16>,
    /// Inbound QoS 1/2 messages of the current connection, in arrival order: acks go out in
    /// this order [MQTT-4.6.0-2, MQTT-4.6.0-3].
    acks: VecDeque<Inbound>,
    /// Inbound messages delivered on an earlier connection and not yet acked, by tag.
    stale: HashMap<DeliveryTag, Inbound>,
    /// Markers written on this connection (PUBREC sent, PUBREL awaited): they count against the
    /// client's Receive Maximum with the entries of `acks`.
    pubrec_this_connection: BTreeSet<u16>,
    /// Topic Alias mappings the server set on this connection.
    aliases_in: HashMap<u16, String>,
    next_tag: DeliveryTag,
    /// SUBSCRIBE/UNSUBSCRIBE in flight, by packet identifier.
    requests: HashMap<u16, Request>,
    /// SUBSCRIBE/UNSUBSCRIBE waiting for a free packet identifier.
    requests_waiting: VecDeque<(RequestId, Packet)>,
    next_request: RequestId,
    /// Enhanced authentication, when the application supplied it.
    authenticator: Option<Box<dyn Authenticator>>,
    /// The session's metadata as last emitted for the store.
    meta: SessionMeta,
    /// Whether `meta` was ever emitted (or loaded): it must reach the store at least once.
    meta_stored: bool,
    next_seq: u64,
    connection: Option<Connection>,
    /// Whether a CONNACK with Success was ever received (later connects resume the session).
    connected_once: bool,
    pending: Output,
    events: VecDeque<Event>,
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
        let meta = stored.meta.clone().unwrap_or_else(|| SessionMeta {
            session_expiry_interval: options.properties.session_expiry_interval.unwrap_or(0),
            ..SessionMeta::default()
        });
        let mut session = Self {
            options,
            codec: Codec::default(),
            flows: BTreeMap::new(),
            by_packet_id: HashMap::new(),
            ids: PacketIds::default(),
            queue: VecDeque::new(),
            inbound_pubrec: stored.inbound.iter().copied().collect(),
            acks: VecDeque::new(),
            stale: HashMap::new(),
            pubrec_this_connection: BTreeSet::new(),
            aliases_in: HashMap::new(),
            next_tag: 1,
            requests: HashMap::new(),
            requests_waiting: VecDeque::new(),
            next_request: 1,
            authenticator: None,
            meta,
            meta_stored,
            next_seq: stored.next_seq(),
            connection: None,
            connected_once: false,
            pending: Output::default(),
            events: VecDeque::new(),
        };
        // Flows in PUBREL stage carry no PUBLISH any more; keep a placeholder without payload.
        for (seq, record) in stored.outbound {
            let bad = |reason: String| SessionError::BadRecord { seq, reason };
            let (packet_id, publish, stage) = match record {
                OutboundRecord::Publish(bytes) => {
                    let publish = decode_publish(&bytes).map_err(bad)?;
                    if publish.qos == QoS::AtMostOnce {
                        return Err(bad("QoS 0 has no flow to resume".to_owned()));
                    }
                    (publish.packet_id, publish, Stage::Published)
                }
                OutboundRecord::PubRel { packet_id } => {
                    let mut placeholder = Publish::new("", Bytes::new());
                    placeholder.qos = QoS::ExactlyOnce;
                    placeholder.packet_id = packet_id;
                    (packet_id, placeholder, Stage::Released)
                }
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
                    publish,
                    stage,
                    sent: false,
                    // It may have gone out before the restart.
                    retransmit: true,
                },
            );
        }
        for (seq, queued) in stored.queue {
            let mut publish = decode_publish(&queued.packet)
                .map_err(|reason| SessionError::BadRecord { seq, reason })?;
            publish.qos = queued.qos;
            session.queue.push_back((seq, publish));
        }
        if expired {
            session.events.push_back(Event::SessionExpired);
            session.session_lost();
        }
        Ok(session)
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Uses enhanced authentication: its method and data go in CONNECT, and AUTH from the
    /// server is answered through it.
    pub fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator>) {
        self.authenticator = Some(authenticator);
    }

    /// The CONNECT to send on a new connection (it starts the authenticator, if there is one).
    pub fn connect_packet(&mut self) -> Result<Connect, AuthError> {
        // An identifier the server assigned names the session to resume.
        let client_id = match &self.meta.assigned_client_id {
            Some(assigned) if self.options.client_id.is_empty() => assigned.clone(),
            _ => self.options.client_id.clone(),
        };
        let mut connect = Connect::new(client_id);
        connect.clean_start = self.options.clean_start && !self.connected_once;
        connect.keep_alive = self.options.keep_alive;
        connect.properties = self.options.properties.clone();
        connect.will = self.options.will.clone();
        connect.username = self.options.username.clone();
        connect.password = self.options.password.clone();
        if let Some(auth) = self.authenticator.as_mut() {
            connect.properties.authentication_data = auth.start()?;
            connect.properties.authentication_method = Some(auth.method().to_owned());
        }
        Ok(connect)
    }

    /// Checks that a server packet names the authenticator's method and returns the
    /// authenticator.
    fn authenticator_for(
        &mut self,
        method: Option<&str>,
    ) -> Result<&mut Box<dyn Authenticator>, ProtocolViolation> {
        let auth = self
            .authenticator
            .as_mut()
            .ok_or(ProtocolViolation::UnexpectedAuth)?;
        if method != Some(auth.method()) {
            return Err(ProtocolViolation::AuthMethodMismatch);
        }
        Ok(auth)
    }

    fn auth_packet(reason_code: ReasonCode, method: String, data: Option<Bytes>) -> Packet {
        let mut packet = crate::packet::Auth {
            reason_code,
            properties: crate::packet::AuthProperties::default(),
        };
        packet.properties.authentication_method = Some(method);
        packet.properties.authentication_data = data;
        Packet::Auth(packet)
    }

    /// AUTH from the server: a challenge is answered with the authenticator's response
    /// [MQTT-4.12.0-3]; Success ends a re-authentication.
    pub fn handle_auth(&mut self, packet: crate::packet::Auth) -> Result<(), ProtocolViolation> {
        let props = packet.properties;
        let auth = self.authenticator_for(props.authentication_method.as_deref())?;
        match packet.reason_code {
            ReasonCode::ContinueAuthentication => {
                let data = auth
                    .challenge(props.authentication_data.as_ref())
                    .map_err(ProtocolViolation::AuthFailed)?;
                let method = auth.method().to_owned();
                self.pending.send.push(Self::auth_packet(
                    ReasonCode::ContinueAuthentication,
                    method,
                    data,
                ));
                Ok(())
            }
            ReasonCode::Success => auth
                .success(props.authentication_data.as_ref())
                .map_err(ProtocolViolation::AuthFailed),
            _ => Err(ProtocolViolation::UnexpectedAuth),
        }
    }

    /// Starts a re-authentication on the current connection [MQTT-4.12.1-1].
    pub fn reauthenticate(&mut self) -> Result<(), RequestError> {
        if self.connection.is_none() {
            return Err(RequestError::NotConnected);
        }
        let auth = self
            .authenticator
            .as_mut()
            .ok_or(RequestError::NoAuthenticator)?;
        let data = auth.start().map_err(RequestError::Auth)?;
        let method = auth.method().to_owned();
        self.pending
            .send
            .push(Self::auth_packet(ReasonCode::ReAuthenticate, method, data));
        Ok(())
    }

    /// Accepts a publish from the application and returns its delivery id.
    ///
    /// QoS 1/2: the publish is stored with the next [`Output`]; it is sent at once when a
    /// connection, a packet identifier and send quota are there, and otherwise waits in the
    /// durable queue, behind what waits already. QoS 0 is sent only on a connection (nothing is
    /// stored); without one it waits in the queue like the others.
    pub fn publish(&mut self, mut publish: Publish) -> Result<DeliveryId, PublishError> {
        publish.dup = false;
        publish.packet_id = 0;
        // Aliases are connection state: the session keeps full topics and aliases on the wire.
        publish.properties.topic_alias = None;
        // The packet must be valid as it will be sent: check with a stand-in identifier.
        let mut probe = publish.clone();
        if probe.qos != QoS::AtMostOnce {
            probe.packet_id = 1;
        }
        self.codec.encoded_len(&Packet::Publish(probe))?;
        if let Some(conn) = &self.connection {
            if publish.qos > conn.maximum_qos {
                return Err(PublishError::QosNotSupported {
                    requested: publish.qos,
                    maximum: conn.maximum_qos,
                });
            }
            if publish.retain && !conn.retain_available {
                return Err(PublishError::RetainNotSupported);
            }
        }
        let id = self.next_seq();
        if publish.qos == QoS::AtMostOnce && self.connection.is_some() && self.queue.is_empty() {
            self.send_publish(publish);
            return Ok(id);
        }
        let mut stored = publish.clone();
        stored.qos = QoS::AtMostOnce;
        let packet = encode(&stored)?;
        self.pending.commit.push(StoreOp::PushQueue {
            seq: id,
            message: QueuedPublish {
                qos: publish.qos,
                packet,
            },
        });
        self.queue.push_back((id, publish));
        self.drain();
        Ok(id)
    }

    /// Sends what waits, oldest first, while the connection and its quota allow: first flows
    /// not yet sent on this connection (after a reconnect), then the queue.
    fn drain(&mut self) {
        // SUBSCRIBE and UNSUBSCRIBE wait for identifiers only, never for send quota
        // [MQTT-3.3.4-8].
        while !self.requests_waiting.is_empty() && self.connection.is_some() {
            let Some(packet_id) = self.ids.allocate() else {
                break;
            };
            if let Some((id, packet)) = self.requests_waiting.pop_front() {
                self.send_request(id, packet_id, packet);
            }
        }
        let Some(conn) = self.connection.as_mut() else {
            return;
        };
        for flow in self.flows.values_mut().filter(|f| !f.sent) {
            if conn.send_quota == 0 {
                return;
            }
            conn.send_quota -= 1;
            flow.sent = true;
            self.pending.send.push(match flow.stage {
                Stage::Published => {
                    let mut again = flow.publish.clone();
                    again.dup = flow.retransmit;
                    Packet::Publish(again)
                }
                Stage::Released => Packet::PubRel(PubAck::new(flow.packet_id)),
            });
            flow.retransmit = true;
        }
        while let Some((_, front)) = self.queue.front() {
            if front.qos == QoS::AtMostOnce {
                if let Some((id, publish)) = self.queue.pop_front() {
                    self.pending.commit.push(StoreOp::RemoveQueue { seq: id });
                    if self
                        .codec
                        .encoded_len(&Packet::Publish(publish.clone()))
                        .is_ok()
                    {
                        self.send_publish(publish);
                    }
                }
                continue;
            }
            let Some(conn) = self.connection.as_mut() else {
                return;
            };
            if conn.send_quota == 0 {
                return;
            }
            let Some(packet_id) = self.ids.allocate() else {
                return;
            };
            let Some((id, mut publish)) = self.queue.pop_front() else {
                return;
            };
            publish.packet_id = packet_id;
            // Checked against the server's limits as they are now; the record is the packet.
            let fits = self.codec.encoded_len(&Packet::Publish(publish.clone()));
            let record = match fits.and_then(|_| encode(&publish)) {
                Ok(bytes) => bytes,
                Err(_) => {
                    // Accepted when queued; it can only fail now against limits that changed.
                    self.ids.remove(packet_id);
                    self.pending.commit.push(StoreOp::RemoveQueue { seq: id });
                    self.events.push_back(Event::Failed {
                        id,
                        reason: ReasonCode::PacketTooLarge,
                    });
                    continue;
                }
            };
            if let Some(conn) = self.connection.as_mut() {
                conn.send_quota -= 1;
            }
            // The flow keeps its delivery id as its sequence number: it orders retransmission
            // by the order of acceptance, and the queue record goes in the same batch.
            self.pending.commit.push(StoreOp::RemoveQueue { seq: id });
            self.pending.commit.push(StoreOp::PutOutbound {
                seq: id,
                record: OutboundRecord::Publish(record),
            });
            self.send_publish(publish.clone());
            self.by_packet_id.insert(packet_id, id);
            self.flows.insert(
                id,
                Flow {
                    id,
                    packet_id,
                    publish,
                    stage: Stage::Published,
                    sent: true,
                    retransmit: true,
                },
            );
        }
    }

    /// Puts a first transmission on the wire, with a Topic Alias when one helps.
    fn send_publish(&mut self, mut publish: Publish) {
        if let Some(conn) = self.connection.as_mut() {
            conn.aliases.apply(&mut publish);
        }
        self.pending.send.push(Packet::Publish(publish));
    }

    /// Handles CONNACK for the connection being made.
    pub fn handle_connack(
        &mut self,
        connack: &ConnAck,
        now: Instant,
    ) -> Result<(), ProtocolViolation> {
        if connack.reason_code.is_error() {
            self.events.push_back(Event::ConnectionRefused {
                reason: connack.reason_code,
            });
            return Ok(());
        }
        if self.authenticator.is_some() {
            let props = &connack.properties;
            let data = props.authentication_data.clone();
            self.authenticator_for(props.authentication_method.as_deref())?
                .success(data.as_ref())
                .map_err(ProtocolViolation::AuthFailed)?;
        } else if connack.properties.authentication_method.is_some() {
            return Err(ProtocolViolation::UnexpectedAuth);
        }
        let asked_clean = self.options.clean_start && !self.connected_once;
        if connack.session_present && asked_clean {
            return Err(ProtocolViolation::UnexpectedSession);
        }
        let props = &connack.properties;
        self.connection = Some(Connection {
            send_quota: props.receive_maximum.unwrap_or(u16::MAX),
            maximum_qos: props.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: props.retain_available.unwrap_or(true),
            wildcards_available: props.wildcard_subscription_available.unwrap_or(true),
            subscription_ids_available: props.subscription_identifiers_available.unwrap_or(true),
            shared_available: props.shared_subscription_available.unwrap_or(true),
            // The server's keep alive replaces the client's [MQTT-3.2.2-21].
            keep_alive: Duration::from_secs(u64::from(
                props.server_keep_alive.unwrap_or(self.options.keep_alive),
            )),
            last_sent: now,
            ping_sent: None,
            aliases: OutAliases {
                maximum: if self.options.topic_aliases {
                    props.topic_alias_maximum.unwrap_or(0)
                } else {
                    0
                },
                ..OutAliases::default()
            },
        });
        // The metadata the session keeps: the expiry in force (the server's, if it set one),
        // the identifier it assigned, and that a connection is up.
        let meta = SessionMeta {
            session_expiry_interval: props
                .session_expiry_interval
                .unwrap_or(self.options.properties.session_expiry_interval.unwrap_or(0)),
            disconnected_at_ms: None,
            assigned_client_id: props
                .assigned_client_identifier
                .clone()
                .or_else(|| self.meta.assigned_client_id.clone()),
        };
        self.set_meta(meta);
        self.codec.max_outgoing_packet_size = props.maximum_packet_size;
        self.connected_once = true;
        self.retire_acks();
        self.pubrec_this_connection.clear();
        self.aliases_in.clear();
        for flow in self.flows.values_mut() {
            flow.sent = false;
        }
        if !connack.session_present {
            self.session_lost();
        }
        self.events.push_back(Event::Connected {
            session_present: connack.session_present,
            properties: Box::new(connack.properties.clone()),
        });
        self.drain();
        Ok(())
    }

    /// The server has no session: resend PUBLISH flows as new messages, drop PUBREL flows and
    /// inbound markers (the default policy), and say so.
    fn session_lost(&mut self) {
        let released: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, f)| f.stage == Stage::Released)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &released {
            if let Some(flow) = self.flows.remove(seq) {
                self.ids.remove(flow.packet_id);
                self.by_packet_id.remove(&flow.packet_id);
                self.pending
                    .commit
                    .push(StoreOp::RemoveOutbound { seq: *seq });
                // PUBREC had arrived: the server took the message.
                self.events.push_back(Event::Delivered {
                    id: flow.id,
                    reason: ReasonCode::Success,
                });
            }
        }
        // The server forgot its messages too: a late ack must not write a marker that would
        // swallow a new message reusing the identifier.
        self.stale.clear();
        let dropped_inbound = self.inbound_pubrec.len();
        for packet_id in std::mem::take(&mut self.inbound_pubrec) {
            self.pending
                .commit
                .push(StoreOp::RemoveInbound { packet_id });
        }
        let resent = self.flows.len();
        if resent + released.len() + dropped_inbound > 0 {
            self.events.push_back(Event::SessionLost {
                resent,
                dropped_pubrel: released.len(),
                dropped_inbound,
            });
        }
        // The server has never seen them: they go out as first transmissions, DUP 0.
        for flow in self.flows.values_mut() {
            flow.retransmit = false;
        }
    }

    /// Finds the flow of an acknowledged packet identifier in the expected stage.
    fn flow_for(&self, packet_id: u16, stage: Stage) -> Option<u64> {
        let seq = *self.by_packet_id.get(&packet_id)?;
        let flow = self.flows.get(&seq)?;
        (flow.stage == stage && flow.sent).then_some(seq)
    }

    /// Ends a flow: its record goes, its identifier and its send quota come back.
    fn finish(&mut self, seq: u64, event: Event) {
        if let Some(flow) = self.flows.remove(&seq) {
            self.ids.remove(flow.packet_id);
            self.by_packet_id.remove(&flow.packet_id);
            self.pending.commit.push(StoreOp::RemoveOutbound { seq });
            if let Some(conn) = self.connection.as_mut() {
                conn.send_quota = conn.send_quota.saturating_add(1);
            }
            self.events.push_back(event);
            self.drain();
        }
    }

    /// PUBACK: a QoS 1 flow ends, delivered or refused by its reason code. An identifier with no
    /// QoS 1 flow awaiting PUBACK is ignored (the server repeats itself after a reconnect).
    pub fn handle_puback(&mut self, ack: &PubAck) {
        let Some(seq) = self.flow_for(ack.packet_id, Stage::Published) else {
            return;
        };
        if self.flows.get(&seq).map(|f| f.publish.qos) != Some(QoS::AtLeastOnce) {
            return;
        }
        let event = if ack.reason_code.is_error() {
            Event::Failed {
                id: seq,
                reason: ack.reason_code,
            }
        } else {
            Event::Delivered {
                id: seq,
                reason: ack.reason_code,
            }
        };
        self.finish(seq, event);
    }

    /// PUBREC: a QoS 2 flow moves to PUBREL, stored under a new sequence number so that PUBREL
    /// records keep the order PUBREC arrived in [MQTT-4.6.0-4]; with an error reason code the
    /// flow ends and no PUBREL follows. An unknown identifier is answered with PUBREL 0x92.
    pub fn handle_pubrec(&mut self, rec: &PubAck) {
        let Some(seq) = self.flow_for(rec.packet_id, Stage::Published) else {
            if self.flow_for(rec.packet_id, Stage::Released).is_some() {
                // A repeated PUBREC: the PUBREL it asks for is already stored; send it again.
                self.pending
                    .send
                    .push(Packet::PubRel(PubAck::new(rec.packet_id)));
            } else if self.connection.is_some() {
                let mut rel = PubAck::new(rec.packet_id);
                rel.reason_code = ReasonCode::PacketIdentifierNotFound;
                self.pending.send.push(Packet::PubRel(rel));
            }
            return;
        };
        if rec.reason_code.is_error() {
            self.finish(
                seq,
                Event::Failed {
                    id: seq,
                    reason: rec.reason_code,
                },
            );
            return;
        }
        let new_seq = self.next_seq();
        let Some(mut flow) = self.flows.remove(&seq) else {
            return;
        };
        flow.stage = Stage::Released;
        flow.publish.payload = Bytes::new();
        self.by_packet_id.insert(flow.packet_id, new_seq);
        self.pending.commit.push(StoreOp::RemoveOutbound { seq });
        self.pending.commit.push(StoreOp::PutOutbound {
            seq: new_seq,
            record: OutboundRecord::PubRel {
                packet_id: flow.packet_id,
            },
        });
        self.pending
            .send
            .push(Packet::PubRel(PubAck::new(flow.packet_id)));
        self.flows.insert(new_seq, flow);
    }

    /// PUBCOMP: a QoS 2 flow ends. An identifier with no flow awaiting PUBCOMP is ignored.
    pub fn handle_pubcomp(&mut self, comp: &PubAck) {
        let Some(seq) = self.flow_for(comp.packet_id, Stage::Released) else {
            return;
        };
        let id = self.flows.get(&seq).map_or(seq, |f| f.id);
        let event = if comp.reason_code.is_error() {
            Event::Failed {
                id,
                reason: comp.reason_code,
            }
        } else {
            Event::Delivered {
                id,
                reason: comp.reason_code,
            }
        };
        self.finish(seq, event);
    }

    /// The connection is gone: its quota goes with it; flows and the queue stay, to be sent
    /// again on the next connection. Store operations not yet polled are kept; packets are not.
    ///
    /// `now_ms` (milliseconds since the UNIX epoch) is stored as the moment the connection
    /// ended, from which the session's expiry counts. With a Session Expiry Interval of 0 the
    /// server ends the session now, and so does the client ([`Event::SessionExpired`]).
    pub fn connection_lost(&mut self, now_ms: u64) {
        if self.connection.take().is_none() {
            return;
        }
        self.pending.send.clear();
        self.retire_acks();
        for (packet_id, request) in std::mem::take(&mut self.requests) {
            self.ids.remove(packet_id);
            self.events.push_back(Event::RequestLost { id: request.id });
        }
        for (id, _) in std::mem::take(&mut self.requests_waiting) {
            self.events.push_back(Event::RequestLost { id });
        }
        let mut meta = self.meta.clone();
        meta.disconnected_at_ms = Some(now_ms);
        self.set_meta(meta);
        if self.meta.session_expiry_interval == 0 {
            self.events.push_back(Event::SessionExpired);
            self.session_lost();
        }
        for flow in self.flows.values_mut() {
            flow.sent = false;
        }
    }

    /// Whether a connection is up (CONNACK with Success received, not lost since).
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// Handles a PUBLISH from the server: resolves its Topic Alias, enforces the client's
    /// Receive Maximum, recognises a QoS 2 message already acknowledged (PUBREC again, not
    /// delivered twice [MQTT-4.3.3-10]), and delivers the rest as [`Event::Message`].
    pub fn handle_publish(&mut self, mut publish: Publish) -> Result<(), ProtocolViolation> {
        self.resolve_alias(&mut publish)?;
        if publish.qos == QoS::AtMostOnce {
            self.events.push_back(Event::Message { tag: 0, publish });
            return Ok(());
        }
        let packet_id = publish.packet_id;
        if publish.qos == QoS::ExactlyOnce {
            if self
                .acks
                .iter()
                .any(|e| e.packet_id == packet_id && e.qos == QoS::ExactlyOnce)
            {
                // Delivered on this connection, its PUBREC not sent yet: it follows the ack, in
                // arrival order.
                return Ok(());
            }
            if self.inbound_pubrec.contains(&packet_id) {
                // Acknowledged before: answer again, never deliver twice.
                self.pending
                    .send
                    .push(Packet::PubRec(PubAck::new(packet_id)));
                return Ok(());
            }
            let stale = self
                .stale
                .values()
                .find(|e| e.packet_id == packet_id && e.qos == QoS::ExactlyOnce)
                .map(|e| e.tag);
            if let Some(entry) = stale.and_then(|tag| self.stale.remove(&tag)) {
                // Delivered on an earlier connection, ack still to come: bind it to this one.
                self.check_receive_maximum()?;
                self.acks.push_back(entry);
                return Ok(());
            }
        }
        self.check_receive_maximum()?;
        let tag = self.next_tag;
        self.next_tag += 1;
        self.acks.push_back(Inbound {
            tag,
            packet_id,
            qos: publish.qos,
            acked: false,
        });
        self.events.push_back(Event::Message { tag, publish });
        if !self.options.manual_ack {
            // Acknowledged as delivered; `ack` cannot refuse a tag just pushed.
            let _ = self.ack(tag);
        }
        Ok(())
    }

    fn check_receive_maximum(&self) -> Result<(), ProtocolViolation> {
        let maximum = self.options.properties.receive_maximum.unwrap_or(u16::MAX);
        if self.acks.len() + self.pubrec_this_connection.len() >= usize::from(maximum) {
            return Err(ProtocolViolation::ReceiveMaximumExceeded(maximum));
        }
        Ok(())
    }

    fn resolve_alias(&mut self, publish: &mut Publish) -> Result<(), ProtocolViolation> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        let maximum = self.options.properties.topic_alias_maximum.unwrap_or(0);
        if alias == 0 || alias > maximum {
            return Err(ProtocolViolation::TopicAliasInvalid {
                alias,
                why: "it is 0 or above the client's Topic Alias Maximum [MQTT-3.3.2-10]",
            });
        }
        if publish.topic.is_empty() {
            publish.topic = self.aliases_in.get(&alias).cloned().ok_or(
                ProtocolViolation::TopicAliasInvalid {
                    alias,
                    why: "it was never mapped on this connection",
                },
            )?;
        } else {
            self.aliases_in.insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    /// Acknowledges an inbound QoS 1/2 message.
    ///
    /// Acks go on the wire in the order the messages arrived [MQTT-4.6.0-2, MQTT-4.6.0-3]: an
    /// ack given early waits until the messages before it are acked too ([`Session::acks_waiting`]
    /// counts them). For QoS 2 the "PUBREC sent" marker is committed with the next [`Output`],
    /// before PUBREC goes out and even while PUBREC waits its turn, so from then on a redelivery
    /// (after a crash, too) is answered, never delivered again.
    ///
    /// An ack for a message of an earlier connection (the connection dropped before the ack) is
    /// defined as follows. QoS 2: the marker is committed, so the server's redelivery is answered
    /// with PUBREC and never delivered again. QoS 1: nothing is sent; the server redelivers the
    /// message as a new one, which is delivered again (QoS 1 is at least once).
    pub fn ack(&mut self, tag: DeliveryTag) -> Result<(), AckError> {
        if let Some(entry) = self.stale.remove(&tag) {
            if entry.qos == QoS::ExactlyOnce && self.inbound_pubrec.insert(entry.packet_id) {
                self.pending.commit.push(StoreOp::PutInbound {
                    packet_id: entry.packet_id,
                });
            }
            return Ok(());
        }
        let entry = self
            .acks
            .iter_mut()
            .find(|e| e.tag == tag && !e.acked)
            .ok_or(AckError::NotAwaiting(tag))?;
        entry.acked = true;
        let (qos, packet_id) = (entry.qos, entry.packet_id);
        // The ack is durable with the next commit, even while its PUBREC waits its turn: a
        // crash after this point never delivers the message again.
        if qos == QoS::ExactlyOnce && self.inbound_pubrec.insert(packet_id) {
            self.pending.commit.push(StoreOp::PutInbound { packet_id });
        }
        while self.acks.front().is_some_and(|e| e.acked) {
            let Some(entry) = self.acks.pop_front() else {
                break;
            };
            match entry.qos {
                QoS::ExactlyOnce => {
                    self.pubrec_this_connection.insert(entry.packet_id);
                    self.pending
                        .send
                        .push(Packet::PubRec(PubAck::new(entry.packet_id)));
                }
                _ => self
                    .pending
                    .send
                    .push(Packet::PubAck(PubAck::new(entry.packet_id))),
            }
        }
        Ok(())
    }

    /// Ends the ordering of this connection's acks: those not given yet wait in `stale` (see
    /// [`Session::ack`]); QoS 2 acks given but held back get their marker, so the server's
    /// redelivery is answered and not delivered again.
    fn retire_acks(&mut self) {
        for entry in std::mem::take(&mut self.acks) {
            if !entry.acked {
                self.stale.insert(entry.tag, entry);
            } else if entry.qos == QoS::ExactlyOnce && self.inbound_pubrec.insert(entry.packet_id) {
                self.pending.commit.push(StoreOp::PutInbound {
                    packet_id: entry.packet_id,
                });
            }
        }
    }

    /// Acks given but held back behind an older message not yet acked.
    pub fn acks_waiting(&self) -> usize {
        self.acks.iter().filter(|e| e.acked).count()
    }

    /// PUBREL for an inbound QoS 2 message: the marker's removal is committed before PUBCOMP
    /// goes out, so a crash in between cannot leave a marker that would swallow a new message
    /// reusing the identifier. An unknown identifier is answered with PUBCOMP 0x92.
    pub fn handle_pubrel(&mut self, rel: &PubAck) {
        let mut comp = PubAck::new(rel.packet_id);
        if self.inbound_pubrec.remove(&rel.packet_id) {
            self.pubrec_this_connection.remove(&rel.packet_id);
            self.pending.commit.push(StoreOp::RemoveInbound {
                packet_id: rel.packet_id,
            });
        } else {
            comp.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        self.pending.send.push(Packet::PubComp(comp));
    }

    /// QoS 1/2 publishes in flight (PUBLISH or PUBREL awaiting its answer).
    pub fn in_flight(&self) -> usize {
        self.flows.len()
    }

    /// Publishes accepted and waiting for an identifier, a connection or send quota.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Store operations to commit and then packets to send, gathered since the last call;
    /// `None` when there is nothing.
    ///
    /// `now` is when the driver will send the packets: keep alive counts from it.
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        if self.pending.commit.is_empty() && self.pending.send.is_empty() {
            return None;
        }
        if let Some(conn) = self.connection.as_mut()
            && !self.pending.send.is_empty()
        {
            conn.last_sent = now;
        }
        Some(std::mem::take(&mut self.pending))
    }

    fn set_meta(&mut self, meta: SessionMeta) {
        if meta != self.meta || !self.meta_stored {
            self.pending.commit.push(StoreOp::SetMeta(meta.clone()));
            self.meta_stored = true;
        }
        self.meta = meta;
    }

    /// When [`Session::handle_timeout`] must next be called: the keep alive deadline, or the
    /// PINGRESP deadline while a PINGREQ is outstanding. `None` without a connection or with keep
    /// alive off.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn = self.connection.as_ref()?;
        if conn.keep_alive.is_zero() {
            return None;
        }
        Some(match conn.ping_sent {
            Some(sent) => sent + self.options.ping_timeout,
            None => conn.last_sent + conn.keep_alive,
        })
    }

    /// Sends PINGREQ when nothing was sent for the keep alive interval [MQTT-3.1.2-22]; reports
    /// [`Event::KeepAliveTimeout`] when PINGRESP does not come within the ping timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ping_timeout = self.options.ping_timeout;
        let Some(conn) = self.connection.as_mut() else {
            return;
        };
        if conn.keep_alive.is_zero() {
            return;
        }
        match conn.ping_sent {
            Some(sent) if now >= sent + ping_timeout => {
                self.events.push_back(Event::KeepAliveTimeout);
            }
            Some(_) => {}
            None if now >= conn.last_sent + conn.keep_alive => {
                conn.ping_sent = Some(now);
                self.pending.send.push(Packet::PingReq);
            }
            None => {}
        }
    }

    fn send_request(&mut self, id: RequestId, packet_id: u16, mut packet: Packet) {
        let (kind, filters) = match &mut packet {
            Packet::Subscribe(s) => {
                s.packet_id = packet_id;
                (PacketType::Subscribe, s.subscriptions.len())
            }
            Packet::Unsubscribe(u) => {
                u.packet_id = packet_id;
                (PacketType::Unsubscribe, u.filters.len())
            }
            _ => return,
        };
        self.requests
            .insert(packet_id, Request { id, kind, filters });
        self.pending.send.push(packet);
    }

    fn request(&mut self, packet: Packet) -> Result<RequestId, RequestError> {
        if self.connection.is_none() {
            return Err(RequestError::NotConnected);
        }
        // Checked as it will be sent, with a stand-in identifier.
        self.codec.encoded_len(&packet)?;
        let id = self.next_request;
        self.next_request += 1;
        match self.ids.allocate() {
            Some(packet_id) => self.send_request(id, packet_id, packet),
            // Every identifier is in flight: wait for one instead of failing.
            None => self.requests_waiting.push_back((id, packet)),
        }
        Ok(id)
    }

    /// Sends SUBSCRIBE; [`Event::Subscribed`] carries the server's answer. Refuses locally what
    /// CONNACK said the server does not support: wildcards, Subscription Identifiers, shared
    /// subscriptions.
    pub fn subscribe(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<RequestId, RequestError> {
        if let Some(conn) = &self.connection {
            if !conn.subscription_ids_available && properties.subscription_identifier.is_some() {
                return Err(RequestError::Unsupported("Subscription Identifiers"));
            }
            for s in &subscriptions {
                let shared = crate::packet::is_shared_subscription(&s.filter);
                if shared && !conn.shared_available {
                    return Err(RequestError::Unsupported("shared subscriptions"));
                }
                if s.filter.contains(['+', '#']) && !conn.wildcards_available {
                    return Err(RequestError::Unsupported("wildcard subscriptions"));
                }
            }
        }
        self.request(Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties,
            subscriptions,
        }))
    }

    /// Sends UNSUBSCRIBE; [`Event::Unsubscribed`] carries the server's answer.
    pub fn unsubscribe(
        &mut self,
        filters: Vec<String>,
        properties: UnsubscribeProperties,
    ) -> Result<RequestId, RequestError> {
        self.request(Packet::Unsubscribe(Unsubscribe {
            packet_id: 1,
            properties,
            filters,
        }))
    }

    fn finish_request(
        &mut self,
        kind: PacketType,
        packet_id: u16,
        codes: usize,
    ) -> Result<RequestId, ProtocolViolation> {
        let request = match self.requests.get(&packet_id) {
            Some(r) if r.kind == kind => *r,
            _ => {
                return Err(ProtocolViolation::BadAck(format!(
                    "an answer for packet identifier {packet_id}, which no {kind} in flight has"
                )));
            }
        };
        if request.filters != codes {
            return Err(ProtocolViolation::BadAck(format!(
                "{codes} reason codes for {} filters [MQTT-3.8.4-6, MQTT-3.11.3-1]",
                request.filters
            )));
        }
        self.requests.remove(&packet_id);
        self.ids.remove(packet_id);
        self.drain();
        Ok(request.id)
    }

    /// SUBACK: the reason codes of a SUBSCRIBE, in order.
    pub fn handle_suback(&mut self, ack: SubAck) -> Result<(), ProtocolViolation> {
        let id =
            self.finish_request(PacketType::Subscribe, ack.packet_id, ack.reason_codes.len())?;
        self.events.push_back(Event::Subscribed {
            id,
            reason_codes: ack.reason_codes,
            properties: ack.properties,
        });
        Ok(())
    }

    /// UNSUBACK: the reason codes of an UNSUBSCRIBE, in order.
    pub fn handle_unsuback(&mut self, ack: UnsubAck) -> Result<(), ProtocolViolation> {
        let id = self.finish_request(
            PacketType::Unsubscribe,
            ack.packet_id,
            ack.reason_codes.len(),
        )?;
        self.events.push_back(Event::Unsubscribed {
            id,
            reason_codes: ack.reason_codes,
            properties: ack.properties,
        });
        Ok(())
    }

    /// Sends DISCONNECT; the driver closes the connection after writing it and then calls
    /// [`Session::connection_lost`]. A new Session Expiry Interval is committed with it.
    pub fn disconnect(
        &mut self,
        reason: ReasonCode,
        session_expiry_interval: Option<u32>,
    ) -> Result<(), RequestError> {
        if self.connection.is_none() {
            return Err(RequestError::NotConnected);
        }
        if let Some(interval) = session_expiry_interval {
            if interval != 0 && self.meta.session_expiry_interval == 0 {
                return Err(RequestError::ExpiryExtended);
            }
        }
        let mut packet = Disconnect::new(reason);
        packet.properties.session_expiry_interval = session_expiry_interval;
        self.codec
            .encoded_len(&Packet::Disconnect(packet.clone()))?;
        if let Some(interval) = session_expiry_interval {
            let mut meta = self.meta.clone();
            meta.session_expiry_interval = interval;
            self.set_meta(meta);
        }
        self.pending.send.push(Packet::Disconnect(packet));
        Ok(())
    }

    /// DISCONNECT from the server: reported, and the connection is over; the driver closes it
    /// and calls [`Session::connection_lost`].
    pub fn handle_disconnect(&mut self, packet: Disconnect) -> Result<(), ProtocolViolation> {
        if packet.properties.session_expiry_interval.is_some() {
            return Err(ProtocolViolation::ExpiryFromServer);
        }
        self.events.push_back(Event::ServerDisconnected {
            reason: packet.reason_code,
            reason_string: packet.properties.reason_string,
            server_reference: packet.properties.server_reference,
        });
        Ok(())
    }

    /// The codec settings for this session's connection: the Maximum Packet Size the client
    /// announced for decoding, the server's for encoding.
    pub fn codec(&self) -> Codec {
        Codec {
            max_incoming_packet_size: self.options.properties.maximum_packet_size,
            ..self.codec
        }
    }

    /// Ends the connection because of `reason` (a [`ProtocolViolation`]'s or a decode error's
    /// reason code): DISCONNECT goes out with the next [`Output`], then the driver closes the
    /// connection and calls [`Session::connection_lost`].
    pub fn close_with(&mut self, reason: ReasonCode) {
        if self.connection.is_some() && reason.is_valid_for(PacketType::Disconnect) {
            self.pending
                .send
                .push(Packet::Disconnect(Disconnect::new(reason)));
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
mod tests;
