//! Reading records back: keys into sessions and sections, values checked (version, checksum)
//! and decoded. Every failure is a [`StoreError::Corrupt`] naming the session and the record.

use bytes::Bytes;

use super::*;
use crate::packet::{ProtocolVersion, QoS};
use crate::store::{
    ClassQueue, ClockCorrection, LatestValue, OutboundRecord, QueueSummary, QueuedPublish, SeenKey,
    SessionClock, SessionKey, SessionMeta, SessionScope, StoreError, StoredSession,
    StoredSubscription,
};

/// Describes a raw key for error messages.
fn describe_key(raw: &[u8]) -> String {
    match split_key(raw) {
        Ok((_, rest)) => match rest {
            [SECTION_META] => "metadata".to_owned(),
            [SECTION_OUTBOUND, n @ ..] => format!("outbound #{}", be_number(n)),
            [SECTION_INBOUND, n @ ..] => format!("inbound marker for packet {}", be_number(n)),
            [SECTION_QUEUE, n @ ..] => format!("queued message #{}", be_number(n)),
            [SECTION_SUBSCRIPTION, f @ ..] => {
                format!("subscription {:?}", String::from_utf8_lossy(f))
            }
            [SECTION_TOTALS] => "queue totals".to_owned(),
            [SECTION_SEEN, n @ ..] => format!("seen key #{}", be_number(n)),
            [SECTION_CLASS_QUEUE, class, n @ ..] => {
                format!("queued message #{} of class {class}", be_number(n))
            }
            [SECTION_LATEST, t @ ..] => {
                format!("latest value of {:?}", String::from_utf8_lossy(t))
            }
            _ => format!("key {}", hex(raw)),
        },
        Err(_) => format!("key {}", hex(raw)),
    }
}

fn be_number(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a length-prefixed string from the front of `input`.
fn take_str(input: &[u8]) -> Option<(String, &[u8])> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    if rest.len() < len {
        return None;
    }
    let (text, rest) = rest.split_at(len);
    Some((String::from_utf8(text.to_vec()).ok()?, rest))
}

fn split_key(raw: &[u8]) -> Result<(SessionKey, &[u8]), String> {
    let (&kind, rest) = raw.split_first().ok_or("empty key")?;
    let (scope, rest) = take_str(rest).ok_or("the scope is cut short or not UTF-8")?;
    let (client_id, rest) = take_str(rest).ok_or("the client identifier is cut short")?;
    let scope = match kind {
        1 => SessionScope::Server(scope),
        2 => SessionScope::Cluster(scope),
        other => return Err(format!("unknown scope kind {other}")),
    };
    Ok((SessionKey::from_parts(scope, client_id), rest))
}

/// The session a raw key belongs to.
pub fn session_of_key(raw: &[u8]) -> Result<SessionKey, StoreError> {
    split_key(raw)
        .map(|(key, _)| key)
        .map_err(|reason| StoreError::Corrupt {
            session: "(unreadable)".to_owned(),
            record: describe_key(raw),
            reason,
        })
}

/// Checks a value's version and checksum and returns its kind and body.
fn open_value<'v>(
    session: &SessionKey,
    key: &[u8],
    value: &'v [u8],
) -> Result<(u8, &'v [u8]), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        session: session.to_string(),
        record: describe_key(key),
        reason,
    };
    let (&version, _) = value
        .split_first()
        .ok_or_else(|| corrupt("the value is empty".to_owned()))?;
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "record format version {version}; this version of Mooring reads version {FORMAT_VERSION}"
        )));
    }
    let (content, crc) = value
        .split_last_chunk::<4>()
        .filter(|(content, _)| content.len() >= 2)
        .ok_or_else(|| corrupt(format!("the value is cut short ({} bytes)", value.len())))?;
    if crc32(&[key, content]) != u32::from_be_bytes(*crc) {
        return Err(corrupt("the checksum does not match".to_owned()));
    }
    match content {
        [_, kind, body @ ..] => Ok((*kind, body)),
        _ => Err(corrupt("the value is cut short".to_owned())),
    }
}

