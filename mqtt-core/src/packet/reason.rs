//! Reason codes (section 2.4, Table 2-6): every code, its meaning, and the packets that may
//! carry it.

use std::fmt;

use super::PacketType;
use super::error::Violation;
use super::wire::{Encode, Reader, Sink};

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $text:literal, [$($packet:ident),+]; )+) => {
        /// An MQTT v5 reason code.
        ///
        /// The value 0x00 has three names in the specification: Success, Normal disconnection
        /// (DISCONNECT) and Granted QoS 0 (SUBACK). It is the one variant [`ReasonCode::Success`];
        /// [`ReasonCode::NORMAL_DISCONNECTION`] and [`ReasonCode::GRANTED_QOS_0`] name it too.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum ReasonCode {
            $( $(#[$doc])* $name = $value, )+
        }

        impl ReasonCode {
            /// The code for a byte, if MQTT v5.0 defines one.
            pub fn from_u8(value: u8) -> Option<Self> {
                match value {
                    $( $value => Some(Self::$name), )+
                    _ => None,
                }
            }

            /// Whether the specification allows this code on `packet`.
            pub fn is_valid_for(self, packet: PacketType) -> bool {
                match self {
                    $( Self::$name => matches!(packet, $(PacketType::$packet)|+), )+
                }
            }

            /// The specification's name for the code (for 0x00, "Success").
            pub fn description(self) -> &'static str {
                match self {
                    $( Self::$name => $text, )+
                }
            }

            /// Every reason code, in ascending order.
            pub const ALL: &'static [ReasonCode] = &[$(Self::$name),+];
        }
    };
}

