//! Tests of Mooring against real brokers (mosquitto spawned per test), the fault proxy and the
//! crash tests that kill a real process. They arrive with the client (see ARCHITECTURE.md).
#![forbid(unsafe_code)]
