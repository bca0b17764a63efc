//! Byte-exact vectors, written by hand from the layouts and figures of the MQTT v5.0
//! specification, checked in both directions; then one vector per receiver rule, checking that
//! the decoder refuses it with the right violation and reason code.
// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::{Bytes, BytesMut};
use mooring_core::packet::*;

fn codec() -> Codec {
    Codec::default()
}

/// `packet` encodes to exactly `wire`, and `wire` decodes to exactly `packet`.
#[track_caller]
fn both_ways(packet: Packet, wire: &[u8]) {
    let mut buf = BytesMut::new();
    codec().encode(&packet, &mut buf).expect("encode");
    assert_eq!(&buf[..], wire, "encoding of {packet:?}");
    decodes_to(wire, packet);
}

/// `wire` decodes to `packet` and is consumed whole.
#[track_caller]
fn decodes_to(wire: &[u8], packet: Packet) {
    let mut buf = BytesMut::from(wire);
    assert_eq!(codec().decode(&mut buf), Ok(Decoded::Packet(packet)));
    assert!(buf.is_empty());
}

/// `wire` is refused for `violation`, answered with `reason`.
#[track_caller]
fn refused(wire: &[u8], violation: Violation, reason: ReasonCode) {
    let mut buf = BytesMut::from(wire);
    let err = codec().decode(&mut buf).expect_err("must be refused");
    assert_eq!(err.violation, violation);
    assert_eq!(err.reason_code(), reason);
}

fn malformed(wire: &[u8], violation: Violation) {
    refused(wire, violation, ReasonCode::MalformedPacket);
}

fn protocol_error(wire: &[u8], violation: Violation) {
    refused(wire, violation, ReasonCode::ProtocolError);
}

fn refused_encode(packet: Packet, violation: Violation) {
    let mut buf = BytesMut::from(&b"keep"[..]);
    let err = codec()
        .encode(&packet, &mut buf)
        .expect_err("must be refused");
    assert_eq!(err.violation, violation);
    assert_eq!(&buf[..], b"keep", "a refused packet wrote bytes");
}

// ---------------------------------------------------------------------------------------------
// Every packet type, both directions.

#[test]
fn connect_figure_3_6_flags_and_session_expiry() {
    // The variable header of the specification's CONNECT example: protocol name "MQTT",
    // version 5, flags 0xCE (user name, password, Will QoS 1, Will flag, Clean Start), keep
    // alive 10, properties: Session Expiry Interval 10. Then a payload for those flags.
    let wire = [
        0x10, 0x24, // CONNECT, remaining length 36
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xCE, 0x00, 0x0A, // header
        0x05, 0x11, 0x00, 0x00, 0x00, 0x0A, // properties
        0x00, 0x02, b'c', b'1', // client identifier
        0x00, // Will properties: none
        0x00, 0x01, b'w', // Will Topic
        0x00, 0x03, b'b', b'y', b'e', // Will Payload
        0x00, 0x01, b'u', // User Name
        0x00, 0x02, 0x01, 0x02, // Password
    ];
    let mut connect = Connect::new("c1");
    connect.keep_alive = 10;
    connect.properties.session_expiry_interval = Some(10);
    connect.will = Some(Will {
        qos: QoS::AtLeastOnce,
        ..Will::new("w", "bye")
    });
    connect.username = Some("u".into());
    connect.password = Some(Bytes::from_static(&[1, 2]));
    both_ways(Packet::Connect(Box::new(connect)), &wire);
}

#[test]
fn connect_minimal_and_with_every_property() {
    let mut connect = Connect::new("");
    connect.clean_start = false;
    connect.keep_alive = 0;
    both_ways(
        Packet::Connect(Box::new(connect)),
        &[
            0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00,
        ],
    );

    let mut connect = Connect::new("id");
    connect.properties = ConnectProperties {
        session_expiry_interval: Some(0xFFFF_FFFF),
        receive_maximum: Some(20),
        maximum_packet_size: Some(1024),
        topic_alias_maximum: Some(10),
        request_response_information: Some(true),
        request_problem_information: Some(false),
        user_properties: vec![UserProperty::new("k", "v"), UserProperty::new("k", "v")],
        authentication_method: Some("M".into()),
        authentication_data: Some(Bytes::from_static(&[9])),
    };
    let mut will = Will::new("wt", "");
    will.retain = true;
    will.qos = QoS::ExactlyOnce;
    will.properties = WillProperties {
        will_delay_interval: Some(5),
        payload_format_indicator: Some(PayloadFormat::Utf8),
        message_expiry_interval: Some(60),
        content_type: Some("t".into()),
        response_topic: Some("r".into()),
        correlation_data: Some(Bytes::from_static(&[7])),
        user_properties: vec![UserProperty::new("a", "b")],
    };
    connect.will = Some(will);
    #[rustfmt::skip]
    let wire = [
        0x10, 0x5F,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
        0x36, // Will Retain, Will QoS 2, Will Flag, Clean Start
        0x00, 0x3C,
        0x2A, // 42 bytes of properties
        0x11, 0xFF, 0xFF, 0xFF, 0xFF,
        0x21, 0x00, 0x14,
        0x27, 0x00, 0x00, 0x04, 0x00,
        0x22, 0x00, 0x0A,
        0x19, 0x01,
        0x17, 0x00,
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v',
        0x15, 0x00, 0x01, b'M',
        0x16, 0x00, 0x01, 0x09,
        0x00, 0x02, b'i', b'd',
        0x1F, // 31 bytes of Will properties
        0x18, 0x00, 0x00, 0x00, 0x05,
        0x01, 0x01,
        0x02, 0x00, 0x00, 0x00, 0x3C,
        0x03, 0x00, 0x01, b't',
        0x08, 0x00, 0x01, b'r',
        0x09, 0x00, 0x01, 0x07,
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b',
        0x00, 0x02, b'w', b't',
        0x00, 0x00,
    ];
    both_ways(Packet::Connect(Box::new(connect)), &wire);
}

