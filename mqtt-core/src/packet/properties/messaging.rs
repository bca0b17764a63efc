//! The properties of the message packets: PUBLISH, its acknowledgements, SUBSCRIBE and
//! UNSUBSCRIBE.

use bytes::Bytes;

use super::rules::{
    Property, PropertySink, non_zero_u16, read_block, response_topic, subscription_identifier,
};
use super::{PayloadFormat, PropertyId, UserProperty};
use crate::packet::PacketType;
use crate::packet::error::Violation;
use crate::packet::wire::{Encode, Reader, Sink};

/// Properties of PUBLISH (section 3.3.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// Whether the payload is UTF-8.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// Lifetime of the message in seconds.
    pub message_expiry_interval: Option<u32>,
    /// A topic alias (never 0); with an empty Topic Name it stands for the topic.
    pub topic_alias: Option<u16>,
    /// Topic for a response (a Topic Name, no wildcards).
    pub response_topic: Option<String>,
    /// Data that links a response to its request.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
    /// Identifiers of the subscriptions that matched (server to client only).
    pub subscription_identifiers: Vec<u32>,
    /// MIME type or other description of the payload.
    pub content_type: Option<String>,
}

impl PublishProperties {
    pub(crate) fn read(r: &mut Reader) -> Result<Self, Violation> {
        let mut p = Self::default();
        read_block(r, true, |prop| {
            match prop {
                Property::PayloadFormatIndicator(v) => p.payload_format_indicator = Some(v),
                Property::MessageExpiryInterval(v) => p.message_expiry_interval = Some(v),
                Property::TopicAlias(v) => p.topic_alias = Some(v),
                Property::ResponseTopic(v) => p.response_topic = Some(v),
                Property::CorrelationData(v) => p.correlation_data = Some(v),
                Property::User(v) => p.user_properties.push(v),
                Property::SubscriptionIdentifier(v) => p.subscription_identifiers.push(v),
                Property::ContentType(v) => p.content_type = Some(v),
                other => return Err(other.not_allowed("PUBLISH")),
            }
            Ok(())
        })?;
        Ok(p)
    }
}

impl Encode for PublishProperties {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        use super::PropertyId as Id;
        s.prop_u8(
            Id::PayloadFormatIndicator,
            self.payload_format_indicator.map(|f| f as u8),
        );
        s.prop_u32(Id::MessageExpiryInterval, self.message_expiry_interval);
        let alias = self
            .topic_alias
            .map(|v| non_zero_u16(Id::TopicAlias, v))
            .transpose()?;
        s.prop_u16(Id::TopicAlias, alias);
        if let Some(topic) = &self.response_topic {
            response_topic(topic)?;
        }
        s.prop_string(
            Id::ResponseTopic,
            "Response Topic",
            self.response_topic.as_deref(),
        )?;
        s.prop_binary(
            Id::CorrelationData,
            "Correlation Data",
            self.correlation_data.as_ref(),
        )?;
        s.user_properties(&self.user_properties)?;
        for &id in &self.subscription_identifiers {
            s.u8(Id::SubscriptionIdentifier as u8);
            s.varint("Subscription Identifier", subscription_identifier(id)?)?;
        }
        s.prop_string(
            Id::ContentType,
            "Content Type",
            self.content_type.as_deref(),
        )
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckProperties {
    /// Human-readable diagnostics.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
}

impl AckProperties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }

    pub(crate) fn read(r: &mut Reader, packet: PacketType) -> Result<Self, Violation> {
        let mut p = Self::default();
        read_block(r, false, |prop| {
            match prop {
                Property::ReasonString(v) => p.reason_string = Some(v),
                Property::User(v) => p.user_properties.push(v),
                other => return Err(other.not_allowed(packet.name())),
            }
            Ok(())
        })?;
        Ok(p)
    }
}

impl Encode for AckProperties {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        s.reason_string(self.reason_string.as_deref())?;
        s.user_properties(&self.user_properties)
    }
}

/// Properties of SUBSCRIBE (section 3.8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// Identifier the server attaches to every message this subscription delivers.
    pub subscription_identifier: Option<u32>,
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
}

impl SubscribeProperties {
    pub(crate) fn read(r: &mut Reader) -> Result<Self, Violation> {
        let mut p = Self::default();
        read_block(r, false, |prop| {
            match prop {
                Property::SubscriptionIdentifier(v) => p.subscription_identifier = Some(v),
                Property::User(v) => p.user_properties.push(v),
                other => return Err(other.not_allowed("SUBSCRIBE")),
            }
            Ok(())
        })?;
        Ok(p)
    }
}

impl Encode for SubscribeProperties {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        if let Some(id) = self.subscription_identifier {
            s.u8(PropertyId::SubscriptionIdentifier as u8);
            s.varint("Subscription Identifier", subscription_identifier(id)?)?;
        }
        s.user_properties(&self.user_properties)
    }
}

/// Properties of UNSUBSCRIBE (section 3.10.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubscribeProperties {
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
}

impl UnsubscribeProperties {
    pub(crate) fn read(r: &mut Reader) -> Result<Self, Violation> {
        let mut p = Self::default();
        read_block(r, false, |prop| {
            match prop {
                Property::User(v) => p.user_properties.push(v),
                other => return Err(other.not_allowed("UNSUBSCRIBE")),
            }
            Ok(())
        })?;
        Ok(p)
    }
}

impl Encode for UnsubscribeProperties {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        s.user_properties(&self.user_properties)
    }
}
