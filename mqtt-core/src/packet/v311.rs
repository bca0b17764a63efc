//! The MQTT 3.1.1 wire format (OASIS Standard, 2014) for the same packet types.
//!
//! 3.1.1 lays the packets out as v5.0 does without properties, with one-byte return codes
//! instead of reason codes, and without AUTH. Decoding fills the v5 structs with what 3.1.1 can
//! say (empty properties; CONNACK return codes and SUBACK return codes as the reason codes of
//! the same meaning); encoding refuses whatever 3.1.1 cannot say, so nothing is dropped
//! silently. Identifiers in messages are the 3.1.1 specification's where the rule is its own.

use super::connect::{
    FLAG_CLEAN_START, FLAG_PASSWORD, FLAG_USERNAME, FLAG_WILL, FLAG_WILL_RETAIN, PROTOCOL_NAME,
    read_connect_flags, read_credentials,
};
use super::error::Violation;
use super::properties::{
    AckProperties, ConnAckProperties, ConnectProperties, PublishProperties, SubscribeProperties,
    UnsubscribeProperties, WillProperties,
};
use super::publish::{non_zero_packet_id, read_packet_id};
use super::subscribe::{SubscriptionOptions, read_unsubscribe_filters};
use super::topic::{validate_plain_topic_filter, validate_topic_name};
use super::wire::{Reader, Sink};
use super::{
    ConnAck, Connect, Disconnect, Packet, PacketType, PubAck, Publish, QoS, ReasonCode, SubAck,
    Subscribe, Subscription, UnsubAck, Unsubscribe, Will,
};

/// The protocol level byte of a 3.1.1 CONNECT.
pub(crate) const LEVEL: u8 = 4;

/// CONNACK return codes 0 to 5 and the v5 reason codes of the same meaning.
const CONNACK_CODES: [ReasonCode; 6] = [
    ReasonCode::Success,
    ReasonCode::UnsupportedProtocolVersion,
    ReasonCode::ClientIdentifierNotValid,
    ReasonCode::ServerUnavailable,
    ReasonCode::BadUserNameOrPassword,
    ReasonCode::NotAuthorized,
];

fn not_in_v311(what: &'static str) -> Violation {
    Violation::NotInV311 { what }
}

/// Refuses a v5-only field that holds something.
fn absent<T: Default + PartialEq>(value: &T, what: &'static str) -> Result<(), Violation> {
    if *value == T::default() {
        Ok(())
    } else {
        Err(not_in_v311(what))
    }
}

pub(crate) fn encode_body<S: Sink>(packet: &Packet, s: &mut S) -> Result<(), Violation> {
    match packet {
        Packet::Connect(p) => encode_connect(p, s),
        Packet::ConnAck(p) => encode_connack(p, s),
        Packet::Publish(p) => encode_publish(p, s),
        Packet::PubAck(p) => encode_ack(p, PacketType::PubAck, s),
        Packet::PubRec(p) => encode_ack(p, PacketType::PubRec, s),
        Packet::PubRel(p) => encode_ack(p, PacketType::PubRel, s),
        Packet::PubComp(p) => encode_ack(p, PacketType::PubComp, s),
        Packet::Subscribe(p) => encode_subscribe(p, s),
        Packet::SubAck(p) => encode_suback(p, s),
        Packet::Unsubscribe(p) => encode_unsubscribe(p, s),
        Packet::UnsubAck(p) => {
            absent(&p.properties, "UNSUBACK properties")?;
            if !p.reason_codes.is_empty() {
                return Err(not_in_v311("UNSUBACK reason codes"));
            }
            s.u16(non_zero_packet_id(p.packet_id, PacketType::UnsubAck)?);
            Ok(())
        }
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(p) => {
            absent(&p.properties, "DISCONNECT properties")?;
            if p.reason_code != ReasonCode::Success {
                return Err(not_in_v311("a DISCONNECT reason code"));
            }
            Ok(())
        }
        Packet::Auth(_) => Err(not_in_v311("AUTH")),
    }
}