#[test]
fn connack_plain_and_with_properties() {
    both_ways(
        Packet::ConnAck(Box::new(ConnAck::new(false))),
        &[0x20, 0x03, 0x00, 0x00, 0x00],
    );
    both_ways(
        Packet::ConnAck(Box::new(ConnAck::new(true))),
        &[0x20, 0x03, 0x01, 0x00, 0x00],
    );
    let mut connack = ConnAck::new(false);
    connack.reason_code = ReasonCode::NotAuthorized;
    both_ways(
        Packet::ConnAck(Box::new(connack)),
        &[0x20, 0x03, 0x00, 0x87, 0x00],
    );

    let mut connack = ConnAck::new(false);
    connack.properties = ConnAckProperties {
        session_expiry_interval: Some(30),
        receive_maximum: Some(10),
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        maximum_packet_size: Some(256),
        assigned_client_identifier: Some("ab".into()),
        topic_alias_maximum: Some(5),
        reason_string: Some("r".into()),
        user_properties: vec![UserProperty::new("x", "")],
        wildcard_subscription_available: Some(true),
        subscription_identifiers_available: Some(false),
        shared_subscription_available: Some(true),
        server_keep_alive: Some(20),
        response_information: Some("ri".into()),
        server_reference: Some("s".into()),
        authentication_method: Some("m".into()),
        authentication_data: None,
    };
    #[rustfmt::skip]
    let wire = [
        0x20, 0x3C, 0x00, 0x00,
        0x39, // 57 bytes of properties
        0x11, 0x00, 0x00, 0x00, 0x1E,
        0x21, 0x00, 0x0A,
        0x24, 0x01,
        0x25, 0x00,
        0x27, 0x00, 0x00, 0x01, 0x00,
        0x12, 0x00, 0x02, b'a', b'b',
        0x22, 0x00, 0x05,
        0x1F, 0x00, 0x01, b'r',
        0x26, 0x00, 0x01, b'x', 0x00, 0x00,
        0x28, 0x01,
        0x29, 0x00,
        0x2A, 0x01,
        0x13, 0x00, 0x14,
        0x1A, 0x00, 0x02, b'r', b'i',
        0x1C, 0x00, 0x01, b's',
        0x15, 0x00, 0x01, b'm',
    ];
    both_ways(Packet::ConnAck(Box::new(connack)), &wire[..]);
}

#[test]
fn publish_qos0_and_figure_3_9_variable_header() {
    both_ways(
        Packet::Publish(Publish::new("a/b", "hi")),
        &[0x30, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'h', b'i'],
    );
    // The specification's PUBLISH variable header example: topic "a/b", packet identifier 10,
    // no properties.
    let mut publish = Publish::new("a/b", Bytes::new());
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = 10;
    both_ways(
        Packet::Publish(publish),
        &[0x32, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, 0x00],
    );
}

#[test]
fn publish_flags_properties_and_alias() {
    let mut publish = Publish::new("t", "x");
    publish.dup = true;
    publish.qos = QoS::AtLeastOnce;
    publish.retain = true;
    publish.packet_id = 10;
    publish.properties.topic_alias = Some(1);
    publish.properties.user_properties = vec![UserProperty::new("k", "v")];
    both_ways(
        Packet::Publish(publish),
        &[
            0x3B, 0x11, 0x00, 0x01, b't', 0x00, 0x0A, 0x0A, 0x23, 0x00, 0x01, 0x26, 0x00, 0x01,
            b'k', 0x00, 0x01, b'v', b'x',
        ],
    );

    // QoS 2, empty topic standing for alias 3, every other property.
    let mut publish = Publish::new("", Bytes::new());
    publish.qos = QoS::ExactlyOnce;
    publish.packet_id = 0xFFFF;
    publish.properties = PublishProperties {
        payload_format_indicator: Some(PayloadFormat::Unspecified),
        message_expiry_interval: Some(1),
        topic_alias: Some(3),
        response_topic: Some("re".into()),
        correlation_data: Some(Bytes::from_static(&[0xAB])),
        user_properties: vec![],
        subscription_identifiers: vec![1, 268_435_455],
        content_type: Some("j".into()),
    };
    #[rustfmt::skip]
    let wire = [
        0x34, 0x23, 0x00, 0x00, 0xFF, 0xFF,
        0x1E, // 30 bytes of properties
        0x01, 0x00,
        0x02, 0x00, 0x00, 0x00, 0x01,
        0x23, 0x00, 0x03,
        0x08, 0x00, 0x02, b'r', b'e',
        0x09, 0x00, 0x01, 0xAB,
        0x0B, 0x01,
        0x0B, 0xFF, 0xFF, 0xFF, 0x7F,
        0x03, 0x00, 0x01, b'j',
    ];
    both_ways(Packet::Publish(publish), &wire);
}

#[test]
fn publish_acknowledgements_short_and_long_forms() {
    // Success with no properties: the reason code is left out.
    both_ways(Packet::PubAck(PubAck::new(1)), &[0x40, 0x02, 0x00, 0x01]);
    both_ways(Packet::PubRec(PubAck::new(7)), &[0x50, 0x02, 0x00, 0x07]);
    both_ways(Packet::PubRel(PubAck::new(7)), &[0x62, 0x02, 0x00, 0x07]);
    both_ways(Packet::PubComp(PubAck::new(7)), &[0x70, 0x02, 0x00, 0x07]);
    // A reason code and no properties: the property length is left out.
    let mut ack = PubAck::new(1);
    ack.reason_code = ReasonCode::NoMatchingSubscribers;
    both_ways(Packet::PubAck(ack), &[0x40, 0x03, 0x00, 0x01, 0x10]);
    let mut rel = PubAck::new(7);
    rel.reason_code = ReasonCode::PacketIdentifierNotFound;
    both_ways(Packet::PubRel(rel), &[0x62, 0x03, 0x00, 0x07, 0x92]);
    // With a Reason String.
    let mut rec = PubAck::new(2);
    rec.reason_code = ReasonCode::QuotaExceeded;
    rec.properties.reason_string = Some("no".into());
    both_ways(
        Packet::PubRec(rec),
        &[
            0x50, 0x09, 0x00, 0x02, 0x97, 0x05, 0x1F, 0x00, 0x02, b'n', b'o',
        ],
    );
    // Success with an explicit reason code and empty properties decodes like the short form.
    decodes_to(
        &[0x70, 0x04, 0x00, 0x07, 0x00, 0x00],
        Packet::PubComp(PubAck::new(7)),
    );
}

