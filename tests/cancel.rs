//! Cancel means cancel: a publish, subscribe or request whose future is dropped before it
//! returned (a timeout around it, a `select!`) leaves nothing behind, against the in-process
//! fake broker; one that returned always takes effect.
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
use mooring::client::QueuePolicy;
use mooring::packet::{Packet, PubAck, Publish, QoS, ReasonCode, SubAck};
use mooring::store::{MemoryStore, SessionKey, SessionStore, StoreOp};
use tokio::time::timeout;

mod support;

use support::*;

/// Whether any commit left a message with this payload in the store: one that queues it
/// and removes it in the same batch leaves nothing (the store applies a batch whole).
fn ever_stored(store: &ControlledStore, payload: &[u8]) -> bool {
    store.batches.lock().unwrap().iter().any(|(_, batch)| {
        let ops = batch.ops();
        ops.iter().any(|op| match op {
            StoreOp::PushQueue { seq, message } if message.packet.ends_with(payload) => !ops
                .iter()
                .any(|later| matches!(later, StoreOp::RemoveQueue { seq: s } if s == seq)),
            _ => false,
        })
    })
}

#[tokio::test]
async fn a_publish_dropped_while_it_waits_for_queue_room_is_never_stored_or_sent() {
    let mut broker = Broker::new();
    broker.fake.refuse.store(u32::MAX, Ordering::SeqCst);
    let store = Arc::new(ControlledStore::default());
    let (client, _m) = builder(&broker, MemoryStore::default())
        .store_arc(store.clone())
        .queue_limit(1, QueuePolicy::Wait)
        .start()
        .await
        .unwrap();
    let _first = client
        .publish("q", "first", QoS::AtLeastOnce)
        .await
        .unwrap();
    // The queue is full: the second waits for room, and its caller gives up.
    let given_up = timeout(
        Duration::from_millis(100),
        client.publish("q", "given-up", QoS::AtLeastOnce),
    )
    .await;
    assert!(given_up.is_err(), "it should have waited for room");
    // Given up, it no longer waits: it neither counts nor holds memory.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.stats().queued, 1);
    broker.fake.refuse.store(0, Ordering::SeqCst);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let first = peer.publish().await;
    assert_eq!(&first.payload[..], b"first");
    peer.send(Packet::PubAck(PubAck::new(first.packet_id)))
        .await;
    peer.silent(Duration::from_millis(200)).await;
    assert!(!ever_stored(&store, b"given-up"));
    let stats = client.stats();
    assert_eq!((stats.withdrawn, stats.queued), (1, 0));
}

#[tokio::test]
async fn a_publish_dropped_behind_a_commit_in_flight_is_never_stored_or_sent() {
    let mut broker = Broker::new();
    let (store, gate, client, _m, mut peer) =
        connected_gated(&mut broker, &MemoryStore::default()).await;
    // The first holds a commit; the second gathers behind it, and its caller gives up.
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.publish("t", "kept", QoS::AtLeastOnce).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let given_up = timeout(
        Duration::from_millis(50),
        client.publish("t", "given-up", QoS::AtLeastOnce),
    )
    .await;
    assert!(given_up.is_err());
    gate.add_permits(100);
    assert!(first.await.unwrap().is_ok());
    let sent = peer.publish().await;
    assert_eq!(&sent.payload[..], b"kept");
    peer.silent(Duration::from_millis(200)).await;
    assert!(
        !ever_stored(&store, b"given-up"),
        "the withdrawn one reached the store"
    );
    assert_eq!(client.stats().withdrawn, 1);
}

#[tokio::test]
async fn a_publish_dropped_during_its_commit_is_taken_back_and_never_sent() {
    let mut broker = Broker::new();
    let inner = MemoryStore::default();
    let (_, gate, client, _m, mut peer) = connected_gated(&mut broker, &inner).await;
    // Its commit is held; its caller gives up meanwhile.
    let given_up = timeout(
        Duration::from_millis(100),
        client.publish("t", "given-up", QoS::ExactlyOnce),
    )
    .await;
    assert!(given_up.is_err());
    gate.add_permits(100);
    peer.silent(Duration::from_millis(300)).await;
    // Durable for a moment, then removed: nothing is left to send after a restart either.
    let key = SessionKey::new(URL, "gw");
    assert!(inner.load(&key).await.unwrap().queue.is_empty());
    assert_eq!((client.stats().withdrawn, client.stats().published), (1, 0));
    // The client goes on: the next publish is sent under its own identifier.
    let _kept = client.publish("t", "kept", QoS::AtLeastOnce).await.unwrap();
    let sent = peer.publish().await;
    assert_eq!(&sent.payload[..], b"kept");
}

