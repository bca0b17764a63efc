//! The tokio driver against an in-process fake broker: every byte the client writes is read
//! here, and every answer is written by the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use mooring::client::{
    Backoff, Client, ClientError, ClientEvent, ConnectError, DeliveryError, Messages, QueuePolicy,
    Router,
};
use mooring::packet::{
    ConnAck, Disconnect, Packet, PubAck, Publish, QoS, ReasonCode, SubscribeProperties,
    Subscription, UnsubAck,
};
use mooring::store::{MemoryBackend, MemoryStore};
use mooring::store::{SessionKey, SessionStore, StoredSession};
use tokio::sync::Semaphore;
use tokio::time::timeout;

mod support;

use support::*;

#[tokio::test]
async fn connect_sends_the_options_and_publishes_qos1() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = builder(&broker, store.clone())
        .keep_alive(Duration::from_secs(30))
        .session_expiry(Duration::from_secs(3600))
        .credentials("user", "pw")
        .user_property("site", "7");
    let connecting = tokio::spawn(b.connect());
    let mut peer = broker.next().await;
    let connect = peer.accept(false).await;
    assert_eq!(connect.client_id, "gw");
    assert!(!connect.clean_start);
    assert_eq!(connect.keep_alive, 30);
    assert_eq!(connect.properties.session_expiry_interval, Some(3600));
    assert_eq!(connect.username.as_deref(), Some("user"));
    assert_eq!(connect.password.as_deref(), Some(&b"pw"[..]));
    assert_eq!(connect.properties.user_properties.len(), 1);
    let (client, _messages) = connecting.await.unwrap().unwrap();

    let delivery = client
        .publish("site/7/status", "up", QoS::AtLeastOnce)
        .await
        .unwrap();
    // Accepted means durable: the record (the queue record it keeps in flight) is in the store
    // before the PUBACK.
    assert_eq!(stored(&store).await.queue.len(), 1);
    let publish = peer.publish().await;
    assert_eq!(publish.topic, "site/7/status");
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    peer.send(Packet::PubAck(PubAck::new(publish.packet_id)))
        .await;
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );
    client.disconnect().await.unwrap();
    assert!(matches!(peer.recv().await, Packet::Disconnect(_)));
    assert!(
        stored(&store).await.queue.is_empty(),
        "the completion is committed"
    );
}

#[tokio::test]
async fn qos2_completes_through_pubrec_pubrel_pubcomp_and_refusals_fail_the_delivery() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (client, _m, mut peer) = connected_with(&mut broker, &store).await;
    let delivery = client.publish("a", "1", QoS::ExactlyOnce).await.unwrap();
    let p = peer.publish().await;
    peer.send(Packet::PubRec(PubAck::new(p.packet_id))).await;
    match peer.recv().await {
        Packet::PubRel(rel) => assert_eq!(rel.packet_id, p.packet_id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    peer.send(Packet::PubComp(PubAck::new(p.packet_id))).await;
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );

    let refused = client.publish("a", "2", QoS::AtLeastOnce).await.unwrap();
    let p = peer.publish().await;
    let mut ack = PubAck::new(p.packet_id);
    ack.reason_code = ReasonCode::NotAuthorized;
    peer.send(Packet::PubAck(ack)).await;
    assert_eq!(
        timeout(WAIT, refused).await.unwrap(),
        Err(DeliveryError::Refused(ReasonCode::NotAuthorized))
    );
}

#[tokio::test]
async fn nothing_reaches_the_wire_before_its_commit_returns() {
    let mut broker = Broker::new();
    let inner = MemoryStore::default();
    let gate = Arc::new(Semaphore::new(0));
    let store = ControlledStore::gated(inner.clone(), &gate);
    let b = Client::builder()
        .server(URL)
        .client_id("gw")
        .store(store)
        .connector(broker.connector());
    let connecting = tokio::spawn(b.connect());
    let mut peer = broker.next().await;
    peer.accept(false).await;
    // The session metadata from CONNACK is the first commit.
    gate.add_permits(1);
    let (client, _m) = connecting.await.unwrap().unwrap();

    let publishing = tokio::spawn({
        let client = client.clone();
        async move { client.publish("t", "x", QoS::AtLeastOnce).await }
    });
    peer.silent(Duration::from_millis(200)).await;
    assert!(!publishing.is_finished(), "accepted before durable");
    gate.add_permits(1);
    let p = peer.publish().await;
    assert_eq!(p.topic, "t");
    assert!(publishing.await.unwrap().is_ok());
    assert_eq!(stored_key(&inner, URL).await.queue.len(), 1);
}

