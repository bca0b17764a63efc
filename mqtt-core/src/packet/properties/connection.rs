//! The properties of the connection's packets: CONNECT, the Will, CONNACK, DISCONNECT, AUTH.

use bytes::Bytes;

use super::rules::{
    Property, PropertySink, check_authentication, maximum_qos, non_zero_u16, non_zero_u32,
    read_block, response_topic,
};
use super::{PayloadFormat, PropertyId, UserProperty};
use crate::packet::QoS;
use crate::packet::error::Violation;
use crate::packet::wire::{Encode, Reader, Sink};

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
        use super::PropertyId as Id;
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
        use super::PropertyId as Id;
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
        use super::PropertyId as Id;
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
