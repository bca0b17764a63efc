//! The store conformance suite: the definition of a correct [`SessionStore`].
//!
//! Every store Mooring ships runs all of it in CI, and a third-party store proves itself the
//! same way: implement [`StoreFactory`] (how to make a store, open it again, damage one of its
//! records and make its next commit fail), then run the suite from a test. The suite runs in
//! one process; [`crash`] is the SIGKILL proof that runs across processes: a child commits,
//! is killed at random moments, and every acknowledged commit must be there whole.
//!
//! ```
//! use mooring_core::conformance::{self, Damage, StoreFactory};
//! use mooring_core::store::{SessionKey, StoreError};
//! # use mooring_core::store::{KvBackend, KvStore, layout::KvWrite};
//! # #[derive(Clone, Default)]
//! # struct Map(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>>);
//! # impl KvBackend for Map {
//! #     const NAME: &'static str = "doc map";
//! #     const BLOCKING: bool = false;
//! #     fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> { Ok(self.0.lock().unwrap().get(k).cloned()) }
//! #     fn visit_range(&self, s: &[u8], e: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
//! #         for (k, v) in self.0.lock().unwrap().range(s.to_vec()..) { if e.is_some_and(|e| k.as_slice() >= e) || !f(k, v) { break; } }
//! #         Ok(())
//! #     }
//! #     fn last_key_in(&self, s: &[u8], e: &[u8]) -> Result<Option<Vec<u8>>, StoreError> { Ok(self.0.lock().unwrap().range(s.to_vec()..e.to_vec()).next_back().map(|(k, _)| k.clone())) }
//! #     fn apply(&self, w: &[KvWrite]) -> Result<(), StoreError> {
//! #         let mut m = self.0.lock().unwrap();
//! #         for w in w { match w { KvWrite::Put(k, v) => { m.insert(k.clone(), v.clone()); } KvWrite::Delete(k) => { m.remove(k); } } }
//! #         Ok(())
//! #     }
//! # }
//! struct MyFactory;
//!
//! #[async_trait::async_trait]
//! impl StoreFactory for MyFactory {
//!     type Store = KvStore<Map>;
//!     type Location = Map;
//!
//!     async fn create(&self) -> Result<(Self::Store, Map), StoreError> {
//!         let map = Map::default();
//!         Ok((KvStore::new(map.clone()), map))
//!     }
//!     async fn reopen(&self, map: &Map) -> Result<Self::Store, StoreError> {
//!         Ok(KvStore::new(map.clone()))
//!     }
//!     async fn damage(&self, _: &Map, _: &SessionKey, _: Damage) -> Result<bool, StoreError> {
//!         Ok(false) // unsupported: those checks are reported as skipped
//!     }
//!     fn fail_next_commit(&self, _: &Self::Store) -> bool {
//!         false
//!     }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
//! let report = conformance::run(&MyFactory).await;
//! assert!(report.is_success(), "{report}");
//! # }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::packet::{
    Codec, Packet, ProtocolVersion, Publish, QoS, Subscribe, SubscribeProperties, Subscription,
};
use crate::store::layout::{self, KvWrite};
use crate::store::{
    Batch, ClassQueue, KvBackend, LatestValue, OutboundRecord, QueueSummary, QueuedPublish,
    SeenKey, SessionKey, SessionMeta, SessionStore, StoreError, StoreOp, StoredSession,
    StoredSubscription,
};

/// A way to damage a stored record, as a bad disk or a torn write would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Flip one bit in the middle of the record.
    FlipBit,
    /// Cut the record short.
    Truncate,
    /// Overwrite the record with zero bytes of the same length.
    ZeroFill,
}

/// `value` damaged as `damage` says: a helper for factories of stores that keep each record as
/// a byte string.
pub fn damaged(value: &[u8], damage: Damage) -> Vec<u8> {
    let mut out = value.to_vec();
    match damage {
        Damage::FlipBit => {
            if let Some(byte) = out.get_mut(value.len() / 2) {
                *byte ^= 0x10;
            }
        }
        Damage::Truncate => out.truncate(value.len() / 2),
        Damage::ZeroFill => out.fill(0),
    }
    out
}