async fn stored_key(store: &MemoryStore, url: &str) -> StoredSession {
    store.load(&SessionKey::new(url, "gw")).await.unwrap()
}

#[tokio::test]
async fn concurrent_publishes_share_commits() {
    let mut broker = Broker::new();
    let gate = Arc::new(Semaphore::new(1));
    let store = Arc::new(ControlledStore::gated(MemoryStore::default(), &gate));
    let b = Client::builder()
        .server(URL)
        .client_id("gw")
        .store_arc(store.clone())
        .connector(broker.connector());
    let connecting = tokio::spawn(b.connect());
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let (client, _m) = connecting.await.unwrap().unwrap();
    let before = store.commits.load(Ordering::SeqCst);
    // Hold the next commit so that the rest gather behind it.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.publish("t", format!("{i}"), QoS::AtLeastOnce).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.add_permits(1000);
    for t in tasks {
        drop(t.await.unwrap().unwrap());
    }
    let commits = store.commits.load(Ordering::SeqCst) - before;
    assert!(commits <= 3, "64 publishes took {commits} commits");
    let stats = client.stats();
    assert_eq!(stats.published, 64);
    assert!(stats.average_batch() >= 16.0, "{stats:?}");
    for _ in 0..64 {
        let p = peer.publish().await;
        peer.send(Packet::PubAck(PubAck::new(p.packet_id))).await;
    }
}

#[tokio::test]
async fn offline_publishes_are_durable_and_go_out_on_connect() {
    let mut broker = Broker::new();
    broker.fake.refuse.store(u32::MAX, Ordering::SeqCst);
    let store = MemoryStore::default();
    let (client, _m) = builder(&broker, store.clone()).start().await.unwrap();
    let mut events = client.events();
    let d1 = client.publish("q", "1", QoS::AtLeastOnce).await.unwrap();
    let d0 = client.publish("q", "0", QoS::AtMostOnce).await.unwrap();
    assert_eq!(stored(&store).await.queue.len(), 2, "both wait durably");
    next_event(&mut events, |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    broker.fake.refuse.store(0, Ordering::SeqCst);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let first = peer.publish().await;
    assert_eq!(first.payload, Bytes::from("1"));
    let second = peer.publish().await;
    assert_eq!(
        (second.payload.as_ref(), second.qos),
        (&b"0"[..], QoS::AtMostOnce)
    );
    assert_eq!(d0.await, Ok(ReasonCode::Success));
    peer.send(Packet::PubAck(PubAck::new(first.packet_id)))
        .await;
    assert_eq!(timeout(WAIT, d1).await.unwrap(), Ok(ReasonCode::Success));
}

#[tokio::test]
async fn reconnects_after_a_cut_and_retransmits_with_dup() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (client, _m, mut peer) = connected_with(&mut broker, &store).await;
    let mut events = client.events();
    let delivery = client.publish("r", "x", QoS::AtLeastOnce).await.unwrap();
    let first = peer.publish().await;
    assert!(!first.dup);
    drop(peer);
    next_event(&mut events, |e| {
        matches!(e, ClientEvent::ConnectionLost { .. })
    })
    .await;
    let mut peer = broker.next().await;
    peer.accept(true).await;
    let again = peer.publish().await;
    assert!(again.dup, "a retransmission carries DUP");
    assert_eq!(again.packet_id, first.packet_id);
    peer.send(Packet::PubAck(PubAck::new(again.packet_id)))
        .await;
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );
    assert!(matches!(
        next_event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await,
        ClientEvent::Connected {
            session_present: true,
            ..
        }
    ));
    assert_eq!(client.stats().connections, 2);
}

