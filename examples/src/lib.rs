//! Runnable programs that show Mooring in use; each is a binary under `src/bin/`.
//!
//! - `decode_packet`: decodes MQTT v5 packets given as hex and names the rule a bad one breaks.
#![forbid(unsafe_code)]
//!
//! Every example speaks MQTT v5 unless `MQTT_VERSION=3.1.1` asks for 3.1.1; one that shows a
//! v5 feature (request/response, refusals, CONNECT user properties) says what it skips.

use mooring::packet::ProtocolVersion;

/// The protocol `MQTT_VERSION` asks for: `5` (also when unset) or `3.1.1`.
pub fn mqtt_version() -> Result<ProtocolVersion, String> {
    match std::env::var("MQTT_VERSION").as_deref() {
        Err(_) | Ok("5") => Ok(ProtocolVersion::V5),
        Ok("3.1.1") => Ok(ProtocolVersion::V311),
        Ok(other) => Err(format!("MQTT_VERSION={other:?}: use 5 or 3.1.1")),
    }
}
