//! Publishing: records before packets, acks, quota, identifiers, and the rules that hold on
//! any connection (reconnect.rs has what a new connection changes).

use super::*;

#[test]
fn a_qos1_publish_is_committed_before_it_is_sent() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::AtLeastOnce, "a");
    let output = h.session.poll_output(Instant::now()).unwrap();
    // The record and the packet come in one Output: the queue record (which it keeps while in
    // flight) to commit, then the packet; nothing goes early before its record is written.
    assert!(
        output
            .commit
            .ops()
            .iter()
            .any(|op| matches!(op, StoreOp::PushQueue { .. }))
    );
    assert!(output.early.is_empty());
    assert!(!output.deferrable);
    assert_eq!(publishes(&output.send), vec![(1, false, Bytes::from("a"))]);
}

/// An output given back lends the next ones its lists' memory, never its packets or
/// operations: what it still held is neither sent nor committed again.
#[test]
fn a_recycled_output_lends_its_memory_and_nothing_it_held() {
    let mut h = Harness::new();
    h.connack(false, None);
    let mut outputs = Vec::new();
    for payload in ["a", "b", "c"] {
        h.publish(QoS::AtLeastOnce, payload);
        let output = h.session.poll_output(Instant::now()).unwrap();
        h.store.apply(&output.commit);
        h.session.durable(output.generation);
        outputs.push((
            publishes(&output.send),
            output.commit.len(),
            output.send.as_ptr(),
        ));
        // Given back full: its packets and operations must not come out again.
        h.session.recycle(output);
    }
    let payloads: Vec<Vec<Bytes>> = outputs
        .iter()
        .map(|(sent, _, _)| sent.iter().map(|(_, _, p)| p.clone()).collect())
        .collect();
    assert_eq!(
        payloads,
        vec![
            vec![Bytes::from("a")],
            vec![Bytes::from("b")],
            vec![Bytes::from("c")]
        ]
    );
    assert!(outputs.iter().all(|(_, ops, _)| *ops == 1));
    // The first output's list took the third output's packet (the second was already
    // pending when the first came back).
    assert_eq!(outputs[2].2, outputs[0].2);
}

/// The refill that makes durable QoS 1 fast at a small broker window: a queued message whose
/// record is already durable goes out at once when a PUBACK frees quota, ahead of the commit
/// that removes the acknowledged one (which may wait: it protects nothing sent).
#[test]
fn a_queued_message_whose_record_is_durable_goes_out_early_when_quota_frees() {
    let mut h = Harness::new();
    h.connack(false, Some(1));
    h.publish(QoS::AtLeastOnce, "a");
    h.publish(QoS::AtLeastOnce, "b");
    assert_eq!(publishes(&h.flush()), vec![(1, false, Bytes::from("a"))]);
    assert_eq!(
        h.store.queue.len(),
        2,
        "both records durable, b waits for quota"
    );
    h.session.handle_puback(&PubAck::new(1));
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert_eq!(publishes(&output.early), vec![(2, false, Bytes::from("b"))]);
    assert!(output.send.is_empty());
    assert!(
        matches!(output.commit.ops(), [StoreOp::RemoveQueue { seq: 0 }]),
        "{:?}",
        output.commit
    );
    assert!(output.deferrable, "the removal may join a later commit");
}

