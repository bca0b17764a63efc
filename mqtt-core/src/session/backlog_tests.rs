//! Backlog replay by policy: latest-value compaction (in memory, beyond the window, across a
//! restart, never of a value sent) and the send allowance of a paced session.

use std::time::Instant;

use bytes::Bytes;

use super::queue_tests::{Driven, message, numbers, options, value};
use super::tests::Committed;
use super::*;
use crate::packet::ConnAck;
use crate::store::QueueWindow;

fn compacting(window: QueueWindow, filters: &[&str]) -> SessionOptions {
    let mut options = options(window);
    options.backlog.latest_value_topics = filters.iter().map(|f| (*f).to_owned()).collect();
    options
}

fn replaced(session: &mut Session) -> Vec<(PublishId, PublishId)> {
    std::iter::from_fn(|| session.poll_event())
        .filter_map(|event| match event {
            Event::Replaced { id, by, .. } => Some((id, by)),
            _ => None,
        })
        .collect()
}

/// The queued sequence numbers and the latest-value records the store holds.
fn stored(store: &Committed) -> (Vec<u64>, Vec<(String, u64)>) {
    let stored = store.stored();
    (
        stored.queue.iter().map(|(seq, _)| *seq).collect(),
        stored
            .latest_values
            .into_iter()
            .map(|latest| (latest.topic, latest.seq))
            .collect(),
    )
}

#[test]
fn a_newer_value_replaces_the_queued_one_in_the_commit_that_stores_it() {
    let options = compacting(QueueWindow::new(100, 1 << 20), &["plant/+/temperature"]);
    let mut d = Driven::with(options, Committed::default());
    let first = d.session.publish(value("plant/1/temperature", 1)).unwrap();
    let other = d.session.publish(value("plant/1/state", 2)).unwrap();
    let second = d.session.publish(value("plant/1/temperature", 3)).unwrap();
    // Nothing is committed yet: the replacement rides in the same commit as the new value.
    let output = d.session.poll_output(Instant::now()).unwrap();
    assert!(
        output
            .commit
            .ops()
            .iter()
            .any(|op| matches!(op, StoreOp::RemoveQueue { seq } if *seq == first))
    );
    d.store.apply(&output.commit);
    d.session.durable(output.generation);
    assert_eq!(replaced(&mut d.session), vec![(first, second)]);
    assert_eq!(
        stored(&d.store),
        (
            vec![other, second],
            vec![("plant/1/temperature".to_owned(), second)]
        )
    );
    assert_eq!(d.session.queued(), 2);
    let sent = d.connect(100);
    assert_eq!(numbers(&sent), vec![2, 3]);
    // Sent: its record is gone, the message stays stored until acknowledged.
    assert_eq!(stored(&d.store).1, vec![]);
}

#[test]
fn a_value_beyond_the_window_is_replaced_unread_and_the_counts_stay_exact() {
    let options = compacting(QueueWindow::new(2, 1 << 20), &["t"]);
    let mut d = Driven::with(options, Committed::default());
    for n in 0..4 {
        d.session.publish(value("filler", n)).unwrap();
    }
    let old = d.session.publish(value("t", 10)).unwrap();
    d.run();
    // The old value waits in the store only, beyond the window of two.
    let new = d.session.publish(value("t", 11)).unwrap();
    d.run();
    assert_eq!(replaced(&mut d.session), vec![(old, new)]);
    assert_eq!(d.session.queued(), 5);
    let all = numbers(&d.connect_and_ack_all(1));
    assert_eq!(all, vec![0, 1, 2, 3, 11]);
    assert_eq!(d.session.queued(), 0);
    assert_eq!(stored(&d.store), (vec![], vec![]));
}

#[test]
fn a_read_out_when_a_value_is_replaced_does_not_hand_it_back() {
    let options = compacting(QueueWindow::new(4, 1 << 20), &["t"]);
    let mut d = Driven::with(options, Committed::default());
    for n in 0..6 {
        d.session.publish(value("filler", n)).unwrap();
    }
    let old = d.session.publish(value("t", 10)).unwrap();
    d.run();
    let mut sent = d.connect_without_reading(10);
    let read = d
        .session
        .poll_queue_read()
        .expect("the window asks for a read");
    // The read is made now, before the replacement's commit: it still holds the old value.
    let records = d.store.read_queue(read.from, read.window);
    assert!(records.iter().any(|(seq, _)| *seq == old));
    let new = d.session.publish(value("t", 11)).unwrap();
    d.session.queue_read(records).unwrap();
    sent.extend(d.run());
    let all = numbers(&d.ack_until_done(sent));
    assert_eq!(replaced(&mut d.session), vec![(old, new)]);
    assert_eq!(all, vec![0, 1, 2, 3, 4, 5, 11]);
    assert_eq!(d.session.queued(), 0);
}

