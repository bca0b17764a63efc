//! Runnable programs that show Mooring in use; each is a binary under `src/bin/`.
//!
//! - `decode_packet`: decodes MQTT v5 packets given as hex and names the rule a bad one breaks.
#![forbid(unsafe_code)]
