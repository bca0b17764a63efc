//! The MQTT v5.0 wire format: bytes to [`Packet`] values and back.
//!
//! [`Codec::decode`] is a streaming decoder: fed a buffer, it returns one packet and removes its
//! bytes, or says how many more bytes it needs and removes nothing. Payloads and binary
//! properties are [`Bytes`] slices of the input buffer, not copies.
//!
//! Decoding checks every rule the specification sets for a receiver that can be checked without
//! session state (flag bits, lengths, UTF-8, properties, topics, reason codes, packet
//! identifiers, Maximum Packet Size); a broken rule is a [`DecodeError`] whose
//! [`reason_code`](DecodeError::reason_code) is what to send in DISCONNECT. Encoding checks the
//! same rules, so a packet the user built wrongly is an [`EncodeError`] and no bytes are written.
//! Rules that need session state (an unknown Topic Alias, Receive Maximum, a second CONNACK)
//! belong to the session engine.
//!
//! This module never touches sessions, sockets or clocks.

mod connect;
mod disconnect;
mod error;
mod framed;
mod properties;
mod publish;
mod reason;
mod subscribe;
mod topic;
mod v311;
mod wire;

use std::fmt;

use bytes::{Bytes, BytesMut};

pub use connect::{ConnAck, Connect, Will};
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError, TopicError, Violation};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PayloadFormat, PropertyId, PublishProperties, SubscribeProperties, UnsubscribeProperties,
    UserProperty, WillProperties,
};
pub use publish::{PubAck, Publish};
pub use reason::ReasonCode;
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
};
pub use topic::{
    is_shared_subscription, topic_matches, validate_topic_filter, validate_topic_name,
};
pub use wire::MAX_VARINT;

use framed::{Framed, PublishRef};
use wire::{Encode, Reader, Sink, varint_len};

/// The largest packet MQTT can express: a 1-byte header, a 4-byte Remaining Length and
/// 268,435,455 bytes of content.
pub const MAX_PACKET_SIZE: u32 = 1 + 4 + MAX_VARINT;

/// Quality of Service of a message (section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// QoS 0: at most once, no acknowledgement.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once, acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: exactly once, PUBREC / PUBREL / PUBCOMP.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for 0, 1 or 2.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }

    pub(crate) fn decode(value: u8, field: &'static str) -> Result<Self, Violation> {
        Self::from_u8(value).ok_or(Violation::InvalidQos { field })
    }
}

/// The protocol level the codec speaks. Both versions share the packet types: decoding 3.1.1
/// fills them with what 3.1.1 can say, and encoding refuses what it cannot
/// ([`Violation::NotInV311`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// MQTT v5.0, protocol level 5.
    #[default]
    V5,
    /// MQTT 3.1.1 (OASIS Standard, 2014), protocol level 4.
    V311,
}

impl ProtocolVersion {
    /// The Protocol Version byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V5 => 5,
            Self::V311 => v311::LEVEL,
        }
    }
}