#[tokio::test]
async fn a_publish_that_returned_goes_even_if_its_delivery_is_dropped() {
    let mut broker = Broker::new();
    let (client, _m, mut peer) = connected_default(&mut broker).await;
    drop(client.publish("t", "kept", QoS::AtLeastOnce).await.unwrap());
    let sent = peer.publish().await;
    assert_eq!(&sent.payload[..], b"kept");
}

#[tokio::test]
async fn a_subscribe_dropped_before_it_was_sent_is_never_sent() {
    let mut broker = Broker::new();
    broker.fake.refuse.store(u32::MAX, Ordering::SeqCst);
    let (client, _m) = builder(&broker, MemoryStore::default())
        .start()
        .await
        .unwrap();
    let given_up = timeout(
        Duration::from_millis(100),
        client.subscribe("never/#", QoS::AtLeastOnce),
    )
    .await;
    assert!(given_up.is_err(), "it waits for a connection");
    let kept = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("kept/#", QoS::AtLeastOnce).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    broker.fake.refuse.store(0, Ordering::SeqCst);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let sub = peer.suback(vec![ReasonCode::GrantedQos1]).await;
    assert_eq!(
        sub.subscriptions[0].filter, "kept/#",
        "only the one still awaited"
    );
    assert_eq!(kept.await.unwrap().unwrap(), QoS::AtLeastOnce);
    peer.silent(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_subscribe_dropped_after_it_was_sent_still_takes_effect() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (client, _m, mut peer) = connected_with(&mut broker, &store).await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("sent/#", QoS::AtLeastOnce).await }
    });
    let sub = match peer.recv().await {
        Packet::Subscribe(s) => s,
        other => panic!("expected SUBSCRIBE, got {other:?}"),
    };
    waiting.abort();
    peer.send(Packet::SubAck(SubAck {
        packet_id: sub.packet_id,
        properties: Default::default(),
        reason_codes: vec![ReasonCode::GrantedQos1],
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kept = stored(&store).await.subscriptions;
    assert_eq!(kept.len(), 1, "the granted subscription is kept: {kept:?}");
    assert_eq!(kept[0].filter, "sent/#");
}

#[tokio::test]
async fn a_cancelled_request_leaves_nothing_behind() {
    let mut broker = Broker::new();
    let (client, mut messages, mut peer) = connected_default(&mut broker).await;
    let asking = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .request("svc/clock", "now?", Duration::from_secs(60))
                .await
        }
    });
    peer.suback(vec![ReasonCode::GrantedQos1]).await;
    let request = peer.publish().await;
    peer.send(Packet::PubAck(PubAck::new(request.packet_id)))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(client.stats().responses_awaited, 1);
    asking.abort();
    assert!(asking.await.unwrap_err().is_cancelled());
    // The answer comes late: acked, and never handed to the application.
    let mut answer = Publish::new(request.properties.response_topic.clone().unwrap(), "12:00");
    answer.qos = QoS::AtLeastOnce;
    answer.packet_id = 7;
    answer.properties.correlation_data = request.properties.correlation_data.clone();
    peer.send(Packet::Publish(answer)).await;
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBACK", 7, ReasonCode::Success)]
    );
    assert!(
        timeout(Duration::from_millis(100), messages.recv())
            .await
            .is_err(),
        "the late answer reached the application"
    );
    assert_eq!(client.stats().responses_awaited, 0);
    // An answer to someone else's request is an ordinary message.
    let mut other = Publish::new("mooring/response/gw", "yours?");
    other.properties.correlation_data = Some(Bytes::from_static(b"not ours"));
    peer.send(Packet::Publish(other)).await;
    let m = timeout(Duration::from_secs(5), messages.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload()[..], b"yours?");
}
