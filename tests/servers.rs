//! Which server the client dials: the configured ones in order, each with a session of its
//! own (or one for a named cluster), Server References (0x9C Use Another Server, 0x9D Server
//! Moved) followed when asked, with each server's state kept apart (GUARANTEES S1), and the
//! server that worked last preferred when asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use mooring::QoS;
use mooring::client::{Client, ClientBuilder};
use mooring::packet::{ConnAck, Disconnect, Packet, ReasonCode};
use mooring::store::{MemoryStore, SessionKey, SessionStore, StoredSession};
use support::{Broker, fast_backoff};

fn on(broker: &Broker, store: &MemoryStore, servers: &[&str]) -> ClientBuilder {
    let mut b = Client::builder()
        .client_id("gw")
        .store(store.clone())
        .connector(broker.connector())
        .reconnect(fast_backoff());
    for server in servers {
        b = b.server(*server);
    }
    b
}

async fn stored(store: &MemoryStore, url: &str) -> StoredSession {
    store.load(&SessionKey::new(url, "gw")).await.unwrap()
}

fn referring(reason: ReasonCode, reference: &str) -> Packet {
    let mut disconnect = Disconnect::new(reason);
    disconnect.properties.server_reference = Some(reference.into());
    Packet::Disconnect(disconnect)
}

#[tokio::test]
async fn use_another_server_is_followed_and_what_was_in_flight_stays_with_the_first() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = on(&broker, &store, &["mqtt://a:1883"]).follow_server_references(true);
    let connecting = tokio::spawn(b.connect());
    let (host, mut a) = broker.next_from().await;
    assert_eq!(host, "a");
    a.accept(false).await;
    let (client, _m) = connecting.await.unwrap().unwrap();
    drop(
        client
            .publish("t", "first", QoS::AtLeastOnce)
            .await
            .unwrap(),
    );
    a.publish().await;

    a.send(referring(ReasonCode::UseAnotherServer, "c:1884"))
        .await;
    let (host, mut c) = broker.next_from().await;
    assert_eq!(host, "c", "the referenced server is dialled next");
    c.accept(false).await;
    // a's flow stays with a: c never sees it, and its own session is separate.
    c.silent(Duration::from_millis(200)).await;
    assert_eq!(stored(&store, "mqtt://a:1883").await.queue.len(), 1);
    drop(
        client
            .publish("t", "second", QoS::AtLeastOnce)
            .await
            .unwrap(),
    );
    let second = c.publish().await;
    assert_eq!(&second.payload[..], b"second");
    assert_eq!(stored(&store, "mqtt://c:1884").await.queue.len(), 1);

    // 0x9C is for this connection only: once c is lost, the round starts at a again, whose
    // flow is sent again there.
    drop(c);
    let (host, mut a) = broker.next_from().await;
    assert_eq!(host, "a");
    a.accept(true).await;
    let again = a.publish().await;
    assert_eq!((&again.payload[..], again.dup), (&b"first"[..], true));
}

#[tokio::test]
async fn server_moved_becomes_the_server_every_round_starts_from() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = on(&broker, &store, &["mqtt://a:1883"]).follow_server_references(true);
    let connecting = tokio::spawn(b.connect());
    let (_, mut a) = broker.next_from().await;
    a.accept(false).await;
    let (_client, _m) = connecting.await.unwrap().unwrap();
    a.send(referring(ReasonCode::ServerMoved, "mqtt://m:1883"))
        .await;
    let (host, m) = broker.next_from().await;
    assert_eq!(host, "m");
    drop(m);
    // The connection to m fails before CONNACK: the round goes on to a...
    let (host, a) = broker.next_from().await;
    assert_eq!(host, "a");
    drop(a);
    // ...and the next round starts at m again.
    let (host, mut m) = broker.next_from().await;
    assert_eq!(host, "m");
    m.accept(false).await;
    drop(m);
    let (host, _m) = broker.next_from().await;
    assert_eq!(host, "m", "after a lost connection, m comes first");
}

#[tokio::test]
async fn a_refusal_that_names_another_server_is_followed_on_the_first_connect() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = on(&broker, &store, &["mqtt://a:1883"]).follow_server_references(true);
    let connecting = tokio::spawn(b.connect());
    let (_, mut a) = broker.next_from().await;
    a.connect().await;
    let mut refusal = ConnAck::new(false);
    refusal.reason_code = ReasonCode::UseAnotherServer;
    refusal.properties.server_reference = Some("b".into());
    a.send(Packet::ConnAck(Box::new(refusal))).await;
    let (host, mut b) = broker.next_from().await;
    assert_eq!(host, "b");
    b.accept(false).await;
    assert!(
        connecting.await.unwrap().is_ok(),
        "connect() follows instead of failing"
    );
}

#[tokio::test]
async fn references_are_not_followed_unless_asked() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let connecting = tokio::spawn(on(&broker, &store, &["mqtt://a:1883"]).connect());
    let (_, mut a) = broker.next_from().await;
    a.accept(false).await;
    let (_client, _m) = connecting.await.unwrap().unwrap();
    a.send(referring(ReasonCode::ServerMoved, "c:1883")).await;
    let (host, _a) = broker.next_from().await;
    assert_eq!(host, "a");
}

