//! The connection's life, through the tokio driver against an in-process fake broker:
//! protocol violations, keep alive, the connect hook, refusals and attempts, the server's
//! DISCONNECT, CONNECT timeouts, a lost session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mooring::client::{
    ClientError, ClientEvent, ConnectError, ConnectionLoss, Credential, CredentialProvider,
    DeliveryError, HookError, ServerUrl, StopReason,
};
use mooring::packet::{ConnAck, Disconnect, Packet, PubAck, Publish, QoS, ReasonCode};
use mooring::store::MemoryStore;
use tokio::time::timeout;

mod support;

use support::*;

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

/// On paused time: the timers fire at their deadlines exactly, so the test can say when.
#[tokio::test(start_paused = true)]
async fn keep_alive_pings_and_a_silent_server_is_dropped() {
    let mut broker = Broker::new();
    let b = builder(&broker, MemoryStore::default())
        .keep_alive(Duration::from_secs(1))
        .ping_timeout(Duration::from_millis(300));
    let (client, _m, mut peer) = connected(&mut broker, b).await;
    let mut events = client.events();
    let connected_at = tokio::time::Instant::now();
    assert!(matches!(peer.recv().await, Packet::PingReq));
    let first_ping = connected_at.elapsed();
    assert!(
        first_ping >= Duration::from_secs(1) && first_ping < Duration::from_millis(1_100),
        "PINGREQ after {first_ping:?} of silence, not the keep alive"
    );
    peer.send(Packet::PingResp).await;
    assert!(matches!(peer.recv().await, Packet::PingReq));
    let second_ping = tokio::time::Instant::now();
    // No answer this time.
    match next_event(&mut events, |e| {
        matches!(e, ClientEvent::ConnectionLost { .. })
    })
    .await
    {
        ClientEvent::ConnectionLost { reason, .. } => {
            assert!(
                matches!(reason, ConnectionLoss::KeepAliveTimeout),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let waited = second_ping.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(400),
        "dropped {waited:?} after the unanswered PINGREQ, not the ping timeout"
    );
    broker.next().await.accept(true).await;
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

/// Hands out `token-0`, `token-1`, ... for user `gw`; or fails, when `down`.
struct Tokens {
    issued: AtomicU32,
    down: bool,
}

#[async_trait::async_trait]
impl CredentialProvider for Tokens {
    async fn credential(&self, _server: &ServerUrl) -> Result<Credential, HookError> {
        if self.down {
            return Err("the token service is down".into());
        }
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        Ok(Credential::new("gw", format!("token-{n}")).expiring_in(Duration::from_secs(3600)))
    }
}

#[tokio::test]
async fn a_credential_provider_gives_each_attempt_a_credential_and_one_that_fails_fails_it() {
    let mut broker = Broker::new();
    let tokens = Arc::new(Tokens {
        issued: AtomicU32::new(0),
        down: false,
    });
    let b = builder(&broker, MemoryStore::default()).credential_provider(tokens.clone());
    let (_client, _m, peer) = connected(&mut broker, b).await;
    drop(peer);
    let mut peer = broker.next().await;
    let connect = peer.accept(true).await;
    assert_eq!(connect.username.as_deref(), Some("gw"));
    assert_eq!(connect.password.as_deref(), Some(&b"token-1"[..]));
    assert_eq!(tokens.issued.load(Ordering::SeqCst), 2);

    let down = Tokens {
        issued: AtomicU32::new(0),
        down: true,
    };
    let failed = builder(&broker, MemoryStore::default())
        .credential_provider(down)
        .connect()
        .await;
    assert!(
        matches!(&failed, Err(ClientError::Connect(ConnectError::Credentials(e))) if e.to_string().contains("token service")),
        "{failed:?}"
    );
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
    let b = builder(&broker, MemoryStore::default())
        .reconnect(fast_backoff().with_max_attempts(Some(3)));
    let (client, mut messages) = b.start().await.unwrap();
    let mut events = client.events();
    let delivery = client.publish("q", "x", QoS::AtLeastOnce).await;
    match next_event(&mut events, |e| matches!(e, ClientEvent::Stopped { .. })).await {
        ClientEvent::Stopped {
            reason: StopReason::AttemptsExhausted { attempts: 3, .. },
        } => {}
        other => panic!("{other:?}"),
    }
    if let Ok(delivery) = delivery {
        assert_eq!(delivery.await, Err(DeliveryError::Stopped));
    }
    assert!(messages.recv().await.is_none());
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
                discarded: 0,
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

/// With `LostSession::Discard`, what may have reached the session the server lost is not sent
/// again: its delivery fails with `SessionLost`, an event names it, and the counts say so.
#[tokio::test]
async fn with_discard_a_lost_session_fails_the_deliveries_that_may_have_reached_it() {
    let mut broker = Broker::new();
    let mut b = builder(&broker, MemoryStore::default())
        .lost_session(mooring::session::LostSession::Discard);
    let mut events = b.events();
    let (client, _m, mut peer) = connected(&mut broker, b).await;
    let delivery = client.publish("t", "sent", QoS::ExactlyOnce).await.unwrap();
    peer.publish().await;
    drop(peer);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Err(DeliveryError::SessionLost)
    );
    next_event(
        &mut events,
        |e| matches!(e, ClientEvent::MessageDiscarded { topic } if topic == "t"),
    )
    .await;
    next_event(&mut events, |e| {
        matches!(
            e,
            ClientEvent::SessionLost {
                discarded: 1,
                resent: 0,
                ..
            }
        )
    })
    .await;
    peer.silent(Duration::from_millis(100)).await;
    assert_eq!(client.stats().discarded, 1);
}

/// Clients given one `ConnectPace` take turns: their first connections, then their
/// reconnections after the broker dropped them all at once, come one interval apart.
#[tokio::test]
async fn clients_sharing_a_connect_pace_take_turns_to_connect_and_reconnect() {
    let interval = Duration::from_millis(150);
    let pace = mooring::ConnectPace::every(interval);
    let mut broker = Broker::new();
    let start = std::time::Instant::now();
    let mut clients = Vec::new();
    for i in 0..3 {
        let b = builder(&broker, MemoryStore::default())
            .client_id(format!("device-{i}"))
            .connect_pace(pace.clone());
        clients.push(b.start().await.unwrap());
    }
    let mut arrivals = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..3 {
        let mut peer = broker.next().await;
        arrivals.push(start.elapsed());
        peer.accept(false).await;
        peers.push(peer);
    }
    assert!(
        arrivals[2] >= 2 * interval,
        "three first connections within {:?}: {arrivals:?}",
        arrivals[2]
    );
    // The broker drops them all: their reconnections take turns too.
    drop(peers);
    let dropped = std::time::Instant::now();
    let mut arrivals = Vec::new();
    for _ in 0..3 {
        let mut peer = broker.next().await;
        arrivals.push(dropped.elapsed());
        peer.accept(true).await;
    }
    assert!(
        arrivals[2] >= 2 * interval,
        "three reconnections within {:?}: {arrivals:?}",
        arrivals[2]
    );
    drop(clients);
}
