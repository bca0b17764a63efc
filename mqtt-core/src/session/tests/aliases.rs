//! Outbound topic aliases.

use super::*;

fn connack_with_aliases(h: &mut Harness, maximum: Option<u16>) -> Vec<Packet> {
    let mut connack = ConnAck::new(false);
    connack.properties.topic_alias_maximum = maximum;
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    h.flush()
}

fn on_wire(sent: &[Packet]) -> Vec<(String, Option<u16>)> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.topic.clone(), p.properties.topic_alias)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_hot_topic_goes_by_alias_after_its_first_use_and_saves_bytes() {
    let mut h = Harness::new();
    connack_with_aliases(&mut h, Some(2));
    let topic = "plant/7/line-3/press-12/telemetry";
    let mut sizes = Vec::new();
    for _ in 0..3 {
        h.session.publish(Publish::new(topic, "x")).unwrap();
        let sent = h.flush();
        sizes.push(Codec::default().encoded_len(&sent[0]).unwrap());
        h.store.apply(&Batch::new());
        assert_eq!(sent.len(), 1);
    }
    let mut h2 = Harness::new();
    connack_with_aliases(&mut h2, None);
    h2.session.publish(Publish::new(topic, "x")).unwrap();
    let plain = Codec::default().encoded_len(&h2.flush()[0]).unwrap();
    // First: topic and alias (3 bytes more); then the topic is gone from the wire.
    assert_eq!(
        sizes,
        vec![plain + 3, plain + 3 - topic.len(), plain + 3 - topic.len()]
    );
}

#[test]
fn mqtt_3_3_2_9_aliases_stay_within_the_servers_maximum_least_recently_used_first() {
    let mut h = Harness::new();
    connack_with_aliases(&mut h, Some(2));
    for topic in ["a", "b", "a", "c", "b"] {
        h.session.publish(Publish::new(topic, "x")).unwrap();
    }
    assert_eq!(
        on_wire(&h.flush()),
        vec![
            ("a".into(), Some(1)),
            ("b".into(), Some(2)),
            (String::new(), Some(1)),
            // "b" is the least recently used: "c" takes alias 2.
            ("c".into(), Some(2)),
            // "a" (alias 1) is now the least recently used: "b" takes it.
            ("b".into(), Some(1)),
        ]
    );
}

#[test]
fn mqtt_3_2_2_18_no_alias_without_a_server_maximum_or_when_turned_off() {
    let mut h = Harness::new();
    connack_with_aliases(&mut h, None);
    h.session.publish(Publish::new("a", "x")).unwrap();
    h.session.publish(Publish::new("a", "x")).unwrap();
    assert!(on_wire(&h.flush()).iter().all(|(_, alias)| alias.is_none()));

    let mut options = options();
    options.topic_aliases = false;
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    connack_with_aliases(&mut h, Some(10));
    h.session.publish(Publish::new("a", "x")).unwrap();
    h.session.publish(Publish::new("a", "x")).unwrap();
    assert!(on_wire(&h.flush()).iter().all(|(_, alias)| alias.is_none()));
}

#[test]
fn stored_records_and_retransmissions_carry_the_full_topic_never_an_alias() {
    let mut h = Harness::new();
    connack_with_aliases(&mut h, Some(5));
    for payload in ["1", "2"] {
        // As an application forwarding a message might pass it: an alias of another
        // connection, which is never the session's to keep.
        let mut p = Publish::new("t/1", payload);
        p.qos = QoS::AtLeastOnce;
        p.properties.topic_alias = Some(3);
        h.session.publish(p).unwrap();
    }
    assert_eq!(
        on_wire(&h.flush()),
        vec![("t/1".into(), Some(1)), (String::new(), Some(1))]
    );
    // Both in flight, their records in the queue (a flow sent from the queue keeps its
    // record there): each the full topic, no alias.
    assert_eq!(h.store.queue.len(), 2);
    for message in h.store.queue.values() {
        let stored = decode_publish(&message.packet).unwrap();
        assert_eq!(stored.topic, "t/1");
        assert_eq!(stored.properties.topic_alias, None);
    }
    h.session.connection_lost(NOW_MS);
    let mut connack = ConnAck::new(true);
    connack.properties.topic_alias_maximum = Some(5);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    let resent = h.flush();
    assert_eq!(
        on_wire(&resent),
        vec![("t/1".into(), None), ("t/1".into(), None)]
    );
}
