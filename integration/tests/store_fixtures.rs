//! Stores written by format version 1 are committed under `fixtures/v1/`; this test opens
//! copies of them and checks every record. A change that can no longer read a store written by
//! an earlier version fails here.
//!
//! To write the fixtures anew (only when the format version changes, into a new folder):
//! `MOORING_WRITE_FIXTURES=1 cargo test -p integration --test store_fixtures`.

// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use mooring_core::packet::{Codec, Packet, ProtocolVersion, Publish, QoS, UserProperty};
use mooring_core::store::{
    Batch, OutboundRecord, QueueSummary, QueuedPublish, SessionKey, SessionMeta, SessionStore,
    StoreOp, StoredSession,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1")
}

fn publish(qos: QoS, packet_id: u16, topic: &str, payload: &'static [u8]) -> Bytes {
    let mut p = Publish::new(topic, Bytes::from_static(payload));
    p.qos = qos;
    p.packet_id = packet_id;
    p.properties.message_expiry_interval = Some(600);
    p.properties
        .user_properties
        .push(UserProperty::new("site", "7"));
    let mut buf = BytesMut::new();
    Codec::default()
        .encode(&Packet::Publish(p), &mut buf)
        .unwrap();
    buf.freeze()
}

/// The sessions in the fixture, with what each must hold.
fn sessions() -> Vec<(SessionKey, StoredSession)> {
    vec![
        (
            SessionKey::new("mqtts://broker.example:8883", "gateway-7"),
            StoredSession {
                meta: Some(SessionMeta {
                    session_expiry_interval: 86_400,
                    disconnected_at_ms: Some(1_764_000_000_000),
                    assigned_client_id: None,
                    // Written before the alive-until time existed.
                    alive_until_ms: None,
                    // And before 3.1.1 sessions: a record without the protocol is v5.
                    protocol: ProtocolVersion::V5,
                    in_flight_limit: None,
                    clock: Default::default(),
                }),
                outbound: vec![
                    (
                        40,
                        OutboundRecord::Publish(publish(
                            QoS::ExactlyOnce,
                            65_535,
                            "site/7/a",
                            b"x",
                        )),
                    ),
                    (41, OutboundRecord::PubRel { packet_id: 3 }),
                    (
                        42,
                        OutboundRecord::Publish(publish(QoS::AtLeastOnce, 1, "site/7/b", b"")),
                    ),
                ],
                inbound: vec![9, 65_000],
                queue: vec![
                    (
                        43,
                        QueuedPublish {
                            qos: QoS::ExactlyOnce,
                            packet: publish(QoS::AtMostOnce, 0, "site/7/q", b"queued"),
                            expires_at_ms: None,
                            accepted_at_ms: None,
                        },
                    ),
                    (
                        44,
                        QueuedPublish {
                            qos: QoS::AtMostOnce,
                            packet: publish(QoS::AtMostOnce, 0, "site/7/q", b"second"),
                            expires_at_ms: None,
                            accepted_at_ms: None,
                        },
                    ),
                ],
                // Written before subscriptions were kept, and before the queue totals record:
                // the store counts the queue on first use.
                subscriptions: vec![],
                queue_summary: QueueSummary::default(),
                // And before idempotency keys were kept.
                seen_keys: vec![],
                latest_values: vec![],
                class_queues: vec![],
            },
        ),
        (
            SessionKey::cluster("plant-cluster", ""),
            StoredSession {
                meta: Some(SessionMeta {
                    session_expiry_interval: u32::MAX,
                    disconnected_at_ms: None,
                    assigned_client_id: Some("auto-1f".into()),
                    alive_until_ms: None,
                    protocol: ProtocolVersion::V5,
                    in_flight_limit: None,
                    clock: Default::default(),
                }),
                outbound: vec![],
                inbound: vec![1],
                queue: vec![],
                subscriptions: vec![],
                queue_summary: QueueSummary::default(),
                seen_keys: vec![],
                latest_values: vec![],
                class_queues: vec![],
            },
        ),
    ]
    .into_iter()
    .map(|(key, mut session)| {
        session.queue_summary = QueueSummary::of(&session.queue);
        (key, session)
    })
    .collect()
}

fn ops_for(session: &StoredSession) -> Batch {
    let mut ops = Vec::new();
    if let Some(meta) = &session.meta {
        ops.push(StoreOp::SetMeta(meta.clone()));
    }
    for (seq, record) in &session.outbound {
        ops.push(StoreOp::PutOutbound {
            seq: *seq,
            record: record.clone(),
        });
    }
    for id in &session.inbound {
        ops.push(StoreOp::PutInbound { packet_id: *id });
    }
    for (seq, message) in &session.queue {
        ops.push(StoreOp::PushQueue {
            seq: *seq,
            message: message.clone(),
        });
    }
    Batch::from(ops)
}

async fn write_or_check(store: impl SessionStore, write: bool) {
    for (key, want) in sessions() {
        if write {
            store.commit(&key, ops_for(&want)).await.unwrap();
        }
        let got = store.load(&key).await.unwrap();
        assert_eq!(got, want, "session {key}");
    }
    let mut listed = store.sessions().await.unwrap();
    listed.sort();
    let mut want: Vec<SessionKey> = sessions().into_iter().map(|(k, _)| k).collect();
    want.sort();
    assert_eq!(listed, want);
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

/// The path to open: the committed fixture when writing it, a copy of it when checking.
fn prepare(name: &str, scratch: &Path) -> (PathBuf, bool) {
    let fixture = fixtures().join(name);
    if std::env::var_os("MOORING_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(fixtures()).unwrap();
        assert!(
            !fixture.exists(),
            "{} exists: remove it first",
            fixture.display()
        );
        return (fixture, true);
    }
    assert!(
        fixture.exists(),
        "the fixture {} is missing",
        fixture.display()
    );
    let copy = scratch.join(name);
    copy_tree(&fixture, &copy);
    (copy, false)
}

#[tokio::test]
async fn a_redb_store_written_by_format_1_opens_and_reads() {
    let scratch = tempfile::tempdir().unwrap();
    let (path, write) = prepare("session.redb", scratch.path());
    write_or_check(mooring_store_redb::RedbStore::open(path).unwrap(), write).await;
}

#[tokio::test]
async fn a_sled_store_written_by_format_1_opens_and_reads() {
    let scratch = tempfile::tempdir().unwrap();
    let (path, write) = prepare("session.sled", scratch.path());
    write_or_check(mooring_store_sled::SledStore::open(path).unwrap(), write).await;
}
