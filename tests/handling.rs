//! Exactly-once into the application, against the in-process fake broker: a QoS 1/2 message
//! is acked only once the application is done with it, and a message it did not handle is
//! handed over again, then settled by the redelivery policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mooring::client::{ClientEvent, Exhausted, Redelivery, Refusal, Router};
use mooring::packet::{Packet, PubAck, QoS, ReasonCode, UserProperty};
use mooring::store::{MemoryStore, StoreOp};
use tokio::time::{Instant, timeout};

mod support;

use support::*;

#[tokio::test]
async fn an_automatic_ack_waits_until_the_application_asks_for_the_next_message() {
    let mut broker = Broker::new();
    let (client, mut messages, mut peer) = connected_default(&mut broker).await;
    for id in 1..=3u16 {
        peer.send(inbound(QoS::AtLeastOnce, id, id.to_string()))
            .await;
    }
    let first = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert!(
        !first.needs_ack(),
        "automatic ack: nothing for the application to call"
    );
    // The application holds it: the server has no ack yet, so a crash now gets it again.
    peer.silent(Duration::from_millis(100)).await;
    let second = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBACK", 1, ReasonCode::Success)]
    );
    assert_eq!(&first.payload()[..], b"1", "the first is still readable");
    drop(first);
    peer.silent(Duration::from_millis(100)).await;
    // Dropping the one it holds is done too.
    drop(second);
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBACK", 2, ReasonCode::Success)]
    );
    let _third = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    peer.silent(Duration::from_millis(100)).await;
    assert_eq!(client.stats().inbound_unacked, 1);
}

#[tokio::test]
async fn with_automatic_ack_the_next_qos2_message_waits_until_the_previous_marker_is_durable() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (_, gate, _client, mut messages, mut peer) = connected_gated(&mut broker, &store).await;
    for id in [7u16, 8] {
        peer.send(inbound(QoS::ExactlyOnce, id, id.to_string()))
            .await;
    }
    let first = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(first.publish().packet_id, 7);
    let mut next = Box::pin(messages.recv());
    // Asking for the next acks the first, but its marker's commit is held: no message yet.
    assert!(
        timeout(Duration::from_millis(200), &mut next)
            .await
            .is_err(),
        "handed over before the previous ack was durable"
    );
    assert!(stored(&store).await.inbound.is_empty());
    gate.add_permits(1);
    let second = timeout(WAIT, next).await.unwrap().unwrap();
    assert_eq!(second.publish().packet_id, 8);
    assert_eq!(
        stored(&store).await.inbound,
        vec![7],
        "the marker came first"
    );
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBREC", 7, ReasonCode::Success)]
    );
    gate.add_permits(100);
}

/// `while let Some(m) = messages.recv().await { .. }` drops each message before it asks for
/// the next: the drop gives the ack, and the next `recv` still waits for it to be durable.
#[tokio::test]
async fn a_qos2_message_dropped_before_the_next_is_asked_for_is_durably_acked_first() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (_, gate, _client, mut messages, mut peer) = connected_gated(&mut broker, &store).await;
    for id in [7u16, 8] {
        peer.send(inbound(QoS::ExactlyOnce, id, id.to_string()))
            .await;
    }
    drop(timeout(WAIT, messages.recv()).await.unwrap().unwrap());
    let mut next = Box::pin(messages.recv());
    assert!(
        timeout(Duration::from_millis(200), &mut next)
            .await
            .is_err(),
        "handed over before the dropped message's ack was durable"
    );
    gate.add_permits(1);
    let second = timeout(WAIT, next).await.unwrap().unwrap();
    assert_eq!(second.publish().packet_id, 8);
    assert_eq!(stored(&store).await.inbound, vec![7]);
    gate.add_permits(100);
}