#[test]
fn subscribe_with_every_option() {
    let mut first = Subscription::new("a/+", QoS::AtLeastOnce);
    first.options.no_local = true;
    first.options.retain_as_published = true;
    first.options.retain_handling = RetainHandling::DoNotSend;
    let subscribe = Subscribe {
        packet_id: 1,
        properties: SubscribeProperties {
            subscription_identifier: Some(5),
            user_properties: vec![],
        },
        subscriptions: vec![first, Subscription::new("#", QoS::AtMostOnce)],
    };
    both_ways(
        Packet::Subscribe(subscribe),
        &[
            0x82, 0x0F, 0x00, 0x01, 0x02, 0x0B, 0x05, 0x00, 0x03, b'a', b'/', b'+', 0x2D, 0x00,
            0x01, b'#', 0x00,
        ],
    );
}

#[test]
fn suback_unsubscribe_unsuback() {
    both_ways(
        Packet::SubAck(SubAck {
            packet_id: 1,
            properties: AckProperties::default(),
            reason_codes: vec![
                ReasonCode::GrantedQos1,
                ReasonCode::GrantedQos2,
                ReasonCode::UnspecifiedError,
                ReasonCode::GRANTED_QOS_0,
            ],
        }),
        &[0x90, 0x07, 0x00, 0x01, 0x00, 0x01, 0x02, 0x80, 0x00],
    );
    both_ways(
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            properties: UnsubscribeProperties::default(),
            filters: vec!["a/b".into()],
        }),
        &[0xA2, 0x08, 0x00, 0x02, 0x00, 0x00, 0x03, b'a', b'/', b'b'],
    );
    both_ways(
        Packet::UnsubAck(UnsubAck {
            packet_id: 2,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::NoSubscriptionExisted],
        }),
        &[0xB0, 0x04, 0x00, 0x02, 0x00, 0x11],
    );
}

#[test]
fn ping() {
    both_ways(Packet::PingReq, &[0xC0, 0x00]);
    both_ways(Packet::PingResp, &[0xD0, 0x00]);
}

#[test]
fn disconnect_short_and_long_forms() {
    both_ways(
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
        &[0xE0, 0x00],
    );
    both_ways(
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage)),
        &[0xE0, 0x01, 0x04],
    );
    let mut disconnect = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    disconnect.properties.session_expiry_interval = Some(0);
    both_ways(
        Packet::Disconnect(disconnect),
        &[0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
    );
    let mut moved = Disconnect::new(ReasonCode::ServerMoved);
    moved.properties.server_reference = Some("h:1".into());
    both_ways(
        Packet::Disconnect(moved),
        &[0xE0, 0x08, 0x9D, 0x06, 0x1C, 0x00, 0x03, b'h', b':', b'1'],
    );
}

#[test]
fn auth_short_and_long_forms() {
    both_ways(
        Packet::Auth(Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        }),
        &[0xF0, 0x00],
    );
    both_ways(
        Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some("SCRA".into()),
                authentication_data: Some(Bytes::from_static(&[1, 2])),
                reason_string: None,
                user_properties: vec![],
            },
        }),
        &[
            0xF0, 0x0E, 0x18, 0x0C, 0x15, 0x00, 0x04, b'S', b'C', b'R', b'A', 0x16, 0x00, 0x02,
            0x01, 0x02,
        ],
    );
}

#[test]
fn properties_in_any_order_and_user_properties_keep_order_and_duplicates() {
    let mut publish = Publish::new("t", Bytes::new());
    publish.properties.content_type = Some("c".into());
    publish.properties.user_properties = vec![
        UserProperty::new("b", "2"),
        UserProperty::new("a", "1"),
        UserProperty::new("b", "2"),
    ];
    #[rustfmt::skip]
    let wire = [
        0x30, 0x1D, 0x00, 0x01, b't',
        0x19,
        0x26, 0x00, 0x01, b'b', 0x00, 0x01, b'2',
        0x03, 0x00, 0x01, b'c', // content type between the user properties
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'1',
        0x26, 0x00, 0x01, b'b', 0x00, 0x01, b'2',
    ];
    decodes_to(&wire, Packet::Publish(publish));
}

#[test]
fn non_minimal_remaining_length_is_accepted() {
    // PINGREQ with a Remaining Length of 0 spelled in two bytes.
    decodes_to(&[0xC0, 0x80, 0x00], Packet::PingReq);
}

#[test]
fn several_packets_come_out_one_by_one() {
    let mut buf = BytesMut::from(&[0xD0, 0x00, 0x40, 0x02, 0x00, 0x05, 0xC0][..]);
    let c = codec();
    assert_eq!(c.decode(&mut buf), Ok(Decoded::Packet(Packet::PingResp)));
    assert_eq!(
        c.decode(&mut buf),
        Ok(Decoded::Packet(Packet::PubAck(PubAck::new(5))))
    );
    assert_eq!(c.decode(&mut buf), Ok(Decoded::Incomplete { needed: 1 }));
    assert_eq!(&buf[..], &[0xC0]);
}

#[test]
fn payload_is_a_slice_of_the_input_not_a_copy() {
    let mut buf = BytesMut::from(&[0x30, 0x07, 0x00, 0x01, b't', 0x00, b'a', b'b', b'c'][..]);
    let input_range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Ok(Decoded::Packet(Packet::Publish(p))) = codec().decode(&mut buf) else {
        panic!("not a PUBLISH");
    };
    assert_eq!(&p.payload[..], b"abc");
    assert!(input_range.contains(&(p.payload.as_ptr() as usize)));
}

