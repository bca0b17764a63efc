//! What can be wrong with a packet, and which reason code answers it.
//!
//! One [`Violation`] enum names every rule the codec enforces, in both directions: decoding a
//! packet from the network ([`DecodeError`]) and encoding a packet built by the user
//! ([`EncodeError`]). Each message keeps the specification's `[MQTT-x.y.z-n]` identifier where the
//! rule has one, and [`Violation::reason_code`] says what to send in DISCONNECT.

use std::fmt;

use super::{PacketType, PropertyId, ProtocolVersion, ReasonCode};

/// A rule of the MQTT v5.0 specification that a packet breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The first byte names packet type 0, which is reserved.
    #[error("packet type 0 is reserved")]
    ReservedPacketType,
    /// The fixed header's flag bits differ from the reserved value.
    #[error(
        "fixed header flags are {found:#06b}, the specification requires {expected:#06b} [MQTT-2.1.3-1]"
    )]
    InvalidFlags {
        /// The four low bits found.
        found: u8,
        /// The value the specification requires.
        expected: u8,
    },
    /// A QoS field holds 3.
    #[error("{field} is 3, which is not a QoS level{}", qos_rule(field))]
    InvalidQos {
        /// Which QoS field.
        field: &'static str,
    },
    /// A QoS 0 PUBLISH has DUP set.
    #[error("DUP is set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupOnQos0,
    /// The Remaining Length, or another Variable Byte Integer, runs past four bytes.
    #[error("{field} is a Variable Byte Integer longer than 4 bytes")]
    VarintTooLong {
        /// Which field.
        field: &'static str,
    },
    /// A value is larger than a Variable Byte Integer can hold (268,435,455).
    #[error("{field} is {value}, above 268,435,455, the largest Variable Byte Integer")]
    VarintTooLarge {
        /// Which field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// The packet ends inside a field.
    #[error("the packet ends inside {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes are left after the last field of the packet, or of its properties.
    #[error("{count} bytes follow the last field of {part}")]
    TrailingBytes {
        /// How many bytes are left.
        count: usize,
        /// The packet or property block that ended early.
        part: &'static str,
    },
    /// A string is not well-formed UTF-8 (this includes surrogate code points).
    #[error("{field} is not well-formed UTF-8 [MQTT-1.5.4-1]")]
    InvalidUtf8 {
        /// Which string.
        field: &'static str,
    },
    /// A string contains U+0000.
    #[error("{field} contains the null character U+0000 [MQTT-1.5.4-2]")]
    NullCharacter {
        /// Which string.
        field: &'static str,
    },
    /// A string or binary field is longer than its two-byte length prefix can say.
    #[error("{field} is {len} bytes long, above the 65,535 a length prefix allows")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A property identifier that MQTT v5.0 does not define.
    #[error("unknown property identifier {id:#04x}")]
    UnknownProperty {
        /// The identifier read.
        id: u32,
    },
    /// A property the specification does not allow on this packet.
    #[error("property {property:?} is not allowed on {packet}")]
    PropertyNotAllowed {
        /// The property.
        property: PropertyId,
        /// The packet (or "Will properties").
        packet: &'static str,
    },
    /// A property that may appear once appears again.
    #[error("property {property:?} appears more than once")]
    DuplicateProperty {
        /// The property.
        property: PropertyId,
    },
    /// A property holds a value the specification forbids.
    #[error("property {property:?} has the value {value}: {rule}")]
    InvalidPropertyValue {
        /// The property.
        property: PropertyId,
        /// The value found.
        value: u32,
        /// The rule, with its identifier where it has one.
        rule: &'static str,
    },
    /// Authentication Data without an Authentication Method.
    #[error("Authentication Data is present without an Authentication Method")]
    AuthDataWithoutMethod,
    /// A reason code that this packet type may not carry.
    #[error("reason code {code:#04x} is not one of the reason codes of {packet}")]
    InvalidReasonCode {
        /// The byte.
        code: u8,
        /// The packet type.
        packet: PacketType,
    },
    /// A packet identifier of 0 where a non-zero one is required.
    #[error("{packet} has packet identifier 0 [MQTT-2.2.1-3]")]
    ZeroPacketId {
        /// The packet type.
        packet: PacketType,
    },
    /// A QoS 0 PUBLISH was given a packet identifier.
    #[error(
        "a QoS 0 PUBLISH carries no packet identifier, but {packet_id} was given [MQTT-2.2.1-2]"
    )]
    PacketIdOnQos0 {
        /// The identifier given.
        packet_id: u16,
    },
    /// A Topic Name breaks a rule.
    #[error("invalid Topic Name: {0}")]
    InvalidTopicName(TopicError),
    /// A Topic Filter breaks a rule.
    #[error("invalid Topic Filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// A PUBLISH with an empty Topic Name and no Topic Alias.
    #[error("the Topic Name is empty and no Topic Alias is present [MQTT-4.7.3-1]")]
    EmptyTopicWithoutAlias,
    /// CONNECT names a protocol other than "MQTT".
    #[error("protocol name is {0:?}, not \"MQTT\" [MQTT-3.1.2-1]")]
    InvalidProtocolName(String),
    /// CONNECT asks for a protocol level this codec does not speak.
    #[error("protocol level {0} is not supported [MQTT-3.1.2-2]")]
    UnsupportedProtocolVersion(u8),
    /// The reserved bit of the CONNECT flags is set.
    #[error("the reserved bit of the CONNECT flags is set [MQTT-3.1.2-3]")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain is set without the Will Flag.
    #[error(
        "Will QoS or Will Retain is set while the Will Flag is 0 [MQTT-3.1.2-11, MQTT-3.1.2-13]"
    )]
    WillFieldsWithoutWill,
    /// Bits 7-1 of the CONNACK acknowledge flags are set.
    #[error("bits 7-1 of the Connect Acknowledge Flags are set [MQTT-3.2.2-1]")]
    ConnAckReservedFlags,
    /// CONNACK has Session Present with a non-zero reason code.
    #[error("Session Present is 1 with the non-zero reason code {0:#04x} [MQTT-3.2.2-6]")]
    SessionPresentOnError(u8),
    /// Reserved bits of a Subscription Options byte are set.
    #[error("reserved bits 7-6 of the Subscription Options are set [MQTT-3.8.3-5]")]
    SubscriptionOptionsReserved,
    /// Retain Handling holds 3.
    #[error("Retain Handling is 3, which is reserved")]
    InvalidRetainHandling,
    /// No Local on a Shared Subscription.
    #[error("No Local is set on the Shared Subscription {0:?} [MQTT-3.8.3-4]")]
    NoLocalOnSharedSubscription(String),
    /// SUBSCRIBE or UNSUBSCRIBE without a Topic Filter.
    #[error("{0} holds no Topic Filter [MQTT-3.8.3-2, MQTT-3.10.3-2]")]
    NoTopicFilters(PacketType),
    /// SUBACK or UNSUBACK without a reason code.
    #[error("{0} holds no reason code [MQTT-3.8.4-6]")]
    NoReasonCodes(PacketType),
    /// A v5 CONNECT answered with an MQTT 3.1.1 CONNACK refusing the protocol level.
    #[error(
        "the server speaks MQTT 3.1.1 only (it refused protocol level 5 with a 3.1.1 CONNACK): \
         connect with ProtocolVersion::V311"
    )]
    ServerSpeaksV311,
    /// Something MQTT 3.1.1 cannot express (properties, reason codes on acknowledgements,
    /// subscription options beyond QoS, AUTH): refused rather than dropped.
    #[error("{what} does not exist in MQTT 3.1.1")]
    NotInV311 {
        /// What.
        what: &'static str,
    },
    /// An MQTT 3.1.1 CONNACK return code above 5, or a SUBACK return code other than 0, 1, 2
    /// and 0x80 (3.1.1: [MQTT-3.9.3-2] for SUBACK; CONNACK codes 6 to 255 are reserved).
    #[error("{packet} return code {code:#04x} is reserved in MQTT 3.1.1")]
    ReservedReturnCode {
        /// CONNACK or SUBACK.
        packet: PacketType,
        /// The code.
        code: u8,
    },
    /// An MQTT 3.1.1 CONNACK with Session Present and a refusal (3.1.1: [MQTT-3.2.2-4]).
    #[error("Session Present is 1 with the return code {0} (MQTT 3.1.1 [MQTT-3.2.2-4])")]
    V311SessionPresentOnRefusal(u8),
    /// Bits 7-2 of an MQTT 3.1.1 Requested QoS byte are set (3.1.1: [MQTT-3-8.3-4]).
    #[error(
        "the Requested QoS byte is {0:#010b}; bits 7-2 are reserved (MQTT 3.1.1 [MQTT-3-8.3-4])"
    )]
    RequestedQosReserved(u8),
    /// An MQTT 3.1.1 CONNECT with the Password Flag and without the User Name Flag (3.1.1:
    /// [MQTT-3.1.2-22]).
    #[error("the Password Flag is set without the User Name Flag (MQTT 3.1.1 [MQTT-3.1.2-22])")]
    PasswordWithoutUserName,
    /// A packet larger than the receiver's Maximum Packet Size.
    #[error("packet of {size} bytes exceeds the Maximum Packet Size of {max} bytes")]
    PacketTooLarge {
        /// The whole packet's size in bytes.
        size: u64,
        /// The limit in force.
        max: u32,
    },
}

