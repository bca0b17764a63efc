//! The client rules of MQTT 3.1.1 that the engine keeps, one test per rule or group, each
//! packet the session sends encoded as 3.1.1 (`v311_tests::flush`). RULES-311.md cites them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::v311_tests::{NOW_MS, connected, flush, options, session};
use super::*;
use crate::packet::*;

fn publish(qos: QoS, payload: &'static str) -> Publish {
    let mut p = Publish::new("t/1", payload);
    p.qos = qos;
    p
}

fn inbound(qos: QoS, packet_id: u16, dup: bool) -> Packet {
    let mut p = Publish::new("in/1", "m");
    p.qos = qos;
    p.packet_id = packet_id;
    p.dup = dup;
    Packet::Publish(p)
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn tags(events: &[Event]) -> Vec<MessageTag> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { tag, .. } => Some(*tag),
            _ => None,
        })
        .collect()
}

fn reconnect(s: &mut Session, session_present: bool) -> Vec<Packet> {
    s.connection_lost(NOW_MS);
    s.start_connection(s.connect_credentials()).unwrap();
    flush(s);
    s.handle_incoming(
        Packet::ConnAck(Box::new(ConnAck::new(session_present))),
        Instant::now(),
    )
    .unwrap();
    flush(s).0
}

fn manual(expiry: u32) -> Session {
    let mut o = options(expiry);
    o.manual_ack = true;
    connected(o, false)
}

/// [MQTT-3.1.0-1] Whatever waits, CONNECT is the first packet on a new connection, alone
/// until CONNACK.
#[test]
fn mqtt311_3_1_0_1_connect_goes_first_and_alone() {
    let mut s = session(options(3600));
    s.publish(publish(QoS::AtLeastOnce, "waiting")).unwrap();
    flush(&mut s);
    s.start_connection(s.connect_credentials()).unwrap();
    let (sent, _) = flush(&mut s);
    assert!(matches!(sent.as_slice(), [Packet::Connect(c)] if !c.clean_start));
    s.handle_incoming(
        Packet::ConnAck(Box::new(ConnAck::new(false))),
        Instant::now(),
    )
    .unwrap();
    assert!(matches!(flush(&mut s).0.as_slice(), [Packet::Publish(_)]));
}

/// [MQTT-3.1.3-7] An empty Client Identifier goes with Clean Session 1, even for a session
/// asked to outlive its connections (the server would refuse it otherwise).
#[test]
fn mqtt311_3_1_3_7_an_empty_client_identifier_goes_with_clean_session_1() {
    let mut o = options(3600);
    o.client_id.clear();
    let mut s = session(o);
    s.start_connection(s.connect_credentials()).unwrap();
    let (sent, _) = flush(&mut s);
    assert!(
        matches!(sent.as_slice(), [Packet::Connect(c)] if c.clean_start && c.client_id.is_empty()),
        "{sent:?}"
    );
}

