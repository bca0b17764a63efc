//! The checks of a queue larger than memory: resuming with only its head, reading on from any
//! sequence number, and totals that stay exact through every kind of change.

use std::collections::BTreeMap;

use super::{CheckResultOf, Stop, StoreFactory, close_store, commit, key, queued, seqs};
use crate::packet::QoS;
use crate::store::{
    LatestValue, OutboundRecord, QueueSummary, QueueWindow, QueuedPublish, SessionKey,
    SessionStore, StoreOp,
};

/// The queue a store should hold, as a map, with the summary it implies.
#[derive(Default)]
struct Model(BTreeMap<u64, QueuedPublish>);

impl Model {
    fn push(&mut self, seq: u64, message: QueuedPublish) -> StoreOp {
        self.0.insert(seq, message.clone());
        StoreOp::PushQueue { seq, message }
    }

    fn remove(&mut self, seq: u64) -> StoreOp {
        self.0.remove(&seq);
        StoreOp::RemoveQueue { seq }
    }

    fn summary(&self) -> QueueSummary {
        let all: Vec<(u64, QueuedPublish)> = self.0.iter().map(|(s, q)| (*s, q.clone())).collect();
        QueueSummary::of(&all)
    }

    fn from(&self, seq: u64) -> Vec<u64> {
        self.0.range(seq..).map(|(s, _)| *s).collect()
    }
}

/// A payload length that varies with the sequence number, so that byte totals mean something.
fn sized(seq: u64) -> QueuedPublish {
    queued(seq, QoS::AtLeastOnce, 8 + (seq % 29) as usize)
}

async fn summary_of<S: SessionStore + ?Sized>(
    store: &S,
    k: &SessionKey,
) -> Result<QueueSummary, Stop> {
    Ok(store.resume(k, QueueWindow::NONE).await?.queue_summary)
}

pub(super) async fn resume_returns_the_head_and_an_exact_summary<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("window-head");
    let mut model = Model::default();
    let mut ops = vec![
        StoreOp::PutOutbound {
            seq: 1,
            record: OutboundRecord::PubRel { packet_id: 7 },
        },
        StoreOp::PutInbound { packet_id: 9 },
    ];
    ops.extend((2..102).map(|seq| model.push(seq, sized(seq))));
    commit(&store, &k, ops).await?;
    let resumed = store.resume(&k, QueueWindow::new(10, usize::MAX)).await?;
    ensure!(
        seqs(&resumed.queue) == (2..12).collect::<Vec<_>>(),
        "a window of 10 messages gave {:?}",
        seqs(&resumed.queue)
    );
    ensure!(
        resumed.queue_summary == model.summary(),
        "the summary is {:?}; the queue holds {:?}",
        resumed.queue_summary,
        model.summary()
    );
    ensure!(
        resumed.outbound.len() == 1 && resumed.inbound == vec![9],
        "the rest of the session is not whole: {:?} {:?}",
        resumed.outbound,
        resumed.inbound
    );
    // Bytes: the first record whatever its size, then only what fits.
    let first = sized(2).packet.len();
    let resumed = store.resume(&k, QueueWindow::new(50, 1)).await?;
    ensure!(
        seqs(&resumed.queue) == vec![2],
        "a window of 1 byte gave {:?}; it must give the first record alone",
        seqs(&resumed.queue)
    );
    let two = first + sized(3).packet.len();
    let resumed = store.resume(&k, QueueWindow::new(50, two)).await?;
    ensure!(
        seqs(&resumed.queue) == vec![2, 3],
        "a window of exactly two records' bytes gave {:?}",
        seqs(&resumed.queue)
    );
    let resumed = store.resume(&k, QueueWindow::NONE).await?;
    ensure!(
        resumed.queue.is_empty() && resumed.queue_summary == model.summary(),
        "an empty window returned {} records, summary {:?}",
        resumed.queue.len(),
        resumed.queue_summary
    );
    let empty = store
        .resume(&key("window-nobody"), QueueWindow::ALL)
        .await?;
    ensure!(
        empty.queue_summary == QueueSummary::default(),
        "a session never written has the summary {:?}",
        empty.queue_summary
    );
    Ok(())
}

