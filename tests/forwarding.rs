//! `Message::forward`: the copy of a received message and the message's ack in one store
//! commit, within one client and from one client to another on the same store (a bridge),
//! against the in-process fake broker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use mooring::client::{Client, ClientError, Redelivery};
use mooring::packet::{Packet, PubAck, QoS, ReasonCode};
use mooring::store::{MemoryStore, SessionKey, SessionStore, StoreOp};
use tokio::time::timeout;

mod support;

use support::*;

fn fast_redelivery() -> Redelivery {
    Redelivery::default().with_delay(Duration::from_millis(10))
}

/// Whether one batch (or one joint commit) puts marker `packet_id` and queues a message.
fn together(ops: &[&StoreOp], packet_id: u16) -> bool {
    ops.iter()
        .any(|op| matches!(op, StoreOp::PutInbound { packet_id: p } if *p == packet_id))
        && ops.iter().any(|op| matches!(op, StoreOp::PushQueue { .. }))
}

#[tokio::test]
async fn a_message_forwarded_by_its_own_client_is_acked_in_the_commit_that_stores_its_copy() {
    let mut broker = Broker::new();
    let store = Arc::new(ControlledStore::default());
    let b = builder(&broker, MemoryStore::default()).store_arc(store.clone());
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    peer.send(inbound(QoS::ExactlyOnce, 5, "reading")).await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let mut copy = message.publish().clone();
    copy.topic = "out/reading".into();
    let delivery = message.forward(&client, copy).await.unwrap();
    // The copy goes out and the original's PUBREC, in the order the commit allows.
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(peer.recv().await);
    }
    let sent = seen
        .iter()
        .find_map(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .expect("the copy");
    assert_eq!(
        (sent.topic.as_str(), sent.qos),
        ("out/reading", QoS::ExactlyOnce)
    );
    assert!(
        seen.iter()
            .any(|p| matches!(p, Packet::PubRec(r) if r.packet_id == 5)),
        "{seen:?}"
    );
    let batches = store.batches.lock().unwrap().clone();
    assert!(
        batches.iter().any(|(_, batch)| {
            let ops: Vec<&StoreOp> = batch.ops().iter().collect();
            together(&ops, 5)
        }),
        "the copy and the marker in separate commits: {batches:?}"
    );
    peer.send(Packet::PubRec(PubAck::new(sent.packet_id))).await;
    assert!(matches!(peer.recv().await, Packet::PubRel(_)));
    peer.send(Packet::PubComp(PubAck::new(sent.packet_id)))
        .await;
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );
    let stats = client.stats();
    assert_eq!((stats.forwarded, stats.inbound_unacked), (1, 0));
}

/// A bridge: one client receives from broker A, another publishes to broker B, both on one
/// store. The copy queued in B's session and the marker of the original in A's are one
/// commit of the two sessions.
#[tokio::test]
async fn a_bridge_commits_the_copy_and_the_originals_ack_in_one_commit_of_both_sessions() {
    let mut broker = Broker::new();
    let store = Arc::new(ControlledStore::default());
    let from_a = Client::builder()
        .server("mqtt://a:1883")
        .client_id("bridge")
        .store_arc(store.clone())
        .connector(broker.connector())
        .reconnect(fast_backoff());
    let (a, mut messages, mut peer_a) = connected(&mut broker, from_a).await;
    let to_b = Client::builder()
        .server("mqtt://b:1883")
        .client_id("bridge")
        .store_arc(store.clone())
        .connector(broker.connector())
        .reconnect(fast_backoff());
    let (b, _b_messages, mut peer_b) = connected(&mut broker, to_b).await;
    peer_a.send(inbound(QoS::ExactlyOnce, 9, "across")).await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let mut copy = message.publish().clone();
    copy.topic = "b/across".into();
    let _delivery = message.forward(&b, copy).await.unwrap();
    let sent = peer_b.publish().await;
    assert_eq!(
        (sent.topic.as_str(), &sent.payload[..]),
        ("b/across", &b"across"[..])
    );
    assert_eq!(
        acks(&mut peer_a, 1).await,
        vec![("PUBREC", 9, ReasonCode::Success)]
    );
    let joint = store.joint.lock().unwrap().clone();
    let a_key = SessionKey::new("mqtt://a:1883", "bridge");
    let b_key = SessionKey::new("mqtt://b:1883", "bridge");
    let one_commit = joint.iter().any(|batches| {
        let ops: Vec<&StoreOp> = batches.iter().flat_map(|(_, b)| b.ops()).collect();
        together(&ops, 9)
            && batches.iter().any(|(k, _)| *k == a_key)
            && batches.iter().any(|(k, _)| *k == b_key)
    });
    assert!(one_commit, "not one commit of both sessions: {joint:?}");
    // The marker is in A's session, where a restart of A looks for it.
    assert_eq!(store.inner.load(&a_key).await.unwrap().inbound, vec![9]);
    assert_eq!((a.stats().forwarded, a.stats().inbound_unacked), (1, 0));
}

#[tokio::test]
async fn a_forward_to_a_client_on_another_store_is_refused_and_the_message_comes_again() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default()).redelivery(fast_redelivery());
    let (_a, mut messages, mut peer) = connected(&mut broker, b).await;
    let other = Client::builder()
        .server("mqtt://other:1883")
        .client_id("elsewhere")
        .store(MemoryStore::default())
        .connector(broker.connector())
        .reconnect(fast_backoff());
    let (other, _m, _peer) = connected(&mut broker, other).await;
    peer.send(inbound(QoS::ExactlyOnce, 2, "x")).await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let copy = message.publish().clone();
    let refused = message.forward(&other, copy).await;
    assert!(
        matches!(refused, Err(ClientError::ForwardAcrossStores)),
        "{refused:?}"
    );
    let again = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!((again.publish().packet_id, again.deliveries()), (2, 2));
    peer.silent(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn a_forward_to_a_stopped_client_stores_nothing_and_the_message_comes_again() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = builder(&broker, store.clone()).redelivery(fast_redelivery());
    let (_a, mut messages, mut peer) = connected(&mut broker, b).await;
    let target = Client::builder()
        .server("mqtt://target:1883")
        .client_id("target")
        .store(store.clone())
        .connector(broker.connector())
        .reconnect(fast_backoff());
    let (target, _m, _peer) = connected(&mut broker, target).await;
    target.disconnect().await.unwrap();
    peer.send(inbound(QoS::ExactlyOnce, 3, "x")).await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let copy = message.publish().clone();
    assert!(matches!(
        message.forward(&target, copy).await,
        Err(ClientError::Stopped)
    ));
    let again = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(again.deliveries(), 2);
    let target_key = SessionKey::new("mqtt://target:1883", "target");
    assert!(store.load(&target_key).await.unwrap().queue.is_empty());
    assert!(
        store
            .load(&SessionKey::new(URL, "gw"))
            .await
            .unwrap()
            .inbound
            .is_empty()
    );
}
