//! Requests that change the server's session go out only once recorded, and a request whose
//! answer never came is sent again until it has one.

use super::*;
use crate::session::subscriptions::{GRANTED, REQUESTED};

fn subscribe(h: &mut Harness, filter: &str, qos: QoS) -> RequestId {
    h.session
        .subscribe(
            vec![Subscription::new(filter, qos)],
            SubscribeProperties::default(),
        )
        .unwrap()
}

fn unsubscribe(h: &mut Harness, filter: &str) -> RequestId {
    h.session
        .unsubscribe(vec![filter.to_owned()], UnsubscribeProperties::default())
        .unwrap()
}

/// The stored record of `filter`, decoded.
fn record(h: &Harness, filter: &str) -> Option<Packet> {
    let stored = h.store.subscriptions.get(filter)?;
    let mut buf = bytes::BytesMut::from(&stored.packet[..]);
    match Codec::default().decode(&mut buf) {
        Ok(Decoded::Packet(packet)) => Some(packet),
        other => panic!("a record that does not decode: {other:?}"),
    }
}

fn answer_all(h: &mut Harness, sent: &[Packet], code: ReasonCode) {
    for packet in sent {
        match packet {
            Packet::Subscribe(s) => h
                .session
                .handle_suback(SubAck {
                    packet_id: s.packet_id,
                    properties: AckProperties::default(),
                    reason_codes: vec![code; s.subscriptions.len()],
                })
                .unwrap(),
            Packet::Unsubscribe(u) => h
                .session
                .handle_unsuback(UnsubAck {
                    packet_id: u.packet_id,
                    properties: AckProperties::default(),
                    reason_codes: vec![ReasonCode::Success; u.filters.len()],
                })
                .unwrap(),
            _ => {}
        }
    }
    h.flush();
}

fn requests(sent: &[Packet]) -> Vec<String> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Subscribe(s) => Some(format!("SUBSCRIBE {}", s.subscriptions[0].filter)),
            Packet::Unsubscribe(u) => Some(format!("UNSUBSCRIBE {}", u.filters[0])),
            _ => None,
        })
        .collect()
}

#[test]
fn subscribe_and_unsubscribe_go_out_only_after_the_commit_that_records_them() {
    let mut h = Harness::new();
    h.connack(false, None);
    subscribe(&mut h, "plant/#", QoS::ExactlyOnce);
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(
        output.early.is_empty(),
        "nothing goes out before the commit"
    );
    assert!(matches!(output.send.as_slice(), [Packet::Subscribe(_)]));
    h.store.apply(&output.commit);
    h.session.durable(output.generation);
    assert!(
        matches!(record(&h, "plant/#"), Some(Packet::Subscribe(s)) if s.packet_id == REQUESTED),
        "the SUBSCRIBE's commit records it as asked for"
    );
    answer_all(&mut h, &output.send, ReasonCode::GrantedQos2);
    assert!(matches!(record(&h, "plant/#"), Some(Packet::Subscribe(s)) if s.packet_id == GRANTED));

    unsubscribe(&mut h, "plant/#");
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(output.early.is_empty());
    assert!(matches!(output.send.as_slice(), [Packet::Unsubscribe(_)]));
    h.store.apply(&output.commit);
    h.session.durable(output.generation);
    assert!(matches!(
        record(&h, "plant/#"),
        Some(Packet::Unsubscribe(_))
    ));
    answer_all(&mut h, &output.send, ReasonCode::Success);
    assert!(record(&h, "plant/#").is_none());
}

#[test]
fn requests_unanswered_before_a_restart_are_sent_again_and_settled_once() {
    let mut h = Harness::new();
    h.connack(false, None);
    subscribe(&mut h, "old", QoS::AtLeastOnce);
    let sent = h.flush();
    answer_all(&mut h, &sent, ReasonCode::GrantedQos1);
    // Asked, recorded, perhaps sent: then the process dies (or its standby takes over).
    subscribe(&mut h, "new", QoS::ExactlyOnce);
    unsubscribe(&mut h, "old");
    h.flush();
    h.crash();
    let sent = h.connack(true, None);
    assert_eq!(requests(&sent), ["SUBSCRIBE new", "UNSUBSCRIBE old"]);
    answer_all(&mut h, &sent, ReasonCode::GrantedQos2);
    assert!(matches!(record(&h, "new"), Some(Packet::Subscribe(s)) if s.packet_id == GRANTED));
    assert!(record(&h, "old").is_none());
    h.crash();
    assert!(
        requests(&h.connack(true, None)).is_empty(),
        "settled requests are not sent again"
    );
}