impl Violation {
    /// The reason code to send in DISCONNECT (or CONNACK) when a received packet breaks this rule:
    /// 0x95 Packet Too Large, 0x84 Unsupported Protocol Version for an unknown protocol,
    /// 0x81 Malformed Packet when the bytes cannot be parsed as the specification lays them out,
    /// 0x82 Protocol Error when they parse but break a rule of the protocol.
    pub fn reason_code(&self) -> ReasonCode {
        use Violation::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            InvalidProtocolName(_) | UnsupportedProtocolVersion(_) | ServerSpeaksV311 => {
                ReasonCode::UnsupportedProtocolVersion
            }
            ReservedPacketType
            | InvalidFlags { .. }
            | InvalidQos { .. }
            | DupOnQos0
            | VarintTooLong { .. }
            | VarintTooLarge { .. }
            | Truncated { .. }
            | TrailingBytes { .. }
            | InvalidUtf8 { .. }
            | NullCharacter { .. }
            | TooLong { .. }
            | UnknownProperty { .. }
            | InvalidReasonCode { .. }
            | ConnectReservedFlag
            | WillFieldsWithoutWill
            | ConnAckReservedFlags
            | SubscriptionOptionsReserved
            | ReservedReturnCode { .. }
            | RequestedQosReserved(_)
            | PasswordWithoutUserName => ReasonCode::MalformedPacket,
            PropertyNotAllowed { .. }
            | DuplicateProperty { .. }
            | InvalidPropertyValue { .. }
            | AuthDataWithoutMethod
            | ZeroPacketId { .. }
            | PacketIdOnQos0 { .. }
            | InvalidTopicName(_)
            | InvalidTopicFilter(_)
            | EmptyTopicWithoutAlias
            | SessionPresentOnError(_)
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription(_)
            | NoTopicFilters(_)
            | NoReasonCodes(_)
            | NotInV311 { .. }
            | V311SessionPresentOnRefusal(_) => ReasonCode::ProtocolError,
        }
    }
}