pub(crate) fn decode_body(ty: PacketType, flags: u8, r: &mut Reader) -> Result<Packet, Violation> {
    Ok(match ty {
        PacketType::Connect => Packet::Connect(Box::new(decode_connect(r)?)),
        PacketType::ConnAck => Packet::ConnAck(Box::new(decode_connack(r)?)),
        PacketType::Publish => Packet::Publish(decode_publish(flags, r)?),
        PacketType::PubAck => Packet::PubAck(PubAck::new(read_packet_id(r, ty)?)),
        PacketType::PubRec => Packet::PubRec(PubAck::new(read_packet_id(r, ty)?)),
        PacketType::PubRel => Packet::PubRel(PubAck::new(read_packet_id(r, ty)?)),
        PacketType::PubComp => Packet::PubComp(PubAck::new(read_packet_id(r, ty)?)),
        PacketType::Subscribe => Packet::Subscribe(decode_subscribe(r)?),
        PacketType::SubAck => Packet::SubAck(decode_suback(r)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(decode_unsubscribe(r)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck {
            packet_id: read_packet_id(r, ty)?,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        }),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
        PacketType::Auth => return Err(not_in_v311("AUTH (packet type 15)")),
    })
}

fn encode_connect<S: Sink>(c: &Connect, s: &mut S) -> Result<(), Violation> {
    absent(&c.properties, "CONNECT properties")?;
    if c.password.is_some() && c.username.is_none() {
        return Err(Violation::PasswordWithoutUserName);
    }
    s.string("Protocol Name", PROTOCOL_NAME)?;
    s.u8(LEVEL);
    s.u8(c.flags());
    s.u16(c.keep_alive);
    s.string("Client Identifier", &c.client_id)?;
    if let Some(will) = &c.will {
        absent(&will.properties, "Will properties")?;
        validate_topic_name(&will.topic).map_err(Violation::InvalidTopicName)?;
        s.string("Will Topic", &will.topic)?;
        s.binary("Will Message", &will.payload)?;
    }
    if let Some(username) = &c.username {
        s.string("User Name", username)?;
    }
    if let Some(password) = &c.password {
        s.binary("Password", password)?;
    }
    Ok(())
}

fn decode_connect(r: &mut Reader) -> Result<Connect, Violation> {
    let name = r.string("Protocol Name")?;
    if name != PROTOCOL_NAME {
        return Err(Violation::InvalidProtocolName(name));
    }
    let level = r.u8("Protocol Level")?;
    if level != LEVEL {
        return Err(Violation::UnsupportedProtocolVersion(level));
    }
    let (flags, will_qos) = read_connect_flags(r)?;
    let (has_will, will_retain) = (flags & FLAG_WILL != 0, flags & FLAG_WILL_RETAIN != 0);
    if flags & FLAG_PASSWORD != 0 && flags & FLAG_USERNAME == 0 {
        return Err(Violation::PasswordWithoutUserName);
    }
    let keep_alive = r.u16("Keep Alive")?;
    let client_id = r.string("Client Identifier")?;
    let will = if has_will {
        let topic = r.string("Will Topic")?;
        validate_topic_name(&topic).map_err(Violation::InvalidTopicName)?;
        Some(Will {
            topic,
            payload: r.binary("Will Message")?,
            qos: will_qos,
            retain: will_retain,
            properties: WillProperties::default(),
        })
    } else {
        None
    };
    let (username, password) = read_credentials(r, flags)?;
    Ok(Connect {
        clean_start: flags & FLAG_CLEAN_START != 0,
        keep_alive,
        properties: ConnectProperties::default(),
        client_id,
        will,
        username,
        password,
    })
}

fn encode_connack<S: Sink>(c: &ConnAck, s: &mut S) -> Result<(), Violation> {
    absent(&c.properties, "CONNACK properties")?;
    let code = CONNACK_CODES
        .iter()
        .position(|&known| known == c.reason_code)
        .ok_or(not_in_v311("this CONNACK reason code"))?;
    if c.session_present && code != 0 {
        return Err(Violation::V311SessionPresentOnRefusal(code as u8));
    }
    s.u8(u8::from(c.session_present));
    s.u8(code as u8);
    Ok(())
}

fn decode_connack(r: &mut Reader) -> Result<ConnAck, Violation> {
    let flags = r.u8("Connect Acknowledge Flags")?;
    if flags & 0xFE != 0 {
        return Err(Violation::ConnAckReservedFlags);
    }
    let code = r.u8("Connect Return code")?;
    let reason_code =
        *CONNACK_CODES
            .get(usize::from(code))
            .ok_or(Violation::ReservedReturnCode {
                packet: PacketType::ConnAck,
                code,
            })?;
    let session_present = flags & 0x01 != 0;
    if session_present && code != 0 {
        return Err(Violation::V311SessionPresentOnRefusal(code));
    }
    Ok(ConnAck {
        session_present,
        reason_code,
        properties: ConnAckProperties::default(),
    })
}

pub(super) fn encode_publish<S: Sink>(p: &Publish, s: &mut S) -> Result<(), Violation> {
    absent(&p.properties, "PUBLISH properties")?;
    if p.qos == QoS::AtMostOnce {
        if p.dup {
            return Err(Violation::DupOnQos0);
        }
        if p.packet_id != 0 {
            return Err(Violation::PacketIdOnQos0 {
                packet_id: p.packet_id,
            });
        }
    }
    // No Topic Alias in 3.1.1: the Topic Name is never empty.
    validate_topic_name(&p.topic).map_err(Violation::InvalidTopicName)?;
    s.string("Topic Name", &p.topic)?;
    if p.qos != QoS::AtMostOnce {
        s.u16(non_zero_packet_id(p.packet_id, PacketType::Publish)?);
    }
    s.payload(&p.payload);
    Ok(())
}

fn decode_publish(flags: u8, r: &mut Reader) -> Result<Publish, Violation> {
    let qos = QoS::decode((flags >> 1) & 0x03, "PUBLISH QoS")?;
    let dup = flags & 0x08 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(Violation::DupOnQos0);
    }
    let topic = r.string("Topic Name")?;
    validate_topic_name(&topic).map_err(Violation::InvalidTopicName)?;
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        read_packet_id(r, PacketType::Publish)?
    };
    Ok(Publish {
        dup,
        qos,
        retain: flags & 0x01 != 0,
        topic,
        packet_id,
        properties: PublishProperties::default(),
        payload: r.rest(),
    })
}

