//! Connecting, keep alive, requests, disconnects and the session's metadata and
//! expiry.

use super::inbound::incoming;
use super::*;

#[test]
fn mqtt_3_1_2_20_pingreq_after_keep_alive_idle_and_a_missing_pingresp_kills_the_connection() {
    let mut h = Harness::new();
    let t0 = Instant::now();
    let mut connack = ConnAck::new(false);
    connack.properties.server_keep_alive = Some(30); // replaces the client's 60 [MQTT-3.2.2-21]
    h.session.handle_connack(&connack, t0).unwrap();
    while h.session.poll_output(t0).is_some() {}
    assert_eq!(h.session.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    h.session.handle_timeout(t0 + Duration::from_secs(29));
    assert!(h.session.poll_output(t0).is_none());
    let t1 = t0 + Duration::from_secs(30);
    h.session.handle_timeout(t1);
    assert_eq!(
        h.session.poll_output(t1).unwrap().send,
        vec![Packet::PingReq]
    );
    assert_eq!(h.session.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    h.session.handle_incoming(Packet::PingResp, t1).unwrap();
    assert_eq!(h.session.poll_timeout(), Some(t1 + Duration::from_secs(30)));
    let t2 = t1 + Duration::from_secs(30);
    h.session.handle_timeout(t2);
    let _ = h.session.poll_output(t2);
    h.events();
    h.session.handle_timeout(t2 + Duration::from_secs(10));
    assert_eq!(h.events(), vec![Event::KeepAliveTimeout]);
}

#[test]
fn mqtt_3_14_4_1_nothing_follows_disconnect() {
    let mut h = Harness::new();
    let t0 = Instant::now();
    h.session.handle_connack(&ConnAck::new(false), t0).unwrap();
    h.flush();
    // DISCONNECT with a new expiry: its commit and the packet are not yet polled when a
    // PUBLISH arrives and the keep alive runs out.
    h.session.disconnect(ReasonCode::Success, Some(60)).unwrap();
    h.session
        .handle_incoming(Packet::Publish(incoming(QoS::AtLeastOnce, 7, false)), t0)
        .unwrap();
    h.session.handle_timeout(t0 + Duration::from_secs(60));
    let output = h.session.poll_output(t0).unwrap();
    assert!(!output.commit.is_empty(), "the new expiry is committed");
    assert_eq!(
        output.send.last().map(Packet::packet_type),
        Some(PacketType::Disconnect),
        "DISCONNECT is the last packet: {:?}",
        output.send
    );
    // Nor does anything made later go out on this connection.
    h.session
        .handle_incoming(Packet::Publish(incoming(QoS::AtLeastOnce, 8, false)), t0)
        .unwrap();
    h.session.handle_timeout(t0 + Duration::from_secs(120));
    assert!(h.flush().is_empty());
    // The next connection sends again.
    h.session.connection_lost(NOW_MS);
    h.session
        .start_connection(h.session.connect_credentials())
        .unwrap();
    assert_eq!(
        h.flush()
            .iter()
            .map(Packet::packet_type)
            .collect::<Vec<_>>(),
        vec![PacketType::Connect]
    );
}

#[test]
fn keep_alive_zero_turns_pings_off() {
    let mut options = options();
    options.keep_alive = 0;
    let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
    session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn subscribe_and_unsubscribe_report_every_reason_code() {
    let mut h = Harness::new();
    assert!(matches!(
        h.session.subscribe(
            vec![Subscription::new("a/+", QoS::AtLeastOnce)],
            SubscribeProperties::default()
        ),
        Err(RequestError::NotConnected)
    ));
    h.connack(false, None);
    h.events();
    let id = h
        .session
        .subscribe(
            vec![
                Subscription::new("a/+", QoS::ExactlyOnce),
                Subscription::new("b/#", QoS::AtLeastOnce),
            ],
            SubscribeProperties::default(),
        )
        .unwrap();
    let sent = h.flush();
    let Packet::Subscribe(sub) = &sent[0] else {
        panic!("{sent:?}");
    };
    let suback = SubAck {
        packet_id: sub.packet_id,
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::GrantedQos2, ReasonCode::NotAuthorized],
    };
    h.session
        .handle_incoming(Packet::SubAck(suback), Instant::now())
        .unwrap();
    assert_eq!(
        h.events(),
        vec![Event::Subscribed {
            id,
            reason_codes: vec![ReasonCode::GrantedQos2, ReasonCode::NotAuthorized],
            properties: AckProperties::default(),
        }]
    );
    // A SUBACK nobody asked for, or with the wrong count, is a protocol error.
    let stray = SubAck {
        packet_id: sub.packet_id,
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::GrantedQos1],
    };
    assert!(
        h.session
            .handle_incoming(Packet::SubAck(stray), Instant::now())
            .is_err()
    );
    let id = h
        .session
        .unsubscribe(vec!["a/+".into()], UnsubscribeProperties::default())
        .unwrap();
    let sent = h.flush();
    let Packet::Unsubscribe(unsub) = &sent[0] else {
        panic!("{sent:?}");
    };
    let wrong_count = UnsubAck {
        packet_id: unsub.packet_id,
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::Success, ReasonCode::Success],
    };
    assert!(h.session.handle_unsuback(wrong_count).is_err());
    h.session
        .handle_unsuback(UnsubAck {
            packet_id: unsub.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::NoSubscriptionExisted],
        })
        .unwrap();
    assert!(matches!(&h.events()[..], [Event::Unsubscribed { id: got, .. }] if *got == id));
}