#[tokio::test]
async fn servers_that_send_the_client_to_each_other_stop_being_followed() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = on(&broker, &store, &["mqtt://a:1883"]).follow_server_references(true);
    let _started = b.start().await.unwrap();
    let mut hosts = Vec::new();
    for _ in 0..11 {
        let (host, mut peer) = broker.next_from().await;
        peer.connect().await;
        let mut refusal = ConnAck::new(false);
        refusal.reason_code = ReasonCode::UseAnotherServer;
        refusal.properties.server_reference = Some(if host == "b" { "c" } else { "b" }.into());
        peer.send(Packet::ConnAck(Box::new(refusal))).await;
        hosts.push(host);
    }
    // Eight references in a row are followed (b and c send the client to each other); the
    // ninth is not, and the list's rotation (a, b, c) goes on from c to a.
    assert_eq!(
        hosts,
        ["a", "b", "c", "b", "c", "b", "c", "b", "c", "a", "b"]
    );
}

#[tokio::test]
async fn the_server_that_worked_last_comes_first_when_asked() {
    for prefer_last in [false, true] {
        let mut broker = Broker::new();
        let store = MemoryStore::default();
        *broker.fake.refuse_host.lock().unwrap() = Some("a".into());
        let b = on(&broker, &store, &["mqtt://a:1883", "mqtt://b:1883"])
            .prefer_last_server(prefer_last);
        let connecting = tokio::spawn(b.connect());
        let (host, mut b) = broker.next_from().await;
        assert_eq!(host, "b");
        b.accept(false).await;
        let (_client, _m) = connecting.await.unwrap().unwrap();
        *broker.fake.refuse_host.lock().unwrap() = None;
        drop(b);
        let (host, _peer) = broker.next_from().await;
        let expected = if prefer_last { "b" } else { "a" };
        assert_eq!(host, expected, "prefer_last_server({prefer_last})");
    }
}

#[tokio::test]
async fn at_most_eight_servers_are_added_by_references() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = on(&broker, &store, &["mqtt://a:1883"]).follow_server_references(true);
    let connecting = tokio::spawn(b.connect());
    let (host, mut peer) = broker.next_from().await;
    assert_eq!(host, "a");
    peer.accept(false).await;
    let (_client, _m) = connecting.await.unwrap().unwrap();
    // Each connection comes up, so the references are not "in a row"; each names a new server.
    for i in 1..=9 {
        peer.send(referring(ReasonCode::ServerMoved, &format!("h{i}:1883")))
            .await;
        let (host, mut next) = broker.next_from().await;
        let expected = if i <= 8 {
            format!("h{i}")
        } else {
            "h8".to_owned()
        };
        assert_eq!(host, expected, "reference {i}");
        next.accept(false).await;
        peer = next;
    }
}

#[tokio::test]
async fn servers_are_tried_in_order_and_sessions_are_kept_per_server() {
    let mut broker = Broker::new();
    *broker.fake.refuse_host.lock().unwrap() = Some("a".into());
    let store = MemoryStore::default();
    let connecting =
        tokio::spawn(on(&broker, &store, &["mqtt://a:1883", "mqtt://b:1883"]).connect());
    let (host, mut peer) = broker.next_from().await;
    assert_eq!(host, "b");
    peer.accept(false).await;
    let (client, _m) = connecting.await.unwrap().unwrap();
    drop(client.publish("t", "x", QoS::AtLeastOnce).await.unwrap());
    peer.publish().await;
    assert_eq!(stored(&store, "mqtt://b:1883").await.queue.len(), 1);
    assert!(stored(&store, "mqtt://a:1883").await.queue.is_empty());

    // Lost: the preferred server comes first again.
    *broker.fake.refuse_host.lock().unwrap() = None;
    drop(peer);
    let (host, mut peer) = broker.next_from().await;
    assert_eq!(host, "a");
    peer.accept(false).await;
    // b's flow stays with b: nothing is retransmitted to a.
    peer.silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_cluster_scope_shares_one_session() {
    let mut broker = Broker::new();
    let store = MemoryStore::default();
    let b = on(&broker, &store, &["mqtt://a:1883", "mqtt://b:1883"]).cluster_scope("plant-cluster");
    let connecting = tokio::spawn(b.connect());
    let (_, mut peer) = broker.next_from().await;
    peer.accept(false).await;
    let (client, _m) = connecting.await.unwrap().unwrap();
    drop(client.publish("t", "x", QoS::AtLeastOnce).await.unwrap());
    let first = peer.publish().await;
    *broker.fake.refuse_host.lock().unwrap() = Some("a".into());
    drop(peer);
    let (host, mut peer) = broker.next_from().await;
    assert_eq!(host, "b");
    peer.accept(true).await;
    let again = peer.publish().await;
    assert_eq!((again.packet_id, again.dup), (first.packet_id, true));
    let key = SessionKey::cluster("plant-cluster", "gw");
    assert_eq!(store.load(&key).await.unwrap().queue.len(), 1);
}
