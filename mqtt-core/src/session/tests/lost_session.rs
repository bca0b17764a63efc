//! A session the server lost (Session Present 0): what becomes of the publishes that may
//! have reached it, by `LostSession`.

use super::*;

fn discarding() -> Harness {
    let mut options = options();
    options.lost_session = LostSession::Discard;
    Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    }
}

fn discarded(events: &[Event]) -> Vec<PublishId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Discarded { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn with_discard_publishes_that_may_have_reached_the_lost_session_are_discarded_and_reported() {
    let mut h = discarding();
    h.connack(false, Some(1));
    let sent = h.publish(QoS::ExactlyOnce, "sent");
    h.publish(QoS::AtLeastOnce, "never sent");
    assert_eq!(
        publishes(&h.flush()).len(),
        1,
        "one in flight, one waits for quota"
    );
    h.session.connection_lost(NOW_MS);
    h.events();
    let resent = h.connack(false, None);
    // The one that never went out was never the lost session's: it goes, as a first send.
    assert_eq!(
        publishes(&resent),
        vec![(2, false, Bytes::from("never sent"))]
    );
    let events = h.events();
    assert_eq!(discarded(&events), vec![sent]);
    assert!(events.contains(&Event::SessionLost {
        resent: 0,
        discarded: 1,
        dropped_pubrel: 0,
        dropped_inbound: 0
    }));
    assert_eq!(h.store.queue.len(), 1, "the discarded one left the store");
}

#[test]
fn mqtt_3_1_2_4_by_default_the_publishes_of_a_lost_session_go_out_again_as_new() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "sent");
    h.flush();
    h.session.connection_lost(NOW_MS);
    h.events();
    let resent = h.connack(false, None);
    assert_eq!(publishes(&resent), vec![(1, false, Bytes::from("sent"))]);
    assert!(discarded(&h.events()).is_empty());
}

/// After a restart the client cannot tell which queued messages went out before it: at most
/// as many of the oldest as the last connection allowed in flight, which the session keeps.
#[test]
fn after_a_restart_discard_takes_no_more_queued_messages_than_the_last_connection_allowed() {
    let mut h = discarding();
    h.connack(false, Some(2));
    for n in 0..5 {
        h.publish(QoS::AtLeastOnce, ["m0", "m1", "m2", "m3", "m4"][n]);
    }
    assert_eq!(publishes(&h.flush()).len(), 2);
    assert_eq!(
        h.store.meta.as_ref().and_then(|m| m.in_flight_limit),
        Some(2)
    );
    // Killed: everything is queue records in the store.
    let mut options = options();
    options.lost_session = LostSession::Discard;
    h.session = Session::new(options, h.store.stored(), NOW_MS).unwrap();
    let sent = h.connack(false, None);
    assert_eq!(
        publishes(&sent)
            .into_iter()
            .map(|(_, _, p)| p)
            .collect::<Vec<_>>(),
        vec![Bytes::from("m2"), Bytes::from("m3"), Bytes::from("m4")]
    );
    assert_eq!(discarded(&h.events()).len(), 2);
}

/// Those beyond the window in memory are discarded as they are read back from the store.
#[test]
fn after_a_restart_discard_reaches_into_the_queue_beyond_the_window() {
    let mut options = options();
    options.lost_session = LostSession::Discard;
    options.queue_window = crate::store::QueueWindow::new(1, 1 << 20);
    let mut h = Harness {
        session: Session::new(options.clone(), StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.connack(false, Some(3));
    h.session.connection_lost(NOW_MS);
    h.flush();
    for n in ["m0", "m1", "m2", "m3", "m4"] {
        h.publish(QoS::AtLeastOnce, n);
    }
    h.flush();
    // Killed while offline: the window held one, the store the rest.
    h.session = Session::new(
        options,
        h.store.resumed(crate::store::QueueWindow::new(1, 1 << 20)),
        NOW_MS,
    )
    .unwrap();
    let mut sent = h.connack(false, None);
    for _ in 0..10 {
        if let Some(read) = h.session.poll_queue_read() {
            let records = h.store.read_queue(read.from, read.window);
            h.session.queue_read(records).unwrap();
        }
        sent.extend(h.flush());
    }
    assert_eq!(
        publishes(&sent)
            .into_iter()
            .map(|(_, _, p)| p)
            .collect::<Vec<_>>(),
        vec![Bytes::from("m3"), Bytes::from("m4")]
    );
    assert_eq!(discarded(&h.events()).len(), 3);
    assert_eq!(
        h.store.queue.len(),
        2,
        "the two sent, in flight: the discarded left"
    );
}
