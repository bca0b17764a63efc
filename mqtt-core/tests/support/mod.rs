//! proptest strategies that build arbitrary *valid* MQTT v5 packets, shared by the codec's
//! property tests and its allocation test.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use mooring_core::packet::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Any UTF-8 string the codec accepts: no U+0000, and a mix of ASCII, multi-byte and U+FEFF.
pub fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 /+#$_é中\u{FEFF}\u{10348}]{0,12}"
}

pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn level() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _$é中]{0,6}"
}

pub fn topic_name() -> impl Strategy<Value = String> {
    vec(level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a Topic Name is not empty", |t| !t.is_empty())
}

pub fn topic_filter() -> impl Strategy<Value = String> {
    let filter_level = prop_oneof![3 => level(), 1 => Just("+".to_owned())];
    (
        vec(filter_level, 1..5),
        any::<bool>(),
        option::of("[a-z0-9]{1,4}"),
    )
        .prop_map(|(mut levels, multi, share)| {
            if multi {
                levels.push("#".to_owned());
            }
            let filter = levels.join("/");
            match share {
                Some(name) => format!("$share/{name}/{filter}"),
                None => filter,
            }
        })
        .prop_filter("a Topic Filter is valid", |f| {
            validate_topic_filter(f).is_ok()
        })
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

pub fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

pub fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(
        (text(), text()).prop_map(|(n, v)| UserProperty::new(n, v)),
        0..4,
    )
}

fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    prop_oneof![Just(PayloadFormat::Unspecified), Just(PayloadFormat::Utf8)]
}

fn non_zero_u16() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn non_zero_u32() -> impl Strategy<Value = u32> {
    1..=u32::MAX
}

fn subscription_id() -> impl Strategy<Value = u32> {
    1..=MAX_VARINT
}

pub fn reason_code_for(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = ReasonCode::ALL
        .iter()
        .copied()
        .filter(|c| c.is_valid_for(packet))
        .collect();
    proptest::sample::select(codes)
}

fn auth() -> impl Strategy<Value = (Option<String>, Option<Bytes>)> {
    option::of((text(), option::of(binary()))).prop_map(|a| match a {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    })
}

pub fn connect() -> impl Strategy<Value = Connect> {
    let properties = (
        option::of(any::<u32>()),
        option::of(non_zero_u16()),
        option::of(non_zero_u32()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        user_properties(),
        auth(),
    )
        .prop_map(
            |(sei, rm, mps, tam, rri, rpi, up, (am, ad))| ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: up,
                authentication_method: am,
                authentication_data: ad,
            },
        );
    let will_properties = (
        option::of(any::<u32>()),
        option::of(payload_format()),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(|(wdi, pfi, mei, ct, rt, cd, up)| WillProperties {
            will_delay_interval: wdi,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
        });
    let will = (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        will_properties,
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        properties,
        text(),
        option::of(will),
        option::of(text()),
        option::of(binary()),
    )
        .prop_map(
            |(clean_start, keep_alive, properties, client_id, will, username, password)| Connect {
                clean_start,
                keep_alive,
                properties,
                client_id,
                will,
                username,
                password,
            },
        )
}

pub fn connack() -> impl Strategy<Value = ConnAck> {
    let flags = (
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    let properties = (
        option::of(any::<u32>()),
        option::of(non_zero_u16()),
        option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        option::of(non_zero_u32()),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        user_properties(),
        flags,
        option::of(any::<u16>()),
        (option::of(text()), option::of(text()), auth()),
    )
        .prop_map(
            |(sei, rm, mq, mps, aci, tam, rs, up, (ra, wsa, sia, ssa), ska, (ri, sr, (am, ad)))| {
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                }
            },
        );
    (
        any::<bool>(),
        reason_code_for(PacketType::ConnAck),
        properties,
    )
        .prop_map(|(session_present, reason_code, properties)| ConnAck {
            session_present: session_present && reason_code == ReasonCode::Success,
            reason_code,
            properties,
        })
}

pub fn publish() -> impl Strategy<Value = Publish> {
    let properties = (
        option::of(payload_format()),
        option::of(any::<u32>()),
        option::of(non_zero_u16()),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
        vec(subscription_id(), 0..3),
        option::of(text()),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, up, si, ct)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            subscription_identifiers: si,
            content_type: ct,
        });
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        properties,
        vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(dup, qos, retain, topic, aliased, packet_id, properties, payload)| {
                let at_most_once = qos == QoS::AtMostOnce;
                Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    // An aliased PUBLISH may leave the topic empty.
                    topic: if aliased && properties.topic_alias.is_some() {
                        String::new()
                    } else {
                        topic
                    },
                    packet_id: if at_most_once { 0 } else { packet_id },
                    properties,
                    payload: Bytes::from(payload),
                }
            },
        )
}

