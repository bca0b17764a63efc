//! How sessions map onto an ordered key-value store: byte keys whose order is the contract's
//! order, and versioned, checksummed values.
//!
//! # Keys
//!
//! ```text
//! session prefix = scope kind (1: server, 2: cluster) | u32 length | scope
//!                | u32 length | client identifier
//! meta           = prefix | 0x00
//! outbound       = prefix | 0x01 | sequence number (u64, big-endian)
//! inbound        = prefix | 0x02 | packet identifier (u16, big-endian)
//! queue          = prefix | 0x03 | sequence number (u64, big-endian)
//! subscription   = prefix | 0x04 | Topic Filter (UTF-8, to the end of the key)
//! queue totals   = prefix | 0x05
//! seen key       = prefix | 0x06 | number (u64, big-endian)
//! latest value   = prefix | 0x07 | topic (UTF-8, to the end of the key)
//! class queue    = prefix | 0x08 | priority class (u8, 1 to 255) | sequence number (u64)
//! ```
//!
//! Lengths make the prefix unambiguous: no session's prefix is the start of another's, so a
//! prefix scan never strays into a neighbour (`"a"` and `"ab"`, `"h:1"` and `"h:18"`), and a
//! server and a cluster of the same name stay apart. Big-endian numbers sort as numbers.
//!
//! # Values
//!
//! ```text
//! format version (1) | kind | body | CRC-32 of (key, version, kind, body), big-endian
//! ```
//!
//! Kinds: `M` metadata (expiry interval, when the connection ended, assigned identifier, and
//! optionally, in records written since the first fixtures, the alive-until time), `P`
//! outbound PUBLISH (body: the packet in MQTT wire format), `R` PUBREL pending (body: packet
//! identifier), `I` PUBREC sent (empty body), `Q` queued message (body: QoS, then the packet in
//! wire format), `E` queued message with a Message Expiry Interval (body: QoS, the deadline in
//! milliseconds since the UNIX epoch as u64, then the packet; a new kind like `S`), `A` queued
//! message with the time it was accepted (body: QoS, the acceptance time in milliseconds since
//! the UNIX epoch as u64, 0 or 1, the deadline as u64 when 1, then the packet; written since
//! `mooring store list` shows a queue's age, a new kind in the same format version: `Q` and
//! `E` records still read, without the time), `S`
//! subscription (body: a SUBSCRIBE in wire format; added in Mooring 0.1 after the first
//! fixtures, a new kind in the same format version, so older stores open unchanged), `T` queue
//! totals (body: the number of queued messages and the sum of their packets' lengths, two u64;
//! added with the windowed queue, in the same format version: a store without it has its totals
//! counted once, when first needed), `K` the idempotency key of a message the application
//! handled (body: when, in milliseconds since the UNIX epoch as u64, then the key in UTF-8;
//! added with effectively-once delivery over QoS 1, in the same format version), `L` the
//! queued message holding the value kept of a latest-value topic (body: its sequence number
//! and its packet's length, two u64, then its priority class, u8; added with latest-value
//! compaction, in the same format version). A class queue's records are the offline queue's
//! kinds (`Q`, `E`, `A`) under their own section, added with priority classes in the same
//! format version: a store without classes has no such key. The checksum covers the key, so a value that is damaged,
//! truncated, zero-filled or moved to another key is detected, never returned.

use super::{
    Batch, OutboundRecord, QueuedPublish, SessionClock, SessionKey, SessionMeta, SessionScope,
    StoreOp,
};
use crate::packet::ProtocolVersion;

mod decode;

pub use decode::{
    Record, decode_meta, decode_queue_totals, decode_queued, decode_record, decode_session,
    queued_packet_len, queued_seq_of_key, session_of_key,
};

/// The record format this version of Mooring writes and reads.
pub const FORMAT_VERSION: u8 = 1;

const SECTION_META: u8 = 0x00;
const SECTION_OUTBOUND: u8 = 0x01;
const SECTION_INBOUND: u8 = 0x02;
const SECTION_QUEUE: u8 = 0x03;
const SECTION_SUBSCRIPTION: u8 = 0x04;
const SECTION_TOTALS: u8 = 0x05;
const SECTION_SEEN: u8 = 0x06;
const SECTION_LATEST: u8 = 0x07;
const SECTION_CLASS_QUEUE: u8 = 0x08;

