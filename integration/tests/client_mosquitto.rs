//! The client against a real mosquitto: the README example, offline publishing across a broker
//! restart, the broker's Receive Maximum, and WebSocket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::time::Duration;

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use mooring::packet::{SubscribeProperties, Subscription};
use mooring::store::{MemoryStore, RedbStore};
use mooring::{Client, ClientEvent, QoS, ReasonCode};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_runs_against_mosquitto() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("gateway.redb")).unwrap();
    let (client, mut messages) = Client::builder()
        .server(broker.url())
        .client_id("gateway-7")
        .session_expiry(Duration::from_secs(86_400))
        .store(store)
        .manual_ack(true)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        client
            .subscribe("plant/+/telemetry", QoS::ExactlyOnce)
            .await
            .unwrap(),
        QoS::ExactlyOnce
    );
    let delivery = client
        .publish("site/7/status", "up", QoS::ExactlyOnce)
        .await
        .unwrap();
    // mosquitto answers 0x10 No matching subscribers when nobody listens.
    let reason = timeout(WAIT, delivery).await.unwrap().unwrap();
    assert!(matches!(
        reason,
        ReasonCode::Success | ReasonCode::NoMatchingSubscribers
    ));

    let (sensor, _m) = Client::builder()
        .server(broker.url())
        .client_id("sensor-1")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    for i in 0..10 {
        let d = sensor
            .publish("plant/1/telemetry", format!("{i}"), QoS::ExactlyOnce)
            .await
            .unwrap();
        assert_eq!(timeout(WAIT, d).await.unwrap(), Ok(ReasonCode::Success));
    }
    for i in 0..10 {
        let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
        assert_eq!(message.payload().as_ref(), format!("{i}").as_bytes());
        assert_eq!(message.qos(), QoS::ExactlyOnce);
        message.ack().await.unwrap();
    }
    client.disconnect().await.unwrap();
    sensor.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_made_while_the_broker_is_down_arrive_once_after_it_returns() {
    let mut broker = Mosquitto::with_config(&MosquittoConfig {
        persistence: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let (listener, mut inbox) = Client::builder()
        .server(broker.url())
        .client_id("listener")
        .store(MemoryStore::default())
        .reconnect(integration::fast_backoff())
        .connect()
        .await
        .unwrap();
    listener
        .subscribe("offline/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (gateway, _m) = Client::builder()
        .server(broker.url())
        .client_id("gateway")
        .store(RedbStore::open(dir.path().join("g.redb")).unwrap())
        .reconnect(integration::fast_backoff())
        .connect()
        .await
        .unwrap();
    let mut events = gateway.events();
    broker.stop();
    timeout(WAIT, async {
        while !matches!(
            events.recv().await,
            Some(ClientEvent::ConnectionLost { .. })
        ) {}
    })
    .await
    .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..20 {
        let qos = if i % 2 == 0 {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        deliveries.push(
            gateway
                .publish("offline/x", format!("{i}"), qos)
                .await
                .unwrap(),
        );
    }
    assert_eq!(gateway.stats().queued, 20);
    broker.restart().unwrap();
    for d in deliveries {
        assert_eq!(timeout(WAIT, d).await.unwrap(), Ok(ReasonCode::Success));
    }
    let mut seen = BTreeSet::new();
    while seen.len() < 20 {
        let m = timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
        let n: u32 = std::str::from_utf8(m.payload()).unwrap().parse().unwrap();
        assert!(seen.insert(n), "{n} arrived twice");
    }
    gateway.disconnect().await.unwrap();
    listener.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_receive_maximum_bounds_what_is_in_flight() {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        max_inflight_messages: Some(3),
        ..MosquittoConfig::default()
    })
    .unwrap();
    let (client, _m) = Client::builder()
        .server(broker.url())
        .client_id("rm")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    let mut events = client.events();
    let _ = &mut events;
    let mut deliveries = Vec::new();
    let mut peak = 0;
    for i in 0..200 {
        deliveries.push(
            client
                .publish("rm/x", format!("{i}"), QoS::ExactlyOnce)
                .await
                .unwrap(),
        );
        peak = peak.max(client.stats().outbound_in_flight);
    }
    for d in deliveries {
        assert!(timeout(WAIT, d).await.unwrap().is_ok());
    }
    assert!(
        peak <= 3,
        "in flight {peak} above the broker's Receive Maximum 3"
    );
    client.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_to_mosquitto() {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        websockets: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let (client, mut messages) = Client::builder()
        .server(broker.ws_url().unwrap())
        .client_id("ws")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    client.subscribe("ws/t", QoS::AtLeastOnce).await.unwrap();
    let d = client
        .publish("ws/t", "over websocket", QoS::AtLeastOnce)
        .await
        .unwrap();
    timeout(WAIT, d).await.unwrap().unwrap();
    let m = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(m.payload().as_ref(), b"over websocket");
    client.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_forwards_a_received_message_as_it_is() {
    let broker = Mosquitto::start().unwrap();
    let connect = |id: &'static str| {
        Client::builder()
            .server(broker.url())
            .client_id(id)
            .store(MemoryStore::default())
    };
    let mut gateway_builder = connect("forwarder");
    let mut gateway_events = gateway_builder.events();
    let (gateway, mut inbox) = gateway_builder.connect().await.unwrap();
    let props = SubscribeProperties {
        subscription_identifier: Some(7),
        ..SubscribeProperties::default()
    };
    gateway
        .subscribe_with(vec![Subscription::new("in/#", QoS::AtLeastOnce)], props)
        .await
        .unwrap();
    let (listener, mut forwarded) = connect("listener").connect().await.unwrap();
    listener.subscribe("out/#", QoS::AtLeastOnce).await.unwrap();
    let (sensor, _m) = connect("sensor").connect().await.unwrap();
    let d = sensor
        .publish("in/a", "reading", QoS::AtLeastOnce)
        .await
        .unwrap();
    timeout(WAIT, d).await.unwrap().unwrap();

    let message = timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
    assert_eq!(
        message.publish().properties.subscription_identifiers,
        vec![7]
    );
    let mut publish = message.into_publish();
    publish.topic = "out/a".into();
    // mosquitto 2.0 tolerates a Subscription Identifier from a client; that none is sent
    // [MQTT-3.3.4-6] is shown against the fake broker (application.rs).
    let delivery = gateway.publish_with(publish).await.unwrap();
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );
    let out = timeout(WAIT, forwarded.recv()).await.unwrap().unwrap();
    assert_eq!(out.topic(), "out/a");
    assert_eq!(out.payload().as_ref(), b"reading");
    assert_eq!(
        out.publish().properties.subscription_identifiers,
        Vec::<u32>::new(),
        "the listener subscribed without an identifier"
    );
    while let Some(event) = gateway_events.try_recv() {
        assert!(
            !matches!(event, ClientEvent::ConnectionLost { .. }),
            "the gateway was disconnected: {event:?}"
        );
    }
    for c in [gateway, listener, sensor] {
        c.disconnect().await.unwrap();
    }
}