/// [MQTT-2.3.1-1, MQTT-2.3.1-2, MQTT-2.3.1-3, MQTT-3.3.1-1, MQTT-4.4.0-1, MQTT-4.6.0-1] Every
/// new QoS 1/2 PUBLISH, SUBSCRIBE and UNSUBSCRIBE gets a non-zero identifier no other holds; a
/// reconnect with the session present sends the unanswered PUBLISHes again, in their order,
/// with their identifiers and DUP 1, and the PUBRELs awaiting PUBCOMP.
#[test]
fn mqtt311_identifiers_are_free_and_kept_when_sent_again_in_order() {
    let mut s = connected(options(3600), false);
    for (qos, payload) in [
        (QoS::AtLeastOnce, "a"),
        (QoS::ExactlyOnce, "b"),
        (QoS::AtLeastOnce, "c"),
        (QoS::ExactlyOnce, "d"),
    ] {
        s.publish(publish(qos, payload)).unwrap();
    }
    s.subscribe(
        vec![Subscription::new("s/#", QoS::AtLeastOnce)],
        SubscribeProperties::default(),
    )
    .unwrap();
    s.unsubscribe(vec!["u".into()], UnsubscribeProperties::default())
        .unwrap();
    let (sent, _) = flush(&mut s);
    let ids: Vec<u16> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.packet_id),
            Packet::Subscribe(s) => Some(s.packet_id),
            Packet::Unsubscribe(u) => Some(u.packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 6);
    assert!(ids.iter().all(|id| *id != 0));
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 6, "{ids:?}");
    let first: Vec<(u16, Bytes)> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.packet_id, p.payload.clone())),
            _ => None,
        })
        .collect();
    // "b" gets its PUBREC: its PUBREL is what goes again, never its PUBLISH.
    let b = first[1].0;
    s.handle_incoming(Packet::PubRec(PubAck::new(b)), Instant::now())
        .unwrap();
    flush(&mut s);
    let again = reconnect(&mut s, true);
    // The requests still unanswered go again too; of the flows, the PUBREL comes first.
    let flows: Vec<&Packet> = again
        .iter()
        .filter(|p| matches!(p, Packet::Publish(_) | Packet::PubRel(_)))
        .collect();
    assert_eq!(flows.first(), Some(&&Packet::PubRel(PubAck::new(b))));
    let resent: Vec<(u16, Bytes, bool)> = again
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.packet_id, p.payload.clone(), p.dup)),
            _ => None,
        })
        .collect();
    let expected: Vec<(u16, Bytes, bool)> = first
        .iter()
        .filter(|(id, _)| *id != b)
        .map(|(id, payload)| (*id, payload.clone(), true))
        .collect();
    assert_eq!(resent, expected);
}

/// [MQTT-3.1.2-23] With Keep Alive set, a client that sent nothing for that long sends
/// PINGREQ.
#[test]
fn mqtt311_3_1_2_23_pingreq_when_idle_for_the_keep_alive() {
    let mut o = options(3600);
    o.keep_alive = 30;
    let start = Instant::now();
    let mut s = session(o);
    s.start_connection(s.connect_credentials()).unwrap();
    flush(&mut s);
    s.handle_incoming(Packet::ConnAck(Box::new(ConnAck::new(false))), start)
        .unwrap();
    while s.poll_output(start).is_some() {}
    s.handle_timeout(start + Duration::from_secs(29));
    assert!(flush(&mut s).0.is_empty());
    s.handle_timeout(start + Duration::from_secs(30));
    assert_eq!(flush(&mut s).0, vec![Packet::PingReq]);
}

