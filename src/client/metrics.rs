//! What a client reports through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`), so that any exporter (Prometheus, StatsD, OpenTelemetry, ...) serves it. Each
//! metric carries the label `client_id`. Install the exporter's recorder before building the
//! client: handles are taken when the client starts.
//!
//! The last column names the [`Stats`](super::Stats) field or the
//! [`ClientEvent`](super::ClientEvent) that tells the same, for a program that reads them.
//!
//! | Name | Kind | What | Stats field / event |
//! |---|---|---|---|
//! | `mooring_publishes_total` | counter | publishes accepted (durable when QoS 1/2) | `published` |
//! | `mooring_publishes_acked_total` | counter | QoS 1/2 publishes acknowledged by the server (PUBACK, PUBCOMP) | `Delivery` resolving `Ok` |
//! | `mooring_publishes_refused_total` | counter | publishes refused, label `reason`: `invalid`, `qos_not_supported`, `retain_not_supported`, `queue_full` (nothing stored), `stopped` | the `publish` error |
//! | `mooring_messages_received_total` | counter | messages received from the server | `received` |
//! | `mooring_connection_attempts_total` | counter | connection attempts started | `ClientEvent::ConnectFailed`, `Connected` |
//! | `mooring_connection_failures_total` | counter | failed attempts, label `reason` ([`ConnectError::kind`](super::ConnectError::kind)) | `ClientEvent::ConnectFailed` |
//! | `mooring_reconnects_total` | counter | connections made after the first | `connections` |
//! | `mooring_tls_handshakes_total` | counter | TLS handshakes, label `reason`: `full`, or `resumed` (a reconnection that resumed the last TLS session) | `tls_handshakes`, `tls_resumed` |
//! | `mooring_queued_dropped_total` | counter | queued messages dropped unsent to make room (`QueuePolicy::DropOldest`) | `dropped_oldest` |
//! | `mooring_queued_replaced_total` | counter | queued values of latest-value topics replaced unsent by newer ones | `replaced`, `ClientEvent::MessageReplaced` |
//! | `mooring_queued_expired_total` | counter | queued messages whose Message Expiry Interval ran out unsent | `expired`, `ClientEvent::MessageExpired` |
//! | `mooring_dropped_unacked_total` | counter | messages the application dropped without acking them | `dropped_unacked` |
//! | `mooring_duplicates_dropped_total` | counter | copies of handled QoS 1 messages acked and not handed over, recognised by their idempotency key | `duplicates_dropped` |
//! | `mooring_commit_failures_total` | counter | store commits that failed (the client stops) | `StopReason::Store` |
//! | `mooring_protocol_violations_total` | counter | connections closed because the server broke the protocol | `ClientEvent::ConnectionLost` |
//! | `mooring_queued_messages` | gauge | messages in the durable queue (and publishers waiting for room) | `queued` |
//! | `mooring_queued_bytes` | gauge | bytes the queued messages take in the store | `queued_bytes` |
//! | `mooring_oldest_queued_age_seconds` | gauge | how long the oldest message waiting to be sent has waited (0 when none waits) | `oldest_queued_age_ms` |
//! | `mooring_queue_limit_messages` | gauge | the queue's limit of messages (`queue_limit`) | |
//! | `mooring_queue_limit_bytes` | gauge | the queue's limit of bytes (`queue_limit_bytes`; 0 when unbounded) | |
//! | `mooring_in_flight_messages` | gauge | QoS 1/2 publishes sent and not yet acknowledged | `outbound_in_flight` |
//! | `mooring_inbound_unacked_messages` | gauge | messages handed to the application and not yet acked | `inbound_unacked` |
//! | `mooring_inbound_held_messages` | gauge | messages the server sent beyond the client's Receive Maximum, held back | `inbound_held` |
//! | `mooring_connected` | gauge | 1 while a connection is up, else 0 | `Connected`, `ConnectionLost` |
//! | `mooring_commit_duration_seconds` | histogram | store commit latency | |
//! | `mooring_commit_batch_publishes` | histogram | publishes made durable per commit (group commit) | `committed_publishes` / `commits` |
//! | `mooring_publish_ack_duration_seconds` | histogram | from a QoS 1/2 PUBLISH first written to its PUBACK or PUBCOMP | |
//!
//! Prometheus renders a histogram as a summary unless it is given buckets: the `metrics`
//! example sets [`COMMIT_DURATION_BUCKETS`], [`COMMIT_BATCH_BUCKETS`] and
//! [`PUBLISH_ACK_DURATION_BUCKETS`], which suit a gateway.
//!
//! Without the feature the calls compile to nothing.