/// A packet identifier is fixed by the sequence number (`seq % 65535 + 1`): a new message whose
/// identifier is that of a flow just ended waits until that flow's removal is durable, or a
/// crash could leave two records under one identifier. The output asks for the commit at once.
#[test]
fn a_packet_identifier_is_reused_only_once_the_removal_of_its_last_flow_is_durable() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.session.connection_lost(NOW_MS);
    h.publish(QoS::AtLeastOnce, "a"); // seq 0: identifier 1
    h.flush();
    // A PUBREL record at seq 65534 puts the next sequence number at 65535: identifier 1 again.
    h.store
        .outbound
        .insert(65_534, OutboundRecord::PubRel { packet_id: 999 });
    h.crash();
    let sent = h.connack(true, None);
    assert_eq!(publishes(&sent), vec![(1, true, Bytes::from("a"))]);
    h.session.handle_puback(&PubAck::new(1));
    h.publish(QoS::AtLeastOnce, "b"); // seq 65535: identifier 1
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(publishes(&[output.early.clone(), output.send.clone()].concat()).is_empty());
    assert!(!output.deferrable);
    h.store.apply(&output.commit);
    // Written is not enough: the removal must be durable.
    h.session.written(output.generation);
    assert!(
        publishes(
            &h.session
                .poll_output(Instant::now())
                .map(|o| [o.early, o.send].concat())
                .unwrap_or_default()
        )
        .is_empty()
    );
    h.session.durable(output.generation);
    assert_eq!(publishes(&h.flush()), vec![(1, false, Bytes::from("b"))]);
}

#[test]
fn publishing_offline_queues_durably_and_sends_on_connect() {
    let mut h = Harness::new();
    h.publish(QoS::ExactlyOnce, "a");
    h.publish(QoS::AtMostOnce, "b");
    assert!(h.flush().is_empty());
    assert_eq!(h.store.queue.len(), 2);
    let sent = h.connack(false, None);
    assert_eq!(
        publishes(&sent),
        vec![(1, false, Bytes::from("a")), (0, false, Bytes::from("b"))]
    );
    assert_eq!(
        h.store.queue.len(),
        1,
        "the QoS 2 message keeps its queue record while in flight; the QoS 0 one is gone"
    );
    assert!(h.store.outbound.is_empty());
    h.session
        .handle_incoming(Packet::PubRec(PubAck::new(1)), Instant::now())
        .unwrap();
    let sent = h.flush();
    assert!(matches!(sent.as_slice(), [Packet::PubRel(_)]));
    assert!(h.store.queue.is_empty());
    assert_eq!(h.store.outbound.len(), 1, "the PUBREL flow is stored");
}

#[test]
fn puback_ends_the_flow_and_its_record() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::AtLeastOnce, "a");
    h.flush();
    // A flow sent from the queue keeps its record there while in flight.
    assert_eq!(h.store.queue.len(), 1, "the record of the flow in flight");
    h.session.handle_puback(&PubAck::new(1));
    h.flush();
    assert!(h.store.queue.is_empty(), "the PUBACK removed the record");
    assert!(h.store.outbound.is_empty());
    assert_eq!(h.session.in_flight(), 0);
    assert!(h.events().contains(&Event::Delivered {
        id,
        reason: ReasonCode::Success
    }));
}

#[test]
fn qos2_pubrec_stores_pubrel_before_sending_it_and_pubcomp_ends_it() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(output.commit.ops().iter().any(|op| matches!(
        op,
        StoreOp::PutOutbound {
            record: OutboundRecord::PubRel { packet_id: 1 },
            ..
        }
    )));
    assert_eq!(output.send, vec![Packet::PubRel(PubAck::new(1))]);
    h.store.apply(&output.commit);
    h.session.handle_pubcomp(&PubAck::new(1));
    h.flush();
    assert!(h.store.outbound.is_empty());
    assert!(h.events().contains(&Event::Delivered {
        id,
        reason: ReasonCode::Success
    }));
}

#[test]
fn pubrec_with_an_error_ends_the_flow_without_pubrel() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    assert_eq!(h.store.queue.len(), 1, "the record of the flow in flight");
    let mut rec = PubAck::new(1);
    rec.reason_code = ReasonCode::QuotaExceeded;
    h.session.handle_pubrec(&rec);
    let sent = h.flush();
    assert!(sent.is_empty(), "no PUBREL after a failed PUBREC: {sent:?}");
    // The flow ended: no record of it left, neither the PUBLISH nor a PUBREL to resend.
    assert!(
        h.store.queue.is_empty(),
        "the failed PUBREC removed the record"
    );
    assert!(h.store.outbound.is_empty(), "no PUBREL flow stored");
    assert_eq!(h.session.in_flight(), 0);
    assert!(h.events().contains(&Event::Failed {
        id,
        reason: ReasonCode::QuotaExceeded
    }));
}