#[test]
fn a_request_in_flight_when_the_connection_ends_is_sent_again_under_its_id() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.events();
    let id = h
        .session
        .subscribe(
            vec![Subscription::new("a", QoS::AtMostOnce)],
            SubscribeProperties::default(),
        )
        .unwrap();
    h.flush();
    h.session.connection_lost(NOW_MS);
    let sent = h.connack(true, None);
    let [Packet::Subscribe(again)] = sent.as_slice() else {
        panic!("the SUBSCRIBE again, first, got {sent:?}");
    };
    h.session
        .handle_suback(SubAck {
            packet_id: again.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::Success],
        })
        .unwrap();
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e, Event::Subscribed { id: got, .. } if *got == id)),
        "the answer goes to the request's own id"
    );
}

#[test]
fn the_dispatcher_rejects_what_a_server_never_sends() {
    let mut h = Harness::new();
    let now = Instant::now();
    assert!(
        h.session
            .handle_incoming(Packet::PubAck(PubAck::new(1)), now)
            .is_err(),
        "nothing but CONNACK, AUTH or DISCONNECT before CONNACK"
    );
    h.session
        .handle_incoming(Packet::ConnAck(Box::new(ConnAck::new(false))), now)
        .unwrap();
    let second = h
        .session
        .handle_incoming(Packet::ConnAck(Box::new(ConnAck::new(false))), now);
    assert!(second.is_err(), "a second CONNACK [MQTT-3.2.0-2]");
    assert!(h.session.handle_incoming(Packet::PingReq, now).is_err());
    let auth = Packet::Auth(crate::packet::Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: crate::packet::AuthProperties::default(),
    });
    assert_eq!(
        h.session
            .handle_incoming(auth, now)
            .unwrap_err()
            .reason_code(),
        ReasonCode::BadAuthenticationMethod
    );
}

#[test]
fn server_disconnect_is_reported_and_may_not_set_session_expiry() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.events();
    let mut moved = Disconnect::new(ReasonCode::UseAnotherServer);
    moved.properties.server_reference = Some("other:1883".into());
    h.session
        .handle_incoming(Packet::Disconnect(moved), Instant::now())
        .unwrap();
    assert_eq!(
        h.events(),
        vec![Event::ServerDisconnected {
            reason: ReasonCode::UseAnotherServer,
            reason_string: None,
            server_reference: Some("other:1883".into()),
        }]
    );
    let mut bad = Disconnect::new(ReasonCode::ServerShuttingDown);
    bad.properties.session_expiry_interval = Some(5);
    assert_eq!(
        h.session.handle_disconnect(bad),
        Err(ProtocolViolation::ExpiryFromServer)
    );
}

#[test]
fn client_disconnect_commits_a_new_expiry_and_cannot_extend_zero() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.session
        .disconnect(ReasonCode::NORMAL_DISCONNECTION, Some(60))
        .unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(
        output
            .commit
            .ops()
            .iter()
            .any(|op| matches!(op, StoreOp::SetMeta(m) if m.session_expiry_interval == 60))
    );
    assert!(matches!(&output.send[..], [Packet::Disconnect(_)]));

    let mut zero =
        Session::new(SessionOptions::new("c"), StoredSession::default(), NOW_MS).unwrap();
    zero.handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    assert!(matches!(
        zero.disconnect(ReasonCode::NORMAL_DISCONNECTION, Some(60)),
        Err(RequestError::ExpiryExtended)
    ));
}

