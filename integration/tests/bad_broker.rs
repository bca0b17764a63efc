//! A broker that misbehaves, over real TCP: malformed packets, protocol violations and abrupt
//! closes. Each time the client must send DISCONNECT with the right reason code (where one is
//! due), report the loss, reconnect, and lose no stored message: a QoS 1 publish left
//! unacknowledged before the fault is retransmitted after it, from the durable store. A broker
//! over the client's Receive Maximum is answered, not disconnected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use integration::wire::PacketStream;
use mooring::packet::{ConnAck, Packet, PubAck, Publish, QoS, ReasonCode};
use mooring::store::{RedbStore, SessionKey, SessionStore};
use mooring::{Client, ClientEvent};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

struct Conn(PacketStream);

impl Conn {
    async fn recv(&mut self) -> Option<Packet> {
        match self.0.recv(WAIT).await {
            Ok(packet) => packet,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("the client answers in time")
            }
            Err(_) => None,
        }
    }

    async fn send(&mut self, packet: Packet) {
        self.0.send(&packet).await.unwrap();
    }

    async fn accept(listener: &TcpListener, session_present: bool) -> Self {
        let (stream, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        let mut conn = Self(PacketStream::new(stream));
        assert!(matches!(conn.recv().await, Some(Packet::Connect(_))));
        conn.send(Packet::ConnAck(Box::new(ConnAck::new(session_present))))
            .await;
        conn
    }
}

