//! MQTT 3.1.1 vectors, written by hand from the layouts of the 3.1.1 specification (OASIS
//! Standard, 2014), checked in both directions; one vector per receiver rule; and the
//! encoder's refusal of everything 3.1.1 cannot express.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::{Bytes, BytesMut};
use mooring_core::packet::*;

fn codec() -> Codec {
    Codec {
        protocol: ProtocolVersion::V311,
        ..Codec::default()
    }
}

/// `packet` encodes to exactly `wire`, and `wire` decodes to exactly `packet`.
#[track_caller]
fn both_ways(packet: Packet, wire: &[u8]) {
    let mut buf = BytesMut::new();
    codec().encode(&packet, &mut buf).expect("encode");
    assert_eq!(&buf[..], wire, "encoding of {packet:?}");
    let mut buf = BytesMut::from(wire);
    assert_eq!(codec().decode(&mut buf), Ok(Decoded::Packet(packet)));
    assert!(buf.is_empty());
}

#[track_caller]
fn refused(wire: &[u8], violation: Violation) {
    let mut buf = BytesMut::from(wire);
    let err = codec().decode(&mut buf).expect_err("must be refused");
    assert_eq!(err.violation, violation);
}

#[track_caller]
fn refused_encode(packet: Packet, violation: Violation) {
    let mut buf = BytesMut::from(&b"keep"[..]);
    let err = codec()
        .encode(&packet, &mut buf)
        .expect_err("must be refused");
    assert_eq!(err.violation, violation);
    assert_eq!(&buf[..], b"keep", "a refused packet wrote bytes");
}

#[test]
fn connect_level_4_without_properties() {
    // The 3.1.1 CONNECT example of section 3.1.2.10: "MQTT", level 4, flags 0xCE (user name,
    // password, Will QoS 1, Will flag, Clean Session), keep alive 10.
    let mut connect = Connect::new("c");
    connect.clean_start = true;
    connect.keep_alive = 10;
    let mut will = Will::new("w", "bye");
    will.qos = QoS::AtLeastOnce;
    connect.will = Some(will);
    connect.username = Some("u".into());
    connect.password = Some(Bytes::from_static(b"p"));
    both_ways(
        Packet::Connect(Box::new(connect)),
        &[
            0x10, 0x1b, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xce, 0x00, 0x0a, // header
            0x00, 0x01, b'c', // client id
            0x00, 0x01, b'w', 0x00, 0x03, b'b', b'y', b'e', // will topic, message
            0x00, 0x01, b'u', 0x00, 0x01, b'p', // user name, password
        ],
    );
    let minimal = Connect::new("");
    both_ways(
        Packet::Connect(Box::new(minimal)),
        &[
            0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00,
        ],
    );
}

#[test]
fn connack_return_codes_are_the_reason_codes_of_the_same_meaning() {
    both_ways(
        Packet::ConnAck(Box::new(ConnAck::new(true))),
        &[0x20, 0x02, 0x01, 0x00],
    );
    for (code, reason) in [
        (1, ReasonCode::UnsupportedProtocolVersion),
        (2, ReasonCode::ClientIdentifierNotValid),
        (3, ReasonCode::ServerUnavailable),
        (4, ReasonCode::BadUserNameOrPassword),
        (5, ReasonCode::NotAuthorized),
    ] {
        let mut refusal = ConnAck::new(false);
        refusal.reason_code = reason;
        both_ways(
            Packet::ConnAck(Box::new(refusal)),
            &[0x20, 0x02, 0x00, code],
        );
    }
}

