//! Receiving: acks in arrival order, markers, redelivery, holding messages beyond the
//! Receive Maximum, refusals.

use super::*;

pub(super) fn manual() -> Harness {
    let mut options = options();
    options.manual_ack = true;
    options.properties.receive_maximum = Some(3);
    options.properties.topic_alias_maximum = Some(5);
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.connack(false, None);
    h.events();
    h
}

pub(super) fn incoming(qos: QoS, packet_id: u16, dup: bool) -> Publish {
    let mut p = Publish::new("in/1", "m");
    p.qos = qos;
    p.packet_id = packet_id;
    p.dup = dup;
    p
}

pub(super) fn tags(events: &[Event]) -> Vec<MessageTag> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { tag, .. } => Some(*tag),
            _ => None,
        })
        .collect()
}

/// Rebuilds a manual-ack session from what was committed, as after a crash, and reconnects.
pub(super) fn crash_manual(h: &mut Harness) {
    let mut options = options();
    options.manual_ack = true;
    options.properties.receive_maximum = Some(3);
    h.session = Session::new(options, h.store.stored(), NOW_MS).unwrap();
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    h.flush();
    h.events();
}

#[test]
fn automatic_ack_answers_at_delivery() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 7, false))
        .unwrap();
    assert_eq!(h.flush(), vec![Packet::PubAck(PubAck::new(7))]);
    assert_eq!(tags(&h.events()).len(), 1);
}

#[test]
fn mqtt_4_6_0_2_acks_go_out_in_arrival_order() {
    let mut h = manual();
    for id in [1, 2, 3] {
        h.session
            .handle_publish(incoming(QoS::AtLeastOnce, id, false))
            .unwrap();
    }
    let t = tags(&h.events());
    h.session.ack(t[2]).unwrap();
    assert!(
        h.flush().is_empty(),
        "the third ack waits for the first two"
    );
    assert_eq!(h.session.acks_waiting(), 1);
    h.session.ack(t[0]).unwrap();
    assert_eq!(h.flush(), vec![Packet::PubAck(PubAck::new(1))]);
    h.session.ack(t[1]).unwrap();
    assert_eq!(
        h.flush(),
        vec![
            Packet::PubAck(PubAck::new(2)),
            Packet::PubAck(PubAck::new(3))
        ]
    );
    assert_eq!(h.session.ack(t[1]), Err(AckError::NotAwaiting(t[1])));
}

#[test]
fn the_pubrec_marker_is_committed_before_pubrec_is_sent() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    let t = tags(&h.events());
    assert!(h.flush().is_empty(), "nothing goes out before the ack");
    h.session.ack(t[0]).unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert_eq!(output.commit.ops(), &[StoreOp::PutInbound { packet_id: 4 }]);
    assert_eq!(output.send, vec![Packet::PubRec(PubAck::new(4))]);
}

#[test]
fn mqtt_4_3_3_10_a_redelivered_qos2_message_is_answered_never_delivered_twice() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    // Redelivered before the ack: nothing new for the application.
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    let t = tags(&h.events());
    assert_eq!(t.len(), 1);
    h.session.ack(t[0]).unwrap();
    h.flush();
    // Redelivered after the ack: PUBREC again.
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    assert_eq!(h.flush(), vec![Packet::PubRec(PubAck::new(4))]);
    assert!(tags(&h.events()).is_empty());
}

/// A redelivered QoS 2 message whose marker is stored is answered at once only when no
/// earlier message's ack is still awaited; otherwise its PUBREC waits its turn behind them
/// [MQTT-4.6.0-3].
#[test]
fn mqtt_4_6_0_3_the_pubrec_for_a_marked_redelivery_waits_behind_earlier_acks() {
    let mut h = manual();
    // Message 4 is acked and its marker committed; its PUBREC is lost with the connection.
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.ack(t[0]).unwrap();
    h.flush();
    h.session.connection_lost(NOW_MS);
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    h.flush();
    // On the new connection: message 5 (new, delivered, its ack awaited), then 4 again.
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 5, false))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    let t = tags(&h.events());
    assert_eq!(t.len(), 1, "message 4 is not delivered again");
    assert!(
        h.flush().is_empty(),
        "the PUBREC for 4 jumped ahead of 5's, still awaited"
    );
    // A retransmission of 4 while its PUBREC waits is not a reused identifier.
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    h.session.ack(t[0]).unwrap();
    assert_eq!(
        h.flush(),
        vec![
            Packet::PubRec(PubAck::new(5)),
            Packet::PubRec(PubAck::new(4))
        ]
    );
    assert_eq!(h.session.acks_waiting(), 0);
}