/// Damages the value of one record of `session` in a store that uses
/// [`layout`] (the first outbound record, which every damage check
/// writes): a ready-made [`StoreFactory::damage`] for key-value stores.
pub fn damage_kv_record<B: KvBackend>(
    backend: &B,
    session: &SessionKey,
    damage: Damage,
) -> Result<bool, StoreError> {
    let key = layout::outbound_key(session, 1);
    let value = backend.get(&key)?.ok_or_else(|| StoreError::Backend {
        backend: B::NAME,
        message: format!("no record to damage in session {session}"),
        source: None,
    })?;
    backend.apply(&[KvWrite::Put(key, damaged(&value, damage))])?;
    Ok(true)
}

/// How the suite makes, reopens and damages stores of one kind.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// The store under test.
    type Store: SessionStore + 'static;
    /// Where a store keeps its data (a path, a shared map).
    type Location: Send + Sync;

    /// A new, empty store at a location of its own.
    async fn create(&self) -> Result<(Self::Store, Self::Location), StoreError>;

    /// Opens the store at `location` again. The suite has dropped every handle to the previous
    /// store first.
    async fn reopen(&self, location: &Self::Location) -> Result<Self::Store, StoreError>;

    /// Damages one stored record of `session` at `location`, while no store is open there.
    /// Returns `Ok(false)` if this store cannot be damaged on purpose; the checks that need it
    /// are then reported as skipped.
    async fn damage(
        &self,
        location: &Self::Location,
        session: &SessionKey,
        damage: Damage,
    ) -> Result<bool, StoreError>;

    /// Makes the next commit of `store` fail as a failing disk would (an I/O error or a failed
    /// sync in the middle of the write). Returns `false` if this store cannot do that; the checks
    /// that need it are then reported as skipped.
    fn fail_next_commit(&self, store: &Self::Store) -> bool;
}

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The store kept the rule.
    Passed,
    /// The check could not run on this store; why.
    Skipped(String),
    /// The store broke the rule; what happened.
    Failed(String),
}

/// One check's name and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check, named after the rule it checks.
    pub name: &'static str,
    /// How it ended.
    pub outcome: Outcome,
}

/// The outcome of every check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// One entry per check, in the order they ran.
    pub results: Vec<CheckResult>,
}

impl Report {
    /// Whether no check failed.
    pub fn is_success(&self) -> bool {
        !self
            .results
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Failed(_)))
    }

    /// Whether every check ran and passed: none failed and none was skipped.
    pub fn passed_all(&self) -> bool {
        self.results.iter().all(|r| r.outcome == Outcome::Passed)
    }

    /// The checks that failed, with their messages.
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.results.iter().filter_map(|r| match &r.outcome {
            Outcome::Failed(why) => Some((r.name, why.as_str())),
            _ => None,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            match &r.outcome {
                Outcome::Passed => writeln!(f, "ok      {}", r.name)?,
                Outcome::Skipped(why) => writeln!(f, "skipped {}: {why}", r.name)?,
                Outcome::Failed(why) => writeln!(f, "FAILED  {}: {why}", r.name)?,
            }
        }
        let failed = self.failures().count();
        write!(f, "{} checks, {failed} failed", self.results.len())
    }
}

/// What a check returns: `Err(Skip)` when it cannot run here, `Err(Fail)` when the rule is
/// broken.
enum Stop {
    Skip(String),
    Fail(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Fail(format!("unexpected store error: {e}"))
    }
}

type CheckResultOf = Result<(), Stop>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Stop::Fail(format!($($msg)+)));
        }
    };
}

pub mod crash;
mod lifecycle;
mod queue;
mod records;
mod together;

use lifecycle::*;
use records::*;
use together::*;

use queue::{
    a_cursor_reading_on_between_appends_and_removals_misses_nothing,
    a_latest_value_is_replaced_in_the_commit_that_queues_the_next,
    class_queues_are_apart_read_on_in_order_and_counted, clear_removes_a_queue_of_many_chunks,
    queue_totals_stay_exact_through_every_change,
    read_queue_reads_on_in_numeric_order_across_reopen,
    resume_returns_the_head_and_an_exact_summary,
};

