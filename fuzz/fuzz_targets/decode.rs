//! Fuzzes the streaming decoder, at MQTT v5.0 and 3.1.1. Beyond "never panics", every packet
//! it accepts must encode again and decode to the same value, so the encoder and decoder
//! enforce the same rules.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mooring_core::packet::{Codec, Decoded, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    let limited = Codec {
        max_incoming_packet_size: Some(256),
        ..Codec::default()
    };
    let v311 = Codec {
        protocol: ProtocolVersion::V311,
        ..Codec::default()
    };
    for codec in [Codec::default(), limited, v311] {
        let plain = Codec {
            protocol: codec.protocol,
            ..Codec::default()
        };
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Decoded::Packet(packet)) => {
                    assert!(buf.len() < before, "a decoded packet consumed nothing");
                    let mut wire = BytesMut::new();
                    if let Err(e) = plain.encode(&packet, &mut wire) {
                        panic!("accepted packet does not encode: {e}\n{packet:?}");
                    }
                    match plain.decode(&mut wire) {
                        Ok(Decoded::Packet(again)) => assert_eq!(again, packet),
                        other => panic!("re-encoded packet gave {other:?}\n{packet:?}"),
                    }
                    assert!(wire.is_empty());
                }
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(needed >= 1);
                    assert_eq!(buf.len(), before, "an incomplete decode consumed bytes");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});
