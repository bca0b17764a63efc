//! The core of Mooring, an MQTT v5 client whose persistent sessions survive crashes.
//!
//! This crate holds the layers the `mooring` facade (package `mooring-mqtt`) re-exports:
//!
//! - [`packet`]: the complete MQTT v5.0 wire format. It turns bytes into [`packet::Packet`]
//!   values and back, checks every rule a receiver must check, and never panics on any input.
//! - [`session`]: the protocol engine, with no I/O. It is fed packets and application calls and
//!   polled for store operations to commit, then packets to send, then events.
//! - [`store`]: the [`store::SessionStore`] trait every store implements, the record layout the
//!   key-value stores share, and `conformance` (feature `conformance`), the suite that defines a
//!   correct store.
//!
//! The crate needs no async runtime: it depends on no runtime at all unless the `conformance`
//! feature is on (the suite runs on tokio). The tokio driver that connects a session to a
//! socket and a store is the `mooring` library (package `mooring-mqtt`), on top of this one.
//!
//! ```
//! use bytes::BytesMut;
//! use mooring_core::packet::{Codec, Decoded, Packet, Publish, QoS};
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
pub mod idempotency;
pub mod packet;
mod secret;
pub mod session;
pub mod store;
