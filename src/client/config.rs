//! Client settings from a file: [`ClientConfig`] and the builder made from it.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::options::ClientBuilder;
use super::policy::{Backoff, QueuePolicy};

/// Client settings read from a file (TOML, JSON, anything serde reads), for gateways
/// configured by file. TLS files and the store are set on the builder.
///
/// ```
/// let config: mooring::client::ClientConfig = serde_json::from_str(r#"{
///     "servers": ["mqtt://10.0.0.5:1883", "mqtt://10.0.0.6:1883"],
///     "client_id": "gateway-7",
///     "session_expiry_secs": 86400,
///     "reconnect": { "initial": 200, "maximum": 60000 },
///     "queue_limit": 50000,
///     "queue_full": "fail"
/// }"#)?;
/// let builder = mooring::client::ClientBuilder::from_config(&config)?;
/// # let _ = builder;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Server addresses, tried in order.
    pub servers: Vec<String>,
    /// The protocol: `"5"` (the default) or `"3.1.1"`.
    pub protocol: ConfigProtocol,
    /// The most QoS 1/2 publishes in flight (the only limit with 3.1.1; 20 unless set).
    pub in_flight_maximum: Option<u16>,
    /// The client identifier.
    pub client_id: String,
    /// One session for all servers under this name.
    pub cluster_scope: Option<String>,
    /// Clean Start on the first connection.
    pub clean_start: bool,
    /// Keep alive, seconds.
    pub keep_alive_secs: u64,
    /// Session Expiry Interval, seconds.
    pub session_expiry_secs: u64,
    /// The user name.
    pub username: Option<String>,
    /// The password.
    pub password: Option<String>,
    /// Manual acknowledgement of inbound messages.
    pub manual_ack: bool,
    /// Receive Maximum.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size.
    pub maximum_packet_size: Option<u32>,
    /// Topic Aliases towards the server.
    pub topic_aliases: bool,
    /// Topic Alias Maximum towards the client.
    pub topic_alias_maximum: u16,
    /// Connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Reconnect policy (delays in milliseconds).
    pub reconnect: Backoff,
    /// Durable queue limit.
    pub queue_limit: usize,
    /// Durable queue limit in bytes, if any.
    pub queue_limit_bytes: Option<usize>,
    /// What a publish does when the queue is full: `"wait"`, `"fail"` or `"drop_oldest"`.
    pub queue_full: QueuePolicy,
    /// TLS files for `mqtts://` and `wss://` servers.
    pub tls: Option<TlsFiles>,
}

/// The protocol a [`ClientConfig`] speaks, written `"5"` or `"3.1.1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum ConfigProtocol {
    /// MQTT v5.0.
    #[default]
    #[serde(rename = "5")]
    V5,
    /// MQTT 3.1.1.
    #[serde(rename = "3.1.1")]
    V311,
}

/// TLS settings by file, for [`ClientConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file of the CA certificates to trust (the system's roots when absent).
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM file of the client certificate chain.
    pub client_cert_file: Option<std::path::PathBuf>,
    /// PEM file of the client's private key.
    pub client_key_file: Option<std::path::PathBuf>,
    /// The name to verify the server's certificate against, instead of the host.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("servers", &self.servers)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            protocol: ConfigProtocol::V5,
            in_flight_maximum: None,
            client_id: String::new(),
            cluster_scope: None,
            clean_start: false,
            keep_alive_secs: 60,
            session_expiry_secs: 86_400,
            username: None,
            password: None,
            manual_ack: false,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_aliases: true,
            topic_alias_maximum: 0,
            connect_timeout_ms: 10_000,
            reconnect: Backoff::default(),
            queue_limit: 100_000,
            queue_limit_bytes: None,
            queue_full: QueuePolicy::Wait,
            tls: None,
        }
    }
}

