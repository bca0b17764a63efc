//! One property read and checked against the rules every packet shares, a block of them, and
//! the writers the packet families use.

use bytes::Bytes;

use super::{PayloadFormat, PropertyId, UserProperty};
use crate::packet::QoS;
use crate::packet::error::Violation;
use crate::packet::topic::validate_topic_name;
use crate::packet::wire::{MAX_VARINT, Reader, Sink};

/// One decoded property with its value checked.
pub(super) enum Property {
    PayloadFormatIndicator(PayloadFormat),
    MessageExpiryInterval(u32),
    ContentType(String),
    ResponseTopic(String),
    CorrelationData(Bytes),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(String),
    ServerKeepAlive(u16),
    AuthenticationMethod(String),
    AuthenticationData(Bytes),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(String),
    ServerReference(String),
    ReasonString(String),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQos(QoS),
    RetainAvailable(bool),
    User(UserProperty),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

pub(super) fn invalid(property: PropertyId, value: u32, rule: &'static str) -> Violation {
    Violation::InvalidPropertyValue {
        property,
        value,
        rule,
    }
}

pub(super) fn flag(property: PropertyId, value: u8) -> Result<bool, Violation> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(invalid(property, other.into(), "the value must be 0 or 1")),
    }
}

pub(super) fn non_zero_u16(property: PropertyId, value: u16) -> Result<u16, Violation> {
    if value == 0 {
        let rule = match property {
            PropertyId::TopicAlias => "a Topic Alias of 0 is not permitted [MQTT-3.3.2-8]",
            _ => "0 is a Protocol Error",
        };
        return Err(invalid(property, 0, rule));
    }
    Ok(value)
}

pub(super) fn non_zero_u32(property: PropertyId, value: u32) -> Result<u32, Violation> {
    if value == 0 {
        return Err(invalid(property, 0, "0 is a Protocol Error"));
    }
    Ok(value)
}

pub(super) fn subscription_identifier(value: u32) -> Result<u32, Violation> {
    if value == 0 || value > MAX_VARINT {
        return Err(invalid(
            PropertyId::SubscriptionIdentifier,
            value,
            "a Subscription Identifier lies in 1..=268,435,455",
        ));
    }
    Ok(value)
}

pub(super) fn maximum_qos(qos: QoS) -> Result<QoS, Violation> {
    match qos {
        QoS::ExactlyOnce => Err(invalid(
            PropertyId::MaximumQos,
            2,
            "Maximum QoS is 0 or 1; servers supporting QoS 2 omit it",
        )),
        other => Ok(other),
    }
}

pub(super) fn response_topic(topic: &str) -> Result<(), Violation> {
    validate_topic_name(topic).map_err(Violation::InvalidTopicName)
}

