//! The errors of the client's calls, of a connection attempt and of a delivery.

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tls")]
use super::TlsError;
use super::{TransportError, UrlError};
use crate::packet::ReasonCode;
use crate::session::{AckError, AuthError, PublishError, RequestError};
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
    /// The builder has no store.
    #[error("no store: call ClientBuilder::store (MemoryStore for ephemeral sessions)")]
    NoStore,
    /// A server address is invalid.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// TLS settings could not be built (a file, a certificate, a key).
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The configuration asks for TLS, which this build lacks (feature `tls`).
    #[cfg(not(feature = "tls"))]
    #[error("TLS is configured but mooring was built without the `tls` feature")]
    TlsUnavailable,
    /// A configuration could not be applied (see [`ConfigError`](super::ConfigError)).
    #[error(transparent)]
    Config(#[from] super::ConfigError),
    /// The store failed: loading the session at start, or a commit. After a failed commit the
    /// client stops and the outcome of the publishes in that commit is unknown (each is in the
    /// store or not, whole); reopen the store and start again.
    #[error("the session store failed: {0}")]
    Store(#[source] Arc<StoreError>),
    /// The stored session cannot be resumed.
    #[error("the stored session cannot be resumed: {0}")]
    Session(#[from] crate::session::SessionError),
    /// The first connection failed ([`ClientBuilder::connect`](super::ClientBuilder::connect)).
    #[error("could not connect: {0}")]
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
    #[error("{0}")]
    Transport(#[source] Arc<TransportError>),
    /// Writing or reading failed before CONNACK.
    #[error("the connection failed before CONNACK: {0}")]
    Io(String),
    /// No CONNACK within the connect timeout.
    #[error("no CONNACK within {0:?}")]
    Timeout(Duration),
    /// The server refused the connection.
    #[error("the server refused the connection: {reason:?}")]
    Refused {
        /// The CONNACK reason code.
        reason: ReasonCode,
    },
    /// The server broke the protocol before or in CONNACK.
    #[error("protocol error before CONNACK: {0}")]
    Protocol(String),
    /// The `before_connect` hook failed.
    #[error("the before_connect hook failed: {0}")]
    Hook(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The enhanced authenticator could not start.
    #[error("authentication could not start: {0}")]
    Auth(#[source] AuthError),
    /// The store could not confirm that this process owns the session (a store shared by
    /// machines: see `SessionStore::check_owner`). [`StoreError::Fenced`] stops the client for
    /// good; any other error is a failed attempt, tried again with backoff.
    #[error("the session's ownership could not be confirmed: {0}")]
    Ownership(#[source] Arc<StoreError>),
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
    /// The queue was full and its policy is `QueuePolicy::DropOldest`: this message, the
    /// oldest, was dropped from the store unsent to make room.
    #[error("the queue was full: the message was dropped, unsent, to make room for newer ones")]
    Dropped,
}