// ---------------------------------------------------------------------------------------------
// Receiver rules: each refused with its violation and reason code.

#[test]
fn mqtt_2_1_3_1_reserved_flag_bits() {
    for (first, expected) in [
        (0x11u8, 0u8),  // CONNECT
        (0x60, 0b0010), // PUBREL with 0000 [MQTT-3.6.1-1]
        (0x80, 0b0010), // SUBSCRIBE [MQTT-3.8.1-1]
        (0xA3, 0b0010), // UNSUBSCRIBE [MQTT-3.10.1-1]
        (0xC1, 0),
        (0xE8, 0), // DISCONNECT [MQTT-3.14.1-1]
        (0xF2, 0), // AUTH [MQTT-3.15.1-1]
    ] {
        malformed(
            &[first, 0x00],
            Violation::InvalidFlags {
                found: first & 0x0F,
                expected,
            },
        );
    }
}

#[test]
fn reserved_packet_type_zero() {
    malformed(&[0x00, 0x00], Violation::ReservedPacketType);
}

#[test]
fn mqtt_3_3_1_4_qos_3_is_malformed() {
    malformed(
        &[0x36, 0x04, 0x00, 0x01, b't', 0x00],
        Violation::InvalidQos {
            field: "PUBLISH QoS",
        },
    );
}

#[test]
fn mqtt_3_3_1_2_dup_on_qos_0() {
    malformed(&[0x38, 0x04, 0x00, 0x01, b't', 0x00], Violation::DupOnQos0);
}

#[test]
fn remaining_length_longer_than_four_bytes() {
    malformed(
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        Violation::VarintTooLong {
            field: "Remaining Length",
        },
    );
}

#[test]
fn remaining_length_must_match_content() {
    // PUBACK whose Remaining Length says 1: the packet identifier is cut.
    malformed(
        &[0x40, 0x01, 0x00],
        Violation::Truncated {
            field: "Packet Identifier",
        },
    );
    // PINGREQ with a byte of content.
    malformed(
        &[0xC0, 0x01, 0x00],
        Violation::TrailingBytes {
            count: 1,
            part: "PINGREQ",
        },
    );
    // A property block that claims more than the packet holds.
    malformed(
        &[0x30, 0x05, 0x00, 0x01, b't', 0x09, 0x01],
        Violation::Truncated {
            field: "properties",
        },
    );
    // A string whose length runs past the packet.
    malformed(
        &[0x30, 0x04, 0x00, 0x09, b't', 0x00],
        Violation::Truncated {
            field: "Topic Name",
        },
    );
}

#[test]
fn mqtt_1_5_4_1_ill_formed_utf8_and_surrogates() {
    malformed(
        &[0x30, 0x05, 0x00, 0x02, 0xC3, 0x28, 0x00],
        Violation::InvalidUtf8 {
            field: "Topic Name",
        },
    );
    // U+D800 spelled ED A0 80.
    malformed(
        &[0x30, 0x06, 0x00, 0x03, 0xED, 0xA0, 0x80, 0x00],
        Violation::InvalidUtf8 {
            field: "Topic Name",
        },
    );
}

#[test]
fn mqtt_1_5_4_2_null_character() {
    malformed(
        &[0x30, 0x05, 0x00, 0x02, b'a', 0x00, 0x00],
        Violation::NullCharacter {
            field: "Topic Name",
        },
    );
}

#[test]
fn mqtt_3_3_2_2_wildcard_in_topic_name() {
    protocol_error(
        &[0x30, 0x05, 0x00, 0x02, b'a', b'#', 0x00],
        Violation::InvalidTopicName(TopicError::WildcardInName),
    );
}

#[test]
fn empty_topic_name_needs_a_topic_alias() {
    protocol_error(
        &[0x30, 0x03, 0x00, 0x00, 0x00],
        Violation::EmptyTopicWithoutAlias,
    );
}

#[test]
fn mqtt_3_3_2_8_topic_alias_zero() {
    protocol_error(
        &[0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x00],
        Violation::InvalidPropertyValue {
            property: PropertyId::TopicAlias,
            value: 0,
            rule: "a Topic Alias of 0 is not permitted [MQTT-3.3.2-8]",
        },
    );
}

#[test]
fn mqtt_2_2_1_3_packet_identifier_zero() {
    protocol_error(
        &[0x32, 0x06, 0x00, 0x01, b't', 0x00, 0x00, 0x00],
        Violation::ZeroPacketId {
            packet: PacketType::Publish,
        },
    );
    protocol_error(
        &[0x40, 0x02, 0x00, 0x00],
        Violation::ZeroPacketId {
            packet: PacketType::PubAck,
        },
    );
    protocol_error(
        &[0x82, 0x06, 0x00, 0x00, 0x00, 0x00, 0x01, b'a', 0x00],
        Violation::ZeroPacketId {
            packet: PacketType::Subscribe,
        },
    );
}

#[test]
fn unknown_property_is_malformed() {
    malformed(
        &[0x30, 0x05, 0x00, 0x01, b't', 0x01, 0x7F],
        Violation::UnknownProperty { id: 0x7F },
    );
}

#[test]
fn property_not_allowed_on_packet() {
    // Session Expiry Interval on PUBLISH.
    protocol_error(
        &[
            0x30, 0x09, 0x00, 0x01, b't', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01,
        ],
        Violation::PropertyNotAllowed {
            property: PropertyId::SessionExpiryInterval,
            packet: "PUBLISH",
        },
    );
    // Topic Alias on PUBACK.
    protocol_error(
        &[0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01],
        Violation::PropertyNotAllowed {
            property: PropertyId::TopicAlias,
            packet: "PUBACK",
        },
    );
    // Reason String on UNSUBSCRIBE.
    protocol_error(
        &[
            0xA2, 0x0A, 0x00, 0x01, 0x04, 0x1F, 0x00, 0x01, b'x', 0x00, 0x01, b'a',
        ],
        Violation::PropertyNotAllowed {
            property: PropertyId::ReasonString,
            packet: "UNSUBSCRIBE",
        },
    );
}

