//! Inbound delivery: messages into the application's inbox (or to a waiting request), the
//! backlog while the inbox is full, and what the application made of each message (its
//! settlement: ack, refusal, release, or never read).
//!
//! A QoS 1/2 message is acked only once the application is done with it (the message and
//! the inbox tell the driver, client/message.rs): until then it waits unacknowledged, so the
//! server's Receive Maximum bounds the backlog and reading goes on; only QoS 0 messages, which
//! nothing acknowledges, stop reading once as many as the inbox holds wait.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::super::error::ClientError;
use super::super::events::ClientEvent;
use super::super::message::Message;
use super::super::settlement::{AckMode, AckState, Released, Settlement, Verdict};
use super::Driver;
use super::pipeline::Waiter;
use crate::packet::{Publish, QoS};
use crate::session::MessageTag;

/// Messages waiting for room in the inbox.
#[derive(Default)]
struct Backlog {
    messages: VecDeque<Message>,
    /// QoS 0 messages among them.
    qos0: usize,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn len(&self) -> usize {
        self.messages.len()
    }

    fn push(&mut self, message: Message) {
        if message.qos() == QoS::AtMostOnce {
            self.qos0 += 1;
        }
        self.messages.push_back(message);
    }

    /// Moves the oldest message into the inbox.
    fn hand_over(&mut self, permit: mpsc::Permit<'_, Message>) {
        if let Some(message) = self.messages.pop_front() {
            if message.qos() == QoS::AtMostOnce {
                self.qos0 = self.qos0.saturating_sub(1);
            }
            permit.send(message);
        }
    }

    fn take_all(&mut self) -> VecDeque<Message> {
        self.qos0 = 0;
        std::mem::take(&mut self.messages)
    }
}

/// What woke the loop on the inbox's side.
pub(super) enum InboxWake {
    /// Messages left the backlog for the inbox.
    HandedOver,
    /// The application dropped its `Messages`.
    Gone,
    /// The application settled a message (an ack, a refusal, a release).
    Settled(Settlement),
}

/// The way to the application.
pub(super) struct Inbox {
    sender: mpsc::Sender<Message>,
    backlog: Backlog,
    /// The application dropped its `Messages`: what arrives stays unacknowledged.
    closed: bool,
    /// Requests awaiting a response, by Correlation Data.
    responses: HashMap<Bytes, oneshot::Sender<Message>>,
    /// The first bytes of this client's Correlation Data: a response that carries them and
    /// that no request awaits answers a request that gave up.
    correlation_seed: [u8; 8],
    /// Where every message tells the driver what became of it.
    settle: mpsc::UnboundedSender<Settlement>,
    settlements: mpsc::UnboundedReceiver<Settlement>,
    mode: AckMode,
}

impl Inbox {
    pub(super) fn new(sender: mpsc::Sender<Message>, mode: AckMode, correlation_seed: u64) -> Self {
        let (settle, settlements) = mpsc::unbounded_channel();
        Self {
            sender,
            backlog: Backlog::default(),
            closed: false,
            responses: HashMap::new(),
            correlation_seed: correlation_seed.to_be_bytes(),
            settle,
            settlements,
            mode,
        }
    }

    /// A request waits for the message carrying `correlation`.
    pub(super) fn expect(&mut self, correlation: Bytes, reply: oneshot::Sender<Message>) {
        self.responses.insert(correlation, reply);
    }

    /// How many backlogged messages to move into the inbox at once, waiting for room for all
    /// of them (0: none wait). Moved one by one as the application frees single slots, each
    /// would cost a turn, an ack and a write of its own, and the server, answering each ack
    /// with one message, would keep the exchange at one message per round (the "silly
    /// window"). A quarter of the inbox leaves the application three quarters to read
    /// meanwhile.
    fn handover_batch(&self, capacity: usize) -> usize {
        self.backlog.len().min(capacity.div_ceil(4))
    }

    /// Whether the link may be read on. QoS 1/2 messages wait unacknowledged, so the
    /// server's quota (and the engine, for a server over it) bounds them; only QoS 0 can
    /// flood the backlog, and as many of them as the inbox holds stop reading.
    pub(super) fn reads_on(&self, capacity: usize) -> bool {
        self.backlog.qos0 < capacity
    }

    /// Waits until backlogged messages move into the inbox (a batch, see `handover_batch`),
    /// the application drops its `Messages`, or a message is settled.
    pub(super) async fn wake(&mut self, capacity: usize) -> InboxWake {
        let handover = self.handover_batch(capacity);
        tokio::select! {
            permits = self.sender.reserve_many(handover), if handover > 0 => match permits {
                Ok(permits) => {
                    permits.for_each(|p| self.backlog.hand_over(p));
                    InboxWake::HandedOver
                }
                Err(_) => InboxWake::Gone,
            },
            Some(settlement) = self.settlements.recv() => InboxWake::Settled(settlement),
            else => std::future::pending().await,
        }
    }

    /// The request gave up.
    pub(super) fn forget(&mut self, correlation: &Bytes) {
        self.responses.remove(correlation);
    }

    /// Requests awaiting their response; those whose callers gave up are forgotten.
    pub(super) fn responses_awaited(&mut self) -> usize {
        self.responses.retain(|_, waiter| !waiter.is_closed());
        self.responses.len()
    }

    /// Whether `correlation` is this client's own: a response to one of its requests.
    fn answers_own_request(&self, correlation: &[u8]) -> bool {
        correlation.len() == 16 && correlation.starts_with(&self.correlation_seed)
    }

    /// The client stops: no response will come.
    pub(super) fn stop(&mut self) {
        self.responses.clear();
    }
}

