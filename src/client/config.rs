//! Client settings as data: [`ClientConfig`], read from and written to a file (TOML with the
//! `toml` feature, or anything serde reads), and turned into a builder and back.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::human;
use super::policy::{Backoff, QueuePolicy, Redelivery};

mod backlog;
mod cloud;
mod proxy;
#[cfg(feature = "toml")]
pub(crate) mod reference;
mod secret;
mod store;
#[cfg(test)]
mod tests;

pub use backlog::BacklogConfig;
pub use cloud::{ConfigKeyCarrier, DeduplicationConfig};
pub use proxy::ProxyConfig;
pub(crate) use proxy::{configs_of as proxy_configs_of, routes_of as proxy_routes_of};
pub(crate) use secret::Secret;
pub use store::{StoreBackend, StoreConfig};

/// Every setting of a [`ClientBuilder`](super::ClientBuilder) but those that are code (the
/// store, a [`Connector`](super::Connector), the `before_connect` hook, an authenticator, a
/// rustls configuration given whole): a gateway configured by file.
///
/// Durations are written as people write them (`"30s"`, `"250ms"`, `"1h 30m"`); unknown keys
/// are refused, so a misspelt setting is an error naming it rather than a default silently
/// kept. [`ClientBuilder::from_config`](super::ClientBuilder::from_config) makes a builder of
/// it; [`ClientBuilder::to_config`](super::ClientBuilder::to_config) writes one back, and the
/// two round-trip.
///
/// ```
/// # #[cfg(feature = "toml")] {
/// let config = mooring::client::ClientConfig::from_toml(r#"
///     servers = ["mqtt://10.0.0.5:1883", "mqtt://10.0.0.6:1883"]
///     client_id = "gateway-7"
///     session_expiry = "1day"
///     queue_limit = 50000
///     queue_full = "fail"
///
///     [reconnect]
///     initial = "200ms"
///     maximum = "1m"
/// "#)?;
/// let builder = mooring::client::ClientBuilder::from_config(&config)?;
/// # let _ = builder;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Server addresses, tried in order.
    pub servers: Vec<String>,
    /// The client identifier (empty: the server assigns one).
    pub client_id: String,
    /// One session for all servers under this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<String>,
    /// The protocol: `"5"` (the default) or `"3.1.1"`.
    pub protocol: ConfigProtocol,
    /// Clean Start on the first connection.
    pub clean_start: bool,
    /// The Session Expiry Interval: a duration, or `"never"`.
    #[serde(with = "human::expiry")]
    pub session_expiry: u32,
    /// Keep alive (whole seconds up to 65,535; `"0s"` turns it off).
    #[serde(with = "human::keep_alive")]
    pub keep_alive: Duration,
    /// How long to wait for PINGRESP.
    #[serde(with = "human")]
    pub ping_timeout: Duration,
    /// The user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password (text). Better kept out of the file: `password_env` or `password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The password, from this environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The password, from this file (its first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The Will Message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub will: Option<WillConfig>,
    /// User Properties of CONNECT, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<Property>,
    /// Manual acknowledgement of inbound messages.
    pub manual_ack: bool,
    /// What happens to a message the application did not handle (unset: the protocol's
    /// default, see [`ClientBuilder::redelivery`](super::ClientBuilder::redelivery)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redelivery: Option<Redelivery>,
    /// Publishes that may have reached a session the server lost: `"republish"` (the
    /// default) or `"discard"`.
    pub lost_session: ConfigLostSession,
    /// The broker's profile: `"aws-iot-core"`, `"azure-iot-hub"`, `"azure-event-grid"`,
    /// `"hivemq-cloud"`, `"emqx"`, `"mosquitto"` or `"generic"` (unset: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_profile: Option<super::profile::BrokerProfile>,
    /// Give every QoS 1 publish an idempotency key: `"user_property"` or `"envelope"`
    /// (unset: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_publishes: Option<ConfigKeyCarrier>,
    /// Drop copies of handled QoS 1 messages by their idempotency key (unset: every copy is
    /// handed over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplicate: Option<DeduplicationConfig>,
    /// Latest-value topics and the drain rate (unset: every value is kept, publishes leave
    /// as fast as the server allows).
    #[serde(skip_serializing_if = "BacklogConfig::is_empty")]
    pub backlog: BacklogConfig,
    /// Receive Maximum (unset: the inbox capacity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size the client accepts (unset: no limit announced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_packet_size: Option<u32>,
    /// The most bytes of inbound messages held back for the application.
    pub held_bytes_limit: usize,
    /// The most QoS 1/2 publishes in flight (the only limit with 3.1.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight_maximum: Option<u16>,
    /// Topic Aliases towards the server.
    pub topic_aliases: bool,
    /// Topic Alias Maximum towards the client (0: none).
    pub topic_alias_maximum: u16,
    /// Request Response Information in CONNECT (unset: not sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_response_information: Option<bool>,
    /// Request Problem Information in CONNECT (unset: not sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_problem_information: Option<bool>,
    /// Make the stored subscriptions again when a server lost the session.
    pub resubscribe: bool,
    /// The topic this client's requests ask responses on (unset: one is made up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// How long a connection attempt may take, CONNACK included.
    #[serde(with = "human")]
    pub connect_timeout: Duration,
    /// How long a write may stall before the connection counts as lost.
    #[serde(with = "human")]
    pub write_timeout: Duration,
    /// How long `disconnect` waits for messages in flight.
    #[serde(with = "human")]
    pub drain_timeout: Duration,
    /// The reconnect policy.
    pub reconnect: Backoff,
    /// Dial the server a DISCONNECT or CONNACK with 0x9C or 0x9D names
    /// ([`ClientBuilder::follow_server_references`](super::ClientBuilder::follow_server_references)).
    pub follow_server_references: bool,
    /// Start each round of attempts at the server that worked last.
    pub prefer_last_server: bool,
    /// The most messages the durable queue holds.
    pub queue_limit: usize,
    /// The most bytes the durable queue holds, if bounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_limit_bytes: Option<usize>,
    /// What a publish does when the queue is full: `"wait"`, `"fail"` or `"drop_oldest"`.
    pub queue_full: QueuePolicy,
    /// How much of the queue stays in memory.
    pub queue_window: QueueWindowConfig,
    /// Messages the inbox holds for the application.
    pub inbox_capacity: usize,
    /// Requests from handles that wait for the connection task.
    pub channel_capacity: usize,
    /// TLS for `mqtts://` and `wss://` servers (unset: the system's roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// HTTP headers of the WebSocket handshake, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub websocket_headers: Vec<Property>,
    /// The proxies servers are reached through (`[[proxies]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<ProxyConfig>,
    /// Servers without a proxy take the one the environment names (`https_proxy`,
    /// `http_proxy`, `all_proxy`, `no_proxy`).
    pub proxy_from_env: bool,
    /// The session store ([`ClientConfig::open_store`]); unset, the application gives one
    /// ([`ClientBuilder::store`](super::ClientBuilder::store)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreConfig>,
}

