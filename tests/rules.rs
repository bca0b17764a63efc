//! Rules of the specification the driver carries out, against an in-process fake broker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use mooring::client::ClientEvent;
use mooring::packet::{ConnAck, Packet, QoS};
use mooring::store::MemoryStore;
use tokio::time::timeout;

mod support;

use support::*;

#[tokio::test]
async fn mqtt_3_2_2_4_a_new_store_refuses_a_resumed_session_and_connects_again_clean() {
    let mut broker = Broker::new();
    let connecting = tokio::spawn(builder(&broker, MemoryStore::default()).connect());
    let mut first = broker.next().await;
    assert!(!first.connect().await.clean_start);
    first
        .send(Packet::ConnAck(Box::new(ConnAck::new(true))))
        .await;
    first.closed().await;
    let mut second = broker.next().await;
    assert!(
        second.accept(false).await.clean_start,
        "the second attempt asks for a clean start"
    );
    let (client, _messages) = timeout(WAIT, connecting).await.unwrap().unwrap().unwrap();
    let mut events = client.events();
    drop(second);
    // Later connections resume the session the client now has.
    let mut third = broker.next().await;
    assert!(!third.accept(true).await.clean_start);
    next_event(&mut events, |e| {
        matches!(
            e,
            ClientEvent::Connected {
                session_present: true,
                ..
            }
        )
    })
    .await;
}

/// A server that stops reading: the client goes on reading (a message sent meanwhile is
/// delivered), the write timeout ends the connection, and the client connects again.
#[tokio::test]
async fn a_stalled_write_keeps_reading_and_ends_the_connection_within_the_write_timeout() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default()).write_timeout(Duration::from_millis(500));
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    let mut events = client.events();
    // More than the 1 MiB the pipe holds, and nobody reads it.
    let publisher = client.clone();
    tokio::spawn(async move {
        for _ in 0..24 {
            let payload = vec![b'x'; 64 * 1024];
            if publisher
                .publish("big", payload, QoS::AtMostOnce)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stalled = Instant::now();
    peer.send(inbound(QoS::AtMostOnce, 0, "while stalled"))
        .await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(message.payload().as_ref(), b"while stalled");
    let lost = next_event(&mut events, |e| {
        matches!(e, ClientEvent::ConnectionLost { .. })
    })
    .await;
    assert!(
        stalled.elapsed() < Duration::from_secs(3),
        "the connection ended {:?} after the stall",
        stalled.elapsed()
    );
    assert!(
        matches!(
            &lost,
            ClientEvent::ConnectionLost {
                reason: mooring::client::ConnectionLoss::WriteStalled(_),
                ..
            }
        ),
        "{lost:?}"
    );
    let mut again = broker.next().await;
    again.accept(false).await;
    next_event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
}

/// A broker that speaks only MQTT 3.1.1 answers a v5 CONNECT with a 3.1.1 CONNACK (return code
/// 1): the error says so and what to do, instead of "malformed".
#[tokio::test]
async fn a_3_1_1_only_broker_is_named_as_such() {
    let mut broker = Broker::new();
    let connecting = tokio::spawn(builder(&broker, MemoryStore::default()).connect());
    let mut peer = broker.next().await;
    peer.connect().await;
    peer.send_raw(&[0x20, 0x02, 0x00, 0x01]).await;
    let text = match timeout(WAIT, connecting).await.unwrap().unwrap() {
        Err(error) => error.to_string(),
        Ok(_) => panic!("the connection is refused"),
    };
    assert!(
        text.contains("MQTT 3.1.1 only") && text.contains("V311"),
        "{text}"
    );
}
