//! The core of Mooring, an MQTT v5 client whose persistent sessions survive crashes.
//!
//! This crate holds the layers the `mooring` facade re-exports. Today it holds the first one:
//! [`packet`], the complete MQTT v5.0 wire format. It turns bytes into [`packet::Packet`] values
//! and back, checks every rule a receiver must check, and never panics on any input.
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_core::packet::{Codec, Decoded, Packet, Publish, QoS};
//!
//! let codec = Codec::default();
//! let mut publish = Publish::new("site/7/status", "up");
//! publish.qos = QoS::AtLeastOnce;
//! publish.packet_id = 1;
//!
//! let mut wire = BytesMut::new();
//! codec.encode(&Packet::Publish(publish.clone()), &mut wire)?;
//! match codec.decode(&mut wire)? {
//!     Decoded::Packet(Packet::Publish(back)) => assert_eq!(back, publish),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod packet;
pub mod session;
pub mod store;
