//! The inbox the application reads: messages in arrival order, held back while the store's
//! lease on the session has lapsed unconfirmed.
//!
//! The driver stops decoding once a lease lapses, but messages it decoded before can wait in
//! the inbox: a process frozen past its lease would hand them to its application on waking,
//! while a standby that took over has had them again from the server (they were never acked).
//! So a message (of any QoS, automatic or manual ack) leaves the inbox only while the
//! session's lease holds, and never once the client has stopped: nothing it hands out then
//! could be acked, and a standby may own the session already (a clean stop hands it on at
//! once). The server sends what was never acked again, to whoever owns the session.
//!
//! With automatic ack it is also where a message's ack is given: when the application asks
//! for the next one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::error::ClientError;
use super::message::Message;
use super::settlement::{AckMode, AckState, Verdict};
use crate::store::{SessionKey, SessionStore};

/// How often a held message looks again whether ownership was confirmed.
const RECHECK: Duration = Duration::from_millis(10);

/// The messages the server sends, in arrival order. Ends when the client stops: what it has
/// not handed out by then stays unacknowledged, and the server sends it again with the session.
///
/// With automatic ack, asking for the next message ([`recv`](Self::recv), [`try_recv`](Self::try_recv),
/// the `Stream`'s `next`) acks the one handed out before, if the application has not dropped
/// it already; at QoS 2 the next message is handed over only once that ack is durable.
///
/// Use [`Router`](super::Router) to dispatch them by topic filter. Dropping it while
/// subscribed does not ack what arrives: messages that nobody will read stay
/// unacknowledged, so the server stops sending at the client's Receive Maximum and sends them
/// again when the session resumes (`ClientEvent::InboxClosed` reports it once).
#[derive(Debug)]
pub struct Messages {
    rx: mpsc::Receiver<Message>,
    /// Holds messages back while the store's lease has lapsed: the client's own inbox has
    /// one, a route of a [`Router`](super::Router) does not (the router reads through it).
    gate: Option<OwnershipGate>,
    /// Taken from the channel but held back by the gate.
    held: Option<Message>,
    recheck: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The automatic-ack messages handed out last (one, or a batch of `recv_many`): acked
    /// when the next are asked for.
    last: Vec<Arc<AckState>>,
    /// The acks of QoS 2 messages given by asking for the next: the next waits until they
    /// are durable.
    durable: Vec<oneshot::Receiver<Result<(), ClientError>>>,
}

impl Messages {
    pub(crate) fn new(rx: mpsc::Receiver<Message>, gate: OwnershipGate) -> Self {
        Self::with_gate(rx, Some(gate))
    }

    /// A route's receiver (see [`Router`](super::Router)).
    pub(crate) fn route(rx: mpsc::Receiver<Message>) -> Self {
        Self::with_gate(rx, None)
    }

    fn with_gate(rx: mpsc::Receiver<Message>, gate: Option<OwnershipGate>) -> Self {
        Self {
            rx,
            gate,
            held: None,
            recheck: None,
            last: Vec::new(),
            durable: Vec::new(),
        }
    }