/// [MQTT-3.14.4-1, MQTT-3.14.4-2] DISCONNECT is the last packet on its connection: what is
/// made after it waits for the next connection.
#[test]
fn mqtt311_3_14_4_nothing_follows_disconnect() {
    let mut s = connected(options(3600), false);
    s.disconnect(ReasonCode::Success, None).unwrap();
    s.publish(publish(QoS::AtLeastOnce, "late")).unwrap();
    let (sent, _) = flush(&mut s);
    assert_eq!(
        sent.last(),
        Some(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
    );
    assert!(
        !sent.iter().any(|p| matches!(p, Packet::Publish(_))),
        "{sent:?}"
    );
}

/// [MQTT-4.3.1-1, MQTT-4.3.2-1, MQTT-4.3.3-1, MQTT-2.3.1-5] QoS 0 goes out once, DUP 0 and
/// no identifier; QoS 1 stays unacknowledged until PUBACK; QoS 2 until PUBREC, then its
/// PUBREL until PUBCOMP.
#[test]
fn mqtt311_4_3_the_client_as_sender_at_each_qos() {
    let mut s = connected(options(3600), false);
    let mut zero = publish(QoS::AtMostOnce, "0");
    zero.dup = true;
    s.publish(zero).unwrap();
    s.publish(publish(QoS::AtLeastOnce, "1")).unwrap();
    s.publish(publish(QoS::ExactlyOnce, "2")).unwrap();
    let (sent, _) = flush(&mut s);
    let [
        Packet::Publish(p0),
        Packet::Publish(p1),
        Packet::Publish(p2),
    ] = sent.as_slice()
    else {
        panic!("{sent:?}");
    };
    assert!(!p0.dup && p0.packet_id == 0);
    assert!(!p1.dup && p1.qos == QoS::AtLeastOnce && p1.packet_id != 0);
    assert!(!p2.dup && p2.qos == QoS::ExactlyOnce && p2.packet_id != 0);
    assert_eq!(s.in_flight(), 2);
    s.handle_incoming(Packet::PubAck(PubAck::new(p1.packet_id)), Instant::now())
        .unwrap();
    s.handle_incoming(Packet::PubRec(PubAck::new(p2.packet_id)), Instant::now())
        .unwrap();
    let (sent, _) = flush(&mut s);
    assert_eq!(sent, vec![Packet::PubRel(PubAck::new(p2.packet_id))]);
    assert_eq!(s.in_flight(), 1, "the PUBREL awaits PUBCOMP");
    s.handle_incoming(Packet::PubComp(PubAck::new(p2.packet_id)), Instant::now())
        .unwrap();
    flush(&mut s);
    assert_eq!(s.in_flight(), 0);
}

/// [MQTT-3.3.4-1, MQTT-4.3.2-2, MQTT-4.3.3-2, MQTT-2.3.1-6, MQTT-4.5.0-2] The client as
/// receiver answers each PUBLISH as its QoS asks, with its identifier, whatever the
/// application does: nothing for QoS 0, PUBACK for QoS 1, PUBREC for QoS 2 (again for a
/// repeat, which is not delivered twice), PUBCOMP for the PUBREL; after that the identifier
/// is a new message.
#[test]
fn mqtt311_4_3_the_client_as_receiver_at_each_qos() {
    let mut s = connected(options(3600), false);
    let now = Instant::now();
    s.handle_incoming(inbound(QoS::AtMostOnce, 0, false), now)
        .unwrap();
    s.handle_incoming(inbound(QoS::AtLeastOnce, 5, false), now)
        .unwrap();
    s.handle_incoming(inbound(QoS::ExactlyOnce, 6, false), now)
        .unwrap();
    let (sent, _) = flush(&mut s);
    assert_eq!(
        sent,
        vec![
            Packet::PubAck(PubAck::new(5)),
            Packet::PubRec(PubAck::new(6))
        ]
    );
    s.handle_incoming(inbound(QoS::ExactlyOnce, 6, true), now)
        .unwrap();
    assert_eq!(flush(&mut s).0, vec![Packet::PubRec(PubAck::new(6))]);
    assert_eq!(
        tags(&events(&mut s)).len(),
        3,
        "the repeat is not delivered"
    );
    s.handle_incoming(Packet::PubRel(PubAck::new(6)), now)
        .unwrap();
    assert_eq!(flush(&mut s).0, vec![Packet::PubComp(PubAck::new(6))]);
    // Identifier 6 is free again: a new message.
    s.handle_incoming(inbound(QoS::ExactlyOnce, 6, false), now)
        .unwrap();
    assert_eq!(flush(&mut s).0, vec![Packet::PubRec(PubAck::new(6))]);
    assert_eq!(tags(&events(&mut s)).len(), 1);
}

/// [MQTT-4.6.0-2, MQTT-4.6.0-3, MQTT-4.6.0-4] PUBACKs and PUBRECs go out in the order the
/// PUBLISHes arrived, whatever order the application acks them in; PUBRELs in the order the
/// PUBRECs arrived.
#[test]
fn mqtt311_4_6_0_acks_and_pubrels_keep_their_order() {
    let mut s = manual(3600);
    let now = Instant::now();
    for (qos, id) in [
        (QoS::AtLeastOnce, 1),
        (QoS::ExactlyOnce, 2),
        (QoS::AtLeastOnce, 3),
    ] {
        s.handle_incoming(inbound(qos, id, false), now).unwrap();
    }
    let t = tags(&events(&mut s));
    for tag in [t[2], t[0], t[1]] {
        s.ack(tag).unwrap();
    }
    assert_eq!(
        flush(&mut s).0,
        vec![
            Packet::PubAck(PubAck::new(1)),
            Packet::PubRec(PubAck::new(2)),
            Packet::PubAck(PubAck::new(3))
        ]
    );
    for payload in ["a", "b", "c"] {
        s.publish(publish(QoS::ExactlyOnce, payload)).unwrap();
    }
    let ids: Vec<u16> = flush(&mut s)
        .0
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.packet_id),
            _ => None,
        })
        .collect();
    let mut released = Vec::new();
    for id in [ids[2], ids[0], ids[1]] {
        s.handle_incoming(Packet::PubRec(PubAck::new(id)), now)
            .unwrap();
        released.extend(flush(&mut s).0);
    }
    let order: Vec<Packet> = [ids[2], ids[0], ids[1]]
        .iter()
        .map(|id| Packet::PubRel(PubAck::new(*id)))
        .collect();
    assert_eq!(released, order);
}