/// The fifteen MQTT control packet types (section 2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are the specification's
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The type named by the high nibble of a fixed header's first byte.
    pub fn from_nibble(nibble: u8) -> Option<Self> {
        use PacketType::*;
        Some(match nibble {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The specification's name, in capitals.
    pub fn name(self) -> &'static str {
        use PacketType::*;
        match self {
            Connect => "CONNECT",
            ConnAck => "CONNACK",
            Publish => "PUBLISH",
            PubAck => "PUBACK",
            PubRec => "PUBREC",
            PubRel => "PUBREL",
            PubComp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubAck => "UNSUBACK",
            PingReq => "PINGREQ",
            PingResp => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }

    /// The flag bits every packet but PUBLISH must carry (Table 2-2).
    fn reserved_flags(self) -> u8 {
        match self {
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => 0b0010,
            _ => 0,
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An MQTT v5 control packet. CONNECT and CONNACK, sent once per connection and by far the
/// largest, are boxed so that the packets of the message flow stay small.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the packet of the same name
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubAck),
    PubRel(PubAck),
    PubComp(PubAck),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    fn first_byte(&self) -> u8 {
        let ty = self.packet_type();
        let flags = match self {
            Self::Publish(p) => p.flags(),
            _ => ty.reserved_flags(),
        };
        ((ty as u8) << 4) | flags
    }

    fn encode_body<S: Sink>(&self, protocol: ProtocolVersion, s: &mut S) -> Result<(), Violation> {
        if protocol == ProtocolVersion::V311 {
            return v311::encode_body(self, s);
        }
        match self {
            Self::Connect(p) => p.encode_body(protocol, s),
            Self::ConnAck(p) => p.encode(s),
            Self::Publish(p) => p.encode(s),
            Self::PubAck(p) => p.encode_body(PacketType::PubAck, s),
            Self::PubRec(p) => p.encode_body(PacketType::PubRec, s),
            Self::PubRel(p) => p.encode_body(PacketType::PubRel, s),
            Self::PubComp(p) => p.encode_body(PacketType::PubComp, s),
            Self::Subscribe(p) => p.encode(s),
            Self::SubAck(p) => p.encode(s),
            Self::Unsubscribe(p) => p.encode(s),
            Self::UnsubAck(p) => p.encode(s),
            Self::PingReq | Self::PingResp => Ok(()),
            Self::Disconnect(p) => p.encode(s),
            Self::Auth(p) => p.encode(s),
        }
    }

    fn decode_body(
        ty: PacketType,
        flags: u8,
        protocol: ProtocolVersion,
        r: &mut Reader,
    ) -> Result<Self, Violation> {
        if protocol == ProtocolVersion::V311 {
            return v311::decode_body(ty, flags, r);
        }
        Ok(match ty {
            PacketType::Connect => Self::Connect(Box::new(Connect::decode(protocol, r)?)),
            PacketType::ConnAck => Self::ConnAck(Box::new(ConnAck::decode(r)?)),
            PacketType::Publish => Self::Publish(Publish::decode(flags, r)?),
            PacketType::PubAck => Self::PubAck(PubAck::decode(ty, r)?),
            PacketType::PubRec => Self::PubRec(PubAck::decode(ty, r)?),
            PacketType::PubRel => Self::PubRel(PubAck::decode(ty, r)?),
            PacketType::PubComp => Self::PubComp(PubAck::decode(ty, r)?),
            PacketType::Subscribe => Self::Subscribe(Subscribe::decode(r)?),
            PacketType::SubAck => Self::SubAck(SubAck::decode(r)?),
            PacketType::Unsubscribe => Self::Unsubscribe(Unsubscribe::decode(r)?),
            PacketType::UnsubAck => Self::UnsubAck(UnsubAck::decode(r)?),
            PacketType::PingReq => Self::PingReq,
            PacketType::PingResp => Self::PingResp,
            PacketType::Disconnect => Self::Disconnect(Disconnect::decode(r)?),
            PacketType::Auth => Self::Auth(Auth::decode(r)?),
        })
    }
}

/// What one call of [`Codec::decode`] found.
// Packets are returned by value on every decode; boxing them would allocate per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole packet; its bytes were removed from the buffer.
    Packet(Packet),
    /// The buffer holds part of a packet; nothing was removed. At least `needed` more bytes
    /// must arrive before the packet can be decoded.
    Incomplete {
        /// The number of bytes still missing (a lower bound while the Remaining Length itself
        /// is incomplete).
        needed: usize,
    },
}

/// Encoder and decoder settings for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Codec {
    /// The protocol level spoken.
    pub protocol: ProtocolVersion,
    /// The Maximum Packet Size this side announced; a larger incoming packet is refused with
    /// [`Violation::PacketTooLarge`] (reason code 0x95) before its body is buffered.
    pub max_incoming_packet_size: Option<u32>,
    /// The Maximum Packet Size the peer announced; a larger outgoing packet is refused with
    /// [`Violation::PacketTooLarge`] and not written [MQTT-3.2.2-15].
    pub max_outgoing_packet_size: Option<u32>,
}

impl Codec {
    /// Decodes the packet at the front of `buf`.
    ///
    /// Returns [`Decoded::Packet`] and removes that packet's bytes, or [`Decoded::Incomplete`]
    /// and removes nothing. Call it again to get the next packet. After an error the stream is
    /// unusable: send DISCONNECT with the error's reason code and close the connection.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Decoded, DecodeError> {
        let (ty, flags, header_len, total) = match self.frame_header(buf)? {
            Framing::Complete(header) => header,
            Framing::Incomplete(needed) => return Ok(Decoded::Incomplete { needed }),
        };
        self.decode_frame(ty, flags, header_len, buf.split_to(total).freeze())
    }

    /// [`decode`](Self::decode) from bytes already shared (a stored record): the packet's
    /// payload is a slice of `buf`, not a copy.
    pub fn decode_shared(&self, buf: &mut Bytes) -> Result<Decoded, DecodeError> {
        let (ty, flags, header_len, total) = match self.frame_header(buf)? {
            Framing::Complete(header) => header,
            Framing::Incomplete(needed) => return Ok(Decoded::Incomplete { needed }),
        };
        self.decode_frame(ty, flags, header_len, buf.split_to(total))
    }

    /// The fixed header at the front of `buf`: type, flags, header length and total length,
    /// checked; or how many more bytes it takes to know.
    fn frame_header(&self, buf: &[u8]) -> Result<Framing, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(Framing::Incomplete(2));
        };
        let ty = PacketType::from_nibble(first >> 4).ok_or(DecodeError {
            packet: None,
            violation: Violation::ReservedPacketType,
            protocol: self.protocol,
        })?;
        let fail = |violation| DecodeError {
            packet: Some(ty),
            violation,
            protocol: self.protocol,
        };
        let flags = first & 0x0F;
        if ty != PacketType::Publish && flags != ty.reserved_flags() {
            return Err(fail(Violation::InvalidFlags {
                found: flags,
                expected: ty.reserved_flags(),
            }));
        }

        let mut remaining_len = 0usize;
        let mut header_len = 1;
        loop {
            let Some(&byte) = buf.get(header_len) else {
                return Ok(Framing::Incomplete(header_len + 1 - buf.len()));
            };
            remaining_len |= usize::from(byte & 0x7F) << (7 * (header_len - 1));
            header_len += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if header_len == 5 {
                return Err(fail(Violation::VarintTooLong {
                    field: "Remaining Length",
                }));
            }
        }

        let total = header_len + remaining_len;
        if let Some(max) = self.max_incoming_packet_size
            && total > max as usize
        {
            return Err(fail(Violation::PacketTooLarge {
                size: total as u64,
                max,
            }));
        }
        if buf.len() < total {
            return Ok(Framing::Incomplete(total - buf.len()));
        }
        Ok(Framing::Complete((ty, flags, header_len, total)))
    }

    /// Decodes one whole packet, `frame`, whose fixed header `frame_header` checked.
    fn decode_frame(
        &self,
        ty: PacketType,
        flags: u8,
        header_len: usize,
        mut frame: Bytes,
    ) -> Result<Decoded, DecodeError> {
        let fail = |violation| DecodeError {
            packet: Some(ty),
            violation,
            protocol: self.protocol,
        };
        let mut body = Reader::new(frame.split_off(header_len));
        let packet = Packet::decode_body(ty, flags, self.protocol, &mut body).map_err(fail)?;
        if !body.is_empty() {
            return Err(fail(Violation::TrailingBytes {
                count: body.remaining(),
                part: ty.name(),
            }));
        }
        Ok(Decoded::Packet(packet))
    }

    /// The size `packet` takes on the wire, checking it as [`Codec::encode`] does.
    pub fn encoded_len(&self, packet: &Packet) -> Result<usize, EncodeError> {
        self.measure(packet).map(|(_, total)| total)
    }

    /// [`encoded_len`](Self::encoded_len) of a PUBLISH, without wrapping it in a [`Packet`]
    /// (which takes it by value: a copy of its topic and properties per call).
    pub fn encoded_publish_len(&self, publish: &Publish) -> Result<usize, EncodeError> {
        self.measure(&PublishRef(publish)).map(|(_, total)| total)
    }

    /// [`encode`](Self::encode) of a PUBLISH, without wrapping it in a [`Packet`].
    pub fn encode_publish(
        &self,
        publish: &Publish,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        self.encode_any(&PublishRef(publish), buf, None)
    }

    /// [`encode_publish`](Self::encode_publish) without the payload: appends the PUBLISH up
    /// to its payload, which the caller sends after it as it is (a large payload shared with
    /// the application rather than copied). Returns the whole packet's size; on error nothing
    /// is written.
    pub fn encode_publish_head(
        &self,
        publish: &Publish,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        self.encode_any(&PublishRef(publish), buf, Some(publish.payload.len()))
    }

    /// Checks `packet` and returns its Remaining Length and total size.
    fn measure(&self, packet: &impl Framed) -> Result<(usize, usize), EncodeError> {
        let fail = |violation| EncodeError {
            packet: packet.packet_type(),
            violation,
        };
        let mut counter = wire::Counter::default();
        packet
            .encode_body(self.protocol, &mut counter)
            .map_err(fail)?;
        let remaining = counter.0;
        if remaining > MAX_VARINT as usize {
            return Err(fail(Violation::PacketTooLarge {
                size: remaining as u64 + 5,
                max: MAX_PACKET_SIZE,
            }));
        }
        let total = 1 + varint_len(remaining) + remaining;
        if let Some(max) = self.max_outgoing_packet_size
            && total > max as usize
        {
            return Err(fail(Violation::PacketTooLarge {
                size: total as u64,
                max,
            }));
        }
        Ok((remaining, total))
    }

    /// Appends `packet` to `buf` and returns the number of bytes written. On error nothing is
    /// written.
    pub fn encode(&self, packet: &Packet, buf: &mut BytesMut) -> Result<usize, EncodeError> {
        self.encode_any(packet, buf, None)
    }

    /// Appends `packet`, or with `payload_left_out` (a PUBLISH payload's length) all of it but
    /// its payload; returns the whole packet's size.
    fn encode_any(
        &self,
        packet: &impl Framed,
        buf: &mut BytesMut,
        payload_left_out: Option<usize>,
    ) -> Result<usize, EncodeError> {
        let (remaining, total) = self.measure(packet)?;
        let start = buf.len();
        buf.reserve(total.saturating_sub(payload_left_out.unwrap_or(0)));
        buf.u8(packet.first_byte());
        // `measure` ran the same checks, so these writes cannot fail; truncate if they do.
        let written = buf
            .varint("Remaining Length", remaining as u32)
            .and_then(|()| match payload_left_out {
                None => packet.encode_body(self.protocol, buf),
                Some(_) => packet.encode_body(self.protocol, &mut wire::WithoutPayload(buf)),
            });
        if let Err(violation) = written {
            buf.truncate(start);
            return Err(EncodeError {
                packet: packet.packet_type(),
                violation,
            });
        }
        Ok(total)
    }
}

