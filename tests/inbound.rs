//! Receiving, through the tokio driver against an in-process fake broker: the inbound
//! Receive Maximum, the inbox and its backlog, manual acks, the router.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use mooring::client::Router;
use mooring::packet::{Packet, PubAck, Publish, QoS, ReasonCode};
use mooring::store::MemoryStore;
use tokio::time::timeout;

mod support;

use support::*;

#[tokio::test]
async fn inbound_receive_maximum_is_enforced() {
    // A server over the client's Receive Maximum (2) is not disconnected; the third message
    // waits until the application acks one.
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default())
        .manual_ack(true)
        .receive_maximum(2);
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    for id in 1..=3u16 {
        peer.send(inbound(QoS::ExactlyOnce, id, id.to_string()))
            .await;
    }
    let first = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let second = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    peer.silent(Duration::from_millis(100)).await;
    assert!(messages.try_recv().is_none(), "the third waits");
    let stats = client.stats();
    assert_eq!((stats.inbound_unacked, stats.inbound_held), (2, 1));
    assert_eq!(stats.inbound_over_receive_maximum, 1);
    first.ack().await.unwrap();
    let third = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(&third.payload()[..], b"3");
    for m in [second, third] {
        m.ack().await.unwrap();
    }
    for id in 1..=3 {
        match peer.recv().await {
            Packet::PubRec(rec) => assert_eq!(rec.packet_id, id),
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    assert_eq!(client.stats().inbound_held, 0);
}

#[tokio::test]
async fn the_receive_maximum_defaults_to_the_inbox_capacity() {
    let mut broker = Broker::new();
    for (manual, set, expected) in [
        (true, None, Some(7)),
        (true, Some(3), Some(3)),
        (false, None, Some(7)),
    ] {
        let mut b = builder(&broker, MemoryStore::default())
            .manual_ack(manual)
            .inbox_capacity(7);
        if let Some(maximum) = set {
            b = b.receive_maximum(maximum);
        }
        let connecting = tokio::spawn(b.connect());
        let mut peer = broker.next().await;
        let connect = peer.accept(false).await;
        assert_eq!(connect.properties.receive_maximum, expected);
        let (client, _messages) = timeout(WAIT, connecting).await.unwrap().unwrap().unwrap();
        drop(client);
    }
}

/// A forwarding loop that awaits its own publish before reading the next message, while the
/// server (over the Receive Maximum, as mosquitto can be) floods it: the client keeps reading
/// the socket, so the PUBACK arrives; messages wait unacknowledged instead, and none is lost.
#[tokio::test]
async fn a_full_inbox_does_not_keep_a_puback_from_the_application() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default()).inbox_capacity(2);
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    let delivery = client.publish("out", "x", QoS::AtLeastOnce).await.unwrap();
    let out = peer.publish().await;
    for id in 1..=20u16 {
        peer.send(inbound(QoS::AtLeastOnce, id, id.to_string()))
            .await;
    }
    // Separately, after the client has read the flood.
    tokio::time::sleep(Duration::from_millis(200)).await;
    peer.send(Packet::PubAck(PubAck::new(out.packet_id))).await;
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );
    // Only what reached the application was acknowledged.
    let mut acked = Vec::new();
    while let Ok(Some(Packet::PubAck(a))) =
        timeout(Duration::from_millis(100), peer.try_recv()).await
    {
        acked.push(a.packet_id);
    }
    assert!(acked.len() <= 4, "{acked:?}");
    for id in 1..=20u16 {
        let m = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
        assert_eq!(m.payload().as_ref(), id.to_string().as_bytes());
    }
    while acked.len() < 20 {
        match peer.recv().await {
            Packet::PubAck(a) => acked.push(a.packet_id),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    assert_eq!(acked, (1..=20).collect::<Vec<u16>>(), "in arrival order");
}

/// Messages beyond the inbox wait in the backlog unacknowledged and reach the application in
/// order; each is acked once the application is done with it (asks for the next), whether it
/// came through the inbox or the backlog.
#[tokio::test]
async fn a_backlog_reaches_the_application_in_order_and_acks_follow_its_reads() {
    let mut broker = Broker::new();
    // A Receive Maximum of 20: the server is within its rights to send all twenty.
    let b = builder(&broker, MemoryStore::default())
        .inbox_capacity(8)
        .receive_maximum(20);
    let (_client, mut messages, mut peer) = connected(&mut broker, b).await;
    for id in 1..=20u16 {
        peer.send(inbound(QoS::AtLeastOnce, id, id.to_string()))
            .await;
    }
    // Nothing read, nothing acked: the inbox is full and twelve wait behind it.
    peer.silent(Duration::from_millis(200)).await;
    for id in 1..=20u16 {
        let m = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
        assert_eq!(m.payload().as_ref(), id.to_string().as_bytes());
    }
    let mut acked = Vec::new();
    while let Ok(Some(Packet::PubAck(a))) =
        timeout(Duration::from_millis(200), peer.try_recv()).await
    {
        acked.push(a.packet_id);
    }
    assert_eq!(
        acked,
        (1..=20).collect::<Vec<u16>>(),
        "each acked as it was dropped"
    );
}

#[tokio::test]
async fn manual_ack_sends_pubrec_only_after_the_marker_is_durable() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = builder(&broker, store.clone()).manual_ack(true);
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    for (id, body) in [(7u16, "a"), (8, "b")] {
        peer.send(inbound(QoS::ExactlyOnce, id, body)).await;
    }
    let a = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let b = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert!(a.needs_ack() && b.needs_ack());
    assert_eq!(client.stats().inbound_unacked, 2);
    peer.silent(Duration::from_millis(100)).await;
    // Acked out of order: the marker is durable at once, PUBREC waits for its turn.
    b.ack().await.unwrap();
    assert_eq!(stored(&store).await.inbound, vec![8]);
    peer.silent(Duration::from_millis(100)).await;
    a.ack().await.unwrap();
    for id in [7, 8] {
        match peer.recv().await {
            Packet::PubRec(rec) => assert_eq!(rec.packet_id, id),
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    // A redelivery of 7 is answered, not delivered again.
    let mut p = Publish::new("in", "a");
    p.qos = QoS::ExactlyOnce;
    p.packet_id = 7;
    p.dup = true;
    peer.send(Packet::Publish(p)).await;
    assert!(matches!(peer.recv().await, Packet::PubRec(_)));
    assert!(messages.try_recv().is_none());
    peer.send(Packet::PubRel(PubAck::new(7))).await;
    assert!(matches!(peer.recv().await, Packet::PubComp(_)));
    assert_eq!(client.stats().inbound_unacked, 0);
}

#[tokio::test]
async fn the_router_dispatches_by_filter_and_subscription_id() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default()).manual_ack(true);
    let (_client, messages, mut peer) = connected(&mut broker, b).await;
    let mut router = Router::new();
    let mut by_id = router.route_subscription(9);
    let mut telemetry = router.route("plant/+/telemetry").unwrap();
    let mut rest = router.fallback();
    assert!(router.route("bad/#/x").is_err());
    tokio::spawn(router.run(messages));
    let send = |topic: &str, id: Option<u32>, packet_id: u16| {
        let mut p = Publish::new(topic, "x");
        p.qos = QoS::AtLeastOnce;
        p.packet_id = packet_id;
        p.properties.subscription_identifiers = id.into_iter().collect();
        Packet::Publish(p)
    };
    peer.send(send("plant/1/telemetry", None, 1)).await;
    peer.send(send("plant/1/telemetry", Some(9), 2)).await;
    peer.send(send("other", None, 3)).await;
    let t = timeout(WAIT, telemetry.recv()).await.unwrap().unwrap();
    let i = timeout(WAIT, by_id.recv()).await.unwrap().unwrap();
    let r = timeout(WAIT, rest.recv()).await.unwrap().unwrap();
    assert_eq!(t.publish().packet_id, 1);
    assert_eq!(i.publish().packet_id, 2);
    assert_eq!(r.topic(), "other");
    for m in [t, i, r] {
        m.ack().await.unwrap();
    }
    for id in 1..=3 {
        match peer.recv().await {
            Packet::PubAck(a) => assert_eq!(a.packet_id, id),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unread_inbox_holds_messages_without_losing_any() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default()).inbox_capacity(1);
    let (_client, mut messages, mut peer) = connected(&mut broker, b).await;
    for i in 0..50u16 {
        peer.send(inbound(QoS::AtLeastOnce, i + 1, i.to_string()))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..50u16 {
        let m = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
        assert_eq!(m.payload().as_ref(), format!("{i}").as_bytes());
    }
}
