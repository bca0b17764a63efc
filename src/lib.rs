//! Mooring: an MQTT v5 client for Rust whose persistent sessions survive crashes.
//!
//! This facade is what applications depend on. It re-exports the parts of [`mqtt_core`] and
//! the stores chosen by feature flag: `redb` (the default), `sled`; the memory store is always
//! there. The client and the session engine arrive as they are built (see ARCHITECTURE.md).
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

#[cfg(feature = "conformance")]
pub use mqtt_core::conformance;

/// Session storage: the [`SessionStore`](store::SessionStore) trait and the stores.
///
/// | Store | Feature | Survives `kill -9` | Survives power loss |
/// |---|---|---|---|
/// | `RedbStore` | `redb` (default) | yes | yes (`fdatasync` per commit) |
/// | `SledStore` | `sled` | yes | not promised (`sync_file_range`, no `fdatasync`) |
/// | `MemoryStore` | always | no | no |
pub mod store {
    pub use mqtt_core::store::*;
    pub use store_memory::{MemoryBackend, MemoryStore};
    #[cfg(feature = "redb")]
    pub use store_redb::{RedbBackend, RedbStore};
    #[cfg(feature = "sled")]
    pub use store_sled::{SledBackend, SledStore};
}