fn encode_ack<S: Sink>(p: &PubAck, packet: PacketType, s: &mut S) -> Result<(), Violation> {
    absent(&p.properties, "acknowledgement properties")?;
    if p.reason_code != ReasonCode::Success {
        return Err(not_in_v311(
            "a reason code on PUBACK, PUBREC, PUBREL or PUBCOMP",
        ));
    }
    s.u16(non_zero_packet_id(p.packet_id, packet)?);
    Ok(())
}

fn encode_subscribe<S: Sink>(p: &Subscribe, s: &mut S) -> Result<(), Violation> {
    absent(&p.properties, "SUBSCRIBE properties")?;
    if p.subscriptions.is_empty() {
        return Err(Violation::NoTopicFilters(PacketType::Subscribe));
    }
    s.u16(non_zero_packet_id(p.packet_id, PacketType::Subscribe)?);
    for subscription in &p.subscriptions {
        let only_qos = SubscriptionOptions {
            qos: subscription.options.qos,
            ..SubscriptionOptions::default()
        };
        if subscription.options != only_qos {
            return Err(not_in_v311(
                "No Local, Retain As Published and Retain Handling",
            ));
        }
        validate_plain_topic_filter(&subscription.filter).map_err(Violation::InvalidTopicFilter)?;
        s.string("Topic Filter", &subscription.filter)?;
        s.u8(subscription.options.qos as u8);
    }
    Ok(())
}

