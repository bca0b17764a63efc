//! The client builder and the settings it fixes.

use std::sync::Arc;
use std::time::Duration;

use super::attempt::Hook;
use super::credentials::CredentialProvider;
use super::event_queue::{EventHub, Events};
use super::pace::ConnectPace;
use super::policy::{Backoff, QueuePolicy, Redelivery};
use super::proxy::ProxyRoutes;
use super::settlement::AckMode;
use super::transport::{Connector, TransportOptions};
use super::url::ServerUrl;
use crate::packet::{UserProperty, Will};
use crate::session::{Authenticator, SessionOptions};
use crate::store::{QueueWindow, SessionStore, SetAside};
use bytes::Bytes;

pub(crate) type AuthenticatorFactory = Arc<dyn Fn() -> Box<dyn Authenticator> + Send + Sync>;

/// Everything the driver needs, fixed at build time.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) servers: Vec<ServerUrl>,
    pub(crate) session: SessionOptions,
    pub(crate) cluster_scope: Option<String>,
    pub(crate) backoff: Backoff,
    pub(crate) connect_timeout: Duration,
    /// Turns for connection attempts, shared with other clients.
    pub(crate) connect_pace: Option<ConnectPace>,
    pub(crate) write_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) queue_limit: usize,
    /// The most bytes the queued messages may take in the store, if bounded.
    pub(crate) queue_limit_bytes: Option<usize>,
    pub(crate) queue_policy: QueuePolicy,
    pub(crate) inbox_capacity: usize,
    /// Messages the application did not handle; `None`: the protocol's default.
    pub(crate) redelivery: Option<Redelivery>,
    /// Where the wall-clock time comes from (`None`: the system clock).
    pub(crate) wall_clock: Option<super::clock::WallClockSource>,
    /// Acks are the application's to give; derived from the session's `manual_ack` when the
    /// client starts (the engine itself then always runs with manual ack).
    pub(crate) manual_ack: bool,
    pub(crate) transport: TransportOptions,
    /// Proxies of single servers, and whether the environment names one.
    pub(crate) proxy_routes: ProxyRoutes,
    pub(crate) connector: Option<Arc<dyn Connector>>,
    pub(crate) hook: Option<Hook>,
    /// Asked for a fresh credential before every attempt.
    pub(crate) credentials: Option<Arc<dyn CredentialProvider>>,
    pub(crate) authenticator: Option<AuthenticatorFactory>,
    /// Dial the server a DISCONNECT or CONNACK with 0x9C or 0x9D names.
    pub(crate) follow_server_references: bool,
    /// Start each round of attempts at the server that worked last.
    pub(crate) prefer_last_server: bool,
    /// The broker's documented limits and requirements, if one was named.
    pub(crate) profile: Option<super::profile::BrokerProfile>,
    /// How fast publishes may leave, if limited.
    pub(crate) drain_rate: Option<super::drain_rate::DrainRate>,
}

impl Settings {
    /// Who acks messages. The engine itself always runs with manual ack: the client gives
    /// automatic acks once the application is done with a message.
    pub(crate) fn ack_mode(&self) -> AckMode {
        if self.manual_ack {
            AckMode::Manual
        } else {
            AckMode::Automatic
        }
    }

    /// The redelivery policy in force.
    pub(crate) fn redelivery(&self) -> Redelivery {
        self.redelivery
            .clone()
            .unwrap_or_else(|| Redelivery::default_for(self.session.protocol))
    }
}