/// The protocol a [`ClientConfig`] speaks, written `"5"` or `"3.1.1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConfigProtocol {
    /// MQTT v5.0.
    #[default]
    #[serde(rename = "5")]
    V5,
    /// MQTT 3.1.1.
    #[serde(rename = "3.1.1")]
    V311,
}

/// What a [`ClientConfig`] does with publishes that may have reached a session the server lost,
/// written `"republish"` or `"discard"` (see
/// [`ClientBuilder::lost_session`](super::ClientBuilder::lost_session)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigLostSession {
    /// Send them again as new messages.
    #[default]
    Republish,
    /// Discard them and report each.
    Discard,
}

/// A name and a value: a User Property, or an HTTP header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Property {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// The queue's window in memory ([`ClientBuilder::queue_window`](super::ClientBuilder::queue_window)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueWindowConfig {
    /// Messages.
    pub messages: usize,
    /// Bytes.
    pub bytes: usize,
}

impl Default for QueueWindowConfig {
    /// The builder's window: 16,384 messages and 16 MiB.
    fn default() -> Self {
        Self {
            messages: crate::session::DEFAULT_QUEUE_WINDOW.messages,
            bytes: crate::session::DEFAULT_QUEUE_WINDOW.bytes,
        }
    }
}

/// The Will Message of a [`ClientConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WillConfig {
    /// Its topic.
    pub topic: String,
    /// Its payload (text).
    pub payload: String,
    /// Its QoS: 0, 1 or 2.
    pub qos: u8,
    /// Whether it is retained.
    pub retain: bool,
    /// Will Delay Interval.
    #[serde(
        with = "human::option",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub delay: Option<Duration>,
    /// Message Expiry Interval.
    #[serde(
        with = "human::option",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub message_expiry: Option<Duration>,
    /// Payload Format Indicator: whether the payload is UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_is_utf8: Option<bool>,
    /// Content Type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Response Topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// Correlation Data (text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    /// User Properties, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<Property>,
}

/// TLS settings by file or by PEM text (feature `tls`): whom to trust, who the client is, the
/// name to verify and the ALPN protocols to offer.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust (with neither this nor `ca_pem`: the system's
    /// roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The CA certificates to trust, as PEM text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// PEM file of the client certificate chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client's private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// The client certificate chain, as PEM text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
    /// The client's private key, as PEM text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_pem: Option<String>,
    /// The client's private key in a PKCS#11 token (feature `pkcs11`), as an RFC 7512 URI:
    /// `pkcs11:token=...;object=...?module-path=...&pin-source=...`. The certificate is
    /// `client_cert_file` or `client_cert_pem`, or with neither the one stored beside the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_pkcs11: Option<String>,
    /// The name to verify the server's certificate against, instead of the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// ALPN protocol names to offer, in order of preference (cloud brokers that serve MQTT on
    /// port 443 pick the protocol by it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

