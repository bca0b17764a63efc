//! What outlives a connection: forwarded messages, subscriptions made again, the
//! alive-until time and queued messages' expiry.

use super::inbound::incoming;
use super::*;

#[test]
fn mqtt_3_3_4_6_a_forwarded_message_loses_its_subscription_identifiers_and_wire_fields() {
    let mut h = Harness::new();
    h.connack(false, None);
    // A message as the server delivered it, forwarded as it is.
    let mut forwarded = incoming(QoS::AtLeastOnce, 77, true);
    forwarded.properties.subscription_identifiers = vec![7, 9];
    forwarded.properties.topic_alias = Some(3);
    h.session.publish(forwarded).unwrap();
    let sent = h.flush();
    let [Packet::Publish(p)] = sent.as_slice() else {
        panic!("one PUBLISH, got {sent:?}");
    };
    assert!(p.properties.subscription_identifiers.is_empty());
    assert!(!p.dup, "a first transmission");
    assert_ne!(
        p.properties.topic_alias,
        Some(3),
        "the session's own alias, if any"
    );
    // A message in flight keeps its queue record: that is the flow's record.
    assert!(h.store.outbound.is_empty());
    let Some(stored) = h.store.queue.values().next().cloned() else {
        panic!("the flow's record");
    };
    let back = decode_publish(&stored.packet).unwrap();
    assert!(back.properties.subscription_identifiers.is_empty());
}

#[test]
fn granted_subscriptions_are_kept_and_made_again_first_when_the_server_lost_the_session() {
    let mut h = Harness::new();
    h.connack(false, None);
    let properties = SubscribeProperties {
        subscription_identifier: Some(4),
        ..SubscribeProperties::default()
    };
    h.session
        .subscribe(
            vec![
                Subscription::new("plant/+/telemetry", QoS::ExactlyOnce),
                Subscription::new("forbidden/#", QoS::AtLeastOnce),
            ],
            properties,
        )
        .unwrap();
    let sent = h.flush();
    let Some(Packet::Subscribe(subscribe)) = sent.first() else {
        panic!("SUBSCRIBE, got {sent:?}");
    };
    h.session
        .handle_suback(SubAck {
            packet_id: subscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::GrantedQos2, ReasonCode::NotAuthorized],
        })
        .unwrap();
    h.flush();
    let kept: Vec<&str> = h.store.subscriptions.keys().map(String::as_str).collect();
    assert_eq!(kept, ["plant/+/telemetry"], "only what was granted is kept");

    // A restart from the store, a publish made offline, then a server without the session.
    h.crash();
    h.publish(QoS::AtLeastOnce, "queued");
    let sent = h.connack(false, None);
    let Some(Packet::Subscribe(again)) = sent.first() else {
        panic!("SUBSCRIBE before anything else, got {sent:?}");
    };
    assert_eq!(again.subscriptions[0].filter, "plant/+/telemetry");
    assert_eq!(again.subscriptions[0].options.qos, QoS::ExactlyOnce);
    assert_eq!(again.properties.subscription_identifier, Some(4));
    assert_eq!(publishes(&sent).len(), 1, "the queued publish follows");
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::Connected {
            resubscribed: 1,
            ..
        }
    )));

    // The answer lost with the connection: made again even though the server resumes.
    h.session.connection_lost(NOW_MS);
    let sent = h.connack(true, None);
    let resent: Vec<&Packet> = sent
        .iter()
        .filter(|p| matches!(p, Packet::Subscribe(_)))
        .collect();
    assert_eq!(
        resent.len(),
        1,
        "an unanswered restore is made again: {sent:?}"
    );
    let Some(Packet::Subscribe(again)) = resent.first() else {
        unreachable!()
    };
    h.session
        .handle_suback(SubAck {
            packet_id: again.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::GrantedQos2],
        })
        .unwrap();
    h.flush();
    h.session.connection_lost(NOW_MS);
    let sent = h.connack(true, None);
    assert!(
        !sent.iter().any(|p| matches!(p, Packet::Subscribe(_))),
        "a resumed session keeps its subscriptions on the server"
    );

    // Unsubscribed: forgotten in the store too.
    h.session
        .unsubscribe(
            vec!["plant/+/telemetry".into()],
            UnsubscribeProperties::default(),
        )
        .unwrap();
    let sent = h.flush();
    let Some(Packet::Unsubscribe(unsubscribe)) = sent.first() else {
        panic!("UNSUBSCRIBE, got {sent:?}");
    };
    h.session
        .handle_unsuback(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::Success],
        })
        .unwrap();
    h.flush();
    assert!(h.store.subscriptions.is_empty());
    h.crash();
    assert!(
        !h.connack(false, None)
            .iter()
            .any(|p| matches!(p, Packet::Subscribe(_)))
    );
}