pub fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(text()), user_properties()).prop_map(|(reason_string, user_properties)| {
        AckProperties {
            reason_string,
            user_properties,
        }
    })
}

pub fn pub_ack(packet: PacketType) -> impl Strategy<Value = PubAck> {
    (packet_id(), reason_code_for(packet), ack_properties()).prop_map(
        |(packet_id, reason_code, properties)| PubAck {
            packet_id,
            reason_code,
            properties,
        },
    )
}

pub fn subscribe() -> impl Strategy<Value = Subscribe> {
    let options = (
        qos(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(RetainHandling::SendAtSubscribe),
            Just(RetainHandling::SendAtNewSubscribe),
            Just(RetainHandling::DoNotSend)
        ],
    );
    let subscription =
        (topic_filter(), options).prop_map(|(filter, (qos, nl, rap, rh))| Subscription {
            options: SubscriptionOptions {
                qos,
                no_local: nl && !is_shared_subscription(&filter),
                retain_as_published: rap,
                retain_handling: rh,
            },
            filter,
        });
    let properties = (option::of(subscription_id()), user_properties()).prop_map(
        |(subscription_identifier, user_properties)| SubscribeProperties {
            subscription_identifier,
            user_properties,
        },
    );
    (packet_id(), properties, vec(subscription, 1..5)).prop_map(
        |(packet_id, properties, subscriptions)| Subscribe {
            packet_id,
            properties,
            subscriptions,
        },
    )
}

pub fn suback() -> impl Strategy<Value = SubAck> {
    (
        packet_id(),
        ack_properties(),
        vec(reason_code_for(PacketType::SubAck), 1..5),
    )
        .prop_map(|(packet_id, properties, reason_codes)| SubAck {
            packet_id,
            properties,
            reason_codes,
        })
}

pub fn unsubscribe() -> impl Strategy<Value = Unsubscribe> {
    (packet_id(), user_properties(), vec(topic_filter(), 1..5)).prop_map(
        |(packet_id, user_properties, filters)| Unsubscribe {
            packet_id,
            properties: UnsubscribeProperties { user_properties },
            filters,
        },
    )
}

pub fn unsuback() -> impl Strategy<Value = UnsubAck> {
    (
        packet_id(),
        ack_properties(),
        vec(reason_code_for(PacketType::UnsubAck), 1..5),
    )
        .prop_map(|(packet_id, properties, reason_codes)| UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
}

pub fn disconnect() -> impl Strategy<Value = Disconnect> {
    let properties = (
        option::of(any::<u32>()),
        option::of(text()),
        user_properties(),
        option::of(text()),
    )
        .prop_map(|(sei, rs, up, sr)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            user_properties: up,
            server_reference: sr,
        });
    (reason_code_for(PacketType::Disconnect), properties).prop_map(|(reason_code, properties)| {
        Disconnect {
            reason_code,
            properties,
        }
    })
}

pub fn auth_packet() -> impl Strategy<Value = Auth> {
    let properties =
        (auth(), option::of(text()), user_properties()).prop_map(|((am, ad), rs, up)| {
            AuthProperties {
                authentication_method: am,
                authentication_data: ad,
                reason_string: rs,
                user_properties: up,
            }
        });
    (reason_code_for(PacketType::Auth), properties).prop_map(|(reason_code, properties)| Auth {
        reason_code,
        properties,
    })
}

/// Any valid packet of any of the fifteen types.
pub fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect().prop_map(|p| Packet::Connect(Box::new(p))),
        connack().prop_map(|p| Packet::ConnAck(Box::new(p))),
        publish().prop_map(Packet::Publish),
        pub_ack(PacketType::PubAck).prop_map(Packet::PubAck),
        pub_ack(PacketType::PubRec).prop_map(Packet::PubRec),
        pub_ack(PacketType::PubRel).prop_map(Packet::PubRel),
        pub_ack(PacketType::PubComp).prop_map(Packet::PubComp),
        subscribe().prop_map(Packet::Subscribe),
        suback().prop_map(Packet::SubAck),
        unsubscribe().prop_map(Packet::Unsubscribe),
        unsuback().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect().prop_map(Packet::Disconnect),
        auth_packet().prop_map(Packet::Auth),
    ]
}

/// The bytes of `packet`; panics if the strategy built a packet the codec refuses.
pub fn encode(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    Codec::default()
        .encode(packet, &mut buf)
        .unwrap_or_else(|e| panic!("valid packet refused: {e}\n{packet:#?}"));
    buf
}
