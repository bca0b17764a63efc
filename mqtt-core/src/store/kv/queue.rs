//! Sessions on a key-value backend, section by section: resuming one without reading its
//! whole queue, reading the queue on from a sequence number, and the queue totals that every
//! commit keeps exact, so that a queue of millions costs neither memory nor a count at start.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{KvBackend, Shared};
use crate::store::layout::{self, KvWrite, Record};
use crate::store::{
    Batch, ClassQueue, QueueSummary, QueueWindow, QueuedPublish, SessionKey, StoreError, StoreOp,
    StoredSession,
};

/// Queued messages removed per commit when a session is cleared (at most so many, and so many
/// bytes): a session of any size is cleared in bounded memory.
const CLEAR_CHUNK: QueueWindow = QueueWindow::new(16_384, 64 << 20);

/// How many queued messages, and how many bytes of their packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Totals {
    messages: u64,
    bytes: u64,
}

/// What a commit must know of a session's queue to keep its totals exact, as this store last
/// wrote or read it: kept between commits so that a commit reads nothing before it writes
/// (on PostgreSQL every read is a round trip). Only the session's owner writes it, through
/// this store, so what it wrote stays true until it writes again.
#[derive(Debug, Default)]
pub(super) struct QueueShape {
    totals: Totals,
    /// No queued message is numbered above this (the last pushed, not lowered by removals).
    bound: Option<u64>,
    /// Packet lengths of messages known to be stored, the queue's head first (where the
    /// removals come): at most [`KNOWN_LENGTHS`], so that a queue of millions costs no memory.
    lengths: BTreeMap<u64, u64>,
}

/// The most stored lengths a session's shape keeps.
const KNOWN_LENGTHS: usize = 65_536;

impl QueueShape {
    /// Keeps the stored length of `seq`, unless it already keeps as many as it may; says
    /// whether it does.
    fn know(&mut self, seq: u64, len: u64) -> bool {
        if self.lengths.len() < KNOWN_LENGTHS || self.lengths.contains_key(&seq) {
            self.lengths.insert(seq, len);
            return true;
        }
        false
    }
}

/// The shapes of the sessions this store wrote or read since they were resumed.
pub(super) type QueueShapes = HashMap<SessionKey, QueueShape>;

/// The queue shapes a write leaves, to keep once it succeeded.
type ShapesAfter = Vec<(SessionKey, QueueShape)>;