/// A reader that handles messages in batches pays one commit per batch: `recv_many` hands out
/// what waits, and asking again acks all of it together, durable before the next batch.
#[tokio::test]
async fn a_batch_from_recv_many_is_acked_in_one_commit_before_the_next_batch() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let (_, gate, _client, mut messages, mut peer) = connected_gated(&mut broker, &store).await;
    for id in 1..=4u16 {
        peer.send(inbound(QoS::ExactlyOnce, id, id.to_string()))
            .await;
    }
    // All four reach the inbox.
    peer.silent(Duration::from_millis(100)).await;
    let mut batch = Vec::new();
    let taken = timeout(WAIT, messages.recv_many(&mut batch, 3))
        .await
        .unwrap();
    assert_eq!(taken, 3);
    let ids: Vec<u16> = batch.iter().map(|m| m.publish().packet_id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    // The application holds the batch: nothing is acked yet.
    peer.silent(Duration::from_millis(100)).await;
    // Asking again acks the batch, whether or not the application still holds it.
    let mut next = Vec::new();
    let mut asking = Box::pin(messages.recv_many(&mut next, 3));
    assert!(
        timeout(Duration::from_millis(200), &mut asking)
            .await
            .is_err(),
        "the next batch came before the acks of the last were durable"
    );
    // One commit makes all three markers durable.
    gate.add_permits(1);
    assert_eq!(timeout(WAIT, asking).await.unwrap(), 1);
    assert_eq!(next[0].publish().packet_id, 4);
    assert_eq!(stored(&store).await.inbound, vec![1, 2, 3]);
    assert_eq!(
        acks(&mut peer, 3).await,
        vec![
            ("PUBREC", 1, ReasonCode::Success),
            ("PUBREC", 2, ReasonCode::Success),
            ("PUBREC", 3, ReasonCode::Success)
        ]
    );
    drop(batch);
    gate.add_permits(100);
}

#[tokio::test]
async fn a_message_whose_handler_panics_is_not_acked_but_handed_over_again() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default())
        .redelivery(Redelivery::default().with_delay(Duration::from_millis(10)));
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    let mut events = client.events();
    peer.send(inbound(QoS::ExactlyOnce, 4, "poison")).await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let handler = tokio::spawn(async move {
        let _held = message;
        panic!("the handler failed");
    });
    assert!(handler.await.is_err());
    let again = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!((again.publish().packet_id, again.deliveries()), (4, 2));
    assert!(matches!(
        next_event(&mut events, |e| matches!(
            e,
            ClientEvent::MessageReleased { .. }
        ))
        .await,
        ClientEvent::MessageReleased { deliveries: 1, .. }
    ));
    peer.silent(Duration::from_millis(100)).await;
    drop(again);
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBREC", 4, ReasonCode::Success)]
    );
    let stats = client.stats();
    assert_eq!(
        (stats.released, stats.redelivered, stats.inbound_unacked),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_manual_ack_message_dropped_unacked_is_handed_over_again_and_later_acks_wait_for_it() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default())
        .manual_ack(true)
        .redelivery(Redelivery::default().with_delay(Duration::from_millis(50)));
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    for id in [1u16, 2] {
        peer.send(inbound(QoS::AtLeastOnce, id, id.to_string()))
            .await;
    }
    let first = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let second = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    // An early `?` in the handler: the first is dropped unhandled.
    drop(first);
    second.ack().await.unwrap();
    // Acks go in arrival order: the second's waits for the first, which comes again.
    peer.silent(Duration::from_millis(30)).await;
    let again = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!((&again.payload()[..], again.deliveries()), (&b"1"[..], 2));
    again.ack().await.unwrap();
    assert_eq!(
        acks(&mut peer, 2).await,
        vec![
            ("PUBACK", 1, ReasonCode::Success),
            ("PUBACK", 2, ReasonCode::Success)
        ]
    );
    let stats = client.stats();
    assert_eq!((stats.dropped_unacked, stats.released), (1, 1));
    assert_eq!(stats.inbound_unacked, 0);
}

#[tokio::test]
async fn release_hands_a_message_over_again_after_the_delay() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default())
        .redelivery(Redelivery::default().with_delay(Duration::from_millis(300)));
    let (_client, mut messages, mut peer) = connected(&mut broker, b).await;
    peer.send(inbound(QoS::AtLeastOnce, 9, "later")).await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    let released = Instant::now();
    message.release();
    let again = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert!(released.elapsed() >= Duration::from_millis(300));
    assert_eq!(again.deliveries(), 2);
    peer.silent(Duration::from_millis(50)).await;
    again.ack().await.unwrap();
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBACK", 9, ReasonCode::Success)]
    );
}