#[test]
fn a_value_sent_is_never_replaced() {
    let options = compacting(QueueWindow::new(100, 1 << 20), &["t"]);
    let mut d = Driven::with(options, Committed::default());
    d.connect(1);
    let first = d.session.publish(value("t", 1)).unwrap();
    let sent = d.run();
    assert_eq!(numbers(&sent), vec![1]);
    let second = d.session.publish(value("t", 2)).unwrap();
    let third = d.session.publish(value("t", 3)).unwrap();
    d.run();
    // The first is in flight: only the second, never sent, is replaced.
    assert_eq!(replaced(&mut d.session), vec![(second, third)]);
    assert_eq!(
        stored(&d.store),
        (vec![first, third], vec![("t".into(), third)])
    );
}

#[test]
fn the_latest_value_record_goes_in_the_commit_before_its_value_is_sent() {
    let options = compacting(QueueWindow::new(100, 1 << 20), &["t"]);
    let mut d = Driven::with(options, Committed::default());
    d.session.publish(value("t", 1)).unwrap();
    d.run();
    let mut connack = ConnAck::new(false);
    connack.properties.receive_maximum = Some(10);
    d.session.handle_connack(&connack, Instant::now()).unwrap();
    let output = d.session.poll_output(Instant::now()).unwrap();
    assert!(
        output
            .commit
            .ops()
            .iter()
            .any(|op| matches!(op, StoreOp::RemoveLatestValue { topic } if topic == "t"))
    );
    assert!(
        numbers(&output.early).is_empty(),
        "the value went out before the commit that removes its record"
    );
    assert_eq!(numbers(&output.send), vec![1]);
}

#[test]
fn a_session_resumed_from_the_store_replaces_the_value_it_left() {
    let options = compacting(QueueWindow::new(1, 1 << 20), &["t"]);
    let mut d = Driven::with(options.clone(), Committed::default());
    d.session.publish(value("filler", 0)).unwrap();
    let old = d.session.publish(value("t", 1)).unwrap();
    d.run();
    // A crash: a new session over what the store holds, the old value beyond its window.
    let mut d = Driven::with(options, std::mem::take(&mut d.store));
    let new = d.session.publish(value("t", 2)).unwrap();
    d.run();
    assert_eq!(replaced(&mut d.session), vec![(old, new)]);
    assert_eq!(stored(&d.store).1, vec![("t".to_owned(), new)]);
    let all = numbers(&d.connect_and_ack_all(1));
    assert_eq!(all, vec![0, 2]);
}

#[test]
fn topics_outside_the_filters_keep_every_value() {
    let options = compacting(QueueWindow::new(100, 1 << 20), &["plant/+/temperature"]);
    let mut d = Driven::with(options, Committed::default());
    for n in 0..3 {
        d.session.publish(value("plant/1/alarm", n)).unwrap();
    }
    d.run();
    assert_eq!(replaced(&mut d.session), vec![]);
    assert_eq!(stored(&d.store).0.len(), 3);
}

fn paced() -> Driven {
    let mut options = options(QueueWindow::new(100, 1 << 20));
    options.backlog.paced = true;
    Driven::with(options, Committed::default())
}

#[test]
fn a_paced_session_sends_only_what_it_is_allowed() {
    let mut d = paced();
    d.connect(100);
    for n in 0..10 {
        d.session.publish(message(n)).unwrap();
    }
    assert_eq!(numbers(&d.run()), Vec::<u32>::new());
    assert!(d.session.waits_for_allowance());
    d.session.allow_sends(3, 1 << 20, 100, 1 << 20);
    assert_eq!(numbers(&d.run()), vec![0, 1, 2]);
    // Unspent allowance is capped at the burst.
    d.session.allow_sends(100, 1 << 20, 5, 1 << 20);
    assert_eq!(numbers(&d.run()), vec![3, 4, 5, 6, 7]);
    assert!(d.session.waits_for_allowance());
}

#[test]
fn a_paced_session_counts_bytes_and_pays_a_large_message_from_later_grants() {
    let mut d = paced();
    d.connect(100);
    for n in 0..3 {
        d.session.publish(message(n)).unwrap();
    }
    d.session.allow_sends(10, 1, 10, 1_000);
    // One byte left lets one message go, whatever its size; the debt holds the next.
    assert_eq!(numbers(&d.run()), vec![0]);
    d.session.allow_sends(0, 5, 10, 1_000);
    assert_eq!(numbers(&d.run()), Vec::<u32>::new());
    d.session.allow_sends(0, 100, 10, 1_000);
    assert_eq!(numbers(&d.run()), vec![1, 2]);
}

#[test]
fn a_live_qos_0_publish_of_a_paced_session_waits_its_turn() {
    let mut d = paced();
    d.connect(100);
    let mut publish = Publish::new("live", Bytes::from_static(b"x"));
    publish.qos = QoS::AtMostOnce;
    d.session.publish(publish).unwrap();
    assert!(d.run().is_empty());
    d.session.allow_sends(1, 100, 10, 1_000);
    assert_eq!(d.run().len(), 1);
}
