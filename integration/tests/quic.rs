//! MQTT over QUIC against a broker this project did not write: the `mqttv5` broker of the
//! mqttv5-cli crate (`scripts/install-mqttv5.sh`), delivering on the client's stream. The
//! other side of each stream is a client over TCP to the same broker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use integration::clients::{assert_each_once, client, event, publish_numbered, receive_numbered};
use integration::quic_broker::QuicBroker;
use integration::udp_relay::{PathShape, UdpRelay};
use mooring::client::TlsOptions;
use mooring::{ClientEvent, QoS};

fn tls(broker: &QuicBroker) -> TlsOptions {
    TlsOptions::with_ca_file(&broker.pki().ca).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_streams_over_quic_arrive_each_once_both_ways() {
    let broker = QuicBroker::start().unwrap();
    // Publishing over QUIC, received over TCP.
    let (reader, mut messages) = client(&broker.url(), "tcp-reader").connect().await.unwrap();
    reader.subscribe("up/#", QoS::ExactlyOnce).await.unwrap();
    let (quic, mut quic_messages) = client(&broker.quic_url(), "quic-gateway")
        .tls(tls(&broker))
        .connect()
        .await
        .unwrap();
    quic.subscribe("down/#", QoS::ExactlyOnce).await.unwrap();
    let up = publish_numbered(&quic, "up", 500, Duration::ZERO);
    let mut seen = BTreeMap::new();
    receive_numbered(&mut messages, &mut seen, 500).await;
    up.await.unwrap();
    assert_each_once(&mut messages, &seen, 500).await;

    // Published over TCP, received over QUIC.
    let down = publish_numbered(&reader, "down", 500, Duration::ZERO);
    let mut seen = BTreeMap::new();
    receive_numbered(&mut quic_messages, &mut seen, 500).await;
    down.await.unwrap();
    assert_each_once(&mut quic_messages, &seen, 500).await;
    assert!(quic.stats().tls_handshakes >= 1);
    quic.disconnect().await.unwrap();
    reader.disconnect().await.unwrap();
}

/// The path changes twice mid-stream. First the relay moves its side to a new port, as a NAT
/// that rebinds: QUIC follows (the broker validates the new path) and the connection stays.
/// Then the path goes dark for longer than the keep alive: the client gives the connection
/// up and reconnects (a new UDP socket, a new local port), and the session resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_stream_survives_a_rebinding_nat_and_a_path_that_goes_dark() {
    let broker = QuicBroker::start().unwrap();
    let relay = UdpRelay::start(
        SocketAddr::from(([127, 0, 0, 1], broker.quic_port())),
        PathShape::default(),
    )
    .unwrap();
    let (reader, mut messages) = client(&broker.url(), "tcp-reader").connect().await.unwrap();
    reader.subscribe("path/#", QoS::ExactlyOnce).await.unwrap();
    let mut builder = client(&format!("quic://localhost:{}", relay.port()), "quic-roamer")
        .tls(tls(&broker))
        .keep_alive(Duration::from_secs(1))
        .ping_timeout(Duration::from_secs(1));
    let mut events = builder.events();
    let (quic, _m) = builder.connect().await.unwrap();
    let count = 600;
    let stream = publish_numbered(&quic, "path", count, Duration::from_millis(5));
    let mut seen = BTreeMap::new();
    receive_numbered(&mut messages, &mut seen, 100).await;

    let before = relay.outward_port();
    relay.rebind().unwrap();
    assert_ne!(before, relay.outward_port());
    receive_numbered(&mut messages, &mut seen, 250).await;
    assert_eq!(
        quic.stats().connections,
        1,
        "QUIC followed the rebinding without a new connection"
    );

    relay.set_shape(PathShape {
        loss: 1.0,
        ..PathShape::default()
    });
    event(&mut events, |e| {
        matches!(e, ClientEvent::ConnectionLost { .. })
    })
    .await;
    relay.set_shape(PathShape::default());
    event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;

    receive_numbered(&mut messages, &mut seen, count).await;
    stream.await.unwrap();
    assert_each_once(&mut messages, &seen, count).await;
    assert!(quic.stats().connections >= 2);
    quic.disconnect().await.unwrap();
    reader.disconnect().await.unwrap();
}

/// The mqttv5 broker's default delivers each topic on a stream it opens. Mooring carries MQTT
/// on its one stream and would read nothing there: it closes the connection and says why,
/// rather than leaving messages unacknowledged in silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_delivers_on_streams_of_its_own_is_told_apart() {
    let broker = QuicBroker::with_args(&["--allow-anonymous", "true"]).unwrap();
    let mut builder = client(&broker.quic_url(), "quic-listener").tls(tls(&broker));
    let mut events = builder.events();
    let (quic, _m) = builder.connect().await.unwrap();
    quic.subscribe("news/#", QoS::AtLeastOnce).await.unwrap();
    let (publisher, _pm) = client(&broker.url(), "tcp-publisher")
        .connect()
        .await
        .unwrap();
    publisher
        .publish("news/1", "hello", QoS::AtLeastOnce)
        .await
        .unwrap()
        .await
        .unwrap();
    let lost = event(&mut events, |e| {
        matches!(e, ClientEvent::ConnectionLost { .. })
    })
    .await;
    let text = format!("{lost:?}");
    assert!(text.contains("stream of its own"), "{text}");
    assert!(text.contains("control-only"), "{text}");
    let _ = tokio::time::timeout(Duration::from_secs(2), quic.disconnect()).await;
    publisher.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_is_refused_through_a_proxy_and_with_a_certificate_it_cannot_trust() {
    let broker = QuicBroker::start().unwrap();
    let proxied = client(&broker.quic_url(), "proxied")
        .tls(tls(&broker))
        .proxy(mooring::client::Proxy::parse("socks5://127.0.0.1:1").unwrap())
        .connect()
        .await;
    let text = format!("{:?}", proxied.err().unwrap());
    assert!(text.contains("proxies carry TCP"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let other = integration::pki::Pki::generate(dir.path(), "other").unwrap();
    let untrusted = client(&broker.quic_url(), "untrusted")
        .tls(TlsOptions::with_ca_file(&other.ca).unwrap())
        .connect()
        .await;
    let text = untrusted.err().unwrap().to_string();
    assert!(text.contains("QUIC"), "{text}");
}
