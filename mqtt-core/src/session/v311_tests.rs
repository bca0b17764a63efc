//! The engine speaking MQTT 3.1.1: Clean Session for Clean Start and Session Expiry, the
//! client's own in-flight window, acknowledgements without reason codes, no DISCONNECT from
//! either side but a normal end, and every packet it sends expressible in 3.1.1.

use std::time::Instant;

use super::*;
use crate::packet::*;

pub(super) const NOW_MS: u64 = 1_764_000_000_000;

pub(super) fn options(expiry: u32) -> SessionOptions {
    let mut options = SessionOptions::new("c");
    options.protocol = ProtocolVersion::V311;
    options.properties.session_expiry_interval = Some(expiry);
    options
}

pub(super) fn session(options: SessionOptions) -> Session {
    Session::new(options, StoredSession::default(), NOW_MS).unwrap()
}

/// Everything the session sends, each packet encoded as 3.1.1 (which refuses what 3.1.1
/// cannot express), and the store operations.
pub(super) fn flush(session: &mut Session) -> (Vec<Packet>, Vec<StoreOp>) {
    let (mut sent, mut ops) = (Vec::new(), Vec::new());
    while let Some(mut output) = session.poll_output(Instant::now()) {
        let mut all = std::mem::take(&mut output.early);
        all.append(&mut output.send);
        output.send = all;
        session.durable(output.generation);
        for packet in &output.send {
            let mut buf = bytes::BytesMut::new();
            session
                .codec()
                .encode(packet, &mut buf)
                .unwrap_or_else(|e| panic!("not expressible in 3.1.1: {e}: {packet:?}"));
        }
        ops.extend(output.commit.ops().iter().cloned());
        sent.extend(output.send);
    }
    (sent, ops)
}

pub(super) fn connected(options: SessionOptions, session_present: bool) -> Session {
    let mut s = session(options);
    s.start_connection(s.connect_credentials()).unwrap();
    flush(&mut s);
    s.handle_incoming(
        Packet::ConnAck(Box::new(ConnAck::new(session_present))),
        Instant::now(),
    )
    .unwrap();
    s
}

#[test]
fn clean_session_stands_for_clean_start_and_session_expiry() {
    // A session that outlives its connections: Clean Session 0, no properties.
    let mut persistent = session(options(3600));
    let connect = persistent.connect_packet().unwrap();
    assert!(!connect.clean_start);
    assert_eq!(connect.properties, ConnectProperties::default());
    // Asked to start clean: 1 on the first connection only.
    let mut fresh = options(3600);
    fresh.clean_start = true;
    let mut fresh = connected(fresh, false);
    fresh.connection_lost(NOW_MS);
    assert!(!fresh.connect_packet().unwrap().clean_start);
    // A session that ends with its connection: always Clean Session 1.
    let mut transient = connected(options(0), false);
    transient.connection_lost(NOW_MS);
    assert!(transient.connect_packet().unwrap().clean_start);
}

#[test]
fn a_persistent_3_1_1_session_never_expires_locally_and_records_its_protocol() {
    let mut s = connected(options(3600), false);
    let (_, ops) = flush(&mut s);
    let meta = ops.iter().find_map(|op| match op {
        StoreOp::SetMeta(meta) => Some(meta.clone()),
        _ => None,
    });
    let meta = meta.expect("the session's metadata is stored");
    assert_eq!(meta.protocol, ProtocolVersion::V311);
    assert_eq!(
        meta.session_expiry_interval,
        u32::MAX,
        "3.1.1 has no expiry"
    );

    // The same store opened for v5 is refused, never misread.
    let stored = StoredSession {
        meta: Some(meta),
        ..StoredSession::default()
    };
    let mut v5 = options(3600);
    v5.protocol = ProtocolVersion::V5;
    assert!(matches!(
        Session::new(v5, stored, NOW_MS),
        Err(SessionError::ProtocolMismatch {
            stored: ProtocolVersion::V311,
            requested: ProtocolVersion::V5
        })
    ));
}

#[test]
fn metadata_stored_before_the_first_connection_names_3_1_1_and_no_expiry() {
    // Offline from the start: the publish's commit also stamps the clock, storing the
    // metadata before any CONNACK filled it in.
    let mut s = session(options(3600));
    s.tick(NOW_MS);
    let mut p = Publish::new("t", "offline");
    p.qos = QoS::ExactlyOnce;
    s.publish(p).unwrap();
    let (_, ops) = flush(&mut s);
    let meta = ops
        .iter()
        .find_map(|op| match op {
            StoreOp::SetMeta(meta) => Some(meta.clone()),
            _ => None,
        })
        .expect("the first commit stores the metadata");
    assert_eq!(meta.protocol, ProtocolVersion::V311);
    assert_eq!(meta.session_expiry_interval, u32::MAX);
    let stored = StoredSession {
        meta: Some(meta),
        ..StoredSession::default()
    };
    Session::new(options(3600), stored, NOW_MS + 7_200_000)
        .expect("a 3.1.1 store reopens as 3.1.1");
}

#[test]
fn the_in_flight_window_is_the_clients_own() {
    let count_sent = |options: SessionOptions| {
        let mut s = connected(options, false);
        for n in 0..30 {
            let mut p = Publish::new("t", format!("{n}"));
            p.qos = QoS::AtLeastOnce;
            s.publish(p).unwrap();
        }
        let (sent, _) = flush(&mut s);
        sent.iter()
            .filter(|p| matches!(p, Packet::Publish(_)))
            .count()
    };
    assert_eq!(
        count_sent(options(3600)),
        usize::from(DEFAULT_V311_IN_FLIGHT)
    );
    let mut three = options(3600);
    three.in_flight_maximum = Some(3);
    assert_eq!(count_sent(three), 3);
}

