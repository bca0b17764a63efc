//! Taking back a publish whose caller gave up: never sent, its record never stored or
//! removed, counts exact, in every state it can be in before its PUBLISH is written.

use super::*;
use crate::store::QueueWindow;

fn payloads(sent: &[Packet]) -> Vec<Bytes> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.payload.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_publish_withdrawn_before_its_output_is_polled_is_never_stored_or_sent() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::ExactlyOnce, "gone");
    assert_eq!(h.session.withdraw(id), Withdrawn::Taken { unwritten: None });
    let output = h.session.poll_output(Instant::now());
    assert!(
        output
            .as_ref()
            .is_none_or(|o| o.commit.is_empty() && o.send.is_empty()),
        "{output:?}"
    );
    assert_eq!(h.session.in_flight(), 0);
    // Its identifier and quota are free: the next one goes out.
    h.publish(QoS::ExactlyOnce, "next");
    assert_eq!(payloads(&h.flush()), vec![Bytes::from("next")]);
}

#[test]
fn a_publish_withdrawn_after_its_commit_is_removed_and_its_unwritten_publish_named() {
    let mut h = Harness::new();
    h.connack(false, Some(1));
    let id = h.publish(QoS::AtLeastOnce, "gone");
    h.publish(QoS::AtLeastOnce, "waits for quota");
    // The driver polled and committed the output; its PUBLISH is not written yet.
    let output = h.session.poll_output(Instant::now()).unwrap();
    h.store.apply(&output.commit);
    let packet_id = match output.send.as_slice() {
        [Packet::Publish(p)] => p.packet_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        h.session.withdraw(id),
        Withdrawn::Taken {
            unwritten: Some(packet_id)
        }
    );
    h.session.durable(output.generation);
    // The removal follows, and the quota it held lets the next message go.
    let sent = h.flush();
    assert_eq!(payloads(&sent), vec![Bytes::from("waits for quota")]);
    assert_eq!(
        h.store.stored().queue.len(),
        1,
        "only the other one is stored"
    );
}

#[test]
fn a_publish_whose_publish_was_written_cannot_be_withdrawn() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::AtLeastOnce, "out");
    assert_eq!(payloads(&h.flush()), vec![Bytes::from("out")]);
    assert_eq!(h.session.withdraw(id), Withdrawn::TooLate);
    assert_eq!(h.session.in_flight(), 1);
}

#[test]
fn a_queued_publish_is_withdrawn_from_memory_and_from_beyond_the_window_with_exact_counts() {
    let mut options = options();
    options.queue_window = QueueWindow::new(1, 1 << 20);
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    // Offline: the first stays in memory, the others are left to the store.
    // Payloads of one length: each message takes the same bytes.
    let resident = h.publish(QoS::AtLeastOnce, "m-1");
    let stored = h.publish(QoS::AtLeastOnce, "m-2");
    h.publish(QoS::AtLeastOnce, "m-3");
    let bytes_of_one = h.session.queued_bytes() / 3;
    let output = h.session.poll_output(Instant::now()).unwrap();
    h.store.apply(&output.commit);
    for id in [resident, stored] {
        assert_eq!(h.session.withdraw(id), Withdrawn::Taken { unwritten: None });
    }
    assert_eq!(h.session.queued(), 1);
    assert_eq!(h.session.queued_bytes(), bytes_of_one);
    h.session.durable(output.generation);
    h.flush();
    assert_eq!(h.store.stored().queue.len(), 1);
    // Only the one kept reaches the server, read back from the store.
    h.connack(false, None);
    let mut sent = Vec::new();
    for _ in 0..4 {
        if let Some(read) = h.session.poll_queue_read() {
            let records = h.store.read_queue(read.from, read.window);
            h.session.queue_read(records).unwrap();
        }
        sent.extend(h.flush());
    }
    assert_eq!(payloads(&sent), vec![Bytes::from("m-3")]);
}