#[test]
fn publish_without_properties() {
    let mut p = Publish::new("a/b", "hi");
    both_ways(
        Packet::Publish(p.clone()),
        &[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'],
    );
    p.qos = QoS::ExactlyOnce;
    p.packet_id = 10;
    p.dup = true;
    p.retain = true;
    both_ways(
        Packet::Publish(p),
        &[
            0x3d, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, b'h', b'i',
        ],
    );
}

#[test]
fn acknowledgements_are_a_packet_identifier() {
    both_ways(Packet::PubAck(PubAck::new(7)), &[0x40, 0x02, 0x00, 0x07]);
    both_ways(Packet::PubRec(PubAck::new(7)), &[0x50, 0x02, 0x00, 0x07]);
    both_ways(Packet::PubRel(PubAck::new(7)), &[0x62, 0x02, 0x00, 0x07]);
    both_ways(Packet::PubComp(PubAck::new(7)), &[0x70, 0x02, 0x00, 0x07]);
    both_ways(
        Packet::UnsubAck(UnsubAck {
            packet_id: 7,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        }),
        &[0xb0, 0x02, 0x00, 0x07],
    );
    // A reason code after the identifier is a v5 form: 3.1.1 has no room for it.
    refused(
        &[0x40, 0x03, 0x00, 0x07, 0x00],
        Violation::TrailingBytes {
            count: 1,
            part: "PUBACK",
        },
    );
}

#[test]
fn subscribe_suback_and_unsubscribe() {
    both_ways(
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            subscriptions: vec![
                Subscription::new("a/#", QoS::ExactlyOnce),
                Subscription::new("b", QoS::AtMostOnce),
            ],
        }),
        &[
            0x82, 0x0c, 0x00, 0x01, 0x00, 0x03, b'a', b'/', b'#', 0x02, 0x00, 0x01, b'b', 0x00,
        ],
    );
    both_ways(
        Packet::SubAck(SubAck {
            packet_id: 1,
            properties: AckProperties::default(),
            reason_codes: vec![
                ReasonCode::Success,
                ReasonCode::GrantedQos1,
                ReasonCode::GrantedQos2,
                ReasonCode::UnspecifiedError,
            ],
        }),
        &[0x90, 0x06, 0x00, 0x01, 0x00, 0x01, 0x02, 0x80],
    );
    both_ways(
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            properties: UnsubscribeProperties::default(),
            filters: vec!["a/#".into()],
        }),
        &[0xa2, 0x07, 0x00, 0x02, 0x00, 0x03, b'a', b'/', b'#'],
    );
}

#[test]
fn ping_and_disconnect_are_two_bytes() {
    both_ways(Packet::PingReq, &[0xc0, 0x00]);
    both_ways(Packet::PingResp, &[0xd0, 0x00]);
    both_ways(
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
        &[0xe0, 0x00],
    );
}

#[test]
fn receiver_rules_of_3_1_1() {
    // CONNECT: level 5 is not 3.1.1; password without user name [MQTT-3.1.2-22].
    let connect = |level: u8, flags: u8| {
        vec![
            0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', level, flags, 0x00, 0x3c, 0x00, 0x00,
        ]
    };
    refused(&connect(5, 0x02), Violation::UnsupportedProtocolVersion(5));
    refused(&connect(4, 0x40), Violation::PasswordWithoutUserName);
    refused(&connect(4, 0x01), Violation::ConnectReservedFlag);
    // CONNACK: return code 6 is reserved; Session Present with a refusal [MQTT-3.2.2-4].
    refused(
        &[0x20, 0x02, 0x00, 0x06],
        Violation::ReservedReturnCode {
            packet: PacketType::ConnAck,
            code: 6,
        },
    );
    refused(
        &[0x20, 0x02, 0x01, 0x05],
        Violation::V311SessionPresentOnRefusal(5),
    );
    refused(&[0x20, 0x02, 0x02, 0x00], Violation::ConnAckReservedFlags);
    // SUBACK: only 0, 1, 2 and 0x80 [MQTT-3.9.3-2].
    refused(
        &[0x90, 0x03, 0x00, 0x01, 0x83],
        Violation::ReservedReturnCode {
            packet: PacketType::SubAck,
            code: 0x83,
        },
    );
    // SUBSCRIBE: bits 7-2 of Requested QoS are reserved [MQTT-3-8.3-4].
    refused(
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04],
        Violation::RequestedQosReserved(0x04),
    );
    // PUBLISH: no empty Topic Name (no Topic Alias in 3.1.1); QoS 3; DUP on QoS 0.
    refused(
        &[0x30, 0x02, 0x00, 0x00],
        Violation::InvalidTopicName(TopicError::Empty),
    );
    refused(
        &[0x36, 0x03, 0x00, 0x01, b'a'],
        Violation::InvalidQos {
            field: "PUBLISH QoS",
        },
    );
    refused(&[0x38, 0x03, 0x00, 0x01, b'a'], Violation::DupOnQos0);
    // AUTH (packet type 15) does not exist.
    refused(
        &[0xf0, 0x00],
        Violation::NotInV311 {
            what: "AUTH (packet type 15)",
        },
    );
    // DISCONNECT carries nothing.
    refused(
        &[0xe0, 0x01, 0x00],
        Violation::TrailingBytes {
            count: 1,
            part: "DISCONNECT",
        },
    );
}