#[tokio::test]
async fn a_failed_commit_stops_the_client_and_reports_outcome_unknown() {
    let mut broker = Broker::new();
    let backend = MemoryBackend::new();
    let store = MemoryStore::new(backend.clone());
    let (client, mut messages, mut peer) = {
        let b = builder(&broker, store);
        connected(&mut broker, b)
    }
    .await;
    let mut events = client.events();
    backend.fail_next_commit();
    let err = client
        .publish("t", "x", QoS::AtLeastOnce)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Store(_)), "{err}");
    assert!(err.to_string().contains("store"), "{err}");
    match next_event(&mut events, |e| matches!(e, ClientEvent::Stopped { .. })).await {
        ClientEvent::Stopped { error: Some(why) } => assert!(why.contains("store"), "{why}"),
        other => panic!("{other:?}"),
    }
    // The PUBLISH never went out: its commit failed.
    peer.closed().await;
    assert!(matches!(
        client.publish("t", "y", QoS::AtLeastOnce).await,
        Err(ClientError::Stopped)
    ));
    assert!(messages.recv().await.is_none(), "the message stream ends");
}

#[tokio::test]
async fn protocol_violations_disconnect_with_the_reason_and_reconnect() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (client, _m, mut peer) = {
        let b = builder(&broker, store);
        connected(&mut broker, b)
    }
    .await;
    let mut events = client.events();
    // A second CONNACK on one connection.
    peer.send(Packet::ConnAck(Box::new(ConnAck::new(false))))
        .await;
    match peer.recv().await {
        Packet::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::ProtocolError),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    peer.closed().await;
    next_event(&mut events, |e| {
        matches!(e, ClientEvent::ConnectionLost { .. })
    })
    .await;

    // Malformed bytes: a PUBLISH with QoS 3.
    let mut peer = broker.next().await;
    peer.accept(true).await;
    peer.send_raw(&[0x36, 0x02, 0x00, 0x00]).await;
    match peer.recv().await {
        Packet::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::MalformedPacket),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    peer.closed().await;

    // An unknown Topic Alias.
    let mut peer = broker.next().await;
    peer.accept(true).await;
    let mut p = Publish::new("", "x");
    p.properties.topic_alias = Some(1);
    peer.send(Packet::Publish(p)).await;
    match peer.recv().await {
        Packet::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::TopicAliasInvalid),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    peer.closed().await;
    broker.next().await.accept(true).await;
}

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