#[test]
fn property_twice_is_a_protocol_error() {
    // Content Type twice on PUBLISH.
    protocol_error(
        &[
            0x30, 0x0D, 0x00, 0x01, b't', 0x08, 0x03, 0x00, 0x01, b'a', 0x03, 0x00, 0x01, b'b',
            0x00,
        ],
        Violation::DuplicateProperty {
            property: PropertyId::ContentType,
        },
    );
    // Subscription Identifier twice on SUBSCRIBE (it may repeat only on PUBLISH).
    protocol_error(
        &[
            0x82, 0x0A, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00,
        ],
        Violation::DuplicateProperty {
            property: PropertyId::SubscriptionIdentifier,
        },
    );
    // Receive Maximum twice on CONNACK.
    protocol_error(
        &[
            0x20, 0x09, 0x00, 0x00, 0x06, 0x21, 0x00, 0x01, 0x21, 0x00, 0x02,
        ],
        Violation::DuplicateProperty {
            property: PropertyId::ReceiveMaximum,
        },
    );
}

#[test]
fn invalid_property_values() {
    let connack = |prop: &[u8]| {
        let mut wire = vec![0x20, 3 + prop.len() as u8, 0x00, 0x00, prop.len() as u8];
        wire.extend_from_slice(prop);
        wire
    };
    protocol_error(
        &connack(&[0x21, 0x00, 0x00]),
        Violation::InvalidPropertyValue {
            property: PropertyId::ReceiveMaximum,
            value: 0,
            rule: "0 is a Protocol Error",
        },
    );
    protocol_error(
        &connack(&[0x27, 0x00, 0x00, 0x00, 0x00]),
        Violation::InvalidPropertyValue {
            property: PropertyId::MaximumPacketSize,
            value: 0,
            rule: "0 is a Protocol Error",
        },
    );
    protocol_error(
        &connack(&[0x24, 0x02]),
        Violation::InvalidPropertyValue {
            property: PropertyId::MaximumQos,
            value: 2,
            rule: "Maximum QoS is 0 or 1; servers supporting QoS 2 omit it",
        },
    );
    protocol_error(
        &connack(&[0x25, 0x02]),
        Violation::InvalidPropertyValue {
            property: PropertyId::RetainAvailable,
            value: 2,
            rule: "the value must be 0 or 1",
        },
    );
    protocol_error(
        &[0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x01, 0x02],
        Violation::InvalidPropertyValue {
            property: PropertyId::PayloadFormatIndicator,
            value: 2,
            rule: "the value must be 0 or 1",
        },
    );
    protocol_error(
        &[0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x0B, 0x00],
        Violation::InvalidPropertyValue {
            property: PropertyId::SubscriptionIdentifier,
            value: 0,
            rule: "a Subscription Identifier lies in 1..=268,435,455",
        },
    );
    // MQTT-3.3.2-14: a Response Topic is a Topic Name.
    protocol_error(
        &[0x30, 0x08, 0x00, 0x01, b't', 0x04, 0x08, 0x00, 0x01, b'+'],
        Violation::InvalidTopicName(TopicError::WildcardInName),
    );
    protocol_error(
        &connack(&[0x16, 0x00, 0x00]),
        Violation::AuthDataWithoutMethod,
    );
}

#[test]
fn invalid_reason_codes_per_packet() {
    // 0x92 is not a PUBACK code; 0x03 is no code at all.
    malformed(
        &[0x40, 0x03, 0x00, 0x01, 0x92],
        Violation::InvalidReasonCode {
            code: 0x92,
            packet: PacketType::PubAck,
        },
    );
    malformed(
        &[0xE0, 0x01, 0x03],
        Violation::InvalidReasonCode {
            code: 0x03,
            packet: PacketType::Disconnect,
        },
    );
    malformed(
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0x92],
        Violation::InvalidReasonCode {
            code: 0x92,
            packet: PacketType::SubAck,
        },
    );
    malformed(
        &[0xF0, 0x02, 0x80, 0x00],
        Violation::InvalidReasonCode {
            code: 0x80,
            packet: PacketType::Auth,
        },
    );
}

#[test]
fn mqtt_3_1_2_connect_header_rules() {
    let header = |name: &[u8], level: u8, flags: u8| {
        let mut v = vec![0x10, 0];
        v.extend_from_slice(&(name.len() as u16).to_be_bytes());
        v.extend_from_slice(name);
        v.extend_from_slice(&[level, flags, 0x00, 0x00, 0x00, 0x00, 0x00]);
        v[1] = (v.len() - 2) as u8;
        v
    };
    refused(
        &header(b"MQIsdp", 5, 0x02),
        Violation::InvalidProtocolName("MQIsdp".into()),
        ReasonCode::UnsupportedProtocolVersion,
    );
    refused(
        &header(b"MQTT", 4, 0x02),
        Violation::UnsupportedProtocolVersion(4),
        ReasonCode::UnsupportedProtocolVersion,
    );
    malformed(&header(b"MQTT", 5, 0x03), Violation::ConnectReservedFlag);
    // Will QoS 1 without the Will flag [MQTT-3.1.2-11], Will Retain without it [MQTT-3.1.2-13].
    malformed(&header(b"MQTT", 5, 0x0A), Violation::WillFieldsWithoutWill);
    malformed(&header(b"MQTT", 5, 0x22), Violation::WillFieldsWithoutWill);
    // Will QoS 3 [MQTT-3.1.2-12].
    malformed(
        &header(b"MQTT", 5, 0x1E),
        Violation::InvalidQos { field: "Will QoS" },
    );
    // User Name flag set but no User Name [MQTT-3.1.2-17].
    malformed(
        &header(b"MQTT", 5, 0x82),
        Violation::Truncated { field: "User Name" },
    );
}