const KIND_META: u8 = b'M';
const KIND_PUBLISH: u8 = b'P';
const KIND_PUBREL: u8 = b'R';
const KIND_INBOUND: u8 = b'I';
const KIND_QUEUED: u8 = b'Q';
const KIND_SUBSCRIPTION: u8 = b'S';
const KIND_QUEUED_EXPIRING: u8 = b'E';
const KIND_QUEUED_AT: u8 = b'A';
const KIND_TOTALS: u8 = b'T';
const KIND_SEEN: u8 = b'K';
const KIND_LATEST: u8 = b'L';

/// A queued message's value, under `k` (the offline queue's key or a class queue's).
fn queued_value(k: &[u8], message: &QueuedPublish) -> Vec<u8> {
    let qos = [message.qos as u8];
    match (message.accepted_at_ms, message.expires_at_ms) {
        (Some(accepted), expiry) => {
            let (flag, at) = match expiry {
                Some(at) => ([1u8], at.to_be_bytes()),
                None => ([0u8], [0u8; 8]),
            };
            let at: &[u8] = if expiry.is_some() { &at } else { &[] };
            value(
                k,
                KIND_QUEUED_AT,
                &[&qos, &accepted.to_be_bytes(), &flag, at, &message.packet],
            )
        }
        (None, None) => value(k, KIND_QUEUED, &[&qos, &message.packet]),
        (None, Some(at)) => value(
            k,
            KIND_QUEUED_EXPIRING,
            &[&qos, &at.to_be_bytes(), &message.packet],
        ),
    }
}

/// One write of a batch, in key-value terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    /// Store `value` under `key`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`, if present.
    Delete(Vec<u8>),
}

impl KvWrite {
    /// The key written.
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Put(key, _) | Self::Delete(key) => key,
        }
    }
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    // Lengths above u32::MAX cannot occur for strings held in memory on 32-bit targets, and on
    // 64-bit targets a 4 GiB server name is not a session key anyone builds; saturate.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// The prefix every key of `key`'s session starts with.
pub fn session_prefix(key: &SessionKey) -> Vec<u8> {
    prefix_with_room(key, 0)
}

/// A key above every key of every session in `key`'s scope (server or cluster), and below
/// those of the scopes after it: a client identifier's length, four bytes big-endian, never
/// starts with 0xFF.
pub fn scope_upper_bound(key: &SessionKey) -> Vec<u8> {
    let (tag, scope) = scope_parts(key);
    let mut bound = Vec::with_capacity(1 + 4 + scope.len() + 1);
    bound.push(tag);
    put_str(&mut bound, scope);
    bound.push(0xFF);
    bound
}

/// The session's tag byte and scope text, the first two parts of its prefix.
fn scope_parts(key: &SessionKey) -> (u8, &str) {
    match key.scope() {
        SessionScope::Server(server) => (1, server),
        SessionScope::Cluster(scope) => (2, scope),
    }
}

/// [`session_prefix`] with `room` more bytes reserved: every key is the prefix and a little
/// more, and growing the buffer for it would copy it (once per record written).
fn prefix_with_room(key: &SessionKey, room: usize) -> Vec<u8> {
    let (tag, scope) = scope_parts(key);
    let mut out = Vec::with_capacity(1 + 4 + scope.len() + 4 + key.client_id().len() + room);
    out.push(tag);
    put_str(&mut out, scope);
    put_str(&mut out, key.client_id());
    out
}

/// What follows the prefix of `key`'s session in `raw`, if `raw` starts with it: checked in
/// place, since each record read is checked.
pub(crate) fn strip_session_prefix<'a>(key: &SessionKey, raw: &'a [u8]) -> Option<&'a [u8]> {
    let (tag, scope) = scope_parts(key);
    let rest = raw.strip_prefix(&[tag])?;
    strip_str(strip_str(rest, scope)?, key.client_id())
}