#[test]
fn what_3_1_1_cannot_express_is_refused_not_dropped() {
    let mut connect = Connect::new("c");
    connect.properties.session_expiry_interval = Some(60);
    refused_encode(
        Packet::Connect(Box::new(connect)),
        Violation::NotInV311 {
            what: "CONNECT properties",
        },
    );
    let mut publish = Publish::new("t", "x");
    publish.properties.message_expiry_interval = Some(10);
    refused_encode(
        Packet::Publish(publish),
        Violation::NotInV311 {
            what: "PUBLISH properties",
        },
    );
    let mut ack = PubAck::new(1);
    ack.reason_code = ReasonCode::UnspecifiedError;
    refused_encode(
        Packet::PubAck(ack),
        Violation::NotInV311 {
            what: "a reason code on PUBACK, PUBREC, PUBREL or PUBCOMP",
        },
    );
    let mut subscription = Subscription::new("a", QoS::AtLeastOnce);
    subscription.options.no_local = true;
    refused_encode(
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            subscriptions: vec![subscription],
        }),
        Violation::NotInV311 {
            what: "No Local, Retain As Published and Retain Handling",
        },
    );
    let mut refusal = ConnAck::new(false);
    refusal.reason_code = ReasonCode::QuotaExceeded;
    refused_encode(
        Packet::ConnAck(Box::new(refusal)),
        Violation::NotInV311 {
            what: "this CONNACK reason code",
        },
    );
    refused_encode(
        Packet::Disconnect(Disconnect::new(ReasonCode::ProtocolError)),
        Violation::NotInV311 {
            what: "a DISCONNECT reason code",
        },
    );
    refused_encode(
        Packet::Auth(Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: AuthProperties::default(),
        }),
        Violation::NotInV311 { what: "AUTH" },
    );
    let mut password_only = Connect::new("c");
    password_only.password = Some(Bytes::from_static(b"p"));
    refused_encode(
        Packet::Connect(Box::new(password_only)),
        Violation::PasswordWithoutUserName,
    );
}

#[test]
fn errors_cite_the_3_1_1_identifiers() {
    let mut qos3 = BytesMut::from(&[0x36u8, 0x03, 0x00, 0x01, b'a'][..]);
    let error = codec().decode(&mut qos3).unwrap_err().to_string();
    assert!(error.contains("[MQTT-3.3.1-4]"), "{error}");
    // A Will QoS of 3 breaks another rule: MQTT-3.1.2-14 in 3.1.1.
    let mut will_qos3 = BytesMut::from(
        &[
            0x10, 0x12, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x1e, 0x00, 0x3c, 0x00, 0x01,
            b'c', 0x00, 0x01, b'w', 0x00, 0x00,
        ][..],
    );
    let error = codec().decode(&mut will_qos3).unwrap_err().to_string();
    assert!(
        error.contains("Will QoS") && error.contains("[MQTT-3.1.2-14]"),
        "{error}"
    );
    let mut will = BytesMut::from(
        &[
            0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x22, 0x00, 0x3c, 0x00, 0x00,
        ][..],
    );
    let error = codec().decode(&mut will).unwrap_err().to_string();
    assert!(error.contains("[MQTT-3.1.2-13, MQTT-3.1.2-15]"), "{error}");
    assert!(
        !error.contains("MQTT-3.1.2-11"),
        "not the v5 number: {error}"
    );
    let mut zero = BytesMut::from(&[0x40u8, 0x02, 0x00, 0x00][..]);
    let error = codec().decode(&mut zero).unwrap_err().to_string();
    assert!(error.contains("MQTT-2.3.1-1"), "{error}");
}

