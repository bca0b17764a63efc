//! The promises for an application written the obvious way: what happens to a message it
//! drops, refuses or unwraps, against the in-process fake broker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use mooring::client::{ClientEvent, Refusal};
use mooring::packet::{ConnAck, Packet, QoS, ReasonCode};
use mooring::store::MemoryStore;
use tokio::time::timeout;

mod support;

use support::*;

/// The reason codes of the next `n` acks the broker reads, with their packet identifiers.
async fn acks(peer: &mut Peer, n: usize) -> Vec<(&'static str, u16, ReasonCode)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(match peer.recv().await {
            Packet::PubAck(a) => ("PUBACK", a.packet_id, a.reason_code),
            Packet::PubRec(a) => ("PUBREC", a.packet_id, a.reason_code),
            other => panic!("expected an ack, got {other:?}"),
        });
    }
    out
}

#[tokio::test]
async fn a_message_dropped_without_ack_is_acked_and_later_acks_still_flow() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default()).manual_ack(true);
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    for id in [1u16, 2] {
        peer.send(inbound(QoS::AtLeastOnce, id, "m")).await;
    }
    let first = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let second = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    drop(first);
    second.ack().await.unwrap();
    // Acks go out in arrival order: without the drop counting as handled, neither would.
    assert_eq!(
        acks(&mut peer, 2).await,
        vec![
            ("PUBACK", 1, ReasonCode::Success),
            ("PUBACK", 2, ReasonCode::Success)
        ]
    );
    let stats = client.stats();
    assert_eq!(stats.inbound_unacked, 0);
    assert_eq!(stats.dropped_unacked, 1);
}

#[tokio::test]
async fn a_message_turned_into_its_publish_counts_as_handled() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = builder(&broker, store.clone()).manual_ack(true);
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    peer.send(inbound(QoS::ExactlyOnce, 5, "kept")).await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let publish = message.into_publish();
    assert_eq!(publish.payload.as_ref(), b"kept");
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBREC", 5, ReasonCode::Success)]
    );
    assert_eq!(
        stored(&store).await.inbound,
        vec![5],
        "the marker is durable"
    );
    let stats = client.stats();
    assert_eq!(stats.inbound_unacked, 0);
    assert_eq!(stats.dropped_unacked, 0, "an explicit hand-over is no drop");
}

#[tokio::test]
async fn a_rejected_message_is_answered_with_its_reason_code_and_leaves_no_marker() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = builder(&broker, store.clone()).manual_ack(true);
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    peer.send(inbound(QoS::AtLeastOnce, 1, "bad")).await;
    peer.send(inbound(QoS::ExactlyOnce, 2, "worse")).await;
    peer.send(inbound(QoS::AtLeastOnce, 3, "fine")).await;
    let one = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let two = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let three = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    one.reject(Refusal::ImplementationSpecific).await.unwrap();
    two.reject(Refusal::Unspecified).await.unwrap();
    three.ack().await.unwrap();
    assert_eq!(
        acks(&mut peer, 3).await,
        vec![
            ("PUBACK", 1, ReasonCode::ImplementationSpecificError),
            ("PUBREC", 2, ReasonCode::UnspecifiedError),
            ("PUBACK", 3, ReasonCode::Success),
        ]
    );
    assert!(
        stored(&store).await.inbound.is_empty(),
        "no marker for a refusal"
    );
    peer.silent(Duration::from_millis(100)).await;
    assert_eq!(client.stats().inbound_unacked, 0);
}

#[tokio::test]
async fn the_first_connections_events_reach_a_receiver_taken_from_the_builder() {
    // A first run leaves a QoS 1 publish in the store, unacknowledged.
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (client, _messages, mut peer) = connected_with(&mut broker, &store).await;
    let _delivery = client
        .publish("out", "pending", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(peer.recv().await, Packet::Publish(_)));
    drop(client);
    drop(peer);
    // The restart finds a broker that lost the session.
    let mut b = builder(&broker, store.clone());
    let mut events = b.events();
    let (_client, _messages, _peer) = connected_by(&mut broker, b, ConnAck::new(false)).await;
    let lost = next_event(&mut events, |e| {
        matches!(e, ClientEvent::SessionLost { .. })
    })
    .await;
    assert!(
        matches!(lost, ClientEvent::SessionLost { resent: 1, .. }),
        "{lost:?}"
    );
    let connected = next_event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
    assert!(matches!(
        connected,
        ClientEvent::Connected {
            session_present: false,
            ..
        }
    ));
}