#[test]
fn puback_with_an_error_reports_the_reason() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::AtLeastOnce, "a");
    h.flush();
    let mut ack = PubAck::new(1);
    ack.reason_code = ReasonCode::NotAuthorized;
    h.session.handle_puback(&ack);
    h.flush();
    assert!(h.events().contains(&Event::Failed {
        id,
        reason: ReasonCode::NotAuthorized
    }));
}

#[test]
fn mqtt_3_3_4_7_no_more_than_receive_maximum_in_flight() {
    let mut h = Harness::new();
    h.connack(false, Some(2));
    for payload in ["a", "b", "c", "d", "e"] {
        h.publish(QoS::AtLeastOnce, payload);
    }
    let sent = h.flush();
    assert_eq!(publishes(&sent).len(), 2);
    assert_eq!(h.session.in_flight(), 2);
    assert_eq!(h.session.queued(), 3);
    h.session.handle_puback(&PubAck::new(1));
    let sent = h.flush();
    assert_eq!(publishes(&sent), vec![(3, false, Bytes::from("c"))]);
}

#[test]
fn unknown_identifiers_in_acks() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.session.handle_puback(&PubAck::new(9));
    h.session.handle_pubcomp(&PubAck::new(9));
    assert!(
        h.flush().is_empty(),
        "unknown PUBACK and PUBCOMP are ignored"
    );
    h.session.handle_pubrec(&PubAck::new(9));
    let mut rel = PubAck::new(9);
    rel.reason_code = ReasonCode::PacketIdentifierNotFound;
    assert_eq!(h.flush(), vec![Packet::PubRel(rel)]);
}

/// The server completed the flow, its PUBCOMP was lost with the connection, and the PUBREL
/// resent on the next one gets 0x92: the message reached the server (its PUBREC said so), so
/// it is delivered, not failed (failed, the application would publish it again).
#[test]
fn a_pubcomp_0x92_after_a_reconnection_ends_the_flow_as_delivered() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.connection_lost(NOW_MS);
    assert_eq!(h.connack(true, None), vec![Packet::PubRel(PubAck::new(1))]);
    let mut comp = PubAck::new(1);
    comp.reason_code = ReasonCode::PacketIdentifierNotFound;
    h.session.handle_pubcomp(&comp);
    h.flush();
    assert!(h.store.outbound.is_empty(), "the flow's record is gone");
    let events = h.events();
    assert!(
        events.contains(&Event::Delivered {
            id,
            reason: ReasonCode::PacketIdentifierNotFound
        }),
        "{events:?}"
    );
}

#[test]
fn a_repeated_pubrec_gets_pubrel_again() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    assert_eq!(h.flush(), vec![Packet::PubRel(PubAck::new(1))]);
}

/// [MQTT-2.2.1-3, MQTT-4.3.2-1, MQTT-4.3.3-1] Every new QoS 1/2 PUBLISH, SUBSCRIBE and
/// UNSUBSCRIBE goes out with a non-zero identifier that no other packet in flight holds.
#[test]
fn mqtt_2_2_1_3_every_new_flow_and_request_gets_a_free_non_zero_identifier() {
    let mut h = Harness::new();
    h.connack(false, None);
    for n in 0..6 {
        let qos = if n % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        h.publish(qos, "p");
    }
    h.session
        .subscribe(
            vec![Subscription::new("s/#", QoS::AtLeastOnce)],
            SubscribeProperties::default(),
        )
        .unwrap();
    h.session
        .unsubscribe(vec!["u".into()], UnsubscribeProperties::default())
        .unwrap();
    let ids: Vec<u16> = h
        .flush()
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.packet_id),
            Packet::Subscribe(s) => Some(s.packet_id),
            Packet::Unsubscribe(u) => Some(u.packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 8);
    assert!(ids.iter().all(|id| *id != 0), "{ids:?}");
    let distinct: std::collections::BTreeSet<u16> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "an identifier twice: {ids:?}");
}

