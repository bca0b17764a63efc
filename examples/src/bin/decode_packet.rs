//! Decodes MQTT v5 packets given as hex and prints them, or the rule they break.
//!
//! ```text
//! cargo run -p examples --bin decode_packet -- 3008000361 2f62 0068 69
//! ```
//! All arguments are joined (spaces are ignored), so a capture can be pasted as it is. Exits 0
//! when every byte decoded into whole packets, 1 on an invalid packet, 2 on bad hex.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use bytes::BytesMut;
use mooring::packet::{Codec, Decoded};

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let byte: String = pair.iter().collect();
            u8::from_str_radix(&byte, 16).map_err(|_| format!("{byte:?} is not a hex byte"))
        })
        .collect()
}

fn main() -> ExitCode {
    let input = std::env::args().skip(1).collect::<Vec<_>>().join("");
    let bytes = match parse_hex(&input) {
        Ok(bytes) if !bytes.is_empty() => bytes,
        Ok(_) => {
            eprintln!("usage: decode_packet HEX...");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("bad input: {e}");
            return ExitCode::from(2);
        }
    };
    let codec = Codec::default();
    let mut buf = BytesMut::from(&bytes[..]);
    loop {
        match codec.decode(&mut buf) {
            Ok(Decoded::Packet(packet)) => println!("{packet:#?}"),
            Ok(Decoded::Incomplete { needed }) => {
                if buf.is_empty() {
                    return ExitCode::SUCCESS;
                }
                eprintln!("incomplete packet: {needed} more bytes needed");
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("{e} (answer with DISCONNECT {})", e.reason_code());
                return ExitCode::from(1);
            }
        }
    }
}