#[cfg(feature = "metrics")]
use std::collections::HashMap;
use std::time::Duration;
#[cfg(feature = "metrics")]
use std::time::Instant;

use crate::packet::Packet;

/// `mooring_publishes_total`.
pub const PUBLISHES: &str = "mooring_publishes_total";
/// `mooring_publishes_acked_total`.
pub const PUBLISHES_ACKED: &str = "mooring_publishes_acked_total";
/// `mooring_messages_received_total`.
pub const MESSAGES_RECEIVED: &str = "mooring_messages_received_total";
/// `mooring_reconnects_total`.
pub const RECONNECTS: &str = "mooring_reconnects_total";
/// `mooring_queued_dropped_total`.
pub const QUEUED_DROPPED: &str = "mooring_queued_dropped_total";
/// `mooring_queued_expired_total`.
pub const QUEUED_EXPIRED: &str = "mooring_queued_expired_total";
/// `mooring_protocol_violations_total`.
pub const PROTOCOL_VIOLATIONS: &str = "mooring_protocol_violations_total";
/// `mooring_publishes_refused_total`.
pub const PUBLISHES_REFUSED: &str = "mooring_publishes_refused_total";
/// `mooring_connection_attempts_total`.
pub const CONNECTION_ATTEMPTS: &str = "mooring_connection_attempts_total";
/// `mooring_connection_failures_total`.
pub const CONNECTION_FAILURES: &str = "mooring_connection_failures_total";
/// `mooring_tls_handshakes_total`.
pub const TLS_HANDSHAKES: &str = "mooring_tls_handshakes_total";
/// `mooring_queued_replaced_total`.
pub const QUEUED_REPLACED: &str = "mooring_queued_replaced_total";
/// `mooring_dropped_unacked_total`.
pub const DROPPED_UNACKED: &str = "mooring_dropped_unacked_total";
/// `mooring_duplicates_dropped_total`.
pub const DUPLICATES_DROPPED: &str = "mooring_duplicates_dropped_total";
/// `mooring_commit_failures_total`.
pub const COMMIT_FAILURES: &str = "mooring_commit_failures_total";
/// `mooring_oldest_queued_age_seconds`.
pub const OLDEST_QUEUED_AGE: &str = "mooring_oldest_queued_age_seconds";
/// `mooring_queue_limit_messages`.
pub const QUEUE_LIMIT_MESSAGES: &str = "mooring_queue_limit_messages";
/// `mooring_queue_limit_bytes`.
pub const QUEUE_LIMIT_BYTES: &str = "mooring_queue_limit_bytes";
/// `mooring_inbound_held_messages`.
pub const INBOUND_HELD: &str = "mooring_inbound_held_messages";
/// Bucket bounds for `mooring_commit_duration_seconds`: 0.5 ms (a fast disk's `fdatasync`) to
/// 10 s (a database in trouble).
pub const COMMIT_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Bucket bounds for `mooring_commit_batch_publishes`: 1 to 4,096 publishes per commit.
pub const COMMIT_BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];
/// Bucket bounds for `mooring_publish_ack_duration_seconds`: 1 ms on a LAN to 1 min (a
/// message sent just before the link went down, acknowledged after it came back).
pub const PUBLISH_ACK_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
/// `mooring_queued_messages`.
pub const QUEUED_MESSAGES: &str = "mooring_queued_messages";
/// `mooring_queued_bytes`.
pub const QUEUED_BYTES: &str = "mooring_queued_bytes";
/// `mooring_in_flight_messages`.
pub const IN_FLIGHT: &str = "mooring_in_flight_messages";
/// `mooring_inbound_unacked_messages`.
pub const INBOUND_UNACKED: &str = "mooring_inbound_unacked_messages";
/// `mooring_connected`.
pub const CONNECTED: &str = "mooring_connected";
/// `mooring_commit_duration_seconds`.
pub const COMMIT_DURATION: &str = "mooring_commit_duration_seconds";
/// `mooring_commit_batch_publishes`.
pub const COMMIT_BATCH: &str = "mooring_commit_batch_publishes";
/// `mooring_publish_ack_duration_seconds`.
pub const PUBLISH_ACK_DURATION: &str = "mooring_publish_ack_duration_seconds";

