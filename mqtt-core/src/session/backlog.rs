//! Backlog replay by policy: latest-value compaction and the send allowance.
//!
//! Compaction keeps, per latest-value topic, the sequence number of the one value waiting
//! unsent, in memory and in the store (`StoreOp::PutLatestValue`), so that a session resumed
//! after a crash finds the value a new one replaces however deep in the queue it waits. The
//! record goes (`StoreOp::RemoveLatestValue`) in the output whose commit precedes the value's
//! sending: a record in the store always names a message that never went out, so a value that
//! may have reached the server is never dropped as replaced.

use std::collections::HashMap;

use super::{Event, PublishId, Session};
use crate::packet::topic_matches;
use crate::store::{Batch, LatestValue, StoreOp};

/// What the session keeps for its backlog policy.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    /// Per latest-value topic with a value waiting: its sequence number, stored size and
    /// priority class.
    latest: HashMap<String, (PublishId, u64, u8)>,
    /// What may still be sent while the session is paced: messages, and bytes (below zero
    /// after a message larger than what was left: the debt is paid from the next grants).
    allowance: (u64, i64),
}

impl Backlog {
    /// The policy's state as the store left it.
    pub(super) fn resume(stored: Vec<LatestValue>) -> Self {
        Self {
            latest: stored
                .into_iter()
                .map(|latest| (latest.topic, (latest.seq, latest.len, latest.class)))
                .collect(),
            ..Self::default()
        }
    }

    /// The message `id` of `topic` leaves the queue (sent, dropped or expired): if it held the
    /// topic's value, the topic's record goes in `commit`.
    pub(super) fn release(&mut self, id: PublishId, topic: &str, commit: &mut Batch) -> bool {
        if self.latest.is_empty()
            || self
                .latest
                .get(topic)
                .is_none_or(|(held, _, _)| *held != id)
        {
            return false;
        }
        self.latest.remove(topic);
        commit.push(StoreOp::RemoveLatestValue {
            topic: topic.to_owned(),
        });
        true
    }

    /// Like [`Backlog::release`], for a message whose topic is not at hand.
    pub(super) fn release_id(&mut self, id: PublishId, commit: &mut Batch) {
        let topic = self
            .latest
            .iter()
            .find(|(_, (held, _, _))| *held == id)
            .map(|(topic, _)| topic.clone());
        if let Some(topic) = topic {
            self.release(id, &topic, commit);
        }
    }
}

impl Session {
    /// Whether `topic` keeps only its newest unsent value.
    pub(super) fn is_latest_value_topic(&self, topic: &str) -> bool {
        let filters = &self.options.backlog.latest_value_topics;
        !filters.is_empty() && filters.iter().any(|filter| topic_matches(filter, topic))
    }

    /// Makes the queued message `id` (of the latest-value `topic`, `len` stored bytes) the
    /// value kept of its topic, dropping the value it replaces. Called in the output that
    /// stores `id`.
    pub(super) fn keep_latest_value(&mut self, id: PublishId, topic: &str, len: usize, class: u8) {
        let len = len as u64;
        let resumed_below = self.outbound.resumed_below;
        let replaced = self
            .backlog
            .latest
            .insert(topic.to_owned(), (id, len, class))
            .and_then(|(old, old_len, old_class)| {
                // The old value may wait in another class's queue (the classes changed).
                self.with_queue(old_class, |s| {
                    s.queue
                        .drop_unsent(old, old_len, resumed_below)
                        .then(|| s.queue_removal(old))
                })
                .flatten()
                .map(|removal| (old, removal))
            });
        if let Some((old, removal)) = replaced {
            self.outbound.forget_deadline(old);
            self.out.pending.commit.push(removal);
            self.events.push_back(Event::Replaced {
                id: old,
                by: id,
                topic: topic.to_owned(),
            });
        }
        self.out
            .pending
            .commit
            .push(StoreOp::PutLatestValue(LatestValue {
                topic: topic.to_owned(),
                seq: id,
                class,
                len,
            }));
    }

    /// The message `id` of `topic` leaves the queue: its latest-value record goes with it.
    pub(super) fn release_latest_value(&mut self, id: PublishId, topic: &str) -> bool {
        self.backlog
            .release(id, topic, &mut self.out.pending.commit)
    }

    /// Gives a paced session ([`BacklogPolicy::paced`](super::BacklogPolicy::paced)) leave to
    /// send `messages` more publishes and `bytes` more bytes of them, keeping at most
    /// `burst_messages` and `burst_bytes` unspent, and sends what waits as far as it allows.
    /// The driver calls it from its clock (a token bucket); without it a paced session sends
    /// no publish.
    pub fn allow_sends(
        &mut self,
        messages: u64,
        bytes: u64,
        burst_messages: u64,
        burst_bytes: u64,
    ) {
        let (held_messages, held_bytes) = self.backlog.allowance;
        let burst_bytes = i64::try_from(burst_bytes).unwrap_or(i64::MAX);
        self.backlog.allowance = (
            held_messages.saturating_add(messages).min(burst_messages),
            held_bytes
                .saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX))
                .min(burst_bytes),
        );
        self.drain();
    }

    /// Whether a paced session has publishes waiting that only its allowance holds back: the
    /// driver's cue to keep granting.
    pub fn waits_for_allowance(&self) -> bool {
        self.options.backlog.paced
            && self.connection.is_some()
            && !self.nothing_queued()
            && !self.may_send_publish()
    }

    /// Whether the allowance lets one more publish go (always, unpaced).
    pub(super) fn may_send_publish(&self) -> bool {
        let (messages, bytes) = self.backlog.allowance;
        !self.options.backlog.paced || (messages > 0 && bytes > 0)
    }

    /// A publish of `len` bytes on the wire leaves: the allowance pays for it.
    pub(super) fn spend_allowance(&mut self, len: usize) {
        if self.options.backlog.paced {
            let (messages, bytes) = &mut self.backlog.allowance;
            *messages = messages.saturating_sub(1);
            *bytes = bytes.saturating_sub(i64::try_from(len).unwrap_or(i64::MAX));
        }
    }
}
