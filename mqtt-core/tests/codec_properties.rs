//! Property tests of the codec: every valid packet survives encode → decode unchanged, and no
//! input, however broken, makes the decoder panic or lose its place.
// Test code: a broken expectation should stop the run loudly.
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

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        ..ProptestConfig::default()
    }
}

/// Decodes everything in `buf`, as a connection would, until it needs more bytes or fails.
fn decode_all(codec: &Codec, buf: &mut BytesMut) -> (Vec<Packet>, Result<(), DecodeError>) {
    let mut packets = Vec::new();
    loop {
        match codec.decode(buf) {
            Ok(Decoded::Packet(p)) => packets.push(p),
            Ok(Decoded::Incomplete { .. }) => return (packets, Ok(())),
            Err(e) => return (packets, Err(e)),
        }
    }
}

/// Checks the round trip of one packet and returns its bytes.
fn round_trip(packet: &Packet) -> Result<BytesMut, TestCaseError> {
    let codec = Codec::default();
    let wire = encode(packet);
    prop_assert_eq!(codec.encoded_len(packet).unwrap(), wire.len());
    let mut buf = wire.clone();
    match codec.decode(&mut buf) {
        Ok(Decoded::Packet(back)) => prop_assert_eq!(&back, packet),
        other => prop_assert!(false, "decoding {:?} gave {:?}", packet, other),
    }
    prop_assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    Ok(wire)
}

macro_rules! round_trip_tests {
    ($($name:ident: $strategy:expr;)+) => {
        proptest! {
            #![proptest_config(config())]
            $(
                #[test]
                fn $name(packet in $strategy) {
                    round_trip(&packet)?;
                }
            )+
        }
    };
}

round_trip_tests! {
    connect_round_trips: connect().prop_map(|p| Packet::Connect(Box::new(p)));
    connack_round_trips: connack().prop_map(|p| Packet::ConnAck(Box::new(p)));
    publish_round_trips: publish().prop_map(Packet::Publish);
    puback_round_trips: pub_ack(PacketType::PubAck).prop_map(Packet::PubAck);
    pubrec_round_trips: pub_ack(PacketType::PubRec).prop_map(Packet::PubRec);
    pubrel_round_trips: pub_ack(PacketType::PubRel).prop_map(Packet::PubRel);
    pubcomp_round_trips: pub_ack(PacketType::PubComp).prop_map(Packet::PubComp);
    subscribe_round_trips: subscribe().prop_map(Packet::Subscribe);
    suback_round_trips: suback().prop_map(Packet::SubAck);
    unsubscribe_round_trips: unsubscribe().prop_map(Packet::Unsubscribe);
    unsuback_round_trips: unsuback().prop_map(Packet::UnsubAck);
    pingreq_round_trips: Just(Packet::PingReq);
    pingresp_round_trips: Just(Packet::PingResp);
    disconnect_round_trips: disconnect().prop_map(Packet::Disconnect);
    auth_round_trips: auth_packet().prop_map(Packet::Auth);
}