fn decode_meta_body(body: &[u8]) -> Option<SessionMeta> {
    let (expiry, rest) = body.split_first_chunk::<4>()?;
    let (&has_ended, rest) = rest.split_first()?;
    let (disconnected_at_ms, rest) = match has_ended {
        0 => (None, rest),
        1 => {
            let (ms, rest) = rest.split_first_chunk::<8>()?;
            (Some(u64::from_be_bytes(*ms)), rest)
        }
        _ => return None,
    };
    let (&has_assigned, rest) = rest.split_first()?;
    let (assigned_client_id, rest) = match has_assigned {
        0 => (None, rest),
        1 => {
            let (id, rest) = take_str(rest)?;
            (Some(id), rest)
        }
        _ => return None,
    };
    let level = |level: u8| {
        [ProtocolVersion::V5, ProtocolVersion::V311]
            .into_iter()
            .find(|p| p.level() == level)
    };
    let sentinel = |ms: u64| Some(ms).filter(|ms| *ms != u64::MAX);
    let (alive_until_ms, protocol, in_flight_limit, clock) = match rest {
        [] => (None, ProtocolVersion::V5, None, SessionClock::default()),
        _ => {
            let (alive, rest) = rest.split_first_chunk::<8>()?;
            let alive = sentinel(u64::from_be_bytes(*alive));
            match rest {
                [] => (alive, ProtocolVersion::V5, None, SessionClock::default()),
                [l] if *l == ProtocolVersion::V311.level() => {
                    (alive, ProtocolVersion::V311, None, SessionClock::default())
                }
                [l, hi, lo, clock @ ..] => {
                    let limit = Some(u16::from_be_bytes([*hi, *lo])).filter(|l| *l != 0);
                    let clock = match clock {
                        [] => SessionClock::default(),
                        _ => decode_clock(clock)?,
                    };
                    (alive, level(*l)?, limit, clock)
                }
                _ => return None,
            }
        }
    };
    Some(SessionMeta {
        session_expiry_interval: u32::from_be_bytes(*expiry),
        disconnected_at_ms,
        assigned_client_id,
        alive_until_ms,
        protocol,
        in_flight_limit,
        clock,
    })
}

fn decode_clock(body: &[u8]) -> Option<SessionClock> {
    let (stamped, rest) = body.split_first_chunk::<8>()?;
    let (untrusted, rest) = rest.split_first_chunk::<8>()?;
    let (&count, mut rest) = rest.split_first()?;
    let mut corrections = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (from, after) = rest.split_first_chunk::<8>()?;
        let (to, after) = after.split_first_chunk::<8>()?;
        let (shift, after) = after.split_first_chunk::<8>()?;
        corrections.push(ClockCorrection {
            from_seq: u64::from_be_bytes(*from),
            to_seq: u64::from_be_bytes(*to),
            shift_ms: i64::from_be_bytes(*shift),
        });
        rest = after;
    }
    if !rest.is_empty() {
        return None;
    }
    let sentinel = |ms: u64| Some(ms).filter(|ms| *ms != u64::MAX);
    Some(SessionClock {
        stamped_ms: sentinel(u64::from_be_bytes(*stamped)),
        untrusted_since: sentinel(u64::from_be_bytes(*untrusted)),
        corrections,
    })
}

/// Decodes a metadata value stored under `meta_key(session)`.
pub fn decode_meta(session: &SessionKey, value: &[u8]) -> Result<SessionMeta, StoreError> {
    let key = meta_key(session);
    let bad = |reason: &str| StoreError::Corrupt {
        session: session.to_string(),
        record: "metadata".to_owned(),
        reason: reason.to_owned(),
    };
    match open_value(session, &key, value)? {
        (KIND_META, body) => decode_meta_body(body).ok_or_else(|| bad("the body is malformed")),
        (other, _) => Err(bad(&format!("kind {other} where metadata belongs"))),
    }
}

/// A queued message's body after its QoS: acceptance time, deadline, packet.
type QueuedParts<'a> = (Option<u64>, Option<u64>, &'a [u8]);