pub(super) async fn read_queue_reads_on_in_numeric_order_across_reopen<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("window-order");
    let mut model = Model::default();
    // Sequence numbers far beyond 16 bits and across byte boundaries: order is numeric.
    let numbers: Vec<u64> = vec![
        3,
        255,
        256,
        65_535,
        65_536,
        65_537,
        (1 << 32) - 1,
        1 << 32,
        (1 << 40) + 5,
        u64::MAX - 1,
    ];
    // Stored in a scrambled order: the store sorts, not the writer.
    for seq in [65_536, 3, u64::MAX - 1, 256, 1 << 32, 65_535, 255] {
        commit(&store, &k, vec![model.push(seq, sized(seq))]).await?;
    }
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    let rest: Vec<StoreOp> = [65_537, (1 << 32) - 1, (1 << 40) + 5]
        .into_iter()
        .map(|seq| model.push(seq, sized(seq)))
        .collect();
    commit(&store, &k, rest).await?;
    // Read in pieces of three, each from one past the last.
    let mut read = Vec::new();
    let mut from = 0;
    loop {
        let piece = store
            .read_queue(&k, from, QueueWindow::new(3, usize::MAX))
            .await?;
        ensure!(piece.len() <= 3, "a window of 3 returned {}", piece.len());
        let Some(last) = piece.last().map(|(seq, _)| *seq) else {
            break;
        };
        read.extend(piece);
        if last == u64::MAX {
            break;
        }
        from = last + 1;
    }
    ensure!(
        seqs(&read) == numbers,
        "reading on gave {:?}, not {numbers:?}",
        seqs(&read)
    );
    ensure!(
        read.iter().all(|(seq, q)| *q == sized(*seq)),
        "a record read back differs from the one stored"
    );
    let middle = store.read_queue(&k, 65_536, QueueWindow::ALL).await?;
    ensure!(
        seqs(&middle) == model.from(65_536),
        "reading from 65536 gave {:?}",
        seqs(&middle)
    );
    let beyond = store
        .read_queue(&key("window-other"), 0, QueueWindow::ALL)
        .await?;
    ensure!(
        beyond.is_empty(),
        "another session's queue leaked into a read"
    );
    ensure!(
        summary_of(&store, &k).await? == model.summary(),
        "after reopening the summary is {:?}",
        summary_of(&store, &k).await?
    );
    Ok(())
}

pub(super) async fn a_cursor_reading_on_between_appends_and_removals_misses_nothing<
    F: StoreFactory,
>(
    f: &F,
) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("window-race");
    let mut model = Model::default();
    let first: Vec<StoreOp> = (0..20).map(|seq| model.push(seq, sized(seq))).collect();
    commit(&store, &k, first).await?;
    let mut next = 20;
    let mut from = 0;
    let mut seen = Vec::new();
    // A drain: read a piece, send it (its records leave the queue as flows start), while new
    // messages are appended behind; halfway, the process stops and the store is reopened.
    for round in 0..12 {
        let piece = store
            .read_queue(&k, from, QueueWindow::new(4, usize::MAX))
            .await?;
        let mut ops = Vec::new();
        for (seq, _) in &piece {
            ops.push(StoreOp::PutOutbound {
                seq: *seq,
                record: OutboundRecord::PubRel { packet_id: 1 },
            });
            ops.push(model.remove(*seq));
            ops.push(StoreOp::RemoveOutbound { seq: *seq });
            from = seq + 1;
        }
        seen.extend(seqs(&piece));
        ops.push(model.push(next, sized(next)));
        ops.push(model.push(next + 1, sized(next + 1)));
        next += 2;
        commit(&store, &k, ops).await?;
        ensure!(
            summary_of(&store, &k).await? == model.summary(),
            "round {round}: the summary is {:?}, the queue {:?}",
            summary_of(&store, &k).await?,
            model.summary()
        );
        if round == 6 {
            close_store(store).await?;
            return finish_race(f, &loc, &k, model, seen, from).await;
        }
    }
    Err(Stop::Fail("the race never reached its reopen".to_owned()))
}

async fn finish_race<F: StoreFactory>(
    f: &F,
    loc: &F::Location,
    k: &SessionKey,
    model: Model,
    mut seen: Vec<u64>,
    from: u64,
) -> CheckResultOf {
    let store = f.reopen(loc).await?;
    let resumed = store.resume(k, QueueWindow::new(4, usize::MAX)).await?;
    ensure!(
        resumed.queue_summary == model.summary(),
        "after reopening mid-drain the summary is {:?}, the queue {:?}",
        resumed.queue_summary,
        model.summary()
    );
    ensure!(
        resumed.queue.first().map(|(seq, _)| *seq) == Some(from),
        "after reopening the queue starts at {:?}, not where the drain stopped ({from})",
        resumed.queue.first().map(|(seq, _)| *seq)
    );
    let rest = store.read_queue(k, from, QueueWindow::ALL).await?;
    seen.extend(seqs(&rest));
    let expected: Vec<u64> = (0..seen.len() as u64).collect();
    ensure!(
        seen == expected,
        "the drain saw {seen:?}: a message missed or seen twice"
    );
    Ok(())
}

