//! What cloud brokers need: effectively-once delivery over QoS 1 for brokers without QoS 2
//! (idempotency keys on what the client publishes, copies dropped by key on what it
//! receives), and broker profiles.

use super::{ClientBuilder, Settings};
use crate::client::error::ClientError;
use crate::client::profile::{AZURE_IOT_HUB_API_VERSION, BrokerProfile};
use crate::idempotency::{KeyCarrier, KeyStamp};
use crate::packet::ProtocolVersion;
use crate::session::{Deduplication, SessionOptions};

impl ClientBuilder {
    /// Gives every QoS 1 publish an idempotency key, carried as `carrier` says (a User
    /// Property, MQTT 5 only; or an envelope around the payload, which the consumer must
    /// open). The key is fixed when the publish is accepted and stored with it, so every
    /// retransmission, after a reconnection, a SIGKILL or a failover, carries the same one:
    /// a subscriber that keeps the keys it handled ([`deduplicate`](Self::deduplicate), or
    /// any consumer that reads [`crate::idempotency`]'s format) gets each message once
    /// although QoS 1 may deliver it twice. A publish that carries a key already (a received
    /// message forwarded as it is) keeps it. QoS 0 and QoS 2 publishes carry none.
    pub fn key_publishes(mut self, carrier: KeyCarrier) -> Self {
        // The run is drawn for each session when it is made (`Settings::session_options`).
        self.settings.session.publish_keys = Some(KeyStamp { run: 0, carrier });
        self
    }

    /// Drops the copies of QoS 1 messages the application handled already, recognised by
    /// their idempotency key ([`key_publishes`](Self::key_publishes)): a copy is acknowledged
    /// and not handed over ([`Stats::duplicates_dropped`](crate::client::Stats) counts it).
    /// A message's key is kept in the store from the moment the application is done with it
    /// (the commit before its PUBACK), so after a SIGKILL it is still known; the keys are
    /// bounded by `limits` (100,000 for seven days by default). A copy arriving while the
    /// application holds the message is answered with the application's verdict on it (its
    /// ack or its refusal), never before. Messages without a key are handed over as always.
    pub fn deduplicate(mut self, limits: Deduplication) -> Self {
        self.settings.session.deduplication = Some(limits);
        self
    }

    /// The broker is `profile` (AWS IoT Core, Azure IoT Hub, ...): its documented limits and
    /// requirements apply. Settings it refuses fail when the client is built, with
    /// [`ClientError::BrokerProfile`](crate::ClientError::BrokerProfile) saying why (a QoS 2
    /// Will to AWS IoT Core, keep alive above Azure's maximum, a plain `mqtt://` address);
    /// publishes beyond its limits (QoS, retain, payload and topic sizes) are refused when
    /// made, nothing stored; its requirements are applied where the settings leave them open
    /// (AWS IoT Core's ALPN on port 443, Azure IoT Hub's user name). Azure IoT Hub speaks
    /// MQTT 3.1.1: naming it sets the protocol.
    pub fn broker_profile(mut self, profile: crate::client::profile::BrokerProfile) -> Self {
        self.settings.profile = Some(profile);
        let limits = profile.limits();
        if !limits.protocols.contains(&self.settings.session.protocol)
            && let Some(&protocol) = limits.protocols.first()
        {
            self.settings.session.protocol = protocol;
        }
        self
    }
}

impl Settings {
    /// The options of a session made now: its idempotency keys get a run of their own, 64
    /// random bits, so that two sessions (or two runs of one) do not make the same key.
    pub(crate) fn session_options(&self) -> SessionOptions {
        let mut options = self.session.clone();
        if let Some(stamp) = &mut options.publish_keys {
            stamp.run = fastrand::u64(..);
        }
        options
    }
}