/// A message the application drops at once each time holds later acks back by
/// `(max_deliveries - 1) × delay` (GUARANTEES R7), then is refused; on paused time, exactly.
#[tokio::test(start_paused = true)]
async fn a_dropped_message_holds_later_acks_back_by_at_most_the_redelivery_bound_then_is_refused() {
    let mut broker = Broker::new();
    let delay = Duration::from_secs(2);
    let b = builder(&broker, MemoryStore::default())
        .manual_ack(true)
        .redelivery(
            Redelivery::default()
                .with_delay(delay)
                .with_max_deliveries(3)
                .with_exhausted(Exhausted::Refuse(Refusal::ImplementationSpecific)),
        );
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    let mut events = client.events();
    peer.send(inbound(QoS::AtLeastOnce, 1, "poison")).await;
    peer.send(inbound(QoS::AtLeastOnce, 2, "fine")).await;
    let start = Instant::now();
    let poison = messages.recv().await.unwrap();
    let fine = messages.recv().await.unwrap();
    fine.ack().await.unwrap();
    drop(poison);
    for deliveries in 2..=3 {
        let again = messages.recv().await.unwrap();
        assert_eq!(
            (&again.payload()[..], again.deliveries()),
            (&b"poison"[..], deliveries)
        );
        drop(again);
    }
    assert_eq!(
        acks(&mut peer, 2).await,
        vec![
            ("PUBACK", 1, ReasonCode::ImplementationSpecificError),
            ("PUBACK", 2, ReasonCode::Success)
        ]
    );
    assert_eq!(start.elapsed(), 2 * delay, "(max_deliveries - 1) × delay");
    let exhausted = next_event(&mut events, |e| {
        matches!(e, ClientEvent::MessageExhausted { .. })
    })
    .await;
    assert!(matches!(
        exhausted,
        ClientEvent::MessageExhausted {
            deliveries: 3,
            outcome: Exhausted::Refuse(Refusal::ImplementationSpecific),
            ..
        }
    ));
    let stats = client.stats();
    assert_eq!(
        (stats.released, stats.redelivered, stats.exhausted),
        (3, 2, 1)
    );
    assert_eq!((stats.dropped_unacked, stats.inbound_unacked), (3, 0));
}

#[tokio::test]
async fn after_its_last_delivery_a_message_goes_to_the_dead_letter_topic_in_the_commit_of_its_ack()
{
    let mut broker = Broker::new();
    let store = Arc::new(ControlledStore::default());
    let b = builder(&broker, MemoryStore::default())
        .store_arc(store.clone())
        .manual_ack(true)
        .redelivery(
            Redelivery::default()
                .with_delay(Duration::from_millis(10))
                .with_max_deliveries(2)
                .with_exhausted(Exhausted::DeadLetter("dead/letters".into())),
        );
    let (_client, mut messages, mut peer) = connected(&mut broker, b).await;
    peer.send(inbound(QoS::ExactlyOnce, 5, "unreadable")).await;
    for _ in 0..2 {
        messages.recv().await.unwrap().release();
    }
    let copy = peer.publish().await;
    assert_eq!(
        (copy.topic.as_str(), copy.qos),
        ("dead/letters", QoS::ExactlyOnce)
    );
    assert_eq!(&copy.payload[..], b"unreadable");
    assert_eq!(
        copy.properties.user_properties,
        vec![
            UserProperty::new("mooring-original-topic", "in"),
            UserProperty::new("mooring-deliveries", "2")
        ]
    );
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBREC", 5, ReasonCode::Success)]
    );
    // One commit holds both the copy and the marker: a crash leaves both or neither.
    let batches = store.batches.lock().unwrap().clone();
    let together = batches.iter().any(|(_, batch)| {
        let ops = batch.ops();
        ops.iter()
            .any(|op| matches!(op, StoreOp::PutInbound { packet_id: 5 }))
            && ops.iter().any(|op| matches!(op, StoreOp::PushQueue { .. }))
    });
    assert!(
        together,
        "the copy and the ack in separate commits: {batches:?}"
    );
}