/// Backlogged messages move into the inbox once a quarter of it is free, not slot by slot:
/// one by one, every slot the application freed cost an ack and a write of its own, and the
/// server answered each ack with one message (BENCHMARKS.md, the receiving table).
#[tokio::test]
async fn a_backlog_moves_into_the_inbox_a_quarter_at_a_time_not_slot_by_slot() {
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
    let mut acked = Vec::new();
    let mut take_acks = async |acked: &mut Vec<u16>| {
        while let Ok(Some(Packet::PubAck(a))) =
            timeout(Duration::from_millis(200), peer.try_recv()).await
        {
            acked.push(a.packet_id);
        }
    };
    // The inbox is full: what is in it is acknowledged, the rest waits unacknowledged.
    take_acks(&mut acked).await;
    assert_eq!(acked, (1..=8).collect::<Vec<u16>>());
    // One slot free: not yet a quarter of the inbox, nothing moves.
    let first = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(first.payload().as_ref(), b"1");
    take_acks(&mut acked).await;
    assert_eq!(acked.len(), 8, "{acked:?}");
    // Two free: two move, acknowledged together.
    let second = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(second.payload().as_ref(), b"2");
    take_acks(&mut acked).await;
    assert_eq!(acked, (1..=10).collect::<Vec<u16>>());
    // Nothing is lost or reordered on the way.
    for id in 3..=20u16 {
        let m = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
        assert_eq!(m.payload().as_ref(), id.to_string().as_bytes());
    }
    take_acks(&mut acked).await;
    assert_eq!(acked, (1..=20).collect::<Vec<u16>>());
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
async fn keep_alive_pings_and_a_silent_server_is_dropped() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default())
        .keep_alive(Duration::from_secs(1))
        .ping_timeout(Duration::from_millis(300));
    let (client, _m, mut peer) = connected(&mut broker, b).await;
    let mut events = client.events();
    assert!(matches!(peer.recv().await, Packet::PingReq));
    peer.send(Packet::PingResp).await;
    assert!(matches!(peer.recv().await, Packet::PingReq));
    // No answer this time.
    match next_event(&mut events, |e| {
        matches!(e, ClientEvent::ConnectionLost { .. })
    })
    .await
    {
        ClientEvent::ConnectionLost { reason, .. } => {
            assert!(reason.contains("PINGRESP"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    broker.next().await.accept(true).await;
}

#[tokio::test]
async fn subscriptions_wait_for_a_connection_and_are_made_again_when_the_session_is_lost() {
    let mut broker = Broker::new();
    broker.fake.refuse.store(2, Ordering::SeqCst);
    let (client, _m) = builder(&broker, MemoryStore::default())
        .start()
        .await
        .unwrap();
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("plant/+/t", QoS::ExactlyOnce).await }
    });
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let sub = peer.suback(vec![ReasonCode::GrantedQos1]).await;
    assert_eq!(sub.subscriptions[0].filter, "plant/+/t");
    assert_eq!(subscribing.await.unwrap().unwrap(), QoS::AtLeastOnce);

    let mut events = client.events();
    drop(peer);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let again = peer.suback(vec![ReasonCode::GrantedQos2]).await;
    assert_eq!(again.subscriptions[0].filter, "plant/+/t");
    next_event(&mut events, |e| {
        matches!(
            e,
            ClientEvent::SessionLost {
                resubscribed: 1,
                ..
            }
        )
    })
    .await;

    // Unsubscribed filters are not made again.
    let unsubscribing = tokio::spawn({
        let client = client.clone();
        async move { client.unsubscribe("plant/+/t").await }
    });
    match peer.recv().await {
        Packet::Unsubscribe(u) => {
            peer.send(Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Default::default(),
                reason_codes: vec![ReasonCode::Success],
            }))
            .await
        }
        other => panic!("expected UNSUBSCRIBE, got {other:?}"),
    }
    assert_eq!(unsubscribing.await.unwrap().unwrap(), ReasonCode::Success);
    drop(peer);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    peer.silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_refused_subscription_is_an_error() {
    let mut broker = Broker::new();
    let (client, _m, mut peer) = connected_default(&mut broker).await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("secret/#", QoS::AtLeastOnce).await }
    });
    peer.suback(vec![ReasonCode::NotAuthorized]).await;
    assert!(matches!(
        subscribing.await.unwrap(),
        Err(ClientError::SubscribeRefused {
            reason: ReasonCode::NotAuthorized,
            ..
        })
    ));
}

#[tokio::test]
async fn disconnect_drains_in_flight_then_sends_disconnect() {
    let mut broker = Broker::new();
    let (client, _m, mut peer) = connected_default(&mut broker).await;
    let delivery = client.publish("d", "x", QoS::AtLeastOnce).await.unwrap();
    let disconnecting = tokio::spawn({
        let client = client.clone();
        async move { client.disconnect().await }
    });
    let p = peer.publish().await;
    peer.silent(Duration::from_millis(100)).await;
    assert!(!disconnecting.is_finished(), "waits for the PUBACK");
    peer.send(Packet::PubAck(PubAck::new(p.packet_id))).await;
    assert!(
        matches!(peer.recv().await, Packet::Disconnect(d) if d.reason_code == ReasonCode::Success)
    );
    peer.closed().await;
    disconnecting.await.unwrap().unwrap();
    assert_eq!(delivery.await, Ok(ReasonCode::Success));
    assert!(matches!(
        client.publish("d", "y", QoS::AtMostOnce).await,
        Err(ClientError::Stopped)
    ));
}

#[tokio::test]
async fn disconnect_after_the_drain_timeout_keeps_the_rest_in_the_store() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = builder(&broker, store.clone()).drain_timeout(Duration::from_millis(100));
    let (client, _m, mut peer) = connected(&mut broker, b).await;
    let delivery = client.publish("d", "x", QoS::ExactlyOnce).await.unwrap();
    peer.publish().await;
    client.disconnect().await.unwrap();
    assert!(matches!(peer.recv().await, Packet::Disconnect(_)));
    assert_eq!(delivery.await, Err(DeliveryError::Stopped));
    let left = stored(&store).await;
    assert_eq!(left.queue.len(), 1, "resumes on the next start");
    assert!(left.meta.unwrap().disconnected_at_ms.is_some());
}