#[test]
fn mqtt_3_2_2_connack_rules() {
    malformed(
        &[0x20, 0x03, 0x02, 0x00, 0x00],
        Violation::ConnAckReservedFlags,
    );
    protocol_error(
        &[0x20, 0x03, 0x01, 0x80, 0x00],
        Violation::SessionPresentOnError(0x80),
    );
    malformed(
        &[0x20, 0x03, 0x00, 0x04, 0x00],
        Violation::InvalidReasonCode {
            code: 0x04,
            packet: PacketType::ConnAck,
        },
    );
}

#[test]
fn mqtt_3_8_3_subscribe_payload_rules() {
    // [MQTT-3.8.3-2] no filter.
    protocol_error(
        &[0x82, 0x03, 0x00, 0x01, 0x00],
        Violation::NoTopicFilters(PacketType::Subscribe),
    );
    // The options byte is missing.
    malformed(
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'a'],
        Violation::Truncated {
            field: "Subscription Options",
        },
    );
    // [MQTT-3.8.3-5] reserved option bits.
    malformed(
        &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40],
        Violation::SubscriptionOptionsReserved,
    );
    protocol_error(
        &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30],
        Violation::InvalidRetainHandling,
    );
    malformed(
        &[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x03],
        Violation::InvalidQos {
            field: "Subscription Options QoS",
        },
    );
    // [MQTT-3.8.3-4] No Local on a Shared Subscription.
    let mut wire = vec![0x82, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0A];
    wire.extend_from_slice(b"$share/g/a");
    wire.push(0x04);
    wire[1] = (wire.len() - 2) as u8;
    protocol_error(
        &wire,
        Violation::NoLocalOnSharedSubscription("$share/g/a".into()),
    );
    // Topic filter rules of section 4.7.
    protocol_error(
        &[0x82, 0x08, 0x00, 0x01, 0x00, 0x00, 0x02, b'a', b'#', 0x00],
        Violation::InvalidTopicFilter(TopicError::MultiLevelWildcardPlacement),
    );
    protocol_error(
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
        Violation::InvalidTopicFilter(TopicError::Empty),
    );
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_needs_a_filter() {
    protocol_error(
        &[0xA2, 0x03, 0x00, 0x01, 0x00],
        Violation::NoTopicFilters(PacketType::Unsubscribe),
    );
    malformed(
        &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x00, 0x05],
        Violation::Truncated {
            field: "Topic Filter",
        },
    );
}

#[test]
fn suback_and_unsuback_need_reason_codes() {
    protocol_error(
        &[0x90, 0x03, 0x00, 0x01, 0x00],
        Violation::NoReasonCodes(PacketType::SubAck),
    );
    protocol_error(
        &[0xB0, 0x03, 0x00, 0x01, 0x00],
        Violation::NoReasonCodes(PacketType::UnsubAck),
    );
}

#[test]
fn maximum_packet_size_gives_its_own_error() {
    let codec = Codec {
        max_incoming_packet_size: Some(10),
        ..Codec::default()
    };
    let mut ok = BytesMut::from(&[0x30, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'h', b'i'][..]);
    assert!(matches!(codec.decode(&mut ok), Ok(Decoded::Packet(_))));
    let mut big = BytesMut::from(
        &[
            0x30, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, b'h', b'i', b'!',
        ][..],
    );
    let err = codec.decode(&mut big).unwrap_err();
    assert_eq!(
        err.violation,
        Violation::PacketTooLarge { size: 11, max: 10 }
    );
    assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
    assert!(err.to_string().contains("exceeds the Maximum Packet Size"));
}

#[test]
fn error_messages_name_the_rule() {
    let mut buf = BytesMut::from(&[0x38, 0x04, 0x00, 0x01, b't', 0x00][..]);
    let err = codec().decode(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "received PUBLISH is invalid: DUP is set on a QoS 0 PUBLISH [MQTT-3.3.1-2]"
    );
}

// ---------------------------------------------------------------------------------------------
// Encoding refuses what the specification forbids, and writes nothing.

#[test]
fn encoder_refuses_invalid_packets() {
    refused_encode(
        Packet::Publish(Publish::new("a/+", "x")),
        Violation::InvalidTopicName(TopicError::WildcardInName),
    );
    refused_encode(
        Packet::Publish(Publish::new("", "x")),
        Violation::EmptyTopicWithoutAlias,
    );
    let mut qos1 = Publish::new("t", "x");
    qos1.qos = QoS::AtLeastOnce;
    refused_encode(
        Packet::Publish(qos1),
        Violation::ZeroPacketId {
            packet: PacketType::Publish,
        },
    );
    let mut qos0 = Publish::new("t", "x");
    qos0.packet_id = 4;
    refused_encode(
        Packet::Publish(qos0),
        Violation::PacketIdOnQos0 { packet_id: 4 },
    );
    let mut dup0 = Publish::new("t", "x");
    dup0.dup = true;
    refused_encode(Packet::Publish(dup0), Violation::DupOnQos0);
    let mut alias0 = Publish::new("t", "x");
    alias0.properties.topic_alias = Some(0);
    refused_encode(
        Packet::Publish(alias0),
        Violation::InvalidPropertyValue {
            property: PropertyId::TopicAlias,
            value: 0,
            rule: "a Topic Alias of 0 is not permitted [MQTT-3.3.2-8]",
        },
    );
    let mut nul = Publish::new("t", "x");
    nul.properties.content_type = Some("a\0".into());
    refused_encode(
        Packet::Publish(nul),
        Violation::NullCharacter {
            field: "Content Type",
        },
    );
    let mut long = Publish::new("t", "x");
    long.properties.correlation_data = Some(Bytes::from(vec![0u8; 65_536]));
    refused_encode(
        Packet::Publish(long),
        Violation::TooLong {
            field: "Correlation Data",
            len: 65_536,
        },
    );
    let mut sub_id = Publish::new("t", "x");
    sub_id.properties.subscription_identifiers = vec![MAX_VARINT + 1];
    refused_encode(
        Packet::Publish(sub_id),
        Violation::InvalidPropertyValue {
            property: PropertyId::SubscriptionIdentifier,
            value: MAX_VARINT + 1,
            rule: "a Subscription Identifier lies in 1..=268,435,455",
        },
    );
    let mut ack = PubAck::new(1);
    ack.reason_code = ReasonCode::GrantedQos1;
    refused_encode(
        Packet::PubAck(ack),
        Violation::InvalidReasonCode {
            code: 0x01,
            packet: PacketType::PubAck,
        },
    );
    let mut shared = Subscription::new("$share/g/a", QoS::AtMostOnce);
    shared.options.no_local = true;
    refused_encode(
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            subscriptions: vec![shared],
        }),
        Violation::NoLocalOnSharedSubscription("$share/g/a".into()),
    );
    refused_encode(
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            subscriptions: vec![],
        }),
        Violation::NoTopicFilters(PacketType::Subscribe),
    );
    let mut connack = ConnAck::new(true);
    connack.reason_code = ReasonCode::Banned;
    refused_encode(
        Packet::ConnAck(Box::new(connack)),
        Violation::SessionPresentOnError(0x8A),
    );
    let mut connect = Connect::new("c");
    connect.properties.receive_maximum = Some(0);
    refused_encode(
        Packet::Connect(Box::new(connect)),
        Violation::InvalidPropertyValue {
            property: PropertyId::ReceiveMaximum,
            value: 0,
            rule: "0 is a Protocol Error",
        },
    );
    let mut connect = Connect::new("c");
    connect.will = Some(Will::new("w/#", "x"));
    refused_encode(
        Packet::Connect(Box::new(connect)),
        Violation::InvalidTopicName(TopicError::WildcardInName),
    );
}