/// A queued message's body split into its acceptance time, deadline and packet.
fn split_queued(kind: u8, rest: &[u8]) -> Result<QueuedParts<'_>, String> {
    let time = |bytes: &[u8], what: &str| -> Result<(u64, usize), String> {
        bytes
            .first_chunk::<8>()
            .map(|at| (u64::from_be_bytes(*at), 8))
            .ok_or_else(|| format!("a queued message holds no {what}"))
    };
    match kind {
        KIND_QUEUED => Ok((None, None, rest)),
        KIND_QUEUED_EXPIRING => {
            let (at, n) = time(rest, "deadline")?;
            Ok((None, Some(at), rest.get(n..).unwrap_or_default()))
        }
        KIND_QUEUED_AT => {
            let (accepted, n) = time(rest, "acceptance time")?;
            let rest = rest.get(n..).unwrap_or_default();
            match rest.split_first() {
                Some((0, packet)) => Ok((Some(accepted), None, packet)),
                Some((1, rest)) => {
                    let (at, n) = time(rest, "deadline")?;
                    Ok((Some(accepted), Some(at), rest.get(n..).unwrap_or_default()))
                }
                _ => Err("a queued message's deadline flag is neither 0 nor 1".to_owned()),
            }
        }
        other => Err(format!("kind {other} is not a queued message")),
    }
}

fn queued_from_body(kind: u8, body: &[u8]) -> Result<QueuedPublish, String> {
    let (&qos, rest) = body.split_first().ok_or("a queued message holds no QoS")?;
    let qos = QoS::from_u8(qos).ok_or_else(|| format!("a queued message has QoS {qos}"))?;
    let (accepted_at_ms, expires_at_ms, packet) = split_queued(kind, rest)?;
    Ok(QueuedPublish {
        qos,
        packet: Bytes::copy_from_slice(packet),
        expires_at_ms,
        accepted_at_ms,
    })
}

/// Decodes one queued message of `session`: its sequence number and the message.
pub fn decode_queued(
    session: &SessionKey,
    key: &[u8],
    value: &[u8],
) -> Result<(u64, QueuedPublish), StoreError> {
    let bad = |reason: String| StoreError::Corrupt {
        session: session.to_string(),
        record: describe_key(key),
        reason,
    };
    let Some([SECTION_QUEUE, seq @ ..]) = strip_session_prefix(session, key) else {
        return Err(bad("not a queued message of this session".to_owned()));
    };
    if seq.len() != 8 {
        return Err(bad("not a queued message of this session".to_owned()));
    }
    match open_value(session, key, value)? {
        (kind @ (KIND_QUEUED | KIND_QUEUED_EXPIRING | KIND_QUEUED_AT), body) => {
            Ok((be_number(seq), queued_from_body(kind, body).map_err(bad)?))
        }
        (kind, _) => Err(bad(format!("kind {kind:?} does not belong under this key"))),
    }
}

/// The length of the packet a queued message's value holds, checked as [`decode_queued`]
/// checks it, without copying it.
pub fn queued_packet_len(
    session: &SessionKey,
    key: &[u8],
    value: &[u8],
) -> Result<usize, StoreError> {
    let bad = |reason: &str| StoreError::Corrupt {
        session: session.to_string(),
        record: describe_key(key),
        reason: reason.to_owned(),
    };
    match open_value(session, key, value)? {
        (kind, [_qos, rest @ ..]) => split_queued(kind, rest)
            .map(|(_, _, packet)| packet.len())
            .map_err(|why| bad(&why)),
        _ => Err(bad("not a queued message")),
    }
}

/// The sequence number of a queued message's key, if `raw` is one of `session`'s.
pub fn queued_seq_of_key(session: &SessionKey, raw: &[u8]) -> Option<u64> {
    match strip_session_prefix(session, raw)? {
        [SECTION_QUEUE, seq @ ..] if seq.len() == 8 => Some(be_number(seq)),
        _ => None,
    }
}

