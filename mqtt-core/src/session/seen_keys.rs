//! The idempotency keys a subscribing session remembers: those of messages the application
//! handled (durable, bounded by count and age), and those of messages it holds now.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Deduplication, MessageTag};
use crate::store::{Batch, SeenKey, StoreOp};

/// What a copy of a keyed message is to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// The first the application gets: hand it over.
    New,
    /// The application handled its message already: acknowledge it, hand nothing over.
    Handled,
    /// The application holds its message now, handed over as this tag (on this connection,
    /// or on an earlier one): this copy is answered when it is settled.
    Held(MessageTag),
}

/// The keys, oldest first, with what keeps them bounded.
#[derive(Debug, Default)]
pub(super) struct SeenKeys {
    /// Kept in the store, by number: the oldest at the front.
    order: VecDeque<(u64, u64, String)>,
    handled: HashSet<String>,
    next_seq: u64,
    /// Keys of messages handed to the application and not settled, by tag and by key (also
    /// those of earlier connections, until they are settled or abandoned).
    held_by_tag: HashMap<MessageTag, String>,
    held: HashMap<String, MessageTag>,
    /// Copies answered in turn behind a message held on this connection, by that message's
    /// tag: they get its verdict.
    copies: HashMap<MessageTag, Vec<MessageTag>>,
    /// Copies acknowledged without being handed over.
    pub(super) dropped: u64,
}

impl SeenKeys {
    /// The keys a store kept, in ascending number.
    pub(super) fn resume(stored: Vec<(u64, SeenKey)>) -> Self {
        let mut keys = Self::default();
        for (seq, seen) in stored {
            keys.next_seq = seq.saturating_add(1);
            keys.handled.insert(seen.key.clone());
            keys.order.push_back((seq, seen.seen_at_ms, seen.key));
        }
        keys
    }

    /// What a copy carrying `key`, about to be handed over as `tag`, is; a new one is held
    /// from now on.
    pub(super) fn classify(&mut self, key: &str, tag: MessageTag) -> Arrival {
        if self.handled.contains(key) {
            self.dropped += 1;
            return Arrival::Handled;
        }
        if let Some(&original) = self.held.get(key) {
            self.dropped += 1;
            return Arrival::Held(original);
        }
        self.held.insert(key.to_owned(), tag);
        self.held_by_tag.insert(tag, key.to_owned());
        Arrival::New
    }

    /// `copy` arrived while the application holds `original` on this connection: its answer
    /// waits for the original's verdict.
    pub(super) fn copy_of(&mut self, original: MessageTag, copy: MessageTag) {
        self.copies.entry(original).or_default().push(copy);
    }

    /// The copies waiting for `original`'s verdict.
    pub(super) fn take_copies(&mut self, original: MessageTag) -> Vec<MessageTag> {
        self.copies.remove(&original).unwrap_or_default()
    }

    /// The connection ended: the copies answered in turn went with it (the server sends
    /// whatever it has not had an answer for again).
    pub(super) fn connection_ended(&mut self) {
        self.copies.clear();
    }

    /// The message `tag` was settled: accepted, its key is remembered (in `commit`, with the
    /// removal of keys now beyond `limits`); refused, it is only forgotten as held.
    pub(super) fn settled(
        &mut self,
        tag: MessageTag,
        accepted: bool,
        now_ms: u64,
        limits: &Deduplication,
        commit: &mut Batch,
    ) {
        if let Some(key) = self.unhold(tag)
            && accepted
        {
            self.remember(key, now_ms, limits, commit);
        }
    }

    /// The message `tag` will never be settled (the server sends it again): a copy of it is
    /// new again.
    pub(super) fn forget(&mut self, tag: MessageTag) {
        self.unhold(tag);
    }

    /// Stops holding the message `tag`; its key, if it had one.
    fn unhold(&mut self, tag: MessageTag) -> Option<String> {
        let key = self.held_by_tag.remove(&tag)?;
        if self.held.get(&key) == Some(&tag) {
            self.held.remove(&key);
        }
        Some(key)
    }

    fn remember(&mut self, key: String, now_ms: u64, limits: &Deduplication, commit: &mut Batch) {
        if !self.handled.insert(key.clone()) {
            return;
        }
        let seq = self.next_seq;
        self.next_seq = seq.saturating_add(1);
        commit.push(StoreOp::PutSeenKey {
            seq,
            seen: SeenKey {
                key: key.clone(),
                seen_at_ms: now_ms,
            },
        });
        self.order.push_back((seq, now_ms, key));
        let keep_for = u64::try_from(limits.keep_for.as_millis()).unwrap_or(u64::MAX);
        while let Some((seq, at, _)) = self.order.front() {
            let too_many = self.order.len() > limits.keep_at_most.max(1);
            let too_old = at.saturating_add(keep_for) < now_ms;
            if !too_many && !too_old {
                break;
            }
            commit.push(StoreOp::RemoveSeenKey { seq: *seq });
            if let Some((_, _, key)) = self.order.pop_front() {
                self.handled.remove(&key);
            }
        }
    }

    /// How many keys are kept.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}
