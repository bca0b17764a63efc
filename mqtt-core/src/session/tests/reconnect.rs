//! Publishing across a new connection: resends in order with DUP, PUBRELs before PUBLISHes,
//! Session Present, and the server's new limits (Receive Maximum, Maximum Packet Size,
//! Maximum QoS, Retain Available).

use super::*;

#[test]
fn mqtt_4_4_0_1_reconnect_resends_in_order_with_dup_within_the_new_receive_maximum() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "a"); // id 1: will reach PUBREL
    h.publish(QoS::AtLeastOnce, "b"); // id 2
    h.publish(QoS::AtLeastOnce, "c"); // id 3
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.connection_lost(NOW_MS);
    // Order: PUBREL 1 first (it needs no send quota [MQTT-3.3.4-8], and the server still
    // counts its message against its Receive Maximum), then PUBLISH b and c in their order.
    let sent = h.connack(true, Some(2));
    assert_eq!(
        sent,
        vec![
            Packet::PubRel(PubAck::new(1)),
            Packet::Publish({
                let mut p = Publish::new("t/1", "b");
                p.qos = QoS::AtLeastOnce;
                p.packet_id = 2;
                p.dup = true;
                p
            }),
            Packet::Publish({
                let mut p = Publish::new("t/1", "c");
                p.qos = QoS::AtLeastOnce;
                p.packet_id = 3;
                p.dup = true;
                p
            }),
        ]
    );
}

#[test]
fn mqtt_3_3_4_8_a_pubrel_never_waits_for_send_quota_and_quota_never_exceeds_the_maximum() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::AtLeastOnce, "first"); // id 1
    h.publish(QoS::ExactlyOnce, "second"); // id 2: will reach PUBREL
    h.publish(QoS::AtLeastOnce, "third"); // id 3
    h.flush();
    h.session.handle_pubrec(&PubAck::new(2));
    h.flush();
    h.session.connection_lost(NOW_MS);
    // Quota 1: PUBREL 2 goes first and takes none; PUBLISH 1 takes it; PUBLISH 3 waits.
    let sent = h.connack(true, Some(1));
    let kinds: Vec<(PacketType, u16)> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((PacketType::Publish, p.packet_id)),
            Packet::PubRel(r) => Some((PacketType::PubRel, r.packet_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![(PacketType::PubRel, 2), (PacketType::Publish, 1)]
    );
    // PUBCOMP for the PUBREL gives back nothing it did not take: PUBLISH 3 still waits.
    h.session.handle_pubcomp(&PubAck::new(2));
    assert!(
        publishes(&h.flush()).is_empty(),
        "the quota stays at its maximum of 1"
    );
    h.session.handle_puback(&PubAck::new(1));
    assert_eq!(
        publishes(&h.flush()).len(),
        1,
        "PUBLISH 3 goes once PUBACK 1 frees quota"
    );
}

#[test]
fn a_retransmission_over_the_servers_new_maximum_packet_size_fails_its_flow_cleanly() {
    let mut h = Harness::new();
    h.connack(false, Some(10));
    let big = h.publish(QoS::AtLeastOnce, "x".repeat(1000).leak());
    let small = h.publish(QoS::AtLeastOnce, "b");
    h.flush();
    h.session.connection_lost(NOW_MS);
    h.events();
    let mut connack = ConnAck::new(true);
    connack.properties.maximum_packet_size = Some(500);
    connack.properties.receive_maximum = Some(1);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    h.store.apply(&output.commit);
    let sent = [output.early, output.send].concat();
    assert_eq!(publishes(&sent), vec![(2, true, Bytes::from("b"))]);
    assert!(h.events().contains(&Event::Failed {
        id: big,
        reason: ReasonCode::PacketTooLarge
    }));
    assert_eq!(h.session.in_flight(), 1);
    assert_eq!(h.store.stored().queue.len(), 1, "its record is gone");
    assert!(h.store.stored().outbound.is_empty());
    // It held no quota: the one there is went to the small one, and comes back with its
    // PUBACK for a new publish.
    h.session.handle_puback(&PubAck::new(2));
    assert!(h.events().contains(&Event::Delivered {
        id: small,
        reason: ReasonCode::Success
    }));
    h.publish(QoS::AtLeastOnce, "c");
    assert_eq!(publishes(&h.flush()), vec![(3, false, Bytes::from("c"))]);
}

