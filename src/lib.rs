//! Mooring: an MQTT v5 client for Rust whose persistent sessions survive crashes.
//!
//! This facade is what applications depend on. It re-exports the parts of [`mqtt_core`]; the
//! client, the session engine and the stores arrive as they are built (see ARCHITECTURE.md).
//!
//! ```
//! use mooring::packet::{Codec, Packet};
//!
//! let mut wire = bytes::BytesMut::from(&[0xC0u8, 0x00][..]); // PINGREQ
//! let decoded = Codec::default().decode(&mut wire)?;
//! assert!(matches!(decoded, mooring::packet::Decoded::Packet(Packet::PingReq)));
//! # Ok::<(), mooring::packet::DecodeError>(())
//! ```
#![forbid(unsafe_code)]

pub use mqtt_core::packet;
