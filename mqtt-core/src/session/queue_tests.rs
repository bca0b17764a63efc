//! The windowed offline queue: only a window in memory, the rest read back from the store in
//! order, counts exact, and a store that breaks its contract caught.

use std::time::Instant;

use bytes::Bytes;

use super::tests::Committed;
use super::*;
use crate::packet::{ConnAck, ConnAckProperties, PubAck};
use crate::store::QueueWindow;

const NOW_MS: u64 = 1_764_000_000_000;

pub(super) fn options(window: QueueWindow) -> SessionOptions {
    let mut options = SessionOptions::new("q");
    options.properties.session_expiry_interval = Some(3600);
    options.queue_window = window;
    options
}

pub(super) fn message(n: u32) -> Publish {
    let mut p = Publish::new("q/t", Bytes::from(n.to_be_bytes().to_vec()));
    p.qos = QoS::AtLeastOnce;
    p
}

/// A publish of `n` to `topic` at QoS 1.
pub(super) fn value(topic: &str, n: u32) -> Publish {
    Publish {
        topic: topic.to_owned(),
        ..message(n)
    }
}

pub(super) fn number(p: &Publish) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&p.payload[..4]);
    u32::from_be_bytes(b)
}

/// A session, its store, and a driver that commits before it reads and before it sends.
pub(super) struct Driven {
    pub(super) session: Session,
    pub(super) store: Committed,
    pub(super) reads: usize,
}

impl Driven {
    pub(super) fn new(window: QueueWindow) -> Self {
        Self::with(options(window), Committed::default())
    }

    /// A session with `options` resumed from `store`, its window's head read.
    pub(super) fn with(options: SessionOptions, store: Committed) -> Self {
        let stored = store.resumed(options.queue_window);
        Self {
            session: Session::new(options, stored, NOW_MS).unwrap(),
            store,
            reads: 0,
        }
    }

    /// Commits and sends what the session asks, reading the queue back when it asks.
    pub(super) fn run(&mut self) -> Vec<Packet> {
        let mut sent = Vec::new();
        loop {
            while let Some(output) = self.session.poll_output(Instant::now()) {
                sent.extend(output.early);
                self.store.apply(&output.commit);
                sent.extend(output.send);
                self.session.durable(output.generation);
            }
            let Some(read) = self.session.poll_queue_read() else {
                return sent;
            };
            self.reads += 1;
            let records = match read.class {
                0 => self.store.read_queue(read.from, read.window),
                class => self.store.read_class_queue(class, read.from, read.window),
            };
            self.session.queue_read(records).unwrap();
        }
    }

    pub(super) fn connect(&mut self, receive_maximum: u16) -> Vec<Packet> {
        let mut sent = self.connect_without_reading(receive_maximum);
        sent.extend(self.run());
        sent
    }

    /// Connects and commits what follows, but leaves the queue's read to the test.
    pub(super) fn connect_without_reading(&mut self, receive_maximum: u16) -> Vec<Packet> {
        let mut connack = ConnAck::new(false);
        connack.properties = ConnAckProperties {
            receive_maximum: Some(receive_maximum),
            ..ConnAckProperties::default()
        };
        self.session
            .handle_connack(&connack, Instant::now())
            .unwrap();
        let mut sent = Vec::new();
        while let Some(output) = self.session.poll_output(Instant::now()) {
            sent.extend(output.early);
            self.store.apply(&output.commit);
            sent.extend(output.send);
            self.session.durable(output.generation);
        }
        sent
    }

    /// Connects with `receive_maximum` and acknowledges every PUBLISH until nothing more is
    /// sent: every packet sent, in order.
    pub(super) fn connect_and_ack_all(&mut self, receive_maximum: u16) -> Vec<Packet> {
        let sent = self.connect(receive_maximum);
        self.ack_until_done(sent)
    }

    /// Acknowledges the PUBLISHes in `sent` and what follows them until nothing more is sent:
    /// `sent` and every packet sent after it, in order.
    pub(super) fn ack_until_done(&mut self, mut sent: Vec<Packet>) -> Vec<Packet> {
        let mut all = sent.clone();
        while !sent.is_empty() {
            sent = self.ack_all(&sent);
            all.extend(sent.iter().cloned());
        }
        all
    }

