//! The offline queue, windowed: its oldest messages in memory, the rest only in the store,
//! read back in order as the window empties. A queue of millions costs the window, not the
//! queue; its counts stay exact because every message enters and leaves through the engine.
//!
//! Reads never miss a message: a message beyond the window is only counted (`stored`), and
//! becomes readable once the driver reported the [`Output`](super::Output) that stores it
//! written ([`Session::written`]), so a read from `read_from` finds every readable message, in
//! sequence order.

use std::collections::VecDeque;

use super::{PublishId, Session, SessionError, decode_publish};
use crate::packet::{Publish, QoS};
use crate::store::{ClockCorrection, QueueSummary, QueueWindow, QueuedPublish};

/// A read of queued messages the driver is asked to make ([`Session::poll_queue_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRead {
    /// The priority class whose queue to read: 0, the offline queue
    /// ([`SessionStore::read_queue`](crate::store::SessionStore::read_queue)); above,
    /// [`SessionStore::read_class_queue`](crate::store::SessionStore::read_class_queue).
    pub class: u8,
    /// Read from this sequence number on.
    pub from: u64,
    /// At most this much.
    pub window: QueueWindow,
}

/// A message in memory: id, publish (at its QoS), stored size, the output that stores it
/// (0: stored before), and when it was accepted (wall clock, ms; `None` in older records).
type Resident = (PublishId, Publish, usize, u64, Option<u64>);

#[derive(Debug)]
pub(super) struct Queue {
    /// The oldest queued messages, in order.
    resident: VecDeque<Resident>,
    resident_bytes: usize,
    /// Messages after the resident ones, in the store only: how many, and their bytes.
    stored: u64,
    stored_bytes: u64,
    /// How many of `stored` were written, and so can be read back.
    readable: u64,
    /// Messages left to the store since the last output was polled.
    unpolled: u64,
    /// Per output polled with some (generation, how many): readable once it is written.
    polled: VecDeque<(u64, u64)>,
    /// Of `stored`, how many were stored before the session was resumed (the oldest ones).
    pub(super) stored_before_resume: u64,
    /// Where the next read starts: past every message resident or read.
    read_from: u64,
    /// A read is out.
    pub(super) reading: bool,
    window: QueueWindow,
    /// Messages left to the store by outputs not yet written: id, size, the output that
    /// stores it. One of them can still be taken back (`withdraw`).
    recent: VecDeque<(PublishId, usize, u64)>,
    /// QoS 1/2 messages still to discard as they are read back, and the sequence number they
    /// are below (a lost session's messages that may have gone out before a restart).
    pub(super) discard_on_read: (u64, PublishId),
    /// Messages beyond the window dropped unread (a newer latest value replaced them): a read
    /// made before the commit that removes them may still return them.
    skip_on_read: std::collections::BTreeSet<PublishId>,
}

/// A queued message resumed from the store: its id, its QoS and its Message Expiry deadline.
pub(super) type ResumedDeadline = (PublishId, QoS, Option<u64>);

impl Queue {
    /// The queue a session resumes with: the head the store returned, and the rest counted
    /// (`summary`, the whole queue's).
    pub(super) fn resume(
        head: &[(u64, QueuedPublish)],
        summary: QueueSummary,
        window: QueueWindow,
        corrections: &[ClockCorrection],
    ) -> Result<(Self, Vec<ResumedDeadline>), SessionError> {
        let mut queue = Self {
            resident: VecDeque::new(),
            resident_bytes: 0,
            stored: 0,
            stored_bytes: 0,
            readable: 0,
            stored_before_resume: 0,
            unpolled: 0,
            polled: VecDeque::new(),
            read_from: 0,
            reading: false,
            recent: VecDeque::new(),
            discard_on_read: (0, 0),
            skip_on_read: std::collections::BTreeSet::new(),
            // A window holds one message at least, or nothing could be read back.
            window: QueueWindow::new(window.messages.max(1), window.bytes),
        };
        let mut deadlines = Vec::new();
        for (seq, queued) in head {
            let (publish, deadline) = decode_queued(*seq, queued, corrections)?;
            deadlines.push((*seq, publish.qos, deadline));
            queue.read_from = seq.saturating_add(1);
            queue.resident_bytes += queued.packet.len();
            queue.resident.push_back((
                *seq,
                publish,
                queued.packet.len(),
                0,
                queued.accepted_at_ms,
            ));
        }
        queue.stored = summary.messages.saturating_sub(head.len() as u64);
        queue.stored_bytes = summary.bytes.saturating_sub(queue.resident_bytes as u64);
        queue.readable = queue.stored;
        queue.stored_before_resume = queue.stored;
        Ok((queue, deadlines))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.resident.is_empty() && self.stored == 0
    }

