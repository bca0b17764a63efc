//! The client: a [`Session`](crate::session::Session) driven over a real connection by one
//! tokio task, with handles any number of tasks share.
//!
//! # A guided tour
//!
//! ```no_run
//! use std::time::Duration;
//! use mooring::client::{Client, ClientError};
//! use mooring::packet::QoS;
//!
//! # async fn gateway() -> Result<(), Box<dyn std::error::Error>> {
//! # let store = mooring::store::MemoryStore::default();
//! // A durable store keeps the session across crashes: RedbStore::open("gateway.redb")?.
//! let (client, mut messages) = Client::builder()
//!     .server("mqtt://127.0.0.1:1883")
//!     .client_id("gateway-7")
//!     .session_expiry(Duration::from_secs(86_400))
//!     .store(store)
//!     .manual_ack(true)
//!     .connect()          // returns once the first CONNACK succeeded (or with the error)
//!     .await?;
//!
//! client.subscribe("plant/+/telemetry", QoS::ExactlyOnce).await?;
//! // Returns once the message is durable in the store; it will be delivered even if the
//! // process dies now. The delivery resolves when the server completes it (PUBCOMP).
//! let delivery = client.publish("site/7/status", "up", QoS::ExactlyOnce).await?;
//! delivery.await?;
//!
//! while let Some(message) = messages.recv().await {
//!     println!("{}: {:?}", message.topic(), message.payload());
//!     message.ack().await?; // after the application's own work is durable
//! #   break;
//! }
//! client.disconnect().await?; // drains, sends DISCONNECT, flushes the store
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! One task owns the connection and the session. [`Client`] handles send it commands over a
//! bounded channel. The task gathers every store operation produced since the last commit
//! (publishes from many tasks, acks, completions) into one [`SessionStore::commit`]
//! (group commit) that runs while the next batch gathers; only when it returns are the packets
//! that depend on it written to the socket, and only then do the publishers' futures resolve.
//! Durable throughput therefore grows with the number of concurrent publishers instead of
//! being one fsync per message.
//!
//! When the connection drops, the task reconnects with exponential backoff and full jitter,
//! trying the servers in order, then round-robin; publishes made meanwhile wait in the durable
//! queue. [`Client::events`] reports every step.
//!
//! A store commit that fails stops the client: the store refuses writes until it is reopened
//! (see [`crate::store`]), and the outcome of the publishes in that commit is unknown (they
//! get [`ClientError::Store`]). Restart with the store reopened; nothing acknowledged is lost.
//!
//! [`SessionStore::commit`]: crate::store::SessionStore::commit

mod driver;
mod options;
mod router;
#[cfg(feature = "tls")]
mod tls;
mod transport;
mod url;

pub use options::{Backoff, ClientBuilder, ClientConfig, ConnectAttempt, HookError, QueuePolicy};
pub use router::{Router, topic_matches};
#[cfg(feature = "tls")]
pub use tls::{TlsError, TlsOptions};
pub use transport::{AsyncStream, BoxFuture, Connector, TransportError, TransportOptions};
pub use url::{Scheme, ServerUrl, UrlError};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::packet::{
    AckProperties, ConnAckProperties, Publish, QoS, ReasonCode, SubscribeProperties, Subscription,
    UnsubscribeProperties,
};
use crate::session::{AckError, MessageTag, PublishError, PublishId, RequestError};
use crate::store::StoreError;
use driver::Command;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The builder names no server.
    #[error("no server: call ClientBuilder::server")]
    NoServer,
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
    /// The store failed: loading the session at start, or a commit. After a failed commit the
    /// client stops and the outcome of the publishes in that commit is unknown (each is in the
    /// store or not, whole); reopen the store and start again.
    #[error("the session store failed: {0}")]
    Store(Arc<StoreError>),
    /// The stored session cannot be resumed.
    #[error("the stored session cannot be resumed: {0}")]
    Session(#[from] crate::session::SessionError),
    /// The first connection failed ([`ClientBuilder::connect`]).
    #[error("could not connect: {0}")]
    Connect(#[from] ConnectError),
    /// The publish was refused; nothing was stored.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The durable queue is full and the queue policy is [`QueuePolicy::Fail`].
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
    /// The message has no Response Topic to answer on.
    #[error("the message has no Response Topic")]
    NoResponseTopic,
    /// No response came in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
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
    Transport(Arc<TransportError>),
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
    Hook(String),
    /// The enhanced authenticator could not start.
    #[error("authentication could not start: {0}")]
    Auth(String),
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
}

/// Resolves when the server acknowledged a publish: PUBACK (QoS 1) or PUBCOMP (QoS 2), with
/// its reason code. QoS 0 resolves once accepted: nothing acknowledges QoS 0.
///
/// Dropping it does not cancel the publish.
#[derive(Debug)]
#[must_use = "await it to learn the outcome, or drop it to fire and forget"]
pub struct Delivery {
    id: PublishId,
    rx: oneshot::Receiver<Result<ReasonCode, DeliveryError>>,
}

impl Delivery {
    /// The publish's id in its session (its sequence number in the store).
    pub fn id(&self) -> PublishId {
        self.id
    }
}

impl Future for Delivery {
    type Output = Result<ReasonCode, DeliveryError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(DeliveryError::Stopped)))
    }
}

