//! Records as a person or a script reads them: what each one is, where its flow stands, and the
//! message it carries, decoded from the wire format it is stored in.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use bytes::BytesMut;
use mooring::packet::{Codec, Decoded, Packet, ProtocolVersion, Publish, QoS};
use mooring::store::layout::Record;
use mooring::store::{OutboundRecord, SessionMeta};
use serde::Serialize;

/// A time in milliseconds since the UNIX epoch, as RFC 3339 (UTC, whole seconds).
pub fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// How long ago `ms` (milliseconds since the UNIX epoch) was, to the second: `3h 12m 5s`.
pub fn age(ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(ms) / 1000;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// A payload written out whole: as text when it is UTF-8, otherwise base64.
#[derive(Debug, Serialize)]
pub struct Payload {
    /// `utf8` or `base64`.
    pub encoding: &'static str,
    /// The payload in that encoding.
    pub data: String,
}

impl Payload {
    fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self {
                encoding: "utf8",
                data: text.to_owned(),
            },
            Err(_) => Self {
                encoding: "base64",
                data: base64::engine::general_purpose::STANDARD.encode(bytes),
            },
        }
    }
}

/// The first bytes of a payload, readable on one line: text with control characters escaped,
/// or hex when it is not UTF-8.
pub fn preview(bytes: &[u8], max: usize) -> String {
    let shown = bytes.get(..max).unwrap_or(bytes);
    let more = if shown.len() < bytes.len() { "…" } else { "" };
    match std::str::from_utf8(shown) {
        Ok(text) => format!("{}{more}", text.escape_debug()),
        Err(_) => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{more}")
        }
    }
}

/// One record, flattened for a table row or a JSON line. Fields a record does not have are
/// left out of the JSON.
#[derive(Debug, Default, Serialize)]
pub struct RecordView {
    /// The session, as `list` names it.
    pub session: String,
    /// `meta`, `publish`, `pubrel`, `inbound`, `queued`, `subscription`, `queue-totals`,
    /// `seen-key` or `latest-value`.
    pub record: &'static str,
    /// The priority class of a queued message or a latest value (0: the offline queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<u8>,
    /// The engine's sequence number (outbound flows and queued messages share one order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The packet identifier (queued messages have none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_id: Option<u16>,
    /// Where the flow stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    /// The QoS it is sent at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    /// The topic, or the Topic Filter of a subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The payload's size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_bytes: Option<usize>,
    /// Whether the stored PUBLISH has its DUP flag set (it was sent before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dup: Option<bool>,
    /// Whether it is a retained message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
    /// When a queued message expires unsent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the application's publish of a queued message was accepted (records written
    /// before acceptance times were kept have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
    /// The payload, whole, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// A short, readable start of the payload (tables only).
    #[serde(skip)]
    pub preview: String,
    /// Metadata: the protocol, expiry and connection times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaView>,
    /// Queue totals: messages and bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<(u64, u64)>,
    /// The idempotency key of a message the application handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When the application handled the message of a seen key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<String>,
}

/// A session's metadata, readable.
#[derive(Debug, Serialize)]
pub struct MetaView {
    /// `5.0` or `3.1.1`.
    pub protocol: &'static str,
    /// The Session Expiry Interval in seconds (`4294967295`: never).
    pub session_expiry_interval: u32,
    /// When the last connection ended, if it ended cleanly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<String>,
    /// The last time the process was known alive while connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alive_until: Option<String>,
    /// When the server drops the session, if it does: ended plus the interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The client identifier the server assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_client_id: Option<String>,
}

/// The protocol's name.
pub fn protocol_name(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V311 => "3.1.1",
        _ => "5.0",
    }
}

impl MetaView {
    /// Reads `meta`.
    pub fn of(meta: &SessionMeta) -> Self {
        Self {
            protocol: protocol_name(meta.protocol),
            session_expiry_interval: meta.session_expiry_interval,
            disconnected_at: meta.disconnected_at_ms.map(timestamp),
            alive_until: meta.alive_until_ms.map(timestamp),
            expires_at: meta.expires_at_ms().map(timestamp),
            assigned_client_id: meta.assigned_client_id.clone(),
        }
    }
}

/// Decodes a stored PUBLISH (wire format) spoken in `protocol`.
pub fn decode_publish(protocol: ProtocolVersion, packet: &[u8]) -> Result<Publish, String> {
    let codec = Codec {
        protocol,
        ..Codec::default()
    };
    let mut buf = BytesMut::from(packet);
    match codec.decode(&mut buf) {
        Ok(Decoded::Packet(Packet::Publish(publish))) if buf.is_empty() => Ok(publish),
        Ok(Decoded::Packet(Packet::Publish(_))) => {
            Err(format!("{} bytes follow the stored PUBLISH", buf.len()))
        }
        Ok(Decoded::Packet(other)) => Err(format!("a {:?} is stored, not a PUBLISH", other)),
        Ok(Decoded::Incomplete { needed }) => Err(format!(
            "the stored PUBLISH is cut short ({needed} bytes missing)"
        )),
        Err(e) => Err(format!("the stored PUBLISH does not decode: {e}")),
    }
}

fn qos_number(qos: QoS) -> u8 {
    qos as u8
}

