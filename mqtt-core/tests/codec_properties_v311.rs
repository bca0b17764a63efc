//! Property tests of the MQTT 3.1.1 codec: every packet 3.1.1 can express survives encode →
//! decode unchanged, every strict prefix is incomplete, and no input makes the decoder panic;
//! whatever it accepts encodes back to the same packet.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use bytes::BytesMut;
use mooring_core::packet::*;
use proptest::prelude::*;
use support::*;

fn codec() -> Codec {
    Codec {
        protocol: ProtocolVersion::V311,
        ..Codec::default()
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        ..ProptestConfig::default()
    }
}

/// What 3.1.1 can say of a v5 packet: no properties, the return codes it has, options beyond
/// QoS dropped, a Topic Name where v5 used an alias. `None` for AUTH.
fn to_v311(packet: Packet) -> Option<Packet> {
    Some(match packet {
        Packet::Connect(mut c) => {
            c.properties = ConnectProperties::default();
            if let Some(will) = c.will.as_mut() {
                will.properties = WillProperties::default();
            }
            if c.password.is_some() && c.username.is_none() {
                c.username = Some("u".into());
            }
            Packet::Connect(c)
        }
        Packet::ConnAck(mut c) => {
            c.properties = ConnAckProperties::default();
            let codes = [
                ReasonCode::Success,
                ReasonCode::UnsupportedProtocolVersion,
                ReasonCode::ClientIdentifierNotValid,
                ReasonCode::ServerUnavailable,
                ReasonCode::BadUserNameOrPassword,
                ReasonCode::NotAuthorized,
            ];
            c.reason_code = codes[usize::from(c.reason_code.value()) % codes.len()];
            c.session_present &= c.reason_code == ReasonCode::Success;
            Packet::ConnAck(c)
        }
        Packet::Publish(mut p) => {
            p.properties = PublishProperties::default();
            if p.topic.is_empty() {
                p.topic = "t".into();
            }
            Packet::Publish(p)
        }
        Packet::PubAck(a) => Packet::PubAck(PubAck::new(a.packet_id)),
        Packet::PubRec(a) => Packet::PubRec(PubAck::new(a.packet_id)),
        Packet::PubRel(a) => Packet::PubRel(PubAck::new(a.packet_id)),
        Packet::PubComp(a) => Packet::PubComp(PubAck::new(a.packet_id)),
        Packet::Subscribe(mut s) => {
            s.properties = SubscribeProperties::default();
            for subscription in &mut s.subscriptions {
                *subscription = Subscription::new(
                    std::mem::take(&mut subscription.filter),
                    subscription.options.qos,
                );
            }
            Packet::Subscribe(s)
        }
        Packet::SubAck(mut s) => {
            s.properties = AckProperties::default();
            for code in &mut s.reason_codes {
                *code = match code.value() {
                    0 => ReasonCode::Success,
                    1 => ReasonCode::GrantedQos1,
                    2 => ReasonCode::GrantedQos2,
                    _ => ReasonCode::UnspecifiedError,
                };
            }
            Packet::SubAck(s)
        }
        Packet::Unsubscribe(mut u) => {
            u.properties = UnsubscribeProperties::default();
            Packet::Unsubscribe(u)
        }
        Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        }),
        Packet::Disconnect(_) => Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
        Packet::Auth(_) => return None,
        other => other,
    })
}

fn v311_packet() -> impl Strategy<Value = Packet> {
    packet().prop_filter_map("AUTH does not exist in 3.1.1", to_v311)
}

fn encode_v311(packet: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    codec()
        .encode(packet, &mut buf)
        .expect("a 3.1.1 packet encodes");
    buf
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_3_1_1_packet_round_trips(packet in v311_packet()) {
        let wire = encode_v311(&packet);
        prop_assert_eq!(codec().encoded_len(&packet).unwrap(), wire.len());
        let mut buf = wire.clone();
        prop_assert_eq!(codec().decode(&mut buf), Ok(Decoded::Packet(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn every_prefix_of_a_3_1_1_packet_is_incomplete(packet in v311_packet()) {
        let wire = encode_v311(&packet);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let decoded = codec().decode(&mut buf);
            prop_assert!(
                matches!(decoded, Ok(Decoded::Incomplete { .. })),
                "prefix of {} bytes gave {:?}", cut, decoded
            );
            prop_assert_eq!(buf.len(), cut, "an incomplete decode consumed bytes");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_is_accepted_reencodes(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Decoded::Packet(packet)) = codec().decode(&mut buf) {
            let mut again = encode_v311(&packet);
            prop_assert_eq!(codec().decode(&mut again), Ok(Decoded::Packet(packet)));
        }
    }

    #[test]
    fn v5_packets_that_3_1_1_cannot_say_are_refused_or_unchanged(packet in packet()) {
        // The 3.1.1 encoder either refuses a v5 packet or writes what decodes to the same one:
        // nothing is dropped on the way.
        let mut buf = BytesMut::new();
        if codec().encode(&packet, &mut buf).is_ok() {
            prop_assert_eq!(codec().decode(&mut buf), Ok(Decoded::Packet(packet)));
        }
    }
}