    pub(super) fn len(&self) -> u64 {
        self.resident.len() as u64 + self.stored
    }

    pub(super) fn bytes(&self) -> u64 {
        self.resident_bytes as u64 + self.stored_bytes
    }

    /// The oldest message: its id, publish, and the output that stores it.
    pub(super) fn front(&self) -> Option<(PublishId, &Publish, u64)> {
        self.resident
            .front()
            .map(|(id, publish, _, stored_by, _)| (*id, publish, *stored_by))
    }

    pub(super) fn pop_front(&mut self) -> Option<(PublishId, Publish)> {
        let (id, publish, size, _, _) = self.resident.pop_front()?;
        self.resident_bytes = self.resident_bytes.saturating_sub(size);
        Some((id, publish))
    }

    /// The QoS 1/2 messages in memory with an id below `id`, oldest first.
    pub(super) fn resident_publishes_below(&self, id: PublishId) -> Vec<PublishId> {
        self.resident
            .iter()
            .take_while(|(queued, _, _, _, _)| *queued < id)
            .filter(|(_, publish, _, _, _)| publish.qos != QoS::AtMostOnce)
            .map(|(queued, _, _, _, _)| *queued)
            .collect()
    }

    /// When the oldest message waiting to be sent was accepted (wall clock, ms), if known.
    pub(super) fn oldest_accepted_at_ms(&self) -> Option<u64> {
        self.resident.front().and_then(|(_, _, _, _, at)| *at)
    }

    /// The oldest message still queued (in memory, or the store beyond it).
    pub(super) fn oldest(&self) -> Option<PublishId> {
        match self.resident.front() {
            Some((id, _, _, _, _)) => Some(*id),
            None => (self.stored > 0).then_some(self.read_from),
        }
    }

    /// How many messages in memory have an id below `id`.
    pub(super) fn resident_below(&self, id: PublishId) -> usize {
        self.resident
            .iter()
            .take_while(|(queued, _, _, _, _)| *queued < id)
            .count()
    }

    /// Takes the resident message `id` out of the queue, wherever it is.
    pub(super) fn remove(&mut self, id: PublishId) -> Option<Publish> {
        let index = self
            .resident
            .iter()
            .position(|(queued, _, _, _, _)| *queued == id)?;
        let (_, publish, size, _, _) = self.resident.remove(index)?;
        self.resident_bytes = self.resident_bytes.saturating_sub(size);
        Some(publish)
    }

    /// Adds a message just stored under `id` by the output `stored_by`. It stays in memory
    /// while the window has room and nothing waits in the store before it; `false` when it was
    /// left to the store.
    pub(super) fn push(
        &mut self,
        id: PublishId,
        publish: Publish,
        size: usize,
        stored_by: u64,
        accepted_at_ms: u64,
    ) -> bool {
        let room = self.resident.len() < self.window.messages
            && (self.resident.is_empty()
                || self.resident_bytes.saturating_add(size) <= self.window.bytes);
        if self.stored > 0 || !room {
            self.stored += 1;
            self.stored_bytes += size as u64;
            self.unpolled += 1;
            self.recent.push_back((id, size, stored_by));
            return false;
        }
        self.read_from = id.saturating_add(1);
        self.resident_bytes += size;
        self.resident
            .push_back((id, publish, size, stored_by, Some(accepted_at_ms)));
        true
    }