    /// The next message; `None` once the client has stopped.
    ///
    /// Cancel safety: cancel safe. A message is handed out only when this returns it; if the
    /// future is dropped first, the message stays for the next call.
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_next_message(cx)).await
    }

    /// Up to `limit` messages into `buffer` (appended), waiting for the first; returns how
    /// many, 0 once the client has stopped (or `limit` is 0).
    ///
    /// With automatic ack the batch is one message to the application: asking again acks all
    /// of it, and at QoS 2 in one store commit, so a reader that handles messages in batches
    /// pays one commit per batch instead of one per message. After a crash the whole batch
    /// the application held is handed over again.
    ///
    /// Cancel safety: cancel safe. Messages are handed out only when this returns them.
    pub async fn recv_many(&mut self, buffer: &mut Vec<Message>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        let Some(first) = self.recv().await else {
            return 0;
        };
        buffer.push(first);
        let mut taken = 1;
        while taken < limit {
            let Some(message) = self.take_waiting() else {
                break;
            };
            buffer.push(message);
            taken += 1;
        }
        taken
    }

    /// The next message if one is waiting (and may be handed out now). `None` also while the
    /// ack of the message handed out before is being made durable (QoS 2, automatic ack).
    pub fn try_recv(&mut self) -> Option<Message> {
        self.finish_last();
        while let Some(durable) = self.durable.last_mut() {
            match durable.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return None,
                _ => {
                    self.durable.pop();
                }
            }
        }
        self.take_waiting()
    }

    /// A message that waits and may be handed out now, without acking the ones handed out
    /// before (they join its batch).
    fn take_waiting(&mut self) -> Option<Message> {
        if self.held.is_none() {
            self.held = self.rx.try_recv().ok();
        }
        if self.held_back() {
            return None;
        }
        let message = self.held.take()?;
        Some(self.hand_out(message))
    }

    /// The next message for a router to pass on, without handing it out: the route's receiver
    /// does that.
    pub(crate) async fn recv_for_route(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_gated(cx)).await
    }

    fn poll_next_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.finish_last();
        while let Some(durable) = self.durable.last_mut() {
            // Whatever the answer: a failed ack means the client stopped, and the next
            // message (if any) tells the rest.
            let _ = ready!(Pin::new(durable).poll(cx));
            self.durable.pop();
        }
        let message = ready!(self.poll_gated(cx));
        Poll::Ready(message.map(|m| self.hand_out(m)))
    }

    /// With automatic ack: the application asked for the next message, so it is done with
    /// the one handed out before. At QoS 2, and for a deduplicated QoS 1 message whose key is
    /// stored with its ack, the next waits until that ack is durable, whether this call gave
    /// it or the message's drop did (a `while let` loop drops each message before it asks for
    /// the next).
    fn finish_last(&mut self) {
        for state in std::mem::take(&mut self.last) {
            if state.ack_commits() {
                let (reply, durable) = oneshot::channel();
                let durable = if state.settle(Verdict::Ack, Some(reply)) {
                    Some(durable)
                } else {
                    state.take_durable()
                };
                self.durable.extend(durable);
            } else {
                state.settle(Verdict::Ack, None);
            }
        }
    }

    fn hand_out(&mut self, message: Message) -> Message {
        if let Some(state) = message.hand_over()
            && state.mode == AckMode::Automatic
        {
            self.last.push(state.clone());
        }
        message
    }

    /// Whether the message taken from the channel must wait: whatever its QoS and ack mode,
    /// nothing reaches the application while this process may not own the session (or once
    /// the client has stopped).
    fn held_back(&self) -> bool {
        self.held.is_some() && self.gate.as_ref().is_some_and(OwnershipGate::lapsed)
    }

    fn poll_gated(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            if self.held.is_none() {
                self.held = ready!(self.rx.poll_recv(cx));
                if self.held.is_none() {
                    return Poll::Ready(None);
                }
            }
            if !self.held_back() {
                self.recheck = None;
                return Poll::Ready(self.held.take());
            }
            if self.rx.is_closed() {
                // Stopped while the lease had lapsed (taken over, or the store lost): the
                // message is not ours to hand out; unacked, the server sends it to the owner.
                self.held = None;
                return Poll::Ready(None);
            }
            let recheck = self
                .recheck
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(RECHECK)));
            ready!(recheck.as_mut().poll(cx));
            self.recheck = None;
        }
    }
}

/// The same messages as [`Messages::recv`], for `StreamExt` combinators.
impl futures_core::Stream for Messages {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.poll_next_message(cx)
    }
}

/// Whether the store still vouches that this process owns the session the driver is using.
/// It holds the store weakly: the inbox must not keep a store open (and its file locked)
/// after the client is gone; the driver revokes the gate when it stops.
#[derive(Clone)]
pub(crate) struct OwnershipGate {
    store: Weak<dyn SessionStore>,
    active: Arc<Mutex<Option<SessionKey>>>,
    revoked: Arc<AtomicBool>,
}

impl std::fmt::Debug for OwnershipGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnershipGate").finish_non_exhaustive()
    }
}

impl OwnershipGate {
    pub(crate) fn new(store: &Arc<dyn SessionStore>) -> Self {
        Self {
            store: Arc::downgrade(store),
            active: Arc::new(Mutex::new(None)),
            revoked: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The client stopped (or lost the session): no message leaves the inbox any more.
    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
    }

    /// The session the driver now delivers from.
    pub(crate) fn set_active(&self, key: &SessionKey) {
        if let Ok(mut active) = self.active.lock()
            && active.as_ref() != Some(key)
        {
            *active = Some(key.clone());
        }
    }

    /// Whether the store's lease on the active session ran out unconfirmed (or the gate was
    /// revoked).
    pub(crate) fn lapsed(&self) -> bool {
        if self.revoked.load(Ordering::SeqCst) {
            return true;
        }
        let (Ok(active), Some(store)) = (self.active.lock(), self.store.upgrade()) else {
            return false;
        };
        active
            .as_ref()
            .is_some_and(|key| lease_ran_out(&*store, key))
    }
}

/// Whether the store's lease on `key`'s session has run out: this process may no longer own
/// it, until the store confirms it does. The driver and the inbox both ask this.
pub(crate) fn lease_ran_out(store: &dyn SessionStore, key: &SessionKey) -> bool {
    store
        .owned_until(key)
        .is_some_and(|until| Instant::now() >= until)
}