#[tokio::test]
async fn dropping_every_handle_disconnects() {
    let mut broker = Broker::new();
    let (client, messages, mut peer) = connected_default(&mut broker).await;
    drop(client);
    drop(messages);
    assert!(matches!(peer.recv().await, Packet::Disconnect(_)));
    peer.closed().await;
}

#[tokio::test]
async fn a_full_queue_fails_or_waits_by_policy() {
    let broker = Broker::new();
    broker.fake.refuse.store(u32::MAX, Ordering::SeqCst);
    let b = builder(&broker, MemoryStore::default()).queue_limit(2, QueuePolicy::Fail);
    let (client, _m) = b.start().await.unwrap();
    drop(client.publish("q", "1", QoS::AtLeastOnce).await.unwrap());
    drop(client.publish("q", "2", QoS::AtLeastOnce).await.unwrap());
    assert!(matches!(
        client.publish("q", "3", QoS::AtLeastOnce).await,
        Err(ClientError::QueueFull(2))
    ));

    let mut broker = Broker::new();
    broker.fake.refuse.store(u32::MAX, Ordering::SeqCst);
    let b = builder(&broker, MemoryStore::default()).queue_limit(1, QueuePolicy::Wait);
    let (client, _m) = b.start().await.unwrap();
    drop(client.publish("q", "1", QoS::AtLeastOnce).await.unwrap());
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.publish("q", "2", QoS::AtLeastOnce).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "waits for room");
    assert_eq!(client.stats().queued, 2);
    broker.fake.refuse.store(0, Ordering::SeqCst);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let first = peer.publish().await;
    drop(waiting.await.unwrap().unwrap());
    let second = peer.publish().await;
    assert_eq!(
        (first.payload.as_ref(), second.payload.as_ref()),
        (&b"1"[..], &b"2"[..])
    );
}

#[tokio::test]
async fn invalid_publishes_are_refused_and_nothing_is_stored() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (client, _m, _peer) = connected_with(&mut broker, &store).await;
    let err = client
        .publish("a/+", "x", QoS::AtLeastOnce)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Publish(_)), "{err}");
    assert!(stored(&store).await.queue.is_empty());
    assert!(stored(&store).await.outbound.is_empty());
}

#[tokio::test]
async fn request_response_matches_by_correlation_data() {
    let mut broker = Broker::new();
    let (client, mut messages, mut peer) = connected_default(&mut broker).await;
    assert_eq!(client.response_topic(), "mooring/response/gw");
    let requesting = tokio::spawn({
        let client = client.clone();
        async move { client.request("svc/time", "now?", WAIT).await }
    });
    let sub = peer.suback(vec![ReasonCode::GrantedQos1]).await;
    assert_eq!(sub.subscriptions[0].filter, "mooring/response/gw");
    let request = peer.publish().await;
    assert_eq!(
        request.properties.response_topic.as_deref(),
        Some("mooring/response/gw")
    );
    let correlation = request.properties.correlation_data.clone().unwrap();
    peer.send(Packet::PubAck(PubAck::new(request.packet_id)))
        .await;
    // An unrelated message on the response topic is not the answer.
    let mut stray = Publish::new("mooring/response/gw", "stray");
    stray.properties.correlation_data = Some(Bytes::from_static(b"other"));
    peer.send(Packet::Publish(stray)).await;
    let mut answer = Publish::new("mooring/response/gw", "12:00");
    answer.properties.correlation_data = Some(correlation);
    peer.send(Packet::Publish(answer)).await;
    let response = requesting.await.unwrap().unwrap();
    assert_eq!(response.payload().as_ref(), b"12:00");

    // The responder's side.
    let mut incoming = Publish::new("svc/time", "now?");
    incoming.properties.response_topic = Some("reply/here".into());
    incoming.properties.correlation_data = Some(Bytes::from_static(b"c1"));
    peer.send(Packet::Publish(incoming)).await;
    let stray = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(
        stray.payload().as_ref(),
        b"stray",
        "unmatched responses reach the stream"
    );
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    drop(client.respond(&message, "12:01").await.unwrap());
    let p = peer.publish().await;
    assert_eq!(p.topic, "reply/here");
    assert_eq!(p.properties.correlation_data.as_deref(), Some(&b"c1"[..]));
}

