//! Keeping a store tidy without losing a message: purging expired sessions that hold nothing
//! the application still needs, finding sessions no configured server uses, and moving a
//! session to another key. Written against [`SessionStore`] alone, so they work on any store.

use super::{
    Batch, OutboundRecord, QueueWindow, QueuedPublish, SessionKey, SessionStore, StoreError,
    StoreOp, StoredSession,
};

/// What a session holds that the application still needs: messages it accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldMessages {
    /// QoS 1/2 publishes sent and not yet acknowledged (PUBREL flows not counted: the server
    /// has those messages).
    pub in_flight: usize,
    /// Publishes waiting in the offline queue.
    pub queued: u64,
}

impl HeldMessages {
    /// What `session` holds (the whole queue, from its summary, however much of it was read).
    pub fn of(session: &StoredSession) -> Self {
        Self {
            in_flight: session
                .outbound
                .iter()
                .filter(|(_, r)| matches!(r, OutboundRecord::Publish(_)))
                .count(),
            queued: session.queue_summary.messages
                + session
                    .class_queues
                    .iter()
                    .map(|class| class.summary.messages)
                    .sum::<u64>(),
        }
    }

    /// Whether it holds no message.
    pub fn is_empty(&self) -> bool {
        self.in_flight == 0 && self.queued == 0
    }
}

/// What one pass over the store found and did ([`tidy_sessions`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tidied {
    /// Expired sessions removed.
    pub purged: Vec<SessionKey>,
    /// Sessions of the client id asked about, not in use, that hold messages: typically the
    /// session of a server whose address changed, whose messages would otherwise wait forever.
    pub stranded: Vec<(SessionKey, HeldMessages)>,
}

/// One pass over every session of the store but those in `keep` (the ones in use):
///
/// - removes each whose expiry has passed at `now_ms` and that holds no message, only state
///   the server has dropped too (markers, PUBREL flows, subscriptions, metadata). An expired
///   session that still holds messages is left alone: its messages are the application's, and
///   they go out as new ones when a client resumes it;
/// - with `client_id`, reports that client's sessions that hold messages.
///
/// Expiry is judged at the store's own clock where it has one ([`SessionStore::clock_ms`]: a
/// database several hosts share), else at `now_ms`. On a shared store this is the operator's
/// pass over every gateway's sessions: a session another process owns is skipped, and one
/// cleared is released at once. A client on a shared store runs only [`stranded_sessions`].
pub async fn tidy_sessions<S: SessionStore + ?Sized>(
    store: &S,
    now_ms: u64,
    client_id: Option<&str>,
    keep: &[SessionKey],
) -> Result<Tidied, StoreError> {
    let now_ms = store.clock_ms().await?.unwrap_or(now_ms);
    let mut tidied = Tidied::default();
    for key in store.sessions().await? {
        if keep.contains(&key) {
            continue;
        }
        // The queue's summary says what it holds; its records stay in the store.
        let session = store.resume(&key, QueueWindow::NONE).await?;
        let held = HeldMessages::of(&session);
        let expired = session.meta.as_ref().is_some_and(|m| m.is_expired(now_ms));
        if expired && held.is_empty() {
            match store.clear(&key).await {
                Err(StoreError::Fenced { .. }) => continue,
                cleared => cleared?,
            }
            store.release(&key).await?;
            tidied.purged.push(key);
        } else if !held.is_empty() && client_id == Some(key.client_id()) {
            tidied.stranded.push((key, held));
        }
    }
    Ok(tidied)
}

/// The sessions of `client_id` but those in `keep` that hold messages: what
/// [`tidy_sessions`] reports as stranded, found by reading alone. Reads only the sessions of
/// that client, so that on a store several gateways share it touches nobody else's.
pub async fn stranded_sessions<S: SessionStore + ?Sized>(
    store: &S,
    client_id: &str,
    keep: &[SessionKey],
) -> Result<Vec<(SessionKey, HeldMessages)>, StoreError> {
    let mut stranded = Vec::new();
    for key in store.sessions_of(client_id).await? {
        if key.client_id() != client_id || keep.contains(&key) {
            continue;
        }
        let held = HeldMessages::of(&store.resume(&key, QueueWindow::NONE).await?);
        if !held.is_empty() {
            stranded.push((key, held));
        }
    }
    Ok(stranded)
}

