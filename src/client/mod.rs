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
//!     .connect()          // returns once the first CONNACK succeeded (or with the error)
//!     .await?;
//!
//! client.subscribe("plant/+/telemetry", QoS::ExactlyOnce).await?;
//! // Returns once the message is durable in the store; it will be delivered even if the
//! // process dies now. The delivery resolves when the server completes it (PUBCOMP).
//! let delivery = client.publish("site/7/status", "up", QoS::ExactlyOnce).await?;
//! delivery.await?;
//!
//! while let Some(message) = messages.recv().await { // acks the message before this one
//!     println!("{}: {:?}", message.topic(), message.payload());
//! #   break;
//! }
//! client.disconnect().await?; // drains, sends DISCONNECT, flushes the store
//! # Ok(()) }
//! ```
//!
//! # When a received message is acked
//!
//! Once the application is done with it, so that a message the process did not finish is sent
//! again ([`Message`] has the details):
//!
//! - By default, when the application asks its [`Messages`] for the next message, or drops
//!   this one. At QoS 2 the next message comes once this one's ack is durable: after a crash,
//!   only the message the application held is handed over again.
//! - With [`ClientBuilder::manual_ack`], when it calls [`Message::ack`] or
//!   [`Message::reject`].
//! - With [`Message::forward`], in the store commit that makes its copy durable: a bridge to
//!   another broker that neither loses nor duplicates across a crash.
//!
//! A message dropped unhandled (in a panic, unacked with manual ack, or
//! [`release`](Message::release)d) is handed over again after a delay, a bounded number of
//! times ([`ClientBuilder::redelivery`]).
//!
//! # Cancelling
//!
//! Every async function says what dropping its future does. A [`Client::publish`] dropped
//! before it returned is never sent; one that returned goes whatever becomes of its
//! [`Delivery`]. [`Client::closed`] says why a client stopped.
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

mod attempt;
mod clock;
mod config;
mod credentials;
mod drain_rate;
mod driver;
mod error;
mod event_queue;
mod events;
mod forward;
mod human;
mod inbox;
mod launch;
mod message;
pub mod metrics;
mod open_store;
mod options;
mod outgoing;
mod pace;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod policy;
mod profile;
mod proxy;
mod publish_options;
#[cfg(feature = "quic")]
mod quic;
mod router;
mod settlement;
#[cfg(feature = "tls")]
mod tls;
mod tls_error;
mod transport;
mod url;
mod v311;

pub use error::{
    ClientError, ConnectError, ConnectionLoss, DeliveryError, ProtocolError, StopReason,
};
pub use event_queue::Events;
pub use events::{ClientEvent, ReconnectReason, Stats, SubAckInfo};
pub use inbox::Messages;
pub use message::{Delivery, Message};

pub use attempt::{ConnectAttempt, HookError};
pub use config::{
    BacklogConfig, ClientConfig, ConfigError, ConfigKeyCarrier, ConfigLostSession, ConfigProtocol,
    DeduplicationConfig, Property, ProxyConfig, QueueWindowConfig, StoreBackend, StoreConfig,
    TlsConfig, WillConfig,
};
pub use credentials::{Credential, CredentialProvider};
pub use drain_rate::DrainRate;
use events::StatsCell;
pub use options::ClientBuilder;
pub use pace::ConnectPace;
#[cfg(feature = "pkcs11")]
pub use pkcs11::Pkcs11Key;
pub use policy::{Backoff, Exhausted, QueuePolicy, Redelivery, Refusal};
pub use profile::{AWS_IOT_ALPN, AZURE_IOT_HUB_API_VERSION, BrokerLimits, BrokerProfile};
pub use proxy::{Proxy, ProxyError, ProxyKind};
pub use publish_options::PublishOptions;
pub use router::{Router, topic_matches};
#[cfg(feature = "tls")]
pub use tls::TlsOptions;
pub use tls_error::TlsError;
pub use transport::{AsyncStream, BoxFuture, Connector, TransportError, TransportOptions};
pub use url::{Scheme, ServerUrl, UrlError};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::packet::{
    Publish, QoS, ReasonCode, SubscribeProperties, Subscription, UnsubscribeProperties,
};
use driver::Command;

