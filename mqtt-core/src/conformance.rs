//! The store conformance suite: the definition of a correct [`SessionStore`].
//!
//! Every store Mooring ships runs all of it in CI, and a third-party store proves itself the
//! same way: implement [`StoreFactory`] (how to make a store, open it again, damage one of its
//! records and make its next commit fail), then run the suite from a test.
//!
//! ```
//! use mqtt_core::conformance::{self, Damage, StoreFactory};
//! use mqtt_core::store::{SessionKey, StoreError};
//! # use mqtt_core::store::{KvBackend, KvStore, layout::KvWrite};
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
    Batch, KvBackend, OutboundRecord, QueueSummary, QueuedPublish, SessionKey, SessionMeta,
    SessionStore, StoreError, StoreOp, StoredSession, StoredSubscription,
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

mod queue;

use queue::{
    a_cursor_racing_appends_and_removals_misses_nothing, clear_removes_a_queue_of_many_chunks,
    queue_totals_stay_exact_through_every_change,
    read_queue_reads_on_in_order_across_reopen_and_wrap,
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
    check!(purge_removes_only_expired_sessions);
    check!(payloads_of_0_bytes_1_mib_and_16_mib);
    check!(concurrent_commits_to_many_sessions);
    check!(concurrent_commits_to_one_session);
    check!(a_flipped_bit_is_an_error);
    check!(a_truncated_record_is_an_error);
    check!(a_zero_filled_record_is_an_error);
    check!(a_failed_commit_refuses_later_writes);
    check!(subscriptions_are_kept_per_filter_replaced_and_removed);
    check!(resume_returns_the_head_and_an_exact_summary);
    check!(read_queue_reads_on_in_order_across_reopen_and_wrap);
    check!(a_cursor_racing_appends_and_removals_misses_nothing);
    check!(queue_totals_stay_exact_through_every_change);
    check!(clear_removes_a_queue_of_many_chunks);
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
    }
}

/// A queued message with a Message Expiry deadline.
fn expiring(tag: u64, expires_at_ms: u64) -> QueuedPublish {
    QueuedPublish {
        expires_at_ms: Some(expires_at_ms),
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
    }
}

fn seqs<T>(records: &[(u64, T)]) -> Vec<u64> {
    records.iter().map(|(seq, _)| *seq).collect()
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
    ]
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
    }
}

// ---------------------------------------------------------------------------------------------
// The checks

async fn empty_store_loads_empty_sessions<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let loaded = store.load(&key("nobody")).await?;
    ensure!(loaded.is_empty(), "a fresh store returned {loaded:?}");
    let sessions = store.sessions().await?;
    ensure!(sessions.is_empty(), "a fresh store lists {sessions:?}");
    Ok(())
}

async fn every_record_kind_round_trips_byte_exact<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("round-trip");
    commit(&store, &k, one_of_each()).await?;
    let loaded = store.load(&k).await?;
    ensure!(
        loaded == expected_one_of_each(),
        "stored one record of each kind, loaded {loaded:?}"
    );

    // Metadata with every optional field absent, and the extremes of each number.
    let sparse = SessionMeta {
        session_expiry_interval: u32::MAX,
        disconnected_at_ms: None,
        assigned_client_id: None,
        alive_until_ms: None,
        protocol: ProtocolVersion::V311,
    };
    let extremes = vec![
        StoreOp::SetMeta(sparse.clone()),
        StoreOp::PutOutbound {
            seq: u64::MAX,
            record: OutboundRecord::PubRel {
                packet_id: u16::MAX,
            },
        },
        StoreOp::PutInbound { packet_id: 0 },
        StoreOp::PutInbound {
            packet_id: u16::MAX,
        },
        StoreOp::PushQueue {
            seq: 0,
            message: queued(0, QoS::AtMostOnce, 8),
        },
        StoreOp::PushQueue {
            seq: 1,
            message: queued(1, QoS::AtLeastOnce, 8),
        },
    ];
    let k2 = key("round-trip-extremes");
    commit(&store, &k2, extremes).await?;
    let loaded = store.load(&k2).await?;
    ensure!(
        loaded.meta == Some(sparse),
        "sparse metadata came back as {:?}",
        loaded.meta
    );
    ensure!(
        loaded.outbound
            == vec![(
                u64::MAX,
                OutboundRecord::PubRel {
                    packet_id: u16::MAX
                }
            )],
        "outbound at u64::MAX came back as {:?}",
        loaded.outbound
    );
    ensure!(
        loaded.inbound == vec![0, u16::MAX],
        "inbound markers came back as {:?}",
        loaded.inbound
    );
    ensure!(
        loaded.queue
            == vec![
                (0, queued(0, QoS::AtMostOnce, 8)),
                (1, queued(1, QoS::AtLeastOnce, 8))
            ],
        "queue came back as {:?}",
        loaded.queue
    );
    Ok(())
}