#[test]
fn a_qos2_exchange_both_ways_sends_only_3_1_1_packets() {
    let mut s = connected(options(3600), false);
    let mut p = Publish::new("out", "x");
    p.qos = QoS::ExactlyOnce;
    s.publish(p).unwrap();
    let (sent, _) = flush(&mut s);
    assert!(matches!(&sent[..], [Packet::Publish(p)] if p.qos == QoS::ExactlyOnce));
    s.handle_incoming(Packet::PubRec(PubAck::new(1)), Instant::now())
        .unwrap();
    s.handle_incoming(Packet::PubComp(PubAck::new(1)), Instant::now())
        .unwrap();
    let mut inbound = Publish::new("in", "y");
    inbound.qos = QoS::ExactlyOnce;
    inbound.packet_id = 9;
    s.handle_incoming(Packet::Publish(inbound), Instant::now())
        .unwrap();
    s.handle_incoming(Packet::PubRel(PubAck::new(9)), Instant::now())
        .unwrap();
    let (sent, _) = flush(&mut s);
    let kinds: Vec<PacketType> = sent.iter().map(Packet::packet_type).collect();
    assert_eq!(
        kinds,
        vec![PacketType::PubRel, PacketType::PubRec, PacketType::PubComp]
    );
}

/// Found by the 3.1.1 crash proof: PUBCOMP 0x92 for an unknown PUBREL does not exist in 3.1.1,
/// so the driver could not send it, and the broker's window filled with PUBRELs forever.
#[test]
fn unknown_identifiers_are_answered_without_a_reason_code() {
    let mut s = connected(options(3600), false);
    s.handle_incoming(Packet::PubRel(PubAck::new(64)), Instant::now())
        .unwrap();
    s.handle_incoming(Packet::PubRec(PubAck::new(65)), Instant::now())
        .unwrap();
    let (sent, _) = flush(&mut s);
    assert_eq!(
        sent,
        vec![
            Packet::PubComp(PubAck::new(64)),
            Packet::PubRel(PubAck::new(65))
        ]
    );
}

#[test]
fn what_3_1_1_cannot_say_is_refused_at_the_call() {
    let mut s = connected(options(3600), false);
    let mut p = Publish::new("t", "x");
    p.properties.message_expiry_interval = Some(5);
    assert!(matches!(s.publish(p), Err(PublishError::Invalid(_))));
    let mut no_local = Subscription::new("a/#", QoS::AtLeastOnce);
    no_local.options.no_local = true;
    assert!(matches!(
        s.subscribe(vec![no_local], SubscribeProperties::default()),
        Err(RequestError::Invalid(_))
    ));
    assert!(matches!(
        s.disconnect(ReasonCode::DisconnectWithWillMessage, None),
        Err(RequestError::NeedsV5(_))
    ));
    assert!(matches!(s.reauthenticate(), Err(RequestError::NeedsV5(_))));
    let mut inbound = Publish::new("in", "y");
    inbound.qos = QoS::AtLeastOnce;
    inbound.packet_id = 3;
    s.handle_incoming(Packet::Publish(inbound), Instant::now())
        .unwrap();
    let tag = std::iter::from_fn(|| s.poll_event())
        .find_map(|e| match e {
            Event::Message { tag, .. } => Some(tag),
            _ => None,
        })
        .unwrap();
    assert!(matches!(
        s.reject(tag, ReasonCode::UnspecifiedError),
        Err(AckError::RefusalNeedsV5)
    ));
    s.disconnect(ReasonCode::Success, None).unwrap();
    let (sent, _) = flush(&mut s);
    assert_eq!(
        sent.last(),
        Some(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
    );
}

#[test]
fn an_unsuback_without_reason_codes_removes_every_filter() {
    let mut s = connected(options(3600), false);
    s.subscribe(
        vec![Subscription::new("a/#", QoS::AtLeastOnce)],
        SubscribeProperties::default(),
    )
    .unwrap();
    let (sent, _) = flush(&mut s);
    let [Packet::Subscribe(subscribe)] = sent.as_slice() else {
        panic!("one SUBSCRIBE, got {sent:?}");
    };
    s.handle_incoming(
        Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::GrantedQos1],
        }),
        Instant::now(),
    )
    .unwrap();
    s.unsubscribe(vec!["a/#".into()], UnsubscribeProperties::default())
        .unwrap();
    let (sent, _) = flush(&mut s);
    let [Packet::Unsubscribe(unsubscribe)] = sent.as_slice() else {
        panic!("one UNSUBSCRIBE, got {sent:?}");
    };
    s.handle_incoming(
        Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        }),
        Instant::now(),
    )
    .unwrap();
    let (_, ops) = flush(&mut s);
    assert!(ops.contains(&StoreOp::RemoveSubscription {
        filter: "a/#".into()
    }));
    let codes = std::iter::from_fn(|| s.poll_event()).find_map(|e| match e {
        Event::Unsubscribed { reason_codes, .. } => Some(reason_codes),
        _ => None,
    });
    assert_eq!(codes, Some(vec![ReasonCode::Success]));
}

#[test]
fn a_violation_closes_without_disconnect_and_a_server_disconnect_is_one() {
    let mut s = connected(options(3600), false);
    s.close_with(ReasonCode::ProtocolError);
    assert!(flush(&mut s).0.is_empty(), "3.1.1 has no DISCONNECT reason");
    let refused = s
        .handle_incoming(
            Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
            Instant::now(),
        )
        .unwrap_err();
    assert_eq!(refused.reason_code(), ReasonCode::ProtocolError);
}