/// `raw` past `text` as [`put_str`] writes it, if it starts so.
fn strip_str<'a>(raw: &'a [u8], text: &str) -> Option<&'a [u8]> {
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    raw.strip_prefix(len.to_be_bytes().as_slice())?
        .strip_prefix(text.as_bytes())
}

/// A key above every key of the session whose prefix is `prefix`, and below every key of the
/// sessions that sort after it.
pub fn session_upper_bound(prefix: &[u8]) -> Vec<u8> {
    let mut bound = prefix.to_vec();
    bound.push(0xFF);
    bound
}

/// The key of the session's metadata.
pub fn meta_key(key: &SessionKey) -> Vec<u8> {
    let mut k = prefix_with_room(key, 1);
    k.push(SECTION_META);
    k
}

fn numbered_key(key: &SessionKey, section: u8, number: &[u8]) -> Vec<u8> {
    let mut k = prefix_with_room(key, 1 + number.len());
    k.push(section);
    k.extend_from_slice(number);
    k
}

/// The key of an outbound record.
pub fn outbound_key(key: &SessionKey, seq: u64) -> Vec<u8> {
    numbered_key(key, SECTION_OUTBOUND, &seq.to_be_bytes())
}

/// The key of a subscription.
pub fn subscription_key(key: &SessionKey, filter: &str) -> Vec<u8> {
    numbered_key(key, SECTION_SUBSCRIPTION, filter.as_bytes())
}

/// The key of an inbound PUBREC marker.
pub fn inbound_key(key: &SessionKey, packet_id: u16) -> Vec<u8> {
    numbered_key(key, SECTION_INBOUND, &packet_id.to_be_bytes())
}

/// The key of a queued message.
pub fn queue_key(key: &SessionKey, seq: u64) -> Vec<u8> {
    numbered_key(key, SECTION_QUEUE, &seq.to_be_bytes())
}

/// The key of an idempotency key the session keeps.
pub fn seen_key_key(key: &SessionKey, seq: u64) -> Vec<u8> {
    numbered_key(key, SECTION_SEEN, &seq.to_be_bytes())
}

/// The key range `[start, end)` of the session's idempotency keys.
pub fn seen_keys_range(key: &SessionKey) -> (Vec<u8>, Vec<u8>) {
    (
        numbered_key(key, SECTION_SEEN, &[]),
        numbered_key(key, SECTION_SEEN + 1, &[]),
    )
}

/// The key of a latest-value topic's record.
pub fn latest_value_key(key: &SessionKey, topic: &str) -> Vec<u8> {
    numbered_key(key, SECTION_LATEST, topic.as_bytes())
}

/// The key range `[start, end)` of the session's latest-value records.
pub fn latest_values_range(key: &SessionKey) -> (Vec<u8>, Vec<u8>) {
    (
        numbered_key(key, SECTION_LATEST, &[]),
        numbered_key(key, SECTION_LATEST + 1, &[]),
    )
}

/// The key of a message in the queue of priority class `class`.
pub fn class_queue_key(key: &SessionKey, class: u8, seq: u64) -> Vec<u8> {
    let mut number = [0u8; 9];
    number[0] = class;
    number[1..].copy_from_slice(&seq.to_be_bytes());
    numbered_key(key, SECTION_CLASS_QUEUE, &number)
}

/// The key range `[start, end)` of the queue of priority class `class` from `from` on.
pub fn class_queue_range(key: &SessionKey, class: u8, from: u64) -> (Vec<u8>, Vec<u8>) {
    let end = match class.checked_add(1) {
        Some(next) => numbered_key(key, SECTION_CLASS_QUEUE, &[next]),
        None => numbered_key(key, SECTION_CLASS_QUEUE + 1, &[]),
    };
    (class_queue_key(key, class, from), end)
}

/// The key range `[start, end)` of every class queue of the session.
pub fn class_queues_range(key: &SessionKey) -> (Vec<u8>, Vec<u8>) {
    (
        numbered_key(key, SECTION_CLASS_QUEUE, &[]),
        numbered_key(key, SECTION_CLASS_QUEUE + 1, &[]),
    )
}

/// The key of the session's queue totals.
pub fn queue_totals_key(key: &SessionKey) -> Vec<u8> {
    numbered_key(key, SECTION_TOTALS, &[])
}