pub(super) async fn queue_totals_stay_exact_through_every_change<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let k = key("window-totals");
    let mut model = Model::default();
    type Step = fn(&mut Model) -> Vec<StoreOp>;
    let steps: [Step; 7] = [
        |m| (0..5).map(|seq| m.push(seq, sized(seq))).collect(),
        // Replacing a record with one of another size.
        |m| vec![m.push(2, queued(2, QoS::ExactlyOnce, 300))],
        // Removing one that is not there, and one that is.
        |m| vec![m.remove(40), m.remove(0)],
        // Pushed and removed in one batch; removed and pushed again in one batch.
        |m| {
            vec![
                m.push(7, sized(7)),
                m.remove(7),
                m.remove(3),
                m.push(3, queued(3, QoS::AtMostOnce, 50)),
            ]
        },
        // The last one removed: the highest sequence number goes down.
        |m| vec![m.remove(4)],
        // Emptied.
        |m| vec![m.remove(1), m.remove(2), m.remove(3)],
        |m| vec![m.push(9, sized(9))],
    ];
    for (n, step) in steps.into_iter().enumerate() {
        let ops = step(&mut model);
        commit(&store, &k, ops).await?;
        let summary = summary_of(&store, &k).await?;
        ensure!(
            summary == model.summary(),
            "after step {n} the summary is {summary:?}; the queue holds {:?}",
            model.summary()
        );
    }
    Ok(())
}

pub(super) async fn clear_removes_a_queue_of_many_chunks<F: StoreFactory>(f: &F) -> CheckResultOf {
    let (store, _loc) = f.create().await?;
    let (big, other) = (key("window-clear"), key("window-clear-other"));
    for start in (0..40_000u64).step_by(10_000) {
        let ops: Vec<StoreOp> = (start..start + 10_000)
            .map(|seq| StoreOp::PushQueue {
                seq,
                message: queued(seq, QoS::AtLeastOnce, 8),
            })
            .collect();
        commit(&store, &big, ops).await?;
    }
    commit(&store, &other, vec![StoreOp::PutInbound { packet_id: 3 }]).await?;
    ensure!(
        summary_of(&store, &big).await?.messages == 40_000,
        "40,000 queued messages are counted as {}",
        summary_of(&store, &big).await?.messages
    );
    store.clear(&big).await?;
    let left = store.resume(&big, QueueWindow::ALL).await?;
    ensure!(
        left.is_empty(),
        "after clear the session holds {} queued messages, summary {:?}",
        left.queue.len(),
        left.queue_summary
    );
    ensure!(
        store.sessions().await? == vec![other.clone()],
        "after clear the sessions are {:?}",
        store.sessions().await?
    );
    ensure!(
        store.load(&other).await?.inbound == vec![3],
        "clear touched another session"
    );
    Ok(())
}

/// Latest-value compaction as a store sees it: the commit that queues a topic's new value
/// removes the old one and rewrites the topic's record, all or nothing; records are one per
/// topic (topics that start alike, beyond ASCII, with slashes), returned by `resume` even when
/// it reads no queued message, kept across a reopen, removed one by one and gone with the
/// session, and the queue's totals count only the value kept.
pub(super) async fn a_latest_value_is_replaced_in_the_commit_that_queues_the_next<
    F: StoreFactory,
>(
    f: &F,
) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("latest-values");
    let other = key("latest-values-other");
    let latest = |topic: &str, seq: u64| LatestValue {
        topic: topic.to_owned(),
        seq,
        class: 0,
        len: sized(seq).packet.len() as u64,
    };
    let topics = ["a", "ab", "a/b", "usine/température"];
    let mut model = Model::default();
    let mut ops = Vec::new();
    for (seq, topic) in (1u64..).zip(topics) {
        ops.push(model.push(seq, sized(seq)));
        ops.push(StoreOp::PutLatestValue(latest(topic, seq)));
    }
    commit(&store, &k, ops).await?;
    commit(
        &store,
        &other,
        vec![StoreOp::PutLatestValue(latest("a", 1))],
    )
    .await?;
    // "ab" gets a new value: the old one leaves in the same commit.
    let replace = vec![
        model.remove(2),
        model.push(300, sized(300)),
        StoreOp::PutLatestValue(latest("ab", 300)),
    ];
    commit(&store, &k, replace).await?;
    // "a"'s value was sent: its record goes, the message stays queued until acknowledged.
    commit(
        &store,
        &k,
        vec![StoreOp::RemoveLatestValue {
            topic: "a".to_owned(),
        }],
    )
    .await?;
    let expected = vec![
        latest("a/b", 3),
        latest("ab", 300),
        latest("usine/température", 4),
    ];
    let resumed = store.resume(&k, QueueWindow::NONE).await?;
    ensure!(
        resumed.latest_values == expected,
        "resume with no queued message read returned {:?}, expected {expected:?}",
        resumed.latest_values
    );
    ensure!(
        resumed.queue_summary == model.summary(),
        "the queue's totals are {:?}, expected {:?}",
        resumed.queue_summary,
        model.summary()
    );
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    let loaded = store.load(&k).await?;
    ensure!(
        loaded.latest_values == expected,
        "after reopening: {:?}",
        loaded.latest_values
    );
    ensure!(
        seqs(&loaded.queue) == model.from(0),
        "after reopening the queue holds {:?}, expected {:?}",
        seqs(&loaded.queue),
        model.from(0)
    );
    store.clear(&k).await?;
    ensure!(
        store.load(&k).await?.is_empty(),
        "cleared, yet latest-value records remain"
    );
    let kept = store.load(&other).await?.latest_values;
    ensure!(
        kept == vec![latest("a", 1)],
        "clearing one session touched another's records: {kept:?}"
    );
    Ok(())
}