async fn order_survives_packet_identifier_wrap<F: StoreFactory>(f: &F) -> CheckResultOf {
    // 70,000 PUBLISH records pass through a window of 1,000; their packet identifiers wrap past
    // 65,535, and records come back in the order they were stored, never by identifier.
    const TOTAL: u64 = 70_000;
    const WINDOW: u64 = 1_000;
    const STEP: u64 = 250;
    let (store, _loc) = f.create().await?;
    let k = key("wrap");
    let id_of = |seq: u64| (seq % 65_535 + 1) as u16;
    let mut next = 0u64;
    while next < TOTAL {
        let mut ops = Vec::new();
        for seq in next..next + STEP {
            ops.push(put_publish(seq, id_of(seq)));
            if seq >= WINDOW {
                ops.push(StoreOp::RemoveOutbound { seq: seq - WINDOW });
            }
            // The queue rolls too.
            ops.push(StoreOp::PushQueue {
                seq,
                message: queued(seq, QoS::AtLeastOnce, 8),
            });
            if seq >= WINDOW {
                ops.push(StoreOp::RemoveQueue { seq: seq - WINDOW });
            }
        }
        commit(&store, &k, ops).await?;
        next += STEP;
        if next % 10_000 == 0 || next == 65_750 || next == TOTAL {
            let loaded = store.load(&k).await?;
            let first = next.saturating_sub(WINDOW);
            let want: Vec<u64> = (first..next).collect();
            ensure!(
                seqs(&loaded.outbound) == want,
                "after {next} records the outbound window is not {first}..{next} in order"
            );
            ensure!(
                seqs(&loaded.queue) == want,
                "after {next} records the queue is not {first}..{next} in FIFO order"
            );
            for (seq, record) in &loaded.outbound {
                ensure!(
                    *record == OutboundRecord::Publish(publish(id_of(*seq), *seq, 16)),
                    "record {seq} came back with other contents"
                );
            }
        }
    }
    Ok(())
}

async fn pubrel_records_keep_the_order_they_were_released_in<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("pubrel-order");
    // Five PUBLISH with identifiers that do not sort in sequence order.
    let ids = [65_000u16, 3, 64_000, 1, 2];
    commit(
        &store,
        &k,
        ids.iter()
            .enumerate()
            .map(|(seq, id)| put_publish(seq as u64, *id))
            .collect(),
    )
    .await?;
    // PUBREC arrives for the third, then the first, then the fifth: each becomes a PUBREL
    // under a new, higher sequence number, in one batch with the removal of its PUBLISH.
    for (new_seq, (old_seq, id)) in [(2u64, 64_000u16), (0, 65_000), (4, 2)]
        .into_iter()
        .enumerate()
    {
        commit(
            &store,
            &k,
            vec![
                StoreOp::RemoveOutbound { seq: old_seq },
                StoreOp::PutOutbound {
                    seq: 5 + new_seq as u64,
                    record: OutboundRecord::PubRel { packet_id: id },
                },
            ],
        )
        .await?;
    }
    let loaded = store.load(&k).await?;
    let want = vec![
        (1, OutboundRecord::Publish(publish(3, 1, 16))),
        (3, OutboundRecord::Publish(publish(1, 3, 16))),
        (5, OutboundRecord::PubRel { packet_id: 64_000 }),
        (6, OutboundRecord::PubRel { packet_id: 65_000 }),
        (7, OutboundRecord::PubRel { packet_id: 2 }),
    ];
    ensure!(
        loaded.outbound == want,
        "expected the two PUBLISH in send order, then PUBREL for 64000, 65000, 2 in release \
         order; got {:?}",
        loaded.outbound
    );
    Ok(())
}

