//! Properties (section 2.2.2): the identifiers, one typed reader that enforces the rules every
//! packet shares (known identifier, at most once unless repeatable, legal value), and one struct
//! per packet family whose fields are exactly the properties that packet may carry.

use bytes::Bytes;

use super::error::Violation;
use super::topic::validate_topic_name;
use super::wire::{Encode, MAX_VARINT, Reader, Sink};
use super::{PacketType, QoS};

/// A property identifier (section 2.2.2.2, Table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)] // the names are the specification's
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQos = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

impl PropertyId {
    /// The property for an identifier, if MQTT v5.0 defines one.
    pub fn from_u32(id: u32) -> Option<Self> {
        use PropertyId::*;
        Some(match id {
            0x01 => PayloadFormatIndicator,
            0x02 => MessageExpiryInterval,
            0x03 => ContentType,
            0x08 => ResponseTopic,
            0x09 => CorrelationData,
            0x0B => SubscriptionIdentifier,
            0x11 => SessionExpiryInterval,
            0x12 => AssignedClientIdentifier,
            0x13 => ServerKeepAlive,
            0x15 => AuthenticationMethod,
            0x16 => AuthenticationData,
            0x17 => RequestProblemInformation,
            0x18 => WillDelayInterval,
            0x19 => RequestResponseInformation,
            0x1A => ResponseInformation,
            0x1C => ServerReference,
            0x1F => ReasonString,
            0x21 => ReceiveMaximum,
            0x22 => TopicAliasMaximum,
            0x23 => TopicAlias,
            0x24 => MaximumQos,
            0x25 => RetainAvailable,
            0x26 => UserProperty,
            0x27 => MaximumPacketSize,
            0x28 => WildcardSubscriptionAvailable,
            0x29 => SubscriptionIdentifierAvailable,
            0x2A => SharedSubscriptionAvailable,
            _ => return None,
        })
    }
}

/// A User Property: a name and a value. Packets keep them in order, duplicates included.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

impl UserProperty {
    /// A user property from anything string-like.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// The Payload Format Indicator (section 3.3.2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified = 0,
    /// 1: UTF-8 encoded character data.
    Utf8 = 1,
}

/// One decoded property with its value checked.
enum Property {
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

fn invalid(property: PropertyId, value: u32, rule: &'static str) -> Violation {
    Violation::InvalidPropertyValue {
        property,
        value,
        rule,
    }
}

fn flag(property: PropertyId, value: u8) -> Result<bool, Violation> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(invalid(property, other.into(), "the value must be 0 or 1")),
    }
}

fn non_zero_u16(property: PropertyId, value: u16) -> Result<u16, Violation> {
    if value == 0 {
        let rule = match property {
            PropertyId::TopicAlias => "a Topic Alias of 0 is not permitted [MQTT-3.3.2-8]",
            _ => "0 is a Protocol Error",
        };
        return Err(invalid(property, 0, rule));
    }
    Ok(value)
}

fn non_zero_u32(property: PropertyId, value: u32) -> Result<u32, Violation> {
    if value == 0 {
        return Err(invalid(property, 0, "0 is a Protocol Error"));
    }
    Ok(value)
}

fn subscription_identifier(value: u32) -> Result<u32, Violation> {
    if value == 0 || value > MAX_VARINT {
        return Err(invalid(
            PropertyId::SubscriptionIdentifier,
            value,
            "a Subscription Identifier lies in 1..=268,435,455",
        ));
    }
    Ok(value)
}

fn maximum_qos(qos: QoS) -> Result<QoS, Violation> {
    match qos {
        QoS::ExactlyOnce => Err(invalid(
            PropertyId::MaximumQos,
            2,
            "Maximum QoS is 0 or 1; servers supporting QoS 2 omit it",
        )),
        other => Ok(other),
    }
}

fn response_topic(topic: &str) -> Result<(), Violation> {
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

    fn not_allowed(&self, packet: &'static str) -> Violation {
        Violation::PropertyNotAllowed {
            property: self.id(),
            packet,
        }
    }
}