/// The queues of priority classes: apart from the offline queue and from each other though
/// they share one numbering, read on from any sequence number within their class only,
/// resumed with each one's head and an exact summary (classes at both ends of the byte, 1
/// and 255), kept across a reopen, and gone with the session.
pub(super) async fn class_queues_are_apart_read_on_in_order_and_counted<F: StoreFactory>(
    f: &F,
) -> CheckResultOf {
    let (store, loc) = f.create().await?;
    let k = key("class-queues");
    let push = |class: u8, seq: u64| StoreOp::PushClassQueue {
        class,
        seq,
        message: sized(seq),
    };
    let mut ops = vec![];
    let mut expected: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
    // Interleaved numbers, across a byte boundary, put out of order.
    for (class, seq) in [(255u8, 300u64), (1, 2), (255, 4), (1, 256), (1, 7), (2, 5)] {
        ops.push(push(class, seq));
        expected.entry(class).or_default().push(seq);
    }
    ops.push(StoreOp::PushQueue {
        seq: 3,
        message: sized(3),
    });
    commit(&store, &k, ops).await?;
    commit(
        &store,
        &k,
        vec![StoreOp::RemoveClassQueue { class: 2, seq: 5 }, push(1, 9)],
    )
    .await?;
    expected.remove(&2);
    expected.entry(1).or_default().push(9);
    for seqs in expected.values_mut() {
        seqs.sort_unstable();
    }
    let resumed = store.resume(&k, QueueWindow::new(2, usize::MAX)).await?;
    ensure!(
        seqs(&resumed.queue) == vec![3],
        "the offline queue holds {:?}, not [3]",
        seqs(&resumed.queue)
    );
    for (class, all) in &expected {
        let Some(queue) = resumed.class_queues.iter().find(|q| q.class == *class) else {
            return Err(Stop::Fail(format!(
                "resume returned no queue of class {class}"
            )));
        };
        let whole: Vec<(u64, QueuedPublish)> = all.iter().map(|s| (*s, sized(*s))).collect();
        ensure!(
            queue.summary == QueueSummary::of(&whole),
            "class {class}: summary {:?}, expected {:?}",
            queue.summary,
            QueueSummary::of(&whole)
        );
        let head: Vec<u64> = all.iter().copied().take(2).collect();
        ensure!(
            seqs(&queue.queue) == head,
            "class {class}: head {:?}, expected {head:?}",
            seqs(&queue.queue)
        );
    }
    ensure!(
        resumed.class_queues.len() == expected.len(),
        "resume returned classes {:?}",
        resumed
            .class_queues
            .iter()
            .map(|q| q.class)
            .collect::<Vec<_>>()
    );
    let read = store.read_class_queue(&k, 1, 8, QueueWindow::ALL).await?;
    ensure!(
        seqs(&read) == vec![9, 256],
        "class 1 read from #8 returned {:?}",
        seqs(&read)
    );
    ensure!(
        read.iter().all(|(seq, message)| *message == sized(*seq)),
        "class 1 read a record back changed"
    );
    let none = store.read_class_queue(&k, 3, 0, QueueWindow::ALL).await?;
    ensure!(none.is_empty(), "an empty class read {:?}", seqs(&none));
    ensure!(
        resumed.next_seq() == 301,
        "the next sequence number is {}, not past every class's",
        resumed.next_seq()
    );
    close_store(store).await?;
    let store = f.reopen(&loc).await?;
    let loaded = store.load(&k).await?;
    let classes: BTreeMap<u8, Vec<u64>> = loaded
        .class_queues
        .iter()
        .map(|q| (q.class, seqs(&q.queue)))
        .collect();
    ensure!(
        classes == expected,
        "after reopening the classes hold {classes:?}, expected {expected:?}"
    );
    store.clear(&k).await?;
    ensure!(
        store.load(&k).await?.is_empty(),
        "cleared, yet class queues remain"
    );
    Ok(())
}
