//! Idempotency keys: how a message published at QoS 1 says which message it is, so that a
//! subscriber can drop the copies QoS 1 allows (a publisher that resends after a lost PUBACK or
//! a restart, a broker that redelivers after its own restart).
//!
//! # The key
//!
//! A key names one message accepted by one publishing session, for good:
//!
//! ```text
//! <client identifier>/<run>/<sequence number>
//! ```
//!
//! - the client identifier of the publishing session (the one the server assigned, when the
//!   client sent none; empty before it is known);
//! - the run: 16 lowercase hexadecimal digits drawn at random each time a process takes the
//!   session (a start, or a standby taking over after a failover), so that sequence numbers,
//!   which a restart may hand out again once the ones before are acknowledged and gone from the
//!   store, never repeat a key;
//! - the sequence number (decimal) under which the session stored the message when the
//!   application's publish was accepted.
//!
//! The key is put into the stored message when it is accepted, so every retransmission (after
//! a lost connection, a SIGKILL, or on the standby after a failover) carries the key of the
//! first attempt. Consumers compare keys as opaque strings: two messages with the same key are
//! the same message.
//!
//! # Where it travels
//!
//! - MQTT 5: a User Property named [`KEY_PROPERTY`] (`mooring-key`), one per message. A
//!   publish that carries one already (a received message forwarded as it is, or a key the
//!   application chose) keeps it, so a forwarded message stays the same message end to end:
//!   a gateway killed between forwarding and acknowledging forwards it again under the same
//!   key.
//! - MQTT 3.1.1, which has no properties, or any consumer that reads only payloads: an
//!   envelope around the payload, opt-in on both sides ([`seal`], [`open`]):
//!
//! ```text
//! offset  length  content
//! 0       4       the magic bytes 0x4D 0x4B 0x59 0x01 ("MKY" and format 1)
//! 4       2       the key's length N in bytes, big-endian
//! 6       N       the key, UTF-8
//! 6 + N   rest    the application's payload, unchanged
//! ```
//!
//! A consumer written with another client deduplicates by reading the property (or opening
//! the envelope) and keeping the keys it has handled, as Mooring's subscriber does.

use bytes::Bytes;

use crate::packet::{Publish, UserProperty};

/// The User Property that carries a message's key.
pub const KEY_PROPERTY: &str = "mooring-key";

/// The first bytes of an envelope: "MKY" and the envelope's format, 1.
pub const ENVELOPE_MAGIC: [u8; 4] = [0x4D, 0x4B, 0x59, 0x01];

/// How a publishing session's keys travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCarrier {
    /// A User Property named [`KEY_PROPERTY`] (MQTT 5 only).
    UserProperty,
    /// The envelope around the payload (both protocols; the consumer must open it).
    Envelope,
}

/// What a publishing session stamps on its QoS 1 messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStamp {
    /// This run's number (drawn at random when the process takes the session).
    pub run: u64,
    /// How the key travels.
    pub carrier: KeyCarrier,
}

/// The key of the message stored under `seq` by `client_id`'s session in run `run`.
pub fn key_for(client_id: &str, run: u64, seq: u64) -> String {
    format!("{client_id}/{run:016x}/{seq}")
}