/// Builds a [`Client`](super::Client): servers, identity, session, store, reconnect policy,
/// limits and transports.
///
/// Only a server and a store are required. Defaults: a persistent session (Clean Start 0,
/// Session Expiry Interval one day), keep alive 60 s, Topic Aliases on, automatic acks,
/// reconnect with [`Backoff::default`], a durable queue of 100,000 messages that makes
/// publishers wait when full.
#[must_use]
pub struct ClientBuilder {
    /// Server addresses as given; parsed when the client starts.
    pub(crate) servers: Vec<String>,
    pub(crate) store: Option<Arc<dyn SessionStore>>,
    pub(crate) command_capacity: usize,
    pub(crate) response_topic: Option<String>,
    /// The client's events, given to every receiver taken before or after it starts.
    pub(crate) events: EventHub,
    /// A damaged store the application set aside before starting, to report.
    pub(crate) set_aside: Option<SetAside>,
    /// Everything else, as the driver will get it.
    pub(crate) settings: Settings,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        let mut session = SessionOptions::new("");
        session.properties.session_expiry_interval = Some(86_400);
        Self {
            servers: Vec::new(),
            store: None,
            command_capacity: 1024,
            response_topic: None,
            events: EventHub::default(),
            set_aside: None,
            settings: Settings {
                servers: Vec::new(),
                session,
                cluster_scope: None,
                backoff: Backoff::default(),
                connect_timeout: Duration::from_secs(10),
                connect_pace: None,
                write_timeout: Duration::from_secs(30),
                drain_timeout: Duration::from_secs(5),
                queue_limit: 100_000,
                queue_limit_bytes: None,
                queue_policy: QueuePolicy::Wait,
                inbox_capacity: 1024,
                redelivery: None,
                wall_clock: None,
                manual_ack: false,
                transport: TransportOptions::default(),
                proxy_routes: ProxyRoutes::default(),
                connector: None,
                hook: None,
                credentials: None,
                authenticator: None,
                follow_server_references: false,
                prefer_last_server: false,
                profile: None,
                drain_rate: None,
            },
        }
    }
}