#[test]
fn a_crash_after_the_ack_never_delivers_again_and_one_before_it_does() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 5, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.ack(t[0]).unwrap();
    h.flush();
    crash_manual(&mut h);
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 5, true))
        .unwrap();
    assert_eq!(h.flush(), vec![Packet::PubRec(PubAck::new(4))]);
    let events = h.events();
    assert_eq!(
        tags(&events).len(),
        1,
        "only the unacked message comes again"
    );
}

/// The client never expires an inbound message: one whose Message Expiry Interval ran out
/// while the application held it still gets PUBREC when acked, and PUBCOMP for its PUBREL.
#[test]
fn mqtt_4_3_3_13_an_expired_inbound_qos2_message_still_completes_its_acknowledgements() {
    let mut h = manual();
    let mut p = incoming(QoS::ExactlyOnce, 4, false);
    p.properties.message_expiry_interval = Some(1);
    h.session.handle_publish(p).unwrap();
    let tag = tags(&h.events())[0];
    h.session.tick(NOW_MS + 60_000);
    h.session.ack(tag).unwrap();
    assert_eq!(h.flush(), vec![Packet::PubRec(PubAck::new(4))]);
    h.session.handle_pubrel(&PubAck::new(4));
    assert_eq!(h.flush(), vec![Packet::PubComp(PubAck::new(4))]);
}

#[test]
fn pubrel_removes_the_marker_before_pubcomp() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.ack(t[0]).unwrap();
    h.flush();
    h.session.handle_pubrel(&PubAck::new(4));
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert_eq!(
        output.commit.ops(),
        &[StoreOp::RemoveInbound { packet_id: 4 }]
    );
    assert_eq!(output.send, vec![Packet::PubComp(PubAck::new(4))]);
    h.store.apply(&output.commit);
    assert!(h.store.inbound.is_empty());
    // The identifier is free for a new message now.
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    assert_eq!(tags(&h.events()).len(), 1);
    // PUBREL for an identifier never acknowledged.
    h.session.handle_pubrel(&PubAck::new(9));
    let mut comp = PubAck::new(9);
    comp.reason_code = ReasonCode::PacketIdentifierNotFound;
    assert_eq!(h.flush(), vec![Packet::PubComp(comp)]);
}

/// Manual ack: the application never holds more than Receive Maximum (3) unacked messages; a
/// server over its quota is not disconnected, its extra messages wait for acks, in order.
#[test]
fn messages_beyond_the_clients_receive_maximum_wait_for_an_ack() {
    let mut h = manual();
    for id in 1..=5 {
        h.session
            .handle_publish(incoming(QoS::AtLeastOnce, id, false))
            .unwrap();
    }
    // QoS 0 never waits.
    h.session
        .handle_publish(incoming(QoS::AtMostOnce, 0, false))
        .unwrap();
    let first = tags(&h.events());
    assert_eq!(first.len(), 4, "three QoS 1 and the QoS 0");
    assert_eq!((h.session.held(), h.session.held_total()), (2, 2));
    // An ack makes room for the application even while its PUBACK waits for the order.
    h.session.ack(first[1]).unwrap();
    let mut second = tags(&h.events());
    assert_eq!(second.len(), 1);
    assert!(h.flush().is_empty(), "PUBACK 2 waits for PUBACK 1");
    h.session.ack(first[0]).unwrap();
    second.extend(tags(&h.events()));
    assert_eq!(second.len(), 2, "two acked, two delivered");
    assert_eq!(h.session.held(), 0);
    for tag in [first[2], second[0], second[1]] {
        h.session.ack(tag).unwrap();
    }
    let acked: Vec<u16> = h
        .flush()
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some(a.packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![1, 2, 3, 4, 5], "PUBACKs in arrival order");
}

