//! Priority classes: a queue per class above 0 (a lane), each windowed like the offline queue
//! and stored in a section of its own, so that an alarm queued behind a million readings is
//! read and sent first without reading the readings.
//!
//! The code that handles a queue works on `self.queue`; a lane is swapped into that place
//! while it runs ([`Session::with_queue`]), with `queue_class` saying which class it is, so
//! that the store operations it emits name the right queue.

use super::{PublishId, Session, queue::Queue};
use crate::packet::topic_matches;
use crate::store::{ClassQueue, ClockCorrection, QueueWindow, StoreOp};

/// The lanes a session resumes with, and the deadlines of their messages in memory.
pub(super) fn resume_lanes(
    stored: &[ClassQueue],
    window: QueueWindow,
    corrections: &[ClockCorrection],
) -> Result<
    (
        std::collections::BTreeMap<u8, Queue>,
        Vec<super::queue::ResumedDeadline>,
    ),
    super::SessionError,
> {
    let mut lanes = std::collections::BTreeMap::new();
    let mut deadlines = Vec::new();
    for class in stored.iter().filter(|c| c.class > 0) {
        let (lane, resumed) = Queue::resume(&class.queue, class.summary, window, corrections)?;
        lanes.insert(class.class, lane);
        deadlines.extend(resumed);
    }
    Ok((lanes, deadlines))
}

impl Session {
    /// The priority class of `topic`: the highest of the classes whose filters match it, 0
    /// when none does.
    pub(super) fn class_of(&self, topic: &str) -> u8 {
        self.options
            .backlog
            .priorities
            .iter()
            .filter(|(filter, _)| topic_matches(filter, topic))
            .map(|(_, class)| *class)
            .max()
            .unwrap_or(0)
    }

    /// Runs `f` with the queue of `class` in `self.queue` (class 0: as it is). `None` when
    /// the class has no queue. `f` must not call `with_queue` itself.
    pub(super) fn with_queue<R>(&mut self, class: u8, f: impl FnOnce(&mut Self) -> R) -> Option<R> {
        if class == self.queue_class {
            return Some(f(self));
        }
        if self.queue_class != 0 {
            // Lanes do not nest: the caller holds another class's queue.
            return None;
        }
        let mut lane = self.lanes.remove(&class)?;
        std::mem::swap(&mut self.queue, &mut lane);
        self.queue_class = class;
        let result = f(self);
        std::mem::swap(&mut self.queue, &mut lane);
        self.queue_class = 0;
        self.lanes.insert(class, lane);
        Some(result)
    }

    /// The queue of `class`, made when its first message comes.
    pub(super) fn ensure_lane(&mut self, class: u8) {
        if class > 0 && !self.lanes.contains_key(&class) {
            let window = self.options.queue_window;
            if let Ok((lane, _)) = Queue::resume(&[], Default::default(), window, &[]) {
                self.lanes.insert(class, lane);
            }
        }
    }

    /// The operation that stores a queued message in the queue in `self.queue`.
    pub(super) fn queue_push(&self, seq: u64, message: crate::store::QueuedPublish) -> StoreOp {
        match self.queue_class {
            0 => StoreOp::PushQueue { seq, message },
            class => StoreOp::PushClassQueue {
                class,
                seq,
                message,
            },
        }
    }

    /// The operation that removes message `seq` from the queue in `self.queue`.
    pub(super) fn queue_removal(&self, seq: u64) -> StoreOp {
        class_removal(self.queue_class, seq)
    }

    /// Whether no queue holds a message.
    pub(super) fn nothing_queued(&self) -> bool {
        self.queue.is_empty() && self.lanes.values().all(Queue::is_empty)
    }

    /// Every queue, the offline queue first.
    pub(super) fn queues(&self) -> impl Iterator<Item = &Queue> {
        std::iter::once(&self.queue).chain(self.lanes.values())
    }

    /// The classes with a queue, highest first (the order they are sent in), then 0.
    pub(super) fn classes_by_rank(&self) -> Vec<u8> {
        self.lanes.keys().rev().copied().chain([0]).collect()
    }

    /// Drops the oldest queued publish of the lowest class that holds any, unsent, to make
    /// room: it leaves the store with the next [`Output`](super::Output) and is reported as
    /// [`Event::Dropped`](super::Event::Dropped). Returns its id; `None` when that class has
    /// no message in memory (its window is being read back from the store) or nothing is
    /// queued.
    pub fn drop_oldest_queued(&mut self) -> Option<PublishId> {
        let class =
            std::iter::once(0)
                .chain(self.lanes.keys().copied())
                .find(|class| match class {
                    0 => !self.queue.is_empty(),
                    class => self.lanes.get(class).is_some_and(|lane| !lane.is_empty()),
                })?;
        self.with_queue(class, |s| {
            let (id, publish) = s.queue.pop_front()?;
            s.outbound.forget_deadline(id);
            s.release_latest_value(id, &publish.topic);
            let removal = s.queue_removal(id);
            s.out.pending.commit.push(removal);
            s.events.push_back(super::Event::Dropped {
                id,
                topic: publish.topic,
            });
            Some(id)
        })
        .flatten()
    }

    /// Takes the message `id` out of whichever queue holds it in memory: its class and
    /// publish.
    pub(super) fn remove_queued(&mut self, id: PublishId) -> Option<(u8, crate::packet::Publish)> {
        if let Some(publish) = self.queue.remove(id) {
            return Some((0, publish));
        }
        let classes: Vec<u8> = self.lanes.keys().copied().collect();
        classes.into_iter().find_map(|class| {
            self.lanes
                .get_mut(&class)
                .and_then(|lane| lane.remove(id))
                .map(|publish| (class, publish))
        })
    }
}

/// The operation that removes message `seq` from the queue of `class`.
pub(super) fn class_removal(class: u8, seq: u64) -> StoreOp {
    match class {
        0 => StoreOp::RemoveQueue { seq },
        class => StoreOp::RemoveClassQueue { class, seq },
    }
}
