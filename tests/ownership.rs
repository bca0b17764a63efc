//! The driver and a store that leases each session to one process at a time (as the
//! PostgreSQL store does), against the in-process fake broker: once the lease has run out the
//! client writes nothing, not even what was already waiting to be written; a lease that keeps
//! being renewed never interrupts the connection; a fenced client stops for good.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mooring::client::ClientEvent;
use mooring::packet::{Packet, QoS, ReasonCode};
use mooring::store::MemoryStore;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

mod support;

use support::*;

fn leased_builder(broker: &Broker, store: &Arc<ControlledStore>) -> mooring::ClientBuilder {
    builder(broker, MemoryStore::default()).store_arc(store.clone())
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn bytes_waiting_to_be_written_when_the_lease_runs_out_are_never_written() {
    const PIPE: usize = 4096;
    let mut broker = Broker::with_pipe(PIPE);
    let store = Arc::new(ControlledStore::default());
    store.lease_until(Instant::now() + HOUR);
    let b = leased_builder(&broker, &store);
    let (client, _messages, mut peer) = connected(&mut broker, b).await;
    let mut events = client.events();

    // The broker reads nothing: the pipe fills and the rest waits in the client.
    let payload = vec![b'x'; 1000];
    for _ in 0..30 {
        let sent = client
            .publish("out", payload.clone(), QoS::AtMostOnce)
            .await;
        drop(sent.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The process "wakes" past its lease, and another one has taken the session meanwhile.
    store.lease_until(Instant::now());
    store.fenced.store(true, Ordering::SeqCst);

    // Only what was in the pipe before the lease ran out arrives; then the client drops the
    // connection instead of writing the rest.
    let mut received = peer.buf.len();
    let mut chunk = [0u8; 8192];
    timeout(WAIT, async {
        loop {
            match peer.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await
    .expect("the client did not drop the connection");
    assert!(
        received <= PIPE,
        "{received} bytes arrived after the lease ran out; the pipe held {PIPE}"
    );

    // Its next attempt asks the store first, learns it was fenced, and stops.
    let taken = next_event(&mut events, |e| {
        matches!(e, ClientEvent::SessionTakenOver { .. })
    })
    .await;
    assert!(
        matches!(taken, ClientEvent::SessionTakenOver { holder, .. } if holder == "the standby")
    );
    next_event(&mut events, |e| matches!(e, ClientEvent::Stopped { .. })).await;
    assert!(
        broker.rx.try_recv().is_err(),
        "a fenced client connected again"
    );
}

#[tokio::test]
async fn a_lease_renewed_while_the_client_waits_never_interrupts_the_connection() {
    let mut broker = Broker::new();
    let store = Arc::new(ControlledStore::default());
    store.lease_until(Instant::now() + Duration::from_millis(200));
    let b = leased_builder(&broker, &store);
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    let mut events = client.events();
    let renewer = tokio::spawn({
        let store = store.clone();
        async move {
            loop {
                store.lease_until(Instant::now() + Duration::from_millis(200));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    // The loop waits far longer than any one lease; each renewal extends it meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    peer.send(inbound(QoS::AtLeastOnce, 1, "after the wait"))
        .await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(&message.payload()[..], b"after the wait");
    drop(message);
    let ack = peer.recv().await;
    assert!(
        matches!(ack, mooring::packet::Packet::PubAck(ref a) if a.packet_id == 1),
        "got {ack:?}"
    );
    renewer.abort();
    assert!(
        !std::iter::from_fn(|| events.try_recv())
            .any(|e| matches!(e, ClientEvent::ConnectionLost { .. })),
        "the connection was dropped although the lease never ran out"
    );
    assert!(broker.rx.try_recv().is_err(), "the client connected again");
}

/// Messages decoded before the lease ran out wait in the inbox; none of them reaches the
/// application, whatever its QoS or ack mode: another process may own the session, and the
/// server sends the unacknowledged ones to it.
#[tokio::test]
async fn nothing_in_the_inbox_reaches_the_application_once_the_lease_lapsed_in_any_ack_mode() {
    let mut broker = Broker::new();
    let store = Arc::new(ControlledStore::default());
    // A lease nobody renews (the database is out of reach): it runs out in 300 ms.
    store.lease_until(Instant::now() + Duration::from_millis(300));
    // Automatic ack, the default.
    let b = leased_builder(&broker, &store);
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    let mut events = client.events();
    for (id, qos) in [
        (0u16, QoS::AtMostOnce),
        (1, QoS::AtLeastOnce),
        (2, QoS::ExactlyOnce),
    ] {
        peer.send(inbound(qos, id, format!("{qos:?}"))).await;
    }
    // Read into the inbox while the lease held; meanwhile a standby takes the session over.
    peer.silent(Duration::from_millis(100)).await;
    store.fenced.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let handed = timeout(WAIT, messages.recv()).await.unwrap();
    assert!(
        handed.is_none(),
        "handed over after the lease ran out: {handed:?}"
    );
    next_event(&mut events, |e| matches!(e, ClientEvent::Stopped { .. })).await;
}

/// A clean stop releases the lease (a standby takes the session at once): what still waits in
/// the inbox is never handed out, since it could not be acked and the standby gets it again.
#[tokio::test]
async fn a_stopped_client_hands_out_nothing_left_in_its_inbox() {
    let mut broker = Broker::new();
    let store = Arc::new(ControlledStore::default());
    store.lease_until(Instant::now() + HOUR);
    let b = leased_builder(&broker, &store).manual_ack(true);
    let (client, mut messages, mut peer) = connected(&mut broker, b).await;
    for id in 1..=3u16 {
        peer.send(inbound(QoS::ExactlyOnce, id, id.to_string()))
            .await;
    }
    peer.silent(Duration::from_millis(100)).await;
    let disconnecting = tokio::spawn(async move { client.disconnect().await });
    assert!(matches!(peer.recv().await, Packet::Disconnect(_)));
    peer.closed().await;
    disconnecting.await.unwrap().unwrap();
    let handed = timeout(WAIT, messages.recv()).await.unwrap();
    assert!(handed.is_none(), "handed over after the stop: {handed:?}");
}

/// SUBSCRIBE and UNSUBSCRIBE change the server's session, so they go out only after the
/// commit that records them, which is the one that confirms ownership with the store: a
/// process the standby has fenced sends neither (a stale UNSUBSCRIBE would strip a filter from
/// the session the standby resumed), and stops.
#[tokio::test]
async fn a_fenced_client_sends_no_subscribe_or_unsubscribe() {
    let mut broker = Broker::new();
    let store = Arc::new(ControlledStore::default());
    store.lease_until(Instant::now() + HOUR);
    let b = leased_builder(&broker, &store);
    let (client, _messages, mut peer) = connected(&mut broker, b).await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("plant/#", QoS::AtLeastOnce).await }
    });
    peer.suback(vec![ReasonCode::GrantedQos1]).await;
    subscribing.await.unwrap().unwrap();

    // The standby takes over: the store says so at the next commit.
    store.fenced.store(true, Ordering::SeqCst);
    let unsubscribed = timeout(WAIT, client.unsubscribe("plant/#")).await.unwrap();
    assert!(unsubscribed.is_err(), "{unsubscribed:?}");
    let subscribed = timeout(WAIT, client.subscribe("other/#", QoS::AtLeastOnce))
        .await
        .unwrap();
    assert!(subscribed.is_err(), "{subscribed:?}");
    // The client stops: what reached the server until it closed the connection.
    while let Ok(Some(packet)) = timeout(WAIT, peer.try_recv()).await {
        assert!(
            !matches!(packet, Packet::Subscribe(_) | Packet::Unsubscribe(_)),
            "a fenced client sent {packet:?}"
        );
    }
}