/// Reads a property block (its length, then its properties) and hands each property to `each`.
/// Rejects unknown identifiers and any property repeated where it may appear once; only User
/// Property, and Subscription Identifier where `repeatable_subscription_id`, may repeat.
fn read_block(
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
trait PropertySink: Sink {
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

fn check_authentication(method: &Option<String>, data: &Option<Bytes>) -> Result<(), Violation> {
    if data.is_some() && method.is_none() {
        return Err(Violation::AuthDataWithoutMethod);
    }
    Ok(())
}

/// Properties of CONNECT (section 3.1.2.11).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// Seconds the session outlives the connection; absent means 0, 0xFFFFFFFF never expires.
    pub session_expiry_interval: Option<u32>,
    /// How many QoS 1/2 publishes the client accepts unacknowledged (never 0).
    pub receive_maximum: Option<u16>,
    /// The largest packet the client accepts (never 0).
    pub maximum_packet_size: Option<u32>,
    /// The highest topic alias the client accepts from the server.
    pub topic_alias_maximum: Option<u16>,
    /// Asks the server for Response Information in CONNACK.
    pub request_response_information: Option<bool>,
    /// Whether the server may send Reason Strings and User Properties on failures.
    pub request_problem_information: Option<bool>,
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
    /// The enhanced authentication method.
    pub authentication_method: Option<String>,
    /// Data of the enhanced authentication method.
    pub authentication_data: Option<Bytes>,
}

crate::secret::debug_hiding_secrets!(ConnectProperties {
    session_expiry_interval,
    receive_maximum,
    maximum_packet_size,
    topic_alias_maximum,
    request_response_information,
    request_problem_information,
    user_properties,
    authentication_method
} hidden { authentication_data });

impl ConnectProperties {
    pub(crate) fn read(r: &mut Reader) -> Result<Self, Violation> {
        let mut p = Self::default();
        read_block(r, false, |prop| {
            match prop {
                Property::SessionExpiryInterval(v) => p.session_expiry_interval = Some(v),
                Property::ReceiveMaximum(v) => p.receive_maximum = Some(v),
                Property::MaximumPacketSize(v) => p.maximum_packet_size = Some(v),
                Property::TopicAliasMaximum(v) => p.topic_alias_maximum = Some(v),
                Property::RequestResponseInformation(v) => p.request_response_information = Some(v),
                Property::RequestProblemInformation(v) => p.request_problem_information = Some(v),
                Property::User(v) => p.user_properties.push(v),
                Property::AuthenticationMethod(v) => p.authentication_method = Some(v),
                Property::AuthenticationData(v) => p.authentication_data = Some(v),
                other => return Err(other.not_allowed("CONNECT")),
            }
            Ok(())
        })?;
        check_authentication(&p.authentication_method, &p.authentication_data)?;
        Ok(p)
    }
}

impl Encode for ConnectProperties {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        use PropertyId as Id;
        s.prop_u32(Id::SessionExpiryInterval, self.session_expiry_interval);
        let receive_maximum = self
            .receive_maximum
            .map(|v| non_zero_u16(Id::ReceiveMaximum, v))
            .transpose()?;
        s.prop_u16(Id::ReceiveMaximum, receive_maximum);
        let maximum_packet_size = self
            .maximum_packet_size
            .map(|v| non_zero_u32(Id::MaximumPacketSize, v))
            .transpose()?;
        s.prop_u32(Id::MaximumPacketSize, maximum_packet_size);
        s.prop_u16(Id::TopicAliasMaximum, self.topic_alias_maximum);
        s.prop_flag(
            Id::RequestResponseInformation,
            self.request_response_information,
        );
        s.prop_flag(
            Id::RequestProblemInformation,
            self.request_problem_information,
        );
        s.user_properties(&self.user_properties)?;
        s.authentication(
            self.authentication_method.as_deref(),
            self.authentication_data.as_ref(),
        )
    }
}

/// Properties of the Will Message (section 3.1.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// Seconds the server waits after the connection ends before publishing the Will.
    pub will_delay_interval: Option<u32>,
    /// Whether the Will payload is UTF-8.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// Lifetime of the Will Message in seconds.
    pub message_expiry_interval: Option<u32>,
    /// MIME type or other description of the payload.
    pub content_type: Option<String>,
    /// Topic for a response (a Topic Name, no wildcards).
    pub response_topic: Option<String>,
    /// Data that links a response to this request.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
}

impl WillProperties {
    pub(crate) fn read(r: &mut Reader) -> Result<Self, Violation> {
        let mut p = Self::default();
        read_block(r, false, |prop| {
            match prop {
                Property::WillDelayInterval(v) => p.will_delay_interval = Some(v),
                Property::PayloadFormatIndicator(v) => p.payload_format_indicator = Some(v),
                Property::MessageExpiryInterval(v) => p.message_expiry_interval = Some(v),
                Property::ContentType(v) => p.content_type = Some(v),
                Property::ResponseTopic(v) => p.response_topic = Some(v),
                Property::CorrelationData(v) => p.correlation_data = Some(v),
                Property::User(v) => p.user_properties.push(v),
                other => return Err(other.not_allowed("Will properties")),
            }
            Ok(())
        })?;
        Ok(p)
    }
}