/// A QoS 2 PUBLISH that went out and no longer fits may be held by the server under its
/// identifier until a PUBREL: the flow fails, and is released with PUBREL (stored first) so
/// that no new message goes out under that identifier before the PUBCOMP.
#[test]
fn a_qos2_retransmission_over_the_new_maximum_packet_size_keeps_its_identifier_until_pubcomp() {
    let mut h = Harness::new();
    h.connack(false, Some(10));
    let big = h.publish(QoS::ExactlyOnce, "x".repeat(1000).leak());
    h.flush();
    h.session.connection_lost(NOW_MS);
    h.events();
    let mut connack = ConnAck::new(true);
    connack.properties.maximum_packet_size = Some(500);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(output.early.is_empty(), "the PUBREL goes after its record");
    assert!(output.commit.ops().iter().any(|op| matches!(
        op,
        StoreOp::PutOutbound {
            record: OutboundRecord::PubRel { packet_id: 1 },
            ..
        }
    )));
    assert_eq!(output.send, vec![Packet::PubRel(PubAck::new(1))]);
    h.store.apply(&output.commit);
    h.session.durable(output.generation);
    assert!(h.events().contains(&Event::Failed {
        id: big,
        reason: ReasonCode::PacketTooLarge
    }));
    // The flow lives on, awaiting PUBCOMP: identifier 1 is not free.
    assert_eq!(h.session.in_flight(), 1);
    h.publish(QoS::ExactlyOnce, "b");
    let sent = publishes(&h.flush());
    assert!(
        matches!(sent.as_slice(), [(id, false, _)] if *id != 1),
        "{sent:?}"
    );
    h.session.handle_pubcomp(&PubAck::new(1));
    h.flush();
    assert!(
        h.events().is_empty(),
        "its PUBCOMP reports nothing more (it was reported failed)"
    );
    assert!(h.store.outbound.is_empty(), "{:?}", h.store.outbound);
    assert_eq!(h.session.in_flight(), 1);
}

/// Found by the session fuzzer: a PUBREC for a QoS 1 flow turned it into a PUBREL, and the
/// PUBCOMP that followed reported the message delivered without its PUBACK.
#[test]
fn a_pubrec_for_a_qos1_flow_never_releases_it() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.events();
    let id = h.publish(QoS::AtLeastOnce, "a");
    let sent = h.flush();
    assert_eq!(publishes(&sent).len(), 1);
    h.session.handle_pubrec(&PubAck::new(1));
    assert!(h.flush().is_empty(), "no PUBREL for a QoS 1 message");
    h.session.handle_pubcomp(&PubAck::new(1));
    assert_eq!(h.events(), vec![], "not reported delivered");
    assert_eq!(h.session.in_flight(), 1);
    h.session.handle_puback(&PubAck::new(1));
    assert_eq!(
        h.events(),
        vec![Event::Delivered {
            id,
            reason: ReasonCode::Success
        }]
    );
}

/// Found by the session fuzzer: a publish that fits the server's Maximum Packet Size without a
/// Topic Alias, and not with one, went out with the alias and could not be written.
#[test]
fn a_topic_alias_is_used_only_where_the_packet_still_fits() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.topic_alias_maximum = Some(2);
    connack.properties.maximum_packet_size = Some(30);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    h.flush();
    // 2 + 2 + 3 ("t/1") + 2 (identifier) + 1 (no properties) + 20 = 30: exactly the limit.
    let mut p = Publish::new("t/1", "x".repeat(20));
    p.qos = QoS::AtLeastOnce;
    h.session.publish(p).unwrap();
    let sent = h.flush();
    let codec = h.session.codec();
    for packet in &sent {
        codec.encode(packet, &mut bytes::BytesMut::new()).unwrap();
    }
    assert!(
        matches!(&sent[..], [Packet::Publish(p)] if p.properties.topic_alias.is_none()),
        "{sent:?}"
    );
}