    /// The output `generation` was polled: it stores the messages left to the store since
    /// the output before it.
    pub(super) fn polled(&mut self, generation: u64) {
        let count = std::mem::take(&mut self.unpolled);
        if count > 0 {
            self.polled.push_back((generation, count));
        }
    }

    /// Takes the message `id` back while the output that stores it is not written yet (so it
    /// cannot have been read back): resident or left to the store. Whether it was there.
    pub(super) fn take_back(&mut self, id: PublishId) -> bool {
        if self.remove(id).is_some() {
            return true;
        }
        let Some(index) = self.recent.iter().position(|(recent, _, _)| *recent == id) else {
            return false;
        };
        let Some((_, size, stored_by)) = self.recent.remove(index) else {
            return false;
        };
        // Counted with the output that stores it, or with those not polled yet.
        match self.polled.iter_mut().find(|(at, _)| *at == stored_by) {
            Some((_, count)) => *count = count.saturating_sub(1),
            None => self.unpolled = self.unpolled.saturating_sub(1),
        }
        self.polled.retain(|(_, count)| *count > 0);
        self.stored = self.stored.saturating_sub(1);
        self.stored_bytes = self.stored_bytes.saturating_sub(size as u64);
        true
    }

    /// Takes the unsent message `id`, stored with `len` bytes, out of the queue wherever it
    /// waits: in memory, left to the store by an output not written yet, or in the store
    /// beyond the window. `false` when it is no longer queued, or when it is one of a lost
    /// session's messages still to be discarded as they are read (their count stays exact).
    pub(super) fn drop_unsent(&mut self, id: PublishId, len: u64, resumed_below: u64) -> bool {
        if self.take_back(id) {
            return true;
        }
        let (to_discard, below) = self.discard_on_read;
        if id < self.read_from || self.readable == 0 || (to_discard > 0 && id < below) {
            return false;
        }
        self.stored -= 1;
        self.readable -= 1;
        self.stored_bytes = self.stored_bytes.saturating_sub(len);
        if id < resumed_below {
            self.stored_before_resume = self.stored_before_resume.saturating_sub(1);
        }
        self.skip_on_read.insert(id);
        true
    }

    /// The outputs up to `generation` are written: what they stored can be read back.
    pub(super) fn written(&mut self, generation: u64) {
        while self
            .recent
            .front()
            .is_some_and(|(_, _, stored_by)| *stored_by <= generation)
        {
            self.recent.pop_front();
        }
        while let Some(&(at, count)) = self.polled.front() {
            if at > generation {
                break;
            }
            self.polled.pop_front();
            self.readable += count;
        }
    }

    /// The read to make now, if the window runs low and the store holds readable messages.
    pub(super) fn next_read(&mut self) -> Option<QueueRead> {
        // Half empty on both counts: the binding one is messages for small payloads, bytes
        // for big ones.
        let low = self.resident.len() <= self.window.messages / 2
            && self.resident_bytes <= self.window.bytes / 2;
        if self.reading || self.readable == 0 || !low {
            return None;
        }
        let messages = self
            .window
            .messages
            .saturating_sub(self.resident.len())
            .min(usize::try_from(self.readable).unwrap_or(usize::MAX))
            .max(1);
        self.reading = true;
        Some(QueueRead {
            class: 0,
            from: self.read_from,
            window: QueueWindow::new(
                messages,
                self.window.bytes.saturating_sub(self.resident_bytes),
            ),
        })
    }
}

/// A queued record as the engine holds it: the publish at its QoS, and its deadline in the
/// session's clock now (`corrections` are the clock's steps since it was stored).
fn decode_queued(
    seq: u64,
    queued: &QueuedPublish,
    corrections: &[ClockCorrection],
) -> Result<(Publish, Option<u64>), SessionError> {
    let mut publish =
        decode_publish(&queued.packet).map_err(|reason| SessionError::BadRecord { seq, reason })?;
    publish.qos = queued.qos;
    let deadline = queued
        .expires_at_ms
        .map(|at| ClockCorrection::apply(corrections, seq, at));
    Ok((publish, deadline))
}