async fn removal_and_idempotence<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("removal");
    commit(&store, &k, one_of_each()).await?;
    let removals = vec![
        StoreOp::RemoveOutbound { seq: 1 },
        StoreOp::RemoveInbound { packet_id: 12 },
        StoreOp::RemoveQueue { seq: 3 },
        StoreOp::RemoveQueue { seq: 4 },
        StoreOp::RemoveSubscription {
            filter: "plant/+/telemetry".into(),
        },
    ];
    commit(&store, &k, removals.clone()).await?;
    let loaded = store.load(&k).await?;
    ensure!(
        seqs(&loaded.outbound) == vec![2]
            && loaded.inbound.is_empty()
            && loaded.queue.is_empty()
            && loaded.subscriptions.is_empty(),
        "after removing one record of each kind, loaded {loaded:?}"
    );
    // Removing what is not there does nothing and is no error.
    commit(&store, &k, removals).await?;
    commit(
        &store,
        &key("never-written"),
        vec![StoreOp::RemoveQueue { seq: 9 }],
    )
    .await?;
    let again = store.load(&k).await?;
    ensure!(again == loaded, "a repeated removal changed the session");
    // Putting an existing record replaces it.
    commit(
        &store,
        &k,
        vec![StoreOp::PutOutbound {
            seq: 2,
            record: OutboundRecord::PubRel { packet_id: 99 },
        }],
    )
    .await?;
    let replaced = store.load(&k).await?;
    ensure!(
        replaced.outbound == vec![(2, OutboundRecord::PubRel { packet_id: 99 })],
        "a put over an existing record did not replace it: {:?}",
        replaced.outbound
    );
    Ok(())
}

async fn operations_apply_in_batch_order<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("batch-order");
    commit(
        &store,
        &k,
        vec![
            put_publish(1, 1),
            StoreOp::RemoveOutbound { seq: 1 },
            StoreOp::RemoveInbound { packet_id: 5 },
            StoreOp::PutInbound { packet_id: 5 },
            StoreOp::SetMeta(SessionMeta::default()),
            StoreOp::SetMeta(full_meta()),
        ],
    )
    .await?;
    let loaded = store.load(&k).await?;
    ensure!(
        loaded.outbound.is_empty(),
        "put then remove in one batch left {:?}",
        loaded.outbound
    );
    ensure!(
        loaded.inbound == vec![5],
        "remove then put in one batch left {:?}",
        loaded.inbound
    );
    ensure!(
        loaded.meta == Some(full_meta()),
        "the later of two metadata writes did not win"
    );
    Ok(())
}

/// Checks that after a failed batch the session's outbound records are those from before the
/// batch or those the whole batch would have left, never a mix.
fn all_or_nothing(loaded: &StoredSession, before: &[u64], after: &[u64]) -> Result<(), Stop> {
    let got = seqs(&loaded.outbound);
    ensure!(
        got == before || got == after,
        "after a failed batch the session holds outbound {got:?}: it must hold {before:?} (none \
         of the batch) or {after:?} (all of it), never a part"
    );
    Ok(())
}

