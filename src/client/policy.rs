//! The reconnect policy and the policy for a full queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Reconnect delays: exponential backoff with full jitter.
///
/// After the `n`th failed round through the servers the client waits a random time between
/// zero and `min(maximum, initial × factorⁿ)`, so that many gateways that lost the same broker
/// do not all come back in the same instant.
///
/// In a configuration file the delays are written as durations (`initial = "100ms"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// The bound of the first delay.
    #[serde(with = "super::config::human")]
    pub initial: Duration,
    /// How much the bound grows per failed round (at least 1).
    pub factor: f64,
    /// The largest bound.
    #[serde(with = "super::config::human")]
    pub maximum: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            factor: 2.0,
            maximum: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Backoff {
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