#[test]
fn share_is_an_ordinary_filter_in_3_1_1() {
    // No Shared Subscriptions in 3.1.1: `$share/x` is a filter like any other.
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription::new("$share/x", QoS::AtMostOnce)],
    });
    let mut wire = BytesMut::new();
    codec().encode(&subscribe, &mut wire).unwrap();
    assert_eq!(
        codec().decode(&mut wire),
        Ok(Decoded::Packet(subscribe.clone()))
    );
    let unsubscribe = Packet::Unsubscribe(Unsubscribe {
        packet_id: 1,
        properties: UnsubscribeProperties::default(),
        filters: vec!["$share/x".into()],
    });
    let mut wire = BytesMut::new();
    codec().encode(&unsubscribe, &mut wire).unwrap();
    assert_eq!(codec().decode(&mut wire), Ok(Decoded::Packet(unsubscribe)));
    // At v5 it names a Shared Subscription without a filter.
    assert!(
        Codec::default()
            .encode(&subscribe, &mut BytesMut::new())
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// The client as sender at 3.1.1: what the encoder builds and refuses to build; and the
// receiver's refusals 3.1.1 numbers itself. RULES-311.md cites these.

fn encoded(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    codec().encode(packet, &mut buf).expect("encode");
    buf
}

fn subscribe(filters: &[&str]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: SubscribeProperties::default(),
        subscriptions: filters
            .iter()
            .map(|f| Subscription::new(*f, QoS::AtLeastOnce))
            .collect(),
    })
}

fn unsubscribe(filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: 1,
        properties: UnsubscribeProperties::default(),
        filters: filters.iter().map(|f| (*f).to_owned()).collect(),
    })
}

/// [MQTT-2.2.2-1, MQTT-3.6.1-1, MQTT-3.8.1-1, MQTT-3.10.1-1, MQTT-3.14.1-1] Each packet the
/// client sends goes out with the flags Table 2.2 lists: 0010 for PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE, 0000 for CONNECT, PUBACK, PUBREC, PUBCOMP, PINGREQ and DISCONNECT.
#[test]
fn mqtt311_2_2_2_1_the_encoder_writes_the_listed_flag_bits() {
    for (packet, first) in [
        (Packet::Connect(Box::new(Connect::new("c"))), 0x10),
        (Packet::PubAck(PubAck::new(1)), 0x40),
        (Packet::PubRec(PubAck::new(1)), 0x50),
        (Packet::PubRel(PubAck::new(1)), 0x62),
        (Packet::PubComp(PubAck::new(1)), 0x70),
        (subscribe(&["a"]), 0x82),
        (unsubscribe(&["a"]), 0xA2),
        (Packet::PingReq, 0xC0),
        (
            Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
            0xE0,
        ),
    ] {
        assert_eq!(encoded(&packet)[0], first, "{packet:?}");
    }
}

/// [MQTT-3.1.2-3, MQTT-3.1.2-11, MQTT-3.1.2-13, MQTT-3.1.2-14, MQTT-3.1.2-15, MQTT-3.1.2-18
/// to MQTT-3.1.2-22] The CONNECT flags as built: the reserved bit 0; without a Will, Will QoS
/// and Will Retain 0 and no Will fields; with one, its QoS (never 3); a User Name and a
/// Password field exactly when their flags say so; no Password without a User Name.
#[test]
fn mqtt311_3_1_2_the_connect_flags_as_built() {
    // Flags at byte 9: the fixed header (2), the protocol name (6), the level (1).
    let flags = |connect: Connect| encoded(&Packet::Connect(Box::new(connect)))[9];
    let mut bare = Connect::new("c");
    bare.clean_start = false;
    let wire = encoded(&Packet::Connect(Box::new(bare.clone())));
    assert_eq!(wire[9], 0, "no flag at all");
    assert_eq!(
        &wire[12..],
        &[0x00, 0x01, b'c'],
        "the Client Identifier alone"
    );
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut c = Connect::new("c");
        let mut will = Will::new("w", "x");
        will.qos = qos;
        c.will = Some(will);
        let f = flags(c);
        assert_eq!(f & 0x01, 0, "reserved");
        assert_eq!(f & 0x04, 0x04, "Will Flag");
        assert_eq!((f >> 3) & 0x03, qos as u8);
        assert_eq!(f & 0x20, 0, "Will Retain not asked");
    }
    let mut user = Connect::new("c");
    user.username = Some("u".into());
    assert_eq!(flags(user.clone()) & 0xC0, 0x80, "User Name only");
    let wire = encoded(&Packet::Connect(Box::new(user.clone())));
    assert!(wire.ends_with(&[0x00, 0x01, b'u']));
    user.password = Some(Bytes::from_static(b"pw"));
    assert_eq!(flags(user.clone()) & 0xC0, 0xC0, "User Name and Password");
    let wire = encoded(&Packet::Connect(Box::new(user)));
    assert!(wire.ends_with(&[0x00, 0x01, b'u', 0x00, 0x02, b'p', b'w']));
}