impl ClientBuilder {
    /// A builder from file configuration (see [`ClientConfig`]); add the store, then connect.
    /// Fails when a TLS file named there cannot be read or parsed.
    pub fn from_config(config: &ClientConfig) -> Result<Self, super::ClientError> {
        let mut b = Self::default()
            .client_id(config.client_id.clone())
            .clean_start(config.clean_start)
            .keep_alive(Duration::from_secs(config.keep_alive_secs))
            .session_expiry(Duration::from_secs(config.session_expiry_secs))
            .manual_ack(config.manual_ack)
            .topic_aliases(config.topic_aliases)
            .topic_alias_maximum(config.topic_alias_maximum)
            .reconnect(config.reconnect.clone())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .queue_limit(config.queue_limit, config.queue_full);
        if let Some(bytes) = config.queue_limit_bytes {
            b = b.queue_limit_bytes(bytes);
        }
        b = b.protocol(match config.protocol {
            ConfigProtocol::V5 => crate::packet::ProtocolVersion::V5,
            ConfigProtocol::V311 => crate::packet::ProtocolVersion::V311,
        });
        if let Some(max) = config.in_flight_maximum {
            b = b.in_flight_maximum(max);
        }
        b.servers = config.servers.clone();
        b.settings.cluster_scope = config.cluster_scope.clone();
        b.settings.session.username = config.username.clone();
        b.settings.session.password = config.password.clone().map(Bytes::from);
        if let Some(max) = config.receive_maximum {
            b = b.receive_maximum(max);
        }
        if let Some(max) = config.maximum_packet_size {
            b = b.maximum_packet_size(max);
        }
        if let Some(tls) = &config.tls {
            #[cfg(feature = "tls")]
            {
                let mut options = match &tls.ca_file {
                    Some(path) => super::TlsOptions::with_ca_file(path)?,
                    None => super::TlsOptions::system_roots()?,
                };
                if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
                    options = options.client_certificate_files(cert, key)?;
                }
                if let Some(name) = &tls.server_name {
                    options = options.server_name(name.clone());
                }
                b = b.tls(options);
            }
            #[cfg(not(feature = "tls"))]
            {
                let _ = tls;
                return Err(super::ClientError::TlsUnavailable);
            }
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_json_with_units_and_policy() {
        let config: ClientConfig = serde_json::from_str(
            r#"{"servers":["mqtt://a","mqtt://b:1884"],"client_id":"g",
                "password":"s3cret","reconnect":{"initial":50,"factor":3.0},
                "queue_full":"fail","receive_maximum":10}"#,
        )
        .unwrap();
        assert_eq!(config.reconnect.initial, Duration::from_millis(50));
        assert_eq!(config.reconnect.maximum, Duration::from_secs(30));
        assert_eq!(config.queue_full, QueuePolicy::Fail);
        assert!(!format!("{config:?}").contains("s3cret"));
        let b = ClientBuilder::from_config(&config).unwrap();
        let s = b.settings().unwrap();
        assert_eq!(s.servers.len(), 2);
        assert_eq!(s.session.properties.receive_maximum, Some(10));
        assert_eq!(s.session.password.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(s.queue_policy, QueuePolicy::Fail);
        let unknown = serde_json::from_str::<ClientConfig>(r#"{"server":"x"}"#);
        assert!(unknown.is_err(), "unknown keys are refused");
        let missing: ClientConfig = serde_json::from_str(
            r#"{"servers":["mqtts://h"],"tls":{"ca_file":"/nonexistent.pem"}}"#,
        )
        .unwrap();
        #[cfg(feature = "tls")]
        {
            let err = ClientBuilder::from_config(&missing).err().unwrap();
            assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
        }
        #[cfg(not(feature = "tls"))]
        assert!(ClientBuilder::from_config(&missing).is_err());
    }

    #[test]
    fn a_3_1_1_config_speaks_3_1_1_and_refuses_what_needs_mqtt_5() {
        let config: ClientConfig = serde_json::from_str(
            r#"{"servers":["mqtt://a"],"protocol":"3.1.1","in_flight_maximum":8}"#,
        )
        .unwrap();
        let s = ClientBuilder::from_config(&config)
            .unwrap()
            .settings()
            .unwrap();
        assert_eq!(s.session.protocol, crate::packet::ProtocolVersion::V311);
        assert_eq!(s.session.in_flight_maximum, Some(8));
        let bad = serde_json::from_str::<ClientConfig>(r#"{"protocol":"4"}"#);
        assert!(bad.is_err(), "only \"5\" and \"3.1.1\"");
        let v5_only = ClientBuilder::from_config(&config)
            .unwrap()
            .user_property("site", "7")
            .settings();
        assert!(matches!(
            v5_only,
            Err(crate::client::ClientError::NeedsV5(
                "CONNECT User Properties"
            ))
        ));
    }
}