#[test]
fn mqtt_3_2_2_15_encoder_respects_the_peers_maximum_packet_size() {
    let codec = Codec {
        max_outgoing_packet_size: Some(10),
        ..Codec::default()
    };
    let mut buf = BytesMut::new();
    assert_eq!(
        codec.encode(&Packet::Publish(Publish::new("a/b", "hi")), &mut buf),
        Ok(10)
    );
    let err = codec
        .encode(&Packet::Publish(Publish::new("a/b", "hi!")), &mut buf)
        .unwrap_err();
    assert_eq!(
        err.violation,
        Violation::PacketTooLarge { size: 11, max: 10 }
    );
    assert_eq!(buf.len(), 10, "the refused packet wrote nothing");
}

#[test]
fn remaining_length_boundaries_encode_minimally() {
    for (payload_len, header) in [
        (123usize, vec![0x30, 0x7F]),
        (124, vec![0x30, 0x80, 0x01]),
        (16_379, vec![0x30, 0xFF, 0x7F]),
        (16_380, vec![0x30, 0x80, 0x80, 0x01]),
    ] {
        // topic "t" (3 bytes) + property length (1 byte) + payload
        let packet = Packet::Publish(Publish::new("t", vec![0u8; payload_len]));
        let mut buf = BytesMut::new();
        codec().encode(&packet, &mut buf).unwrap();
        assert_eq!(&buf[..header.len()], &header[..], "payload {payload_len}");
        assert_eq!(buf.len(), header.len() + 4 + payload_len);
        decodes_to(&buf, packet);
    }
}

#[test]
fn mqtt_1_5_7_1_both_strings_of_a_user_property_are_utf8_strings() {
    // PUBACK 1, Success, one User Property: name "k", value one byte.
    let puback = |name: u8, value: u8| {
        [
            0x40, 0x0b, 0x00, 0x01, 0x00, 0x07, 0x26, 0x00, 0x01, name, 0x00, 0x01, value,
        ]
    };
    assert!(matches!(
        Codec::default().decode(&mut BytesMut::from(&puback(b'k', b'v')[..])),
        Ok(Decoded::Packet(Packet::PubAck(_)))
    ));
    for (name, value) in [(b'k', 0xff), (0xff, b'v'), (b'k', 0x00), (0x00, b'v')] {
        let error = Codec::default()
            .decode(&mut BytesMut::from(&puback(name, value)[..]))
            .unwrap_err();
        assert_eq!(
            error.violation.reason_code(),
            ReasonCode::MalformedPacket,
            "{name:#x} {value:#x}: {error}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The client as sender: what the encoder builds, and refuses to build, for the rules that bind
// the sender (the decoder's refusals above are the receiver's side).

fn encoded(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    codec().encode(packet, &mut buf).expect("encode");
    buf
}

fn unsubscribe(filters: Vec<String>) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: 1,
        properties: UnsubscribeProperties::default(),
        filters,
    })
}

fn subscribe(filters: &[&str]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: SubscribeProperties::default(),
        subscriptions: filters
            .iter()
            .map(|f| Subscription::new(*f, QoS::AtMostOnce))
            .collect(),
    })
}

/// [MQTT-2.1.3-1] Every packet type the client sends goes out with the flag bits its section
/// lists: 0010 for PUBREL, SUBSCRIBE and UNSUBSCRIBE, 0000 for the others.
#[test]
fn mqtt_2_1_3_1_the_encoder_writes_the_listed_flag_bits() {
    let auth = Packet::Auth(Auth {
        reason_code: ReasonCode::ReAuthenticate,
        properties: AuthProperties {
            authentication_method: Some("m".into()),
            ..AuthProperties::default()
        },
    });
    for (packet, first) in [
        (Packet::Connect(Box::new(Connect::new("c"))), 0x10),
        (Packet::PubAck(PubAck::new(1)), 0x40),
        (Packet::PubRec(PubAck::new(1)), 0x50),
        (Packet::PubRel(PubAck::new(1)), 0x62),
        (Packet::PubComp(PubAck::new(1)), 0x70),
        (subscribe(&["a"]), 0x82),
        (unsubscribe(vec!["a".into()]), 0xA2),
        (Packet::PingReq, 0xC0),
        (
            Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
            0xE0,
        ),
        (auth, 0xF0),
    ] {
        assert_eq!(encoded(&packet)[0], first, "{packet:?}");
    }
}