fn decode_subscribe(r: &mut Reader) -> Result<Subscribe, Violation> {
    let packet_id = read_packet_id(r, PacketType::Subscribe)?;
    let mut subscriptions = Vec::new();
    while !r.is_empty() {
        let filter = r.string("Topic Filter")?;
        validate_plain_topic_filter(&filter).map_err(Violation::InvalidTopicFilter)?;
        let byte = r.u8("Requested QoS")?;
        if byte & 0xFC != 0 {
            return Err(Violation::RequestedQosReserved(byte));
        }
        subscriptions.push(Subscription::new(
            filter,
            QoS::decode(byte, "Requested QoS")?,
        ));
    }
    if subscriptions.is_empty() {
        return Err(Violation::NoTopicFilters(PacketType::Subscribe));
    }
    Ok(Subscribe {
        packet_id,
        properties: SubscribeProperties::default(),
        subscriptions,
    })
}

/// SUBACK return codes: granted QoS 0, 1, 2, or 0x80 Failure; the same bytes as the v5
/// reason codes of the same meaning.
fn suback_code(code: u8) -> Option<ReasonCode> {
    match code {
        0x00 => Some(ReasonCode::Success),
        0x01 => Some(ReasonCode::GrantedQos1),
        0x02 => Some(ReasonCode::GrantedQos2),
        0x80 => Some(ReasonCode::UnspecifiedError),
        _ => None,
    }
}

fn encode_suback<S: Sink>(p: &SubAck, s: &mut S) -> Result<(), Violation> {
    absent(&p.properties, "SUBACK properties")?;
    if p.reason_codes.is_empty() {
        return Err(Violation::NoReasonCodes(PacketType::SubAck));
    }
    s.u16(non_zero_packet_id(p.packet_id, PacketType::SubAck)?);
    for &code in &p.reason_codes {
        if suback_code(code.value()) != Some(code) {
            return Err(not_in_v311("this SUBACK reason code"));
        }
        s.u8(code.value());
    }
    Ok(())
}

fn decode_suback(r: &mut Reader) -> Result<SubAck, Violation> {
    let packet_id = read_packet_id(r, PacketType::SubAck)?;
    let mut reason_codes = Vec::new();
    while !r.is_empty() {
        let code = r.u8("SUBACK return code")?;
        reason_codes.push(suback_code(code).ok_or(Violation::ReservedReturnCode {
            packet: PacketType::SubAck,
            code,
        })?);
    }
    if reason_codes.is_empty() {
        return Err(Violation::NoReasonCodes(PacketType::SubAck));
    }
    Ok(SubAck {
        packet_id,
        properties: AckProperties::default(),
        reason_codes,
    })
}

fn encode_unsubscribe<S: Sink>(p: &Unsubscribe, s: &mut S) -> Result<(), Violation> {
    absent(&p.properties, "UNSUBSCRIBE properties")?;
    if p.filters.is_empty() {
        return Err(Violation::NoTopicFilters(PacketType::Unsubscribe));
    }
    s.u16(non_zero_packet_id(p.packet_id, PacketType::Unsubscribe)?);
    for filter in &p.filters {
        validate_plain_topic_filter(filter).map_err(Violation::InvalidTopicFilter)?;
        s.string("Topic Filter", filter)?;
    }
    Ok(())
}

fn decode_unsubscribe(r: &mut Reader) -> Result<Unsubscribe, Violation> {
    Ok(Unsubscribe {
        packet_id: read_packet_id(r, PacketType::Unsubscribe)?,
        properties: UnsubscribeProperties::default(),
        filters: read_unsubscribe_filters(r, validate_plain_topic_filter)?,
    })
}
