//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (sections 3.8 to 3.11).

use super::error::{TopicError, Violation};
use super::properties::{AckProperties, SubscribeProperties, UnsubscribeProperties};
use super::publish::{non_zero_packet_id, read_packet_id};
use super::reason::{check_reason_code, read_reason_code};
use super::topic::{is_shared_subscription, validate_topic_filter};
use super::wire::{Encode, Reader, Sink};
use super::{PacketType, QoS, ReasonCode};

/// When the server sends retained messages for a new subscription (section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist.
    SendAtNewSubscribe = 1,
    /// 2: never send them at subscribe time.
    DoNotSend = 2,
}

/// The Subscription Options byte (section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// The highest QoS the server may deliver at.
    pub qos: QoS,
    /// Do not receive messages this client published itself.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    /// When retained messages are sent.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    fn to_byte(self) -> u8 {
        (self.qos as u8)
            | (u8::from(self.no_local) << 2)
            | (u8::from(self.retain_as_published) << 3)
            | ((self.retain_handling as u8) << 4)
    }

    fn from_byte(byte: u8) -> Result<Self, Violation> {
        if byte & 0xC0 != 0 {
            return Err(Violation::SubscriptionOptionsReserved);
        }
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtNewSubscribe,
            2 => RetainHandling::DoNotSend,
            _ => return Err(Violation::InvalidRetainHandling),
        };
        Ok(Self {
            qos: QoS::decode(byte & 0x03, "Subscription Options QoS")?,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }
}

/// One Topic Filter and its options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The Topic Filter.
    pub filter: String,
    /// The options.
    pub options: SubscriptionOptions,
}

impl Subscription {
    /// A subscription to `filter` at `qos` with default options.
    pub fn new(filter: impl Into<String>, qos: QoS) -> Self {
        Self {
            filter: filter.into(),
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        }
    }

    fn check(&self) -> Result<(), Violation> {
        validate_topic_filter(&self.filter).map_err(Violation::InvalidTopicFilter)?;
        if self.options.no_local && is_shared_subscription(&self.filter) {
            return Err(Violation::NoLocalOnSharedSubscription(self.filter.clone()));
        }
        Ok(())
    }
}

/// SUBSCRIBE: one or more subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The packet identifier (non-zero).
    pub packet_id: u16,
    /// The SUBSCRIBE properties.
    pub properties: SubscribeProperties,
    /// The subscriptions, at least one.
    pub subscriptions: Vec<Subscription>,
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, Violation> {
        let packet_id = read_packet_id(r, PacketType::Subscribe)?;
        let properties = SubscribeProperties::read(r)?;
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = r.string("Topic Filter")?;
            let options = SubscriptionOptions::from_byte(r.u8("Subscription Options")?)?;
            let subscription = Subscription { filter, options };
            subscription.check()?;
            subscriptions.push(subscription);
        }
        if subscriptions.is_empty() {
            return Err(Violation::NoTopicFilters(PacketType::Subscribe));
        }
        Ok(Self {
            packet_id,
            properties,
            subscriptions,
        })
    }
}

impl Encode for Subscribe {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        if self.subscriptions.is_empty() {
            return Err(Violation::NoTopicFilters(PacketType::Subscribe));
        }
        s.u16(non_zero_packet_id(self.packet_id, PacketType::Subscribe)?);
        s.length_prefixed("Property Length", &self.properties)?;
        for subscription in &self.subscriptions {
            subscription.check()?;
            s.string("Topic Filter", &subscription.filter)?;
            s.u8(subscription.options.to_byte());
        }
        Ok(())
    }
}

/// UNSUBSCRIBE: one or more Topic Filters to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The packet identifier (non-zero).
    pub packet_id: u16,
    /// The UNSUBSCRIBE properties.
    pub properties: UnsubscribeProperties,
    /// The Topic Filters, at least one.
    pub filters: Vec<String>,
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, Violation> {
        let packet_id = read_packet_id(r, PacketType::Unsubscribe)?;
        let properties = UnsubscribeProperties::read(r)?;
        Ok(Self {
            packet_id,
            properties,
            filters: read_unsubscribe_filters(r, validate_topic_filter)?,
        })
    }
}

impl Encode for Unsubscribe {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        if self.filters.is_empty() {
            return Err(Violation::NoTopicFilters(PacketType::Unsubscribe));
        }
        s.u16(non_zero_packet_id(self.packet_id, PacketType::Unsubscribe)?);
        s.length_prefixed("Property Length", &self.properties)?;
        for filter in &self.filters {
            validate_topic_filter(filter).map_err(Violation::InvalidTopicFilter)?;
            s.string("Topic Filter", filter)?;
        }
        Ok(())
    }
}

/// Reads the Topic Filters of an UNSUBSCRIBE payload: at least one, each valid by `validate`.
pub(super) fn read_unsubscribe_filters(
    r: &mut Reader,
    validate: fn(&str) -> Result<(), TopicError>,
) -> Result<Vec<String>, Violation> {
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("Topic Filter")?;
        validate(&filter).map_err(Violation::InvalidTopicFilter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(Violation::NoTopicFilters(PacketType::Unsubscribe));
    }
    Ok(filters)
}

/// SUBACK: one reason code per subscription, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The identifier of the SUBSCRIBE answered.
    pub packet_id: u16,
    /// Reason String and User Properties.
    pub properties: AckProperties,
    /// Granted QoS or failure, one per subscription.
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBACK: one reason code per Topic Filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The identifier of the UNSUBSCRIBE answered.
    pub packet_id: u16,
    /// Reason String and User Properties.
    pub properties: AckProperties,
    /// Success or failure, one per Topic Filter.
    pub reason_codes: Vec<ReasonCode>,
}

/// Reads the shared layout of SUBACK and UNSUBACK.
fn decode_ack_list(
    packet: PacketType,
    r: &mut Reader,
) -> Result<(u16, AckProperties, Vec<ReasonCode>), Violation> {
    let packet_id = read_packet_id(r, packet)?;
    let properties = AckProperties::read(r, packet)?;
    let mut reason_codes = Vec::new();
    while !r.is_empty() {
        reason_codes.push(read_reason_code(r, packet)?);
    }
    if reason_codes.is_empty() {
        return Err(Violation::NoReasonCodes(packet));
    }
    Ok((packet_id, properties, reason_codes))
}

/// Writes the shared layout of SUBACK and UNSUBACK.
fn encode_ack_list<S: Sink>(
    packet: PacketType,
    packet_id: u16,
    properties: &AckProperties,
    reason_codes: &[ReasonCode],
    s: &mut S,
) -> Result<(), Violation> {
    if reason_codes.is_empty() {
        return Err(Violation::NoReasonCodes(packet));
    }
    s.u16(non_zero_packet_id(packet_id, packet)?);
    s.length_prefixed("Property Length", properties)?;
    for &code in reason_codes {
        check_reason_code(code, packet)?;
        s.u8(code.value());
    }
    Ok(())
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, Violation> {
        let (packet_id, properties, reason_codes) = decode_ack_list(PacketType::SubAck, r)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }
}

impl Encode for SubAck {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        encode_ack_list(
            PacketType::SubAck,
            self.packet_id,
            &self.properties,
            &self.reason_codes,
            s,
        )
    }
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, Violation> {
        let (packet_id, properties, reason_codes) = decode_ack_list(PacketType::UnsubAck, r)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }
}

impl Encode for UnsubAck {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        encode_ack_list(
            PacketType::UnsubAck,
            self.packet_id,
            &self.properties,
            &self.reason_codes,
            s,
        )
    }
}