/// The server's answer to a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAckInfo {
    /// One per subscription: the granted QoS, or why it failed.
    pub reason_codes: Vec<ReasonCode>,
    /// Reason String and User Properties.
    pub properties: AckProperties,
}

/// What happened to the connection, for applications that watch ([`Client::events`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// CONNACK with Success.
    Connected {
        /// The server.
        server: ServerUrl,
        /// Whether it resumed the session.
        session_present: bool,
        /// Everything CONNACK said.
        properties: Box<ConnAckProperties>,
    },
    /// An attempt failed.
    ConnectFailed {
        /// The server.
        server: ServerUrl,
        /// Why.
        error: ConnectError,
    },
    /// The next attempt is scheduled.
    Reconnecting {
        /// Failed attempts in a row so far.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// Where it goes.
        server: ServerUrl,
    },
    /// An established connection ended.
    ConnectionLost {
        /// The server.
        server: ServerUrl,
        /// Why.
        reason: String,
    },
    /// The server closed the connection with DISCONNECT.
    ServerDisconnected {
        /// The server.
        server: ServerUrl,
        /// Its reason code.
        reason: ReasonCode,
        /// Its Reason String.
        reason_string: Option<String>,
        /// Another server to use, if it named one.
        server_reference: Option<String>,
    },
    /// The session expired while the client was away; the server no longer has it.
    SessionExpired,
    /// The server had no session although the client had one. What the policy did: publishes
    /// in flight are sent again as new messages, released QoS 2 flows are taken as delivered,
    /// inbound markers are dropped, and subscriptions are made again.
    SessionLost {
        /// Publishes sent again.
        resent: usize,
        /// PUBREL flows dropped.
        dropped_pubrel: usize,
        /// Inbound PUBREC markers dropped.
        dropped_inbound: usize,
        /// Subscriptions made again.
        resubscribed: usize,
    },
    /// The client stopped; `error` says why if it was not asked to.
    Stopped {
        /// The cause, if it was not [`Client::disconnect`] or dropping every handle.
        error: Option<String>,
    },
}

/// Counters of one client, read with [`Client::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// QoS 1/2 publishes sent and not yet acknowledged.
    pub outbound_in_flight: u64,
    /// Publishes waiting in the durable queue (and publishers waiting for room in it).
    pub queued: u64,
    /// Messages delivered to the application and not yet acked (manual ack).
    pub inbound_unacked: u64,
    /// Messages received beyond the client's Receive Maximum (a server over its quota), waiting
    /// for acks before they are delivered (manual ack).
    pub inbound_held: u64,
    /// How many messages ever arrived beyond the client's Receive Maximum.
    pub inbound_over_receive_maximum: u64,
    /// Publishes accepted.
    pub published: u64,
    /// Messages received.
    pub received: u64,
    /// Store commits.
    pub commits: u64,
    /// Store operations in those commits.
    pub committed_ops: u64,
    /// Publishes accepted by those commits (their average is the group-commit batch size).
    pub committed_publishes: u64,
    /// Successful connections.
    pub connections: u64,
}