/// The value stored under [`queue_totals_key`]: `messages` queued, `bytes` of their packets.
pub fn queue_totals_value(key: &SessionKey, messages: u64, bytes: u64) -> Vec<u8> {
    value(
        &queue_totals_key(key),
        KIND_TOTALS,
        &[&messages.to_be_bytes(), &bytes.to_be_bytes()],
    )
}

/// The key range `[start, end)` of the session's queued messages from sequence number `from`.
pub fn queue_range(key: &SessionKey, from: u64) -> (Vec<u8>, Vec<u8>) {
    (
        queue_key(key, from),
        numbered_key(key, SECTION_QUEUE + 1, &[]),
    )
}

/// The key range `[start, end)` of the session's outbound records and inbound markers.
pub fn flows_range(key: &SessionKey) -> (Vec<u8>, Vec<u8>) {
    (
        numbered_key(key, SECTION_OUTBOUND, &[]),
        numbered_key(key, SECTION_INBOUND + 1, &[]),
    )
}

/// The key range `[start, end)` of the session's subscriptions.
pub fn subscriptions_range(key: &SessionKey) -> (Vec<u8>, Vec<u8>) {
    (
        numbered_key(key, SECTION_SUBSCRIPTION, &[]),
        numbered_key(key, SECTION_SUBSCRIPTION + 1, &[]),
    )
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) of the parts in order, by
/// crc32fast (SIMD where the processor has it: records carry whole payloads).
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

fn value(key: &[u8], kind: u8, body: &[&[u8]]) -> Vec<u8> {
    let len: usize = body.iter().map(|b| b.len()).sum();
    let mut v = Vec::with_capacity(len + 6);
    v.push(FORMAT_VERSION);
    v.push(kind);
    for part in body {
        v.extend_from_slice(part);
    }
    let crc = crc32(&[key, &v]);
    v.extend_from_slice(&crc.to_be_bytes());
    v
}

fn meta_body(meta: &SessionMeta) -> Vec<u8> {
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&meta.session_expiry_interval.to_be_bytes());
    match meta.disconnected_at_ms {
        Some(ms) => {
            body.push(1);
            body.extend_from_slice(&ms.to_be_bytes());
        }
        None => body.push(0),
    }
    match &meta.assigned_client_id {
        Some(id) => {
            body.push(1);
            put_str(&mut body, id);
        }
        None => body.push(0),
    }
    // Added after the first format-1 fixtures: absent in their records, which read as `None`.
    // A 3.1.1 session adds the protocol level after it (the slot then always there, all ones
    // for `None`); a v5 session's record stays as it was. Each field added later comes after
    // those before it, which a record with it always carries: the in-flight limit (0 for
    // `None`), then the clock.
    let clock = &meta.clock;
    let has_clock = *clock != SessionClock::default();
    let has_limit = meta.in_flight_limit.is_some() || has_clock;
    match (meta.alive_until_ms, meta.protocol, has_limit) {
        (Some(ms), ProtocolVersion::V5, false) => body.extend_from_slice(&ms.to_be_bytes()),
        (None, ProtocolVersion::V5, false) => {}
        (alive, protocol, _) => {
            body.extend_from_slice(&alive.unwrap_or(u64::MAX).to_be_bytes());
            body.push(protocol.level());
        }
    }
    if has_limit {
        body.extend_from_slice(&meta.in_flight_limit.unwrap_or(0).to_be_bytes());
    }
    if has_clock {
        body.extend_from_slice(&clock.stamped_ms.unwrap_or(u64::MAX).to_be_bytes());
        body.extend_from_slice(&clock.untrusted_since.unwrap_or(u64::MAX).to_be_bytes());
        // A step adds one; they go as the queue drains past them.
        let kept = clock.corrections.len().min(usize::from(u8::MAX));
        body.push(kept as u8);
        for c in clock.corrections.iter().take(kept) {
            body.extend_from_slice(&c.from_seq.to_be_bytes());
            body.extend_from_slice(&c.to_seq.to_be_bytes());
            body.extend_from_slice(&c.shift_ms.to_be_bytes());
        }
    }
    body
}

