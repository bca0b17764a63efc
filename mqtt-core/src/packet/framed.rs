//! What the codec frames: any [`Packet`], and a PUBLISH by reference, so that the session
//! measures and encodes the publishes it keeps without copying them into a `Packet`.

use super::wire::{Encode, Sink};
use super::{Packet, PacketType, ProtocolVersion, Publish, Violation, v311};

/// What the codec frames: a packet's type, first byte and body.
pub(super) trait Framed {
    fn packet_type(&self) -> PacketType;
    fn first_byte(&self) -> u8;
    fn encode_body<S: Sink>(&self, protocol: ProtocolVersion, s: &mut S) -> Result<(), Violation>;
}

impl Framed for Packet {
    fn packet_type(&self) -> PacketType {
        Packet::packet_type(self)
    }
    fn first_byte(&self) -> u8 {
        Packet::first_byte(self)
    }
    fn encode_body<S: Sink>(&self, protocol: ProtocolVersion, s: &mut S) -> Result<(), Violation> {
        Packet::encode_body(self, protocol, s)
    }
}

/// A PUBLISH framed by reference: the session measures and encodes the publishes it keeps
/// without copying them into a [`Packet`].
pub(super) struct PublishRef<'a>(pub(super) &'a Publish);

impl Framed for PublishRef<'_> {
    fn packet_type(&self) -> PacketType {
        PacketType::Publish
    }
    fn first_byte(&self) -> u8 {
        ((PacketType::Publish as u8) << 4) | self.0.flags()
    }
    fn encode_body<S: Sink>(&self, protocol: ProtocolVersion, s: &mut S) -> Result<(), Violation> {
        match protocol {
            ProtocolVersion::V311 => v311::encode_publish(self.0, s),
            _ => self.0.encode(s),
        }
    }
}