proptest! {
    #![proptest_config(config())]

    /// A PUBLISH measured and encoded by reference (how the session sends what it keeps), or
    /// as a head with the payload after it (how a large payload goes out uncopied), is exactly
    /// the PUBLISH as a packet, at both protocol versions, refusals included.
    #[test]
    fn a_publish_by_reference_encodes_as_the_packet_does(
        packet in packet(),
        limit in proptest::option::of(2u32..400),
        v311 in any::<bool>(),
    ) {
        let Packet::Publish(publish) = &packet else { return Ok(()) };
        let codec = Codec {
            protocol: if v311 { ProtocolVersion::V311 } else { ProtocolVersion::V5 },
            max_outgoing_packet_size: limit,
            ..Codec::default()
        };
        let (mut by_ref, mut whole) = (BytesMut::new(), BytesMut::new());
        prop_assert_eq!(
            codec.encode_publish(publish, &mut by_ref),
            codec.encode(&packet, &mut whole)
        );
        prop_assert_eq!(&by_ref, &whole);
        prop_assert_eq!(codec.encoded_publish_len(publish), codec.encoded_len(&packet));
        // The head and then the payload as it is: the same bytes.
        let mut head = BytesMut::new();
        let head_result = codec.encode_publish_head(publish, &mut head);
        prop_assert_eq!(&head_result, &codec.encoded_len(&packet));
        if head_result.is_ok() {
            head.extend_from_slice(&publish.payload);
        }
        prop_assert_eq!(head, whole);
    }

    /// Decoding from shared bytes (a stored record) answers as decoding from the stream does,
    /// for valid packets, their prefixes and arbitrary bytes, and consumes the same.
    #[test]
    fn decoding_shared_bytes_answers_as_the_stream_does(
        packet in packet(),
        cut in any::<proptest::sample::Index>(),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let wire = round_trip(&packet)?;
        let codec = Codec::default();
        let prefix = &wire[..cut.index(wire.len() + 1)];
        for input in [&wire[..], prefix, &noise[..]] {
            let mut stream = BytesMut::from(input);
            let mut shared = bytes::Bytes::copy_from_slice(input);
            prop_assert_eq!(codec.decode_shared(&mut shared), codec.decode(&mut stream));
            prop_assert_eq!(&shared[..], &stream[..]);
        }
    }

    /// A strict prefix of a valid packet is never an error and never consumed; once the
    /// Remaining Length is complete, `needed` is exact.
    #[test]
    fn every_prefix_is_incomplete(packet in packet()) {
        let wire = round_trip(&packet)?;
        let codec = Codec::default();
        let header_len = 1 + (1..wire.len()).find(|&i| wire[i] & 0x80 == 0).unwrap();
        for cut in 0..wire.len() {
            let mut prefix = BytesMut::from(&wire[..cut]);
            match codec.decode(&mut prefix) {
                Ok(Decoded::Incomplete { needed }) => {
                    prop_assert!(needed >= 1);
                    prop_assert!(cut + needed <= wire.len());
                    if cut >= header_len {
                        prop_assert_eq!(cut + needed, wire.len());
                    }
                }
                other => prop_assert!(false, "prefix of {} bytes gave {:?}", cut, other),
            }
            prop_assert_eq!(prefix.len(), cut, "an incomplete decode consumed bytes");
        }
    }

    /// Packets back to back, fed in arbitrary chunks, come out whole and in order.
    #[test]
    fn a_stream_in_chunks_yields_every_packet_in_order(
        packets in proptest::collection::vec(packet(), 1..8),
        chunk_sizes in proptest::collection::vec(1usize..64, 1..64),
    ) {
        let codec = Codec::default();
        let mut stream = BytesMut::new();
        for p in &packets {
            codec.encode(p, &mut stream).unwrap();
        }
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut sizes = chunk_sizes.iter().cycle();
        while !stream.is_empty() {
            let n = (*sizes.next().unwrap()).min(stream.len());
            buf.extend_from_slice(&stream.split_to(n));
            let (decoded, result) = decode_all(&codec, &mut buf);
            prop_assert!(result.is_ok(), "{:?}", result);
            out.extend(decoded);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, packets);
    }

    /// Arbitrary bytes never panic the decoder; whatever it accepts re-encodes and decodes to
    /// the same packet.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_accepted_packets_reencode(&bytes)?;
    }

    /// Valid packets with bytes flipped, inserted or removed never panic the decoder, and what
    /// it still accepts is a valid packet.
    #[test]
    fn mutated_packets_never_panic(
        packet in packet(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = encode(&packet).to_vec();
        for (at, value, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = value,
                1 => bytes.insert(i, value),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        check_accepted_packets_reencode(&bytes)?;
    }

    /// Truncated or extended Remaining Lengths are caught, never read past.
    #[test]
    fn lying_remaining_length_is_caught(packet in packet(), delta in -3i64..=3) {
        prop_assume!(delta != 0);
        let wire = encode(&packet);
        let header_len = 1 + (1..wire.len()).find(|&i| wire[i] & 0x80 == 0).unwrap();
        let body = &wire[header_len..];
        let claimed = body.len() as i64 + delta;
        prop_assume!(claimed >= 0);
        let mut lying = BytesMut::new();
        lying.extend_from_slice(&[wire[0]]);
        let mut rem = claimed as u32;
        loop {
            let mut b = (rem & 0x7F) as u8;
            rem >>= 7;
            if rem > 0 { b |= 0x80; }
            lying.extend_from_slice(&[b]);
            if rem == 0 { break; }
        }
        lying.extend_from_slice(body);
        // Padding so that a longer claim has bytes to read (they belong to the "next" packet).
        lying.extend_from_slice(&[0u8; 3]);
        let result = Codec::default().decode(&mut lying);
        if let Ok(Decoded::Packet(p)) = &result {
            // Some packets end in an open field (a payload, a list): a shorter or longer claim
            // can still describe a valid packet. It must then re-encode to the same value.
            prop_assert!(reencodes(p));
        }
    }
}

fn reencodes(packet: &Packet) -> bool {
    let codec = Codec::default();
    let mut buf = BytesMut::new();
    if codec.encode(packet, &mut buf).is_err() {
        return false;
    }
    matches!(codec.decode(&mut buf), Ok(Decoded::Packet(ref back)) if back == packet)
}

fn check_accepted_packets_reencode(bytes: &[u8]) -> Result<(), TestCaseError> {
    for codec in [
        Codec::default(),
        Codec {
            max_incoming_packet_size: Some(64),
            ..Codec::default()
        },
    ] {
        let mut buf = BytesMut::from(bytes);
        let (packets, _) = decode_all(&codec, &mut buf);
        for p in &packets {
            prop_assert!(reencodes(p), "accepted packet does not re-encode: {:?}", p);
        }
    }
    Ok(())
}