/// The key-value writes that apply `batch` to `key`'s session, in order.
pub fn batch_writes(key: &SessionKey, batch: &Batch) -> Vec<KvWrite> {
    batch
        .ops()
        .iter()
        .map(|op| match op {
            StoreOp::SetMeta(meta) => {
                let k = meta_key(key);
                let v = value(&k, KIND_META, &[&meta_body(meta)]);
                KvWrite::Put(k, v)
            }
            StoreOp::PutOutbound { seq, record } => {
                let k = outbound_key(key, *seq);
                let v = match record {
                    OutboundRecord::Publish(packet) => value(&k, KIND_PUBLISH, &[packet]),
                    OutboundRecord::PubRel { packet_id } => {
                        value(&k, KIND_PUBREL, &[&packet_id.to_be_bytes()])
                    }
                };
                KvWrite::Put(k, v)
            }
            StoreOp::RemoveOutbound { seq } => KvWrite::Delete(outbound_key(key, *seq)),
            StoreOp::PutInbound { packet_id } => {
                let k = inbound_key(key, *packet_id);
                let v = value(&k, KIND_INBOUND, &[]);
                KvWrite::Put(k, v)
            }
            StoreOp::RemoveInbound { packet_id } => KvWrite::Delete(inbound_key(key, *packet_id)),
            StoreOp::PushQueue { seq, message } => {
                let k = queue_key(key, *seq);
                let v = queued_value(&k, message);
                KvWrite::Put(k, v)
            }
            StoreOp::RemoveQueue { seq } => KvWrite::Delete(queue_key(key, *seq)),
            StoreOp::PushClassQueue {
                class,
                seq,
                message,
            } => {
                let k = class_queue_key(key, *class, *seq);
                let v = queued_value(&k, message);
                KvWrite::Put(k, v)
            }
            StoreOp::RemoveClassQueue { class, seq } => {
                KvWrite::Delete(class_queue_key(key, *class, *seq))
            }
            StoreOp::PutSubscription(subscription) => {
                let k = subscription_key(key, &subscription.filter);
                let v = value(&k, KIND_SUBSCRIPTION, &[&subscription.packet]);
                KvWrite::Put(k, v)
            }
            StoreOp::RemoveSubscription { filter } => {
                KvWrite::Delete(subscription_key(key, filter))
            }
            StoreOp::PutSeenKey { seq, seen } => {
                let k = seen_key_key(key, *seq);
                let at = seen.seen_at_ms.to_be_bytes();
                let v = value(&k, KIND_SEEN, &[&at, seen.key.as_bytes()]);
                KvWrite::Put(k, v)
            }
            StoreOp::RemoveSeenKey { seq } => KvWrite::Delete(seen_key_key(key, *seq)),
            StoreOp::PutLatestValue(latest) => {
                let k = latest_value_key(key, &latest.topic);
                let v = value(
                    &k,
                    KIND_LATEST,
                    &[
                        &latest.seq.to_be_bytes(),
                        &latest.len.to_be_bytes(),
                        &[latest.class],
                    ],
                );
                KvWrite::Put(k, v)
            }
            StoreOp::RemoveLatestValue { topic } => KvWrite::Delete(latest_value_key(key, topic)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use bytes::Bytes;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
        // Agrees with the definition, bit by bit, at every length and split: the stored format
        // did not change with the implementation.
        fn bitwise(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &byte in data {
                crc ^= u32::from(byte);
                for _ in 0..8 {
                    crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
                }
            }
            !crc
        }
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in 0..data.len() {
            let whole = &data[..len];
            assert_eq!(crc32(&[whole]), bitwise(whole), "length {len}");
            let (a, b) = whole.split_at(len / 3);
            assert_eq!(crc32(&[a, b]), bitwise(whole), "length {len} split");
        }
    }

    #[test]
    fn prefixes_are_unambiguous() {
        let keys = [
            SessionKey::new("a", "b"),
            SessionKey::new("ab", ""),
            SessionKey::new("", "ab"),
            SessionKey::new("h:1", "c"),
            SessionKey::new("h:18", "c"),
            SessionKey::cluster("a", "b"),
        ];
        for a in &keys {
            for b in &keys {
                if a != b {
                    assert!(
                        !session_prefix(b).starts_with(&session_prefix(a)),
                        "{a} / {b}"
                    );
                }
            }
            assert_eq!(&session_of_key(&outbound_key(a, 9)).unwrap(), a);
        }
    }

    #[test]
    fn a_key_is_stripped_of_its_own_sessions_prefix_only() {
        let keys = [
            SessionKey::new("a", "b"),
            SessionKey::new("ab", ""),
            SessionKey::new("", "ab"),
            SessionKey::new("h:18", "c"),
            SessionKey::cluster("a", "b"),
        ];
        for a in &keys {
            let raw = queue_key(a, 7);
            let prefix = session_prefix(a);
            assert_eq!(
                strip_session_prefix(a, &raw),
                raw.strip_prefix(prefix.as_slice())
            );
            assert_eq!(queued_seq_of_key(a, &raw), Some(7));
            for b in keys.iter().filter(|b| *b != a) {
                assert_eq!(strip_session_prefix(b, &raw), None, "{a} / {b}");
                assert_eq!(queued_seq_of_key(b, &raw), None, "{a} / {b}");
            }
            // Truncated anywhere, it is no key of the session's.
            for len in 0..prefix.len() {
                assert_eq!(strip_session_prefix(a, &raw[..len]), None, "{a} at {len}");
            }
        }
    }

    #[test]
    fn keys_sort_by_number() {
        let k = SessionKey::new("s", "c");
        assert!(outbound_key(&k, 255) < outbound_key(&k, 256));
        assert!(outbound_key(&k, u64::MAX) < inbound_key(&k, 0));
        assert!(meta_key(&k) < outbound_key(&k, 0));
        assert!(queue_key(&k, u64::MAX) < session_upper_bound(&session_prefix(&k)));
    }

    #[test]
    fn queued_messages_keep_their_acceptance_time_and_deadline_in_every_combination() {
        let k = SessionKey::new("s", "c");
        let packet = Bytes::from_static(b"\x30\x05\x00\x01tab");
        for (accepted, expires, kind) in [
            (None, None, KIND_QUEUED),
            (None, Some(9), KIND_QUEUED_EXPIRING),
            (Some(7), None, KIND_QUEUED_AT),
            (Some(7), Some(u64::MAX), KIND_QUEUED_AT),
        ] {
            let message = QueuedPublish {
                qos: crate::packet::QoS::ExactlyOnce,
                packet: packet.clone(),
                expires_at_ms: expires,
                accepted_at_ms: accepted,
            };
            let batch = Batch::from(vec![StoreOp::PushQueue {
                seq: 3,
                message: message.clone(),
            }]);
            let [KvWrite::Put(key, value)] = &batch_writes(&k, &batch)[..] else {
                panic!("one put");
            };
            assert_eq!(value[1], kind);
            assert_eq!(decode_queued(&k, key, value).unwrap(), (3, message.clone()));
            assert_eq!(queued_packet_len(&k, key, value).unwrap(), packet.len());
            assert_eq!(
                decode_session(&k, [(key, value)]).unwrap().queue,
                vec![(3, message)]
            );
        }
    }

    #[test]
    fn damaged_values_are_errors() {
        let k = SessionKey::new("s", "c");
        let batch = Batch::from(vec![StoreOp::PutOutbound {
            seq: 1,
            record: OutboundRecord::Publish(Bytes::from_static(b"\x30\x03\x00\x01t")),
        }]);
        let [KvWrite::Put(key, value)] = &batch_writes(&k, &batch)[..] else {
            panic!("one put");
        };
        assert!(decode_session(&k, [(key, value)]).is_ok());
        let mut flipped = value.clone();
        flipped[3] ^= 1;
        let zeroed = vec![0u8; value.len()];
        let cut = value[..value.len() - 1].to_vec();
        for bad in [flipped, zeroed, cut, vec![]] {
            let err = decode_session(&k, [(key, &bad)]).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("outbound #1"), "{err}");
        }
        // The same value under another key fails its checksum.
        let other = outbound_key(&k, 2);
        assert!(decode_session(&k, [(&other, value)]).is_err());
    }
}
