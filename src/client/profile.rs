//! Broker profiles: what a cloud or self-hosted broker is documented to take, so that a
//! setting it refuses is an error when the client is built (a QoS 2 Will to AWS IoT Core),
//! a publish beyond its limits is refused when it is made (never stored, never sent to close
//! the connection), and what it requires is applied (AWS's ALPN on port 443, Azure IoT Hub's
//! user name and protocol). docs/broker-profiles.md cites the documentation of each value.

use std::fmt;
use std::str::FromStr;

use crate::packet::{ProtocolVersion, QoS};
use crate::session::PublishLimits;

/// A broker whose documented limits and requirements the client applies
/// ([`ClientBuilder::broker_profile`](super::ClientBuilder::broker_profile)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerProfile {
    /// No limits but the protocol's and the CONNACK's.
    Generic,
    /// AWS IoT Core.
    AwsIotCore,
    /// Azure IoT Hub (MQTT 3.1.1; its MQTT 5 preview is retired).
    AzureIotHub,
    /// The MQTT broker of Azure Event Grid namespaces.
    AzureEventGrid,
    /// HiveMQ Cloud.
    HiveMqCloud,
    /// EMQX with its default configuration.
    Emqx,
    /// Eclipse Mosquitto with its default configuration.
    Mosquitto,
}

/// What a broker is documented to take. `None`: no limit documented (the CONNACK may still
/// say one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerLimits {
    /// What it takes of a publish (QoS, retain, sizes); the QoS and retain limits hold for
    /// the Will too. Above it the broker closes the connection or drops the message.
    pub publish: PublishLimits,
    /// The shortest keep alive it takes, in seconds (0, off, aside).
    pub minimum_keep_alive_secs: Option<u16>,
    /// The longest keep alive it takes, in seconds.
    pub maximum_keep_alive_secs: Option<u16>,
    /// The longest client identifier, in bytes.
    pub maximum_client_id_bytes: Option<usize>,
    /// The longest session expiry it keeps, in seconds.
    pub maximum_session_expiry_secs: Option<u32>,
    /// Whether it takes TLS connections only.
    pub tls_required: bool,
    /// The protocols it speaks.
    pub protocols: &'static [ProtocolVersion],
}

const BOTH: &[ProtocolVersion] = &[ProtocolVersion::V5, ProtocolVersion::V311];
const KIB: usize = 1024;

/// The ALPN protocol AWS IoT Core needs for MQTT with a client certificate on port 443.
pub const AWS_IOT_ALPN: &str = "x-amzn-mqtt-ca";

/// The api-version Azure IoT Hub's user name names.
pub const AZURE_IOT_HUB_API_VERSION: &str = "2021-04-12";

impl BrokerProfile {
    /// Every profile.
    pub const ALL: [Self; 7] = [
        Self::Generic,
        Self::AwsIotCore,
        Self::AzureIotHub,
        Self::AzureEventGrid,
        Self::HiveMqCloud,
        Self::Emqx,
        Self::Mosquitto,
    ];

    /// Its name in configuration files and on the command line (`aws-iot-core`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::AwsIotCore => "aws-iot-core",
            Self::AzureIotHub => "azure-iot-hub",
            Self::AzureEventGrid => "azure-event-grid",
            Self::HiveMqCloud => "hivemq-cloud",
            Self::Emqx => "emqx",
            Self::Mosquitto => "mosquitto",
        }
    }

    /// Its name for people (`AWS IoT Core`).
    pub fn title(self) -> &'static str {
        match self {
            Self::Generic => "a generic broker",
            Self::AwsIotCore => "AWS IoT Core",
            Self::AzureIotHub => "Azure IoT Hub",
            Self::AzureEventGrid => "Azure Event Grid",
            Self::HiveMqCloud => "HiveMQ Cloud",
            Self::Emqx => "EMQX",
            Self::Mosquitto => "Mosquitto",
        }
    }

    /// The profile a broker's host name gives away, if any: the cloud brokers' endpoints.
    pub fn for_host(host: &str) -> Option<Self> {
        let host = host.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        let within = |suffix: &str| host.ends_with(suffix);
        if within(".amazonaws.com") && host.contains(".iot.") {
            Some(Self::AwsIotCore)
        } else if within(".azure-devices.net") {
            Some(Self::AzureIotHub)
        } else if within(".eventgrid.azure.net") {
            Some(Self::AzureEventGrid)
        } else if within(".hivemq.cloud") {
            Some(Self::HiveMqCloud)
        } else if within(".emqxsl.com") || within(".emqx.cloud") || within(".emqxcloud.com") {
            Some(Self::Emqx)
        } else {
            None
        }
    }

    /// What it is documented to take (docs/broker-profiles.md has the sources).
    pub fn limits(self) -> BrokerLimits {
        let open = BrokerLimits {
            publish: PublishLimits::default(),
            minimum_keep_alive_secs: None,
            maximum_keep_alive_secs: None,
            maximum_client_id_bytes: None,
            maximum_session_expiry_secs: None,
            tls_required: false,
            protocols: BOTH,
        };
        match self {
            Self::Generic | Self::Mosquitto => open,
            Self::AwsIotCore => BrokerLimits {
                publish: PublishLimits {
                    maximum_qos: QoS::AtLeastOnce,
                    maximum_payload_bytes: Some(128 * KIB),
                    // Seven slashes.
                    maximum_topic_levels: Some(8),
                    maximum_topic_bytes: Some(256),
                    ..PublishLimits::default()
                },
                minimum_keep_alive_secs: Some(30),
                maximum_keep_alive_secs: Some(1200),
                maximum_client_id_bytes: Some(128),
                maximum_session_expiry_secs: Some(7 * 24 * 3600),
                tls_required: true,
                ..open
            },
            Self::AzureIotHub => BrokerLimits {
                publish: PublishLimits {
                    maximum_qos: QoS::AtLeastOnce,
                    retain_available: false,
                    maximum_payload_bytes: Some(256 * KIB),
                    ..PublishLimits::default()
                },
                maximum_keep_alive_secs: Some(1177),
                maximum_client_id_bytes: Some(128),
                tls_required: true,
                protocols: &[ProtocolVersion::V311],
                ..open
            },
            Self::AzureEventGrid => BrokerLimits {
                publish: PublishLimits {
                    maximum_qos: QoS::AtLeastOnce,
                    maximum_packet_bytes: Some(512 * KIB),
                    maximum_topic_levels: Some(8),
                    maximum_topic_bytes: Some(256),
                    ..PublishLimits::default()
                },
                maximum_keep_alive_secs: Some(1160),
                tls_required: true,
                ..open
            },
            Self::HiveMqCloud => BrokerLimits {
                tls_required: true,
                ..open
            },
            Self::Emqx => BrokerLimits {
                publish: PublishLimits {
                    maximum_packet_bytes: Some(1024 * KIB),
                    ..PublishLimits::default()
                },
                maximum_client_id_bytes: Some(65_535),
                ..open
            },
        }
    }
}

impl fmt::Display for BrokerProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

impl FromStr for BrokerProfile {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown broker profile {name:?}: one of {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests;
