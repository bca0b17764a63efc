//! The drain rate: how fast publishes may leave, as a token bucket the driver fills from its
//! clock and the session spends ([`Session::allow_sends`](crate::session::Session::allow_sends)).

use std::time::{Duration, Instant};

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// How fast publishes may leave for the server: the backlog after an outage and live
/// publishes alike, in queue order (`ClientBuilder::drain_rate`). Bursts are at most a tenth
/// of a second's worth. Retransmissions of messages already in flight do not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainRate {
    /// The most publishes per second (`None`: not limited by count).
    pub messages_per_second: Option<u32>,
    /// The most bytes of publishes per second, as they go on the wire (`None`: not limited
    /// by size). A publish larger than what is left still goes; the next ones wait until
    /// the rate has paid for it.
    pub bytes_per_second: Option<u64>,
}

impl DrainRate {
    /// At most `messages` publishes per second.
    pub fn messages(messages: u32) -> Self {
        Self {
            messages_per_second: Some(messages),
            bytes_per_second: None,
        }
    }

    /// At most `bytes` bytes of publishes per second, too.
    pub fn and_bytes(self, bytes: u64) -> Self {
        Self {
            bytes_per_second: Some(bytes),
            ..self
        }
    }

    /// Why the rate cannot be used, if it cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        match (self.messages_per_second, self.bytes_per_second) {
            (None, None) => Some("names neither messages nor bytes per second"),
            (Some(0), _) | (_, Some(0)) => Some("is zero, which would send nothing"),
            _ => None,
        }
    }
}

/// One limit of the bucket: its rate per second and the fraction of a token earned.
#[derive(Debug, Clone, Copy)]
struct Refill {
    per_second: u64,
    /// Earned and not yet granted, in billionths of a token.
    remainder: u128,
}

impl Refill {
    fn earn(&mut self, elapsed: Duration) -> u64 {
        let earned = elapsed.as_nanos() * u128::from(self.per_second) + self.remainder;
        self.remainder = earned % NANOS_PER_SECOND;
        u64::try_from(earned / NANOS_PER_SECOND).unwrap_or(u64::MAX)
    }

    /// A tenth of a second's worth, one at least.
    fn burst(&self) -> u64 {
        (self.per_second / 10).max(1)
    }
}

/// What the driver grants a paced session, and when.
#[derive(Debug)]
pub(crate) struct Pacer {
    messages: Option<Refill>,
    bytes: Option<Refill>,
    last: Instant,
}

/// A grant: messages and bytes earned, and the most either may accumulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) burst_messages: u64,
    pub(crate) burst_bytes: u64,
}

impl Pacer {
    pub(crate) fn new(rate: DrainRate, now: Instant) -> Self {
        let refill = |per_second: u64| Refill {
            per_second,
            remainder: 0,
        };
        Self {
            messages: rate.messages_per_second.map(|m| refill(u64::from(m))),
            bytes: rate.bytes_per_second.map(refill),
            last: now,
        }
    }

    /// What was earned since the last grant.
    pub(crate) fn grant(&mut self, now: Instant) -> Grant {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        let unlimited = (u64::MAX / 2, u64::MAX / 2);
        let (messages, burst_messages) = self
            .messages
            .as_mut()
            .map_or(unlimited, |r| (r.earn(elapsed), r.burst()));
        let (bytes, burst_bytes) = self
            .bytes
            .as_mut()
            .map_or(unlimited, |r| (r.earn(elapsed), r.burst()));
        Grant {
            messages,
            bytes,
            burst_messages,
            burst_bytes,
        }
    }

    /// How long until the next grant is worth asking for: one message's time, and at least
    /// a millisecond, at most ten (a byte limit's debt is the session's to know).
    pub(crate) fn interval(&self) -> Duration {
        let per_message = self.messages.map_or(Duration::from_millis(10), |r| {
            Duration::from_nanos((1_000_000_000 / r.per_second.max(1)).max(1))
        });
        per_message.clamp(Duration::from_millis(1), Duration::from_millis(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pacer_grants_what_the_time_since_the_last_grant_earned_fractions_carried() {
        let start = Instant::now();
        let mut pacer = Pacer::new(DrainRate::messages(1_000).and_bytes(10_000), start);
        let grant = pacer.grant(start + Duration::from_micros(1_500));
        assert_eq!((grant.messages, grant.bytes), (1, 15));
        // The half message carried over makes the next 1.5 ms worth two.
        let grant = pacer.grant(start + Duration::from_micros(3_000));
        assert_eq!((grant.messages, grant.bytes), (2, 15));
        assert_eq!((grant.burst_messages, grant.burst_bytes), (100, 1_000));
    }

    #[test]
    fn an_unset_limit_grants_without_bound() {
        let start = Instant::now();
        let mut pacer = Pacer::new(DrainRate::messages(10), start);
        let grant = pacer.grant(start + Duration::from_secs(1));
        assert_eq!(grant.messages, 10);
        assert_eq!(grant.burst_messages, 1);
        assert!(grant.bytes > u64::MAX / 4 && grant.burst_bytes > u64::MAX / 4);
    }

    #[test]
    fn a_rate_of_nothing_is_refused() {
        assert!(DrainRate::messages(0).problem().is_some());
        let none = DrainRate {
            messages_per_second: None,
            bytes_per_second: None,
        };
        assert!(none.problem().is_some());
        assert!(DrainRate::messages(5).and_bytes(100).problem().is_none());
    }
}