/// A fixed header read: (type, flags, header length, total length), or the bytes missing.
enum Framing {
    Complete((PacketType, u8, usize, usize)),
    Incomplete(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_buffer_needs_two_bytes() {
        let mut buf = BytesMut::new();
        assert_eq!(
            Codec::default().decode(&mut buf),
            Ok(Decoded::Incomplete { needed: 2 })
        );
    }

    #[test]
    fn remaining_length_in_progress_asks_for_one_more_byte() {
        let mut buf = BytesMut::from(&[0x30u8, 0x80][..]);
        assert_eq!(
            Codec::default().decode(&mut buf),
            Ok(Decoded::Incomplete { needed: 1 })
        );
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn reserved_type_zero_is_malformed() {
        let mut buf = BytesMut::from(&[0x00u8, 0x00][..]);
        let err = Codec::default().decode(&mut buf).unwrap_err();
        assert_eq!(err.violation, Violation::ReservedPacketType);
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
    }

    #[test]
    fn too_large_is_refused_before_the_body_arrives() {
        let codec = Codec {
            max_incoming_packet_size: Some(100),
            ..Codec::default()
        };
        // PUBLISH announcing 200 bytes, none of them here yet.
        let mut buf = BytesMut::from(&[0x30u8, 0xC8, 0x01][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert_eq!(
            err.violation,
            Violation::PacketTooLarge {
                size: 203,
                max: 100
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
    }
}