/// [MQTT-2.3.1-7, MQTT-3.8.4-2, MQTT-3.8.4-5, MQTT-3.9.3-1, MQTT-3.10.4-4] The client matches
/// SUBACK and UNSUBACK to its request by identifier, takes one return code per filter in the
/// filters' order, and refuses a SUBACK for no request or with another count.
#[test]
fn mqtt311_suback_and_unsuback_answer_their_request_one_code_per_filter_in_order() {
    let now = Instant::now();
    let suback = |packet_id, codes: Vec<ReasonCode>| {
        Packet::SubAck(SubAck {
            packet_id,
            properties: AckProperties::default(),
            reason_codes: codes,
        })
    };
    let (mut s, subscribe) = subscribed_to_two_filters();
    assert!(
        s.handle_incoming(
            suback(subscribe.packet_id + 1, vec![ReasonCode::Success; 2]),
            now
        )
        .is_err(),
        "a SUBACK for no request"
    );
    let (mut s, subscribe) = subscribed_to_two_filters();
    assert!(
        s.handle_incoming(
            suback(subscribe.packet_id, vec![ReasonCode::GrantedQos2]),
            now
        )
        .is_err(),
        "one code for two filters"
    );
    let (mut s, subscribe) = subscribed_to_two_filters();
    s.handle_incoming(
        suback(
            subscribe.packet_id,
            vec![ReasonCode::GrantedQos2, ReasonCode::UnspecifiedError],
        ),
        now,
    )
    .unwrap();
    let codes = events(&mut s).into_iter().find_map(|e| match e {
        Event::Subscribed { reason_codes, .. } => Some(reason_codes),
        _ => None,
    });
    assert_eq!(
        codes,
        Some(vec![ReasonCode::GrantedQos2, ReasonCode::UnspecifiedError])
    );
    s.unsubscribe(vec!["a".into()], UnsubscribeProperties::default())
        .unwrap();
    let (sent, _) = flush(&mut s);
    let [Packet::Unsubscribe(unsubscribe)] = sent.as_slice() else {
        panic!("{sent:?}");
    };
    s.handle_incoming(
        Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        }),
        now,
    )
    .unwrap();
    assert!(
        events(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Unsubscribed { .. }))
    );
}

/// A connected session that sent one SUBSCRIBE of two filters, and that SUBSCRIBE.
fn subscribed_to_two_filters() -> (Session, Subscribe) {
    let mut s = connected(options(3600), false);
    s.subscribe(
        vec![
            Subscription::new("a", QoS::ExactlyOnce),
            Subscription::new("b", QoS::AtLeastOnce),
        ],
        SubscribeProperties::default(),
    )
    .unwrap();
    let (sent, _) = flush(&mut s);
    match sent.as_slice() {
        [Packet::Subscribe(subscribe)] => {
            let subscribe = subscribe.clone();
            (s, subscribe)
        }
        other => panic!("one SUBSCRIBE, got {other:?}"),
    }
}

/// [MQTT-4.8.0-1] A protocol violation by the server ends the connection (3.1.1: closed,
/// without DISCONNECT): a PUBLISH reusing an identifier still unanswered.
#[test]
fn mqtt311_4_8_0_1_a_reused_identifier_is_a_violation_closed_without_disconnect() {
    let mut s = manual(3600);
    let now = Instant::now();
    s.handle_incoming(inbound(QoS::AtLeastOnce, 4, false), now)
        .unwrap();
    let violation = s
        .handle_incoming(inbound(QoS::ExactlyOnce, 4, false), now)
        .unwrap_err();
    assert_eq!(violation.reason_code(), ReasonCode::ProtocolError);
    s.close_with(violation.reason_code());
    assert!(flush(&mut s).0.is_empty(), "no DISCONNECT in 3.1.1");
}