/// A QoS 2 retransmission of a waiting message does not wait twice, waiting messages are
/// forgotten with the connection (the server sends them again), and without manual ack
/// nothing waits and nothing is refused.
#[test]
fn waiting_messages_are_forgotten_with_the_connection_and_not_held_twice() {
    let mut h = manual();
    for id in 1..=4 {
        h.session
            .handle_publish(incoming(QoS::ExactlyOnce, id, false))
            .unwrap();
    }
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    assert_eq!(tags(&h.events()).len(), 3);
    assert_eq!(h.session.held(), 1);
    h.session.connection_lost(NOW_MS);
    assert_eq!(h.session.held(), 0);
    h.connack(true, None);
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    assert_eq!(tags(&h.events()).len(), 1, "sent again, delivered");

    let mut auto = Harness::new();
    auto.connack(false, None);
    for id in 1..=100 {
        auto.session
            .handle_publish(incoming(QoS::ExactlyOnce, id, false))
            .unwrap();
    }
    assert_eq!(tags(&auto.events()).len(), 100);
    assert_eq!(auto.session.held(), 0);
}

/// A hostile server cannot make the client hold messages without bound: their number is
/// bounded by the identifiers (a reused one is refused), their bytes by the limit (0x93).
#[test]
fn held_messages_are_bounded_by_count_and_bytes() {
    let mut h = manual();
    for id in 1..=u16::MAX {
        h.session
            .handle_publish(incoming(QoS::AtLeastOnce, id, false))
            .unwrap();
    }
    assert_eq!(h.session.held(), usize::from(u16::MAX) - 3);
    let refused = h
        .session
        .handle_publish(incoming(QoS::AtLeastOnce, 1, false))
        .unwrap_err();
    assert_eq!(refused, ProtocolViolation::PacketIdInUse { packet_id: 1 });
    assert_eq!(h.session.held(), usize::from(u16::MAX) - 3);

    let mut options = options();
    options.manual_ack = true;
    options.properties.receive_maximum = Some(1);
    options.held_bytes_limit = 100;
    let mut small = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    small.connack(false, None);
    let big = |id| {
        let mut p = incoming(QoS::AtLeastOnce, id, false);
        p.payload = Bytes::from(vec![0u8; 60]);
        p
    };
    small.session.handle_publish(big(1)).unwrap();
    small.session.handle_publish(big(2)).unwrap();
    assert_eq!(small.session.held(), 1);
    let refused = small.session.handle_publish(big(3)).unwrap_err();
    assert!(
        matches!(refused, ProtocolViolation::ReceiveMaximumExceeded { bytes, .. } if bytes > 100),
        "{refused:?}"
    );
}

/// A server may not reuse a packet identifier it still awaits an answer for [MQTT-2.2.1-4];
/// a retransmission (DUP 1, same QoS), which some brokers make on a timer, is ignored.
#[test]
fn a_reused_packet_identifier_is_a_protocol_error_and_a_retransmission_is_ignored() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut h = manual();
        h.session.handle_publish(incoming(qos, 9, false)).unwrap();
        assert_eq!(tags(&h.events()).len(), 1);
        h.session.handle_publish(incoming(qos, 9, true)).unwrap();
        assert!(tags(&h.events()).is_empty(), "{qos:?}: not delivered twice");
        let refused = h
            .session
            .handle_publish(incoming(qos, 9, false))
            .unwrap_err();
        assert_eq!(refused, ProtocolViolation::PacketIdInUse { packet_id: 9 });
        assert_eq!(refused.reason_code(), ReasonCode::ProtocolError);
        let other = match qos {
            QoS::AtLeastOnce => QoS::ExactlyOnce,
            _ => QoS::AtLeastOnce,
        };
        assert!(h.session.handle_publish(incoming(other, 9, true)).is_err());
    }
    // Once answered, the identifier is free again.
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 9, false))
        .unwrap();
    let tag = tags(&h.events())[0];
    h.session.ack(tag).unwrap();
    h.flush();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 9, false))
        .unwrap();
    assert_eq!(tags(&h.events()).len(), 1);
}

