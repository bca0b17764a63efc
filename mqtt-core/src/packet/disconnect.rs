//! DISCONNECT (section 3.14) and AUTH (section 3.15).

use super::error::Violation;
use super::properties::{AuthProperties, DisconnectProperties};
use super::reason::{check_reason_code, read_reason_code};
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
        // A Remaining Length of 0 means Normal disconnection; below 2, no properties.
        let reason_code = if r.is_empty() {
            ReasonCode::NORMAL_DISCONNECTION
        } else {
            read_reason_code(r, PacketType::Disconnect)?
        };
        let properties = if r.is_empty() {
            DisconnectProperties::default()
        } else {
            DisconnectProperties::read(r)?
        };
        Ok(Self {
            reason_code,
            properties,
        })
    }
}

impl Encode for Disconnect {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        check_reason_code(self.reason_code, PacketType::Disconnect)?;
        if self.properties.is_empty() {
            if self.reason_code != ReasonCode::NORMAL_DISCONNECTION {
                s.u8(self.reason_code.value());
            }
            return Ok(());
        }
        s.u8(self.reason_code.value());
        s.length_prefixed("Property Length", &self.properties)
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
        let reason_code = if r.is_empty() {
            ReasonCode::Success
        } else {
            read_reason_code(r, PacketType::Auth)?
        };
        let properties = if r.is_empty() {
            AuthProperties::default()
        } else {
            AuthProperties::read(r)?
        };
        Ok(Self {
            reason_code,
            properties,
        })
    }
}

impl Encode for Auth {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        check_reason_code(self.reason_code, PacketType::Auth)?;
        // Both may be left out only together, when Success carries no properties.
        if self.reason_code == ReasonCode::Success && self.properties.is_empty() {
            return Ok(());
        }
        s.u8(self.reason_code.value());
        s.length_prefixed("Property Length", &self.properties)
    }
}