/// A rule a Topic Name or Topic Filter breaks (section 4.7 and 4.8.2 of the specification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is empty.
    #[error("it is empty [MQTT-4.7.3-1]")]
    Empty,
    /// The topic is longer than 65,535 bytes.
    #[error("it is {0} bytes long, above 65,535 [MQTT-4.7.3-3]")]
    TooLong(usize),
    /// The topic contains U+0000.
    #[error("it contains the null character [MQTT-4.7.3-2]")]
    NullCharacter,
    /// A Topic Name contains `+` or `#`.
    #[error("a Topic Name may not contain the wildcards + or # [MQTT-4.7.0-1]")]
    WildcardInName,
    /// `#` is not alone in the last level.
    #[error("# must be the last character and alone in its level [MQTT-4.7.1-1]")]
    MultiLevelWildcardPlacement,
    /// `+` shares its level with other characters.
    #[error("+ must occupy a whole level [MQTT-4.7.1-2]")]
    SingleLevelWildcardPlacement,
    /// A `$share/` filter whose ShareName is empty or holds `+` or `#`.
    #[error(
        "the ShareName of a $share/ filter must be non-empty and hold no + or # [MQTT-4.8.2-1]"
    )]
    InvalidShareName,
    /// A `$share/{ShareName}` filter with no `/` and Topic Filter after the ShareName.
    #[error("a $share/ filter needs a / and a Topic Filter after the ShareName [MQTT-4.8.2-2]")]
    SharedWithoutFilter,
}