async fn a_failed_batch_is_all_or_nothing<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("atomicity");
    commit(&store, &k, one_of_each()).await?;
    if !f.fail_next_commit(&store) {
        return Err(Stop::Skip(
            "the factory cannot make a commit fail".to_owned(),
        ));
    }
    let failed: Vec<u64> = (100..400).collect();
    let mut ops: Vec<StoreOp> = failed
        .iter()
        .map(|&seq| put_publish(seq, seq as u16))
        .collect();
    ops.push(StoreOp::RemoveOutbound { seq: 1 });
    let result = commit(&store, &k, ops).await;
    ensure!(result.is_err(), "a commit armed to fail returned Ok");
    // All of it: record 1 removed and 100..400 added. None of it: records 1 and 2.
    let mut after = vec![2];
    after.extend_from_slice(&failed);
    let check = |loaded: StoredSession| -> Result<(), Stop> {
        all_or_nothing(&loaded, &[1, 2], &after)?;
        ensure!(
            loaded.inbound == vec![12] && loaded.meta == Some(full_meta()),
            "a failed batch changed records it did not touch"
        );
        Ok(())
    };
    // The failed handle may refuse reads too (its state is unknown); what it returns, if
    // anything, must be all or nothing as well.
    if let Ok(loaded) = store.load(&k).await {
        check(loaded)?;
    }
    drop(store);
    let store = f.reopen(&loc).await?;
    check(store.load(&k).await?)
}

async fn sessions_are_isolated<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let keys = [
        SessionKey::new("a", "x"),
        SessionKey::new("ab", "x"),
        SessionKey::new("a", "xy"),
        SessionKey::new("h:1", "c"),
        SessionKey::new("h:18", "c"),
        SessionKey::new("h:1", ""),
        SessionKey::new("", "h:1"),
        SessionKey::cluster("a", "x"),
        SessionKey::cluster("h:1", "c"),
    ];
    for (i, k) in keys.iter().enumerate() {
        let i = i as u64;
        commit(
            &store,
            k,
            vec![
                put_publish(i, i as u16 + 1),
                StoreOp::PutInbound {
                    packet_id: i as u16,
                },
                StoreOp::PushQueue {
                    seq: i,
                    message: queued(i, QoS::AtLeastOnce, 8),
                },
                StoreOp::SetMeta(SessionMeta {
                    session_expiry_interval: i as u32,
                    ..SessionMeta::default()
                }),
            ],
        )
        .await?;
    }
    for (i, k) in keys.iter().enumerate() {
        let loaded = store.load(k).await?;
        let i = i as u64;
        ensure!(
            seqs(&loaded.outbound) == vec![i]
                && loaded.inbound == vec![i as u16]
                && seqs(&loaded.queue) == vec![i]
                && loaded.meta.as_ref().map(|m| m.session_expiry_interval) == Some(i as u32),
            "session {k} sees records that are not its own: {loaded:?}"
        );
    }
    store.clear(&keys[0]).await?;
    store.clear(&keys[3]).await?;
    for (i, k) in keys.iter().enumerate() {
        let empty = store.load(k).await?.is_empty();
        ensure!(
            empty == (i == 0 || i == 3),
            "clearing {} and {} changed {k}",
            keys[0],
            keys[3]
        );
    }
    Ok(())
}

async fn committed_data_survives_reopen<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("reopen");
    commit(&store, &k, one_of_each()).await?;
    let other = key("reopen-other");
    commit(&store, &other, vec![StoreOp::PutInbound { packet_id: 1 }]).await?;
    drop(store);
    let store = f.reopen(&loc).await?;
    let loaded = store.load(&k).await?;
    ensure!(
        loaded == expected_one_of_each(),
        "after reopening the session reads {loaded:?}"
    );
    ensure!(
        store.load(&other).await?.inbound == vec![1],
        "after reopening the second session is gone"
    );
    // The reopened store takes writes.
    commit(
        &store,
        &k,
        vec![
            StoreOp::RemoveQueue { seq: 3 },
            StoreOp::RemoveQueue { seq: 4 },
        ],
    )
    .await?;
    drop(store);
    let store = f.reopen(&loc).await?;
    ensure!(
        store.load(&k).await?.queue.is_empty(),
        "a removal after reopening did not last"
    );
    Ok(())
}