fn two_servers(broker: &Broker, store: &MemoryStore) -> mooring::client::ClientBuilder {
    Client::builder()
        .server("mqtt://a:1883")
        .server("mqtt://b:1883")
        .client_id("gw")
        .store(store.clone())
        .connector(broker.connector())
        .reconnect(fast_backoff())
}

#[tokio::test]
async fn servers_are_tried_in_order_and_sessions_are_kept_per_server() {
    let mut broker = Broker::new();
    *broker.fake.refuse_host.lock().unwrap() = Some("a".into());
    let store = MemoryStore::default();
    let connecting = tokio::spawn(two_servers(&broker, &store).connect());
    let (host, mut peer) = broker.next_from().await;
    assert_eq!(host, "b");
    peer.accept(false).await;
    let (client, _m) = connecting.await.unwrap().unwrap();
    drop(client.publish("t", "x", QoS::AtLeastOnce).await.unwrap());
    peer.publish().await;
    assert_eq!(stored_key(&store, "mqtt://b:1883").await.queue.len(), 1);
    assert!(stored_key(&store, "mqtt://a:1883").await.queue.is_empty());

    // Lost: the preferred server comes first again.
    *broker.fake.refuse_host.lock().unwrap() = None;
    drop(peer);
    let (host, mut peer) = broker.next_from().await;
    assert_eq!(host, "a");
    peer.accept(false).await;
    // b's flow stays with b: nothing is retransmitted to a.
    peer.silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_cluster_scope_shares_one_session() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = two_servers(&broker, &store).cluster_scope("plant-cluster");
    let connecting = tokio::spawn(b.connect());
    let (_, mut peer) = broker.next_from().await;
    peer.accept(false).await;
    let (client, _m) = connecting.await.unwrap().unwrap();
    drop(client.publish("t", "x", QoS::AtLeastOnce).await.unwrap());
    let first = peer.publish().await;
    *broker.fake.refuse_host.lock().unwrap() = Some("a".into());
    drop(peer);
    let (host, mut peer) = broker.next_from().await;
    assert_eq!(host, "b");
    peer.accept(true).await;
    let again = peer.publish().await;
    assert_eq!((again.packet_id, again.dup), (first.packet_id, true));
    let key = SessionKey::cluster("plant-cluster", "gw");
    assert_eq!(store.load(&key).await.unwrap().queue.len(), 1);
}

#[tokio::test]
async fn the_hook_sets_a_fresh_password_for_every_attempt() {
    let mut broker = Broker::new();
    let count = Arc::new(AtomicU32::new(0));
    let b = builder(&broker, MemoryStore::default()).before_connect({
        let count = count.clone();
        move |mut attempt| {
            let n = count.fetch_add(1, Ordering::SeqCst);
            async move {
                attempt.password = Some(format!("token-{n}").into());
                Ok(attempt)
            }
        }
    });
    let (_client, _m, peer) = connected(&mut broker, b).await;
    drop(peer);
    let mut peer = broker.next().await;
    let connect = peer.accept(true).await;
    assert_eq!(connect.password.as_deref(), Some(&b"token-1"[..]));
}

#[tokio::test]
async fn connect_fails_fast_when_refused_and_retries_when_started() {
    let mut broker = Broker::new();
    let connecting = tokio::spawn(builder(&broker, MemoryStore::default()).connect());
    let mut peer = broker.next().await;
    peer.connect().await;
    let mut refusal = ConnAck::new(false);
    refusal.reason_code = ReasonCode::NotAuthorized;
    peer.send(Packet::ConnAck(Box::new(refusal))).await;
    match connecting.await.unwrap() {
        Err(ClientError::Connect(ConnectError::Refused { reason })) => {
            assert_eq!(reason, ReasonCode::NotAuthorized)
        }
        other => panic!("{other:?}"),
    }

    let mut broker = Broker::new();
    broker.fake.refuse.store(3, Ordering::SeqCst);
    let (client, _m) = builder(&broker, MemoryStore::default())
        .start()
        .await
        .unwrap();
    let mut events = client.events();
    broker.next().await.accept(false).await;
    next_event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
}

