//! Effectively-once delivery over QoS 1, for brokers without QoS 2: idempotency keys on what
//! the client publishes, and copies dropped by key on what it receives.

use super::{ClientBuilder, Settings};
use crate::idempotency::{KeyCarrier, KeyStamp};
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
    /// application holds the message waits for it and is acknowledged behind it. Messages
    /// without a key are handed over as always.
    pub fn deduplicate(mut self, limits: Deduplication) -> Self {
        self.settings.session.deduplication = Some(limits);
        self
    }
}

impl Settings {
    /// The options of a session made now: its idempotency keys get a run of their own, drawn
    /// at random, so that no two sessions (nor two runs of one) ever make the same key.
    pub(crate) fn session_options(&self) -> SessionOptions {
        let mut options = self.session.clone();
        if let Some(stamp) = &mut options.publish_keys {
            stamp.run = fastrand::u64(..);
        }
        options
    }
}