async fn clear_removes_one_session<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let (a, b) = (key("clear-a"), key("clear-b"));
    commit(&store, &a, one_of_each()).await?;
    commit(&store, &b, one_of_each()).await?;
    store.clear(&a).await?;
    store.clear(&key("clear-never-written")).await?;
    ensure!(
        store.load(&a).await?.is_empty(),
        "clear left records behind"
    );
    ensure!(
        store.load(&b).await? == expected_one_of_each(),
        "clearing one session changed another"
    );
    drop(store);
    let store = f.reopen(&loc).await?;
    ensure!(
        store.load(&a).await?.is_empty(),
        "a cleared session came back after reopening"
    );
    ensure!(
        store.sessions().await? == vec![b],
        "a cleared session is still listed"
    );
    Ok(())
}

async fn sessions_lists_every_session<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let mut want = BTreeSet::new();
    for (i, k) in [
        key("list-b"),
        key("list-a"),
        SessionKey::new("other", "list-a"),
        SessionKey::cluster("c", "list-a"),
        key(""),
    ]
    .into_iter()
    .enumerate()
    {
        // Each session holds a different kind of record, so none is missed for lack of one.
        let op = match i % 3 {
            0 => StoreOp::PutInbound { packet_id: 1 },
            1 => put_publish(1, 1),
            _ => StoreOp::SetMeta(full_meta()),
        };
        commit(&store, &k, vec![op]).await?;
        want.insert(k);
    }
    let listed = store.sessions().await?;
    let got: BTreeSet<SessionKey> = listed.iter().cloned().collect();
    ensure!(
        got == want && listed.len() == want.len(),
        "listed {listed:?}, expected {want:?}"
    );
    Ok(())
}

async fn purge_removes_only_expired_sessions<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let now = 1_700_000_000_000u64;
    let with_alive = |interval: u32, ended: Option<u64>, alive_until: Option<u64>| {
        vec![
            StoreOp::SetMeta(SessionMeta {
                session_expiry_interval: interval,
                disconnected_at_ms: ended,
                assigned_client_id: None,
                alive_until_ms: alive_until,
                protocol: ProtocolVersion::V5,
            }),
            put_publish(1, 1),
        ]
    };
    let with_meta = |interval: u32, ended: Option<u64>| with_alive(interval, ended, None);
    let sessions = [
        ("expired", with_meta(60, Some(now - 60_000)), true),
        ("expired-zero", with_meta(0, Some(now - 1)), true),
        ("not-yet", with_meta(60, Some(now - 59_999)), false),
        ("never-expires", with_meta(u32::MAX, Some(0)), false),
        ("still-connected", with_meta(0, None), false),
        // Killed while connected: it ended before its alive-until time at the latest.
        (
            "killed-long-ago",
            with_alive(60, None, Some(now - 60_000)),
            true,
        ),
        (
            "killed-recently",
            with_alive(60, None, Some(now - 59_999)),
            false,
        ),
        ("no-metadata", vec![put_publish(1, 1)], false),
    ];
    for (name, ops, _) in &sessions {
        commit(&store, &key(name), ops.clone()).await?;
    }
    let mut purged = store.purge_expired(now).await?;
    purged.sort();
    let mut want: Vec<SessionKey> = sessions
        .iter()
        .filter(|(_, _, expired)| *expired)
        .map(|(name, _, _)| key(name))
        .collect();
    want.sort();
    ensure!(purged == want, "purged {purged:?}, expected {want:?}");
    drop(store);
    let store = f.reopen(&loc).await?;
    for (name, _, expired) in &sessions {
        let empty = store.load(&key(name)).await?.is_empty();
        ensure!(
            empty == *expired,
            "after the purge, session {name} is {}",
            if empty { "gone" } else { "still there" }
        );
    }
    Ok(())
}