impl<B: KvBackend> Shared<B> {
    /// Every entry in `[start, end)`.
    fn entries_in(&self, (start, end): (Vec<u8>, Vec<u8>)) -> Result<super::Entries, StoreError> {
        let mut out = Vec::new();
        self.backend.visit_range(&start, Some(&end), &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    pub(super) fn resume(
        &self,
        key: &SessionKey,
        head: QueueWindow,
    ) -> Result<StoredSession, StoreError> {
        let mut entries = Vec::new();
        let meta_key = layout::meta_key(key);
        if let Some(meta) = self.backend.get(&meta_key)? {
            entries.push((meta_key, meta));
        }
        entries.extend(self.entries_in(layout::flows_range(key))?);
        entries.extend(self.entries_in(layout::subscriptions_range(key))?);
        entries.extend(self.entries_in(layout::seen_keys_range(key))?);
        entries.extend(self.entries_in(layout::latest_values_range(key))?);
        let mut session = layout::decode_session(key, entries)?;
        session.class_queues = self.class_queues(key, head)?;
        session.queue = self.read_queue(key, 0, head)?;
        session.queue_summary = self.summary(key)?;
        let mut shapes = self.shapes();
        let shape = shapes.entry(key.clone()).or_default();
        shape.totals = Totals {
            messages: session.queue_summary.messages,
            bytes: session.queue_summary.bytes,
        };
        shape.bound = session.queue_summary.last_seq;
        shape.lengths.clear();
        for (seq, message) in &session.queue {
            shape.know(*seq, message.packet.len() as u64);
        }
        if head == QueueWindow::ALL && QueueSummary::of(&session.queue) != session.queue_summary {
            return Err(StoreError::Corrupt {
                session: key.to_string(),
                record: "queue totals".to_owned(),
                reason: format!(
                    "they say {:?}; the queue holds {:?}",
                    session.queue_summary,
                    QueueSummary::of(&session.queue)
                ),
            });
        }
        Ok(session)
    }

    /// Calls `visit` with each queued message of the session from `from` on, decoded, until it
    /// returns `false`; a record that cannot be read ends the visit with its error.
    fn visit_queue(
        &self,
        key: &SessionKey,
        from: u64,
        visit: &mut dyn FnMut(u64, QueuedPublish) -> bool,
    ) -> Result<(), StoreError> {
        let (start, end) = layout::queue_range(key, from);
        let mut failed = None;
        self.backend
            .visit_range(
                &start,
                Some(&end),
                &mut |k, v| match layout::decode_queued(key, k, v) {
                    Ok((seq, message)) => visit(seq, message),
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                },
            )?;
        failed.map_or(Ok(()), Err)
    }

    pub(super) fn read_queue(
        &self,
        key: &SessionKey,
        from: u64,
        window: QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        self.visit_queue(key, from, &mut |seq, message| {
            if !window.admits(out.len(), bytes, message.packet.len()) {
                return false;
            }
            bytes = bytes.saturating_add(message.packet.len());
            out.push((seq, message));
            true
        })?;
        // What the engine reads it later removes: its lengths are then known without a read.
        if let Some(shape) = self.shapes().get_mut(key) {
            for (seq, message) in &out {
                shape.know(*seq, message.packet.len() as u64);
            }
        }
        Ok(out)
    }

    /// Calls `visit` with each class-queue record in `[start, end)`, decoded, until it
    /// returns `false`; a record that cannot be read ends the visit with its error.
    fn visit_class_queued(
        &self,
        (start, end): (Vec<u8>, Vec<u8>),
        visit: &mut dyn FnMut(u8, u64, QueuedPublish) -> bool,
    ) -> Result<(), StoreError> {
        let mut failed = None;
        self.backend.visit_range(
            &start,
            Some(&end),
            &mut |k, v| match layout::decode_record(k, v) {
                Ok((_, Record::ClassQueued(class, seq, message))) => visit(class, seq, message),
                Ok(_) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            },
        )?;
        failed.map_or(Ok(()), Err)
    }

    /// The queues of the priority classes: each one's head within `head`, and its summary,
    /// counted by a visit of its records (classes hold the few messages ranked first; the
    /// offline queue, which may hold millions, keeps totals of its own).
    fn class_queues(
        &self,
        key: &SessionKey,
        head: QueueWindow,
    ) -> Result<Vec<ClassQueue>, StoreError> {
        let mut queues: Vec<ClassQueue> = Vec::new();
        let mut head_bytes = 0usize;
        self.visit_class_queued(
            layout::class_queues_range(key),
            &mut |class, seq, message| {
                if queues.last().is_none_or(|q| q.class != class) {
                    queues.push(ClassQueue {
                        class,
                        ..ClassQueue::default()
                    });
                    head_bytes = 0;
                }
                if let Some(queue) = queues.last_mut() {
                    let len = message.packet.len();
                    let summary = &mut queue.summary;
                    summary.messages += 1;
                    summary.bytes += len as u64;
                    summary.last_seq = Some(seq);
                    // The head is the run of records from the first that the window admits.
                    if summary.messages == queue.queue.len() as u64 + 1
                        && head.admits(queue.queue.len(), head_bytes, len)
                    {
                        head_bytes = head_bytes.saturating_add(len);
                        queue.queue.push((seq, message));
                    }
                }
                true
            },
        )?;
        Ok(queues)
    }

    pub(super) fn read_class_queue(
        &self,
        key: &SessionKey,
        class: u8,
        from: u64,
        window: QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let range = layout::class_queue_range(key, class, from);
        self.visit_class_queued(range, &mut |_, seq, message| {
            if !window.admits(out.len(), bytes, message.packet.len()) {
                return false;
            }
            bytes = bytes.saturating_add(message.packet.len());
            out.push((seq, message));
            true
        })?;
        Ok(out)
    }

    pub(super) fn shapes(&self) -> std::sync::MutexGuard<'_, QueueShapes> {
        self.shapes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole queue in numbers: the totals record (counted from the records in a store
    /// written before it existed) and the last key.
    fn summary(&self, key: &SessionKey) -> Result<QueueSummary, StoreError> {
        let totals = self.totals(key)?;
        let (start, end) = layout::queue_range(key, 0);
        let last_seq = self
            .backend
            .last_key_in(&start, &end)?
            .and_then(|raw| layout::queued_seq_of_key(key, &raw));
        if (totals.messages == 0) != last_seq.is_none() {
            return Err(StoreError::Corrupt {
                session: key.to_string(),
                record: "queue totals".to_owned(),
                reason: format!(
                    "they count {} messages, and the last queued message is {last_seq:?}",
                    totals.messages
                ),
            });
        }
        Ok(QueueSummary {
            messages: totals.messages,
            bytes: totals.bytes,
            last_seq,
        })
    }

    fn totals(&self, key: &SessionKey) -> Result<Totals, StoreError> {
        if let Some(raw) = self.backend.get(&layout::queue_totals_key(key))? {
            let (messages, bytes) = layout::decode_queue_totals(key, &raw)?;
            return Ok(Totals { messages, bytes });
        }
        // A store from before the totals record: count once, in constant memory.
        let mut totals = Totals::default();
        self.visit_queue(key, 0, &mut |_, message| {
            totals.messages += 1;
            totals.bytes += message.packet.len() as u64;
            true
        })?;
        Ok(totals)
    }

    /// The packet lengths of the queued messages stored under `seqs` (those there are). A
    /// commit's removals are the queue's head, next to each other: one read over their span
    /// costs less than a lookup each (on redb, a read transaction each); scattered ones are
    /// looked up one by one.
    fn stored_lens(
        &self,
        key: &SessionKey,
        seqs: &BTreeSet<u64>,
    ) -> Result<HashMap<u64, u64>, StoreError> {
        let mut lens = HashMap::new();
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(lens);
        };
        let mut failed = None;
        if last - first <= 8 * seqs.len() as u64 + 64 {
            let (start, section_end) = layout::queue_range(key, first);
            let end = match last.checked_add(1) {
                Some(after) => layout::queue_key(key, after),
                None => section_end,
            };
            self.backend.visit_range(&start, Some(&end), &mut |k, v| {
                let Some(seq) = layout::queued_seq_of_key(key, k).filter(|s| seqs.contains(s))
                else {
                    return true;
                };
                match layout::queued_packet_len(key, k, v) {
                    Ok(len) => {
                        lens.insert(seq, len as u64);
                        true
                    }
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            })?;
        } else {
            for &seq in seqs {
                let raw_key = layout::queue_key(key, seq);
                if let Some(value) = self.backend.get(&raw_key)? {
                    lens.insert(
                        seq,
                        layout::queued_packet_len(key, &raw_key, &value)? as u64,
                    );
                }
            }
        }
        failed.map_or(Ok(lens), Err)
    }

    /// Applies `batch`, with the queue totals it leaves in the same atomic write.
    pub(super) fn commit(&self, key: &SessionKey, batch: &Batch) -> Result<(), StoreError> {
        if !touches_queue(batch) {
            return self.write(&layout::batch_writes(key, batch));
        }
        self.check_writable()?;
        let mut shapes = self.shapes();
        let mut writes = layout::batch_writes(key, batch);
        let shape = self.totals_writes(&mut shapes, key, batch, &mut writes)?;
        self.write_shaped(&mut shapes, &writes, vec![(key.clone(), shape)])
    }

    /// Writes `writes`; then the sessions' shapes are the ones the write leaves, or, if it
    /// failed, unknown.
    fn write_shaped(
        &self,
        shapes: &mut QueueShapes,
        writes: &[KvWrite],
        after: Vec<(SessionKey, QueueShape)>,
    ) -> Result<(), StoreError> {
        let written = self.write(writes);
        for (key, shape) in after {
            match written {
                Ok(()) => shapes.insert(key, shape),
                Err(_) => shapes.remove(&key),
            };
        }
        written
    }

    /// Applies the batches of several sessions in one atomic write, with the queue totals
    /// they leave. Batches of one session are taken together, in order.
    pub(super) fn commit_sessions(
        &self,
        batches: &[(SessionKey, Batch)],
    ) -> Result<(), StoreError> {
        self.check_writable()?;
        let mut shapes = self.shapes();
        let (writes, after) = self.prepare(&mut shapes, batches)?;
        self.write_shaped(&mut shapes, &writes, after)
    }

    /// The commits of several sessions that reached the store together, in one atomic write:
    /// one `fdatasync` for all of them. One result per commit, in order. If the write cannot
    /// be prepared (a record of one session cannot be read), each commit is applied alone, so
    /// that one session's trouble stays that session's.
    pub(super) fn commit_group(
        &self,
        group: &[(SessionKey, Batch)],
    ) -> Vec<Result<(), StoreError>> {
        if let [(key, batch)] = group {
            return vec![self.commit(key, batch)];
        }
        if self.check_writable().is_err() {
            return group.iter().map(|_| self.check_writable()).collect();
        }
        let mut shapes = self.shapes();
        let Ok((writes, after)) = self.prepare(&mut shapes, group) else {
            drop(shapes);
            return group
                .iter()
                .map(|(key, batch)| self.commit(key, batch))
                .collect();
        };
        match self.write_shaped(&mut shapes, &writes, after) {
            Ok(()) => group.iter().map(|_| Ok(())).collect(),
            Err(e) => {
                // The first gets the error itself; all of them failed with it.
                let cause = super::super::described(&e);
                let mut results = vec![Err(e)];
                results.extend(group.iter().skip(1).map(|_| {
                    Err(StoreError::Poisoned {
                        cause: cause.clone(),
                    })
                }));
                results
            }
        }
    }

    /// The writes of `batches`, with the queue totals they leave, and the queue shapes after
    /// them. Batches of one session are taken together, in order.
    fn prepare(
        &self,
        shapes: &mut QueueShapes,
        batches: &[(SessionKey, Batch)],
    ) -> Result<(Vec<KvWrite>, ShapesAfter), StoreError> {
        // Sessions in first-seen order; a session's later batches join its first (rare: a
        // client has one commit at a time in the store, so only forwarding repeats a key).
        let mut merged: Vec<(&SessionKey, Cow<'_, Batch>)> = Vec::with_capacity(batches.len());
        let mut index: HashMap<&SessionKey, usize> = HashMap::with_capacity(batches.len());
        for (key, batch) in batches {
            match index.get(key).and_then(|&i| merged.get_mut(i)) {
                Some((_, into)) => into.to_mut().append(&mut batch.clone()),
                None => {
                    index.insert(key, merged.len());
                    merged.push((key, Cow::Borrowed(batch)));
                }
            }
        }
        let mut writes = Vec::new();
        let mut after = Vec::new();
        for (key, batch) in &merged {
            writes.extend(layout::batch_writes(key, batch));
            if touches_queue(batch) {
                let shape = self.totals_writes(shapes, key, batch, &mut writes)?;
                after.push(((*key).clone(), shape));
            }
        }
        Ok((writes, after))
    }

    /// Appends to `writes` the queue totals record `key`'s session has after `batch`, and
    /// returns the queue's shape after it. Reads nothing when the shape is known (and the
    /// lengths of what the batch removes); the caller holds the shapes until `writes` is
    /// written.
    fn totals_writes(
        &self,
        shapes: &mut QueueShapes,
        key: &SessionKey,
        batch: &Batch,
        writes: &mut Vec<KvWrite>,
    ) -> Result<QueueShape, StoreError> {
        // Each queued message the batch pushes (with its new length) or removes, in order.
        let queue_ops: Vec<(u64, Option<u64>)> = batch
            .ops()
            .iter()
            .filter_map(|op| match op {
                StoreOp::PushQueue { seq, message } => {
                    Some((*seq, Some(message.packet.len() as u64)))
                }
                StoreOp::RemoveQueue { seq } => Some((*seq, None)),
                _ => None,
            })
            .collect();
        let mut shape = match shapes.remove(key) {
            Some(shape) => shape,
            None => {
                // Appends go past the last stored message: only numbers up to it can be there.
                let (start, end) = layout::queue_range(key, 0);
                let bound = self
                    .backend
                    .last_key_in(&start, &end)?
                    .and_then(|raw| layout::queued_seq_of_key(key, &raw));
                QueueShape {
                    totals: self.totals(key)?,
                    bound,
                    lengths: BTreeMap::new(),
                }
            }
        };
        let unknown: BTreeSet<u64> = queue_ops
            .iter()
            .map(|(seq, _)| *seq)
            .filter(|seq| shape.bound.is_some_and(|bound| *seq <= bound))
            .filter(|seq| !shape.lengths.contains_key(seq))
            .collect();
        for (seq, len) in self.stored_lens(key, &unknown)? {
            shape.lengths.insert(seq, len);
        }
        // The lengths are updated op by op, so a later op of this batch sees what an earlier
        // one did; a length the shape has no room for is kept here meanwhile.
        let mut beyond_room: HashMap<u64, u64> = HashMap::new();
        for (seq, new_len) in queue_ops {
            let old_len = shape
                .lengths
                .remove(&seq)
                .or_else(|| beyond_room.remove(&seq));
            if let Some(old) = old_len {
                shape.totals.messages = shape.totals.messages.saturating_sub(1);
                shape.totals.bytes = shape.totals.bytes.saturating_sub(old);
            }
            if let Some(new) = new_len {
                shape.totals.messages += 1;
                shape.totals.bytes += new;
                shape.bound = Some(shape.bound.map_or(seq, |bound| bound.max(seq)));
                if !shape.know(seq, new) {
                    beyond_room.insert(seq, new);
                }
            }
        }
        let totals = shape.totals;
        let totals_key = layout::queue_totals_key(key);
        writes.push(match totals.messages {
            0 => KvWrite::Delete(totals_key),
            _ => KvWrite::Put(
                totals_key,
                layout::queue_totals_value(key, totals.messages, totals.bytes),
            ),
        });
        Ok(shape)
    }

    /// Removes the session: the queue a chunk at a time (each chunk a commit that keeps the
    /// totals right, so a crash part-way leaves a session whose oldest messages are gone,
    /// never a damaged one), then the rest in one write.
    pub(super) fn clear(&self, key: &SessionKey) -> Result<(), StoreError> {
        loop {
            let chunk = self.read_queue(key, 0, CLEAR_CHUNK)?;
            if chunk.is_empty() {
                break;
            }
            let batch: Batch = chunk
                .into_iter()
                .map(|(seq, _)| StoreOp::RemoveQueue { seq })
                .collect();
            self.commit(key, &batch)?;
        }
        self.shapes().remove(key);
        let entries = self.backend.scan_prefix(&layout::session_prefix(key))?;
        if entries.is_empty() {
            return Ok(());
        }
        let deletes: Vec<KvWrite> = entries
            .into_iter()
            .map(|(k, _)| KvWrite::Delete(k))
            .collect();
        self.write(&deletes)
    }
}

/// Whether `batch` pushes or removes queued messages (and so changes the queue totals).
fn touches_queue(batch: &Batch) -> bool {
    batch
        .ops()
        .iter()
        .any(|op| matches!(op, StoreOp::PushQueue { .. } | StoreOp::RemoveQueue { .. }))
}