#[test]
fn the_default_maximum_packet_size_is_announced_and_enforced() {
    let mut session = Session::new(options(), StoredSession::default(), NOW_MS).unwrap();
    let connect = session.connect_packet().unwrap();
    assert_eq!(
        connect.properties.maximum_packet_size,
        Some(DEFAULT_MAXIMUM_PACKET_SIZE)
    );
    assert_eq!(
        session.codec().max_incoming_packet_size,
        Some(DEFAULT_MAXIMUM_PACKET_SIZE)
    );
    // A PUBLISH header claiming 256 MiB is refused before its body is buffered.
    let mut claim = bytes::BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0x7f][..]);
    let error = session.codec().decode(&mut claim).unwrap_err();
    assert_eq!(error.violation.reason_code(), ReasonCode::PacketTooLarge);
}

#[test]
fn inbound_topic_aliases_map_and_unknown_or_too_large_is_0x94() {
    let mut h = manual();
    let mut first = incoming(QoS::AtMostOnce, 0, false);
    first.properties.topic_alias = Some(2);
    h.session.handle_publish(first).unwrap();
    let mut aliased = incoming(QoS::AtMostOnce, 0, false);
    aliased.topic = String::new();
    aliased.properties.topic_alias = Some(2);
    h.session.handle_publish(aliased).unwrap();
    let events = h.events();
    assert!(matches!(&events[1], Event::Message { publish, .. } if publish.topic == "in/1"));
    for alias in [3, 6] {
        let mut bad = incoming(QoS::AtMostOnce, 0, false);
        bad.topic = String::new();
        bad.properties.topic_alias = Some(alias);
        let err = h.session.handle_publish(bad).unwrap_err();
        assert_eq!(
            err.reason_code(),
            ReasonCode::TopicAliasInvalid,
            "alias {alias}"
        );
    }
    // Mappings do not outlive the connection [MQTT-3.3.2-7].
    h.session.connection_lost(NOW_MS);
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    let mut aliased = incoming(QoS::AtMostOnce, 0, false);
    aliased.topic = String::new();
    aliased.properties.topic_alias = Some(2);
    assert!(h.session.handle_publish(aliased).is_err());
}

#[test]
fn an_ack_after_the_connection_dropped_is_persisted_for_qos2_and_dropped_for_qos1() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 5, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.connection_lost(NOW_MS);
    h.session.ack(t[0]).unwrap();
    h.session.ack(t[1]).unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(
        output
            .commit
            .ops()
            .contains(&StoreOp::PutInbound { packet_id: 4 })
    );
    assert!(
        output.send.is_empty(),
        "nothing can be sent without a connection"
    );
    h.store.apply(&output.commit);
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    h.flush();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 5, true))
        .unwrap();
    assert_eq!(
        h.flush(),
        vec![Packet::PubRec(PubAck::new(4))],
        "QoS 2 is answered; QoS 1 awaits its new ack"
    );
    let events = h.events();
    assert_eq!(
        tags(&events).len(),
        1,
        "QoS 1 is delivered again, QoS 2 is not"
    );
}

#[test]
fn a_held_back_qos2_ack_is_not_lost_with_the_connection() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 1, false))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 2, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.ack(t[1]).unwrap();
    assert!(h.flush().is_empty());
    h.session.connection_lost(NOW_MS);
    h.flush();
    assert!(h.store.inbound.contains(&2), "the given ack is kept");
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 2, true))
        .unwrap();
    assert_eq!(h.flush(), vec![Packet::PubRec(PubAck::new(2))]);
    assert!(tags(&h.events()).is_empty());
}