/// Moves the session stored under `from` into `to` (the key of a server's new address), then
/// clears `from`: its flows and queued messages, in their order, after anything `to` holds
/// (sequence numbers renumbered), its inbound markers, its subscriptions where `to` has
/// none for the filter, the idempotency keys of messages handled (after `to`'s own) and
/// the latest-value records (following their messages' new numbers);
/// `to` keeps its own metadata if it has any. Refuses with [`StoreError::Occupied`] when `to`
/// holds flows or queued messages of its own, whose packet identifiers could collide. Run it while no client uses either key. The two steps are two
/// commits: if the process dies between them, both keys hold the messages and `from` shows up
/// again as stranded; clear it then ([`SessionStore::clear`]).
pub async fn move_session<S: SessionStore + ?Sized>(
    store: &S,
    from: &SessionKey,
    to: &SessionKey,
) -> Result<(), StoreError> {
    let session = store.load(from).await?;
    if session.is_empty() || from == to {
        return Ok(());
    }
    let target = store.load(to).await?;
    if !target.outbound.is_empty() || !target.queue.is_empty() || !target.class_queues.is_empty() {
        return Err(StoreError::Occupied {
            session: to.to_string(),
        });
    }
    let mut batch = Batch::new();
    if target.meta.is_none()
        && let Some(meta) = session.meta.clone()
    {
        batch.push(StoreOp::SetMeta(meta));
    }
    // One sequence for both kinds keeps their relative order.
    let base = target.next_seq();
    type Moved = (u64, Option<OutboundRecord>, Option<(u8, QueuedPublish)>);
    let classes = session.class_queues.into_iter().flat_map(|class| {
        let number = class.class;
        class
            .queue
            .into_iter()
            .map(move |(seq, q)| (seq, None, Some((number, q))))
    });
    let mut records: Vec<Moved> = session
        .outbound
        .into_iter()
        .map(|(seq, r)| (seq, Some(r), None))
        .chain(
            session
                .queue
                .into_iter()
                .map(|(seq, q)| (seq, None, Some((0, q)))),
        )
        .chain(classes)
        .collect();
    records.sort_by_key(|(seq, _, _)| *seq);
    let mut renumbered = std::collections::HashMap::new();
    for (seq, (old_seq, record, queued)) in (base..).zip(records) {
        renumbered.insert(old_seq, seq);
        if let Some(record) = record {
            batch.push(StoreOp::PutOutbound { seq, record });
        }
        match queued {
            Some((0, message)) => batch.push(StoreOp::PushQueue { seq, message }),
            Some((class, message)) => batch.push(StoreOp::PushClassQueue {
                class,
                seq,
                message,
            }),
            None => &mut batch,
        };
    }
    for packet_id in session.inbound {
        batch.push(StoreOp::PutInbound { packet_id });
    }
    for subscription in session.subscriptions {
        if !target
            .subscriptions
            .iter()
            .any(|s| s.filter == subscription.filter)
        {
            batch.push(StoreOp::PutSubscription(subscription));
        }
    }
    // The keys of messages handled go after `to`'s own, oldest first.
    let next_key = target.seen_keys.last().map_or(0, |(seq, _)| seq + 1);
    for (seq, (_, seen)) in (next_key..).zip(session.seen_keys) {
        batch.push(StoreOp::PutSeenKey { seq, seen });
    }
    // A latest-value record follows its message to its new number.
    for mut latest in session.latest_values {
        if let Some(seq) = renumbered.get(&latest.seq) {
            latest.seq = *seq;
            batch.push(StoreOp::PutLatestValue(latest));
        }
    }
    store.commit(to, batch).await?;
    store.clear(from).await
}