/// A handle to a running client. Cheap to clone; every clone talks to the same connection.
/// The client stops (sending DISCONNECT) when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::Sender<Command>,
    events: event_queue::EventHub,
    stats: Arc<StatsCell>,
    response_topic: String,
    response_subscribed: tokio::sync::OnceCell<()>,
    next_correlation: AtomicU64,
    correlation_seed: u64,
    /// Set once the client has stopped and released its store: why.
    stopped: watch::Receiver<Option<StopReason>>,
    /// The last handle was dropped in a panic: end the connection so that the Will goes out.
    panicked: Arc<AtomicBool>,
    _alive: oneshot::Sender<()>,
}

/// The last handle is gone: the client stops. In a panic it is no clean stop: the connection
/// ends so that the server publishes the Will.
impl Drop for Inner {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.panicked.store(true, Ordering::SeqCst);
        }
    }
}

impl Client {
    /// A builder; see [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Sends the command `make` builds and waits for its reply. It waits for room in the
    /// command channel before building the command (`reserve`, not `send`), so that the
    /// future holds the command's parts once: a publish is in flight per message, and a
    /// future over tcache's 1 KiB took glibc's slow path on each. `publish`, `publish_with`
    /// and `try_publish` return this future itself: as async fns, each layer kept its own
    /// copy of the PUBLISH.
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let permit = self
            .inner
            .commands
            .reserve()
            .await
            .map_err(|_| ClientError::Stopped)?;
        let (reply, rx) = oneshot::channel();
        permit.send(make(reply));
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
    /// Cancel safety: a publish dropped before it returned is never sent, and never stored or
    /// removed again: it is taken back whether it still waited for the client, for room in the
    /// queue or for its commit. One that returned `Ok` always goes. A kill of the process
    /// during its commit is the one exception: its record may then be durable, and it is sent
    /// after the restart (as for any publish the process was making when it died). A QoS 0
    /// publish that the client already handed to the connection goes out.
    ///
    /// ```no_run
    /// # async fn f(client: mooring::client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use mooring::packet::QoS;
    /// let delivery = client.publish("site/7/status", "up", QoS::ExactlyOnce).await?; // durable
    /// let reason = delivery.await?; // PUBCOMP's reason code
    /// # let _ = reason; Ok(()) }
    /// ```
    pub fn publish(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        qos: QoS,
    ) -> impl Future<Output = Result<Delivery, ClientError>> + Send + '_ {
        let mut publish = Publish::new(topic, payload);
        publish.qos = qos;
        self.publish_with(publish)
    }

    /// Publishes `payload` on `topic` with `options`: retain, Message Expiry, Content Type and
    /// the other properties an application sets, without building the PUBLISH by hand.
    /// Otherwise as [`Client::publish`], cancel safety included.
    pub fn publish_with_options(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        options: PublishOptions,
    ) -> impl Future<Output = Result<Delivery, ClientError>> + Send + '_ {
        self.publish_with(options.publish(topic.into(), payload.into()))
    }

    /// Publishes a complete PUBLISH (retain, properties). Its packet identifier, DUP flag and
    /// Topic Alias are the client's to set: what the publish carries there is replaced.
    /// Subscription Identifiers are removed, since a client may not send them [MQTT-3.3.4-6]:
    /// a message received from the server can be forwarded as it is (or, acked in the same
    /// commit, with [`Message::forward`]).
    ///
    /// Cancel safety: as [`Client::publish`].
    pub fn publish_with(
        &self,
        publish: Publish,
    ) -> impl Future<Output = Result<Delivery, ClientError>> + Send + '_ {
        self.call(|reply| Command::Publish {
            publish,
            when_full: None,
            reply,
        })
    }

    /// Like [`Client::publish_with`], but never waits for room in the durable queue: when it
    /// is full (its count or its bytes), fails at once with [`ClientError::QueueFull`],
    /// whatever the queue policy. It still returns only once the message is durable.
    ///
    /// Cancel safety: as [`Client::publish`].
    pub fn try_publish(
        &self,
        publish: Publish,
    ) -> impl Future<Output = Result<Delivery, ClientError>> + Send + '_ {
        self.call(|reply| Command::Publish {
            publish,
            when_full: Some(QueuePolicy::Fail),
            reply,
        })
    }

    /// Publishes the copy of a message being forwarded ([`Message::forward`]).
    pub(crate) async fn forward(
        &self,
        publish: Publish,
        from: settlement::Forwarding,
    ) -> Result<Delivery, ClientError> {
        self.call(|reply| Command::Forward {
            publish,
            from,
            reply,
        })
        .await
    }

    /// Subscribes to one filter and returns the QoS the server granted.
    ///
    /// While disconnected, the SUBSCRIBE is sent on the next connection and the call waits
    /// for it. Subscriptions are made again when a server has no session for the client.
    ///
    /// Cancel safety: dropped before its SUBSCRIBE was sent (while it waits for a connection,
    /// say), nothing is sent. Dropped after, the subscription takes effect as the server
    /// grants it and is kept with the session; unsubscribe to undo it.
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
    ///
    /// Cancel safety: as [`Client::subscribe`].
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

    /// Unsubscribes from one filter. Returns the server's success code (`Success`, or
    /// `NoSubscriptionExisted`); a refusal (0x80 or above) is
    /// [`ClientError::UnsubscribeRefused`], as a refused subscription is an error of
    /// [`Client::subscribe`].
    ///
    /// Cancel safety: dropped before its UNSUBSCRIBE was sent, nothing is sent; after, the
    /// server removes the subscription and the session forgets it.
    pub async fn unsubscribe(&self, filter: impl Into<String>) -> Result<ReasonCode, ClientError> {
        let filter = filter.into();
        let codes = self
            .unsubscribe_with(vec![filter.clone()], UnsubscribeProperties::default())
            .await?;
        match codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UnspecifiedError)
        {
            reason if reason.is_error() => Err(ClientError::UnsubscribeRefused { filter, reason }),
            reason => Ok(reason),
        }
    }

    /// Sends one UNSUBSCRIBE and returns a reason code per filter.
    ///
    /// Cancel safety: as [`Client::unsubscribe`].
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
    /// Cancel safety: a request dropped before it returned (or that timed out) leaves nothing
    /// behind: its publish is taken back as [`Client::publish`]'s would be, the client stops
    /// waiting for its response ([`Stats::responses_awaited`]), and a response that comes
    /// later is acked and dropped, never handed to the application.
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
                Ok(Ok(message)) => {
                    // In the application's hands now: dropping it acks it (automatic ack).
                    message.hand_over();
                    Ok(message)
                }
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
    ///
    /// Cancel safety: as [`Client::publish`].
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
    ///
    /// Cancel safety: the disconnect goes on once the client has it; dropping the future only
    /// stops waiting for it.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        self.disconnect_with(ReasonCode::Success, None).await
    }

    /// Disconnects with a reason code (0x04 asks the server to publish the Will) and,
    /// optionally, a new Session Expiry Interval.
    ///
    /// Cancel safety: as [`Client::disconnect`].
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
    ///
    /// Cancel safety: once the client has it, the re-authentication goes on.
    pub async fn reauthenticate(&self) -> Result<(), ClientError> {
        self.call(|reply| Command::Reauthenticate { reply }).await
    }

    /// A receiver of connection events (connected, lost, reconnecting, server disconnect,
    /// session lost). Events sent before the call are not seen, those of the first
    /// connection included: take a receiver from
    /// [`ClientBuilder::events`](options::ClientBuilder::events) before `connect()` to see
    /// them. A receiver never misses a critical event however slowly it reads; of the others
    /// it keeps the newest 256 (see [`Events`]).
    ///
    /// ```no_run
    /// # async fn f(client: mooring::client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use mooring::client::ClientEvent;
    /// let mut events = client.events();
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClientEvent::ConnectionLost { reason, .. } => eprintln!("lost: {reason}"),
    ///         ClientEvent::Reconnecting { delay, .. } => eprintln!("retry in {delay:?}"),
    ///         ClientEvent::Stopped { .. } => break,
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> Events {
        self.inner.events.subscribe()
    }

    /// Resolves once the client has stopped, its store released, with why: a
    /// [`disconnect`](Client::disconnect), a failure it cannot go on from (the store, the
    /// session taken over, the reconnect attempts run out), and so on.
    ///
    /// Cancel safety: cancel safe.
    ///
    /// ```no_run
    /// # async fn f(client: mooring::client::Client) {
    /// use mooring::client::StopReason;
    /// match client.closed().await {
    ///     StopReason::Disconnected => {}
    ///     reason => eprintln!("the client stopped: {reason}"),
    /// }
    /// # }
    /// ```
    pub async fn closed(&self) -> StopReason {
        let mut stopped = self.inner.stopped.clone();
        match stopped.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(StopReason::TaskEnded),
            Err(_) => StopReason::TaskEnded,
        }
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