/// A packet received from the network that cannot be accepted.
///
/// After a decode error the byte stream is out of step and the connection must be closed,
/// preferably after sending DISCONNECT with [`DecodeError::reason_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The packet type, when the first byte named one.
    pub packet: Option<PacketType>,
    /// The rule broken.
    pub violation: Violation,
    /// The protocol the packet was read as: the message cites that specification's
    /// identifier.
    pub protocol: ProtocolVersion,
}

impl DecodeError {
    /// The reason code to send in DISCONNECT before closing the connection.
    pub fn reason_code(&self) -> ReasonCode {
        self.violation.reason_code()
    }

    /// What is wrong, citing the identifier of the specification the packet was read as.
    fn explanation(&self) -> String {
        let text = self.violation.to_string();
        if self.protocol != ProtocolVersion::V311 {
            return text;
        }
        let cited = text
            .find("[MQTT-")
            .and_then(|from| Some((from, from + text[from..].find(']')?)));
        match (self.violation.v311_rule(), cited) {
            (Some(rule), Some((from, to))) => {
                format!("{}[{rule}]{}", &text[..from], &text[to + 1..])
            }
            (Some(rule), _) => format!("{text} [{rule}]"),
            (None, Some(_)) => format!("{text} (an identifier of MQTT 5.0)"),
            (None, None) => text,
        }
    }
}

/// The MQTT 5.0 rule a QoS of 3 breaks, by field: a PUBLISH's [MQTT-3.3.1-4], a Will's
/// [MQTT-3.1.2-12]; the specification gives the Subscription Options' none.
fn qos_rule(field: &str) -> &'static str {
    match field {
        "PUBLISH QoS" => " [MQTT-3.3.1-4]",
        "Will QoS" => " [MQTT-3.1.2-12]",
        _ => "",
    }
}

impl Violation {
    /// The MQTT 3.1.1 identifier of a rule both versions share, where 3.1.1 numbers it.
    fn v311_rule(&self) -> Option<&'static str> {
        use Violation::*;
        Some(match self {
            InvalidFlags { .. } => "MQTT-2.2.2-1, MQTT-2.2.2-2",
            InvalidQos { field: "Will QoS" } => "MQTT-3.1.2-14",
            InvalidQos {
                field: "Requested QoS",
            } => "MQTT-3-8.3-4",
            InvalidQos { .. } => "MQTT-3.3.1-4",
            DupOnQos0 => "MQTT-3.3.1-2",
            InvalidUtf8 { .. } => "MQTT-1.5.3-1",
            NullCharacter { .. } => "MQTT-1.5.3-2",
            ZeroPacketId { .. } => "MQTT-2.3.1-1",
            InvalidProtocolName(_) => "MQTT-3.1.2-1",
            UnsupportedProtocolVersion(_) => "MQTT-3.1.2-2",
            ConnectReservedFlag => "MQTT-3.1.2-3",
            WillFieldsWithoutWill => "MQTT-3.1.2-13, MQTT-3.1.2-15",
            NoTopicFilters(PacketType::Subscribe) => "MQTT-3.8.3-3",
            NoTopicFilters(_) => "MQTT-3.10.3-2",
            _ => return None,
        })
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let explanation = self.explanation();
        match self.packet {
            Some(packet) => write!(f, "received {packet} is invalid: {explanation}"),
            None => write!(f, "received packet is invalid: {explanation}"),
        }
    }
}

/// The violation is part of the message (with the identifier of the specification the packet
/// was read as), so it is no source of its own: a chain prints it once.
impl std::error::Error for DecodeError {}

/// A packet that cannot be encoded because it would break the specification; nothing was
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// The packet type.
    pub packet: PacketType,
    /// The rule the packet would break.
    pub violation: Violation,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot encode {}: {}", self.packet, self.violation)
    }
}

/// The violation is part of the message, so it is no source of its own.
impl std::error::Error for EncodeError {}