#[tokio::test]
async fn dropping_messages_while_subscribed_stops_acking_and_reports_it_once() {
    let mut broker = Broker::new();
    let mut b = builder(&broker, MemoryStore::default());
    let mut events = b.events();
    let (client, messages, mut peer) = connected(&mut broker, b).await;
    peer.send(inbound(QoS::AtLeastOnce, 1, "read by nobody"))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(messages);
    for id in 2..=4u16 {
        peer.send(inbound(QoS::ExactlyOnce, id, "nobody")).await;
    }
    peer.send(inbound(QoS::AtMostOnce, 0, "qos 0")).await;
    // Nothing is acked: the server keeps them, stops at the Receive Maximum, and sends them
    // again when the session resumes.
    peer.silent(Duration::from_millis(300)).await;
    next_event(&mut events, |e| matches!(e, ClientEvent::InboxClosed)).await;
    let later: Vec<_> = std::iter::from_fn(|| events.try_recv()).collect();
    assert!(
        !later.iter().any(|e| matches!(e, ClientEvent::InboxClosed)),
        "reported once: {later:?}"
    );
    let stats = client.stats();
    assert_eq!((stats.unread, stats.inbound_unacked), (4, 0));
    // The client itself goes on: its publishes still flow.
    let delivery = client.publish("out", "x", QoS::AtLeastOnce).await.unwrap();
    let p = peer.publish().await;
    peer.send(Packet::PubAck(PubAck::new(p.packet_id))).await;
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );
}

#[tokio::test]
async fn a_qos1_message_released_before_the_connection_was_lost_is_not_handed_over_twice() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default())
        .redelivery(Redelivery::default().with_delay(Duration::from_millis(200)));
    let (_client, mut messages, mut peer) = connected(&mut broker, b).await;
    peer.send(inbound(QoS::AtLeastOnce, 3, "once more")).await;
    messages.recv().await.unwrap().release();
    // The connection drops before the redelivery is due: the server sends it again itself.
    drop(peer);
    let mut peer = broker.next().await;
    peer.accept(true).await;
    let mut again = mooring::packet::Publish::new("in", "once more");
    again.qos = QoS::AtLeastOnce;
    again.packet_id = 3;
    again.dup = true;
    peer.send(Packet::Publish(again)).await;
    let redelivered = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(
        redelivered.deliveries(),
        1,
        "the server's copy, counted afresh"
    );
    drop(redelivered);
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBACK", 3, ReasonCode::Success)]
    );
    // The client's own copy, due now, is not handed over as well.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(messages.try_recv().is_none(), "handed over twice");
}

#[tokio::test]
async fn each_route_acks_what_it_handed_out_when_asked_for_the_next() {
    let mut broker = Broker::new();
    let (_client, messages, mut peer) = connected_default(&mut broker).await;
    let mut router = Router::new();
    let mut telemetry = router.route("plant/#").unwrap();
    let mut rest = router.fallback();
    tokio::spawn(router.run(messages));
    let send = |topic: &str, id: u16| {
        let mut p = mooring::packet::Publish::new(topic, "x");
        p.qos = QoS::AtLeastOnce;
        p.packet_id = id;
        Packet::Publish(p)
    };
    peer.send(send("plant/1", 1)).await;
    peer.send(send("other", 2)).await;
    peer.send(send("plant/2", 3)).await;
    let first = telemetry.next().await.unwrap();
    let other = rest.recv().await.unwrap();
    // Each is held by its route's reader: nothing acked.
    peer.silent(Duration::from_millis(100)).await;
    drop(other);
    let _second = telemetry.recv().await.unwrap();
    assert_eq!(&first.payload()[..], b"x");
    assert_eq!(
        acks(&mut peer, 2).await,
        vec![
            ("PUBACK", 1, ReasonCode::Success),
            ("PUBACK", 2, ReasonCode::Success)
        ]
    );
}