impl Stats {
    /// Publishes per commit: how well group commit batches.
    pub fn average_batch(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.committed_publishes as f64 / self.commits as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    pub(crate) outbound_in_flight: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) inbound_unacked: AtomicU64,
    pub(crate) inbound_held: AtomicU64,
    pub(crate) inbound_over_receive_maximum: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) committed_ops: AtomicU64,
    pub(crate) committed_publishes: AtomicU64,
    pub(crate) connections: AtomicU64,
}

impl StatsCell {
    fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            outbound_in_flight: get(&self.outbound_in_flight),
            queued: get(&self.queued),
            inbound_unacked: get(&self.inbound_unacked),
            inbound_held: get(&self.inbound_held),
            inbound_over_receive_maximum: get(&self.inbound_over_receive_maximum),
            published: get(&self.published),
            received: get(&self.received),
            commits: get(&self.commits),
            committed_ops: get(&self.committed_ops),
            committed_publishes: get(&self.committed_publishes),
            connections: get(&self.connections),
        }
    }
}

/// A message from the server.
///
/// With manual ack ([`ClientBuilder::manual_ack`]), call [`Message::ack`] once the
/// application is done with it; until then the server counts it against the client's Receive
/// Maximum, and a QoS 2 message comes again after a crash. Without manual ack it was acked
/// when it was handed to the application (taken into the [`Messages`] inbox, or given to a
/// waiting [`Client::request`]) and `ack` does nothing.
#[derive(Debug)]
pub struct Message {
    publish: Publish,
    acker: Option<Acker>,
}

#[derive(Debug)]
struct Acker {
    commands: mpsc::Sender<Command>,
    slot: usize,
    tag: MessageTag,
}

impl Message {
    /// The topic (resolved when it came by Topic Alias).
    pub fn topic(&self) -> &str {
        &self.publish.topic
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.publish.payload
    }

    /// The QoS it was delivered at.
    pub fn qos(&self) -> QoS {
        self.publish.qos
    }

    /// Whether it is a retained message.
    pub fn retain(&self) -> bool {
        self.publish.retain
    }

    /// Whether the server marked it as possibly sent before (DUP).
    pub fn dup(&self) -> bool {
        self.publish.dup
    }

    /// The whole PUBLISH: properties (Response Topic, Correlation Data, User Properties,
    /// Subscription Identifiers, ...).
    pub fn publish(&self) -> &Publish {
        &self.publish
    }

    /// Whether it waits for [`Message::ack`].
    pub fn needs_ack(&self) -> bool {
        self.acker.is_some()
    }

    /// Acknowledges it. Returns once the acknowledgement is durable (for QoS 2, the "PUBREC
    /// sent" marker is in the store: from then on the message is never delivered again, even
    /// after a crash). Acks go on the wire in arrival order.
    ///
    /// After a lost connection the ack keeps one meaning: QoS 2 is marked as received and the
    /// server's redelivery is answered without delivering it again; QoS 1 is redelivered by
    /// the server (at least once) and delivered again.
    pub async fn ack(mut self) -> Result<(), ClientError> {
        let Some(acker) = self.acker.take() else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        acker
            .commands
            .send(Command::Ack {
                slot: acker.slot,
                tag: acker.tag,
                reply,
            })
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// The PUBLISH, leaving any ack undone.
    pub fn into_publish(self) -> Publish {
        self.publish
    }
}

/// The messages the server sends, in arrival order. Ends when the client stops.
///
/// Use [`Router`] to dispatch them by topic filter. Dropping it discards (and acks) later
/// messages.
#[derive(Debug)]
pub struct Messages {
    rx: mpsc::Receiver<Message>,
}

impl Messages {
    /// The next message; `None` once the client has stopped.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }
}

/// A handle to a running client. Cheap to clone; every clone talks to the same connection.
/// The client stops (sending DISCONNECT) when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<ClientEvent>,
    stats: Arc<StatsCell>,
    response_topic: String,
    response_subscribed: tokio::sync::OnceCell<()>,
    next_correlation: AtomicU64,
    correlation_seed: u64,
    _alive: oneshot::Sender<()>,
}