/// [MQTT-3.3.1-2, MQTT-4.3.1-1] A QoS 0 PUBLISH goes out with DUP 0 and no identifier,
/// whatever the publish handed over says.
#[test]
fn mqtt_3_3_1_2_a_qos0_publish_goes_out_with_dup_0() {
    let mut h = Harness::new();
    h.connack(false, None);
    let mut p = Publish::new("t/1", "x");
    p.dup = true;
    p.packet_id = 9;
    h.session.publish(p).unwrap();
    let sent = h.flush();
    assert!(
        matches!(sent.as_slice(), [Packet::Publish(p)] if !p.dup && p.qos == QoS::AtMostOnce && p.packet_id == 0),
        "{sent:?}"
    );
}

/// [MQTT-3.3.2-8] A Topic Alias of 0 never goes out: the session sets aliases itself (from 1),
/// whatever the publish handed over says.
#[test]
fn mqtt_3_3_2_8_a_topic_alias_0_handed_over_never_goes_out() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.topic_alias_maximum = Some(3);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    h.flush();
    for _ in 0..2 {
        let mut p = Publish::new("t/1", "x");
        p.qos = QoS::AtLeastOnce;
        p.properties.topic_alias = Some(0);
        h.session.publish(p).unwrap();
    }
    let aliases: Vec<Option<u16>> = h
        .flush()
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.properties.topic_alias),
            _ => None,
        })
        .collect();
    assert_eq!(aliases, vec![Some(1), Some(1)]);
}

/// [MQTT-3.3.2-14] A PUBLISH whose Response Topic has a wildcard is refused where it is made:
/// nothing is stored or sent.
#[test]
fn mqtt_3_3_2_14_a_response_topic_with_a_wildcard_is_refused_before_anything_is_stored() {
    let mut h = Harness::new();
    h.connack(false, None);
    for bad in ["reply/#", "reply/+/x"] {
        let mut p = Publish::new("t/1", "x");
        p.qos = QoS::AtLeastOnce;
        p.properties.response_topic = Some(bad.into());
        assert!(h.session.publish(p).is_err(), "{bad}");
    }
    assert!(h.flush().is_empty());
    assert!(h.store.queue.is_empty());
}

/// [MQTT-4.3.3-3] A QoS 2 PUBLISH stays unacknowledged until its PUBREC: sent again (DUP 1)
/// on a reconnect before it; after it only the PUBREL goes out, never the PUBLISH.
#[test]
fn mqtt_4_3_3_3_a_qos2_publish_is_resent_until_its_pubrec_and_never_after() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    h.session.connection_lost(NOW_MS);
    let sent = h.connack(true, None);
    assert_eq!(publishes(&sent), vec![(1, true, Bytes::from("a"))]);
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.connection_lost(NOW_MS);
    let sent = h.connack(true, None);
    assert_eq!(sent, vec![Packet::PubRel(PubAck::new(1))]);
}

/// [MQTT-4.6.0-4] PUBRELs go out in the order their PUBRECs arrived, also when sent again on
/// a reconnect.
#[test]
fn mqtt_4_6_0_4_pubrels_go_out_in_the_order_their_pubrecs_arrived() {
    let mut h = Harness::new();
    h.connack(false, None);
    for payload in ["a", "b", "c"] {
        h.publish(QoS::ExactlyOnce, payload);
    }
    h.flush();
    let mut released = Vec::new();
    for id in [3, 1, 2] {
        h.session.handle_pubrec(&PubAck::new(id));
        released.extend(h.flush());
    }
    let order = vec![
        Packet::PubRel(PubAck::new(3)),
        Packet::PubRel(PubAck::new(1)),
        Packet::PubRel(PubAck::new(2)),
    ];
    assert_eq!(released, order);
    h.session.connection_lost(NOW_MS);
    assert_eq!(h.connack(true, None), order);
}

