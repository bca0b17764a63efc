//! The numbered batches of the store crash test, shared by the child that writes them and the
//! test that checks them.
//!
//! Batch `n` writes [`RECORDS_PER_BATCH`] outbound records with sequence numbers
//! `n * RECORDS_PER_BATCH ..`, one queued message with sequence number `n`, and metadata whose
//! `disconnected_at_ms` is `n`; it removes everything batch `n - WINDOW` wrote. So after batch
//! `m` the session holds exactly batches `m - WINDOW + 1 ..= m`, each whole.

use bytes::Bytes;
use mooring_core::store::{
    Batch, OutboundRecord, QueuedPublish, SessionKey, SessionMeta, StoreOp, StoredSession,
};

/// Outbound records per batch.
pub const RECORDS_PER_BATCH: u64 = 8;
/// How many batches the session keeps.
pub const WINDOW: u64 = 16;

/// The session the crash test writes.
pub fn session() -> SessionKey {
    SessionKey::new("mqtt://crash.test:1883", "crash-child")
}

fn record(n: u64, i: u64) -> Bytes {
    let mut bytes = n.to_be_bytes().to_vec();
    bytes.extend_from_slice(&i.to_be_bytes());
    bytes.resize(256, (n % 251) as u8);
    Bytes::from(bytes)
}

/// The operations of batch `n`.
pub fn batch(n: u64) -> Batch {
    let mut ops = Vec::new();
    for i in 0..RECORDS_PER_BATCH {
        ops.push(StoreOp::PutOutbound {
            seq: n * RECORDS_PER_BATCH + i,
            record: OutboundRecord::Publish(record(n, i)),
        });
    }
    ops.push(StoreOp::PushQueue {
        seq: n,
        message: QueuedPublish {
            qos: mooring_core::packet::QoS::ExactlyOnce,
            packet: record(n, u64::MAX),
            expires_at_ms: None,
            accepted_at_ms: None,
        },
    });
    if let Some(old) = n.checked_sub(WINDOW) {
        for i in 0..RECORDS_PER_BATCH {
            ops.push(StoreOp::RemoveOutbound {
                seq: old * RECORDS_PER_BATCH + i,
            });
        }
        ops.push(StoreOp::RemoveQueue { seq: old });
    }
    ops.push(StoreOp::SetMeta(SessionMeta {
        session_expiry_interval: u32::MAX,
        disconnected_at_ms: Some(n),
        assigned_client_id: None,
        alive_until_ms: None,
        protocol: mooring_core::packet::ProtocolVersion::V5,
        in_flight_limit: None,
        clock: Default::default(),
    }));
    Batch::from(ops)
}

/// The last batch wholly present in `session`, after checking that the session holds exactly
/// the batches `last - WINDOW + 1 ..= last`, each whole and unaltered. `None` when the session
/// is empty.
pub fn last_whole_batch(session: &StoredSession) -> Result<Option<u64>, String> {
    let Some(meta) = &session.meta else {
        if session.is_empty() {
            return Ok(None);
        }
        return Err(format!("records without metadata: {session:?}"));
    };
    let last = meta
        .disconnected_at_ms
        .ok_or("the metadata names no batch")?;
    let first = last.saturating_sub(WINDOW - 1);
    let want_outbound: Vec<(u64, OutboundRecord)> = (first..=last)
        .flat_map(|n| {
            (0..RECORDS_PER_BATCH).map(move |i| {
                (
                    n * RECORDS_PER_BATCH + i,
                    OutboundRecord::Publish(record(n, i)),
                )
            })
        })
        .collect();
    if session.outbound != want_outbound {
        let got: Vec<u64> = session.outbound.iter().map(|(s, _)| *s).collect();
        return Err(format!(
            "the metadata says batch {last} is the last, but the outbound records are {got:?}, \
             not batches {first}..={last} whole"
        ));
    }
    let queued: Vec<u64> = session.queue.iter().map(|(s, _)| *s).collect();
    if queued != (first..=last).collect::<Vec<_>>() {
        return Err(format!(
            "the queue holds {queued:?}, not batches {first}..={last}"
        ));
    }
    Ok(Some(last))
}