#[tokio::test]
async fn max_attempts_stops_the_client() {
    let broker = Broker::new();
    broker.fake.refuse.store(u32::MAX, Ordering::SeqCst);
    let b = builder(&broker, MemoryStore::default()).reconnect(Backoff {
        max_attempts: Some(3),
        ..fast_backoff()
    });
    let (client, mut messages) = b.start().await.unwrap();
    let mut events = client.events();
    let delivery = client.publish("q", "x", QoS::AtLeastOnce).await;
    match next_event(&mut events, |e| matches!(e, ClientEvent::Stopped { .. })).await {
        ClientEvent::Stopped { error: Some(why) } => assert!(why.contains("gave up"), "{why}"),
        other => panic!("{other:?}"),
    }
    if let Ok(delivery) = delivery {
        assert_eq!(delivery.await, Err(DeliveryError::Stopped));
    }
    assert!(messages.recv().await.is_none());
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
async fn server_disconnect_is_reported_with_its_reference() {
    let mut broker = Broker::new();
    let (client, _m, mut peer) = connected_default(&mut broker).await;
    let mut events = client.events();
    let mut d = Disconnect::new(ReasonCode::UseAnotherServer);
    d.properties.server_reference = Some("mqtt://other".into());
    peer.send(Packet::Disconnect(d)).await;
    match next_event(&mut events, |e| {
        matches!(e, ClientEvent::ServerDisconnected { .. })
    })
    .await
    {
        ClientEvent::ServerDisconnected {
            reason,
            server_reference,
            ..
        } => {
            assert_eq!(reason, ReasonCode::UseAnotherServer);
            assert_eq!(server_reference.as_deref(), Some("mqtt://other"));
        }
        other => panic!("{other:?}"),
    }
    broker.next().await.accept(true).await;
}

#[tokio::test]
async fn a_stored_session_resumes_after_a_restart() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (client, _m, mut peer) = connected_with(&mut broker, &store).await;
    drop(client.publish("r", "1", QoS::ExactlyOnce).await.unwrap());
    let first = peer.publish().await;
    // The process "dies": the task is gone, the store stays.
    drop(client);
    peer.recv().await;
    let b = builder(&broker, store.clone());
    let (client, _m, mut peer) = connected_by(&mut broker, b, ConnAck::new(true)).await;
    let again = peer.publish().await;
    assert_eq!(
        (again.packet_id, again.dup, again.payload),
        (first.packet_id, true, first.payload)
    );
    drop(client);
}

#[tokio::test]
async fn subscribe_with_properties_reaches_the_server() {
    let mut broker = Broker::new();
    let (client, _m, mut peer) = connected_default(&mut broker).await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move {
            let props = SubscribeProperties {
                subscription_identifier: Some(9),
                ..Default::default()
            };
            client
                .subscribe_with(
                    vec![
                        Subscription::new("a/#", QoS::AtLeastOnce),
                        Subscription::new("b", QoS::AtMostOnce),
                    ],
                    props,
                )
                .await
        }
    });
    let sub = peer
        .suback(vec![ReasonCode::GrantedQos1, ReasonCode::Success])
        .await;
    assert_eq!(sub.properties.subscription_identifier, Some(9));
    assert_eq!(sub.subscriptions.len(), 2);
    let info = subscribing.await.unwrap().unwrap();
    assert_eq!(
        info.reason_codes,
        vec![ReasonCode::GrantedQos1, ReasonCode::Success]
    );
}

#[test]
fn handles_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    check::<Client>();
    send::<mooring::client::Message>();
    send::<Messages>();
    send::<mooring::client::Delivery>();
}