/// What the broker does wrong, and the DISCONNECT reason the client must answer with.
enum Fault {
    Bytes(&'static [u8], ReasonCode),
    Packet(Packet, ReasonCode),
    Oversized,
    AbruptClose,
}

fn publish(topic: &str, qos: QoS, packet_id: u16, payload: Vec<u8>) -> Packet {
    let mut p = Publish::new(topic, payload);
    p.qos = qos;
    p.packet_id = packet_id;
    Packet::Publish(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_gets_its_reason_code_and_no_stored_message_is_lost() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("mqtt://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("bad.redb")).unwrap();
    let connecting = tokio::spawn(
        Client::builder()
            .server(url.clone())
            .client_id("victim")
            .store(store.clone())
            .receive_maximum(2)
            .maximum_packet_size(1024)
            .reconnect(
                mooring::Backoff::default()
                    .with_initial(Duration::from_millis(10))
                    .with_maximum(Duration::from_millis(50)),
            )
            .connect(),
    );
    let mut conn = Conn::accept(&listener, false).await;
    let (client, mut messages) = connecting.await.unwrap().unwrap();
    let mut events = client.events();
    // An application that reads what comes: each message is acked once it is done with.
    tokio::spawn(async move { while messages.recv().await.is_some() {} });

    // PUBREL for an identifier the client never saw is no violation: PUBCOMP 0x92.
    conn.send(Packet::PubRel(PubAck::new(4242))).await;
    match conn.recv().await {
        Some(Packet::PubComp(c)) => {
            assert_eq!(
                (c.packet_id, c.reason_code),
                (4242, ReasonCode::PacketIdentifierNotFound)
            )
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }

    let faults = vec![
        // A PUBLISH with QoS 3.
        Fault::Bytes(&[0x36, 0x02, 0x00, 0x00], ReasonCode::MalformedPacket),
        // A Remaining Length that never ends.
        Fault::Bytes(
            &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
            ReasonCode::MalformedPacket,
        ),
        Fault::Packet(
            Packet::ConnAck(Box::new(ConnAck::new(true))),
            ReasonCode::ProtocolError,
        ),
        Fault::Packet(
            {
                let mut p = Publish::new("", "x");
                p.properties.topic_alias = Some(3);
                Packet::Publish(p)
            },
            ReasonCode::TopicAliasInvalid,
        ),
        Fault::Oversized,
        Fault::AbruptClose,
    ];
    let mut kept = 0;
    for fault in faults {
        // A message in flight when the fault hits: stored, unacknowledged.
        let delivery = client
            .publish("kept", format!("{kept}"), QoS::AtLeastOnce)
            .await
            .unwrap();
        let first = match conn.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        let expected = match fault {
            Fault::Bytes(bytes, reason) => {
                conn.0.stream.write_all(bytes).await.unwrap();
                Some(reason)
            }
            Fault::Packet(packet, reason) => {
                conn.send(packet).await;
                Some(reason)
            }
            Fault::Oversized => {
                conn.send(publish("in", QoS::AtMostOnce, 0, vec![0u8; 2000]))
                    .await;
                Some(ReasonCode::PacketTooLarge)
            }
            Fault::AbruptClose => {
                // The connection ends without DISCONNECT.
                conn.0.stream.shutdown().await.unwrap();
                None
            }
        };
        if let Some(reason) = expected {
            // Acks of the QoS 2 messages may come first; the DISCONNECT follows.
            loop {
                match conn.recv().await {
                    Some(Packet::Disconnect(d)) => {
                        assert_eq!(d.reason_code, reason);
                        break;
                    }
                    Some(Packet::PubRec(_)) => {}
                    other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
                }
            }
        }
        timeout(WAIT, async {
            while !matches!(
                events.recv().await.unwrap(),
                ClientEvent::ConnectionLost { .. }
            ) {}
        })
        .await
        .expect("the loss is reported");
        conn = Conn::accept(&listener, true).await;
        let again = match conn.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected the retransmission, got {other:?}"),
        };
        assert!(again.dup);
        assert_eq!(
            (again.packet_id, &again.payload),
            (first.packet_id, &first.payload)
        );
        conn.send(Packet::PubAck(PubAck::new(again.packet_id)))
            .await;
        assert_eq!(
            timeout(WAIT, delivery).await.unwrap(),
            Ok(ReasonCode::Success)
        );
        kept += 1;
    }
    // Over the client's Receive Maximum (2): not a reason to disconnect (mosquitto 2.0 does it
    // after reconnects); all three are answered on the same connection.
    for id in 1..=3 {
        conn.send(publish("in", QoS::ExactlyOnce, id, b"x".to_vec()))
            .await;
    }
    for id in 1..=3 {
        match conn.recv().await {
            Some(Packet::PubRec(rec)) => assert_eq!(rec.packet_id, id),
            other => panic!("expected PUBREC {id}, got {other:?}"),
        }
    }
    assert_eq!(client.stats().connections, 7, "no reconnect for it");
    client.disconnect().await.unwrap();
    let left = store.load(&SessionKey::new(url, "victim")).await.unwrap();
    assert!(
        left.outbound.is_empty() && left.queue.is_empty(),
        "{left:?}"
    );
    assert_eq!(kept, 6);
}

/// Hostile brokers, one fault per connection, over real TCP: each is refused with its reason
/// code and the client comes back; nothing it holds grows without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_brokers_are_refused_and_the_client_comes_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("mqtt://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("hostile.redb")).unwrap();
    let connecting = tokio::spawn(
        Client::builder()
            .server(url.clone())
            .client_id("victim")
            .store(store.clone())
            .manual_ack(true)
            .receive_maximum(1)
            .held_bytes_limit(1024)
            .request_problem_information(false)
            .write_timeout(Duration::from_millis(500))
            .reconnect(
                mooring::Backoff::default()
                    .with_initial(Duration::from_millis(10))
                    .with_maximum(Duration::from_millis(50)),
            )
            .connect(),
    );

    // A new store, and a broker that claims to resume a session: refused [MQTT-3.2.2-4], and
    // the client asks for a clean start at once.
    let (stream, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut first = Conn(PacketStream::new(stream));
    match first.recv().await {
        Some(Packet::Connect(c)) => {
            assert!(!c.clean_start);
            let announced = c.properties.maximum_packet_size;
            assert_eq!(
                announced,
                Some(mooring::session::DEFAULT_MAXIMUM_PACKET_SIZE)
            );
        }
        other => panic!("expected CONNECT, got {other:?}"),
    }
    first
        .send(Packet::ConnAck(Box::new(ConnAck::new(true))))
        .await;
    assert!(first.recv().await.is_none(), "the client closes");
    let (stream, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let mut conn = Conn(PacketStream::new(stream));
    match conn.recv().await {
        Some(Packet::Connect(c)) => assert!(c.clean_start, "the next attempt starts clean"),
        other => panic!("expected CONNECT, got {other:?}"),
    }
    conn.send(Packet::ConnAck(Box::new(ConnAck::new(false))))
        .await;
    let (client, mut messages) = connecting.await.unwrap().unwrap();
    let mut events = client.events();

    let lost = async |events: &mut mooring::client::Events| {
        timeout(WAIT, async {
            loop {
                if let ClientEvent::ConnectionLost { reason, .. } = events.recv().await.unwrap() {
                    return reason;
                }
            }
        })
        .await
        .expect("the loss is reported")
    };
    let disconnect_with = async |conn: &mut Conn, reason: ReasonCode| match conn.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, reason),
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    };

    // A QoS 1 PUBLISH reusing an identifier the client has not answered yet.
    conn.send(publish("in", QoS::AtLeastOnce, 5, b"a".to_vec()))
        .await;
    let held = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    conn.send(publish("in", QoS::AtLeastOnce, 5, b"b".to_vec()))
        .await;
    disconnect_with(&mut conn, ReasonCode::ProtocolError).await;
    lost(&mut events).await;
    drop(held);
    conn = Conn::accept(&listener, true).await;

    // Far over the client's Receive Maximum (1): what waits is bounded in bytes (1 KiB here),
    // then 0x93.
    for id in 1..=5 {
        conn.send(publish("in", QoS::AtLeastOnce, id, vec![b'h'; 300]))
            .await;
    }
    let first = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    disconnect_with(&mut conn, ReasonCode::ReceiveMaximumExceeded).await;
    lost(&mut events).await;
    drop(first);
    conn = Conn::accept(&listener, true).await;

    // A Reason String on a PUBACK after Request Problem Information 0.
    let delivery = client.publish("out", "x", QoS::AtLeastOnce).await.unwrap();
    let sent = match conn.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    let mut puback = PubAck::new(sent.packet_id);
    puback.properties.reason_string = Some("unasked".into());
    conn.send(Packet::PubAck(puback)).await;
    disconnect_with(&mut conn, ReasonCode::ProtocolError).await;
    lost(&mut events).await;
    conn = Conn::accept(&listener, true).await;
    match conn.recv().await {
        Some(Packet::Publish(p)) => {
            assert!(
                p.dup && p.packet_id == sent.packet_id,
                "the stored message comes again"
            );
            conn.send(Packet::PubAck(PubAck::new(p.packet_id))).await;
        }
        other => panic!("expected the retransmission, got {other:?}"),
    }
    assert_eq!(
        timeout(WAIT, delivery).await.unwrap(),
        Ok(ReasonCode::Success)
    );

    // A PUBLISH header claiming 64 MiB: over the default Maximum Packet Size, refused before
    // the body (which never comes) is buffered.
    conn.0
        .stream
        .write_all(&[0x30, 0x80, 0x80, 0x80, 0x20])
        .await
        .unwrap();
    disconnect_with(&mut conn, ReasonCode::PacketTooLarge).await;
    lost(&mut events).await;
    conn = Conn::accept(&listener, true).await;

    // A broker that stops reading: the client still reads (a message sent meanwhile arrives),
    // and the write timeout ends the connection.
    let publisher = client.clone();
    let flood = tokio::spawn(async move {
        for _ in 0..400 {
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.send(publish("in", QoS::AtMostOnce, 0, b"while stalled".to_vec()))
        .await;
    let message = timeout(WAIT, messages.recv()).await.unwrap().unwrap();
    assert_eq!(message.payload().as_ref(), b"while stalled");
    let reason = lost(&mut events).await;
    assert!(
        matches!(reason, mooring::client::ConnectionLoss::WriteStalled(_)),
        "{reason}"
    );
    drop(conn);
    flood.abort();
    let mut conn = Conn::accept(&listener, true).await;
    // Read whatever comes until the client disconnects.
    let reader = tokio::spawn(async move { while conn.recv().await.is_some() {} });
    client.disconnect().await.unwrap();
    timeout(WAIT, reader).await.unwrap().unwrap();
}