#[test]
fn metadata_records_expiry_assigned_identifier_and_when_the_connection_ended() {
    let mut options = options();
    options.client_id = String::new();
    let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
    let mut connack = ConnAck::new(false);
    connack.properties.assigned_client_identifier = Some("auto-9".into());
    connack.properties.session_expiry_interval = Some(120);
    session.handle_connack(&connack, Instant::now()).unwrap();
    session.connection_lost(NOW_MS + 5);
    let mut store = Committed::default();
    let mut metas = Vec::new();
    while let Some(output) = session.poll_output(Instant::now()) {
        store.apply(&output.commit);
        metas.extend(output.commit.ops().iter().filter_map(|op| match op {
            StoreOp::SetMeta(m) => Some(m.clone()),
            _ => None,
        }));
    }
    assert_eq!(
        metas.last(),
        Some(&SessionMeta {
            session_expiry_interval: 120,
            disconnected_at_ms: Some(NOW_MS + 5),
            assigned_client_id: Some("auto-9".into()),
            alive_until_ms: None,
            protocol: ProtocolVersion::V5,
            in_flight_limit: Some(u16::MAX),
            clock: Default::default(),
        })
    );
    // The assigned identifier names the session on the next connection.
    assert_eq!(session.connect_packet().unwrap().client_id, "auto-9");
}

#[test]
fn an_expired_session_is_discarded_locally_on_the_next_start() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.connection_lost(NOW_MS);
    h.flush();
    let mut stored = h.store.stored();
    stored.meta = Some(SessionMeta {
        session_expiry_interval: 60,
        disconnected_at_ms: Some(NOW_MS),
        assigned_client_id: None,
        alive_until_ms: None,
        protocol: ProtocolVersion::V5,
        in_flight_limit: None,
        clock: Default::default(),
    });
    let mut session = Session::new(options(), stored, NOW_MS + 60_000).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| session.poll_event()).collect();
    assert_eq!(events[0], Event::SessionExpired);
    assert_eq!(
        session.in_flight(),
        0,
        "the PUBREL flow the server forgot is gone"
    );
}

#[test]
fn session_expiry_zero_ends_the_session_with_the_connection() {
    let mut session =
        Session::new(SessionOptions::new("c"), StoredSession::default(), NOW_MS).unwrap();
    session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    let mut p = Publish::new("t", "x");
    p.qos = QoS::ExactlyOnce;
    session.publish(p).unwrap();
    let _ = session.poll_output(Instant::now());
    session.handle_pubrec(&PubAck::new(1));
    let _ = session.poll_output(Instant::now());
    session.connection_lost(NOW_MS);
    let events: Vec<Event> = std::iter::from_fn(|| session.poll_event()).collect();
    assert!(events.contains(&Event::SessionExpired));
    assert_eq!(session.in_flight(), 0);
}

#[test]
fn connect_carries_will_credentials_and_every_option() {
    let mut options = options();
    options.will = Some(crate::packet::Will::new("site/7/status", "offline"));
    options.username = Some("gw".into());
    options.password = Some(Bytes::from_static(b"secret"));
    options.properties.receive_maximum = Some(20);
    options.properties.maximum_packet_size = Some(4096);
    options.properties.request_problem_information = Some(true);
    let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
    let connect = session.connect_packet().unwrap();
    assert_eq!(connect.will.unwrap().topic, "site/7/status");
    assert_eq!(connect.username.as_deref(), Some("gw"));
    assert_eq!(connect.properties.receive_maximum, Some(20));
    assert_eq!(connect.properties.session_expiry_interval, Some(3600));
    assert_eq!(session.codec().max_incoming_packet_size, Some(4096));
}