impl Property {
    fn read(id: PropertyId, r: &mut Reader) -> Result<Self, Violation> {
        use PropertyId as Id;
        Ok(match id {
            Id::PayloadFormatIndicator => match r.u8("Payload Format Indicator")? {
                0 => Self::PayloadFormatIndicator(PayloadFormat::Unspecified),
                1 => Self::PayloadFormatIndicator(PayloadFormat::Utf8),
                other => return Err(invalid(id, other.into(), "the value must be 0 or 1")),
            },
            Id::MessageExpiryInterval => {
                Self::MessageExpiryInterval(r.u32("Message Expiry Interval")?)
            }
            Id::ContentType => Self::ContentType(r.string("Content Type")?),
            Id::ResponseTopic => {
                let topic = r.string("Response Topic")?;
                response_topic(&topic)?;
                Self::ResponseTopic(topic)
            }
            Id::CorrelationData => Self::CorrelationData(r.binary("Correlation Data")?),
            Id::SubscriptionIdentifier => Self::SubscriptionIdentifier(subscription_identifier(
                r.varint("Subscription Identifier")?,
            )?),
            Id::SessionExpiryInterval => {
                Self::SessionExpiryInterval(r.u32("Session Expiry Interval")?)
            }
            Id::AssignedClientIdentifier => {
                Self::AssignedClientIdentifier(r.string("Assigned Client Identifier")?)
            }
            Id::ServerKeepAlive => Self::ServerKeepAlive(r.u16("Server Keep Alive")?),
            Id::AuthenticationMethod => {
                Self::AuthenticationMethod(r.string("Authentication Method")?)
            }
            Id::AuthenticationData => Self::AuthenticationData(r.binary("Authentication Data")?),
            Id::RequestProblemInformation => {
                Self::RequestProblemInformation(flag(id, r.u8("Request Problem Information")?)?)
            }
            Id::WillDelayInterval => Self::WillDelayInterval(r.u32("Will Delay Interval")?),
            Id::RequestResponseInformation => {
                Self::RequestResponseInformation(flag(id, r.u8("Request Response Information")?)?)
            }
            Id::ResponseInformation => Self::ResponseInformation(r.string("Response Information")?),
            Id::ServerReference => Self::ServerReference(r.string("Server Reference")?),
            Id::ReasonString => Self::ReasonString(r.string("Reason String")?),
            Id::ReceiveMaximum => {
                Self::ReceiveMaximum(non_zero_u16(id, r.u16("Receive Maximum")?)?)
            }
            Id::TopicAliasMaximum => Self::TopicAliasMaximum(r.u16("Topic Alias Maximum")?),
            Id::TopicAlias => Self::TopicAlias(non_zero_u16(id, r.u16("Topic Alias")?)?),
            Id::MaximumQos => match r.u8("Maximum QoS")? {
                0 => Self::MaximumQos(QoS::AtMostOnce),
                1 => Self::MaximumQos(QoS::AtLeastOnce),
                other => {
                    return Err(invalid(
                        id,
                        other.into(),
                        "Maximum QoS is 0 or 1; servers supporting QoS 2 omit it",
                    ));
                }
            },
            Id::RetainAvailable => Self::RetainAvailable(flag(id, r.u8("Retain Available")?)?),
            Id::UserProperty => {
                let name = r.string("User Property name")?;
                let value = r.string("User Property value")?;
                Self::User(UserProperty { name, value })
            }
            Id::MaximumPacketSize => {
                Self::MaximumPacketSize(non_zero_u32(id, r.u32("Maximum Packet Size")?)?)
            }
            Id::WildcardSubscriptionAvailable => Self::WildcardSubscriptionAvailable(flag(
                id,
                r.u8("Wildcard Subscription Available")?,
            )?),
            Id::SubscriptionIdentifierAvailable => Self::SubscriptionIdentifierAvailable(flag(
                id,
                r.u8("Subscription Identifier Available")?,
            )?),
            Id::SharedSubscriptionAvailable => {
                Self::SharedSubscriptionAvailable(flag(id, r.u8("Shared Subscription Available")?)?)
            }
        })
    }

    fn id(&self) -> PropertyId {
        use PropertyId as Id;
        match self {
            Self::PayloadFormatIndicator(_) => Id::PayloadFormatIndicator,
            Self::MessageExpiryInterval(_) => Id::MessageExpiryInterval,
            Self::ContentType(_) => Id::ContentType,
            Self::ResponseTopic(_) => Id::ResponseTopic,
            Self::CorrelationData(_) => Id::CorrelationData,
            Self::SubscriptionIdentifier(_) => Id::SubscriptionIdentifier,
            Self::SessionExpiryInterval(_) => Id::SessionExpiryInterval,
            Self::AssignedClientIdentifier(_) => Id::AssignedClientIdentifier,
            Self::ServerKeepAlive(_) => Id::ServerKeepAlive,
            Self::AuthenticationMethod(_) => Id::AuthenticationMethod,
            Self::AuthenticationData(_) => Id::AuthenticationData,
            Self::RequestProblemInformation(_) => Id::RequestProblemInformation,
            Self::WillDelayInterval(_) => Id::WillDelayInterval,
            Self::RequestResponseInformation(_) => Id::RequestResponseInformation,
            Self::ResponseInformation(_) => Id::ResponseInformation,
            Self::ServerReference(_) => Id::ServerReference,
            Self::ReasonString(_) => Id::ReasonString,
            Self::ReceiveMaximum(_) => Id::ReceiveMaximum,
            Self::TopicAliasMaximum(_) => Id::TopicAliasMaximum,
            Self::TopicAlias(_) => Id::TopicAlias,
            Self::MaximumQos(_) => Id::MaximumQos,
            Self::RetainAvailable(_) => Id::RetainAvailable,
            Self::User(_) => Id::UserProperty,
            Self::MaximumPacketSize(_) => Id::MaximumPacketSize,
            Self::WildcardSubscriptionAvailable(_) => Id::WildcardSubscriptionAvailable,
            Self::SubscriptionIdentifierAvailable(_) => Id::SubscriptionIdentifierAvailable,
            Self::SharedSubscriptionAvailable(_) => Id::SharedSubscriptionAvailable,
        }
    }