reason_codes! {
    /// 0x00: Success; Normal disconnection in DISCONNECT; Granted QoS 0 in SUBACK.
    Success = 0x00, "Success",
        [ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth];
    /// 0x01: the subscription is granted at QoS 1.
    GrantedQos1 = 0x01, "Granted QoS 1", [SubAck];
    /// 0x02: the subscription is granted at QoS 2.
    GrantedQos2 = 0x02, "Granted QoS 2", [SubAck];
    /// 0x04: the client disconnects and wants its Will published.
    DisconnectWithWillMessage = 0x04, "Disconnect with Will Message", [Disconnect];
    /// 0x10: accepted, but nobody subscribes to the topic.
    NoMatchingSubscribers = 0x10, "No matching subscribers", [PubAck, PubRec];
    /// 0x11: no subscription existed for the filter.
    NoSubscriptionExisted = 0x11, "No subscription existed", [UnsubAck];
    /// 0x18: continue the authentication exchange.
    ContinueAuthentication = 0x18, "Continue authentication", [Auth];
    /// 0x19: start a re-authentication.
    ReAuthenticate = 0x19, "Re-authenticate", [Auth];
    /// 0x80: the peer does not say why.
    UnspecifiedError = 0x80, "Unspecified error",
        [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    /// 0x81: a packet could not be parsed.
    MalformedPacket = 0x81, "Malformed Packet", [ConnAck, Disconnect];
    /// 0x82: a packet broke a rule of the protocol.
    ProtocolError = 0x82, "Protocol Error", [ConnAck, Disconnect];
    /// 0x83: valid, but refused by this implementation.
    ImplementationSpecificError = 0x83, "Implementation specific error",
        [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    /// 0x84: the server does not speak the requested protocol version.
    UnsupportedProtocolVersion = 0x84, "Unsupported Protocol Version", [ConnAck];
    /// 0x85: the client identifier is not allowed.
    ClientIdentifierNotValid = 0x85, "Client Identifier not valid", [ConnAck];
    /// 0x86: wrong user name or password.
    BadUserNameOrPassword = 0x86, "Bad User Name or Password", [ConnAck];
    /// 0x87: not authorized.
    NotAuthorized = 0x87, "Not authorized",
        [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    /// 0x88: the server is unavailable.
    ServerUnavailable = 0x88, "Server unavailable", [ConnAck];
    /// 0x89: the server is busy; try later.
    ServerBusy = 0x89, "Server busy", [ConnAck, Disconnect];
    /// 0x8A: this client is banned.
    Banned = 0x8A, "Banned", [ConnAck];
    /// 0x8B: the server is shutting down.
    ServerShuttingDown = 0x8B, "Server shutting down", [Disconnect];
    /// 0x8C: the authentication method is not supported or does not match.
    BadAuthenticationMethod = 0x8C, "Bad authentication method", [ConnAck, Disconnect];
    /// 0x8D: nothing arrived within 1.5 times the keep alive.
    KeepAliveTimeout = 0x8D, "Keep Alive timeout", [Disconnect];
    /// 0x8E: another connection took over this session.
    SessionTakenOver = 0x8E, "Session taken over", [Disconnect];
    /// 0x8F: the topic filter is well formed but not accepted.
    TopicFilterInvalid = 0x8F, "Topic Filter invalid", [SubAck, UnsubAck, Disconnect];
    /// 0x90: the topic name is well formed but not accepted.
    TopicNameInvalid = 0x90, "Topic Name invalid", [ConnAck, PubAck, PubRec, Disconnect];
    /// 0x91: the packet identifier is already in use.
    PacketIdentifierInUse = 0x91, "Packet Identifier in use",
        [PubAck, PubRec, SubAck, UnsubAck];
    /// 0x92: the packet identifier is not known.
    PacketIdentifierNotFound = 0x92, "Packet Identifier not found", [PubRel, PubComp];
    /// 0x93: more unacknowledged QoS 1/2 publishes than Receive Maximum allows.
    ReceiveMaximumExceeded = 0x93, "Receive Maximum exceeded", [Disconnect];
    /// 0x94: a topic alias is 0, too large, or unknown.
    TopicAliasInvalid = 0x94, "Topic Alias invalid", [Disconnect];
    /// 0x95: a packet exceeds the Maximum Packet Size.
    PacketTooLarge = 0x95, "Packet too large", [ConnAck, Disconnect];
    /// 0x96: messages arrive too fast.
    MessageRateTooHigh = 0x96, "Message rate too high", [Disconnect];
    /// 0x97: an administrative quota is exceeded.
    QuotaExceeded = 0x97, "Quota exceeded", [ConnAck, PubAck, PubRec, SubAck, Disconnect];
    /// 0x98: closed by an administrator.
    AdministrativeAction = 0x98, "Administrative action", [Disconnect];
    /// 0x99: the payload does not match its Payload Format Indicator.
    PayloadFormatInvalid = 0x99, "Payload format invalid",
        [ConnAck, PubAck, PubRec, Disconnect];
    /// 0x9A: the server does not support retained messages.
    RetainNotSupported = 0x9A, "Retain not supported", [ConnAck, Disconnect];
    /// 0x9B: the QoS is above the server's Maximum QoS.
    QosNotSupported = 0x9B, "QoS not supported", [ConnAck, Disconnect];
    /// 0x9C: use another server (see Server Reference).
    UseAnotherServer = 0x9C, "Use another server", [ConnAck, Disconnect];
    /// 0x9D: the server has moved (see Server Reference).
    ServerMoved = 0x9D, "Server moved", [ConnAck, Disconnect];
    /// 0x9E: shared subscriptions are not supported.
    SharedSubscriptionsNotSupported = 0x9E, "Shared Subscriptions not supported",
        [SubAck, Disconnect];
    /// 0x9F: connections arrive too fast.
    ConnectionRateExceeded = 0x9F, "Connection rate exceeded", [ConnAck, Disconnect];
    /// 0xA0: the connection lasted its maximum time.
    MaximumConnectTime = 0xA0, "Maximum connect time", [Disconnect];
    /// 0xA1: subscription identifiers are not supported.
    SubscriptionIdentifiersNotSupported = 0xA1, "Subscription Identifiers not supported",
        [SubAck, Disconnect];
    /// 0xA2: wildcard subscriptions are not supported.
    WildcardSubscriptionsNotSupported = 0xA2, "Wildcard Subscriptions not supported",
        [SubAck, Disconnect];
}

impl ReasonCode {
    /// 0x00 as DISCONNECT names it.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// 0x00 as SUBACK names it.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// The byte on the wire.
    pub fn value(self) -> u8 {
        self as u8
    }

    /// Codes of 0x80 and above report failure.
    pub fn is_error(self) -> bool {
        self.value() >= 0x80
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#04x})", self.description(), self.value())
    }
}

/// Reads a reason code byte and checks that `packet` may carry it.
pub(crate) fn read_reason_code(
    r: &mut Reader,
    packet: PacketType,
) -> Result<ReasonCode, Violation> {
    let code = r.u8("Reason Code")?;
    ReasonCode::from_u8(code)
        .filter(|rc| rc.is_valid_for(packet))
        .ok_or(Violation::InvalidReasonCode { code, packet })
}

/// Checks that `packet` may carry `code`.
pub(crate) fn check_reason_code(code: ReasonCode, packet: PacketType) -> Result<(), Violation> {
    if code.is_valid_for(packet) {
        Ok(())
    } else {
        Err(Violation::InvalidReasonCode {
            code: code.value(),
            packet,
        })
    }
}

/// Reads the tail that PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT and AUTH share: a reason
/// code, then properties, where the packet may end before either (meaning Success, no
/// properties).
pub(crate) fn read_reason_tail<P: Default>(
    r: &mut Reader,
    packet: PacketType,
    read_properties: impl FnOnce(&mut Reader) -> Result<P, Violation>,
) -> Result<(ReasonCode, P), Violation> {
    if r.is_empty() {
        return Ok((ReasonCode::Success, P::default()));
    }
    let code = read_reason_code(r, packet)?;
    let properties = if r.is_empty() {
        P::default()
    } else {
        read_properties(r)?
    };
    Ok((code, properties))
}

/// Writes that tail in its shortest allowed form: nothing for Success without properties, and
/// the reason code alone when there are no properties, where `packet` allows it (AUTH does not).
pub(crate) fn write_reason_tail<S: Sink, P: Encode>(
    s: &mut S,
    packet: PacketType,
    code: ReasonCode,
    properties: &P,
    no_properties: bool,
) -> Result<(), Violation> {
    check_reason_code(code, packet)?;
    if no_properties && code == ReasonCode::Success {
        return Ok(());
    }
    s.u8(code.value());
    if no_properties && packet != PacketType::Auth {
        return Ok(());
    }
    s.length_prefixed("Property Length", properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_back_to_itself() {
        for byte in 0..=u8::MAX {
            if let Some(code) = ReasonCode::from_u8(byte) {
                assert_eq!(code.value(), byte);
            }
        }
        assert_eq!(ReasonCode::ALL.len(), 43);
    }

    #[test]
    fn table_2_6_samples() {
        use PacketType::*;
        assert!(ReasonCode::Success.is_valid_for(Disconnect));
        assert!(ReasonCode::GrantedQos2.is_valid_for(SubAck));
        assert!(!ReasonCode::GrantedQos2.is_valid_for(PubAck));
        assert!(ReasonCode::PacketIdentifierNotFound.is_valid_for(PubRel));
        assert!(!ReasonCode::PacketIdentifierNotFound.is_valid_for(PubAck));
        assert!(ReasonCode::ReAuthenticate.is_valid_for(Auth));
        assert!(!ReasonCode::UnspecifiedError.is_valid_for(Auth));
        assert!(!ReasonCode::UnspecifiedError.is_valid_for(PubRel));
        assert_eq!(ReasonCode::from_u8(0x03), None);
        assert_eq!(ReasonCode::from_u8(0xA3), None);
    }
}