/// What the gauges show, read from the driver after each turn.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Levels {
    pub(crate) queued: u64,
    pub(crate) queued_bytes: u64,
    pub(crate) in_flight: u64,
    pub(crate) inbound_unacked: u64,
    pub(crate) inbound_held: u64,
    pub(crate) dropped_unacked: u64,
    pub(crate) duplicates_dropped: u64,
    pub(crate) oldest_queued_age: Duration,
    pub(crate) connected: bool,
}

#[cfg(feature = "metrics")]
struct Handles {
    publishes: metrics::Counter,
    acked: metrics::Counter,
    received: metrics::Counter,
    reconnects: metrics::Counter,
    dropped: metrics::Counter,
    replaced: metrics::Counter,
    expired: metrics::Counter,
    violations: metrics::Counter,
    attempts: metrics::Counter,
    commit_failures: metrics::Counter,
    dropped_unacked: metrics::Counter,
    duplicates_dropped: metrics::Counter,
    oldest_queued_age: metrics::Gauge,
    limit_messages: metrics::Gauge,
    limit_bytes: metrics::Gauge,
    inbound_held: metrics::Gauge,
    queued: metrics::Gauge,
    queued_bytes: metrics::Gauge,
    in_flight: metrics::Gauge,
    inbound_unacked: metrics::Gauge,
    connected: metrics::Gauge,
    commit_duration: metrics::Histogram,
    commit_batch: metrics::Histogram,
    ack_duration: metrics::Histogram,
}

/// A client's metric handles, and the time each QoS 1/2 PUBLISH in flight was first written
/// (bounded by the packet identifiers in flight).
pub(crate) struct Metrics {
    #[cfg(feature = "metrics")]
    handles: Handles,
    /// The `client_id` label, for counters whose other label is known only when counted.
    #[cfg(feature = "metrics")]
    client_id: String,
    #[cfg(feature = "metrics")]
    sent: HashMap<u16, Instant>,
    connections: u64,
}

#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(PUBLISHES, "Publishes accepted (durable when QoS 1/2)");
    describe_counter!(
        PUBLISHES_ACKED,
        "QoS 1/2 publishes acknowledged by the server"
    );
    describe_counter!(MESSAGES_RECEIVED, "Messages received from the server");
    describe_counter!(RECONNECTS, "Connections made after the first");
    describe_counter!(
        QUEUED_DROPPED,
        "Queued messages dropped unsent to make room"
    );
    describe_counter!(QUEUED_EXPIRED, "Queued messages expired unsent");
    describe_counter!(
        QUEUED_REPLACED,
        "Queued values of latest-value topics replaced unsent by newer ones"
    );
    describe_counter!(
        PROTOCOL_VIOLATIONS,
        "Connections closed for a protocol violation"
    );
    describe_counter!(PUBLISHES_REFUSED, "Publishes refused, by reason");
    describe_counter!(CONNECTION_ATTEMPTS, "Connection attempts started");
    describe_counter!(CONNECTION_FAILURES, "Connection attempts failed, by reason");
    describe_counter!(
        DROPPED_UNACKED,
        "Messages the application dropped without acking"
    );
    describe_counter!(
        DUPLICATES_DROPPED,
        "Copies of handled QoS 1 messages dropped by their idempotency key"
    );
    describe_counter!(COMMIT_FAILURES, "Store commits that failed");
    describe_counter!(TLS_HANDSHAKES, "TLS handshakes, full or resumed");
    describe_gauge!(
        OLDEST_QUEUED_AGE,
        Unit::Seconds,
        "How long the oldest message waiting to be sent has waited"
    );
    describe_gauge!(QUEUE_LIMIT_MESSAGES, "The queue's limit of messages");
    describe_gauge!(
        QUEUE_LIMIT_BYTES,
        Unit::Bytes,
        "The queue's limit of bytes (0: unbounded)"
    );
    describe_gauge!(
        INBOUND_HELD,
        "Messages beyond the client's Receive Maximum, held back"
    );
    describe_gauge!(QUEUED_MESSAGES, "Messages in the durable queue");
    describe_gauge!(QUEUED_BYTES, Unit::Bytes, "Bytes of the queued messages");
    describe_gauge!(IN_FLIGHT, "QoS 1/2 publishes sent and not yet acknowledged");
    describe_gauge!(
        INBOUND_UNACKED,
        "Messages handed to the application, not yet acked"
    );
    describe_gauge!(CONNECTED, "1 while a connection is up");
    describe_histogram!(COMMIT_DURATION, Unit::Seconds, "Store commit latency");
    describe_histogram!(COMMIT_BATCH, "Publishes made durable per commit");
    describe_histogram!(
        PUBLISH_ACK_DURATION,
        Unit::Seconds,
        "From a PUBLISH first written to its PUBACK or PUBCOMP"
    );
}