/// The withdrawn PUBLISH announced a Topic Alias that a later one uses alone: the later one
/// carries the topic again, so the server never meets an alias it was not told of.
#[test]
fn a_withdrawn_publish_that_announced_a_topic_alias_leaves_the_announcement_to_the_next() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.topic_alias_maximum = Some(2);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    h.flush();
    let first = h.publish(QoS::AtLeastOnce, "gone");
    h.publish(QoS::AtLeastOnce, "kept");
    let mut output = h.session.poll_output(Instant::now()).unwrap();
    h.store.apply(&output.commit);
    let aliases: Vec<(bool, Option<u16>)> = output
        .send
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.topic.is_empty(), p.properties.topic_alias)),
            _ => None,
        })
        .collect();
    assert_eq!(
        aliases,
        vec![(false, Some(1)), (true, Some(1))],
        "announced, then alone"
    );
    let Withdrawn::Taken {
        unwritten: Some(packet_id),
    } = h.session.withdraw(first)
    else {
        panic!("not taken back with its PUBLISH unwritten");
    };
    // As the client does with what it holds unwritten.
    let Unwritten::Announced {
        alias,
        topic,
        reannounced,
    } = take_unwritten_publish(&mut [&mut output.send], packet_id)
    else {
        panic!("the PUBLISH held unwritten announced no alias");
    };
    h.session.unannounce_alias(alias, &topic, reannounced);
    match output.send.as_slice() {
        [Packet::Publish(p)] => {
            assert_eq!(
                (p.topic.as_str(), p.properties.topic_alias),
                ("t/1", Some(1))
            );
        }
        other => panic!("{other:?}"),
    }
    h.session.durable(output.generation);
    h.flush();
    // Announced by that one: later ones go by the alias alone again... once announced anew.
    h.publish(QoS::AtLeastOnce, "later");
    let later = h.flush();
    let announced_again = later.iter().any(|p| {
        matches!(p, Packet::Publish(p) if !p.topic.is_empty() && p.properties.topic_alias == Some(1))
    });
    assert!(announced_again, "{later:?}");
}

/// A harness connected to a server that allows one Topic Alias.
fn with_one_alias() -> Harness {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.topic_alias_maximum = Some(1);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    h.flush();
    h
}

/// A QoS 1 publish to `name`.
fn topic(name: &str) -> Publish {
    let mut p = Publish::new(name, "x");
    p.qos = QoS::AtLeastOnce;
    p
}

/// The topic and alias of each PUBLISH the session sends now.
fn sent_topics(h: &mut Harness) -> Vec<(String, Option<u16>)> {
    h.flush()
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.topic, p.properties.topic_alias)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_publish_before_a_withdrawn_announcement_keeps_the_alias_as_the_server_knows_it() {
    let mut h = with_one_alias();
    // Alias 1 is "a" on the server.
    h.session.publish(topic("a")).unwrap();
    h.flush();
    // In one output: "a" by its alias alone, then "b" taking alias 1 over.
    h.session.publish(topic("a")).unwrap();
    let b = h.session.publish(topic("b")).unwrap();
    assert!(matches!(h.session.withdraw(b), Withdrawn::Taken { .. }));
    let sent = sent_topics(&mut h);
    // Still "a" by alias 1 alone: "b"'s announcement never left, and the server maps 1 to "a".
    assert_eq!(sent, vec![(String::new(), Some(1))]);
}

#[test]
fn a_withdrawn_announcement_is_repaired_only_up_to_the_next_announcement_of_its_alias() {
    let mut h = with_one_alias();
    // Alias 1 announced for "t", used alone, announced again for "u", used alone.
    let first = h.session.publish(topic("t")).unwrap();
    for name in ["t", "u", "u"] {
        h.session.publish(topic(name)).unwrap();
    }
    assert!(matches!(h.session.withdraw(first), Withdrawn::Taken { .. }));
    let sent = sent_topics(&mut h);
    // "t" announces the alias itself now; "u"'s announcement stands, and its use after it.
    assert_eq!(
        sent,
        vec![
            ("t".to_owned(), Some(1)),
            ("u".to_owned(), Some(1)),
            (String::new(), Some(1)),
        ]
    );
}