impl Driver {
    /// A message from the server, delivered for the first time.
    pub(super) fn on_message(&mut self, slot: usize, tag: MessageTag, publish: Publish) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.metrics.received();
        if tag != 0 {
            self.stats.inbound_unacked.fetch_add(1, Ordering::Relaxed);
        }
        self.deliver(slot, tag, publish, 1);
    }

    /// Hands a message to the application: to a request waiting for it, into the inbox, or
    /// into the backlog while the inbox is full.
    pub(super) fn deliver(
        &mut self,
        slot: usize,
        tag: MessageTag,
        publish: Publish,
        deliveries: u32,
    ) {
        let origin = self.slots.get(slot).map(|s| s.origin.clone());
        let keyed = publish.qos == QoS::AtLeastOnce
            && self.settings.session.deduplication.is_some()
            && crate::idempotency::key_of(&publish).is_some();
        let ack = origin.filter(|_| tag != 0).map(|origin| {
            Arc::new(AckState::new(
                self.inbox.settle.clone(),
                origin,
                slot,
                tag,
                publish.qos,
                self.inbox.mode,
                keyed,
            ))
        });
        let mut message = Message::new(publish, ack, deliveries);
        if let Some(correlation) = message.publish.properties.correlation_data.clone() {
            if let Some(waiter) = self.inbox.responses.remove(&correlation) {
                match waiter.send(message) {
                    Ok(()) => return,
                    Err(back) => message = back,
                }
            }
            if self.inbox.answers_own_request(&correlation) {
                // The request gave up (timed out, cancelled): nobody wants its answer.
                debug!(topic = %message.topic(), "a response came after its request gave up");
                if let Some(state) = message.hand_over() {
                    state.settle(Verdict::Ack, None);
                }
                return;
            }
        }
        if self.inbox.closed {
            self.leave_unread(message);
        } else if self.inbox.backlog.is_empty() {
            match self.inbox.sender.try_send(message) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(message)) => self.inbox.backlog.push(message),
                Err(mpsc::error::TrySendError::Closed(message)) => {
                    self.inbox_gone();
                    self.leave_unread(message);
                }
            }
        } else {
            self.inbox.backlog.push(message);
        }
    }

    /// Nobody reads messages any more: this one stays unacknowledged (the server sends it
    /// again when the session resumes).
    fn leave_unread(&mut self, message: Message) {
        if let Some(state) = &message.ack
            && state.disarm()
        {
            self.count_unread();
        }
    }

    fn count_unread(&mut self) {
        self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
        self.stats.unread.fetch_add(1, Ordering::Relaxed);
    }

    /// The application dropped its `Messages`: stop acking, say so once.
    pub(super) fn inbox_gone(&mut self) {
        if !self.inbox.closed {
            self.inbox.closed = true;
            warn!(
                "the application dropped its Messages: messages that arrive stay unacknowledged \
                 (the server stops at the Receive Maximum and sends them again when the session \
                 resumes)"
            );
            self.emit(ClientEvent::InboxClosed);
        }
        for message in self.inbox.backlog.take_all() {
            self.leave_unread(message);
        }
    }

    /// Takes what the application's messages told, until none waits.
    pub(super) fn take_settlements(&mut self, first: Settlement) {
        self.on_settlement(first);
        while let Ok(settlement) = self.inbox.settlements.try_recv() {
            self.on_settlement(settlement);
        }
    }

    fn on_settlement(&mut self, settlement: Settlement) {
        let Settlement {
            slot,
            tag,
            verdict,
            reply,
        } = settlement;
        match verdict {
            Verdict::Ack => self.settle_with(slot, tag, None, reply),
            Verdict::Reject(reason) => self.settle_with(slot, tag, Some(reason), reply),
            Verdict::Forwarded {
                packet_id,
                marker_stored,
            } => self.forwarded(slot, tag, packet_id, marker_stored),
            Verdict::Release {
                publish,
                deliveries,
                why,
            } => {
                if why == Released::Dropped {
                    self.stats.dropped_unacked.fetch_add(1, Ordering::Relaxed);
                }
                if why == Released::Panicked {
                    warn!(
                        tag,
                        "a message was dropped while its thread panicked: it comes again"
                    );
                }
                self.release(slot, tag, *publish, deliveries);
            }
            Verdict::Unread => {
                if !self.inbox.closed && self.inbox.sender.is_closed() {
                    self.inbox_gone();
                }
                self.count_unread();
            }
        }
    }

    /// Another client stored this message's copy (and, with `marker_stored`, its QoS 2
    /// marker): ack it.
    fn forwarded(&mut self, slot: usize, tag: MessageTag, packet_id: u16, marker_stored: bool) {
        self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = self.slots.get_mut(slot)
            && let Err(error) = s.session.ack_forwarded(tag, packet_id, marker_stored)
        {
            debug!(%error, tag, "a forwarded message is no longer awaited");
        }
    }

    /// Acks (`reason` None) or refuses a message; `reply` is answered once that is durable.
    fn settle_with(
        &mut self,
        slot: usize,
        tag: MessageTag,
        reason: Option<crate::packet::ReasonCode>,
        reply: Option<oneshot::Sender<Result<(), ClientError>>>,
    ) {
        self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
        let Some(s) = self.slots.get_mut(slot) else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            return;
        };
        let settled = match reason {
            None => s.session.ack(tag),
            Some(reason) => s.session.reject(tag, reason),
        };
        match (settled, reply) {
            (Ok(()), Some(reply)) => self.pipeline.wait(Waiter::Ack(reply)),
            (Err(e), Some(reply)) => {
                let _ = reply.send(Err(e.into()));
            }
            (_, None) => {}
        }
    }
}