/// `payload` inside an envelope carrying `key`; `None` when the key is longer than an
/// envelope can say (65,535 bytes).
pub fn seal(key: &str, payload: &[u8]) -> Option<Bytes> {
    let len = u16::try_from(key.len()).ok()?;
    let mut out = Vec::with_capacity(6 + key.len() + payload.len());
    out.extend_from_slice(&ENVELOPE_MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(payload);
    Some(Bytes::from(out))
}

/// The key and the application's payload of an envelope; `None` when `payload` is not one
/// (no magic, too short for its key, or a key that is not UTF-8).
pub fn open(payload: &Bytes) -> Option<(String, Bytes)> {
    let rest = payload.strip_prefix(&ENVELOPE_MAGIC[..])?;
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    let key = std::str::from_utf8(rest.get(..len)?).ok()?;
    Some((key.to_owned(), payload.slice(6 + len..)))
}

/// The key a message carries in its User Property, if any.
pub fn key_of(publish: &Publish) -> Option<&str> {
    publish
        .properties
        .user_properties
        .iter()
        .find(|p| p.name == KEY_PROPERTY)
        .map(|p| p.value.as_str())
}

/// Removes every key property `publish` carries and returns the first one's value.
pub(crate) fn take_key(publish: &mut Publish) -> Option<String> {
    let properties = &mut publish.properties.user_properties;
    let at = properties.iter().position(|p| p.name == KEY_PROPERTY)?;
    let key = properties.remove(at).value;
    properties.retain(|p| p.name != KEY_PROPERTY);
    Some(key)
}

/// Gives `publish` the key `key` as `carrier` says. Fails (`None`, nothing changed) only
/// when an envelope cannot hold the key.
pub(crate) fn stamp(publish: &mut Publish, key: String, carrier: KeyCarrier) -> Option<()> {
    match carrier {
        KeyCarrier::UserProperty => publish
            .properties
            .user_properties
            .push(UserProperty::new(KEY_PROPERTY, key)),
        KeyCarrier::Envelope => publish.payload = seal(&key, &publish.payload)?,
    }
    Some(())
}

/// Takes the envelope off a received message's payload, if it has one, and gives the key to
/// its User Properties instead (replacing any there), so that the application finds the key in
/// one place whatever carried it. Returns whether there was an envelope.
pub(crate) fn unwrap_envelope(publish: &mut Publish) -> bool {
    let Some((key, payload)) = open(&publish.payload) else {
        return false;
    };
    publish.payload = payload;
    take_key(publish);
    publish
        .properties
        .user_properties
        .push(UserProperty::new(KEY_PROPERTY, key));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_laid_out_byte_by_byte_as_documented() {
        let sealed = seal("gw/00000000000000ff/7", b"21.5").unwrap();
        let key = b"gw/00000000000000ff/7";
        let mut expected = vec![0x4D, 0x4B, 0x59, 0x01, 0x00, key.len() as u8];
        expected.extend_from_slice(key);
        expected.extend_from_slice(b"21.5");
        assert_eq!(&sealed[..], &expected[..]);
        assert_eq!(
            open(&sealed),
            Some((
                "gw/00000000000000ff/7".to_owned(),
                Bytes::from_static(b"21.5")
            ))
        );
    }

    #[test]
    fn what_is_not_an_envelope_is_left_alone() {
        for payload in [
            &b""[..],
            b"MKY",
            b"MKY\x02\x00\x00",
            b"MKY\x01\x00",
            b"MKY\x01\x00\x05abc",
            b"MKY\x01\x00\x02\xff\xfe",
        ] {
            let mut publish = Publish::new("t", Bytes::copy_from_slice(payload));
            assert!(!unwrap_envelope(&mut publish), "{payload:?}");
            assert_eq!(&publish.payload[..], payload);
            assert_eq!(key_of(&publish), None);
        }
        // An empty key and an empty payload are an envelope.
        let mut publish = Publish::new("t", seal("", b"").unwrap());
        assert!(unwrap_envelope(&mut publish));
        assert_eq!(key_of(&publish), Some(""));
        assert!(publish.payload.is_empty());
    }

    #[test]
    fn a_key_no_envelope_can_hold_is_refused() {
        let long = "k".repeat(65_536);
        assert_eq!(seal(&long, b"x"), None);
        let mut publish = Publish::new("t", "x");
        assert_eq!(stamp(&mut publish, long, KeyCarrier::Envelope), None);
        assert_eq!(&publish.payload[..], b"x");
        assert!(seal(&"k".repeat(65_535), b"x").is_some());
    }

    #[test]
    fn a_key_stamped_either_way_reads_back_as_a_property() {
        for carrier in [KeyCarrier::UserProperty, KeyCarrier::Envelope] {
            let mut publish = Publish::new("t", "payload");
            stamp(&mut publish, key_for("gw", 0xab, 12), carrier).unwrap();
            unwrap_envelope(&mut publish);
            assert_eq!(key_of(&publish), Some("gw/00000000000000ab/12"));
            assert_eq!(&publish.payload[..], b"payload");
        }
    }
}