    /// Acknowledges every PUBLISH in `sent` and returns what the session sends next.
    pub(super) fn ack_all(&mut self, sent: &[Packet]) -> Vec<Packet> {
        for packet in sent {
            if let Packet::Publish(p) = packet {
                self.session
                    .handle_incoming(Packet::PubAck(PubAck::new(p.packet_id)), Instant::now())
                    .unwrap();
            }
        }
        self.run()
    }
}

pub(super) fn numbers(sent: &[Packet]) -> Vec<u32> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(number(p)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_queue_beyond_its_window_drains_from_the_store_in_order() {
    let mut d = Driven::new(QueueWindow::new(3, 1 << 20));
    for n in 0..20 {
        d.session.publish(message(n)).unwrap();
    }
    assert!(d.run().is_empty(), "nothing goes out offline");
    assert_eq!(d.session.queued(), 20, "every message counted");
    assert_eq!(d.store.stored().queue.len(), 20, "every message stored");
    let bytes: usize = d
        .store
        .stored()
        .queue
        .iter()
        .map(|(_, q)| q.packet.len())
        .sum();
    assert_eq!(d.session.queued_bytes(), bytes as u64, "bytes exact");
    assert_eq!(d.reads, 0, "a full window reads nothing");
    // A window of 4 in flight: each round trip reads back what the window lost.
    let mut sent = d.connect(4);
    let mut order = numbers(&sent);
    while !sent.is_empty() {
        sent = d.ack_all(&sent);
        order.extend(numbers(&sent));
    }
    assert_eq!(
        order,
        (0..20).collect::<Vec<_>>(),
        "sent once each, in order"
    );
    assert!(d.reads >= 5, "read back in {} reads", d.reads);
    assert_eq!(d.session.queued(), 0);
    assert_eq!(d.session.queued_bytes(), 0);
}

#[test]
fn publishes_behind_a_stored_tail_wait_behind_it() {
    let mut d = Driven::new(QueueWindow::new(2, 1 << 20));
    for n in 0..6 {
        d.session.publish(message(n)).unwrap();
    }
    d.run();
    let sent = d.connect(2);
    assert_eq!(numbers(&sent), vec![0, 1]);
    // The window has room again, but 2..6 wait in the store: 6 may not overtake them.
    d.session.publish(message(6)).unwrap();
    let mut order = numbers(&sent);
    let mut sent = d.ack_all(&sent);
    while !sent.is_empty() {
        order.extend(numbers(&sent));
        sent = d.ack_all(&sent);
    }
    assert_eq!(order, (0..7).collect::<Vec<_>>());
}

#[test]
fn a_read_finds_only_what_was_committed_and_a_message_not_yet_polled_waits() {
    let mut d = Driven::new(QueueWindow::new(1, 1 << 20));
    d.session.publish(message(0)).unwrap();
    d.session.publish(message(1)).unwrap();
    d.run();
    let mut connack = ConnAck::new(false);
    connack.properties.receive_maximum = Some(10);
    d.session.handle_connack(&connack, Instant::now()).unwrap();
    // Message 2 goes to the store behind 1; its PushQueue is not polled yet.
    d.session.publish(message(2)).unwrap();
    let read = d.session.poll_queue_read();
    let read = read.expect("message 1 was committed: it may be read");
    let records = d.store.read_queue(read.from, read.window);
    assert_eq!(
        records.len(),
        1,
        "only the committed message is in the store"
    );
    d.session.queue_read(records).unwrap();
    assert_eq!(
        d.session.poll_queue_read(),
        None,
        "2 was never polled: no read"
    );
    let sent = d.run();
    assert_eq!(numbers(&sent), vec![0, 1, 2]);
}

/// The driver polls while a commit is in flight: a message is read back only once the output
/// that stores it is reported written, not when it is polled.
#[test]
fn a_message_is_read_back_only_after_the_output_that_stores_it_was_written() {
    let mut d = Driven::new(QueueWindow::new(1, 1 << 20));
    let mut connack = ConnAck::new(false);
    connack.properties.receive_maximum = Some(10);
    d.session.handle_connack(&connack, Instant::now()).unwrap();
    d.run();
    d.session.connection_lost(NOW_MS);
    d.session.publish(message(0)).unwrap(); // in memory
    d.session.publish(message(1)).unwrap(); // left to the store
    let output = d.session.poll_output(Instant::now()).unwrap();
    d.store.apply(&output.commit);
    d.session.handle_connack(&connack, Instant::now()).unwrap();
    // Message 0 goes out and frees the window; 1 is polled, committed, not reported.
    assert_eq!(
        d.session.poll_queue_read(),
        None,
        "polled but not reported written: no read"
    );
    d.session.written(output.generation);
    let read = d
        .session
        .poll_queue_read()
        .expect("written: it may be read");
    let records = d.store.read_queue(read.from, read.window);
    assert_eq!(records.len(), 1);
    d.session.queue_read(records).unwrap();
    assert_eq!(numbers(&d.run()), vec![0, 1]);
}

#[test]
fn a_resumed_session_counts_its_whole_queue_and_numbers_after_its_tail() {
    let mut d = Driven::new(QueueWindow::new(100, 1 << 20));
    for n in 0..50 {
        d.session.publish(message(n)).unwrap();
    }
    d.run();
    let whole = d.store.stored();
    let window = QueueWindow::new(4, 1 << 20);
    let resumed = d.store.resumed(window);
    assert_eq!(resumed.queue.len(), 4, "only the head is read");
    let mut session = Session::new(options(window), resumed, NOW_MS).unwrap();
    assert_eq!(session.queued(), 50);
    assert_eq!(session.queued_bytes(), whole.queue_summary.bytes);
    let last = whole.queue_summary.last_seq.unwrap();
    let id = session.publish(message(50)).unwrap();
    assert!(
        id > last,
        "a new message ({id}) sorts after the stored tail ({last})"
    );
}

#[test]
fn a_store_that_loses_queued_messages_is_caught() {
    let mut d = Driven::new(QueueWindow::new(1, 1 << 20));
    for n in 0..3 {
        d.session.publish(message(n)).unwrap();
    }
    d.run();
    let _ = d.connect_without_reading(10);
    // The driver has sent 0; 1 and 2 wait in the store, which now returns nothing.
    let read = d.session.poll_queue_read();
    assert!(read.is_some());
    let err = d.session.queue_read(Vec::new()).unwrap_err();
    assert!(
        matches!(err, SessionError::QueueLost { missing: 2, .. }),
        "{err}"
    );
}

#[test]
fn records_before_the_cursor_or_beyond_what_was_stored_are_refused() {
    let mut d = Driven::new(QueueWindow::new(1, 1 << 20));
    for n in 0..3 {
        d.session.publish(message(n)).unwrap();
    }
    d.run();
    let _ = d.connect_without_reading(10);
    assert!(d.session.poll_queue_read().is_some());
    // A record from before the cursor: a store that ignores `from`.
    let mut records = d.store.read_queue(0, QueueWindow::ALL);
    records.insert(0, records[0].clone());
    let err = d.session.queue_read(records).unwrap_err();
    assert!(matches!(err, SessionError::BadRecord { .. }), "{err}");
    // More records than the session ever stored there.
    let mut d = Driven::new(QueueWindow::new(1, 1 << 20));
    for n in 0..2 {
        d.session.publish(message(n)).unwrap();
    }
    d.run();
    let _ = d.connect_without_reading(10);
    let read = d.session.poll_queue_read().unwrap();
    let mut records = d.store.read_queue(read.from, QueueWindow::ALL);
    records.push((99, records[0].1.clone()));
    let err = d.session.queue_read(records).unwrap_err();
    assert!(
        matches!(err, SessionError::BadRecord { seq: 99, .. }),
        "{err}"
    );
}

#[test]
fn an_expired_message_read_back_is_dropped_never_sent() {
    let mut d = Driven::new(QueueWindow::new(1, 1 << 20));
    for n in 0..3 {
        let mut p = message(n);
        p.properties.message_expiry_interval = Some(10);
        d.session.publish(p).unwrap();
    }
    d.run();
    // Twenty seconds later: all three expired, the two in the store unknown to memory.
    d.session.tick(NOW_MS + 20_000);
    let sent = d.connect(10);
    assert!(numbers(&sent).is_empty(), "expired messages are never sent");
    let mut expired = 0;
    while let Some(event) = d.session.poll_event() {
        if matches!(event, Event::Expired { .. }) {
            expired += 1;
        }
    }
    assert_eq!(expired, 3, "each reported as it leaves");
    assert_eq!(d.session.queued(), 0);
    assert!(
        d.store.stored().queue.is_empty(),
        "and removed from the store"
    );
}