/// Runs every check against stores made by `factory` and reports each outcome. Needs a
/// multi-threaded tokio runtime (the concurrency checks spawn tasks).
pub async fn run<F: StoreFactory>(factory: &F) -> Report {
    let mut report = Report::default();
    macro_rules! check {
        ($name:ident) => {
            let outcome = match $name(factory).await {
                Ok(()) => Outcome::Passed,
                Err(Stop::Skip(why)) => Outcome::Skipped(why),
                Err(Stop::Fail(why)) => Outcome::Failed(why),
            };
            report.results.push(CheckResult {
                name: stringify!($name),
                outcome,
            });
        };
    }
    check!(empty_store_loads_empty_sessions);
    check!(every_record_kind_round_trips_byte_exact);
    check!(order_survives_packet_identifier_wrap);
    check!(pubrel_records_keep_the_order_they_were_released_in);
    check!(removal_and_idempotence);
    check!(operations_apply_in_batch_order);
    check!(a_failed_batch_is_all_or_nothing);
    check!(sessions_are_isolated);
    check!(committed_data_survives_reopen);
    check!(clear_removes_one_session);
    check!(sessions_lists_every_session);
    check!(sessions_of_lists_one_clients_sessions_in_every_scope);
    check!(purge_removes_only_expired_sessions);
    check!(payloads_of_0_bytes_1_mib_and_16_mib);
    check!(concurrent_commits_to_many_sessions);
    check!(concurrent_commits_to_one_session);
    check!(a_flipped_bit_is_an_error);
    check!(a_truncated_record_is_an_error);
    check!(a_zero_filled_record_is_an_error);
    check!(a_failed_commit_refuses_later_writes);
    check!(subscriptions_are_kept_per_filter_replaced_and_removed);
    check!(seen_keys_are_kept_in_number_order_removed_and_cleared);
    check!(a_latest_value_is_replaced_in_the_commit_that_queues_the_next);
    check!(class_queues_are_apart_read_on_in_order_and_counted);
    check!(resume_returns_the_head_and_an_exact_summary);
    check!(read_queue_reads_on_in_numeric_order_across_reopen);
    check!(a_cursor_reading_on_between_appends_and_removals_misses_nothing);
    check!(queue_totals_stay_exact_through_every_change);
    check!(clear_removes_a_queue_of_many_chunks);
    check!(a_commit_of_several_sessions_applies_to_each);
    check!(a_failed_commit_of_several_sessions_is_all_or_nothing);
    check!(two_stores_open_at_once_have_different_storage_ids);
    report
}

// ---------------------------------------------------------------------------------------------
// Test data

fn key(client: &str) -> SessionKey {
    SessionKey::new("mqtt://conformance.test:1883", client)
}

/// A QoS 1 PUBLISH in wire format whose payload says which record it is.
fn publish(packet_id: u16, tag: u64, payload_len: usize) -> Bytes {
    let mut payload = tag.to_be_bytes().to_vec();
    payload.resize(payload_len.max(8), 0xA5);
    let mut p = Publish::new("conformance/topic", Bytes::from(payload));
    p.qos = QoS::AtLeastOnce;
    p.packet_id = packet_id.max(1);
    encode(p)
}

fn encode(publish: Publish) -> Bytes {
    let mut buf = BytesMut::new();
    // A valid PUBLISH always encodes; an empty record would fail the checks loudly.
    let _ = Codec::default().encode(&Packet::Publish(publish), &mut buf);
    buf.freeze()
}

fn queued(tag: u64, qos: QoS, payload_len: usize) -> QueuedPublish {
    let mut payload = tag.to_be_bytes().to_vec();
    payload.resize(payload_len.max(8), 0x5A);
    QueuedPublish {
        qos,
        packet: encode(Publish::new("conformance/queued", Bytes::from(payload))),
        expires_at_ms: None,
        // Every record read back is compared whole: a store must keep this too.
        accepted_at_ms: Some(1_764_547_200_000u64.wrapping_add(tag)),
    }
}

/// A queued message with a Message Expiry deadline, as records written before acceptance
/// times were kept hold it.
fn expiring(tag: u64, expires_at_ms: u64) -> QueuedPublish {
    QueuedPublish {
        expires_at_ms: Some(expires_at_ms),
        accepted_at_ms: None,
        ..queued(tag, QoS::AtLeastOnce, 16)
    }
}

/// A SUBSCRIBE in wire format for `filter`, told apart by its Subscription Identifier.
fn subscription(filter: &str, id: u32) -> StoredSubscription {
    let properties = SubscribeProperties {
        subscription_identifier: Some(id),
        ..SubscribeProperties::default()
    };
    let packet = Packet::Subscribe(Subscribe {
        packet_id: 1,
        subscriptions: vec![Subscription::new(filter, QoS::ExactlyOnce)],
        properties,
    });
    let mut buf = BytesMut::new();
    // A valid SUBSCRIBE always encodes; an empty record would fail the checks loudly.
    let _ = Codec::default().encode(&packet, &mut buf);
    StoredSubscription {
        filter: filter.to_owned(),
        packet: buf.freeze(),
    }
}