impl ClientBuilder {
    /// Adds a server (`mqtt://`, `mqtts://`, `ws://`, `wss://`, `tcp://`, `ssl://`). With several,
    /// the client tries them in the order given, then round-robin.
    ///
    /// Each server keeps its own session in the store (what is in flight with one broker is
    /// never retransmitted to another); messages published while offline wait in the session of
    /// the server last tried. Name a [`cluster_scope`](Self::cluster_scope) when the servers
    /// share session state, or when queued messages must follow the client to whichever
    /// server answers.
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.servers.push(url.into());
        self
    }

    /// The client identifier. Empty (the default) lets the server assign one; the assigned
    /// identifier is stored and reused.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.settings.session.client_id = id.into();
        self
    }

    /// The session store (required): a `RedbStore` for durable sessions, a `MemoryStore` for
    /// ephemeral ones.
    pub fn store(self, store: impl SessionStore + 'static) -> Self {
        self.store_arc(Arc::new(store))
    }

    /// A store shared with other code.
    pub fn store_arc(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// All servers are one cluster with shared session state: one session, named `scope`,
    /// follows the client from server to server.
    pub fn cluster_scope(mut self, scope: impl Into<String>) -> Self {
        self.settings.cluster_scope = Some(scope.into());
        self
    }

    /// How long the server keeps the session after the connection ends (Session Expiry
    /// Interval; whole seconds, a fraction rounded up). Zero ends the session with the
    /// connection; 136 years or more (`Duration::MAX`) is "never".
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.settings.session.properties.session_expiry_interval =
            Some(super::human::secs_u32(expiry));
        self
    }

    /// Start without the server's session state on the first connection (Clean Start 1).
    /// Later reconnects always resume.
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.settings.session.clean_start = clean;
        self
    }

    /// The keep alive interval (whole seconds, a fraction rounded up, at most 65,535; zero
    /// turns it off).
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.settings.session.keep_alive = super::human::secs_u16(interval);
        self
    }

    /// How long to wait for PINGRESP before the connection counts as dead.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.settings.session.ping_timeout = timeout;
        self
    }

    /// The user name and password of CONNECT.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.settings.session.username = Some(username.into());
        self.settings.session.password = Some(password.into());
        self
    }

    /// The Will Message (use its `properties.will_delay_interval` for a delay).
    pub fn will(mut self, will: Will) -> Self {
        self.settings.session.will = Some(will);
        self
    }

    /// Acknowledge inbound QoS 1/2 messages only when the application calls
    /// [`Message::ack`](super::Message::ack) (or [`reject`](super::Message::reject)). Without
    /// it, a message is acked once the application is done with it: when it asks its
    /// [`Messages`](super::Messages) for the next one, or drops it.
    pub fn manual_ack(mut self, manual: bool) -> Self {
        self.settings.session.manual_ack = manual;
        self
    }

    /// What becomes of the QoS 1/2 publishes that may have reached a session the server lost
    /// (CONNACK with Session Present 0): sent again as new messages
    /// ([`LostSession::Republish`](crate::session::LostSession), the default: nothing is lost,
    /// a QoS 2 message may arrive twice) or discarded and reported, as MQTT-3.1.2-4 has it
    /// (`LostSession::Discard`: nothing arrives twice, each delivery fails with
    /// [`DeliveryError::SessionLost`](super::DeliveryError::SessionLost)).
    pub fn lost_session(mut self, policy: crate::session::LostSession) -> Self {
        self.settings.session.lost_session = policy;
        self
    }

    /// Where the client reads the wall-clock time (the system clock by default), for a
    /// gateway with a better source (a GPS receiver) or a test. Session and Message Expiry
    /// count in it; see GUARANTEES.md for what a clock that is wrong at start, or steps, does.
    pub fn wall_clock(
        mut self,
        now: impl Fn() -> std::time::SystemTime + Send + Sync + 'static,
    ) -> Self {
        self.settings.wall_clock = Some(Arc::new(now));
        self
    }

    /// What happens to a message the application did not handle (dropped unacked with
    /// manual ack, [`release`](super::Message::release)d, or dropped while its thread
    /// panicked): see [`Redelivery`]. By default it is handed over again after 1 s, up to 5
    /// deliveries, then refused with 0x80 (MQTT 5) or discarded (3.1.1, which cannot refuse).
    pub fn redelivery(mut self, redelivery: Redelivery) -> Self {
        self.settings.redelivery = Some(redelivery);
        self
    }

    /// How many unacknowledged QoS 1/2 messages the server may send at once (Receive Maximum;
    /// default: the inbox capacity, 1,024). With manual ack the application never holds more than this many
    /// unacked: a server that sends more (mosquitto 2.0 does) is not disconnected, its extra
    /// messages wait in the client until acks make room ([`Stats::inbound_held`](super::Stats)).
    ///
    /// With mosquitto 2.0 and persistence, keep it at most half the broker's
    /// `max_inflight_messages` where QoS 2 messages to this client must stay exactly-once
    /// across broker restarts: mosquitto restores only that many as in flight and sends the
    /// rest as new PUBLISHes, even those it had already released (GUARANTEES.md).
    pub fn receive_maximum(mut self, maximum: u16) -> Self {
        self.settings.session.properties.receive_maximum = Some(maximum.max(1));
        self
    }

    /// The most bytes (topics and payloads) of messages a server sent over the client's
    /// Receive Maximum that wait in the client (default 64 MiB); past it the server is
    /// disconnected with 0x93.
    pub fn held_bytes_limit(mut self, bytes: usize) -> Self {
        self.settings.session.held_bytes_limit = bytes;
        self
    }

    /// The largest packet the client accepts (Maximum Packet Size; default 16 MiB, so that
    /// one packet cannot make the client buffer the protocol's 256 MiB).
    pub fn maximum_packet_size(mut self, bytes: u32) -> Self {
        self.settings.session.properties.maximum_packet_size = Some(bytes.max(1));
        self
    }

    /// The protocol: MQTT v5.0 (the default) or 3.1.1 (`ProtocolVersion::V311`), for brokers
    /// that speak only 3.1.1. A 3.1.1 client keeps the same store and guarantees; what 3.1.1
    /// cannot express is refused, never dropped: a setting when the client is built
    /// ([`ClientError::NeedsV5`](super::ClientError::NeedsV5)), a call when it is made (a
    /// refusal, a DISCONNECT reason, a publish with properties). Its in-flight window is
    /// [`in_flight_maximum`](Self::in_flight_maximum), 20 unless set.
    pub fn protocol(mut self, version: crate::packet::ProtocolVersion) -> Self {
        self.settings.session.protocol = version;
        self
    }

    /// How much of the durable queue is held in memory: at most `messages` messages and
    /// `bytes` bytes of their packets (default 16,384 and 16 MiB). The rest waits in the store
    /// and is read back in order as the queue drains, so a queue of millions costs this
    /// window, not its length.
    pub fn queue_window(mut self, messages: usize, bytes: usize) -> Self {
        self.settings.session.queue_window = QueueWindow::new(messages.max(1), bytes);
        self
    }

    /// The most QoS 1/2 publishes in flight at once: with MQTT 5 the server's Receive Maximum
    /// limits them too, with 3.1.1 this is the only limit (20 unless set).
    pub fn in_flight_maximum(mut self, maximum: u16) -> Self {
        self.settings.session.in_flight_maximum = Some(maximum.max(1));
        self
    }

    /// How many Topic Aliases the server may use towards the client (0, the default, none).
    pub fn topic_alias_maximum(mut self, maximum: u16) -> Self {
        self.settings.session.properties.topic_alias_maximum = (maximum > 0).then_some(maximum);
        self
    }

    /// Use Topic Aliases towards the server when it allows them (on by default).
    pub fn topic_aliases(mut self, on: bool) -> Self {
        self.settings.session.topic_aliases = on;
        self
    }

    /// Adds a User Property to CONNECT.
    pub fn user_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings
            .session
            .properties
            .user_properties
            .push(UserProperty::new(name, value));
        self
    }

    /// Ask the server for Response Information in CONNACK.
    pub fn request_response_information(mut self, on: bool) -> Self {
        self.settings
            .session
            .properties
            .request_response_information = Some(on);
        self
    }

    /// Whether the server may send a Reason String and User Properties on every packet (the
    /// default) or only on PUBLISH, CONNACK and DISCONNECT (`false`); a server that sends them
    /// elsewhere after `false` is disconnected with 0x82.
    pub fn request_problem_information(mut self, on: bool) -> Self {
        self.settings.session.properties.request_problem_information = Some(on);
        self
    }

    /// The most publishes the durable queue holds (waiting for a connection, an identifier or
    /// send quota), and what happens to a publish beyond it.
    pub fn queue_limit(mut self, limit: usize, policy: QueuePolicy) -> Self {
        self.settings.queue_limit = limit.max(1);
        self.settings.queue_policy = policy;
        self
    }

    /// Bounds the durable queue by the bytes its messages take in the store as well (each
    /// message's PUBLISH packet), beyond [`queue_limit`](Self::queue_limit)'s count; the same
    /// policy applies. A single message larger than this is refused with
    /// `ClientError::QueueFull`.
    pub fn queue_limit_bytes(mut self, bytes: usize) -> Self {
        self.settings.queue_limit_bytes = Some(bytes.max(1));
        self
    }

    /// The bound of the in-memory channel between the handles and the connection task; callers
    /// wait when it is full.
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.command_capacity = capacity.max(1);
        self
    }

    /// How many received messages wait in the inbox for the application (default 1,024).
    ///
    /// A QoS 1/2 message that finds the inbox full waits in the client unacknowledged, so the
    /// server's Receive Maximum (by default this capacity) holds it back, and the client keeps
    /// reading the network: acks for the application's own publishes still arrive. Only QoS 0
    /// messages, which nothing acknowledges, stop reading when this many wait behind a full
    /// inbox; a task that awaits a [`Delivery`](super::Delivery) should then not be the one
    /// that empties the inbox.
    pub fn inbox_capacity(mut self, capacity: usize) -> Self {
        self.settings.inbox_capacity = capacity.max(1);
        self
    }

    /// Subscribe again to every granted subscription when a server has no session for the
    /// client (on by default). Granted subscriptions are kept in the store with the session, so
    /// this holds after a restart too; SUBSCRIBE goes out before anything else on that
    /// connection.
    pub fn resubscribe(mut self, on: bool) -> Self {
        self.settings.session.resubscribe = on;
        self
    }

    /// A receiver of every event of the client from its start, the first connection's
    /// included: `SessionExpired`, `SessionLost` (a restart on a store whose broker session is
    /// gone) and `Connected` happen before `connect()` returns, so a receiver taken afterwards
    /// from [`Client::events`](super::Client::events) can miss them. Call it before
    /// `connect()` or `start()`; every call gives another receiver of the same events.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), mooring::client::ClientError> {
    /// use mooring::client::{Client, ClientEvent};
    /// # let store = mooring::store::MemoryStore::default();
    /// let mut builder = Client::builder().server("mqtt://10.0.0.5").store(store);
    /// let mut events = builder.events();
    /// let (client, _messages) = builder.connect().await?;
    /// while let Some(event) = events.try_recv() {
    ///     if let ClientEvent::SessionLost { resent, .. } = event {
    ///         eprintln!("the broker had lost our session; {resent} messages sent again");
    ///     }
    /// }
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn events(&mut self) -> Events {
        self.events.subscribe()
    }

    /// Reports, as `ClientEvent::StoreSetAside` when the client starts (and a warning), that
    /// the store was opened by [`open_or_set_aside`](crate::store::open_or_set_aside) after
    /// moving a damaged one aside.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use mooring::Client;
    /// use mooring::store::{RedbStore, open_or_set_aside};
    /// let (store, set_aside) = open_or_set_aside("gateway.redb", RedbStore::open)?;
    /// let mut builder = Client::builder().server("mqtt://10.0.0.5").store(store);
    /// if let Some(set_aside) = set_aside {
    ///     builder = builder.store_set_aside(set_aside);
    /// }
    /// let (client, _messages) = builder.start().await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn store_set_aside(mut self, set_aside: SetAside) -> Self {
        self.set_aside = Some(set_aside);
        self
    }

    /// The topic [`Client::request`](super::Client::request) asks responses on
    /// (`mooring/response/<client id>` by default).
    pub fn response_topic(mut self, topic: impl Into<String>) -> Self {
        self.response_topic = Some(topic.into());
        self
    }

    /// Checks the settings as [`connect`](Self::connect) and [`start`](Self::start) do,
    /// without a store or a connection: the addresses, the features they need, and what
    /// MQTT 3.1.1 cannot express. The store is not checked.
    pub fn validate(&self) -> Result<(), super::error::ClientError> {
        self.settings().map(|_| ())
    }

    pub(crate) fn settings(&self) -> Result<Settings, super::error::ClientError> {
        if self.servers.is_empty() {
            return Err(super::error::ClientError::NoServer);
        }
        let servers = self
            .servers
            .iter()
            .map(|s| s.parse::<ServerUrl>())
            .collect::<Result<Vec<_>, _>>()?;
        // Refused here, not met as a failed dial on every attempt.
        if let Some((server, feature)) = servers
            .iter()
            .find_map(|s| s.scheme().missing_feature().map(|f| (s, f)))
        {
            return Err(super::error::ClientError::FeatureMissing {
                feature,
                needed_for: server.to_string(),
            });
        }
        self.settings.proxy_routes.check()?;
        let mut settings = Settings {
            servers,
            ..self.settings.clone()
        };
        let session = &mut settings.session;
        // The client gives automatic acks itself, once the application is done with a
        // message: the engine waits for an ack either way.
        settings.manual_ack = session.manual_ack;
        session.manual_ack = true;
        if session.properties.receive_maximum.is_none() {
            // No more unacked messages than the inbox holds: then QoS 1/2 messages cannot fill
            // it, and a full inbox (which stops socket reads) cannot keep the application from
            // a PUBACK it awaits.
            let capacity = u16::try_from(settings.inbox_capacity).unwrap_or(u16::MAX);
            session.properties.receive_maximum = Some(capacity.max(1));
        }
        super::v311::check(
            &settings.session,
            settings.authenticator.is_some(),
            settings.redelivery.as_ref(),
        )?;
        backlog::apply_backlog(&mut settings)?;
        if let Some(profile) = settings.profile {
            cloud::apply_profile(profile, &mut settings);
            cloud::check_profile(profile, &settings)?;
        }
        Ok(settings)
    }
}

mod backlog;
mod cloud;
mod connecting;
mod from_config;
mod transport;

#[cfg(test)]
mod tests;