impl Metrics {
    /// Takes the handles for `client_id` from the recorder installed now.
    pub(crate) fn new(client_id: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            describe();
            let id = client_id.to_owned();
            let counter = |name: &'static str| metrics::counter!(name, "client_id" => id.clone());
            let gauge = |name: &'static str| metrics::gauge!(name, "client_id" => id.clone());
            let histogram =
                |name: &'static str| metrics::histogram!(name, "client_id" => id.clone());
            Self {
                handles: Handles {
                    publishes: counter(PUBLISHES),
                    acked: counter(PUBLISHES_ACKED),
                    received: counter(MESSAGES_RECEIVED),
                    reconnects: counter(RECONNECTS),
                    dropped: counter(QUEUED_DROPPED),
                    replaced: counter(QUEUED_REPLACED),
                    expired: counter(QUEUED_EXPIRED),
                    violations: counter(PROTOCOL_VIOLATIONS),
                    attempts: counter(CONNECTION_ATTEMPTS),
                    commit_failures: counter(COMMIT_FAILURES),
                    dropped_unacked: counter(DROPPED_UNACKED),
                    duplicates_dropped: counter(DUPLICATES_DROPPED),
                    oldest_queued_age: gauge(OLDEST_QUEUED_AGE),
                    limit_messages: gauge(QUEUE_LIMIT_MESSAGES),
                    limit_bytes: gauge(QUEUE_LIMIT_BYTES),
                    inbound_held: gauge(INBOUND_HELD),
                    queued: gauge(QUEUED_MESSAGES),
                    queued_bytes: gauge(QUEUED_BYTES),
                    in_flight: gauge(IN_FLIGHT),
                    inbound_unacked: gauge(INBOUND_UNACKED),
                    connected: gauge(CONNECTED),
                    commit_duration: histogram(COMMIT_DURATION),
                    commit_batch: histogram(COMMIT_BATCH),
                    ack_duration: histogram(PUBLISH_ACK_DURATION),
                },
                sent: HashMap::new(),
                connections: 0,
                client_id: id,
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = client_id;
            Self { connections: 0 }
        }
    }

    pub(crate) fn published(&self) {
        #[cfg(feature = "metrics")]
        self.handles.publishes.increment(1);
    }

    pub(crate) fn acked(&self) {
        #[cfg(feature = "metrics")]
        self.handles.acked.increment(1);
    }

    pub(crate) fn received(&self) {
        #[cfg(feature = "metrics")]
        self.handles.received.increment(1);
    }

    pub(crate) fn dropped(&self) {
        #[cfg(feature = "metrics")]
        self.handles.dropped.increment(1);
    }

    pub(crate) fn replaced(&self) {
        #[cfg(feature = "metrics")]
        self.handles.replaced.increment(1);
    }

    pub(crate) fn expired(&self) {
        #[cfg(feature = "metrics")]
        self.handles.expired.increment(1);
    }

    pub(crate) fn violation(&self) {
        #[cfg(feature = "metrics")]
        self.handles.violations.increment(1);
    }

    /// A connection attempt starts.
    pub(crate) fn attempt(&self) {
        #[cfg(feature = "metrics")]
        self.handles.attempts.increment(1);
    }

    /// A connection attempt failed for `reason` ([`ConnectError::kind`](super::ConnectError::kind)).
    pub(crate) fn attempt_failed(&self, reason: &'static str) {
        self.count_by_reason(CONNECTION_FAILURES, reason);
    }

    /// A publish was refused for `reason`; nothing was stored.
    /// A TLS handshake completed: `resumed` a session of an earlier connection, or not.
    pub(crate) fn tls_handshake(&self, resumed: bool) {
        self.count_by_reason(TLS_HANDSHAKES, if resumed { "resumed" } else { "full" });
    }

    pub(crate) fn publish_refused(&self, reason: &'static str) {
        self.count_by_reason(PUBLISHES_REFUSED, reason);
    }

    /// One more of counter `name` under the label `reason` (registered when first counted:
    /// the reasons are not known in advance).
    fn count_by_reason(&self, name: &'static str, reason: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::counter!(name, "client_id" => self.client_id.clone(), "reason" => reason)
            .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = (name, reason);
    }

    /// A store commit failed.
    pub(crate) fn commit_failed(&self) {
        #[cfg(feature = "metrics")]
        self.handles.commit_failures.increment(1);
    }