/// A PKCS#11 URI with its `pin-value` replaced by `<hidden>`.
fn pin_hidden(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|a| {
            if a.starts_with("pin-value=") {
                "pin-value=<hidden>"
            } else {
                a
            }
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

impl TlsConfig {
    /// These settings with the client's private key and any token PIN replaced by
    /// `<hidden>`, to show them.
    pub fn without_secrets(&self) -> Self {
        let mut shown = self.clone();
        if shown.client_key_pem.is_some() {
            shown.client_key_pem = Some("<hidden>".to_owned());
        }
        shown.client_key_pkcs11 = shown.client_key_pkcs11.as_deref().map(pin_hidden);
        shown
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TlsConfig")
            .field("ca_file", &self.ca_file)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|_| "<pem>"),
            )
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<hidden>"),
            )
            .field(
                "client_key_pkcs11",
                &self.client_key_pkcs11.as_deref().map(pin_hidden),
            )
            .field("server_name", &self.server_name)
            .field("alpn", &self.alpn)
            .finish()
    }
}

/// Why a configuration could not be read, written or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid configuration; `field` names the setting (`tls.alpn`).
    #[error("{origin}: setting `{field}`: {message}")]
    Invalid {
        /// The file, or "the configuration".
        origin: String,
        /// The setting, as a dotted path (empty for the text as a whole).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The builder holds a setting a file cannot express.
    #[error("{0} cannot be written to a configuration file")]
    NotRepresentable(&'static str),
    /// The configuration could not be written as TOML.
    #[error("the configuration cannot be written as TOML: {0}")]
    Write(String),
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("servers", &self.servers)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    /// The builder's defaults (a test holds the two together).
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            client_id: String::new(),
            cluster_scope: None,
            protocol: ConfigProtocol::V5,
            clean_start: false,
            session_expiry: 86_400,
            keep_alive: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(10),
            username: None,
            password: None,
            will: None,
            user_properties: Vec::new(),
            manual_ack: false,
            redelivery: None,
            lost_session: ConfigLostSession::Republish,
            broker_profile: None,
            key_publishes: None,
            deduplicate: None,
            backlog: BacklogConfig::default(),
            receive_maximum: None,
            maximum_packet_size: Some(crate::session::DEFAULT_MAXIMUM_PACKET_SIZE),
            held_bytes_limit: crate::session::DEFAULT_HELD_BYTES_LIMIT,
            in_flight_maximum: None,
            topic_aliases: true,
            topic_alias_maximum: 0,
            request_response_information: None,
            request_problem_information: None,
            resubscribe: true,
            response_topic: None,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            reconnect: Backoff::default(),
            follow_server_references: false,
            prefer_last_server: false,
            queue_limit: 100_000,
            queue_limit_bytes: None,
            queue_full: QueuePolicy::Wait,
            queue_window: QueueWindowConfig::default(),
            inbox_capacity: 1024,
            channel_capacity: 1024,
            tls: None,
            websocket_headers: Vec::new(),
            proxies: Vec::new(),
            proxy_from_env: false,
            password_env: None,
            password_file: None,
            store: None,
        }
    }
}

#[cfg(feature = "toml")]
impl ClientConfig {
    /// Reads a configuration from TOML text. An error names the setting at fault.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::parse_toml(text, "the configuration")
    }

    /// Reads a configuration from a TOML file. An error names the file and the setting.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_toml(&text, &path.display().to_string())
    }

    fn parse_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError::Invalid {
            origin: origin.to_owned(),
            field: String::new(),
            message: e.to_string(),
        })?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| ConfigError::Invalid {
            origin: origin.to_owned(),
            field: e.path().to_string(),
            message: e.inner().message().to_owned(),
        })
    }

    /// Writes the configuration as TOML, readable by [`ClientConfig::from_toml`]. A private
    /// key given as PEM text is never written out: name its file (`client_key_file`) instead;
    /// nor is a token PIN in a PKCS#11 URI (`pin-value`): name a file (`pin-source`).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        if self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_key_pem.is_some())
        {
            return Err(ConfigError::NotRepresentable(
                "a private key given as PEM text (write client_key_file instead)",
            ));
        }
        if self.tls.as_ref().is_some_and(|t| {
            t.client_key_pkcs11
                .as_deref()
                .is_some_and(|uri| pin_hidden(uri) != uri)
        }) {
            return Err(ConfigError::NotRepresentable(
                "a token PIN written into the PKCS#11 URI (use pin-source=FILE instead)",
            ));
        }
        toml::to_string(self).map_err(|e| ConfigError::Write(e.to_string()))
    }
}
