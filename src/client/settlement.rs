//! What a received message owes and how its fate reaches the driver: the ack state a
//! [`Message`](super::Message) and its receiver share, the verdict (acked, refused, forwarded,
//! released, unread) sent once per delivery over the settlements channel, and a forward's
//! hand-over of the ack to the client that stores the copy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::error::ClientError;
use crate::packet::{Publish, QoS, ReasonCode};
use crate::session::MessageTag;
use crate::store::{SessionKey, StoreOp};

/// Who acks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckMode {
    /// The client, once the application is done with the message.
    Automatic,
    /// The application, with `ack` or `reject`.
    Manual,
}

/// Why a message is to be handed over again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// Dropped without a verdict (manual ack).
    Dropped,
    /// `Message::release`.
    Asked,
    /// Dropped while its thread panicked.
    Panicked,
    /// `Message::forward` did not store the copy (the target client refused it or stopped).
    NotForwarded,
}

/// The session a message came from: its key and the store it lives in.
#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) key: SessionKey,
    /// The store's [`storage_id`](crate::store::SessionStore::storage_id).
    pub(crate) storage: Option<usize>,
}

/// What became of a message.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Handled.
    Ack,
    /// Refused with this reason code.
    Reject(ReasonCode),
    /// Forwarded: the commit that queued its copy stored its QoS 2 marker too
    /// (`marker_stored`), or, at QoS 1, the copy is durable and the ack may go.
    Forwarded { packet_id: u16, marker_stored: bool },
    /// Not handled: hand it over again later.
    Release {
        publish: Box<Publish>,
        deliveries: u32,
        why: Released,
    },
    /// It never reached the application: its inbox (or route) was dropped with it unread. It
    /// stays unacknowledged, so the server sends it again when the session resumes.
    Unread,
}

/// A message's fate, told to the driver (exactly once per delivery).
#[derive(Debug)]
pub(crate) struct Settlement {
    pub(crate) slot: usize,
    pub(crate) tag: MessageTag,
    pub(crate) verdict: Verdict,
    /// Answered once the verdict is durable; `None` when nobody waits.
    pub(crate) reply: Option<oneshot::Sender<Result<(), ClientError>>>,
}

/// The ack a QoS 1/2 message owes. The message holds it, and with automatic ack so does the
/// receiver that handed it out (which acks it when the next message is asked for): whichever
/// comes first settles it.
#[derive(Debug)]
pub(crate) struct AckState {
    settle: mpsc::UnboundedSender<Settlement>,
    origin: Arc<Origin>,
    slot: usize,
    tag: MessageTag,
    pub(crate) qos: QoS,
    pub(crate) mode: AckMode,
    /// Its ack commits something before it goes out (a QoS 2 marker, or the idempotency key
    /// of a deduplicated QoS 1 message): an automatic ack is waited for like a QoS 2 one.
    commits: bool,
    settled: AtomicBool,
    handed: AtomicBool,
    /// The answer to an automatic QoS 2 ack given by dropping the message: the receiver that
    /// handed it out waits for it before it hands out the next (the drop itself cannot wait).
    durable: Mutex<Option<oneshot::Receiver<Result<(), ClientError>>>>,
}

impl AckState {
    pub(crate) fn new(
        settle: mpsc::UnboundedSender<Settlement>,
        origin: Arc<Origin>,
        slot: usize,
        tag: MessageTag,
        qos: QoS,
        mode: AckMode,
        keyed: bool,
    ) -> Self {
        Self {
            settle,
            origin,
            slot,
            tag,
            qos,
            mode,
            commits: qos == QoS::ExactlyOnce || keyed,
            settled: AtomicBool::new(false),
            handed: AtomicBool::new(false),
            durable: Mutex::new(None),
        }
    }

    /// Tells the driver what became of the message, unless that was told already; returns
    /// whether this call told it.
    pub(crate) fn settle(
        &self,
        verdict: Verdict,
        reply: Option<oneshot::Sender<Result<(), ClientError>>>,
    ) -> bool {
        if self.settled.swap(true, Ordering::AcqRel) {
            return false;
        }
        let settlement = Settlement {
            slot: self.slot,
            tag: self.tag,
            verdict,
            reply,
        };
        if let Err(mpsc::error::SendError(settlement)) = self.settle.send(settlement) {
            // The client has stopped: nothing can be made durable any more.
            if let Some(reply) = settlement.reply {
                let _ = reply.send(Err(ClientError::Stopped));
            }
        }
        true
    }

    /// Whether its ack commits to the store before it goes out: at QoS 2 (the marker) and
    /// for a deduplicated QoS 1 message with a key (the key).
    pub(crate) fn ack_commits(&self) -> bool {
        self.commits
    }