/// [MQTT-1.5.3-2, MQTT-3.1.3-4, MQTT-3.1.3-10, MQTT-3.1.3-11, MQTT-3.3.2-1, MQTT-3.3.2-2,
/// MQTT-3.8.3-1, MQTT-3.8.3-3, MQTT-3.10.3-1, MQTT-3.10.3-2, MQTT-4.7.1-1 to MQTT-4.7.1-3,
/// MQTT-4.7.3-1 to MQTT-4.7.3-3] At 3.1.1 the encoder refuses a string with U+0000 in any
/// field, a Topic Name that is empty (3.1.1 has no Topic Alias) or has a wildcard, and
/// SUBSCRIBE or UNSUBSCRIBE without a filter or with one the specification does not allow.
#[test]
fn mqtt311_the_encoder_refuses_strings_and_topics_3_1_1_forbids() {
    refused_encode(
        Packet::Connect(Box::new(Connect::new("a\0"))),
        Violation::NullCharacter {
            field: "Client Identifier",
        },
    );
    let mut user = Connect::new("c");
    user.username = Some("u\0".into());
    refused_encode(
        Packet::Connect(Box::new(user)),
        Violation::NullCharacter { field: "User Name" },
    );
    let mut will = Connect::new("c");
    will.will = Some(Will::new("w/+", "x"));
    refused_encode(
        Packet::Connect(Box::new(will)),
        Violation::InvalidTopicName(TopicError::WildcardInName),
    );
    for (topic, error) in [
        ("", TopicError::Empty),
        ("a/#", TopicError::WildcardInName),
        ("a/+/b", TopicError::WildcardInName),
        ("a\0", TopicError::NullCharacter),
    ] {
        refused_encode(
            Packet::Publish(Publish::new(topic, "x")),
            Violation::InvalidTopicName(error),
        );
    }
    refused_encode(
        subscribe(&[]),
        Violation::NoTopicFilters(PacketType::Subscribe),
    );
    refused_encode(
        unsubscribe(&[]),
        Violation::NoTopicFilters(PacketType::Unsubscribe),
    );
    let long = "x".repeat(65_536);
    for (filter, error) in [
        ("a/#/b", TopicError::MultiLevelWildcardPlacement),
        ("a#", TopicError::MultiLevelWildcardPlacement),
        ("a+/b", TopicError::SingleLevelWildcardPlacement),
        ("", TopicError::Empty),
        ("a\0", TopicError::NullCharacter),
        (long.as_str(), TopicError::TooLong(65_536)),
    ] {
        refused_encode(subscribe(&[filter]), Violation::InvalidTopicFilter(error));
        refused_encode(unsubscribe(&[filter]), Violation::InvalidTopicFilter(error));
    }
}

/// [MQTT-1.5.3-1, MQTT-1.5.3-2, MQTT-1.5.3-3, MQTT-2.2.2-2, MQTT-2.3.1-1, MQTT-3.3.2-2] At
/// 3.1.1 the decoder refuses ill-formed UTF-8 and U+0000, keeps U+FEFF, refuses reserved
/// flags that do not match, a zero Packet Identifier and a wildcard in a Topic Name.
#[test]
fn mqtt311_the_decoder_refuses_bad_strings_flags_and_identifiers() {
    // PUBLISH QoS 0, topic of two bytes.
    refused(
        &[0x30, 0x04, 0x00, 0x02, 0xC0, 0xAF],
        Violation::InvalidUtf8 {
            field: "Topic Name",
        },
    );
    refused(
        &[0x30, 0x04, 0x00, 0x02, b'a', 0x00],
        Violation::NullCharacter {
            field: "Topic Name",
        },
    );
    let mut bom = BytesMut::from(&[0x30, 0x06, 0x00, 0x04, 0xEF, 0xBB, 0xBF, b'a'][..]);
    match codec().decode(&mut bom) {
        Ok(Decoded::Packet(Packet::Publish(p))) => assert_eq!(p.topic, "\u{FEFF}a"),
        other => panic!("{other:?}"),
    }
    refused(
        &[0x61, 0x02, 0x00, 0x01],
        Violation::InvalidFlags {
            found: 1,
            expected: 2,
        },
    );
    refused(
        &[0x40, 0x02, 0x00, 0x00],
        Violation::ZeroPacketId {
            packet: PacketType::PubAck,
        },
    );
    refused(
        &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'],
        Violation::InvalidTopicName(TopicError::WildcardInName),
    );
}
