//! What the client asks of a session, and the defaults it gets.

use std::time::Duration;

use bytes::Bytes;

use crate::idempotency::KeyStamp;
use crate::packet::{ConnectProperties, ProtocolVersion, QoS};
use crate::store::QueueWindow;

/// What the client asks of a session.
#[derive(Clone)]
pub struct SessionOptions {
    /// The client identifier; empty asks the server to assign one.
    pub client_id: String,
    /// Start without the server's session state on the first connection.
    pub clean_start: bool,
    /// Keep alive in seconds.
    pub keep_alive: u16,
    /// CONNECT properties (Session Expiry Interval, Receive Maximum, ...).
    pub properties: ConnectProperties,
    /// Acknowledge inbound QoS 1/2 messages only when the application calls [`Session::ack`](super::Session::ack);
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
    /// Make every granted subscription again, before anything else is sent, when the server
    /// has no session for the client (Session Present 0), also after a restart: granted
    /// subscriptions are kept in the store with the session.
    pub resubscribe: bool,
    /// The most bytes (topics and payloads) of messages held back because the server went over
    /// the client's Receive Maximum (see [`Session::handle_publish`](super::Session::handle_publish)); past it, the connection
    /// ends with 0x93 Receive Maximum exceeded. Their number is bounded by the packet
    /// identifiers (a server may not reuse one still unanswered).
    pub held_bytes_limit: usize,
    /// The protocol spoken: MQTT v5.0 (the default) or 3.1.1. See ARCHITECTURE.md for what a
    /// 3.1.1 session does without properties, reason codes and Session Expiry.
    pub protocol: ProtocolVersion,
    /// The most QoS 1/2 publishes in flight at once. With MQTT v5.0 the server's Receive
    /// Maximum limits them too; a 3.1.1 server announces no limit, so this is the only one
    /// there (`None`: [`DEFAULT_V311_IN_FLIGHT`]).
    pub in_flight_maximum: Option<u16>,
    /// How much of the offline queue is held in memory: the rest waits in the store and is
    /// read back in order as the window empties (see [`Session::poll_queue_read`](super::Session::poll_queue_read)).
    pub queue_window: QueueWindow,
    /// What becomes of the publishes that may have reached a session the server lost
    /// (Session Present 0): sent again as new messages, or discarded and reported.
    pub lost_session: LostSession,
    /// Give every QoS 1 publish an idempotency key (see [`crate::idempotency`]), so that a
    /// subscriber can drop the copies QoS 1 allows; `None` keys nothing.
    pub publish_keys: Option<KeyStamp>,
    /// Drop inbound QoS 1 messages whose idempotency key the application handled already,
    /// keeping the keys in the store; `None` hands every copy over.
    pub deduplication: Option<Deduplication>,
    /// What the server is known to take before its CONNACK says anything (a broker profile's
    /// documented limits): a publish beyond them is refused when it is made, never stored.
    pub publish_limits: PublishLimits,
    /// How the backlog leaves: which topics keep only their newest queued value, and whether
    /// publishes leave only against a send allowance (a drain rate).
    pub backlog: BacklogPolicy,
}

/// How a session's backlog leaves for the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BacklogPolicy {
    /// Topic Filters whose topics keep only their newest unsent value: a publish to such a
    /// topic drops the value still waiting in the queue (`Event::Replaced`), in the commit
    /// that stores the new one. A value already sent is never taken back.
    pub latest_value_topics: Vec<String>,
    /// Publishes leave only against the allowance given with
    /// [`Session::allow_sends`](super::Session::allow_sends) (the driver's drain rate), live
    /// ones and the backlog alike, in queue order. Retransmissions of messages in flight do
    /// not count: they are at most the in-flight window.
    pub paced: bool,
    /// Topic Filters and the priority class (1 to 255) of the topics they match: a class's
    /// messages wait in a queue of their own and are sent before those of lower classes
    /// (the rest are class 0), each class in order. A topic matching several takes the
    /// highest.
    pub priorities: Vec<(String, u8)>,
}

/// Limits of the server on publishes, known in advance: a server that closes the connection
/// on a QoS 2 publish, or drops a payload above its size, may not say so in its CONNACK (a
/// 3.1.1 server cannot). The CONNACK's own limits apply too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLimits {
    /// The highest QoS it takes.
    pub maximum_qos: QoS,
    /// Whether it keeps retained messages.
    pub retain_available: bool,
    /// The largest payload, in bytes.
    pub maximum_payload_bytes: Option<usize>,
    /// The largest PUBLISH packet, in bytes.
    pub maximum_packet_bytes: Option<usize>,
    /// The most levels of a topic (`a/b/c` has 3).
    pub maximum_topic_levels: Option<usize>,
    /// The longest topic, in bytes.
    pub maximum_topic_bytes: Option<usize>,
}

impl Default for PublishLimits {
    /// None but the protocol's.
    fn default() -> Self {
        Self {
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            maximum_payload_bytes: None,
            maximum_packet_bytes: None,
            maximum_topic_levels: None,
            maximum_topic_bytes: None,
        }
    }
}

