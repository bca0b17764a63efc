//! Encoding and decoding speed of the packets on the hot path: PUBLISH with 16 B, 1 KiB and
//! 64 KiB payloads, and SUBSCRIBE with 10 filters.
//!
//! `cargo bench -p mooring-core --bench codec` prints time per packet and throughput (MB/s).
#![allow(missing_docs)]
// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mooring_core::packet::{
    Codec, Decoded, Packet, Publish, QoS, Subscribe, SubscribeProperties, Subscription,
    UserProperty,
};

fn publish(payload_len: usize) -> Packet {
    let mut publish = Publish::new(
        "plant/7/line-3/press-12/telemetry",
        Bytes::from(vec![0xA5u8; payload_len]),
    );
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = 4242;
    publish.properties.message_expiry_interval = Some(3600);
    publish
        .properties
        .user_properties
        .push(UserProperty::new("unit", "kPa"));
    Packet::Publish(publish)
}

fn subscribe() -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 7,
        properties: SubscribeProperties {
            subscription_identifier: Some(12),
            user_properties: vec![],
        },
        subscriptions: (0..10)
            .map(|i| Subscription::new(format!("plant/{i}/+/telemetry/#"), QoS::ExactlyOnce))
            .collect(),
    })
}

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet) {
    let codec = Codec::default();
    let mut wire = BytesMut::new();
    codec.encode(packet, &mut wire).expect("valid packet");
    let wire = wire.freeze();

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::BytesDecimal(wire.len() as u64));

    let mut buf = BytesMut::with_capacity(wire.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            codec
                .encode(black_box(packet), &mut buf)
                .expect("valid packet");
            black_box(&buf);
        })
    });
    group.bench_function("decode", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut input| match codec.decode(&mut input) {
                Ok(Decoded::Packet(p)) => black_box(p),
                other => panic!("benchmark input did not decode: {other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn codec_benches(c: &mut Criterion) {
    bench_packet(c, "publish_16B", &publish(16));
    bench_packet(c, "publish_1KiB", &publish(1024));
    bench_packet(c, "publish_64KiB", &publish(64 * 1024));
    bench_packet(c, "subscribe_10_filters", &subscribe());
}

criterion_group!(benches, codec_benches);
criterion_main!(benches);
