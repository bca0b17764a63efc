//! The tokio driver against an in-process fake broker: every byte the client writes is read
//! here, and every answer is written by the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use mooring::client::{
    Client, ClientError, ClientEvent, DeliveryError, Events, Messages, QueuePolicy, StopReason,
};
use mooring::packet::{ConnAck, Packet, PubAck, Publish, QoS, ReasonCode};
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
    // [MQTT-4.3.2-2] A new identifier, QoS 1, DUP 0.
    assert_eq!((publish.qos, publish.dup), (QoS::AtLeastOnce, false));
    assert_ne!(publish.packet_id, 0);
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
    // [MQTT-4.3.3-2] A new identifier, QoS 2, DUP 0.
    assert_eq!((p.qos, p.dup), (QoS::ExactlyOnce, false));
    assert_ne!(p.packet_id, 0);
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

/// A client on `store`, connected to `broker`, and the broker's side of its connection.
async fn connected_on(
    broker: &mut Broker,
    store: &Arc<ControlledStore>,
) -> (Client, Messages, Peer) {
    let b = Client::builder()
        .server(URL)
        .client_id("gw")
        .store_arc(store.clone())
        .connector(broker.connector());
    let connecting = tokio::spawn(b.connect());
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let (client, messages) = connecting.await.unwrap().unwrap();
    (client, messages, peer)
}

#[tokio::test]
async fn concurrent_publishes_share_commits() {
    let mut broker = Broker::new();
    let gate = Arc::new(Semaphore::new(1));
    let store = Arc::new(ControlledStore::gated(MemoryStore::default(), &gate));
    let (client, _m, mut peer) = connected_on(&mut broker, &store).await;
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

/// The next `Stopped` event says the store stopped the client.
async fn stopped_for_the_store(events: &mut Events) {
    match next_event(events, |e| matches!(e, ClientEvent::Stopped { .. })).await {
        ClientEvent::Stopped {
            reason: StopReason::Store(_),
        } => {}
        other => panic!("{other:?}"),
    }
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
    stopped_for_the_store(&mut events).await;
    // The PUBLISH never went out: its commit failed.
    peer.closed().await;
    assert!(matches!(
        client.publish("t", "y", QoS::AtLeastOnce).await,
        Err(ClientError::Stopped)
    ));
    assert!(messages.recv().await.is_none(), "the message stream ends");
}

#[tokio::test]
async fn a_store_that_panics_in_a_commit_stops_the_client_with_a_store_error() {
    let mut broker = Broker::new();
    let store = Arc::new(ControlledStore::default());
    let (client, _m, mut peer) = connected_on(&mut broker, &store).await;
    let mut events = client.events();
    store.panics.store(true, Ordering::SeqCst);
    let err = client
        .publish("t", "x", QoS::AtLeastOnce)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Store(e) if e.to_string().contains("a store with a bug")),
        "{err}"
    );
    stopped_for_the_store(&mut events).await;
    peer.closed().await;
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
