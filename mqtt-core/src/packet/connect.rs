//! CONNECT (section 3.1) and CONNACK (section 3.2).

use bytes::Bytes;

use super::error::Violation;
use super::properties::{ConnAckProperties, ConnectProperties, WillProperties};
use super::reason::{check_reason_code, read_reason_code};
use super::topic::validate_topic_name;
use super::wire::{Encode, Reader, Sink};
use super::{PacketType, ProtocolVersion, QoS, ReasonCode};

pub(super) const PROTOCOL_NAME: &str = "MQTT";

pub(super) const FLAG_USERNAME: u8 = 0x80;
pub(super) const FLAG_PASSWORD: u8 = 0x40;
pub(super) const FLAG_WILL_RETAIN: u8 = 0x20;
pub(super) const FLAG_WILL: u8 = 0x04;
pub(super) const FLAG_CLEAN_START: u8 = 0x02;
pub(super) const FLAG_RESERVED: u8 = 0x01;

/// The Will Message: published by the server when the connection ends without a normal
/// DISCONNECT (section 3.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The Will Topic (a Topic Name).
    pub topic: String,
    /// The Will Payload.
    pub payload: Bytes,
    /// The QoS the Will is published at.
    pub qos: QoS,
    /// Whether the Will is published retained.
    pub retain: bool,
    /// The Will properties.
    pub properties: WillProperties,
}

impl Will {
    /// A QoS 0, non-retained Will with no properties.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties::default(),
        }
    }
}

/// CONNECT: the first packet a client sends.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// Clean Start: discard any existing session.
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// The CONNECT properties.
    pub properties: ConnectProperties,
    /// The client identifier; empty asks the server to assign one.
    pub client_id: String,
    /// The Will Message, if any.
    pub will: Option<Will>,
    /// The user name, if any.
    pub username: Option<String>,
    /// The password, if any (binary data in MQTT v5).
    pub password: Option<Bytes>,
}

crate::secret::debug_hiding_secrets!(Connect {
    clean_start,
    keep_alive,
    properties,
    client_id,
    will,
    username
} hidden { password });

impl Connect {
    /// A CONNECT with Clean Start, a 60 s keep alive and nothing else.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            clean_start: true,
            keep_alive: 60,
            properties: ConnectProperties::default(),
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
        }
    }

    pub(super) fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | ((will.qos as u8) << 3);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.clean_start {
            flags |= FLAG_CLEAN_START;
        }
        flags
    }

    pub(crate) fn encode_body<S: Sink>(
        &self,
        protocol: ProtocolVersion,
        s: &mut S,
    ) -> Result<(), Violation> {
        s.string("Protocol Name", PROTOCOL_NAME)?;
        s.u8(protocol.level());
        s.u8(self.flags());
        s.u16(self.keep_alive);
        s.length_prefixed("Property Length", &self.properties)?;
        s.string("Client Identifier", &self.client_id)?;
        if let Some(will) = &self.will {
            s.length_prefixed("Will Property Length", &will.properties)?;
            validate_topic_name(&will.topic).map_err(Violation::InvalidTopicName)?;
            s.string("Will Topic", &will.topic)?;
            s.binary("Will Payload", &will.payload)?;
        }
        if let Some(username) = &self.username {
            s.string("User Name", username)?;
        }
        if let Some(password) = &self.password {
            s.binary("Password", password)?;
        }
        Ok(())
    }

    pub(crate) fn decode(protocol: ProtocolVersion, r: &mut Reader) -> Result<Self, Violation> {
        let name = r.string("Protocol Name")?;
        if name != PROTOCOL_NAME {
            return Err(Violation::InvalidProtocolName(name));
        }
        let level = r.u8("Protocol Version")?;
        if level != protocol.level() {
            return Err(Violation::UnsupportedProtocolVersion(level));
        }
        let (flags, will_qos) = read_connect_flags(r)?;
        let (has_will, will_retain) = (flags & FLAG_WILL != 0, flags & FLAG_WILL_RETAIN != 0);
        let keep_alive = r.u16("Keep Alive")?;
        let properties = ConnectProperties::read(r)?;
        let client_id = r.string("Client Identifier")?;
        let will = if has_will {
            let properties = WillProperties::read(r)?;
            let topic = r.string("Will Topic")?;
            validate_topic_name(&topic).map_err(Violation::InvalidTopicName)?;
            let payload = r.binary("Will Payload")?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let (username, password) = read_credentials(r, flags)?;
        Ok(Self {
            clean_start: flags & FLAG_CLEAN_START != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }
}

/// Reads the Connect Flags and checks them as both versions do: the reserved bit, and Will QoS
/// and Will Retain only with the Will Flag. Returns the flags and the Will QoS.
pub(super) fn read_connect_flags(r: &mut Reader) -> Result<(u8, QoS), Violation> {
    let flags = r.u8("Connect Flags")?;
    if flags & FLAG_RESERVED != 0 {
        return Err(Violation::ConnectReservedFlag);
    }
    let will_qos = QoS::decode((flags >> 3) & 0x03, "Will QoS")?;
    if flags & FLAG_WILL == 0 && (will_qos != QoS::AtMostOnce || flags & FLAG_WILL_RETAIN != 0) {
        return Err(Violation::WillFieldsWithoutWill);
    }
    Ok((flags, will_qos))
}

/// Reads the User Name and Password the flags announce.
pub(super) fn read_credentials(
    r: &mut Reader,
    flags: u8,
) -> Result<(Option<String>, Option<Bytes>), Violation> {
    let username = if flags & FLAG_USERNAME != 0 {
        Some(r.string("User Name")?)
    } else {
        None
    };
    let password = if flags & FLAG_PASSWORD != 0 {
        Some(r.binary("Password")?)
    } else {
        None
    };
    Ok((username, password))
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session.
    pub session_present: bool,
    /// The Connect Reason Code; 0x80 and above mean refused.
    pub reason_code: ReasonCode,
    /// The CONNACK properties.
    pub properties: ConnAckProperties,
}

impl ConnAck {
    /// A successful CONNACK with no properties.
    pub fn new(session_present: bool) -> Self {
        Self {
            session_present,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties::default(),
        }
    }

    fn check(&self) -> Result<(), Violation> {
        check_reason_code(self.reason_code, PacketType::ConnAck)?;
        if self.session_present && self.reason_code != ReasonCode::Success {
            return Err(Violation::SessionPresentOnError(self.reason_code.value()));
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, Violation> {
        let flags = r.u8("Connect Acknowledge Flags")?;
        if flags & 0xFE != 0 {
            return Err(Violation::ConnAckReservedFlags);
        }
        // A 3.1.1 server refusing protocol level 5 answers with its own CONNACK: two bytes,
        // return code 1. Say so, rather than call it malformed.
        if r.remaining() == 1 {
            let code = r.u8("Connect Return code")?;
            return Err(match code {
                0x01 => Violation::ServerSpeaksV311,
                _ => Violation::Truncated {
                    field: "Property Length",
                },
            });
        }
        let reason_code = read_reason_code(r, PacketType::ConnAck)?;
        let properties = ConnAckProperties::read(r)?;
        let connack = Self {
            session_present: flags & 0x01 != 0,
            reason_code,
            properties,
        };
        connack.check()?;
        Ok(connack)
    }
}

impl Encode for ConnAck {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        self.check()?;
        s.u8(u8::from(self.session_present));
        s.u8(self.reason_code.value());
        s.length_prefixed("Property Length", &self.properties)
    }
}