fn put_publish(seq: u64, packet_id: u16) -> StoreOp {
    StoreOp::PutOutbound {
        seq,
        record: OutboundRecord::Publish(publish(packet_id, seq, 16)),
    }
}

fn full_meta() -> SessionMeta {
    SessionMeta {
        session_expiry_interval: 3600,
        disconnected_at_ms: Some(1_700_000_000_123),
        assigned_client_id: Some("auto-7f3a".into()),
        alive_until_ms: Some(1_700_000_000_456),
        // A 3.1.1 session: the record carries the protocol after the alive-until time.
        protocol: ProtocolVersion::V311,
        // And the last connection's in-flight limit after the protocol, then the clock.
        in_flight_limit: Some(20),
        clock: crate::store::SessionClock {
            stamped_ms: Some(1_700_000_000_789),
            untrusted_since: Some(3),
            corrections: vec![
                crate::store::ClockCorrection {
                    from_seq: 3,
                    to_seq: 9,
                    shift_ms: 86_400_000,
                },
                crate::store::ClockCorrection {
                    from_seq: 9,
                    to_seq: 12,
                    shift_ms: -5_000,
                },
            ],
        },
    }
}

fn seqs<T>(records: &[(u64, T)]) -> Vec<u64> {
    records.iter().map(|(seq, _)| *seq).collect()
}

/// Ends a store as an application does before opening it again: `close` (which a store
/// shared by processes needs, to hand its sessions on at once), then drop.
async fn close_store<S: SessionStore>(store: S) -> Result<(), Stop> {
    store.close().await?;
    drop(store);
    Ok(())
}

async fn commit<S: SessionStore + ?Sized>(
    store: &S,
    key: &SessionKey,
    ops: Vec<StoreOp>,
) -> Result<(), StoreError> {
    store.commit(key, Batch::from(ops)).await
}

/// A session holding one record of every kind.
fn one_of_each() -> Vec<StoreOp> {
    vec![
        StoreOp::SetMeta(full_meta()),
        put_publish(1, 10),
        StoreOp::PutOutbound {
            seq: 2,
            record: OutboundRecord::PubRel { packet_id: 11 },
        },
        StoreOp::PutInbound { packet_id: 12 },
        StoreOp::PushQueue {
            seq: 3,
            message: queued(3, QoS::ExactlyOnce, 16),
        },
        StoreOp::PushQueue {
            seq: 4,
            message: expiring(4, 1_700_000_060_000),
        },
        StoreOp::PutSubscription(subscription("plant/+/telemetry", 1)),
        StoreOp::PutSeenKey {
            seq: 0,
            seen: seen("gateway-7/00000000000000a1/42", 1_700_000_000_500),
        },
        StoreOp::PutLatestValue(latest_of_one_of_each()),
        StoreOp::PushClassQueue {
            class: 3,
            seq: 5,
            message: queued(5, QoS::AtLeastOnce, 24),
        },
    ]
}

/// The latest-value record of the one-of-each session: its expiring message.
fn latest_of_one_of_each() -> LatestValue {
    LatestValue {
        topic: "plant/7/state".to_owned(),
        seq: 4,
        class: 0,
        len: expiring(4, 1_700_000_060_000).packet.len() as u64,
    }
}

/// An idempotency key handled at `at_ms`.
fn seen(key: &str, at_ms: u64) -> SeenKey {
    SeenKey {
        key: key.to_owned(),
        seen_at_ms: at_ms,
    }
}

fn expected_one_of_each() -> StoredSession {
    let queue = vec![
        (3, queued(3, QoS::ExactlyOnce, 16)),
        (4, expiring(4, 1_700_000_060_000)),
    ];
    StoredSession {
        meta: Some(full_meta()),
        outbound: vec![
            (1, OutboundRecord::Publish(publish(10, 1, 16))),
            (2, OutboundRecord::PubRel { packet_id: 11 }),
        ],
        inbound: vec![12],
        queue_summary: QueueSummary::of(&queue),
        queue,
        subscriptions: vec![subscription("plant/+/telemetry", 1)],
        seen_keys: vec![(0, seen("gateway-7/00000000000000a1/42", 1_700_000_000_500))],
        latest_values: vec![latest_of_one_of_each()],
        class_queues: vec![ClassQueue {
            class: 3,
            queue: vec![(5, queued(5, QoS::AtLeastOnce, 24))],
            summary: QueueSummary::of(&[(5, queued(5, QoS::AtLeastOnce, 24))]),
        }],
    }
}