/// The metadata the outputs committed last, if any.
fn last_meta(h: &mut Harness) -> Option<SessionMeta> {
    let mut meta = None;
    while let Some(output) = h.session.poll_output(Instant::now()) {
        h.store.apply(&output.commit);
        for op in output.commit.ops() {
            if let StoreOp::SetMeta(m) = op {
                meta = Some(m.clone());
            }
        }
    }
    meta
}

#[test]
fn a_kill_while_connected_expires_the_session_locally_once_alive_until_and_expiry_passed() {
    let mut options = options();
    options.properties.session_expiry_interval = Some(80); // stamps every 10 s
    options.keep_alive = 20; // the server notices a dead connection within 30 s
    let mut h = Harness {
        session: Session::new(options.clone(), StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    let connected = last_meta(&mut h).unwrap();
    assert_eq!(
        connected.alive_until_ms, None,
        "unknown until the first stamp"
    );
    assert_eq!(h.session.next_alive_ms(), Some(0), "due at once");
    h.session.note_alive(NOW_MS);
    let stamped = last_meta(&mut h).unwrap();
    assert_eq!(stamped.alive_until_ms, Some(NOW_MS + 20_000 + 30_000));
    h.session.note_alive(NOW_MS + 9_999);
    assert!(last_meta(&mut h).is_none(), "not due within the interval");
    assert_eq!(h.session.next_alive_ms(), Some(NOW_MS + 10_000));
    h.session.note_alive(NOW_MS + 10_000);
    let meta = last_meta(&mut h).unwrap();
    let alive_until = NOW_MS + 10_000 + 20_000 + 30_000;
    assert_eq!(meta.alive_until_ms, Some(alive_until));

    // Killed here. A restart before alive-until + expiry keeps the session...
    let stored = |meta: &SessionMeta| StoredSession {
        meta: Some(meta.clone()),
        ..StoredSession::default()
    };
    let mut early = Session::new(options.clone(), stored(&meta), alive_until + 79_999).unwrap();
    assert_eq!(early.poll_event(), None);
    // ...one after it knows the server has let it expire.
    let mut late = Session::new(options.clone(), stored(&meta), alive_until + 80_000).unwrap();
    assert_eq!(late.poll_event(), Some(Event::SessionExpired));

    // A clean loss of the connection says when it ended instead.
    h.session.connection_lost(NOW_MS + 12_000);
    let ended = last_meta(&mut h).unwrap();
    assert_eq!(ended.disconnected_at_ms, Some(NOW_MS + 12_000));
    assert_eq!(ended.alive_until_ms, None);
    assert_eq!(
        h.session.next_alive_ms(),
        None,
        "no stamps without a connection"
    );

    // Without keep alive nothing bounds when the server notices: never stamped.
    let mut options = options;
    options.keep_alive = 0;
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    last_meta(&mut h);
    h.session.note_alive(NOW_MS);
    assert!(last_meta(&mut h).is_none());
}

#[test]
fn queued_messages_go_out_with_the_remaining_expiry_and_expired_ones_are_never_sent() {
    let mut h = Harness::new();
    let expiring = |payload: &'static str, secs: Option<u32>| {
        let mut p = Publish::new("t/1", payload);
        p.qos = QoS::AtLeastOnce;
        p.properties.message_expiry_interval = secs;
        p
    };
    // Offline: all three wait; the clock is NOW_MS.
    let short = h.session.publish(expiring("short", Some(10))).unwrap();
    h.session.publish(expiring("long", Some(100))).unwrap();
    h.session.publish(expiring("forever", None)).unwrap();
    h.flush();
    assert_eq!(
        h.store
            .queue
            .values()
            .map(|q| q.expires_at_ms)
            .collect::<Vec<_>>(),
        vec![Some(NOW_MS + 10_000), Some(NOW_MS + 100_000), None],
        "the deadline is stored with the message"
    );
    // The first tick stamps the session's clock; the next tick is due at the first deadline.
    h.session.tick(NOW_MS);
    assert_eq!(h.session.next_tick_ms(), Some(NOW_MS + 10_000));
    h.session.tick(NOW_MS + 9_999);
    assert!(h.events().is_empty());
    h.session.tick(NOW_MS + 10_000);
    assert_eq!(
        h.events(),
        vec![Event::Expired {
            id: short,
            topic: "t/1".into()
        }]
    );
    h.flush();
    assert_eq!(h.store.queue.len(), 2, "dropped from the store");

    // 30.5 s later the broker is back: 69.5 s remain, sent as 70.
    h.session.tick(NOW_MS + 30_500);
    let sent = h.connack(false, None);
    let intervals: Vec<Option<u32>> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.properties.message_expiry_interval),
            _ => None,
        })
        .collect();
    assert_eq!(intervals, vec![Some(70), None]);

    // A restart after the deadline of a stored message drops it at once.
    let mut h = Harness::new();
    h.session.publish(expiring("stale", Some(5))).unwrap();
    h.flush();
    let mut restarted = Session::new(options(), h.store.stored(), NOW_MS + 5_000).unwrap();
    assert!(matches!(
        restarted.poll_event(),
        Some(Event::Expired { .. })
    ));
    let output = restarted.poll_output(Instant::now()).unwrap();
    assert!(matches!(output.commit.ops(), [StoreOp::RemoveQueue { .. }]));
}

