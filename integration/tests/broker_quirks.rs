//! Two things mosquitto 2.0 does that a client's guarantees depend on, pinned down with a raw
//! client (our codec over TCP, so the test controls every ack).
//!
//! 1. The send quota after a reconnect. mosquitto resets its quota for the client to the full
//!    Receive Maximum without counting a PUBREL it retransmits, so it sends more than the
//!    client's Receive Maximum. The first test has Mooring face that: it holds the excess until
//!    the application acks (never more than Receive Maximum unacked with the application) and
//!    does not disconnect.
//!
//! 2. Released QoS 2 messages (PUBREL sent, PUBCOMP not received) across a restart with
//!    persistence. Exactly-once needs the broker to send PUBREL again for them, never the
//!    PUBLISH: a client that completed the message has forgotten its packet identifier and must
//!    take a new PUBLISH as a new message. mosquitto 2.0 restores at most
//!    `max_inflight_messages` outgoing messages per client as in flight and queues the rest, and
//!    sends a queued message as PUBLISH whatever state it was in. The second test asserts that
//!    within that limit every released message gets PUBREL; the third shows what happens
//!    beyond it (each released message must still come back in one form or the other).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::wire::PacketStream;
use mooring::Client;
use mooring::packet::{Connect, Packet, PubAck, QoS, Subscribe, SubscribeProperties, Subscription};
use mooring::store::{Batch, MemoryStore, SessionMeta, SessionStore, StoreOp};
use tokio::net::TcpStream;
use tokio::time::Instant;

const BROKER_WINDOW: u16 = 2;
const MESSAGES: usize = 6;

/// The probe: a client whose every packet the test writes by hand.
struct RawClient(PacketStream);