    /// The queue's limits, set when the client starts.
    pub(crate) fn queue_limits(&self, messages: usize, bytes: Option<usize>) {
        #[cfg(feature = "metrics")]
        {
            self.handles.limit_messages.set(messages as f64);
            self.handles.limit_bytes.set(bytes.unwrap_or(0) as f64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (messages, bytes);
    }

    pub(crate) fn connected(&mut self) {
        self.connections += 1;
        #[cfg(feature = "metrics")]
        if self.connections > 1 {
            self.handles.reconnects.increment(1);
        }
    }

    /// The connection ended: flows in flight are timed again from their retransmission.
    pub(crate) fn connection_lost(&mut self) {
        #[cfg(feature = "metrics")]
        self.sent.clear();
    }

    pub(crate) fn committed(&self, latency: Duration, publishes: u64) {
        #[cfg(feature = "metrics")]
        {
            self.handles.commit_duration.record(latency.as_secs_f64());
            self.handles.commit_batch.record(publishes as f64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (latency, publishes);
    }

    /// Packets about to be written: each QoS 1/2 PUBLISH starts its clock (a retransmission
    /// keeps the first one's).
    pub(crate) fn sending(&mut self, packets: &[Packet]) {
        #[cfg(feature = "metrics")]
        for packet in packets {
            if let Packet::Publish(p) = packet
                && p.packet_id != 0
            {
                let now = super::clock::now();
                let started = self.sent.entry(p.packet_id).or_insert(now);
                if !p.dup {
                    *started = now;
                }
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = packets;
    }

    /// A packet from the server: PUBACK and PUBCOMP end a flow's clock.
    pub(crate) fn receiving(&mut self, packet: &Packet) {
        #[cfg(feature = "metrics")]
        if let Packet::PubAck(ack) | Packet::PubComp(ack) = packet
            && let Some(started) = self.sent.remove(&ack.packet_id)
        {
            self.handles
                .ack_duration
                .record(started.elapsed().as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = packet;
    }

    pub(crate) fn levels(&self, levels: Levels) {
        #[cfg(feature = "metrics")]
        {
            let h = &self.handles;
            h.queued.set(levels.queued as f64);
            h.queued_bytes.set(levels.queued_bytes as f64);
            h.in_flight.set(levels.in_flight as f64);
            h.inbound_unacked.set(levels.inbound_unacked as f64);
            h.inbound_held.set(levels.inbound_held as f64);
            h.dropped_unacked.absolute(levels.dropped_unacked);
            h.duplicates_dropped.absolute(levels.duplicates_dropped);
            h.oldest_queued_age
                .set(levels.oldest_queued_age.as_secs_f64());
            h.connected.set(if levels.connected { 1.0 } else { 0.0 });
        }
        #[cfg(not(feature = "metrics"))]
        let _ = levels;
    }
}

#[cfg(all(test, feature = "metrics"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;

    /// Counts what is registered, by name and labels.
    #[derive(Default)]
    struct Counts(Mutex<BTreeMap<String, Arc<Count>>>);

    #[derive(Default)]
    struct Count(AtomicU64);

    impl CounterFn for Count {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.fetch_max(value, Ordering::Relaxed);
        }
    }

    impl Recorder for Counts {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let count = self.0.lock().unwrap().entry(name).or_default().clone();
            Counter::from_arc(count)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn failures_and_refusals_are_counted_by_reason() {
        let counts = Counts::default();
        metrics::with_local_recorder(&counts, || {
            let m = Metrics::new("gw");
            m.attempt();
            m.attempt_failed("refused");
            m.attempt_failed("refused");
            m.attempt_failed("timeout");
            m.publish_refused("queue_full");
            m.commit_failed();
        });
        let seen: BTreeMap<String, u64> = counts
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.0.load(Ordering::Relaxed)))
            .collect();
        let of = |name: &str| seen.get(name).copied().unwrap_or(0);
        assert_eq!(of("mooring_connection_attempts_total{client_id=gw}"), 1);
        assert_eq!(
            of("mooring_connection_failures_total{client_id=gw,reason=refused}"),
            2,
            "{seen:?}"
        );
        assert_eq!(
            of("mooring_connection_failures_total{client_id=gw,reason=timeout}"),
            1
        );
        assert_eq!(
            of("mooring_publishes_refused_total{client_id=gw,reason=queue_full}"),
            1
        );
        assert_eq!(of("mooring_commit_failures_total{client_id=gw}"), 1);
    }
}