impl Client {
    /// A builder; see [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(make(reply))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Publishes `payload` on `topic`. Returns once the message is accepted: for QoS 1/2
    /// durable in the store, and sent or queued; the [`Delivery`] resolves on PUBACK/PUBCOMP.
    /// While disconnected, messages wait in the durable queue and go out on reconnect.
    ///
    /// Fails at once, storing nothing, for an invalid topic, a QoS above the server's Maximum
    /// QoS, a packet above its Maximum Packet Size, or a full queue under
    /// [`QueuePolicy::Fail`].
    ///
    /// ```no_run
    /// # async fn f(client: mooring::client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use mooring::packet::QoS;
    /// let delivery = client.publish("site/7/status", "up", QoS::ExactlyOnce).await?; // durable
    /// let reason = delivery.await?; // PUBCOMP's reason code
    /// # let _ = reason; Ok(()) }
    /// ```
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        qos: QoS,
    ) -> Result<Delivery, ClientError> {
        let mut publish = Publish::new(topic, payload);
        publish.qos = qos;
        self.publish_with(publish).await
    }

    /// Publishes a complete PUBLISH (retain, properties). Its packet identifier, DUP flag and
    /// Topic Alias are the client's to set and are ignored.
    pub async fn publish_with(&self, publish: Publish) -> Result<Delivery, ClientError> {
        self.call(|reply| Command::Publish { publish, reply }).await
    }

    /// Subscribes to one filter and returns the QoS the server granted.
    ///
    /// While disconnected, the SUBSCRIBE is sent on the next connection and the call waits
    /// for it. Subscriptions are made again when a server has no session for the client.
    ///
    /// ```no_run
    /// # async fn f(client: mooring::client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use mooring::packet::QoS;
    /// let granted = client.subscribe("plant/+/telemetry", QoS::ExactlyOnce).await?;
    /// # let _ = granted; Ok(()) }
    /// ```
    pub async fn subscribe(&self, filter: impl Into<String>, qos: QoS) -> Result<QoS, ClientError> {
        let filter = filter.into();
        let info = self
            .subscribe_with(
                vec![Subscription::new(filter.clone(), qos)],
                SubscribeProperties::default(),
            )
            .await?;
        let reason = info
            .reason_codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UnspecifiedError);
        match reason {
            ReasonCode::Success => Ok(QoS::AtMostOnce),
            ReasonCode::GrantedQos1 => Ok(QoS::AtLeastOnce),
            ReasonCode::GrantedQos2 => Ok(QoS::ExactlyOnce),
            reason => Err(ClientError::SubscribeRefused { filter, reason }),
        }
    }

    /// Sends one SUBSCRIBE with several subscriptions and properties (a Subscription
    /// Identifier, User Properties) and returns the server's answer.
    pub async fn subscribe_with(
        &self,
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<SubAckInfo, ClientError> {
        self.call(|reply| Command::Subscribe {
            subscriptions,
            properties,
            reply,
        })
        .await
    }

    /// Unsubscribes from one filter.
    pub async fn unsubscribe(&self, filter: impl Into<String>) -> Result<ReasonCode, ClientError> {
        let codes = self
            .unsubscribe_with(vec![filter.into()], UnsubscribeProperties::default())
            .await?;
        Ok(codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UnspecifiedError))
    }

    /// Sends one UNSUBSCRIBE and returns a reason code per filter.
    pub async fn unsubscribe_with(
        &self,
        filters: Vec<String>,
        properties: UnsubscribeProperties,
    ) -> Result<Vec<ReasonCode>, ClientError> {
        self.call(|reply| Command::Unsubscribe {
            filters,
            properties,
            reply,
        })
        .await
    }

    /// Sends a request and waits for its response: publishes at QoS 1 with this client's
    /// response topic and a fresh Correlation Data, and returns the message that comes back
    /// with that Correlation Data. The response topic is subscribed on first use.
    ///
    /// The responder answers with [`Client::respond`]. With manual ack, ack the response like
    /// any message.
    ///
    /// ```no_run
    /// # async fn f(client: mooring::client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let response = client.request("svc/clock", "now?", Duration::from_secs(5)).await?;
    /// println!("{:?}", response.payload());
    ///
    /// // The other side:
    /// # let mut requests: mooring::client::Messages = todo!();
    /// while let Some(request) = requests.recv().await {
    ///     client.respond(&request, "12:00").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let inner = &self.inner;
        inner
            .response_subscribed
            .get_or_try_init(|| async {
                self.subscribe(inner.response_topic.clone(), QoS::AtLeastOnce)
                    .await
                    .map(|_| ())
            })
            .await?;
        let n = inner.next_correlation.fetch_add(1, Ordering::Relaxed);
        let mut correlation = Vec::with_capacity(16);
        correlation.extend_from_slice(&inner.correlation_seed.to_be_bytes());
        correlation.extend_from_slice(&n.to_be_bytes());
        let correlation = Bytes::from(correlation);
        let (reply, response) = oneshot::channel();
        inner
            .commands
            .send(Command::ExpectResponse {
                correlation: correlation.clone(),
                reply,
            })
            .await
            .map_err(|_| ClientError::Stopped)?;
        let mut publish = Publish::new(topic, payload);
        publish.qos = QoS::AtLeastOnce;
        publish.properties.response_topic = Some(inner.response_topic.clone());
        publish.properties.correlation_data = Some(correlation.clone());
        let sent = self.publish_with(publish).await;
        let outcome = match sent {
            Ok(_) => match tokio::time::timeout(timeout, response).await {
                Ok(Ok(message)) => Ok(message),
                Ok(Err(_)) => Err(ClientError::Stopped),
                Err(_) => Err(ClientError::Timeout(timeout)),
            },
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            let _ = inner
                .commands
                .try_send(Command::ForgetResponse { correlation });
        }
        outcome
    }

    /// Answers a request: publishes `payload` at QoS 1 on the request's Response Topic, with
    /// its Correlation Data.
    pub async fn respond(
        &self,
        request: &Message,
        payload: impl Into<Bytes>,
    ) -> Result<Delivery, ClientError> {
        let props = &request.publish().properties;
        let topic = props
            .response_topic
            .clone()
            .ok_or(ClientError::NoResponseTopic)?;
        let mut publish = Publish::new(topic, payload);
        publish.qos = QoS::AtLeastOnce;
        publish.properties.correlation_data = props.correlation_data.clone();
        self.publish_with(publish).await
    }

    /// Disconnects cleanly: waits (up to the drain timeout) for publishes in flight and queued
    /// to be acknowledged, sends DISCONNECT, commits the session and stops. What is still
    /// unacknowledged stays in the store for the next start.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        self.disconnect_with(ReasonCode::Success, None).await
    }

    /// Disconnects with a reason code (0x04 asks the server to publish the Will) and,
    /// optionally, a new Session Expiry Interval.
    pub async fn disconnect_with(
        &self,
        reason: ReasonCode,
        session_expiry: Option<Duration>,
    ) -> Result<(), ClientError> {
        let session_expiry = session_expiry.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        self.call(|reply| Command::Disconnect {
            reason,
            session_expiry,
            reply,
        })
        .await
    }

    /// Starts a re-authentication with the enhanced authenticator
    /// ([`ClientBuilder::authenticator`]) on the current connection.
    pub async fn reauthenticate(&self) -> Result<(), ClientError> {
        self.call(|reply| Command::Reauthenticate { reply }).await
    }

    /// A receiver of connection events (connected, lost, reconnecting, server disconnect,
    /// session lost). Events sent before the call are not seen; a receiver that falls more
    /// than 256 events behind skips the oldest.
    ///
    /// ```no_run
    /// # async fn f(client: mooring::client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use mooring::client::ClientEvent;
    /// let mut events = client.events();
    /// while let Ok(event) = events.recv().await {
    ///     match event {
    ///         ClientEvent::ConnectionLost { reason, .. } => eprintln!("lost: {reason}"),
    ///         ClientEvent::Reconnecting { delay, .. } => eprintln!("retry in {delay:?}"),
    ///         ClientEvent::Stopped { .. } => break,
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> broadcast::Receiver<ClientEvent> {
        self.inner.events.subscribe()
    }

    /// The current counters.
    ///
    /// ```no_run
    /// # fn f(client: mooring::client::Client) {
    /// let stats = client.stats();
    /// println!("{} in flight, {} queued, {:.1} publishes per commit",
    ///     stats.outbound_in_flight, stats.queued, stats.average_batch());
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// The topic this client's requests ask responses on.
    pub fn response_topic(&self) -> &str {
        &self.inner.response_topic
    }
}