impl Encode for WillProperties {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        use PropertyId as Id;
        s.prop_u32(Id::WillDelayInterval, self.will_delay_interval);
        s.prop_u8(
            Id::PayloadFormatIndicator,
            self.payload_format_indicator.map(|f| f as u8),
        );
        s.prop_u32(Id::MessageExpiryInterval, self.message_expiry_interval);
        s.prop_string(
            Id::ContentType,
            "Content Type",
            self.content_type.as_deref(),
        )?;
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
        s.user_properties(&self.user_properties)
    }
}

/// Properties of CONNACK (section 3.2.2.3).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// The Session Expiry Interval the server uses instead of the client's.
    pub session_expiry_interval: Option<u32>,
    /// How many QoS 1/2 publishes the server accepts unacknowledged; absent means 65,535.
    pub receive_maximum: Option<u16>,
    /// The highest QoS the server supports (0 or 1); absent means 2.
    pub maximum_qos: Option<QoS>,
    /// Whether the server supports retained messages; absent means yes.
    pub retain_available: Option<bool>,
    /// The largest packet the server accepts.
    pub maximum_packet_size: Option<u32>,
    /// The client identifier the server assigned to a client that sent none.
    pub assigned_client_identifier: Option<String>,
    /// The highest topic alias the server accepts; absent means 0 (none).
    pub topic_alias_maximum: Option<u16>,
    /// Human-readable diagnostics.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
    /// Whether wildcard subscriptions are supported; absent means yes.
    pub wildcard_subscription_available: Option<bool>,
    /// Whether Subscription Identifiers are supported; absent means yes.
    pub subscription_identifiers_available: Option<bool>,
    /// Whether shared subscriptions are supported; absent means yes.
    pub shared_subscription_available: Option<bool>,
    /// The keep alive the client must use instead of its own.
    pub server_keep_alive: Option<u16>,
    /// Basis for building response topics.
    pub response_information: Option<String>,
    /// Another server to use.
    pub server_reference: Option<String>,
    /// The enhanced authentication method.
    pub authentication_method: Option<String>,
    /// Data of the enhanced authentication method.
    pub authentication_data: Option<Bytes>,
}

crate::secret::debug_hiding_secrets!(ConnAckProperties {
    session_expiry_interval,
    receive_maximum,
    maximum_qos,
    retain_available,
    maximum_packet_size,
    assigned_client_identifier,
    topic_alias_maximum,
    reason_string,
    user_properties,
    wildcard_subscription_available,
    subscription_identifiers_available,
    shared_subscription_available,
    server_keep_alive,
    response_information,
    server_reference,
    authentication_method
} hidden { authentication_data });

impl ConnAckProperties {
    pub(crate) fn read(r: &mut Reader) -> Result<Self, Violation> {
        let mut p = Self::default();
        read_block(r, false, |prop| {
            match prop {
                Property::SessionExpiryInterval(v) => p.session_expiry_interval = Some(v),
                Property::ReceiveMaximum(v) => p.receive_maximum = Some(v),
                Property::MaximumQos(v) => p.maximum_qos = Some(v),
                Property::RetainAvailable(v) => p.retain_available = Some(v),
                Property::MaximumPacketSize(v) => p.maximum_packet_size = Some(v),
                Property::AssignedClientIdentifier(v) => p.assigned_client_identifier = Some(v),
                Property::TopicAliasMaximum(v) => p.topic_alias_maximum = Some(v),
                Property::ReasonString(v) => p.reason_string = Some(v),
                Property::User(v) => p.user_properties.push(v),
                Property::WildcardSubscriptionAvailable(v) => {
                    p.wildcard_subscription_available = Some(v)
                }
                Property::SubscriptionIdentifierAvailable(v) => {
                    p.subscription_identifiers_available = Some(v)
                }
                Property::SharedSubscriptionAvailable(v) => {
                    p.shared_subscription_available = Some(v)
                }
                Property::ServerKeepAlive(v) => p.server_keep_alive = Some(v),
                Property::ResponseInformation(v) => p.response_information = Some(v),
                Property::ServerReference(v) => p.server_reference = Some(v),
                Property::AuthenticationMethod(v) => p.authentication_method = Some(v),
                Property::AuthenticationData(v) => p.authentication_data = Some(v),
                other => return Err(other.not_allowed("CONNACK")),
            }
            Ok(())
        })?;
        check_authentication(&p.authentication_method, &p.authentication_data)?;
        Ok(p)
    }
}