impl RecordView {
    /// Describes `record` of the session named `session`, whose protocol is `protocol`.
    /// `whole_payload` keeps the payload itself. A PUBLISH that does not decode is an error.
    pub fn of(
        session: &str,
        protocol: ProtocolVersion,
        record: &Record,
        whole_payload: bool,
    ) -> Result<Self, String> {
        let mut view = Self {
            session: session.to_owned(),
            ..Self::default()
        };
        let message = |view: &mut Self, publish: &Publish| {
            view.topic = Some(publish.topic.clone());
            view.payload_bytes = Some(publish.payload.len());
            view.dup = Some(publish.dup);
            view.retain = Some(publish.retain);
            view.preview = preview(&publish.payload, 24);
            if whole_payload {
                view.payload = Some(Payload::of(&publish.payload));
            }
        };
        match record {
            Record::Meta(meta) => {
                view.record = "meta";
                view.meta = Some(MetaView::of(meta));
            }
            Record::Outbound(seq, OutboundRecord::Publish(packet)) => {
                let publish = decode_publish(protocol, packet)?;
                view.record = "publish";
                view.seq = Some(*seq);
                view.packet_id = Some(publish.packet_id);
                view.qos = Some(qos_number(publish.qos));
                view.stage = Some(match publish.qos {
                    QoS::ExactlyOnce => "awaiting PUBREC",
                    _ => "awaiting PUBACK",
                });
                message(&mut view, &publish);
            }
            Record::Outbound(seq, OutboundRecord::PubRel { packet_id }) => {
                view.record = "pubrel";
                view.seq = Some(*seq);
                view.packet_id = Some(*packet_id);
                view.qos = Some(2);
                view.stage = Some("awaiting PUBCOMP");
            }
            Record::Inbound(packet_id) => {
                view.record = "inbound";
                view.packet_id = Some(*packet_id);
                view.qos = Some(2);
                view.stage = Some("PUBREC sent, awaiting PUBREL");
            }
            Record::Queued(seq, queued) | Record::ClassQueued(_, seq, queued) => {
                if let Record::ClassQueued(class, ..) = record {
                    view.class = Some(*class);
                }
                let publish = decode_publish(protocol, &queued.packet)?;
                view.record = "queued";
                view.seq = Some(*seq);
                view.qos = Some(qos_number(queued.qos));
                view.stage = Some("queued");
                view.expires_at = queued.expires_at_ms.map(timestamp);
                view.accepted_at = queued.accepted_at_ms.map(timestamp);
                message(&mut view, &publish);
            }
            Record::Subscription(subscription) => {
                view.record = "subscription";
                view.topic = Some(subscription.filter.clone());
            }
            Record::QueueTotals(messages, bytes) => {
                view.record = "queue-totals";
                view.totals = Some((*messages, *bytes));
            }
            Record::SeenKey(seq, seen) => {
                view.record = "seen-key";
                view.seq = Some(*seq);
                view.idempotency_key = Some(seen.key.clone());
                view.seen_at = Some(timestamp(seen.seen_at_ms));
            }
            Record::LatestValue(latest) => {
                view.record = "latest-value";
                view.seq = Some(latest.seq);
                view.class = Some(latest.class);
                view.topic = Some(latest.topic.clone());
            }
        }
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_escape_text_and_show_binary_as_hex() {
        assert_eq!(preview(b"21.5 C\n", 24), "21.5 C\\n");
        assert_eq!(preview(&[0xff, 0x00, 0x10], 24), "0xff0010");
        assert_eq!(preview(b"abcdef", 3), "abc…");
    }

    #[test]
    fn whole_payloads_are_text_or_base64() {
        assert_eq!(Payload::of(b"on").encoding, "utf8");
        let binary = Payload::of(&[0xff, 0xfe]);
        assert_eq!((binary.encoding, binary.data.as_str()), ("base64", "//4="));
    }

    #[test]
    fn a_stored_publish_decodes_in_its_protocol() {
        let mut publish = Publish::new("site/7", "up");
        publish.qos = QoS::ExactlyOnce;
        publish.packet_id = 9;
        publish.dup = true;
        for protocol in [ProtocolVersion::V5, ProtocolVersion::V311] {
            let codec = Codec {
                protocol,
                ..Codec::default()
            };
            let mut wire = BytesMut::new();
            codec
                .encode(&Packet::Publish(publish.clone()), &mut wire)
                .unwrap();
            let record = Record::Outbound(4, OutboundRecord::Publish(wire.freeze()));
            let view = RecordView::of("gw@mqtt://h:1883", protocol, &record, false).unwrap();
            assert_eq!(view.packet_id, Some(9));
            assert_eq!(view.stage, Some("awaiting PUBREC"));
            assert_eq!(view.topic.as_deref(), Some("site/7"));
            assert_eq!(view.dup, Some(true));
        }
    }

    #[test]
    fn a_record_that_is_not_a_publish_is_an_error() {
        let record = Record::Outbound(1, OutboundRecord::Publish(vec![0xc0, 0x00].into()));
        let err = RecordView::of("gw", ProtocolVersion::V5, &record, false).unwrap_err();
        assert!(err.contains("not a PUBLISH"), "{err}");
    }
}
