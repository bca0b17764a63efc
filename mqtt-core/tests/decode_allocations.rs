//! The decoder never allocates on the word of a length field: what it allocates is bounded by
//! the bytes actually in the buffer, whatever the Remaining Length, string lengths or property
//! lengths claim.
//!
//! A counting global allocator measures every allocation made while decoding. This binary has
//! a single test so that no other test allocates at the same time.
// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::alloc::System;

use bytes::BytesMut;
use mooring_core::packet::{Codec, Decoded};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated (including growth by realloc) while decoding everything in `input`: the
/// least of three measurements. The allocator counts every thread, and the test harness's own
/// threads allocate now and then (a CI run saw 797 bytes for an input whose decoding takes
/// far less); what decoding allocates is the same each time, so the least is its own.
fn allocated_while_decoding(codec: &Codec, input: &[u8]) -> usize {
    (0..3)
        .map(|_| {
            let mut buf = BytesMut::from(input);
            let region = Region::new(GLOBAL);
            while let Ok(Decoded::Packet(packet)) = codec.decode(&mut buf) {
                drop(packet);
            }
            let stats = region.change();
            stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize
        })
        .min()
        .unwrap_or(0)
}

/// The bound checked: a fixed allowance per call plus a constant factor of the input. The
/// factor covers decoded values that are larger than their wire form (a 5-byte User Property
/// becomes two `String`s in a 48-byte element of a growing `Vec`).
fn bound(input_len: usize) -> usize {
    1024 + 16 * input_len
}

#[test]
fn decoding_allocates_in_proportion_to_the_input_never_to_claimed_lengths() {
    let codec = Codec::default();

    // Lengths that lie, each in a buffer of a few bytes.
    let liars: &[&[u8]] = &[
        // Remaining Length of 268,435,455 with 3 bytes present.
        &[0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01, b't'],
        // A Topic Name claiming 65,535 bytes.
        &[0x30, 0x04, 0xFF, 0xFF, b't', b't'],
        // A property block claiming 2 MiB.
        &[0x30, 0x08, 0x00, 0x01, b't', 0xFF, 0xFF, 0x7F, 0x00, 0x00],
        // A SUBSCRIBE whose only filter claims 65,535 bytes.
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0xFF, 0xFF, b'a'],
        // A Correlation Data claiming 65,535 bytes.
        &[0x30, 0x08, 0x00, 0x01, b't', 0x04, 0x09, 0xFF, 0xFF, 0x00],
    ];
    for input in liars {
        let allocated = allocated_while_decoding(&codec, input);
        assert!(
            allocated <= 256,
            "{allocated} bytes allocated for the {}-byte input {input:02x?}",
            input.len()
        );
    }

    let mut runner = TestRunner::new(Config {
        cases: 3_000,
        ..Config::default()
    });
    let inputs = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1024),
        (
            support::packet(),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        )
            .prop_map(|(packet, edits)| {
                let mut bytes = support::encode(&packet).to_vec();
                for (at, value) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                bytes
            }),
    ];
    let worst_ratio = std::cell::Cell::new(0.0f64);
    runner
        .run(&inputs, |input| {
            let allocated = allocated_while_decoding(&codec, &input);
            prop_assert!(
                allocated <= bound(input.len()),
                "{} bytes allocated for a {}-byte input",
                allocated,
                input.len()
            );
            if input.len() >= 64 {
                let ratio = allocated as f64 / input.len() as f64;
                worst_ratio.set(worst_ratio.get().max(ratio));
            }
            Ok(())
        })
        .unwrap();
    println!(
        "worst allocated/input ratio for inputs of 64 bytes or more: {:.1}",
        worst_ratio.get()
    );
}
