//! PUBLISH (section 3.3) and its acknowledgements PUBACK, PUBREC, PUBREL and PUBCOMP
//! (sections 3.4 to 3.7), which share one layout.

use bytes::Bytes;

use super::error::Violation;
use super::properties::{AckProperties, PublishProperties};
use super::reason::{read_reason_tail, write_reason_tail};
use super::topic::validate_topic_name;
use super::wire::{Encode, Reader, Sink};
use super::{PacketType, QoS, ReasonCode};

/// PUBLISH: an application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Set on a retransmission of a QoS 1/2 PUBLISH; never on QoS 0 [MQTT-3.3.1-2].
    pub dup: bool,
    /// The delivery QoS.
    pub qos: QoS,
    /// Whether the server keeps the message as the topic's retained message.
    pub retain: bool,
    /// The Topic Name; empty only when a Topic Alias stands for it.
    pub topic: String,
    /// The packet identifier: non-zero for QoS 1/2, 0 for QoS 0 (where none is sent).
    pub packet_id: u16,
    /// The PUBLISH properties.
    pub properties: PublishProperties,
    /// The payload.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0, non-retained PUBLISH with no properties.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: 0,
            properties: PublishProperties::default(),
            payload: payload.into(),
        }
    }

    pub(crate) fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    /// Topic rules of section 3.3.2.1: a Topic Name, or empty with a Topic Alias.
    fn check_topic(&self) -> Result<(), Violation> {
        if self.topic.is_empty() {
            if self.properties.topic_alias.is_none() {
                return Err(Violation::EmptyTopicWithoutAlias);
            }
            return Ok(());
        }
        validate_topic_name(&self.topic).map_err(Violation::InvalidTopicName)
    }

    pub(crate) fn decode(flags: u8, r: &mut Reader) -> Result<Self, Violation> {
        let qos = QoS::decode((flags >> 1) & 0x03, "PUBLISH QoS")?;
        let dup = flags & 0x08 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(Violation::DupOnQos0);
        }
        let topic = r.string("Topic Name")?;
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            read_packet_id(r, PacketType::Publish)?
        };
        let properties = PublishProperties::read(r)?;
        let publish = Self {
            dup,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        };
        publish.check_topic()?;
        Ok(publish)
    }
}

impl Encode for Publish {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        if self.qos == QoS::AtMostOnce {
            if self.dup {
                return Err(Violation::DupOnQos0);
            }
            if self.packet_id != 0 {
                return Err(Violation::PacketIdOnQos0 {
                    packet_id: self.packet_id,
                });
            }
        }
        self.check_topic()?;
        s.string("Topic Name", &self.topic)?;
        if self.qos != QoS::AtMostOnce {
            s.u16(non_zero_packet_id(self.packet_id, PacketType::Publish)?);
        }
        s.length_prefixed("Property Length", &self.properties)?;
        s.payload(&self.payload);
        Ok(())
    }
}

/// The body shared by PUBACK, PUBREC, PUBREL and PUBCOMP; the [`Packet`](super::Packet)
/// variant says which one it is.
///
/// On the wire the reason code and properties are left out when they are Success and empty;
/// decoding accepts every length the specification allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    /// The identifier of the PUBLISH (or PUBREL) being answered.
    pub packet_id: u16,
    /// The reason code; it must be one allowed for the packet type.
    pub reason_code: ReasonCode,
    /// Reason String and User Properties.
    pub properties: AckProperties,
}

impl PubAck {
    /// A successful acknowledgement with no properties.
    pub fn new(packet_id: u16) -> Self {
        Self {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn encode_body<S: Sink>(
        &self,
        packet: PacketType,
        s: &mut S,
    ) -> Result<(), Violation> {
        s.u16(non_zero_packet_id(self.packet_id, packet)?);
        write_reason_tail(
            s,
            packet,
            self.reason_code,
            &self.properties,
            self.properties.is_empty(),
        )
    }

    pub(crate) fn decode(packet: PacketType, r: &mut Reader) -> Result<Self, Violation> {
        let packet_id = read_packet_id(r, packet)?;
        let (reason_code, properties) =
            read_reason_tail(r, packet, |r| AckProperties::read(r, packet))?;
        Ok(Self {
            packet_id,
            reason_code,
            properties,
        })
    }
}

/// Reads a packet identifier that must not be 0.
pub(crate) fn read_packet_id(r: &mut Reader, packet: PacketType) -> Result<u16, Violation> {
    non_zero_packet_id(r.u16("Packet Identifier")?, packet)
}

/// Refuses a packet identifier of 0 [MQTT-2.2.1-3].
pub(crate) fn non_zero_packet_id(id: u16, packet: PacketType) -> Result<u16, Violation> {
    if id == 0 {
        Err(Violation::ZeroPacketId { packet })
    } else {
        Ok(id)
    }
}