/// Decodes the queue totals stored under [`queue_totals_key`]`(session)`: the number of queued
/// messages and the bytes of their packets.
pub fn decode_queue_totals(session: &SessionKey, value: &[u8]) -> Result<(u64, u64), StoreError> {
    let key = queue_totals_key(session);
    let bad = |reason: String| StoreError::Corrupt {
        session: session.to_string(),
        record: "queue totals".to_owned(),
        reason,
    };
    match open_value(session, &key, value)? {
        (KIND_TOTALS, body) => match body.split_first_chunk::<8>() {
            Some((messages, bytes)) => match <[u8; 8]>::try_from(bytes) {
                Ok(bytes) => Ok((u64::from_be_bytes(*messages), u64::from_be_bytes(bytes))),
                Err(_) => Err(bad(format!("a body of {} bytes, not 16", body.len()))),
            },
            None => Err(bad(format!("a body of {} bytes, not 16", body.len()))),
        },
        (other, _) => Err(bad(format!("kind {other} where queue totals belong"))),
    }
}

/// One record of a session, decoded: what a key-value entry holds, in the contract's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The session's metadata.
    Meta(SessionMeta),
    /// An outbound flow under its sequence number.
    Outbound(u64, OutboundRecord),
    /// A PUBREC-sent marker for an inbound QoS 2 packet identifier.
    Inbound(u16),
    /// A queued message under its sequence number.
    Queued(u64, QueuedPublish),
    /// A subscription kept with the session.
    Subscription(StoredSubscription),
    /// The queue's totals: the number of queued messages and the bytes of their packets.
    QueueTotals(u64, u64),
    /// The idempotency key of a handled message, under its number.
    SeenKey(u64, SeenKey),
    /// The queued message holding a latest-value topic's value.
    LatestValue(LatestValue),
    /// A message of a priority class's queue: the class, its sequence number, the message.
    ClassQueued(u8, u64, QueuedPublish),
}

/// Decodes one entry of a key-value store: the session its key belongs to and the record its
/// value holds, with the value's format version and checksum checked.
pub fn decode_record(key: &[u8], value: &[u8]) -> Result<(SessionKey, Record), StoreError> {
    let session = session_of_key(key)?;
    let record = decode_entry(&session, key, value)?;
    Ok((session, record))
}