impl Session {
    /// A read of queued messages the store holds beyond the window in memory, when the window
    /// runs low; `None` otherwise. Make it with [`SessionStore::read_queue`](crate::store::SessionStore::read_queue)
    /// after every [`Output`](super::Output) polled so far has been committed, and hand the
    /// records to [`Session::queue_read`]. At most one read is out at a time.
    /// With priority classes, the highest class's queue is read first, each from its own
    /// class ([`QueueRead::class`]).
    pub fn poll_queue_read(&mut self) -> Option<QueueRead> {
        if self.read_out.is_some() {
            return None;
        }
        let classes: Vec<u8> = self.lanes.keys().rev().copied().collect();
        let read = classes
            .into_iter()
            .find_map(|class| {
                self.with_queue(class, |s| s.queue.next_read())
                    .flatten()
                    .map(|read| QueueRead { class, ..read })
            })
            .or_else(|| self.queue.next_read())?;
        self.read_out = Some(read.class);
        Some(read)
    }

    /// The records a [`QueueRead`] returned. An error says the store broke its contract (it
    /// returned nothing while messages wait, or records out of order, or one that cannot be
    /// read): the session cannot go on from this store.
    pub fn queue_read(&mut self, records: Vec<(u64, QueuedPublish)>) -> Result<(), SessionError> {
        let class = self.read_out.take().unwrap_or(0);
        self.with_queue(class, |s| s.read_into_queue(records))
            .unwrap_or(Ok(()))?;
        self.drop_expired();
        self.drain();
        Ok(())
    }

    /// The records read for the queue now in `self.queue`.
    fn read_into_queue(&mut self, records: Vec<(u64, QueuedPublish)>) -> Result<(), SessionError> {
        self.queue.reading = false;
        if records.is_empty() && self.queue.readable > 0 {
            return Err(SessionError::QueueLost {
                from: self.queue.read_from,
                missing: self.queue.readable,
            });
        }
        for (seq, queued) in records {
            if self.queue.skip_on_read.remove(&seq) {
                // Dropped unread, counted out then; the commit removing it came after the read.
                self.queue.read_from = seq.saturating_add(1);
                continue;
            }
            if seq < self.queue.read_from || self.queue.readable == 0 {
                return Err(SessionError::BadRecord {
                    seq,
                    reason: format!(
                        "a queued message out of order or never stored (reading from #{})",
                        self.queue.read_from
                    ),
                });
            }
            let (publish, deadline) = decode_queued(seq, &queued, &self.meta.clock.corrections)?;
            let size = queued.packet.len();
            let (to_discard, below) = self.queue.discard_on_read;
            let discard = to_discard > 0 && seq < below && publish.qos != QoS::AtMostOnce;
            let queue = &mut self.queue;
            queue.read_from = seq.saturating_add(1);
            queue.stored -= 1;
            queue.readable -= 1;
            // Reads go in order: the first ones read back are those stored before the resume.
            queue.stored_before_resume = queue.stored_before_resume.saturating_sub(1);
            queue.stored_bytes = queue.stored_bytes.saturating_sub(size as u64);
            if discard {
                // It may have reached the session the server lost: discarded, never sent.
                queue.discard_on_read.0 -= 1;
                self.backlog
                    .release(seq, &publish.topic, &mut self.out.pending.commit);
                let removal = self.queue_removal(seq);
                self.out.pending.commit.push(removal);
                self.events.push_back(super::Event::Discarded {
                    id: seq,
                    topic: publish.topic,
                });
                continue;
            }
            queue.resident_bytes += size;
            self.outbound
                .track_resumed_deadline(seq, publish.qos, deadline);
            queue
                .resident
                .push_back((seq, publish, size, 0, queued.accepted_at_ms));
        }
        let read_from = self.queue.read_from;
        self.queue.skip_on_read.retain(|seq| *seq >= read_from);
        Ok(())
    }
}
