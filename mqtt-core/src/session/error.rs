//! Why the engine refuses a call, or a server's packet.

use super::{AuthError, MessageTag};
use crate::packet::{EncodeError, QoS, ReasonCode};

/// Why a publish was refused at once; nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The packet breaks a rule of the specification (a topic with a wildcard, ...).
    #[error(transparent)]
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
    /// The publish carries an idempotency key longer than an envelope can hold (65,535
    /// bytes).
    #[error("the idempotency key is longer than an envelope holds (65,535 bytes)")]
    KeyTooLong,
    /// The publish is beyond a limit the server is known to have
    /// ([`SessionOptions::publish_limits`](super::SessionOptions::publish_limits)).
    #[error("the {what} is {size}, above the server's limit of {limit}")]
    OverLimit {
        /// What is too large: `payload in bytes`, `packet in bytes`, `topic in bytes`,
        /// `number of topic levels`.
        what: &'static str,
        /// What the publish has.
        size: usize,
        /// What the server takes.
        limit: usize,
    },
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
    /// Session Present 1 for a client that holds no state of the session (a new or lost store)
    /// [MQTT-3.2.2-4]: the server may hold packet identifiers the client would reuse. The next
    /// attempt asks for a clean start.
    #[error(
        "the server resumed a session this client holds no state of [MQTT-3.2.2-4]; the next attempt starts clean"
    )]
    SessionWithoutState,
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
    /// A QoS 1/2 PUBLISH with a packet identifier the server still awaits an answer for on
    /// this connection: it may not reuse one [MQTT-2.2.1-4] nor resend without a reconnect
    /// [MQTT-4.4.0-1].
    #[error("the server reused packet identifier {packet_id}, still unanswered")]
    PacketIdInUse {
        /// The identifier.
        packet_id: u16,
    },
    /// The server went so far over the client's Receive Maximum that the messages held back
    /// exceed `held_bytes_limit`.
    #[error("the server sent {held} messages over the client's Receive Maximum ({bytes} bytes)")]
    ReceiveMaximumExceeded {
        /// Messages held back, with the refused one.
        held: usize,
        /// Their bytes.
        bytes: usize,
    },
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
            Self::TopicAliasInvalid { .. } => ReasonCode::TopicAliasInvalid,
            Self::ReceiveMaximumExceeded { .. } => ReasonCode::ReceiveMaximumExceeded,
            Self::UnexpectedAuth | Self::AuthMethodMismatch => ReasonCode::BadAuthenticationMethod,
            Self::AuthFailed(_) => ReasonCode::NotAuthorized,
            _ => ReasonCode::ProtocolError,
        }
    }
}

/// Why [`Session::start_connection`](super::Session::start_connection) could not produce a CONNECT.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectPacketError {
    /// The authenticator failed to start.
    #[error("authentication could not start")]
    Auth(#[from] AuthError),
    /// The CONNECT breaks a rule of the specification (a credential or property too long, ...).
    #[error("CONNECT is invalid")]
    Invalid(#[from] EncodeError),
}

/// Why a SUBSCRIBE, UNSUBSCRIBE or DISCONNECT could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// There is no connection to send it on.
    #[error("not connected")]
    NotConnected,
    /// The packet breaks a rule of the specification.
    #[error(transparent)]
    Invalid(#[from] EncodeError),
    /// CONNACK said the server does not support this.
    #[error("the server does not support {0}")]
    Unsupported(&'static str),
    /// MQTT 3.1.1 has no way to say this (a DISCONNECT reason code or Session Expiry,
    /// re-authentication).
    #[error("{0} needs MQTT 5")]
    NeedsV5(&'static str),
    /// Re-authentication without an authenticator, or on a connection whose CONNECT named no
    /// Authentication Method [MQTT-4.12.0-7].
    #[error("no authenticator is set for this connection")]
    NoAuthenticator,
    /// Re-authentication with another method than the connection's CONNECT named
    /// [MQTT-4.12.1-1]; a new method takes effect on the next connection.
    #[error("the authenticator's method {now:?} is not the connection's {connected:?}")]
    AuthMethodChanged {
        /// The method CONNECT carried.
        connected: String,
        /// The authenticator's method now.
        now: String,
    },
    /// The authenticator failed to start.
    #[error("{0}")]
    Auth(AuthError),
    /// A Session Expiry Interval of 0 at CONNECT cannot become non-zero at DISCONNECT.
    #[error("the session was opened with Session Expiry Interval 0; DISCONNECT cannot extend it")]
    ExpiryExtended,
}

/// Why [`Session::ack`](super::Session::ack) refused a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The tag is not a QoS 1/2 message awaiting its ack (acked already, or never delivered).
    #[error("delivery {0} is not awaiting an acknowledgement (acked twice, or not QoS 1/2)")]
    NotAwaiting(MessageTag),
    /// A refusal needs a reason code of 0x80 or above that PUBACK and PUBREC may carry.
    #[error("{0:?} cannot refuse a message: PUBACK and PUBREC take 0x80 and above from Table 2-6")]
    NotARefusal(ReasonCode),
    /// MQTT 3.1.1 acknowledgements carry no reason code: a message cannot be refused.
    #[error("MQTT 3.1.1 cannot refuse a message (PUBACK and PUBREC carry no reason code)")]
    RefusalNeedsV5,
}

/// Why a stored session cannot be resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A stored subscription is not one SUBSCRIBE for its filter.
    #[error("the stored subscription to {filter:?} is not a SUBSCRIBE for that filter: {reason}")]
    BadSubscription {
        /// The filter it is stored under.
        filter: String,
        /// What is wrong.
        reason: String,
    },
    /// The stored session speaks the other protocol: it is never resumed with this one.
    #[error(
        "the stored session speaks MQTT {stored:?}, not {requested:?}: clear it (or keep the \
         protocol) to connect"
    )]
    ProtocolMismatch {
        /// The stored session's protocol.
        stored: crate::packet::ProtocolVersion,
        /// The protocol asked for.
        requested: crate::packet::ProtocolVersion,
    },
    /// A stored PUBLISH does not decode.
    #[error("stored record #{seq} is not a valid PUBLISH: {reason}")]
    BadRecord {
        /// Its sequence number.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A read of the queue returned nothing although the store holds queued messages the
    /// session stored: the store lost them, or breaks its contract.
    #[error(
        "the store returned no queued message from #{from} on, but {missing} were stored there; \
         the store is damaged or does not keep its contract"
    )]
    QueueLost {
        /// Where the read started.
        from: u64,
        /// How many messages the session stored there and has not read back.
        missing: u64,
    },
}