#[test]
fn a_crash_resumes_from_the_committed_records_alone() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "a");
    h.publish(QoS::AtLeastOnce, "b");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.publish(QoS::AtLeastOnce, "c");
    // Accepted, not yet committed: lost in the crash, never acknowledged to the caller.
    h.crash();
    // The PUBREL flow is in flight; b is queued again under its queue record, and goes out
    // under the same identifier with DUP set (it may have gone out before the crash).
    assert_eq!(h.session.in_flight(), 1);
    assert_eq!(h.session.queued(), 1);
    let sent = h.connack(true, None);
    assert_eq!(
        sent.iter().map(|p| p.packet_type()).collect::<Vec<_>>(),
        vec![PacketType::PubRel, PacketType::Publish]
    );
    assert_eq!(publishes(&sent), vec![(2, true, Bytes::from("b"))]);
}

#[test]
fn session_present_0_resends_publishes_as_new_and_drops_pubrel() {
    let mut h = Harness::new();
    h.connack(false, None);
    let a = h.publish(QoS::ExactlyOnce, "a");
    h.publish(QoS::AtLeastOnce, "b");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.connection_lost(NOW_MS);
    h.events();
    let sent = h.connack(false, None);
    assert_eq!(publishes(&sent), vec![(2, false, Bytes::from("b"))]);
    assert!(!sent.iter().any(|p| matches!(p, Packet::PubRel(_))));
    let events = h.events();
    assert!(events.contains(&Event::SessionLost {
        resent: 1,
        discarded: 0,
        dropped_pubrel: 1,
        dropped_inbound: 0
    }));
    assert!(events.contains(&Event::Delivered {
        id: a,
        reason: ReasonCode::Success
    }));
    assert!(h.store.outbound.is_empty(), "the PUBREL record is gone");
    assert_eq!(h.store.queue.len(), 1, "b keeps its queue record in flight");
}

#[test]
fn mqtt_3_2_2_4_session_present_after_clean_start_is_a_protocol_error() {
    let mut options = options();
    options.clean_start = true;
    let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
    assert!(session.connect_packet().unwrap().clean_start);
    assert_eq!(
        session.handle_connack(&ConnAck::new(true), Instant::now()),
        Err(ProtocolViolation::UnexpectedSession)
    );
    assert!(
        session
            .handle_connack(&ConnAck::new(false), Instant::now())
            .is_ok()
    );
    assert!(
        !session.connect_packet().unwrap().clean_start,
        "reconnects resume the session"
    );
}

#[test]
fn mqtt_3_2_2_4_session_present_without_local_state_is_refused_and_the_next_attempt_starts_clean() {
    // A new store and Clean Start 0: the server's old session may hold packet identifiers
    // this client would reuse for new messages.
    let mut session = Session::new(options(), StoredSession::default(), NOW_MS).unwrap();
    assert!(!session.connect_packet().unwrap().clean_start);
    assert_eq!(
        session.handle_connack(&ConnAck::new(true), Instant::now()),
        Err(ProtocolViolation::SessionWithoutState)
    );
    assert!(
        session.connect_packet().unwrap().clean_start,
        "the next attempt starts the session anew"
    );
    assert_eq!(
        session.handle_connack(&ConnAck::new(true), Instant::now()),
        Err(ProtocolViolation::UnexpectedSession),
        "Session Present 1 after that Clean Start 1 is the server's error"
    );
    session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    assert!(!session.connect_packet().unwrap().clean_start);
    assert!(
        session
            .handle_connack(&ConnAck::new(true), Instant::now())
            .is_ok(),
        "once connected, the client has state the server may resume"
    );

    // A stored session is local state: the server may resume it on the first connection.
    let stored = StoredSession {
        meta: Some(SessionMeta {
            session_expiry_interval: 3600,
            ..SessionMeta::default()
        }),
        ..StoredSession::default()
    };
    let mut resumed = Session::new(options(), stored, NOW_MS).unwrap();
    assert!(!resumed.connect_packet().unwrap().clean_start);
    assert!(
        resumed
            .handle_connack(&ConnAck::new(true), Instant::now())
            .is_ok()
    );
}