/// [MQTT-4.4.0-1] Unanswered PUBLISHes go out again on a reconnect and at no other time: on
/// an open connection, however long, nothing is retransmitted (only PINGREQ keeps it alive).
#[test]
fn mqtt_4_4_0_1_nothing_is_retransmitted_while_the_connection_stays_up() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.server_keep_alive = Some(10);
    let start = Instant::now();
    h.session.handle_connack(&connack, start).unwrap();
    h.flush();
    h.publish(QoS::AtLeastOnce, "a");
    h.publish(QoS::ExactlyOnce, "b");
    assert_eq!(publishes(&h.flush()).len(), 2);
    for minute in 1..=60u64 {
        let now = start + Duration::from_secs(60 * minute);
        h.session.tick(NOW_MS + 60_000 * minute);
        h.session.handle_timeout(now);
        let sent = h.flush();
        assert!(
            sent.iter().all(|p| matches!(p, Packet::PingReq)),
            "minute {minute}: {sent:?}"
        );
        h.session.handle_incoming(Packet::PingResp, now).unwrap();
    }
}

/// [MQTT-4.1.0-1] The session state stays while the connection is open, however far past
/// its Session Expiry Interval: a flow in flight an hour later still completes.
#[test]
fn mqtt_4_1_0_1_session_state_stays_while_the_connection_is_open() {
    let mut options = options();
    options.properties.session_expiry_interval = Some(1);
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.connack(false, None);
    let id = h.publish(QoS::AtLeastOnce, "a");
    h.flush();
    h.session.tick(NOW_MS + 3_600_000);
    h.session
        .handle_timeout(Instant::now() + Duration::from_secs(3600));
    h.flush();
    assert_eq!(h.session.in_flight(), 1);
    assert_eq!(h.store.queue.len(), 1, "its record is kept");
    assert!(!h.events().contains(&Event::SessionExpired));
    h.session.handle_puback(&PubAck::new(1));
    h.flush();
    assert!(h.events().contains(&Event::Delivered {
        id,
        reason: ReasonCode::Success
    }));
}

/// [MQTT-4.9.0-3] With the send quota at zero, only the queue waits: incoming messages are
/// answered, SUBSCRIBE and PINGREQ go out, and a PUBACK frees the quota (a QoS 0 message
/// published meanwhile keeps its place in the queue, behind the QoS 1 one).
#[test]
fn mqtt_4_9_0_3_at_zero_send_quota_answers_requests_and_pings_go_on() {
    let mut h = Harness::new();
    let t0 = Instant::now();
    let mut connack = ConnAck::new(false);
    connack.properties.receive_maximum = Some(1);
    h.session.handle_connack(&connack, t0).unwrap();
    h.flush();
    h.publish(QoS::AtLeastOnce, "takes the quota");
    h.publish(QoS::AtLeastOnce, "waits");
    assert_eq!(publishes(&h.flush()).len(), 1, "the quota is spent");
    h.session
        .handle_publish(super::inbound::incoming(QoS::AtLeastOnce, 7, false))
        .unwrap();
    h.session
        .handle_publish(super::inbound::incoming(QoS::ExactlyOnce, 8, false))
        .unwrap();
    h.session
        .subscribe(
            vec![Subscription::new("s", QoS::AtLeastOnce)],
            SubscribeProperties::default(),
        )
        .unwrap();
    h.publish(QoS::AtMostOnce, "qos 0");
    let sent: Vec<PacketType> = h.flush().iter().map(Packet::packet_type).collect();
    assert_eq!(
        sent,
        vec![
            PacketType::PubAck,
            PacketType::PubRec,
            PacketType::Subscribe
        ],
        "the answers and the request, no PUBLISH"
    );
    let idle = t0 + Duration::from_secs(61);
    h.session.handle_timeout(idle);
    assert_eq!(
        h.session.poll_output(idle).unwrap().send,
        vec![Packet::PingReq]
    );
    h.session.handle_puback(&PubAck::new(1));
    assert_eq!(
        publishes(&h.flush()),
        vec![
            (2, false, Bytes::from("waits")),
            (0, false, Bytes::from("qos 0"))
        ]
    );
}