#[tokio::test]
async fn the_servers_limits_refuse_publishes_locally() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let mut connack = ConnAck::new(false);
    connack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    connack.properties.maximum_packet_size = Some(128);
    connack.properties.retain_available = Some(false);
    let b = builder(&broker, store.clone());
    let (client, _m, mut peer) = connected_by(&mut broker, b, connack).await;
    let err = client
        .publish("t", "x", QoS::ExactlyOnce)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Maximum QoS"), "{err}");
    let err = client
        .publish("t", vec![0u8; 200], QoS::AtLeastOnce)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Publish(_)), "{err}");
    let mut retained = Publish::new("t", "x");
    retained.retain = true;
    assert!(client.publish_with(retained).await.is_err());
    let left = stored(&store).await;
    assert!(
        left.queue.is_empty() && left.outbound.is_empty(),
        "nothing stored"
    );
    peer.silent(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_server_that_never_answers_connect_times_out() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default()).connect_timeout(Duration::from_millis(200));
    let connecting = tokio::spawn(b.connect());
    let mut peer = broker.next().await;
    peer.connect().await;
    match timeout(WAIT, connecting).await.unwrap().unwrap() {
        Err(ClientError::Connect(ConnectError::Timeout(t))) => {
            assert_eq!(t, Duration::from_millis(200))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_lost_session_is_one_event_with_what_was_resent_and_resubscribed() {
    let mut broker = Broker::new();
    let (client, _m, mut peer) = connected_default(&mut broker).await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("s", QoS::AtLeastOnce).await }
    });
    peer.suback(vec![ReasonCode::GrantedQos1]).await;
    subscribing.await.unwrap().unwrap();
    let delivery = client.publish("t", "x", QoS::AtLeastOnce).await.unwrap();
    peer.publish().await;
    let mut events = client.events();
    drop(peer);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let event = next_event(&mut events, |e| {
        matches!(e, ClientEvent::SessionLost { .. })
    })
    .await;
    assert!(
        matches!(
            event,
            ClientEvent::SessionLost {
                resent: 1,
                dropped_pubrel: 0,
                dropped_inbound: 0,
                resubscribed: 1
            }
        ),
        "{event:?}"
    );
    // The subscription is made again before anything else, and the publish goes again as a
    // new message (DUP 0).
    assert!(matches!(peer.recv().await, Packet::Subscribe(_)));
    let again = peer.publish().await;
    assert!(!again.dup);
    peer.send(Packet::PubAck(PubAck::new(again.packet_id)))
        .await;
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );
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

#[tokio::test]
async fn a_completed_flow_leaves_the_store_soon_even_when_idle() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (client, _m, mut peer) = {
        let b = builder(&broker, store.clone());
        connected(&mut broker, b).await
    };
    let delivery = client.publish("t", "x", QoS::AtLeastOnce).await.unwrap();
    let p = peer.publish().await;
    assert_eq!(stored(&store).await.queue.len(), 1);
    peer.send(Packet::PubAck(PubAck::new(p.packet_id))).await;
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );
    // The removal waits at most a few milliseconds for a commit to join.
    timeout(WAIT, async {
        while !stored(&store).await.queue.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the completed flow's record is removed");
    let stats = client.stats();
    assert_eq!(stats.commits, 3, "metadata, publish, removal: {stats:?}");
}

#[tokio::test]
async fn flows_waiting_for_quota_go_out_after_a_restart() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let mut connack = ConnAck::new(false);
    connack.properties.receive_maximum = Some(1);
    let b = builder(&broker, store.clone());
    let (client, _m, mut peer) = connected_by(&mut broker, b, connack).await;
    for i in 0..3 {
        drop(
            client
                .publish("q", format!("{i}"), QoS::ExactlyOnce)
                .await
                .unwrap(),
        );
    }
    let first = peer.publish().await;
    assert_eq!(first.payload.as_ref(), b"0");
    peer.silent(Duration::from_millis(100)).await;
    let held = stored(&store).await;
    assert_eq!(
        held.outbound.len() + held.queue.len(),
        3,
        "all three are stored"
    );
    drop(client);
    drop(peer);
    let connecting = tokio::spawn(builder(&broker, store.clone()).connect());
    let mut peer = loop {
        let mut p = broker.next().await;
        match p.try_recv().await {
            Some(Packet::Connect(_)) => break p,
            _ => continue,
        }
    };
    let mut connack = ConnAck::new(true);
    connack.properties.receive_maximum = Some(10);
    peer.send(Packet::ConnAck(Box::new(connack))).await;
    let _c = connecting.await.unwrap().unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = peer.publish().await;
        got.push((
            String::from_utf8_lossy(&p.payload).into_owned(),
            p.dup,
            p.packet_id,
        ));
    }
    println!("{got:?}");
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
}
