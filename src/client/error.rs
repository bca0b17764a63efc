//! The errors of the client's calls, of a connection attempt and of a delivery.

use std::sync::Arc;
use std::time::Duration;

use super::tls_error::TlsError;
use super::transport::TransportError;
use super::url::UrlError;
use crate::packet::{DecodeError, ReasonCode};
use crate::session::{
    AckError, AuthError, ConnectPacketError, ProtocolViolation, PublishError, RequestError,
};
use crate::store::StoreError;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The builder names no server.
    #[error("no server: call ClientBuilder::server")]
    NoServer,
    /// The client speaks MQTT 3.1.1 ([`ClientBuilder::protocol`](super::ClientBuilder::protocol))
    /// and was asked for something only MQTT 5 has.
    #[error("{0} needs MQTT 5; the client speaks 3.1.1")]
    NeedsV5(&'static str),
    /// A setting the broker of the [`BrokerProfile`](super::profile::BrokerProfile) refuses
    /// ([`ClientBuilder::broker_profile`](super::ClientBuilder::broker_profile)).
    #[error("{setting}: {profile} {why}")]
    BrokerProfile {
        /// The profile.
        profile: super::profile::BrokerProfile,
        /// The setting, as a configuration file writes it (`will.qos = 2`).
        setting: String,
        /// Why the broker refuses it.
        why: String,
    },
    /// A backlog policy that cannot work: a latest-value filter that is not a valid Topic
    /// Filter, a drain rate of nothing.
    #[error("{setting} {why}")]
    Backlog {
        /// The setting.
        setting: String,
        /// What is wrong with it.
        why: String,
    },
    /// The builder has no store.
    #[error("no store: call ClientBuilder::store (MemoryStore for ephemeral sessions)")]
    NoStore,
    /// A server address is invalid.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// TLS settings could not be built (a file, a certificate, a key).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The settings need a Cargo feature of `mooring-mqtt` that this build lacks: `tls` for
    /// `mqtts://`, `wss://` and TLS settings, `websocket` for `ws://` and `wss://`.
    #[error("{needed_for} needs the `{feature}` feature of mooring-mqtt, which this build lacks")]
    FeatureMissing {
        /// The feature to turn on.
        feature: &'static str,
        /// What needs it (a server address, a section of the configuration).
        needed_for: String,
    },
    /// A configuration could not be applied (see [`ConfigError`](super::ConfigError)).
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// The store failed: loading the session at start, or a commit. After a failed commit the
    /// client stops and the outcome of the publishes in that commit is unknown (each is in the
    /// store or not, whole); reopen the store and start again.
    #[error("the session store failed")]
    Store(#[source] Arc<StoreError>),
    /// The stored session cannot be resumed.
    #[error("the stored session cannot be resumed")]
    Session(#[from] crate::session::SessionError),
    /// The first connection failed ([`ClientBuilder::connect`](super::ClientBuilder::connect)).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The publish was refused; nothing was stored.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The durable queue is full and the queue policy is [`QueuePolicy::Fail`](super::QueuePolicy::Fail).
    #[error("the durable queue holds its limit of {0} messages")]
    QueueFull(usize),
    /// A SUBSCRIBE, UNSUBSCRIBE or DISCONNECT could not be made.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The server refused a subscription.
    #[error("the server refused the subscription to {filter:?}: {reason:?}")]
    SubscribeRefused {
        /// The filter.
        filter: String,
        /// The SUBACK reason code.
        reason: ReasonCode,
    },
    /// The server refused to unsubscribe: the subscription may still stand.
    #[error("the server refused to unsubscribe from {filter:?}: {reason:?}")]
    UnsubscribeRefused {
        /// The filter.
        filter: String,
        /// The UNSUBACK reason code (0x80 or above).
        reason: ReasonCode,
    },
    /// The ack was refused (acked twice, or not an ackable message).
    #[error(transparent)]
    Ack(#[from] AckError),
    /// A message was forwarded ([`Message::forward`](super::Message::forward)) to a client on
    /// another store: its copy and its ack could not be committed together. It is handed over
    /// again.
    #[error(
        "a message can be forwarded only to a client on the same store (or a clone of it), whose \
         commits can hold the copy and the ack together"
    )]
    ForwardAcrossStores,
    /// The message has no Response Topic to answer on.
    #[error("the message has no Response Topic")]
    NoResponseTopic,
    /// No response came in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// A delivery did not complete (so that `delivery.await?` works where a `ClientError` is
    /// returned).
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// The client has stopped (disconnected, every handle dropped, a store failure, or the
    /// reconnect attempts ran out).
    #[error("the client has stopped")]
    Stopped,
}

/// Why one connection attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The transport could not be opened.
    #[error(transparent)]
    Transport(Arc<TransportError>),
    /// The connection ended before CONNACK.
    #[error("the connection ended before CONNACK")]
    Closed(#[source] ConnectionLoss),
    /// No CONNACK within the connect timeout.
    #[error("no CONNACK within {0:?}")]
    Timeout(Duration),
    /// The server refused the connection.
    #[error("the server refused the connection: {reason:?}")]
    Refused {
        /// The CONNACK reason code.
        reason: ReasonCode,
    },
    /// The protocol was broken before or in CONNACK: by the server, or by a CONNECT the
    /// client cannot make.
    #[error(transparent)]
    Protocol(ProtocolError),
    /// The `before_connect` hook failed.
    #[error("the before_connect hook failed")]
    Hook(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The credential provider gave no credential.
    #[error("the credential provider failed")]
    Credentials(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The enhanced authenticator could not start.
    #[error("authentication could not start")]
    Auth(#[source] AuthError),
    /// The store could not confirm that this process owns the session (a store shared by
    /// machines: see `SessionStore::check_owner`). [`StoreError::Fenced`] stops the client for
    /// good; any other error is a failed attempt, tried again with backoff.
    #[error("the session's ownership could not be confirmed")]
    Ownership(#[source] Arc<StoreError>),
}

impl ConnectError {
    /// A short name of the kind of failure, for logs and metrics (the `reason` label of
    /// `mooring_connection_failures_total`): `proxy`, `transport`, `closed`, `timeout`,
    /// `refused`, `protocol`, `hook`, `credentials`, `auth` or `ownership`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transport(e) if matches!(**e, TransportError::Proxy { .. }) => "proxy",
            Self::Transport(_) => "transport",
            Self::Closed(_) => "closed",
            Self::Timeout(_) => "timeout",
            Self::Refused { .. } => "refused",
            Self::Protocol(_) => "protocol",
            Self::Hook(_) => "hook",
            Self::Credentials(_) => "credentials",
            Self::Auth(_) => "auth",
            Self::Ownership(_) => "ownership",
        }
    }
}

/// The protocol broken on a connection: by the server, or by a CONNECT the client cannot
/// make.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The server sent a packet that breaks the wire format or a rule of the codec.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// The server broke a rule of the session (a second CONNACK, an unknown Topic Alias, a
    /// session the client has no state of, ...).
    #[error(transparent)]
    Violation(#[from] ProtocolViolation),
    /// The client cannot make a valid CONNECT (a credential or property too long).
    #[error(transparent)]
    InvalidConnect(Arc<ConnectPacketError>),
}

impl ProtocolError {
    /// The reason code of the DISCONNECT the client sends for it.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Malformed(e) => e.reason_code(),
            Self::Violation(v) => v.reason_code(),
            Self::InvalidConnect(_) => ReasonCode::ProtocolError,
        }
    }
}

/// Why an established connection ended (or one ended before CONNACK).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionLoss {
    /// The server closed the connection.
    #[error("the server closed the connection")]
    ServerClosed,
    /// Reading or writing failed.
    #[error("the connection failed")]
    Io(#[source] Arc<std::io::Error>),
    /// No PINGRESP within the ping timeout: the connection is dead.
    #[error("no PINGRESP within the ping timeout")]
    KeepAliveTimeout,
    /// The server sent DISCONNECT.
    #[error("the server sent DISCONNECT {reason:?}{}", reason_string.as_deref().map(|s| format!(": {s}")).unwrap_or_default())]
    ServerDisconnected {
        /// Its reason code.
        reason: ReasonCode,
        /// Its Reason String.
        reason_string: Option<String>,
    },
    /// The server broke the protocol: the client sent DISCONNECT with the reason code of the
    /// rule and closed the connection.
    #[error("the server broke the protocol")]
    Protocol(#[source] ProtocolError),
    /// A write made no progress for the write timeout (the server stopped reading).
    #[error("a write made no progress for {0:?}")]
    WriteStalled(Duration),
    /// The store's lease on the session lapsed unconfirmed: nothing more may be written until
    /// the next attempt confirms ownership.
    #[error("the store's lease on the session lapsed; ownership is checked before reconnecting")]
    LeaseLapsed,
}

/// Why the client stopped ([`Client::closed`](super::Client::closed),
/// `ClientEvent::Stopped`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StopReason {
    /// [`Client::disconnect`](super::Client::disconnect) asked for it.
    #[error("disconnected")]
    Disconnected,
    /// Every [`Client`](super::Client) handle was dropped.
    #[error("every client handle was dropped")]
    HandlesDropped,
    /// The last handle was dropped while its thread panicked: the connection was ended so that
    /// the server publishes the Will (DISCONNECT 0x04; with MQTT 3.1.1, no DISCONNECT).
    #[error("the last client handle was dropped in a panic; the Will is published")]
    Panicked,
    /// The first connection failed ([`ClientBuilder::connect`](super::ClientBuilder::connect)).
    #[error("the first connection failed")]
    FirstConnectFailed(#[source] ConnectError),
    /// The reconnect attempts ran out ([`Backoff::max_attempts`](super::Backoff::max_attempts)).
    #[error("gave up after {attempts} failed connection attempts")]
    AttemptsExhausted {
        /// Failed attempts in a row.
        attempts: u32,
        /// The last one's error.
        #[source]
        last: ConnectError,
    },
    /// The store failed (a commit or a read): nothing more can be made durable.
    #[error("the session store failed")]
    Store(#[source] Arc<StoreError>),
    /// The store broke its contract: it returned queued messages out of order, or lost some.
    #[error("the stored session cannot go on")]
    Session(#[source] Arc<crate::session::SessionError>),
    /// Another process took the session over (a store shared by machines fenced this one).
    #[error("the session was taken over by {holder}")]
    TakenOver {
        /// The session.
        session: String,
        /// Who owns it now.
        holder: String,
    },
    /// The connection task ended without stopping: its runtime shut down.
    #[error("the client's task ended with its runtime")]
    TaskEnded,
}

/// Why a delivery did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The server refused the message (PUBACK, PUBREC or PUBCOMP with an error reason code),
    /// or it no longer fits the server's limits.
    #[error("the server refused the message: {0:?}")]
    Refused(ReasonCode),
    /// The client stopped first. The message stays in the store and resumes when a client
    /// starts on the same store and session.
    #[error("the client stopped before the message was acknowledged; it resumes on restart")]
    Stopped,
    /// Its Message Expiry Interval ran out while it waited in the queue: it was dropped from
    /// the store and never sent.
    #[error("the message expired in the queue before it could be sent")]
    Expired,
    /// It may have reached a session the server lost, and the client discards such messages
    /// (`LostSession::Discard`): it was not sent again.
    #[error("the server lost the session the message may have reached: it was discarded")]
    SessionLost,
    /// The queue was full and its policy is `QueuePolicy::DropOldest`: this message, the
    /// oldest, was dropped from the store unsent to make room.
    #[error("the queue was full: the message was dropped, unsent, to make room for newer ones")]
    Dropped,
    /// Its topic keeps only its newest unsent value (`ClientBuilder::latest_value_topics`),
    /// and a newer value was published before this one could be sent: it was dropped from the
    /// store unsent, in the commit that stored the newer one.
    #[error("a newer value of its topic was published before it was sent: it was replaced")]
    Replaced,
}