impl Encode for ConnAckProperties {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        use PropertyId as Id;
        s.prop_u32(Id::SessionExpiryInterval, self.session_expiry_interval);
        let receive_maximum = self
            .receive_maximum
            .map(|v| non_zero_u16(Id::ReceiveMaximum, v))
            .transpose()?;
        s.prop_u16(Id::ReceiveMaximum, receive_maximum);
        let max_qos = self.maximum_qos.map(maximum_qos).transpose()?;
        s.prop_u8(Id::MaximumQos, max_qos.map(|q| q as u8));
        s.prop_flag(Id::RetainAvailable, self.retain_available);
        let maximum_packet_size = self
            .maximum_packet_size
            .map(|v| non_zero_u32(Id::MaximumPacketSize, v))
            .transpose()?;
        s.prop_u32(Id::MaximumPacketSize, maximum_packet_size);
        s.prop_string(
            Id::AssignedClientIdentifier,
            "Assigned Client Identifier",
            self.assigned_client_identifier.as_deref(),
        )?;
        s.prop_u16(Id::TopicAliasMaximum, self.topic_alias_maximum);
        s.reason_string(self.reason_string.as_deref())?;
        s.user_properties(&self.user_properties)?;
        s.prop_flag(
            Id::WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        s.prop_flag(
            Id::SubscriptionIdentifierAvailable,
            self.subscription_identifiers_available,
        );
        s.prop_flag(
            Id::SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
        s.prop_u16(Id::ServerKeepAlive, self.server_keep_alive);
        s.prop_string(
            Id::ResponseInformation,
            "Response Information",
            self.response_information.as_deref(),
        )?;
        s.prop_string(
            Id::ServerReference,
            "Server Reference",
            self.server_reference.as_deref(),
        )?;
        s.authentication(
            self.authentication_method.as_deref(),
            self.authentication_data.as_ref(),
        )
    }
}

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
        use PropertyId as Id;
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

/// Properties of DISCONNECT (section 3.14.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// A new Session Expiry Interval (client to server only).
    pub session_expiry_interval: Option<u32>,
    /// Human-readable diagnostics.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
    /// Another server to use.
    pub server_reference: Option<String>,
}

impl DisconnectProperties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub(crate) fn read(r: &mut Reader) -> Result<Self, Violation> {
        let mut p = Self::default();
        read_block(r, false, |prop| {
            match prop {
                Property::SessionExpiryInterval(v) => p.session_expiry_interval = Some(v),
                Property::ReasonString(v) => p.reason_string = Some(v),
                Property::User(v) => p.user_properties.push(v),
                Property::ServerReference(v) => p.server_reference = Some(v),
                other => return Err(other.not_allowed("DISCONNECT")),
            }
            Ok(())
        })?;
        Ok(p)
    }
}

impl Encode for DisconnectProperties {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        s.prop_u32(
            PropertyId::SessionExpiryInterval,
            self.session_expiry_interval,
        );
        s.reason_string(self.reason_string.as_deref())?;
        s.user_properties(&self.user_properties)?;
        s.prop_string(
            PropertyId::ServerReference,
            "Server Reference",
            self.server_reference.as_deref(),
        )
    }
}

/// Properties of AUTH (section 3.15.2.2).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// The enhanced authentication method.
    pub authentication_method: Option<String>,
    /// Data of the enhanced authentication method.
    pub authentication_data: Option<Bytes>,
    /// Human-readable diagnostics.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<UserProperty>,
}

crate::secret::debug_hiding_secrets!(AuthProperties {
    authentication_method,
    reason_string,
    user_properties
} hidden { authentication_data });

impl AuthProperties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub(crate) fn read(r: &mut Reader) -> Result<Self, Violation> {
        let mut p = Self::default();
        read_block(r, false, |prop| {
            match prop {
                Property::AuthenticationMethod(v) => p.authentication_method = Some(v),
                Property::AuthenticationData(v) => p.authentication_data = Some(v),
                Property::ReasonString(v) => p.reason_string = Some(v),
                Property::User(v) => p.user_properties.push(v),
                other => return Err(other.not_allowed("AUTH")),
            }
            Ok(())
        })?;
        check_authentication(&p.authentication_method, &p.authentication_data)?;
        Ok(p)
    }
}

impl Encode for AuthProperties {
    fn encode<S: Sink>(&self, s: &mut S) -> Result<(), Violation> {
        s.authentication(
            self.authentication_method.as_deref(),
            self.authentication_data.as_ref(),
        )?;
        s.reason_string(self.reason_string.as_deref())?;
        s.user_properties(&self.user_properties)
    }
}