#[test]
fn an_unsubscribe_in_doubt_on_a_session_the_server_lost_is_dropped_not_made_again() {
    let mut h = Harness::new();
    h.connack(false, None);
    subscribe(&mut h, "gone", QoS::AtLeastOnce);
    let sent = h.flush();
    answer_all(&mut h, &sent, ReasonCode::GrantedQos1);
    unsubscribe(&mut h, "gone");
    h.flush();
    h.crash();
    let sent = h.connack(false, None);
    assert!(
        requests(&sent).is_empty(),
        "neither made again nor removed from a session that has nothing: {sent:?}"
    );
    assert!(record(&h, "gone").is_none());
}

#[test]
fn a_request_lost_with_its_connection_is_sent_again_on_the_next() {
    let mut h = Harness::new();
    h.connack(false, None);
    subscribe(&mut h, "plant/#", QoS::AtLeastOnce);
    h.flush();
    h.session.connection_lost(NOW_MS);
    let sent = h.connack(true, None);
    assert_eq!(requests(&sent), ["SUBSCRIBE plant/#"]);
    answer_all(&mut h, &sent, ReasonCode::GrantedQos1);
    assert!(matches!(record(&h, "plant/#"), Some(Packet::Subscribe(s)) if s.packet_id == GRANTED));
    h.session.connection_lost(NOW_MS);
    assert!(requests(&h.connack(true, None)).is_empty());
}

#[test]
fn a_refused_subscribe_puts_back_the_subscription_granted_before() {
    let mut h = Harness::new();
    h.connack(false, None);
    subscribe(&mut h, "plant/#", QoS::ExactlyOnce);
    let sent = h.flush();
    answer_all(&mut h, &sent, ReasonCode::GrantedQos2);
    subscribe(&mut h, "plant/#", QoS::AtMostOnce);
    let sent = h.flush();
    answer_all(&mut h, &sent, ReasonCode::NotAuthorized);
    let Some(Packet::Subscribe(kept)) = record(&h, "plant/#") else {
        panic!("the earlier subscription's record is gone");
    };
    assert_eq!(kept.packet_id, GRANTED);
    assert_eq!(kept.subscriptions[0].options.qos, QoS::ExactlyOnce);
    // Refused with nothing before: no record at all.
    subscribe(&mut h, "other", QoS::AtMostOnce);
    let sent = h.flush();
    answer_all(&mut h, &sent, ReasonCode::NotAuthorized);
    assert!(record(&h, "other").is_none());
}

/// A kept subscription that no longer fits the server's Maximum Packet Size after a lost
/// session is never sent (nothing would answer it): reported, kept, and made again on the
/// next connection, whose server takes it.
#[test]
fn a_kept_subscription_over_the_servers_new_maximum_packet_size_is_reported_and_tried_again() {
    let mut h = Harness::new();
    h.connack(false, None);
    let long = format!("plant/{}", "x".repeat(100));
    subscribe(&mut h, &long, QoS::AtLeastOnce);
    subscribe(&mut h, "short", QoS::AtLeastOnce);
    let sent = h.flush();
    answer_all(&mut h, &sent, ReasonCode::GrantedQos1);
    h.events();
    h.session.connection_lost(NOW_MS);
    // The server lost the session, and takes packets of 50 bytes at most now.
    let mut connack = ConnAck::new(false);
    connack.properties.maximum_packet_size = Some(50);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    let sent = h.flush();
    assert_eq!(requests(&sent), ["SUBSCRIBE short"]);
    let events = h.events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::RequestNotSent { filters, .. } if filters == std::slice::from_ref(&long)
        )),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Connected {
                resubscribed: 1,
                ..
            }
        )),
        "{events:?}"
    );
    answer_all(&mut h, &sent, ReasonCode::GrantedQos1);
    assert!(
        matches!(record(&h, &long), Some(Packet::Subscribe(s)) if s.packet_id == GRANTED),
        "still kept"
    );
    // The next server takes it: made again, although it kept the session.
    h.session.connection_lost(NOW_MS);
    let sent = h.connack(true, None);
    assert!(
        requests(&sent).contains(&format!("SUBSCRIBE {long}")),
        "{sent:?}"
    );
}

/// A caller's request lost with its connection that no longer fits the next server's
/// Maximum Packet Size fails with the encoding error instead of waiting for an answer that
/// cannot come; its identifier is free again.
#[test]
fn a_waiting_request_over_the_new_maximum_packet_size_fails_instead_of_waiting() {
    let mut h = Harness::new();
    h.connack(false, None);
    let long = format!("plant/{}", "x".repeat(100));
    let id = subscribe(&mut h, &long, QoS::AtLeastOnce);
    h.flush();
    h.session.connection_lost(NOW_MS);
    let mut connack = ConnAck::new(true);
    connack.properties.maximum_packet_size = Some(50);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    assert!(requests(&h.flush()).is_empty());
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e, Event::RequestNotSent { id: not_sent, .. } if *not_sent == id))
    );
    let next = subscribe(&mut h, "short", QoS::AtLeastOnce);
    let sent = h.flush();
    assert_eq!(requests(&sent), ["SUBSCRIBE short"]);
    assert_ne!(next, id);
}