crate::secret::debug_hiding_secrets!(SessionOptions {
    client_id,
    clean_start,
    keep_alive,
    properties,
    manual_ack,
    ping_timeout,
    will,
    username,
    topic_aliases,
    resubscribe,
    held_bytes_limit,
    protocol,
    in_flight_maximum,
    queue_window,
    lost_session,
    publish_keys,
    deduplication,
    publish_limits,
    backlog
} hidden { password });

/// What a session does with the QoS 1/2 publishes that may have reached the server's session
/// when the server turns out to have lost it (CONNACK with Session Present 0): those sent and
/// not acknowledged, and, after a restart, the queued ones that may have been sent before it
/// (no more than the last connection allowed in flight, [`SessionMeta::in_flight_limit`](crate::store::SessionMeta::in_flight_limit)).
/// Messages that never went out are sent either way: they were never the lost session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LostSession {
    /// Send them again as new messages (the default). Nothing accepted is lost, but a QoS 2
    /// message the old session had already delivered onward can arrive twice: a declared
    /// departure from MQTT-3.1.2-4 and MQTT-4.4.0-1, which have the client discard its session
    /// state, because a gateway that loses data silently is worse off than one that may
    /// repeat a message after a broker lost its state.
    #[default]
    Republish,
    /// Discard them, as the specification has it: each one's delivery fails
    /// (`Event::Discarded`) and nothing is sent twice, but a message the old session never
    /// passed on is lost.
    Discard,
}

/// How a subscribing session recognises copies of messages the application handled: by the
/// idempotency key each carries, kept in the store from the moment the application is done
/// with the message (in the commit that precedes its PUBACK) until it is one of more than
/// `keep_at_most` keys or older than `keep_for`, whichever comes first. A copy that arrives
/// after its key was forgotten is handed over again, so size both for the longest a copy can
/// trail the original: a publisher's outage (it resends what was unacknowledged when it comes
/// back), a broker's restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deduplication {
    /// The most keys kept (the oldest go first); each costs about twice its length and 70
    /// bytes of memory, and a record in the store.
    pub keep_at_most: usize,
    /// How long a key is kept after its message was handled.
    pub keep_for: Duration,
    /// Also open envelopes ([`crate::idempotency::open`]): the payload handed over is the
    /// application's, and the key moves to a User Property. Only for publishers that seal
    /// them: a payload that happens to start with the envelope's magic bytes would be taken
    /// for one.
    pub envelopes: bool,
}

impl Default for Deduplication {
    /// 100,000 keys for at most seven days, no envelopes.
    fn default() -> Self {
        Self {
            keep_at_most: 100_000,
            keep_for: Duration::from_secs(7 * 24 * 3600),
            envelopes: false,
        }
    }
}

/// The default of [`SessionOptions::queue_window`]: 16,384 messages and 16 MiB, so that a
/// publisher with thousands of messages in the air keeps them in memory rather than reading
/// them back from the store (issue 35: 4,096 and 4 MiB cost a quarter of the CPU per message
/// with 5,120 outstanding). A process with thousands of sessions, each of which may queue a
/// long backlog, should set a smaller one.
pub const DEFAULT_QUEUE_WINDOW: QueueWindow = QueueWindow::new(16_384, 16 * 1024 * 1024);

/// The in-flight window of a 3.1.1 session unless [`SessionOptions::in_flight_maximum`] sets
/// one: mosquitto's default `max_inflight_messages`.
pub const DEFAULT_V311_IN_FLIGHT: u16 = 20;

/// The Maximum Packet Size a session announces unless told otherwise: one packet from the
/// server cannot make the client buffer more (the protocol allows 256 MiB). Set
/// `properties.maximum_packet_size` to `None` for the protocol's limit.
pub const DEFAULT_MAXIMUM_PACKET_SIZE: u32 = 16 * 1024 * 1024;

/// The default of [`SessionOptions::held_bytes_limit`].
pub const DEFAULT_HELD_BYTES_LIMIT: usize = 64 * 1024 * 1024;

impl SessionOptions {
    /// Options for `client_id` that resume the server's session (Clean Start 0).
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            clean_start: false,
            keep_alive: 60,
            properties: ConnectProperties {
                maximum_packet_size: Some(DEFAULT_MAXIMUM_PACKET_SIZE),
                ..ConnectProperties::default()
            },
            manual_ack: false,
            ping_timeout: Duration::from_secs(10),
            will: None,
            username: None,
            password: None,
            topic_aliases: true,
            resubscribe: true,
            held_bytes_limit: DEFAULT_HELD_BYTES_LIMIT,
            protocol: ProtocolVersion::V5,
            in_flight_maximum: None,
            queue_window: DEFAULT_QUEUE_WINDOW,
            lost_session: LostSession::Republish,
            publish_keys: None,
            deduplication: None,
            publish_limits: PublishLimits::default(),
            backlog: BacklogPolicy::default(),
        }
    }
}
