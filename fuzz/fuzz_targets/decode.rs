//! Fuzzes the streaming decoder. Beyond "never panics", every packet it accepts must encode
//! again and decode to the same value, so the encoder and decoder enforce the same rules.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_core::packet::{Codec, Decoded};

fuzz_target!(|data: &[u8]| {
    let limited = Codec {
        max_incoming_packet_size: Some(256),
        ..Codec::default()
    };
    for codec in [Codec::default(), limited] {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Decoded::Packet(packet)) => {
                    assert!(buf.len() < before, "a decoded packet consumed nothing");
                    let mut wire = BytesMut::new();
                    if let Err(e) = Codec::default().encode(&packet, &mut wire) {
                        panic!("accepted packet does not encode: {e}\n{packet:?}");
                    }
                    match Codec::default().decode(&mut wire) {
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