impl RawClient {
    async fn connect(port: u16, clean_start: bool, receive_maximum: u16) -> (Self, bool) {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut client = Self(PacketStream::new(stream));
        let mut connect = Connect::new("restore-probe");
        connect.clean_start = clean_start;
        connect.keep_alive = 60;
        connect.properties.session_expiry_interval = Some(3600);
        connect.properties.receive_maximum = Some(receive_maximum);
        client.send(Packet::Connect(Box::new(connect))).await;
        match client.recv(Duration::from_secs(5)).await {
            Some(Packet::ConnAck(ack)) => {
                assert!(!ack.reason_code.is_error(), "{ack:?}");
                (client, ack.session_present)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: Packet) {
        self.0.send(&packet).await.unwrap();
    }

    /// The next packet, or `None` when nothing comes within `wait` or the broker closed.
    async fn recv(&mut self, wait: Duration) -> Option<Packet> {
        match self.0.recv(wait).await {
            Ok(packet) => packet,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => None,
            Err(e) => panic!("from the broker: {e}"),
        }
    }
}

/// What the broker sent for a released identifier after the restart.
#[derive(Debug, Default)]
struct Resumed {
    pubrel: BTreeSet<u16>,
    publish: BTreeMap<u16, String>,
}

/// A broker with persistence and `max_inflight_messages` [`BROKER_WINDOW`], a probe subscribed
/// to `probe/#` at QoS 2 with the given Receive Maximum, and `messages` QoS 2 messages
/// published to it (accepted by the broker, not yet delivered).
async fn setup(receive_maximum: u16, messages: usize) -> (Mosquitto, RawClient) {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        persistence: true,
        max_inflight_messages: Some(BROKER_WINDOW),
        ..Default::default()
    })
    .unwrap();
    // Clean Start 0 even for the first connection: mosquitto 2.0 writes only those sessions
    // to its persistence file, whatever their Session Expiry Interval.
    let (mut probe, _) = RawClient::connect(broker.port(), false, receive_maximum).await;
    probe
        .send(Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            subscriptions: vec![Subscription::new("probe/#", QoS::ExactlyOnce)],
        }))
        .await;
    assert!(matches!(
        probe.recv(Duration::from_secs(5)).await,
        Some(Packet::SubAck(_))
    ));
    let (publisher, _inbox) = Client::builder()
        .server(broker.url())
        .client_id("probe-publisher")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    for n in 0..messages {
        publisher
            .publish(format!("probe/{n}"), n.to_string(), QoS::ExactlyOnce)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    publisher.disconnect().await.unwrap();
    (broker, probe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnect_mosquitto_goes_over_receive_maximum_and_mooring_holds_the_excess() {
    let maximum = BROKER_WINDOW;
    let (mut broker, mut probe) = setup(maximum, MESSAGES).await;
    // The raw probe: PUBREC the first message only, keep its PUBREL unanswered.
    let mut first = Vec::new();
    let mut released = false;
    while let Some(packet) = probe.recv(Duration::from_millis(500)).await {
        match packet {
            Packet::Publish(p) => {
                if first.is_empty() {
                    probe.send(Packet::PubRec(PubAck::new(p.packet_id))).await;
                }
                first.push(p.packet_id);
            }
            Packet::PubRel(_) => released = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(first.len(), usize::from(maximum), "{first:?}");
    assert!(released);
    drop(probe);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Mooring resumes the session with the same Receive Maximum and acks slowly. mosquitto
    // resends the PUBREL, does not count it, and sends Receive Maximum new messages on top.
    // Its store holds what the probe's state was (the session, the PUBREC marker): a client
    // without state would refuse the session [MQTT-3.2.2-4].
    let store = MemoryStore::default();
    let mut state = Batch::new();
    state.push(StoreOp::SetMeta(SessionMeta {
        session_expiry_interval: 3600,
        ..SessionMeta::default()
    }));
    state.push(StoreOp::PutInbound {
        packet_id: first[0],
    });
    store
        .commit(
            &broker
                .url()
                .parse::<mooring::client::ServerUrl>()
                .unwrap()
                .session_key("restore-probe"),
            state,
        )
        .await
        .unwrap();
    let (client, mut messages) = Client::builder()
        .server(broker.url())
        .client_id("restore-probe")
        .store(store)
        .manual_ack(true)
        .receive_maximum(maximum)
        .connect()
        .await
        .unwrap();
    let mut events = client.events();
    let mut got = Vec::new();
    let mut most_unacked = 0;
    while got.len() < MESSAGES - 1 {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.recv())
            .await
            .expect("every message comes")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = client.stats();
        most_unacked = most_unacked.max(stats.inbound_unacked);
        got.push(String::from_utf8_lossy(message.payload()).into_owned());
        message.ack().await.unwrap();
    }
    let stats = client.stats();
    println!(
        "mosquitto, client Receive Maximum {maximum}: {} messages went over it and waited in \
         the client; at most {most_unacked} unacked with the application",
        stats.inbound_over_receive_maximum
    );
    assert!(most_unacked <= u64::from(maximum));
    // What GUARANTEES.md says mosquitto 2.0 does: it went over the client's Receive Maximum.
    assert!(
        stats.inbound_over_receive_maximum > 0,
        "mosquitto kept to the Receive Maximum this time: update GUARANTEES.md"
    );
    assert_eq!(stats.connections, 1, "never disconnected for it");
    while let Some(event) = events.try_recv() {
        assert!(
            !matches!(event, mooring::ClientEvent::ConnectionLost { .. }),
            "{event:?}"
        );
    }
    // The first was completed by the probe (PUBREC, then PUBCOMP from Mooring), the rest came.
    let expected: Vec<String> = (1..MESSAGES).map(|n| n.to_string()).collect();
    got.sort();
    assert_eq!(got, expected);
    client.disconnect().await.unwrap();
    broker.stop();
}

/// Releases messages without completing them, restarts the broker and returns the released
/// identifiers (with their payloads) and what came back for them.
async fn release_restart_resume(receive_maximum: u16) -> (BTreeMap<u16, String>, Resumed) {
    let (mut broker, mut probe) = setup(receive_maximum, MESSAGES).await;

    // PUBREC for every PUBLISH; PUBREL recorded, never completed. The broker sends as many as
    // the probe's Receive Maximum allows.
    let mut payloads: BTreeMap<u16, String> = BTreeMap::new();
    let mut released: BTreeMap<u16, String> = BTreeMap::new();
    let expected = MESSAGES.min(usize::from(receive_maximum));
    let deadline = Instant::now() + Duration::from_secs(10);
    while released.len() < expected && Instant::now() < deadline {
        match probe.recv(Duration::from_secs(5)).await {
            Some(Packet::Publish(p)) => {
                payloads.insert(p.packet_id, String::from_utf8_lossy(&p.payload).into());
                probe.send(Packet::PubRec(PubAck::new(p.packet_id))).await;
            }
            Some(Packet::PubRel(rel)) => {
                let payload = payloads.get(&rel.packet_id).cloned().unwrap_or_default();
                released.insert(rel.packet_id, payload);
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    assert_eq!(released.len(), expected, "the broker released {released:?}");
    drop(probe);

    tokio::task::block_in_place(|| {
        broker.stop();
        broker.restart().unwrap();
    });

    let (mut probe, session_present) =
        RawClient::connect(broker.port(), false, receive_maximum).await;
    assert!(
        session_present,
        "the broker kept the session: {}",
        broker.log()
    );
    let mut resumed = Resumed::default();
    // Everything the broker resends comes at once; a quiet second means it is done.
    while let Some(packet) = probe.recv(Duration::from_secs(1)).await {
        match packet {
            Packet::PubRel(rel) => {
                resumed.pubrel.insert(rel.packet_id);
            }
            Packet::Publish(p) => {
                resumed
                    .publish
                    .insert(p.packet_id, String::from_utf8_lossy(&p.payload).into());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    broker.stop();
    (released, resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_its_inflight_limit_mosquitto_resends_pubrel_for_every_released_message() {
    let (released, resumed) = release_restart_resume(BROKER_WINDOW).await;
    let ids: BTreeSet<u16> = released.keys().copied().collect();
    assert_eq!(resumed.pubrel, ids, "PUBREL again for every released id");
    let again: Vec<_> = resumed
        .publish
        .iter()
        .filter(|(id, payload)| released.get(id) == Some(payload))
        .collect();
    assert!(
        again.is_empty(),
        "a released message came back as PUBLISH: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_inflight_limit_each_released_message_comes_back_somehow() {
    let (released, resumed) = release_restart_resume(MESSAGES as u16).await;
    let mut as_publish = Vec::new();
    for (id, payload) in &released {
        let republished = resumed.publish.get(id) == Some(payload);
        assert!(
            resumed.pubrel.contains(id) || republished,
            "released message {id} ({payload}) neither released nor resent: {resumed:?}"
        );
        if republished {
            as_publish.push(*id);
        }
    }
    println!(
        "mosquitto, max_inflight_messages {BROKER_WINDOW}, client Receive Maximum {MESSAGES}: \
         {} released messages; after a restart PUBREL for {:?}, PUBLISH again for {:?}{}",
        released.len(),
        resumed.pubrel,
        as_publish,
        if as_publish.is_empty() {
            ""
        } else {
            " (a client that completed them takes these as new messages)"
        }
    );
    // The figures GUARANTEES.md gives: six released, PUBREL for the broker's window (two),
    // PUBLISH again for the other four.
    assert_eq!(released.len(), MESSAGES);
    assert_eq!(
        resumed.pubrel.len(),
        usize::from(BROKER_WINDOW),
        "{resumed:?}"
    );
    assert_eq!(
        as_publish.len(),
        MESSAGES - usize::from(BROKER_WINDOW),
        "{resumed:?}"
    );
}
