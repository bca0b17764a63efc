//! Rules of the specification the driver carries out, against an in-process fake broker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mooring::client::ClientEvent;
use mooring::packet::{ConnAck, Packet};
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