/// What the profile gives the settings when the client starts: its publish limits to the
/// session, and what it requires where the settings leave it open (AWS IoT Core's ALPN on
/// port 443, Azure IoT Hub's user name).
pub(super) fn apply_profile(profile: BrokerProfile, settings: &mut Settings) {
    settings.session.publish_limits = profile.limits().publish;
    match profile {
        #[cfg(feature = "tls")]
        BrokerProfile::AwsIotCore => {
            let on_443 = settings
                .servers
                .iter()
                .any(|s| s.scheme() == crate::client::url::Scheme::Tls && s.port() == 443);
            if on_443 && let Some(tls) = settings.transport.tls.take() {
                settings.transport.tls = Some(if tls.alpn().is_empty() {
                    tls.alpn_protocols([crate::client::profile::AWS_IOT_ALPN])
                } else {
                    tls
                });
            }
        }
        BrokerProfile::AzureIotHub => {
            let session = &mut settings.session;
            if session.username.is_none()
                && let Some(server) = settings.servers.first()
            {
                session.username = Some(format!(
                    "{}/{}/?api-version={AZURE_IOT_HUB_API_VERSION}",
                    server.host(),
                    session.client_id
                ));
            }
        }
        _ => {}
    }
}

/// Refuses the settings `profile` says the broker refuses.
pub(super) fn check_profile(
    profile: BrokerProfile,
    settings: &Settings,
) -> Result<(), ClientError> {
    let limits = profile.limits();
    let refuse = |setting: String, why: String| {
        Err(ClientError::BrokerProfile {
            profile,
            setting,
            why,
        })
    };
    let session = &settings.session;
    for server in &settings.servers {
        if limits.tls_required && !server.scheme().is_tls() {
            return refuse(
                server.to_string(),
                "takes TLS connections only (mqtts:// or wss://)".to_owned(),
            );
        }
    }
    if !limits.protocols.contains(&session.protocol) {
        let speaks = match limits.protocols {
            [ProtocolVersion::V311] => "MQTT 3.1.1 only: set protocol = \"3.1.1\"",
            _ => "MQTT 5 only",
        };
        return refuse(
            format!("protocol {:?}", session.protocol),
            format!("speaks {speaks}"),
        );
    }
    if let Some(will) = &session.will {
        if will.qos > limits.publish.maximum_qos {
            return refuse(
                format!("will.qos = {}", will.qos as u8),
                format!(
                    "takes QoS {} at most; a Will above it closes the connection",
                    limits.publish.maximum_qos as u8
                ),
            );
        }
        if will.retain && !limits.publish.retain_available {
            return refuse(
                "will.retain = true".to_owned(),
                "keeps no retained messages".to_owned(),
            );
        }
    }
    let keep_alive = session.keep_alive;
    if keep_alive > 0 {
        if let Some(max) = limits
            .maximum_keep_alive_secs
            .filter(|&max| keep_alive > max)
        {
            return refuse(
                format!("keep_alive = {keep_alive} s"),
                format!("takes {max} s at most"),
            );
        }
        if let Some(min) = limits
            .minimum_keep_alive_secs
            .filter(|&min| keep_alive < min)
        {
            return refuse(
                format!("keep_alive = {keep_alive} s"),
                format!("takes {min} s at least"),
            );
        }
    }
    if let Some(max) = limits
        .maximum_client_id_bytes
        .filter(|&max| session.client_id.len() > max)
    {
        return refuse(
            format!("client id of {} bytes", session.client_id.len()),
            format!("takes {max} bytes at most"),
        );
    }
    if profile == BrokerProfile::AzureIotHub && session.client_id.is_empty() {
        return refuse(
            "an empty client id".to_owned(),
            "names the device by its client id: give the device id".to_owned(),
        );
    }
    let expiry = session.properties.session_expiry_interval.unwrap_or(0);
    if let Some(max) = limits
        .maximum_session_expiry_secs
        .filter(|&max| expiry > max)
    {
        return refuse(
            format!("session_expiry = {expiry} s"),
            format!("keeps a session {max} s at most"),
        );
    }
    Ok(())
}