/// [MQTT-4.3.3-7] Once its PUBLISH went out, a message no longer expires: past its deadline
/// it is sent again on the next connection (and after a restart), never dropped as expired.
#[test]
fn mqtt_4_3_3_7_a_message_sent_once_never_expires() {
    let mut h = Harness::new();
    h.connack(false, None);
    let mut p = Publish::new("t/1", "sent");
    p.qos = QoS::ExactlyOnce;
    p.properties.message_expiry_interval = Some(5);
    h.session.publish(p).unwrap();
    assert_eq!(publishes(&h.flush()).len(), 1);
    h.session.connection_lost(NOW_MS);
    h.session.tick(NOW_MS + 60_000);
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, Event::Expired { .. })),
        "a message in flight does not expire"
    );
    let sent = h.connack(true, None);
    assert_eq!(publishes(&sent), vec![(1, true, Bytes::from("sent"))]);
    // Restarted long after its deadline: still in flight, still resent.
    h.flush();
    let mut restarted = Session::new(options(), h.store.stored(), NOW_MS + 600_000).unwrap();
    assert!(
        !std::iter::from_fn(|| restarted.poll_event()).any(|e| matches!(e, Event::Expired { .. })),
        "not expired at a restart either"
    );
    assert_eq!(restarted.in_flight() as u64 + restarted.queued(), 1);
}

/// [MQTT-4.3.3-7] After a restart, the messages the last connection may have sent (as many
/// of the oldest as its in-flight limit, also beyond the queue window in memory) are kept
/// from expiring; one that never went out expires as before.
#[test]
fn mqtt_4_3_3_7_after_a_restart_only_what_may_have_gone_out_is_kept_from_expiring() {
    let mut options = options();
    options.queue_window = crate::store::QueueWindow::new(1, 1 << 20);
    let mut h = Harness {
        session: Session::new(options.clone(), StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    let mut sent = h.connack(false, Some(2));
    for payload in ["a", "b", "c"] {
        let mut p = Publish::new("t/1", payload);
        p.qos = QoS::AtLeastOnce;
        p.properties.message_expiry_interval = Some(5);
        h.session.publish(p).unwrap();
    }
    let read_on = |h: &mut Harness, sent: &mut Vec<Packet>| {
        for _ in 0..6 {
            if let Some(read) = h.session.poll_queue_read() {
                let records = h.store.read_queue(read.from, read.window);
                h.session.queue_read(records).unwrap();
            }
            sent.extend(h.flush());
        }
    };
    read_on(&mut h, &mut sent);
    assert_eq!(publishes(&sent).len(), 2, "a and b in flight, c waits");
    // Killed; started again a minute later, with one message of the queue in memory.
    h.session = Session::new(
        options.clone(),
        h.store.resumed(options.queue_window),
        NOW_MS + 60_000,
    )
    .unwrap();
    h.session.tick(NOW_MS + 60_000);
    let mut events = h.events();
    let mut sent = h.connack(true, None);
    read_on(&mut h, &mut sent);
    events.extend(h.events());
    assert_eq!(
        publishes(&sent),
        vec![(1, true, Bytes::from("a")), (2, true, Bytes::from("b"))],
        "what may have gone out is sent again"
    );
    let expired: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Expired { .. }))
        .collect();
    assert_eq!(expired.len(), 1, "c expired: {events:?}");
}

/// The age of a backlog: when the oldest message still waiting was accepted, kept across a
/// restart (from its record), and moving on as messages go out.
#[test]
fn the_oldest_waiting_message_is_known_by_when_it_was_accepted() {
    let mut h = Harness::new();
    assert_eq!(h.session.oldest_queued_at_ms(), None);
    h.session.tick(NOW_MS);
    h.publish(QoS::AtLeastOnce, "first");
    h.session.tick(NOW_MS + 5_000);
    h.publish(QoS::AtLeastOnce, "second");
    h.flush();
    assert_eq!(h.session.oldest_queued_at_ms(), Some(NOW_MS));
    h.crash();
    assert_eq!(
        h.session.oldest_queued_at_ms(),
        Some(NOW_MS),
        "after a restart"
    );
    h.connack(false, Some(1));
    assert_eq!(
        h.session.oldest_queued_at_ms(),
        Some(NOW_MS + 5_000),
        "the first went out; the second waits"
    );
}