async fn payloads_of_0_bytes_1_mib_and_16_mib<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("payloads");
    let sizes = [0usize, 1 << 20, 16 << 20];
    let make = |i: usize, len: usize| {
        let payload = Bytes::from(
            (0..len)
                .map(|b| (b % 251) as u8 ^ i as u8)
                .collect::<Vec<_>>(),
        );
        let mut p = Publish::new("conformance/big", payload);
        p.qos = QoS::ExactlyOnce;
        p.packet_id = i as u16 + 1;
        encode(p)
    };
    for (i, &len) in sizes.iter().enumerate() {
        commit(
            &store,
            &k,
            vec![
                StoreOp::PutOutbound {
                    seq: i as u64,
                    record: OutboundRecord::Publish(make(i, len)),
                },
                StoreOp::PushQueue {
                    seq: 10 + i as u64,
                    message: QueuedPublish {
                        qos: QoS::AtLeastOnce,
                        packet: make(i + 10, len),
                        expires_at_ms: None,
                    },
                },
            ],
        )
        .await?;
    }
    drop(store);
    let store = f.reopen(&loc).await?;
    let loaded = store.load(&k).await?;
    for (i, &len) in sizes.iter().enumerate() {
        let want = OutboundRecord::Publish(make(i, len));
        ensure!(
            loaded.outbound.get(i).map(|(_, r)| r) == Some(&want),
            "the PUBLISH with a {len}-byte payload did not come back byte-exact"
        );
        ensure!(
            loaded.queue.get(i).map(|(_, q)| &q.packet) == Some(&make(i + 10, len)),
            "the queued message with a {len}-byte payload did not come back byte-exact"
        );
    }
    Ok(())
}

async fn concurrent_commits_to_many_sessions<F: StoreFactory>(f: &F) -> CheckResultOf {
    const TASKS: u64 = 8;
    const COMMITS: u64 = 25;
    let (store, loc) = f.create().await?;
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let k = key(&format!("concurrent-{t}"));
            for c in 0..COMMITS {
                commit(&*store, &k, vec![put_publish(c, c as u16 + 1)]).await?;
            }
            Ok::<(), StoreError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| Stop::Fail(format!("a committing task failed: {e}")))??;
    }
    drop(store);
    let store = f.reopen(&loc).await?;
    for t in 0..TASKS {
        let loaded = store.load(&key(&format!("concurrent-{t}"))).await?;
        ensure!(
            seqs(&loaded.outbound) == (0..COMMITS).collect::<Vec<_>>(),
            "task {t} committed {COMMITS} records, {} are stored",
            loaded.outbound.len()
        );
    }
    Ok(())
}

async fn concurrent_commits_to_one_session<F: StoreFactory>(f: &F) -> CheckResultOf {
    const TASKS: u64 = 8;
    const COMMITS: u64 = 25;
    let (store, loc) = f.create().await?;
    let store = Arc::new(store);
    let k = key("concurrent-shared");
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        let k = k.clone();
        tasks.spawn(async move {
            for c in 0..COMMITS {
                let seq = t * COMMITS + c;
                // Each batch writes two records that must appear together.
                commit(
                    &*store,
                    &k,
                    vec![
                        put_publish(seq, seq as u16 + 1),
                        StoreOp::PushQueue {
                            seq,
                            message: queued(seq, QoS::AtLeastOnce, 8),
                        },
                    ],
                )
                .await?;
            }
            Ok::<(), StoreError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| Stop::Fail(format!("a committing task failed: {e}")))??;
    }
    drop(store);
    let store = f.reopen(&loc).await?;
    let loaded = store.load(&k).await?;
    let all: Vec<u64> = (0..TASKS * COMMITS).collect();
    ensure!(
        seqs(&loaded.outbound) == all && seqs(&loaded.queue) == all,
        "{} tasks committed {} batches to one session; {} outbound and {} queued records are \
         stored",
        TASKS,
        TASKS * COMMITS,
        loaded.outbound.len(),
        loaded.queue.len()
    );
    Ok(())
}

async fn damaged_record_is_an_error<F: StoreFactory>(f: &F, damage: Damage) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("damaged");
    commit(&store, &k, one_of_each()).await?;
    drop(store);
    if !f.damage(&loc, &k, damage).await? {
        return Err(Stop::Skip("the factory cannot damage a record".to_owned()));
    }
    // Refusing to open the store, or refusing to load the session, are both correct.
    let store = match f.reopen(&loc).await {
        Ok(store) => store,
        Err(_) => return Ok(()),
    };
    match store.load(&k).await {
        Err(StoreError::Corrupt {
            session, record, ..
        }) => {
            ensure!(
                session.contains("damaged") && !record.is_empty(),
                "the error names session {session:?} and record {record:?}, not the damaged one"
            );
            Ok(())
        }
        Err(_) => Ok(()),
        Ok(loaded) => Err(Stop::Fail(format!(
            "a session with a {damage:?} record loaded without error as {loaded:?}"
        ))),
    }
}

