//! The inbox the application reads: messages in arrival order, held back while the store's
//! lease on the session has lapsed unconfirmed.
//!
//! The driver stops decoding once a lease lapses, but messages it decoded before can wait in
//! the inbox: a process frozen past its lease would hand them to its application on waking,
//! while a standby that took over has had them again from the server (they were never acked).
//! So a message that waits for a manual ack leaves the inbox only while the session's lease
//! holds; if the client stops first, it never does (the new owner has it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Message;
use crate::store::{SessionKey, SessionStore};

/// How often a held message looks again whether ownership was confirmed.
const RECHECK: Duration = Duration::from_millis(10);

/// The messages the server sends, in arrival order. Ends when the client stops.
///
/// Use [`Router`](super::Router) to dispatch them by topic filter. Dropping it discards (and
/// acks) later messages.
#[derive(Debug)]
pub struct Messages {
    rx: mpsc::Receiver<Message>,
    gate: OwnershipGate,
    /// Taken from the channel but held back by the gate.
    held: Option<Message>,
    recheck: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Messages {
    pub(crate) fn new(rx: mpsc::Receiver<Message>, gate: OwnershipGate) -> Self {
        Self {
            rx,
            gate,
            held: None,
            recheck: None,
        }
    }

    /// The next message; `None` once the client has stopped.
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_gated(cx)).await
    }

    /// The next message if one is waiting (and may be handed out now).
    pub fn try_recv(&mut self) -> Option<Message> {
        if self.held.is_none() {
            self.held = self.rx.try_recv().ok();
        }
        if self.held_back() {
            return None;
        }
        self.held.take()
    }

    fn held_back(&self) -> bool {
        self.held.as_ref().is_some_and(Message::needs_ack) && self.gate.lapsed()
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
        self.poll_gated(cx)
    }
}

/// Whether the store still vouches that this process owns the session the driver is using.
/// It holds the store weakly: the inbox must not keep a store open (and its file locked)
/// after the client is gone; the driver revokes the gate when it stops without ownership.
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

    /// The client stopped without ownership (taken over, or stopped while its lease had
    /// lapsed): no manual-ack message leaves the inbox any more.
    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
    }

    /// The session the driver now delivers from.
    pub(crate) fn set_active(&self, key: &SessionKey) {
        if let Ok(mut active) = self.active.lock() {
            if active.as_ref() != Some(key) {
                *active = Some(key.clone());
            }
        }
    }

    /// Whether the store's lease on the active session ran out unconfirmed (or the gate was
    /// revoked).
    fn lapsed(&self) -> bool {
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