    /// Acks it (automatic ack). When the ack commits, the answer, once durable, is kept for
    /// the receiver that handed the message out (`take_durable`).
    pub(crate) fn ack_automatically(&self) {
        if !self.commits {
            self.settle(Verdict::Ack, None);
            return;
        }
        let (reply, durable) = oneshot::channel();
        if self.settle(Verdict::Ack, Some(reply))
            && let Ok(mut slot) = self.durable.lock()
        {
            *slot = Some(durable);
        }
    }

    /// Takes the message's ack for a forward: the client that publishes the copy settles it
    /// (`None` if it was settled already).
    pub(crate) fn forwarding(&self, original: Publish, deliveries: u32) -> Option<Forwarding> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Forwarding {
            owed: Some(ForwardOwed {
                settle: self.settle.clone(),
                slot: self.slot,
                tag: self.tag,
                original: Box::new(original),
                deliveries,
            }),
            origin: self.origin.clone(),
            qos: self.qos,
        })
    }

    /// The answer to an automatic ack given by dropping the message, if one was given.
    pub(crate) fn take_durable(&self) -> Option<oneshot::Receiver<Result<(), ClientError>>> {
        self.durable.lock().ok()?.take()
    }

    /// The message reached the application.
    pub(crate) fn hand_over(&self) {
        self.handed.store(true, Ordering::Release);
    }

    pub(crate) fn handed(&self) -> bool {
        self.handed.load(Ordering::Acquire)
    }

    /// Marks the message settled without telling the driver, which settles it itself.
    pub(crate) fn disarm(&self) -> bool {
        !self.settled.swap(true, Ordering::AcqRel)
    }
}

/// A message being forwarded: what the client that publishes its copy needs to store the
/// message's QoS 2 marker in the commit that queues the copy, and to tell the message's own
/// client afterwards. Whatever happens, that client hears exactly once: the copy is durable
/// (`done`), its fate is unknown (`outcome_unknown`: a failed commit; the store says after a
/// restart), or, when it is dropped without either, the copy was never stored and the message
/// is handed over again.
#[derive(Debug)]
pub(crate) struct Forwarding {
    owed: Option<ForwardOwed>,
    pub(crate) origin: Arc<Origin>,
    pub(crate) qos: QoS,
}

#[derive(Debug)]
struct ForwardOwed {
    settle: mpsc::UnboundedSender<Settlement>,
    slot: usize,
    tag: MessageTag,
    original: Box<Publish>,
    deliveries: u32,
}

impl Forwarding {
    /// The packet identifier the message came under.
    fn packet_id(&self) -> u16 {
        self.owed.as_ref().map_or(0, |o| o.original.packet_id)
    }

    /// The marker to store with the copy, in the message's session: for QoS 2.
    pub(crate) fn marker(&self) -> Option<(SessionKey, StoreOp)> {
        (self.qos == QoS::ExactlyOnce).then(|| {
            (
                self.origin.key.clone(),
                StoreOp::PutInbound {
                    packet_id: self.packet_id(),
                },
            )
        })
    }

    /// Which of this driver's sessions the message came from, and its tag there, when the
    /// message is this driver's own (`origin` one of its sessions').
    pub(crate) fn own(&self, origin: &Arc<Origin>) -> Option<(usize, MessageTag)> {
        let owed = self.owed.as_ref()?;
        Arc::ptr_eq(&self.origin, origin).then_some((owed.slot, owed.tag))
    }

    /// The copy is durable, and with it the marker if `marker_stored`: the message is acked.
    pub(crate) fn done(mut self, marker_stored: bool) {
        let packet_id = self.packet_id();
        if let Some(owed) = self.owed.take() {
            let _ = owed.settle.send(Settlement {
                slot: owed.slot,
                tag: owed.tag,
                verdict: Verdict::Forwarded {
                    packet_id,
                    marker_stored,
                },
                reply: None,
            });
        }
    }

    /// Settled by the driver that owns the message itself (a forward within one client).
    pub(crate) fn settled_here(mut self) {
        self.owed = None;
    }

    /// The commit failed: whether the copy and the marker are stored is unknown until the
    /// store is opened again, so the message is neither acked nor handed over again here.
    pub(crate) fn outcome_unknown(mut self) {
        self.owed = None;
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(owed) = self.owed.take() {
            let _ = owed.settle.send(Settlement {
                slot: owed.slot,
                tag: owed.tag,
                verdict: Verdict::Release {
                    publish: owed.original,
                    deliveries: owed.deliveries,
                    why: Released::NotForwarded,
                },
                reply: None,
            });
        }
    }
}