fn decode_entry(session: &SessionKey, key: &[u8], value: &[u8]) -> Result<Record, StoreError> {
    let bad = |reason: String| StoreError::Corrupt {
        session: session.to_string(),
        record: describe_key(key),
        reason,
    };
    let rest = strip_session_prefix(session, key)
        .ok_or_else(|| bad("the key belongs to another session".to_owned()))?;
    let (kind, body) = open_value(session, key, value)?;
    Ok(match (rest, kind) {
        ([SECTION_META], KIND_META) => Record::Meta(
            decode_meta_body(body)
                .ok_or_else(|| bad("the metadata body is malformed".to_owned()))?,
        ),
        ([SECTION_OUTBOUND, seq @ ..], KIND_PUBLISH) if seq.len() == 8 => Record::Outbound(
            be_number(seq),
            OutboundRecord::Publish(Bytes::copy_from_slice(body)),
        ),
        ([SECTION_OUTBOUND, seq @ ..], KIND_PUBREL) if seq.len() == 8 => {
            let id = body
                .try_into()
                .map(u16::from_be_bytes)
                .map_err(|_| bad("a PUBREL record holds no packet identifier".to_owned()))?;
            Record::Outbound(be_number(seq), OutboundRecord::PubRel { packet_id: id })
        }
        // Two bytes, so the number fits in a u16.
        ([SECTION_INBOUND, id @ ..], KIND_INBOUND) if id.len() == 2 && body.is_empty() => {
            Record::Inbound(be_number(id) as u16)
        }
        ([SECTION_QUEUE, seq @ ..], KIND_QUEUED | KIND_QUEUED_EXPIRING | KIND_QUEUED_AT)
            if seq.len() == 8 =>
        {
            Record::Queued(be_number(seq), queued_from_body(kind, body).map_err(bad)?)
        }
        ([SECTION_SUBSCRIPTION, filter @ ..], KIND_SUBSCRIPTION) => {
            let filter = std::str::from_utf8(filter)
                .map_err(|_| bad("a subscription's filter is not UTF-8".to_owned()))?;
            Record::Subscription(StoredSubscription {
                filter: filter.to_owned(),
                packet: Bytes::copy_from_slice(body),
            })
        }
        ([SECTION_TOTALS], KIND_TOTALS) => {
            let totals = decode_queue_totals(session, value)?;
            Record::QueueTotals(totals.0, totals.1)
        }
        ([SECTION_SEEN, seq @ ..], KIND_SEEN) if seq.len() == 8 => {
            let (at, key) = body
                .split_first_chunk::<8>()
                .ok_or_else(|| bad("a seen key holds no time".to_owned()))?;
            let key =
                std::str::from_utf8(key).map_err(|_| bad("a seen key is not UTF-8".to_owned()))?;
            Record::SeenKey(
                be_number(seq),
                SeenKey {
                    key: key.to_owned(),
                    seen_at_ms: u64::from_be_bytes(*at),
                },
            )
        }
        ([SECTION_LATEST, topic @ ..], KIND_LATEST) => {
            let topic = std::str::from_utf8(topic)
                .map_err(|_| bad("a latest-value topic is not UTF-8".to_owned()))?;
            let (seq, rest) = body
                .split_first_chunk::<8>()
                .ok_or_else(|| bad("a latest-value record holds no sequence number".to_owned()))?;
            let (len, class) = rest
                .split_first_chunk::<8>()
                .and_then(|(len, class)| match class {
                    [class] => Some((len, *class)),
                    _ => None,
                })
                .ok_or_else(|| bad("a latest-value record is not its three numbers".to_owned()))?;
            Record::LatestValue(LatestValue {
                topic: topic.to_owned(),
                seq: u64::from_be_bytes(*seq),
                len: u64::from_be_bytes(*len),
                class,
            })
        }
        (
            [SECTION_CLASS_QUEUE, class, seq @ ..],
            KIND_QUEUED | KIND_QUEUED_EXPIRING | KIND_QUEUED_AT,
        ) if seq.len() == 8 && *class > 0 => Record::ClassQueued(
            *class,
            be_number(seq),
            queued_from_body(kind, body).map_err(bad)?,
        ),
        _ => return Err(bad(format!("kind {kind:?} does not belong under this key"))),
    })
}

/// Rebuilds a session from its entries: key-value pairs under `session_prefix(session)`, in
/// ascending key order (all of them, or the sections a caller read). The queue totals record,
/// if given, is checked and otherwise skipped: `queue_summary` describes the queue records
/// given.
pub fn decode_session<K, V>(
    session: &SessionKey,
    entries: impl IntoIterator<Item = (K, V)>,
) -> Result<StoredSession, StoreError>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut out = StoredSession::default();
    for (key, value) in entries {
        match decode_entry(session, key.as_ref(), value.as_ref())? {
            Record::Meta(meta) => out.meta = Some(meta),
            Record::Outbound(seq, record) => out.outbound.push((seq, record)),
            Record::Inbound(packet_id) => out.inbound.push(packet_id),
            Record::Queued(seq, message) => out.queue.push((seq, message)),
            Record::Subscription(subscription) => out.subscriptions.push(subscription),
            Record::SeenKey(seq, seen) => out.seen_keys.push((seq, seen)),
            Record::LatestValue(latest) => out.latest_values.push(latest),
            Record::ClassQueued(class, seq, message) => {
                match out.class_queues.last_mut().filter(|q| q.class == class) {
                    Some(queue) => queue.queue.push((seq, message)),
                    None => out.class_queues.push(ClassQueue {
                        class,
                        queue: vec![(seq, message)],
                        summary: QueueSummary::default(),
                    }),
                }
            }
            // The totals describe the queue; a caller that holds the queue needs none.
            Record::QueueTotals(..) => {}
        }
    }
    out.queue_summary = crate::store::QueueSummary::of(&out.queue);
    for class in &mut out.class_queues {
        class.summary = QueueSummary::of(&class.queue);
    }
    Ok(out)
}