/// [MQTT-3.1.2-11, MQTT-3.1.2-13] Without a Will, the Will QoS and Will Retain bits are 0;
/// [MQTT-3.1.2-12] with one, the Will QoS bits are the Will's QoS, which has no value 3.
#[test]
fn mqtt_3_1_2_11_to_13_the_will_bits_are_0_without_a_will_and_the_wills_qos_with_one() {
    // The Connect Flags byte: after the fixed header (2), the protocol name (6), the level (1).
    let flags = |connect: Connect| encoded(&Packet::Connect(Box::new(connect)))[9];
    let mut bare = Connect::new("c");
    bare.clean_start = false;
    assert_eq!(flags(bare) & 0b0011_1100, 0, "no Will Flag, QoS or Retain");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut with_will = Connect::new("c");
        let mut will = Will::new("w", "x");
        will.qos = qos;
        will.retain = true;
        with_will.will = Some(will);
        let f = flags(with_will);
        assert_eq!(f & 0b0000_0100, 0b0100, "Will Flag");
        assert_eq!((f >> 3) & 0b11, qos as u8, "Will QoS");
        assert_ne!((f >> 3) & 0b11, 3);
        assert_eq!(f & 0b0010_0000, 0b0010_0000, "Will Retain");
    }
    // A Will QoS of 3, as a receiver would see it, names the Will's rule.
    let mut connect = Connect::new("c");
    connect.will = Some(Will::new("w", "x"));
    let mut wire = encoded(&Packet::Connect(Box::new(connect)));
    wire[9] |= 0b0001_1000;
    let error = codec().decode(&mut wire).unwrap_err();
    assert_eq!(error.violation, Violation::InvalidQos { field: "Will QoS" });
    assert!(error.to_string().contains("[MQTT-3.1.2-12]"), "{error}");
}

/// [MQTT-3.1.2-19] Password Flag 1 with the password in the payload, after the User Name
/// [MQTT-3.1.3-1]: every payload field, in order, byte for byte.
#[test]
fn mqtt_3_1_3_1_connect_payload_fields_in_order_with_a_password() {
    let mut connect = Connect::new("id");
    connect.clean_start = false;
    connect.keep_alive = 0;
    let mut will = Will::new("w", "p");
    will.properties.will_delay_interval = Some(5);
    connect.will = Some(will);
    connect.username = Some("u".into());
    connect.password = Some(Bytes::from_static(b"pw"));
    let wire = encoded(&Packet::Connect(Box::new(connect.clone())));
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x10, 34,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 5,
        0b1100_0100, // User Name, Password, Will Flag; Will QoS 0, Clean Start 0
        0x00, 0x00, // Keep Alive
        0x00, // no properties
        0x00, 0x02, b'i', b'd', // Client Identifier
        0x05, 0x18, 0x00, 0x00, 0x00, 0x05, // Will Properties: Will Delay Interval 5
        0x00, 0x01, b'w', // Will Topic
        0x00, 0x01, b'p', // Will Payload
        0x00, 0x01, b'u', // User Name
        0x00, 0x02, b'p', b'w', // Password
    ];
    assert_eq!(&wire[..], expected);
    decodes_to(expected, Packet::Connect(Box::new(connect)));
}

/// [MQTT-1.5.4-2, MQTT-1.5.7-1, MQTT-3.1.3-4, MQTT-3.1.3-12, MQTT-3.3.2-19] The client never
/// encodes a string with U+0000, wherever it is: Client Identifier, User Name, a User
/// Property's name or value, Content Type. (Rust strings are well-formed UTF-8 without
/// surrogates by type [MQTT-1.5.4-1].)
#[test]
fn the_encoder_refuses_a_string_with_a_null_character_in_any_field() {
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
    for (name, value, field) in [
        ("n\0", "v", "User Property name"),
        ("n", "v\0", "User Property value"),
    ] {
        let mut p = Publish::new("t", "x");
        p.properties.user_properties = vec![UserProperty::new(name, value)];
        refused_encode(Packet::Publish(p), Violation::NullCharacter { field });
    }
    let mut content = Publish::new("t", "x");
    content.properties.content_type = Some("text\0".into());
    refused_encode(
        Packet::Publish(content),
        Violation::NullCharacter {
            field: "Content Type",
        },
    );
    // [MQTT-3.3.2-13] The Response Topic is a UTF-8 string (and a Topic Name).
    let mut request = Publish::new("t", "x");
    request.properties.response_topic = Some("r\0".into());
    refused_encode(
        Packet::Publish(request),
        Violation::InvalidTopicName(TopicError::NullCharacter),
    );
    // [MQTT-3.1.3-11] The Will Topic is a UTF-8 string (and a Topic Name).
    let mut with_will = Connect::new("c");
    with_will.will = Some(Will::new("w\0", "x"));
    refused_encode(
        Packet::Connect(Box::new(with_will)),
        Violation::InvalidTopicName(TopicError::NullCharacter),
    );
}

/// [MQTT-3.8.3-1, MQTT-3.8.3-2, MQTT-3.10.3-1, MQTT-3.10.3-2, MQTT-4.7.1-1, MQTT-4.7.1-2,
/// MQTT-4.7.3-1, MQTT-4.7.3-2, MQTT-4.7.3-3, MQTT-4.8.2-1, MQTT-4.8.2-2] The encoder refuses
/// SUBSCRIBE and UNSUBSCRIBE with no filter or a filter the specification does not allow.
#[test]
fn the_encoder_refuses_subscribe_and_unsubscribe_without_a_valid_filter() {
    refused_encode(
        subscribe(&[]),
        Violation::NoTopicFilters(PacketType::Subscribe),
    );
    refused_encode(
        unsubscribe(vec![]),
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
        ("$share//a", TopicError::InvalidShareName),
        ("$share/a+b/x", TopicError::InvalidShareName),
        ("$share/g", TopicError::SharedWithoutFilter),
    ] {
        refused_encode(subscribe(&[filter]), Violation::InvalidTopicFilter(error));
        refused_encode(
            unsubscribe(vec![filter.to_owned()]),
            Violation::InvalidTopicFilter(error),
        );
    }
}