impl ClientBuilder {
    /// Loads the session, starts the connection task and returns once the first CONNACK
    /// succeeded. Fails with the first round's last error when no server accepts, after
    /// trying each once; use [`ClientBuilder::start`] to keep trying in the background.
    pub async fn connect(self) -> Result<(Client, Messages), ClientError> {
        let (client, messages, first) = self.launch(driver::FirstFailure::Fail).await?;
        match first.await {
            Ok(Ok(())) => Ok((client, messages)),
            Ok(Err(e)) => Err(ClientError::Connect(e)),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// Loads the session and starts the connection task without waiting for a connection:
    /// publishes queue durably until one is up. For gateways that must start offline.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), mooring::client::ClientError> {
    /// use mooring::client::Client;
    /// use mooring::packet::QoS;
    /// # let store = mooring::store::MemoryStore::default();
    /// let (client, _messages) = Client::builder()
    ///     .server("mqtt://10.0.0.5")
    ///     .client_id("gateway-7")
    ///     .store(store)
    ///     .start()
    ///     .await?;
    /// // Durable now, sent whenever the broker is reachable.
    /// let _delivery = client.publish("site/7/boot", "1", QoS::AtLeastOnce).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(self) -> Result<(Client, Messages), ClientError> {
        let (client, messages, _first) = self.launch(driver::FirstFailure::Retry).await?;
        Ok((client, messages))
    }

    async fn launch(
        self,
        first_failure: driver::FirstFailure,
    ) -> Result<
        (
            Client,
            Messages,
            oneshot::Receiver<Result<(), ConnectError>>,
        ),
        ClientError,
    > {
        let settings = self.settings()?;
        let store = self.store.clone().ok_or(ClientError::NoStore)?;
        let (commands, command_rx) = mpsc::channel(self.command_capacity);
        let (events, _) = broadcast::channel(256);
        let (inbox, inbox_rx) = mpsc::channel(settings.inbox_capacity);
        let (alive, alive_rx) = oneshot::channel();
        let (first_tx, first_rx) = oneshot::channel();
        let stats = Arc::new(StatsCell::default());
        // Seeds the reconnect jitter and names this client's responses.
        let seed = fastrand::u64(..);
        let response_topic = self.response_topic.clone().unwrap_or_else(|| {
            let id = if settings.session.client_id.is_empty() {
                format!("{seed:016x}")
            } else {
                settings.session.client_id.clone()
            };
            format!("mooring/response/{id}")
        });
        let driver = driver::Driver::load(driver::Parts {
            settings,
            store,
            commands: command_rx,
            self_commands: commands.downgrade(),
            inbox,
            events: events.clone(),
            stats: stats.clone(),
            alive: alive_rx,
            first_connect: first_tx,
            first_failure,
            seed,
        })
        .await?;
        tokio::spawn(driver.run());
        let client = Client {
            inner: Arc::new(Inner {
                commands,
                events,
                stats,
                response_topic,
                response_subscribed: tokio::sync::OnceCell::new(),
                next_correlation: AtomicU64::new(0),
                correlation_seed: seed,
                _alive: alive,
            }),
        };
        Ok((client, Messages { rx: inbox_rx }, first_rx))
    }
}
