//! Priority classes: each class a queue of its own (in memory and in the store), higher
//! classes sent first, each in order, across a restart, a paced drain and compaction.

use std::time::Instant;

use super::queue_tests::{Driven, number, numbers, options, value};
use super::tests::Committed;
use super::*;
use crate::packet::ConnAck;
use crate::store::QueueWindow;

fn ranked(window: QueueWindow) -> SessionOptions {
    let mut options = options(window);
    options.backlog.priorities = vec![
        ("alarm/#".to_owned(), 2),
        ("spBv1.0/+/NBIRTH/#".to_owned(), 1),
        // A topic matching several takes the highest.
        ("alarm/fire".to_owned(), 1),
    ];
    options
}

/// The topics and numbers of the PUBLISHes in `sent`.
fn topics(sent: &[Packet]) -> Vec<(String, u32)> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.topic.clone(), number(p))),
            _ => None,
        })
        .collect()
}

/// Connects with Receive Maximum 1 and acknowledges until nothing more is sent.
fn drain_one_at_a_time(d: &mut Driven) -> Vec<(String, u32)> {
    topics(&d.connect_and_ack_all(1))
}

#[test]
fn an_alarm_queued_behind_a_backlog_in_the_store_goes_first() {
    let mut d = Driven::with(ranked(QueueWindow::new(4, 1 << 20)), Committed::default());
    for n in 0..20 {
        d.session.publish(value("plant/telemetry", n)).unwrap();
    }
    d.session
        .publish(value("spBv1.0/g/NBIRTH/node", 100))
        .unwrap();
    d.session.publish(value("alarm/fire", 200)).unwrap();
    d.session.publish(value("alarm/smoke", 201)).unwrap();
    d.run();
    assert_eq!(d.session.queued(), 23);
    let stored = d.store.stored();
    let classes: Vec<(u8, usize)> = stored
        .class_queues
        .iter()
        .map(|q| (q.class, q.queue.len()))
        .collect();
    assert_eq!(classes, vec![(1, 1), (2, 2)]);
    assert_eq!(stored.queue.len(), 20);
    let sent = drain_one_at_a_time(&mut d);
    let order: Vec<u32> = sent.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        order,
        [200, 201, 100].into_iter().chain(0..20).collect::<Vec<_>>()
    );
    let stored = d.store.stored();
    assert!(stored.class_queues.is_empty() && stored.queue.is_empty());
    assert_eq!(d.session.queued(), 0);
}

#[test]
fn each_class_reads_back_from_its_own_queue_in_order_after_a_restart() {
    let options = ranked(QueueWindow::new(2, 1 << 20));
    let mut d = Driven::with(options.clone(), Committed::default());
    for n in 0..5 {
        d.session.publish(value("plant/telemetry", n)).unwrap();
        d.session.publish(value("alarm/level", 100 + n)).unwrap();
        d.session.publish(value("alarm/level", 110 + n)).unwrap();
    }
    d.run();
    // A crash: the new session holds a window of each queue, the rest stays in the store.
    let mut d = Driven::with(options, std::mem::take(&mut d.store));
    assert_eq!(d.session.queued(), 15);
    let sent = drain_one_at_a_time(&mut d);
    let order: Vec<u32> = sent.iter().map(|(_, n)| *n).collect();
    let mut alarms = Vec::new();
    for n in 0..5 {
        alarms.extend([100 + n, 110 + n]);
    }
    assert_eq!(order, alarms.into_iter().chain(0..5).collect::<Vec<_>>());
    assert!(
        d.reads > 0,
        "the queues were never read back from the store"
    );
    assert_eq!(d.session.queued(), 0);
}

#[test]
fn a_live_alarm_overtakes_a_paced_backlog() {
    let mut options = ranked(QueueWindow::new(100, 1 << 20));
    options.backlog.paced = true;
    let mut d = Driven::with(options, Committed::default());
    for n in 0..50 {
        d.session.publish(value("plant/telemetry", n)).unwrap();
    }
    d.connect(100);
    d.session.allow_sends(5, 1 << 20, 100, 1 << 20);
    assert_eq!(numbers(&d.run()), vec![0, 1, 2, 3, 4]);
    d.session.publish(value("alarm/pressure", 900)).unwrap();
    assert_eq!(numbers(&d.run()), Vec::<u32>::new());
    d.session.allow_sends(2, 1 << 20, 100, 1 << 20);
    assert_eq!(numbers(&d.run()), vec![900, 5]);
}

#[test]
fn a_latest_value_of_a_class_is_replaced_in_its_own_queue() {
    let mut options = ranked(QueueWindow::new(1, 1 << 20));
    options.backlog.latest_value_topics = vec!["alarm/level".to_owned()];
    let mut d = Driven::with(options.clone(), Committed::default());
    d.session.publish(value("alarm/other", 1)).unwrap();
    d.session.publish(value("alarm/level", 2)).unwrap();
    d.run();
    // The old value waits beyond the window of class 2's queue, after a restart.
    let mut d = Driven::with(options, std::mem::take(&mut d.store));
    d.session.publish(value("alarm/level", 3)).unwrap();
    d.run();
    let stored = d.store.stored();
    let class_two: Vec<u64> = stored.class_queues[0]
        .queue
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(class_two.len(), 2);
    assert_eq!(stored.latest_values[0].class, 2);
    let order: Vec<u32> = drain_one_at_a_time(&mut d)
        .iter()
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(order, vec![1, 3]);
}

#[test]
fn a_withdrawn_alarm_leaves_its_class_queue() {
    let mut d = Driven::with(ranked(QueueWindow::new(10, 1 << 20)), Committed::default());
    let id = d.session.publish(value("alarm/x", 1)).unwrap();
    d.run();
    assert!(matches!(d.session.withdraw(id), Withdrawn::Taken { .. }));
    d.run();
    assert!(d.store.stored().class_queues.is_empty());
    let mut connack = ConnAck::new(false);
    connack.properties.receive_maximum = Some(10);
    d.session.handle_connack(&connack, Instant::now()).unwrap();
    assert_eq!(numbers(&d.run()), Vec::<u32>::new());
}