async fn a_flipped_bit_is_an_error<F: StoreFactory>(f: &F) -> CheckResultOf {
    damaged_record_is_an_error(f, Damage::FlipBit).await
}

async fn a_truncated_record_is_an_error<F: StoreFactory>(f: &F) -> CheckResultOf {
    damaged_record_is_an_error(f, Damage::Truncate).await
}

async fn a_zero_filled_record_is_an_error<F: StoreFactory>(f: &F) -> CheckResultOf {
    damaged_record_is_an_error(f, Damage::ZeroFill).await
}

async fn a_failed_commit_refuses_later_writes<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("poisoned");
    commit(&store, &k, vec![put_publish(1, 1)]).await?;
    if !f.fail_next_commit(&store) {
        return Err(Stop::Skip(
            "the factory cannot make a commit fail".to_owned(),
        ));
    }
    let failed: Vec<u64> = (10..20).collect();
    let result = commit(
        &store,
        &k,
        failed
            .iter()
            .map(|&seq| put_publish(seq, seq as u16))
            .collect(),
    )
    .await;
    ensure!(result.is_err(), "a commit armed to fail returned Ok");
    let later = commit(&store, &k, vec![put_publish(30, 30)]).await;
    ensure!(
        matches!(later, Err(StoreError::Poisoned { .. })),
        "the commit after a failed one returned {later:?}, not StoreError::Poisoned"
    );
    let cleared = store.clear(&k).await;
    ensure!(cleared.is_err(), "clear after a failed commit was accepted");
    drop(store);
    let store = f.reopen(&loc).await?;
    let after: Vec<u64> = std::iter::once(1).chain(failed.iter().copied()).collect();
    all_or_nothing(&store.load(&k).await?, &[1], &after)?;
    // The reopened store takes writes again.
    commit(&store, &k, vec![put_publish(40, 40)]).await?;
    let last = seqs(&store.load(&k).await?.outbound);
    ensure!(
        last.last() == Some(&40) && !last.contains(&30),
        "after reopening, the session holds {last:?}"
    );
    Ok(())
}

async fn subscriptions_are_kept_per_filter_replaced_and_removed<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("subscriptions");
    // Filters that begin one another, a wildcard, a shared one and one beyond ASCII.
    let filters = ["a", "a/#", "a/+", "ab", "$share/g/a", "usine/température"];
    let ops = filters
        .iter()
        .zip(1..)
        .map(|(filter, id)| StoreOp::PutSubscription(subscription(filter, id)))
        .collect();
    commit(&store, &k, ops).await?;
    commit(
        &store,
        &key("subscriptions-other"),
        vec![StoreOp::PutSubscription(subscription("a", 99))],
    )
    .await?;
    commit(
        &store,
        &k,
        vec![
            StoreOp::PutSubscription(subscription("a", 50)),
            StoreOp::RemoveSubscription {
                filter: "a/+".into(),
            },
            StoreOp::RemoveSubscription {
                filter: "never/subscribed".into(),
            },
        ],
    )
    .await?;
    let loaded = store.load(&k).await?;
    let mut expected = vec![
        subscription("a", 50),
        subscription("a/#", 2),
        subscription("ab", 4),
        subscription("$share/g/a", 5),
        subscription("usine/température", 6),
    ];
    expected.sort_by(|x, y| x.filter.as_bytes().cmp(y.filter.as_bytes()));
    ensure!(
        loaded.subscriptions == expected,
        "expected {expected:?}, loaded {:?}",
        loaded.subscriptions
    );
    let sessions = store.sessions().await?;
    ensure!(
        sessions.len() == 2,
        "two sessions hold subscriptions, listed {sessions:?}"
    );
    Ok(())
}
