//! Inbound delivery: messages into the application's inbox (or to a waiting request), the
//! backlog while the inbox is full, automatic acks at hand-off, and manual acks.
//!
//! A QoS 1/2 message that finds the inbox full waits here unacknowledged, so the server's
//! Receive Maximum bounds the backlog and reading goes on; only QoS 0 messages, which nothing
//! acknowledges, stop reading once as many as the inbox holds wait.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::super::message::{Acker, Verdict};
use super::super::{ClientError, Message};
use super::pipeline::Waiter;
use super::{Command, Driver, Reply};
use crate::packet::{Publish, QoS};
use crate::session::MessageTag;

/// The automatic ack a message still owes, given once the application has it.
#[derive(Debug, Clone, Copy)]
pub(super) struct AckOwed {
    slot: usize,
    tag: MessageTag,
}

/// Messages waiting for room in the inbox.
#[derive(Default)]
pub(super) struct Backlog {
    messages: VecDeque<(Message, Option<AckOwed>)>,
    /// QoS 0 messages among them.
    pub(super) qos0: usize,
}

impl Backlog {
    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn len(&self) -> usize {
        self.messages.len()
    }

    fn push(&mut self, message: Message, owed: Option<AckOwed>) {
        if message.qos() == QoS::AtMostOnce {
            self.qos0 += 1;
        }
        self.messages.push_back((message, owed));
    }

    /// Moves the oldest message into the inbox; returns the ack it owes.
    pub(super) fn hand_over(&mut self, permit: mpsc::Permit<'_, Message>) -> Option<AckOwed> {
        let (message, owed) = self.messages.pop_front()?;
        if message.qos() == QoS::AtMostOnce {
            self.qos0 = self.qos0.saturating_sub(1);
        }
        permit.send(message);
        owed
    }

    fn take_all(&mut self) -> VecDeque<(Message, Option<AckOwed>)> {
        self.qos0 = 0;
        std::mem::take(&mut self.messages)
    }
}

/// The way to the application.
pub(super) struct Inbox {
    pub(super) sender: mpsc::Sender<Message>,
    pub(super) backlog: Backlog,
    /// The application dropped its `Messages`.
    closed: bool,
    /// Requests awaiting a response, by Correlation Data.
    responses: HashMap<Bytes, oneshot::Sender<Message>>,
    /// For the acks of manual-ack messages (weak: the driver must not keep itself alive).
    self_commands: mpsc::WeakSender<Command>,
    /// Ack at hand-off instead of leaving it to the application.
    auto_ack: bool,
}

impl Inbox {
    pub(super) fn new(
        sender: mpsc::Sender<Message>,
        self_commands: mpsc::WeakSender<Command>,
        auto_ack: bool,
    ) -> Self {
        Self {
            sender,
            backlog: Backlog::default(),
            closed: false,
            responses: HashMap::new(),
            self_commands,
            auto_ack,
        }
    }

    /// A request waits for the message carrying `correlation`.
    pub(super) fn expect(&mut self, correlation: Bytes, reply: oneshot::Sender<Message>) {
        self.responses.insert(correlation, reply);
    }

    /// How many backlogged messages to move into the inbox at once, waiting for room for all
    /// of them (0: none wait). Moved one by one as the application frees single slots, each
    /// would cost a turn, an automatic ack and a write of its own, and the server, answering
    /// each ack with one message, would keep the exchange at one message per round (the
    /// "silly window"). A quarter of the inbox leaves the application three quarters to read
    /// meanwhile.
    pub(super) fn handover_batch(&self, capacity: usize) -> usize {
        self.backlog.len().min(capacity.div_ceil(4))
    }

    /// The request gave up.
    pub(super) fn forget(&mut self, correlation: &Bytes) {
        self.responses.remove(correlation);
    }

    /// The client stops: no response will come.
    pub(super) fn stop(&mut self) {
        self.responses.clear();
    }
}

impl Driver {
    pub(super) fn on_message(&mut self, slot: usize, tag: MessageTag, publish: Publish) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.metrics.received();
        let owes_ack = tag != 0;
        let acker = if owes_ack && !self.inbox.auto_ack {
            self.inbox
                .self_commands
                .upgrade()
                .map(|commands| Acker::new(commands, slot, tag))
        } else {
            None
        };
        if acker.is_some() {
            self.stats.inbound_unacked.fetch_add(1, Ordering::Relaxed);
        }
        // An automatic ack is given once the message is in the application's hands.
        let owed = (owes_ack && self.inbox.auto_ack).then_some(AckOwed { slot, tag });
        let mut message = Message { publish, acker };
        if let Some(correlation) = message.publish.properties.correlation_data.clone() {
            if let Some(waiter) = self.inbox.responses.remove(&correlation) {
                match waiter.send(message) {
                    Ok(()) => return self.auto_ack(owed),
                    Err(back) => message = back,
                }
            }
        }
        if self.inbox.closed {
            self.discard(message, owed);
        } else if self.inbox.backlog.is_empty() {
            match self.inbox.sender.try_send(message) {
                Ok(()) => self.auto_ack(owed),
                Err(mpsc::error::TrySendError::Full(message)) => {
                    self.inbox.backlog.push(message, owed);
                }
                Err(mpsc::error::TrySendError::Closed(message)) => {
                    self.inbox.closed = true;
                    self.discard(message, owed);
                }
            }
        } else {
            self.inbox.backlog.push(message, owed);
        }
    }

    /// Gives the automatic ack a message owed.
    pub(super) fn auto_ack(&mut self, owed: Option<AckOwed>) {
        if let Some(AckOwed { slot, tag }) = owed {
            if let Some(s) = self.slots.get_mut(slot) {
                // Cannot be refused: the tag was delivered and nothing else acks it.
                let _ = s.session.ack(tag);
            }
        }
    }

    /// Nobody reads messages any more: ack and drop them so the server is not held up.
    fn discard(&mut self, mut message: Message, owed: Option<AckOwed>) {
        if let Some((slot, tag)) = message.acker.take().and_then(Acker::disarm) {
            self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
            if let Some(slot) = self.slots.get_mut(slot) {
                let _ = slot.session.ack(tag);
            }
        }
        self.auto_ack(owed);
    }

    /// The application dropped its `Messages`.
    pub(super) fn inbox_gone(&mut self) {
        self.inbox.closed = true;
        for (message, owed) in self.inbox.backlog.take_all() {
            self.discard(message, owed);
        }
    }

    /// The application settled a message (manual ack): answered once the ack is durable.
    pub(super) fn on_ack(
        &mut self,
        slot: usize,
        tag: MessageTag,
        verdict: Verdict,
        reply: Option<Reply<()>>,
    ) {
        let Some(s) = self.slots.get_mut(slot) else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            return;
        };
        let settled = match verdict {
            Verdict::Ack | Verdict::Released | Verdict::Dropped => s.session.ack(tag),
            Verdict::Reject(reason) => s.session.reject(tag, reason),
        };
        match settled {
            Ok(()) => {
                self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
                if verdict == Verdict::Dropped {
                    self.stats.dropped_unacked.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        tag,
                        "a message was dropped without ack or reject: it counts as handled and is acked"
                    );
                }
                if let Some(reply) = reply {
                    self.pipeline.wait(Waiter::Ack(reply));
                }
            }
            Err(e) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
    }
}