#[test]
fn problem_information_where_the_client_asked_for_none_is_a_protocol_error() {
    let new = |asked: Option<bool>| {
        let mut options = options();
        options.properties.request_problem_information = asked;
        let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
        session
            .handle_connack(&ConnAck::new(false), Instant::now())
            .unwrap();
        session
    };
    let mut with_reason = PubAck::new(1);
    with_reason.properties.reason_string = Some("why".into());
    let mut with_property = PubAck::new(1);
    with_property
        .properties
        .user_properties
        .push(UserProperty::new("k", "v"));
    for packet in [
        Packet::PubAck(with_reason.clone()),
        Packet::PubRec(with_property.clone()),
        Packet::PubComp(with_reason.clone()),
        Packet::PubRel(with_property.clone()),
    ] {
        let refused = new(Some(false))
            .handle_incoming(packet.clone(), Instant::now())
            .unwrap_err();
        assert_eq!(
            refused.reason_code(),
            ReasonCode::ProtocolError,
            "{packet:?}"
        );
        // Allowed when the client asked for it, or left the default (1).
        assert!(
            new(None)
                .handle_incoming(packet.clone(), Instant::now())
                .is_ok()
        );
        assert!(
            new(Some(true))
                .handle_incoming(packet, Instant::now())
                .is_ok()
        );
    }
    // PUBLISH, CONNACK and DISCONNECT may carry them anyway.
    let mut publish = incoming(QoS::AtMostOnce, 0, false);
    publish
        .properties
        .user_properties
        .push(UserProperty::new("k", "v"));
    assert!(
        new(Some(false))
            .handle_incoming(Packet::Publish(publish), Instant::now())
            .is_ok()
    );
    let mut disconnect = Disconnect::new(ReasonCode::ServerShuttingDown);
    disconnect.properties.reason_string = Some("bye".into());
    assert!(
        new(Some(false))
            .handle_incoming(Packet::Disconnect(disconnect), Instant::now())
            .is_ok()
    );
}

#[test]
fn connack_details_reach_the_application_and_its_limits_apply() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.server_reference = Some("backup:1883".into());
    connack.properties.maximum_packet_size = Some(64);
    connack.properties.wildcard_subscription_available = Some(false);
    connack.properties.subscription_identifiers_available = Some(false);
    connack.properties.shared_subscription_available = Some(false);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    assert!(matches!(
        &h.events()[..],
        [Event::Connected { properties, .. }] if properties.server_reference.as_deref() == Some("backup:1883")
    ));
    assert_eq!(h.session.codec().max_outgoing_packet_size, Some(64));
    assert!(matches!(
        h.session.publish(Publish::new("t", vec![0u8; 100])),
        Err(PublishError::Invalid(_))
    ));
    for (filter, sub_id) in [("a/+", None), ("$share/g/a", None), ("a", Some(3))] {
        let result = h.session.subscribe(
            vec![Subscription::new(filter, QoS::AtMostOnce)],
            SubscribeProperties {
                subscription_identifier: sub_id,
                user_properties: vec![],
            },
        );
        assert!(
            matches!(result, Err(RequestError::Unsupported(_))),
            "{filter}"
        );
    }
}

#[test]
fn a_violation_closes_with_disconnect_and_its_reason_code() {
    let mut h = Harness::new();
    h.connack(false, None);
    let err = h
        .session
        .handle_incoming(
            Packet::ConnAck(Box::new(ConnAck::new(false))),
            Instant::now(),
        )
        .unwrap_err();
    h.session.close_with(err.reason_code());
    assert_eq!(
        h.flush(),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ProtocolError
        ))]
    );
}

#[test]
fn connect_is_the_first_output_of_a_new_connection_with_the_attempts_credentials() {
    let mut options = options();
    options.username = Some("configured".into());
    options.properties.maximum_packet_size = Some(4096);
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    // Offline: a publish queues, nothing is sent.
    h.publish(QoS::AtLeastOnce, "queued");
    assert!(h.flush().is_empty());
    let mut credentials = h.session.connect_credentials();
    assert_eq!(credentials.username.as_deref(), Some("configured"));
    credentials.password = Some(Bytes::from_static(b"fresh"));
    credentials.user_properties = vec![UserProperty::new("attempt", "2")];
    h.session.start_connection(credentials).unwrap();
    let sent = h.flush();
    let [Packet::Connect(connect)] = sent.as_slice() else {
        panic!("CONNECT alone before CONNACK, got {sent:?}");
    };
    assert_eq!(connect.username.as_deref(), Some("configured"));
    assert_eq!(connect.password.as_deref(), Some(&b"fresh"[..]));
    assert_eq!(
        connect.properties.user_properties,
        vec![UserProperty::new("attempt", "2")]
    );
    assert_eq!(connect.properties.maximum_packet_size, Some(4096));
    // The queued publish goes out once the server accepted the connection.
    let sent = h.connack(false, None);
    assert_eq!(publishes(&sent).len(), 1);
    assert!(!sent.iter().any(|p| matches!(p, Packet::Connect(_))));
}

#[test]
fn a_connect_that_breaks_the_specification_is_refused_and_nothing_is_sent() {
    let mut h = Harness::new();
    let mut credentials = h.session.connect_credentials();
    credentials.username = Some("u".repeat(70_000));
    assert!(matches!(
        h.session.start_connection(credentials),
        Err(ConnectPacketError::Invalid(_))
    ));
    assert!(h.flush().is_empty());
}
