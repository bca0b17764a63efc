//! The promises for an application written the obvious way: what happens to a message it
//! drops, refuses or unwraps, against the in-process fake broker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use mooring::client::{
    Client, ClientError, ClientEvent, ConnectAttempt, ConnectError, DeliveryError, HookError,
    QueuePolicy, Refusal, ServerUrl,
};
use mooring::packet::{Codec, ConnAck, Packet, PubAck, Publish, QoS, ReasonCode};
use mooring::store::{
    Batch, MemoryStore, QueuedPublish, SessionKey, SessionMeta, SessionStore, SetAside, StoreError,
    StoreOp,
};
use tokio::time::timeout;

mod support;

use support::*;

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

/// Publishes and awaits the delivery with `?` alone, as an application function would.
async fn publish_and_confirm(client: &Client) -> Result<ReasonCode, ClientError> {
    let delivery = client.publish("a", "1", QoS::AtLeastOnce).await?;
    Ok(delivery.await?)
}

#[tokio::test]
async fn a_refused_delivery_converts_into_a_client_error() {
    let mut broker = Broker::new();
    let (client, _messages, mut peer) = connected_default(&mut broker).await;
    let confirming = tokio::spawn(async move { publish_and_confirm(&client).await });
    let p = peer.publish().await;
    let mut ack = PubAck::new(p.packet_id);
    ack.reason_code = ReasonCode::QuotaExceeded;
    peer.send(Packet::PubAck(ack)).await;
    let result = timeout(WAIT, confirming).await.unwrap().unwrap();
    assert!(
        matches!(
            result,
            Err(ClientError::Delivery(DeliveryError::Refused(
                ReasonCode::QuotaExceeded
            )))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn messages_are_a_stream() {
    let mut broker = Broker::new();
    let (_client, messages, mut peer) = connected_default(&mut broker).await;
    for body in ["a", "b", "c"] {
        peer.send(inbound(QoS::AtMostOnce, 0, body)).await;
    }
    let bodies: Vec<String> = timeout(
        WAIT,
        messages
            .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
            .take(3)
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(bodies, ["a", "b", "c"]);
}

#[derive(Debug)]
struct VaultLocked;

impl std::fmt::Display for VaultLocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the credential vault is locked")
    }
}

impl std::error::Error for VaultLocked {}

#[tokio::test]
async fn a_failed_hook_is_the_source_of_the_connect_error() {
    let broker = Broker::new();
    let result = builder(&broker, MemoryStore::default())
        .before_connect(|_| async { Err::<ConnectAttempt, HookError>(Box::new(VaultLocked)) })
        .connect()
        .await;
    let Err(error) = result else {
        panic!("the hook failed, connect must fail");
    };
    // ClientError::Connect (transparent) -> ConnectError::Hook -> the hook's own error, kept
    // as it was, and printed once in the chain.
    assert_eq!(error.to_string(), "the before_connect hook failed");
    let cause = std::error::Error::source(&error).expect("the hook's error");
    assert_eq!(cause.to_string(), "the credential vault is locked");
    assert!(cause.source().is_none());
    let ClientError::Connect(ConnectError::Hook(kept)) = &error else {
        panic!("{error:?}");
    };
    assert!(kept.downcast_ref::<VaultLocked>().is_some());
}

#[tokio::test]
async fn mqtt_3_3_4_6_a_forwarded_message_goes_out_without_subscription_identifiers() {
    let mut broker = Broker::new();
    let (client, mut messages, mut peer) = connected_default(&mut broker).await;
    let mut received = Publish::new("in/a", "reading");
    received.qos = QoS::AtLeastOnce;
    received.packet_id = 3;
    received.properties.subscription_identifiers = vec![7];
    peer.send(Packet::Publish(received)).await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(
        message.publish().properties.subscription_identifiers,
        vec![7]
    );
    let mut forward = message.into_publish();
    assert_eq!(
        acks(&mut peer, 1).await,
        vec![("PUBACK", 3, ReasonCode::Success)]
    );
    forward.topic = "out/a".into();
    let _delivery = client.publish_with(forward).await.unwrap();
    let sent = peer.publish().await;
    assert_eq!(sent.topic, "out/a");
    assert!(
        sent.properties.subscription_identifiers.is_empty(),
        "a client never sends a Subscription Identifier: {sent:?}"
    );
}

/// A QoS 1 PUBLISH in wire format, as the engine queues it (encoded at QoS 0).
fn queued_publish(topic: &str, payload: &'static str) -> QueuedPublish {
    let mut buf = BytesMut::new();
    Codec::default()
        .encode(&Packet::Publish(Publish::new(topic, payload)), &mut buf)
        .unwrap();
    QueuedPublish {
        qos: QoS::AtLeastOnce,
        packet: buf.freeze(),
        expires_at_ms: None,
        accepted_at_ms: None,
    }
}

#[tokio::test]
async fn a_session_left_under_an_old_address_is_reported_moved_and_delivered() {
    let store = MemoryStore::default();
    // The gateway's broker used to be reached under another address.
    let old = SessionKey::new("mqtt://old-name:1883", "gw");
    let mut ops = Batch::new();
    ops.push(StoreOp::PushQueue {
        seq: 7,
        message: queued_publish("site/stranded", "waiting"),
    });
    store.commit(&old, ops).await.unwrap();
    // Another client's session is none of this client's business.
    let mut ops = Batch::new();
    ops.push(StoreOp::PushQueue {
        seq: 1,
        message: queued_publish("x", "y"),
    });
    store
        .commit(&SessionKey::new("mqtt://old-name:1883", "other"), ops)
        .await
        .unwrap();

    let mut broker = Broker::new();
    let mut b = builder(&broker, store.clone());
    let mut events = b.events();
    let (client, _m, peer) = connected(&mut broker, b).await;
    let stranded = next_event(&mut events, |e| {
        matches!(e, ClientEvent::StrandedSession { .. })
    })
    .await;
    assert!(
        matches!(
            &stranded,
            ClientEvent::StrandedSession { session, in_flight: 0, queued: 1 } if *session == old
        ),
        "{stranded:?}"
    );
    while let Some(event) = events.try_recv() {
        assert!(
            !matches!(event, ClientEvent::StrandedSession { .. }),
            "only this client's session is reported: {event:?}"
        );
    }
    client.disconnect().await.unwrap();
    drop(peer);

    // Moved to the key of the address in use, it goes out on the next start.
    let new = URL.parse::<ServerUrl>().unwrap().session_key("gw");
    mooring::store::move_session(&store, &old, &new)
        .await
        .unwrap();
    assert!(store.load(&old).await.unwrap().is_empty());
    let (_client, _m, mut peer) = connected_with(&mut broker, &store).await;
    let sent = peer.publish().await;
    assert_eq!(sent.topic, "site/stranded");
    // A move into a session with messages of its own is refused: identifiers could collide.
    let mut ops = Batch::new();
    ops.push(StoreOp::PushQueue {
        seq: 1,
        message: queued_publish("site/later", "x"),
    });
    store.commit(&old, ops).await.unwrap();
    assert!(matches!(
        mooring::store::move_session(&store, &old, &new).await,
        Err(StoreError::Occupied { .. })
    ));
}

/// One client per device on one store: a client's start reads its own sessions only, however
/// many the store holds; the pass over the others is the store's, once per hour, not each
/// client's (N clients started one after another read N² sessions otherwise).
#[tokio::test]
async fn a_client_starting_beside_others_reads_only_its_own_sessions() {
    let store = Arc::new(ControlledStore::default());
    let devices: Vec<SessionKey> = (0..50)
        .map(|i| SessionKey::new(URL, format!("device-{i}")))
        .collect();
    for key in &devices {
        let mut ops = Batch::new();
        ops.push(StoreOp::PutInbound { packet_id: 1 });
        store.commit(key, ops).await.unwrap();
    }
    let mut broker = Broker::new();
    let first = builder(&broker, MemoryStore::default()).store_arc(store.clone());
    let (_first, _m, _peer) = connected(&mut broker, first).await;
    // The first client on the store looks over every session, in the background.
    timeout(WAIT, async {
        while !devices
            .iter()
            .all(|d| store.resumed.lock().unwrap().contains(d))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first client never looked over the store");
    store.resumed.lock().unwrap().clear();

    // The second has a session stranded under an old address: its report ends the start's
    // reading.
    let old = SessionKey::new("mqtt://old-name:1883", "gw-2");
    let mut ops = Batch::new();
    ops.push(StoreOp::PushQueue {
        seq: 1,
        message: queued_publish("site/stranded", "waiting"),
    });
    store.commit(&old, ops).await.unwrap();
    let mut second = builder(&broker, MemoryStore::default())
        .client_id("gw-2")
        .store_arc(store.clone());
    let mut events = second.events();
    let (_second, _m2, _peer2) = connected(&mut broker, second).await;
    next_event(&mut events, |e| {
        matches!(e, ClientEvent::StrandedSession { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resumed = store.resumed.lock().unwrap().clone();
    assert!(
        resumed.iter().all(|key| key.client_id() == "gw-2"),
        "the second client's start read other clients' sessions: {resumed:?}"
    );
}

#[tokio::test]
async fn expired_sessions_without_messages_are_purged_at_start_and_others_kept() {
    let store = MemoryStore::default();
    let long_ago = SessionMeta {
        session_expiry_interval: 60,
        disconnected_at_ms: Some(1_000),
        ..SessionMeta::default()
    };
    let expired_empty = SessionKey::new("mqtt://gone:1883", "gw");
    let expired_with_messages = SessionKey::new("mqtt://gone:1883", "gw-2");
    let mut ops = Batch::new();
    ops.push(StoreOp::SetMeta(long_ago.clone()));
    ops.push(StoreOp::PutInbound { packet_id: 4 });
    store.commit(&expired_empty, ops).await.unwrap();
    let mut ops = Batch::new();
    ops.push(StoreOp::SetMeta(long_ago));
    ops.push(StoreOp::PushQueue {
        seq: 1,
        message: queued_publish("t", "kept"),
    });
    store.commit(&expired_with_messages, ops).await.unwrap();

    let mut broker = Broker::new();
    let (_client, _m, _peer) = connected_with(&mut broker, &store).await;
    // In the background, right after the start.
    timeout(WAIT, async {
        while !store.load(&expired_empty).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the expired session was never purged");
    assert_eq!(
        store
            .load(&expired_with_messages)
            .await
            .unwrap()
            .queue
            .len(),
        1,
        "an expired session's messages are never purged"
    );
}

#[tokio::test]
async fn a_queued_message_that_expires_is_dropped_reported_and_never_sent() {
    let mut broker = Broker::new();
    broker
        .fake
        .refuse
        .store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    let store = MemoryStore::default();
    let mut b = builder(&broker, store.clone());
    let mut events = b.events();
    let (client, _m) = b.start().await.unwrap();
    let mut short = Publish::new("short", "lived");
    short.qos = QoS::ExactlyOnce;
    short.properties.message_expiry_interval = Some(1);
    let expiring = client.publish_with(short).await.unwrap();
    let mut long = Publish::new("long", "lived");
    long.qos = QoS::AtLeastOnce;
    long.properties.message_expiry_interval = Some(3600);
    let _lasting = client.publish_with(long).await.unwrap();
    // Offline all along: the delivery resolves when the interval runs out.
    assert_eq!(
        timeout(WAIT, expiring).await.unwrap(),
        Err(DeliveryError::Expired)
    );
    let event = next_event(&mut events, |e| {
        matches!(e, ClientEvent::MessageExpired { .. })
    })
    .await;
    assert!(matches!(event, ClientEvent::MessageExpired { topic } if topic == "short"));
    assert_eq!(client.stats().expired, 1);
    assert_eq!(
        stored(&store).await.queue.len(),
        1,
        "dropped from the store"
    );

    broker
        .fake
        .refuse
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let mut peer = broker.next().await;
    peer.accept(false).await;
    let sent = peer.publish().await;
    assert_eq!(sent.topic, "long", "the expired one is never sent");
    let left = sent.properties.message_expiry_interval.unwrap();
    assert!(
        (3598..=3600).contains(&left),
        "sent with what remains: {left}"
    );
}

/// A client that cannot connect (the broker refuses), so everything queues.
async fn offline_client(
    broker: &Broker,
    store: &MemoryStore,
    configure: impl FnOnce(mooring::client::ClientBuilder) -> mooring::client::ClientBuilder,
) -> (Client, mooring::client::Events) {
    broker
        .fake
        .refuse
        .store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    let mut b = configure(builder(broker, store.clone()));
    let events = b.events();
    let (client, _m) = b.start().await.unwrap();
    (client, events)
}

#[tokio::test]
async fn a_full_queue_drops_its_oldest_messages_by_policy_with_an_event_each() {
    let broker = Broker::new();
    let store = MemoryStore::default();
    let (client, mut events) = offline_client(&broker, &store, |b| {
        b.queue_limit(3, QueuePolicy::DropOldest)
    })
    .await;
    let mut deliveries = Vec::new();
    for i in 0..5 {
        deliveries.push(
            client
                .publish("reading", format!("{i}"), QoS::AtLeastOnce)
                .await
                .unwrap(),
        );
    }
    let kept: Vec<String> = stored(&store)
        .await
        .queue
        .iter()
        .map(|(_, q)| String::from_utf8_lossy(&q.packet[q.packet.len() - 1..]).into_owned())
        .collect();
    assert_eq!(kept, ["2", "3", "4"], "the newest three are kept");
    let mut deliveries = deliveries.into_iter();
    for _ in 0..2 {
        let dropped = deliveries.next().unwrap();
        assert_eq!(
            timeout(WAIT, dropped).await.unwrap(),
            Err(DeliveryError::Dropped)
        );
        let event = next_event(&mut events, |e| {
            matches!(e, ClientEvent::MessageDropped { .. })
        })
        .await;
        assert!(matches!(event, ClientEvent::MessageDropped { topic } if topic == "reading"));
    }
    assert_eq!(client.stats().dropped_oldest, 2);
}

#[tokio::test]
async fn the_queue_is_bounded_by_bytes_too_and_try_publish_never_waits() {
    let broker = Broker::new();
    let store = MemoryStore::default();
    // Room for two 100-byte payloads (with their topics), not three; the policy is to wait.
    let (client, _events) = offline_client(&broker, &store, |b| {
        b.queue_limit(1_000, QueuePolicy::Wait)
            .queue_limit_bytes(250)
    })
    .await;
    let payload = "x".repeat(100);
    let mut first = Publish::new("t", payload.clone());
    first.qos = QoS::AtLeastOnce;
    let _one = client.publish_with(first.clone()).await.unwrap();
    let _two = client.publish_with(first.clone()).await.unwrap();
    assert!(client.stats().queued_bytes > 200);
    // The third would wait under the policy; try_publish says "full" at once instead.
    assert!(matches!(
        timeout(WAIT, client.try_publish(first.clone()))
            .await
            .unwrap(),
        Err(ClientError::QueueFull(_))
    ));
    let waiting = tokio::spawn({
        let client = client.clone();
        let first = first.clone();
        async move { client.publish_with(first).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "publish waits for room under QueuePolicy::Wait"
    );
    assert_eq!(stored(&store).await.queue.len(), 2);
    // A message that could never fit is refused whatever the policy.
    let mut huge = Publish::new("t", "y".repeat(300));
    huge.qos = QoS::AtLeastOnce;
    assert!(matches!(
        client.publish_with(huge).await,
        Err(ClientError::QueueFull(_))
    ));
    waiting.abort();
}

#[tokio::test]
async fn a_store_set_aside_is_reported_when_the_client_starts() {
    let mut broker = Broker::new();
    let set_aside = SetAside {
        path: "gateway.redb".into(),
        moved_to: "gateway.redb.damaged-1764000000000".into(),
        cause: "Not a redb database: magic number mismatch".into(),
    };
    let mut b = builder(&broker, MemoryStore::default()).store_set_aside(set_aside);
    let mut events = b.events();
    let (_client, _m, _peer) = connected(&mut broker, b).await;
    let event = next_event(&mut events, |e| {
        matches!(e, ClientEvent::StoreSetAside { .. })
    })
    .await;
    assert!(
        matches!(&event, ClientEvent::StoreSetAside { moved_to, cause, .. }
            if moved_to.ends_with("gateway.redb.damaged-1764000000000") && cause.contains("magic")),
        "{event:?}"
    );
}

/// A store that lists its sessions only when told: as a database of many gateways' sessions
/// can take long to walk.
struct SlowToList {
    inner: MemoryStore,
    listed: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl SessionStore for SlowToList {
    async fn resume(
        &self,
        key: &SessionKey,
        head: mooring::store::QueueWindow,
    ) -> Result<mooring::store::StoredSession, StoreError> {
        self.inner.resume(key, head).await
    }
    async fn read_queue(
        &self,
        key: &SessionKey,
        from: u64,
        window: mooring::store::QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
        self.inner.read_queue(key, from, window).await
    }
    async fn commit(&self, key: &SessionKey, batch: Batch) -> Result<(), StoreError> {
        self.inner.commit(key, batch).await
    }
    async fn clear(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.inner.clear(key).await
    }
    async fn sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
        self.listed.notified().await;
        self.inner.sessions().await
    }
    async fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError> {
        self.inner.purge_expired(now_ms).await
    }
}

/// Looking after the store's other sessions never holds up the first CONNECT: a standby that
/// takes over must reach the broker at once, however long the pass over the store takes.
#[tokio::test]
async fn looking_after_other_sessions_does_not_hold_up_the_first_connect() {
    let mut broker = Broker::new();
    let listed = Arc::new(tokio::sync::Notify::new());
    let store = SlowToList {
        inner: MemoryStore::default(),
        listed: listed.clone(),
    };
    let b = builder(&broker, MemoryStore::default()).store(store);
    let (client, _messages, _peer) = timeout(WAIT, connected(&mut broker, b))
        .await
        .expect("the first CONNECT waited for the pass over the store");
    listed.notify_one();
    client.disconnect().await.unwrap();
}