#[test]
fn mqtt_3_2_2_11_and_14_maximum_qos_and_retain_available() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    connack.properties.retain_available = Some(false);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    let mut p = Publish::new("t", "x");
    p.qos = QoS::ExactlyOnce;
    assert!(matches!(
        h.session.publish(p),
        Err(PublishError::QosNotSupported { .. })
    ));
    let mut p = Publish::new("t", "x");
    p.retain = true;
    assert!(matches!(
        h.session.publish(p),
        Err(PublishError::RetainNotSupported)
    ));
    assert!(matches!(
        h.session.publish(Publish::new("t/#", "x")),
        Err(PublishError::Invalid(_))
    ));
    assert!(h.flush().is_empty(), "refused publishes store nothing");
}

#[test]
fn a_refused_connection_is_reported() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.reason_code = ReasonCode::NotAuthorized;
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    assert!(!h.session.is_connected());
    assert_eq!(
        h.events(),
        vec![Event::ConnectionRefused {
            reason: ReasonCode::NotAuthorized,
            server_reference: None,
        }]
    );
}

/// What a broker that counts a QoS 2 message against its Receive Maximum until PUBREL (as
/// mosquitto does) makes of `sent`, holding `held` such messages before it: the most it holds
/// at once. A new PUBLISH over the maximum is refused with 0x97 and its message lost.
fn broker_holds_at_most(held: &[u16], sent: &[Packet]) -> usize {
    let mut holding: std::collections::BTreeSet<u16> = held.iter().copied().collect();
    let mut most = holding.len();
    for packet in sent {
        match packet {
            Packet::PubRel(rel) => {
                holding.remove(&rel.packet_id);
            }
            Packet::Publish(p) if p.qos == QoS::ExactlyOnce => {
                holding.insert(p.packet_id);
            }
            _ => {}
        }
        most = most.max(holding.len());
    }
    most
}

/// The failure the crash proof found when identifiers were bound at acceptance: with the
/// broker's Receive Maximum at 2 and two QoS 2 messages awaiting PUBREL, the session sent
/// PUBLISHes ahead of the PUBRELs (in sequence order, the PUBREL records being newer), and the
/// broker refused them with 0x97. PUBRELs now go first on every new connection: after a lost
/// connection (the messages behind them in flight) and after a crash (queued).
#[test]
fn pubrels_go_before_publishes_on_a_new_connection_so_a_receive_maximum_of_2_is_never_exceeded() {
    for crash in [false, true] {
        let mut h = Harness::new();
        h.connack(false, Some(4));
        for payload in ["a", "b", "c", "d"] {
            h.publish(QoS::ExactlyOnce, payload);
        }
        let sent = h.flush();
        assert_eq!(publishes(&sent).len(), 4, "all four fill the window of 4");
        // a and b reach PUBREC: their PUBREL records come after c and d in sequence order.
        let ids: Vec<u16> = publishes(&sent)
            .iter()
            .take(2)
            .map(|(id, _, _)| *id)
            .collect();
        for id in &ids {
            h.session
                .handle_incoming(Packet::PubRec(PubAck::new(*id)), Instant::now())
                .unwrap();
        }
        // The PUBRELs are stored and sent; the broker holds both messages until they arrive.
        let rels = h.flush();
        assert_eq!(rels.len(), 2);
        if crash {
            h.crash();
        } else {
            h.session.connection_lost(NOW_MS);
            h.flush();
        }
        // The PUBRELs were lost on the way: the broker still holds a and b.
        let resent = h.connack(true, Some(2));
        assert_eq!(
            resent
                .iter()
                .filter(|p| matches!(p, Packet::PubRel(_)))
                .count(),
            2,
            "crash {crash}: both PUBRELs again: {resent:?}"
        );
        assert!(
            broker_holds_at_most(&ids, &resent) <= 2,
            "crash {crash}: the broker would refuse a PUBLISH: {resent:?}"
        );
    }
}
