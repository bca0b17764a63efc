//! DISCONNECT (section 3.14) and AUTH (section 3.15).

use super::error::Violation;
use super::properties::{AuthProperties, DisconnectProperties};
use super::reason::{read_reason_tail, write_reason_tail};
use super::wire::{Encode, Reader, Sink};
use super::{PacketType, ReasonCode};

/// DISCONNECT: the last packet on a connection, from either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Why the connection ends; 0x00 is a normal disconnection.
    pub reason_code: ReasonCode,
    /// The DISCONNECT properties.
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, Violation> {
        let (reason_code, properties) =
            read_reason_tail(r, PacketType::Disconnect, DisconnectProperties::read)?;
        Ok(Self {
            reason_code,
            properties,
        })
    }
}

impl Encode for Disconnect {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        write_reason_tail(
            s,
            PacketType::Disconnect,
            self.reason_code,
            &self.properties,
            self.properties.is_empty(),
        )
    }
}

/// AUTH: one step of enhanced authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// The AUTH properties.
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, Violation> {
        let (reason_code, properties) =
            read_reason_tail(r, PacketType::Auth, AuthProperties::read)?;
        Ok(Self {
            reason_code,
            properties,
        })
    }
}

impl Encode for Auth {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        write_reason_tail(
            s,
            PacketType::Auth,
            self.reason_code,
            &self.properties,
            self.properties.is_empty(),
        )
    }
}