#[test]
fn without_a_session_on_the_server_old_tags_cannot_be_acked() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.connection_lost(NOW_MS);
    h.session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    assert_eq!(h.session.ack(t[0]), Err(AckError::NotAwaiting(t[0])));
    h.flush();
    assert!(h.store.inbound.is_empty());
}

#[test]
fn a_refusal_answers_with_its_reason_code_in_arrival_order_and_stores_no_marker() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 1, false))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 2, false))
        .unwrap();
    let t = tags(&h.events());
    assert_eq!(
        h.session.reject(t[1], ReasonCode::Success),
        Err(AckError::NotARefusal(ReasonCode::Success)),
        "a refusal needs an error code"
    );
    assert_eq!(
        h.session.reject(t[1], ReasonCode::PacketIdentifierNotFound),
        Err(AckError::NotARefusal(ReasonCode::PacketIdentifierNotFound)),
        "0x92 belongs to PUBREL and PUBCOMP, not to PUBACK or PUBREC"
    );
    h.session
        .reject(t[1], ReasonCode::ImplementationSpecificError)
        .unwrap();
    assert!(h.flush().is_empty(), "the refusal waits for the first ack");
    h.session
        .reject(t[0], ReasonCode::UnspecifiedError)
        .unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(
        output.commit.is_empty(),
        "a refused QoS 2 message gets no marker"
    );
    let mut puback = PubAck::new(1);
    puback.reason_code = ReasonCode::UnspecifiedError;
    let mut pubrec = PubAck::new(2);
    pubrec.reason_code = ReasonCode::ImplementationSpecificError;
    assert_eq!(
        output.send,
        vec![Packet::PubAck(puback), Packet::PubRec(pubrec)]
    );
    assert_eq!(h.session.ack(t[0]), Err(AckError::NotAwaiting(t[0])));
}

/// A forward's commit stored the marker with the copy: the ack stores nothing more, and the
/// PUBREC goes out; a redelivery is answered, not delivered.
#[test]
fn a_forwarded_ack_whose_marker_is_stored_commits_nothing_more_and_answers_redeliveries() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    let t = tags(&h.events());
    // Stored by the other client's commit, as `Message::forward` does.
    h.store.inbound.insert(4);
    h.session.ack_forwarded(t[0], 4, true).unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(
        output.commit.is_empty(),
        "stored again: {:?}",
        output.commit
    );
    assert_eq!(output.send, vec![Packet::PubRec(PubAck::new(4))]);
    h.session.recycle(output);
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    assert_eq!(h.flush(), vec![Packet::PubRec(PubAck::new(4))]);
    assert!(tags(&h.events()).is_empty(), "delivered twice");
}

/// The server lost the session while the copy was being stored: the marker that commit
/// stored belongs to no message any more and is removed, or it would swallow a later message
/// under the same identifier.
#[test]
fn a_forwarded_ack_for_a_message_no_longer_awaited_removes_the_stray_marker() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 6, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.connection_lost(NOW_MS);
    h.session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    h.flush();
    h.events();
    h.store.inbound.insert(6);
    assert!(h.session.ack_forwarded(t[0], 6, true).is_err());
    h.flush();
    assert!(h.store.inbound.is_empty(), "the stray marker stays");
}

#[test]
fn a_message_awaits_the_application_until_acked_and_a_qos1_one_only_on_its_connection() {
    let mut h = manual();
    for (qos, id) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        h.session.handle_publish(incoming(qos, id, false)).unwrap();
    }
    let t = tags(&h.events());
    assert!(h.session.awaits_application(t[0]) && h.session.awaits_application(t[1]));
    h.session.connection_lost(NOW_MS);
    // QoS 1: the server sends it again as a new message. QoS 2: its redelivery binds to it.
    assert!(!h.session.awaits_application(t[0]));
    assert!(h.session.awaits_application(t[1]));
    h.session.abandon(t[0]);
    h.session.ack(t[1]).unwrap();
    assert!(!h.session.awaits_application(t[1]));
}
