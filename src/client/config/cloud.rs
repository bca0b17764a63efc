//! `broker_profile`, `key_publishes` and `[deduplicate]`: what cloud brokers need, as a file
//! says it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::human;
use crate::idempotency::KeyCarrier;
use crate::session::Deduplication;

/// How the idempotency keys of QoS 1 publishes travel, written `"user_property"` or
/// `"envelope"` ([`ClientBuilder::key_publishes`](crate::ClientBuilder::key_publishes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKeyCarrier {
    /// A User Property (MQTT 5 only).
    UserProperty,
    /// An envelope around the payload.
    Envelope,
}

impl From<ConfigKeyCarrier> for KeyCarrier {
    fn from(carrier: ConfigKeyCarrier) -> Self {
        match carrier {
            ConfigKeyCarrier::UserProperty => Self::UserProperty,
            ConfigKeyCarrier::Envelope => Self::Envelope,
        }
    }
}

impl From<KeyCarrier> for ConfigKeyCarrier {
    fn from(carrier: KeyCarrier) -> Self {
        match carrier {
            KeyCarrier::UserProperty => Self::UserProperty,
            KeyCarrier::Envelope => Self::Envelope,
        }
    }
}

/// `[deduplicate]`: copies of handled QoS 1 messages dropped by their idempotency key
/// ([`ClientBuilder::deduplicate`](crate::ClientBuilder::deduplicate)).
///
/// ```toml
/// [deduplicate]
/// keep_at_most = 100000
/// keep_for = "7d"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeduplicationConfig {
    /// The most keys kept.
    pub keep_at_most: usize,
    /// How long a key is kept.
    #[serde(with = "human")]
    pub keep_for: Duration,
    /// Also open envelopes.
    pub envelopes: bool,
}

impl Default for DeduplicationConfig {
    /// The builder's: 100,000 keys for seven days, no envelopes.
    fn default() -> Self {
        Deduplication::default().into()
    }
}

impl From<DeduplicationConfig> for Deduplication {
    fn from(config: DeduplicationConfig) -> Self {
        Self {
            keep_at_most: config.keep_at_most.max(1),
            keep_for: config.keep_for,
            envelopes: config.envelopes,
        }
    }
}

impl From<Deduplication> for DeduplicationConfig {
    fn from(limits: Deduplication) -> Self {
        Self {
            keep_at_most: limits.keep_at_most,
            keep_for: limits.keep_for,
            envelopes: limits.envelopes,
        }
    }
}

/// A broker profile is written by its name (`"aws-iot-core"`).
impl Serialize for crate::client::profile::BrokerProfile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for crate::client::profile::BrokerProfile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
