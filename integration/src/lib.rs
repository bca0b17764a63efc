//! Tests of Mooring against real processes and real faults.
//!
//! Today: the store crash test. `src/bin/store_crash_child.rs` commits numbered batches to a
//! durable store and reports each one after `commit` returns; `tests/store_crash.rs` kills it
//! with SIGKILL at random moments and checks the store. Tests against real brokers arrive with
//! the client (see ARCHITECTURE.md).
#![forbid(unsafe_code)]

pub mod crash_batches;
pub mod mosquitto;
pub mod pki;
pub mod proxy;
