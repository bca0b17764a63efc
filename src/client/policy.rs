//! The policies the application chooses: reconnect backoff, a full queue, redelivery and how a
//! message is refused.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::packet::ReasonCode;

/// Reconnect delays: exponential backoff with full jitter.
///
/// After the `n`th failed round through the servers the client waits a random time between
/// zero and `min(maximum, initial × factorⁿ)`, so that many gateways that lost the same broker
/// do not all come back in the same instant.
///
/// In a configuration file the delays are written as durations (`initial = "100ms"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Backoff {
    /// The bound of the first delay.
    #[serde(with = "super::human")]
    pub initial: Duration,
    /// How much the bound grows per failed round (at least 1).
    pub factor: f64,
    /// The largest bound.
    #[serde(with = "super::human")]
    pub maximum: Duration,
    /// Give up after this many failed attempts in a row (`None`: never). A connection that
    /// ended before `stable_after` counts as a failed attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// How long a connection must stay up before the delays start again from `initial`: one
    /// the server ends sooner (a second gateway with the same client identifier, an
    /// authorization withdrawn right after CONNACK) counts as a failed attempt, so that the
    /// delay keeps growing instead of reconnecting at once for ever (10 s by default).
    #[serde(with = "super::human")]
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            factor: 2.0,
            maximum: Duration::from_secs(30),
            max_attempts: None,
            stable_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// With the bound of the first delay.
    pub fn with_initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// With how much the bound grows per failed round (at least 1).
    pub fn with_factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// With the largest bound.
    pub fn with_maximum(mut self, maximum: Duration) -> Self {
        self.maximum = maximum;
        self
    }

    /// Giving up after this many failed attempts in a row (`None`: never).
    pub fn with_max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// With how long a connection must stay up before the delays start again.
    pub fn with_stable_after(mut self, stable_after: Duration) -> Self {
        self.stable_after = stable_after;
        self
    }

    /// The upper bound of the delay after `round` failed rounds (0 for the first).
    pub fn bound(&self, round: u32) -> Duration {
        let factor = self.factor.max(1.0);
        let exponent = i32::try_from(round).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * factor.powi(exponent);
        let max = self.maximum.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }

    /// The delay for `round`, given a uniformly random `u64` (full jitter).
    pub fn delay(&self, round: u32, random: u64) -> Duration {
        let bound = self.bound(round).as_nanos() as f64;
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_nanos((bound * unit) as u64)
    }
}

/// What `publish` does when the durable queue holds its limit (of messages or of bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueuePolicy {
    /// Wait until there is room (the default).
    #[default]
    Wait,
    /// Fail the publish with `ClientError::QueueFull`.
    Fail,
    /// Make room by dropping the oldest queued messages, unsent: each one's delivery resolves
    /// `DeliveryError::Dropped` and a `ClientEvent::MessageDropped` names it. For telemetry
    /// where the newest readings matter most.
    DropOldest,
}

/// What happens to a message the application did not handle: dropped without
/// [`ack`](super::Message::ack) or [`reject`](super::Message::reject) with manual ack,
/// [`release`](super::Message::release)d, or dropped while its thread panicked. It is handed to
/// the application again after `delay`, up to `max_deliveries` deliveries in all; after the
/// last one, `exhausted` decides.
///
/// Acks go out in the order messages arrived, so a message waiting to be handed over again
/// holds back the acks of the messages after it: a message the application drops at once each
/// time delays them by at most `(max_deliveries - 1) × delay`, plus the time the application
/// holds it at each delivery.
///
/// The count is the client's: it starts again when the process restarts (the server sends the
/// message again) and, for QoS 1, when the connection is lost (the server sends it again as a
/// new message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Redelivery {
    /// How long a released message waits before it is handed over again (1 s by default).
    #[serde(with = "super::human")]
    pub delay: Duration,
    /// The most times a message is handed to the application (5 by default; at least 1).
    pub max_deliveries: u32,
    /// What becomes of it after its last delivery.
    pub exhausted: Exhausted,
}

impl Default for Redelivery {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(1),
            max_deliveries: 5,
            exhausted: Exhausted::default(),
        }
    }
}

impl Redelivery {
    /// With how long a released message waits before it is handed over again.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// With the most times a message is handed to the application (at least 1).
    pub fn with_max_deliveries(mut self, max_deliveries: u32) -> Self {
        self.max_deliveries = max_deliveries;
        self
    }

    /// With what becomes of a message after its last delivery.
    pub fn with_exhausted(mut self, exhausted: Exhausted) -> Self {
        self.exhausted = exhausted;
        self
    }

    /// The policy a client uses when none is set: refusal with 0x80 for MQTT 5; a 3.1.1 server
    /// cannot be told of a refusal, so there the message is discarded (acked), with the same
    /// event.
    pub(crate) fn default_for(protocol: crate::packet::ProtocolVersion) -> Self {
        match protocol {
            crate::packet::ProtocolVersion::V311 => Self {
                exhausted: Exhausted::Discard,
                ..Self::default()
            },
            _ => Self::default(),
        }
    }
}

/// What becomes of a message after its last delivery ([`Redelivery::max_deliveries`]). Each
/// outcome is reported with `ClientEvent::MessageExhausted` and counted in
/// [`Stats::exhausted`](super::Stats::exhausted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exhausted {
    /// Refuse it: its PUBACK or PUBREC carries this reason code (MQTT 5 only).
    Refuse(Refusal),
    /// Publish it to this topic, at its own QoS, with its payload and properties and the User
    /// Properties `mooring-original-topic` and `mooring-deliveries` (MQTT 5), in the same store
    /// commit as its ack: after a crash either both happened or neither.
    DeadLetter(String),
    /// Ack it and drop it.
    Discard,
}

impl Default for Exhausted {
    fn default() -> Self {
        Self::Refuse(Refusal::Unspecified)
    }
}

/// Why the application refuses a message ([`Message::reject`](super::Message::reject)): the reason codes of 0x80 and
/// above that both PUBACK and PUBREC may carry and that say something about the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// 0x80 Unspecified error.
    Unspecified,
    /// 0x83 Implementation specific error: the message is valid but not accepted.
    ImplementationSpecific,
    /// 0x87 Not authorized.
    NotAuthorized,
    /// 0x90 Topic Name invalid: the topic is not one this application accepts.
    TopicNameInvalid,
    /// 0x97 Quota exceeded.
    QuotaExceeded,
    /// 0x99 Payload format invalid.
    PayloadFormatInvalid,
}

impl Refusal {
    /// The reason code the PUBACK or PUBREC carries.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Self::Unspecified => ReasonCode::UnspecifiedError,
            Self::ImplementationSpecific => ReasonCode::ImplementationSpecificError,
            Self::NotAuthorized => ReasonCode::NotAuthorized,
            Self::TopicNameInvalid => ReasonCode::TopicNameInvalid,
            Self::QuotaExceeded => ReasonCode::QuotaExceeded,
            Self::PayloadFormatInvalid => ReasonCode::PayloadFormatInvalid,
        }
    }
}