    pub(super) fn not_allowed(&self, packet: &'static str) -> Violation {
        Violation::PropertyNotAllowed {
            property: self.id(),
            packet,
        }
    }
}

/// Reads a property block (its length, then its properties) and hands each property to `each`.
/// Rejects unknown identifiers and any property repeated where it may appear once; only User
/// Property, and Subscription Identifier where `repeatable_subscription_id`, may repeat.
pub(super) fn read_block(
    r: &mut Reader,
    repeatable_subscription_id: bool,
    mut each: impl FnMut(Property) -> Result<(), Violation>,
) -> Result<(), Violation> {
    let len = r.varint("Property Length")?;
    let mut block = Reader::new(r.take(len as usize, "properties")?);
    let mut seen = 0u64;
    while !block.is_empty() {
        let raw = block.varint("property identifier")?;
        let id = PropertyId::from_u32(raw).ok_or(Violation::UnknownProperty { id: raw })?;
        let repeatable = id == PropertyId::UserProperty
            || (id == PropertyId::SubscriptionIdentifier && repeatable_subscription_id);
        if !repeatable {
            // Identifiers are below 64, so each has its own bit.
            let bit = 1u64 << (id as u8);
            if seen & bit != 0 {
                return Err(Violation::DuplicateProperty { property: id });
            }
            seen |= bit;
        }
        each(Property::read(id, &mut block)?)?;
    }
    Ok(())
}

/// Writers for single properties; `None` writes nothing.
pub(super) trait PropertySink: Sink {
    fn prop_u8(&mut self, id: PropertyId, value: Option<u8>) {
        if let Some(v) = value {
            self.u8(id as u8);
            self.u8(v);
        }
    }

    fn prop_flag(&mut self, id: PropertyId, value: Option<bool>) {
        self.prop_u8(id, value.map(u8::from));
    }

    fn prop_u16(&mut self, id: PropertyId, value: Option<u16>) {
        if let Some(v) = value {
            self.u8(id as u8);
            self.u16(v);
        }
    }

    fn prop_u32(&mut self, id: PropertyId, value: Option<u32>) {
        if let Some(v) = value {
            self.u8(id as u8);
            self.u32(v);
        }
    }

    fn prop_string(
        &mut self,
        id: PropertyId,
        field: &'static str,
        value: Option<&str>,
    ) -> Result<(), Violation> {
        if let Some(v) = value {
            self.u8(id as u8);
            self.string(field, v)?;
        }
        Ok(())
    }

    fn prop_binary(
        &mut self,
        id: PropertyId,
        field: &'static str,
        value: Option<&Bytes>,
    ) -> Result<(), Violation> {
        if let Some(v) = value {
            self.u8(id as u8);
            self.binary(field, v)?;
        }
        Ok(())
    }

    fn user_properties(&mut self, list: &[UserProperty]) -> Result<(), Violation> {
        for p in list {
            self.u8(PropertyId::UserProperty as u8);
            self.string("User Property name", &p.name)?;
            self.string("User Property value", &p.value)?;
        }
        Ok(())
    }

    fn reason_string(&mut self, value: Option<&str>) -> Result<(), Violation> {
        self.prop_string(PropertyId::ReasonString, "Reason String", value)
    }

    fn authentication(
        &mut self,
        method: Option<&str>,
        data: Option<&Bytes>,
    ) -> Result<(), Violation> {
        if data.is_some() && method.is_none() {
            return Err(Violation::AuthDataWithoutMethod);
        }
        self.prop_string(
            PropertyId::AuthenticationMethod,
            "Authentication Method",
            method,
        )?;
        self.prop_binary(PropertyId::AuthenticationData, "Authentication Data", data)
    }
}

impl<S: Sink> PropertySink for S {}

pub(super) fn check_authentication(
    method: &Option<String>,
    data: &Option<Bytes>,
) -> Result<(), Violation> {
    if data.is_some() && method.is_none() {
        return Err(Violation::AuthDataWithoutMethod);
    }
    Ok(())
}
