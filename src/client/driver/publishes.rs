//! Publishes from the application: admission to the durable queue (wait or fail when it is
//! full), acceptance by the session, and the deliveries that resolve on PUBACK or PUBCOMP.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::super::error::{ClientError, DeliveryError};
use super::super::events::ClientEvent;
use super::super::message::Delivery;
use super::super::policy::QueuePolicy;
use super::super::settlement::Forwarding;
use super::pipeline::{Cancelled, Waiter};
use super::{Driver, Reply};
use crate::packet::{Packet, Publish, QoS, ReasonCode};
use crate::session::{
    PublishError, PublishId, Session, Unwritten, Withdrawn, take_unwritten_publish,
};

type Outcome = Result<ReasonCode, DeliveryError>;

/// Publishers waiting for room in the queue, and the deliveries the server has yet to answer.
#[derive(Default)]
pub(super) struct Publishes {
    /// Publishers waiting for room in the durable queue (`QueuePolicy::Wait`), with the
    /// message each one forwards, if any.
    parked: VecDeque<(Publish, Reply<Delivery>, Option<Forwarding>)>,
    /// Accepted QoS 1/2 publishes, by slot and id, awaiting PUBACK or PUBCOMP. Ordered: ids
    /// grow, so entries are added at one end and mostly answered at the other, without
    /// hashing each key twice.
    deliveries: BTreeMap<(usize, PublishId), oneshot::Sender<Outcome>>,
    /// How many deliveries there were after the last sweep of those nobody awaits.
    swept_at: usize,
}

/// Deliveries below which no sweep is made.
const SWEEP_FLOOR: usize = 1024;

impl Publishes {
    /// How many publishers wait for room.
    pub(super) fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Awaits the answer to publish `id` for whoever holds its `Delivery`. Deliveries nobody
    /// holds any more are swept out whenever their number has doubled since the last sweep:
    /// an application that drops its deliveries while millions of messages queue offline
    /// costs no memory per message.
    fn await_answer(&mut self, slot: usize, id: PublishId, tx: oneshot::Sender<Outcome>) {
        self.deliveries.insert((slot, id), tx);
        if self.deliveries.len() >= self.swept_at.max(SWEEP_FLOOR) * 2 {
            self.deliveries.retain(|_, tx| !tx.is_closed());
            self.swept_at = self.deliveries.len();
        }
    }

    /// A publish taken back: nobody awaits its answer.
    fn forget(&mut self, slot: usize, id: PublishId) {
        self.deliveries.remove(&(slot, id));
    }

    /// The server answered a publish (or refused it).
    pub(super) fn resolve(&mut self, slot: usize, id: PublishId, outcome: Outcome) {
        if let Some(tx) = self.deliveries.remove(&(slot, id)) {
            let _ = tx.send(outcome);
        }
    }

    /// Answers every waiting publisher with `Stopped`.
    pub(super) fn refuse_parked(&mut self) {
        // A forward's message is handed over again as its `Forwarding` drops.
        for (_, reply, _) in self.parked.drain(..) {
            let _ = reply.send(Err(ClientError::Stopped));
        }
    }

    /// The client stops: every delivery still awaited resolves `Stopped` (it resumes from the
    /// store on the next start), every waiting publisher gets `Stopped`.
    pub(super) fn stop(&mut self) {
        for (_, tx) in std::mem::take(&mut self.deliveries) {
            let _ = tx.send(Err(DeliveryError::Stopped));
        }
        self.refuse_parked();
    }
}

/// Why a queued publish left the store unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unsent {
    /// Its Message Expiry Interval ran out.
    Expired,
    /// It may have reached a session the server lost, and the policy discards such messages
    /// (`LostSession::Discard`).
    Discarded,
    /// The queue was full and dropped its oldest (`QueuePolicy::DropOldest`).
    Dropped,
    /// A newer value of its latest-value topic was queued.
    Replaced,
}

impl Driver {
    /// A queued publish left the store unsent: its delivery, a counter, a warning, an event.
    pub(super) fn on_unsent(&mut self, slot: usize, id: PublishId, topic: String, why: Unsent) {
        let (counter, error, event) = match why {
            Unsent::Expired => (
                &self.stats.expired,
                DeliveryError::Expired,
                ClientEvent::MessageExpired {
                    topic: topic.clone(),
                },
            ),
            Unsent::Discarded => (
                &self.stats.discarded,
                DeliveryError::SessionLost,
                ClientEvent::MessageDiscarded {
                    topic: topic.clone(),
                },
            ),
            Unsent::Dropped => (
                &self.stats.dropped_oldest,
                DeliveryError::Dropped,
                ClientEvent::MessageDropped {
                    topic: topic.clone(),
                },
            ),
            Unsent::Replaced => (
                &self.stats.replaced,
                DeliveryError::Replaced,
                ClientEvent::MessageReplaced {
                    topic: topic.clone(),
                },
            ),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match why {
            Unsent::Expired => self.metrics.expired(),
            Unsent::Dropped | Unsent::Discarded => self.metrics.dropped(),
            Unsent::Replaced => self.metrics.replaced(),
        }
        if why == Unsent::Replaced {
            // What the policy is for: not worth a warning.
            debug!(%topic, "a queued value was replaced by a newer one");
        } else {
            warn!(%topic, ?why, "a queued message left the store unsent");
        }
        self.publishes.resolve(slot, id, Err(error));
        self.emit(event);
    }

    /// The copy of a message being forwarded: published like any message, and the message
    /// acked in the same commit. The message is this client's own (one commit of its sessions)
    /// or another client's on the same store (one commit of both clients' sessions).
    pub(super) fn on_forward(
        &mut self,
        publish: Publish,
        from: Forwarding,
        reply: Reply<Delivery>,
    ) {
        let own = self.slots.iter().any(|s| from.own(&s.origin).is_some());
        let same_store = from
            .origin
            .storage
            .is_some_and(|id| self.store.storage_id() == Some(id));
        if !own && !same_store {
            // Dropping `from` hands the message over again.
            let _ = reply.send(Err(ClientError::ForwardAcrossStores));
            return;
        }
        self.on_publish(publish, None, reply, Some(from));
    }

    /// A publish from a handle: accepted, parked, or refused, by the queue's limits (count and
    /// bytes) and the policy in force (the call's own, or the client's). `from` is the message
    /// it forwards, acked in the commit that stores it.
    pub(super) fn on_publish(
        &mut self,
        publish: Publish,
        when_full: Option<QueuePolicy>,
        reply: Reply<Delivery>,
        from: Option<Forwarding>,
    ) {
        if self.stopping.is_disconnecting() {
            let _ = reply.send(Err(ClientError::Stopped));
            return;
        }
        if reply.is_closed() {
            // The caller gave up before the client took it: never stored, never sent (a
            // forward's message is handed over again as `from` drops).
            self.stats.withdrawn.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let size = self.queued_size_of(&publish);
        if self
            .settings
            .queue_limit_bytes
            .is_some_and(|limit| size > limit)
        {
            // It could never fit, whatever the policy.
            self.metrics.publish_refused("queue_full");
            let _ = reply.send(Err(ClientError::QueueFull(self.settings.queue_limit)));
            return;
        }
        let qos0_goes_out_now =
            publish.qos == QoS::AtMostOnce && self.conn.is_up() && self.queued().0 == 0;
        let parked = self.publishes.parked.len();
        if qos0_goes_out_now || (parked == 0 && self.has_room_for(size)) {
            self.accept(publish, reply, from);
            return;
        }
        match when_full.unwrap_or(self.settings.queue_policy) {
            QueuePolicy::Fail => {
                self.metrics.publish_refused("queue_full");
                let _ = reply.send(Err(ClientError::QueueFull(self.settings.queue_limit)));
            }
            QueuePolicy::Wait => self.publishes.parked.push_back((publish, reply, from)),
            QueuePolicy::DropOldest => {
                while !self.has_room_for(size) {
                    let dropped = self.session().and_then(Session::drop_oldest_queued);
                    if dropped.is_none() {
                        break;
                    }
                }
                if self.has_room_for(size) {
                    self.accept(publish, reply, from);
                } else {
                    // The oldest messages are being read back from the store, not in memory
                    // to drop: the limit holds, and this publish is refused.
                    self.metrics.publish_refused("queue_full");
                    let _ = reply.send(Err(ClientError::QueueFull(self.settings.queue_limit)));
                }
            }
        }
    }

    /// The active session's durable queue: messages and bytes.
    fn queued(&self) -> (u64, u64) {
        self.slots
            .get(self.active)
            .map_or((0, 0), |s| (s.session.queued(), s.session.queued_bytes()))
    }

    /// The bytes `publish` would take in the queue; measured only when bytes are limited (it
    /// encodes the packet once more).
    fn queued_size_of(&self, publish: &Publish) -> usize {
        match self.settings.queue_limit_bytes {
            Some(_) => Session::queued_size_of(publish).unwrap_or(0),
            None => 0,
        }
    }

    /// Whether a message of `size` bytes fits in the queue now.
    fn has_room_for(&self, size: usize) -> bool {
        let (count, bytes) = self.queued();
        count < self.settings.queue_limit as u64
            && self
                .settings
                .queue_limit_bytes
                .is_none_or(|limit| bytes.saturating_add(size as u64) <= limit as u64)
    }

    fn accept(&mut self, publish: Publish, reply: Reply<Delivery>, from: Option<Forwarding>) {
        let qos = publish.qos;
        let slot = self.active;
        let wall_ms = self.clock.now_ms();
        let Some(session) = self.session() else {
            self.metrics.publish_refused("stopped");
            let _ = reply.send(Err(ClientError::Stopped));
            return;
        };
        // The clock a Message Expiry Interval starts from must be now, not the loop's last turn.
        session.tick(wall_ms);
        match session.publish(publish) {
            Ok(id) => {
                let (tx, rx) = oneshot::channel();
                if qos == QoS::AtMostOnce {
                    let _ = tx.send(Ok(ReasonCode::Success));
                } else {
                    self.publishes.await_answer(slot, id, tx);
                }
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                self.metrics.published();
                self.pipeline.count_publish();
                let withdrawable = from.is_none();
                self.pipeline.wait(Waiter::Accept {
                    reply,
                    delivery: Delivery { id, rx },
                    slot,
                    withdrawable,
                });
                if let Some(from) = from {
                    self.ack_forwarded_message(from);
                }
            }
            Err(e) => {
                self.metrics.publish_refused(match &e {
                    PublishError::QosNotSupported { .. } => "qos_not_supported",
                    PublishError::RetainNotSupported => "retain_not_supported",
                    _ => "invalid",
                });
                // A forward's message is handed over again as `from` drops.
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// The copy of `from` is in the batch being gathered: ack `from` in the same commit. This
    /// client's own message is acked in its session here; another client's has its marker
    /// joined to the commit, and that client acks it once the commit returns.
    fn ack_forwarded_message(&mut self, from: Forwarding) {
        let own = self.slots.iter().find_map(|s| from.own(&s.origin));
        let Some((slot, tag)) = own else {
            return self.pipeline.forward_from(from);
        };
        from.settled_here();
        if slot != self.active {
            self.pipeline.commit_atomically();
        }
        self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = self.slots.get_mut(slot)
            && let Err(error) = s.session.ack(tag)
        {
            warn!(%error, tag, "a forwarded message is no longer awaited");
        }
    }

    /// Lets waiting publishers in, in order, while the queue has room. Those whose callers
    /// gave up are let go: never stored, never sent.
    pub(super) fn admit_parked(&mut self) {
        if self.stopping.is_disconnecting() {
            self.publishes.refuse_parked();
            return;
        }
        let before = self.publishes.parked.len();
        self.publishes
            .parked
            .retain(|(_, reply, _)| !reply.is_closed());
        let gone = before - self.publishes.parked.len();
        self.stats
            .withdrawn
            .fetch_add(gone as u64, Ordering::Relaxed);
        while let Some((front, _, _)) = self.publishes.parked.front() {
            let size = self.queued_size_of(front);
            if !self.has_room_for(size) {
                return;
            }
            if let Some((publish, reply, from)) = self.publishes.parked.pop_front() {
                self.accept(publish, reply, from);
            }
        }
    }
}

impl Driver {
    /// Publishes whose callers gave up while they waited for the next commit: taken back
    /// before it starts, so that they are never stored. Whether there were any.
    pub(super) fn withdraw_cancelled(&mut self) -> bool {
        let cancelled = self.pipeline.take_cancelled();
        let any = !cancelled.is_empty();
        let mut none = Vec::new();
        for publish in cancelled {
            self.withdraw(publish, &mut none);
        }
        any
    }

    /// Takes back a publish whose caller gave up before it was answered: never sent, and its
    /// record never stored or removed with the next commit. A PUBLISH for it already polled
    /// is dropped from `sends` (about to be written) or from what waits behind the commit.
    pub(super) fn withdraw(&mut self, (slot, id): Cancelled, sends: &mut Vec<Packet>) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        match s.session.withdraw(id) {
            Withdrawn::Taken { unwritten } => {
                if let Some(packet_id) = unwritten {
                    // `sends` go out before what waits behind the commit.
                    let gathered = self.pipeline.gathered_mut();
                    let taken = take_unwritten_publish(&mut [sends, gathered], packet_id);
                    if let Unwritten::Announced {
                        alias,
                        topic,
                        reannounced,
                    } = taken
                        && let Some(s) = self.slots.get_mut(slot)
                    {
                        s.session.unannounce_alias(alias, &topic, reannounced);
                    }
                }
                self.publishes.forget(slot, id);
                self.stats.withdrawn.fetch_add(1, Ordering::Relaxed);
                let _ =
                    self.stats
                        .published
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
            Withdrawn::TooLate => {
                debug!(id, "a publish whose caller gave up had gone out already");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_nobody_awaits_are_swept_as_they_pile_up() {
        let mut publishes = Publishes::default();
        let mut held = Vec::new();
        for id in 0..100_000u64 {
            let (tx, rx) = oneshot::channel();
            publishes.await_answer(0, id, tx);
            // One application in a hundred keeps its delivery; the others drop it at once.
            if id % 100 == 0 {
                held.push(rx);
            }
        }
        assert!(
            publishes.deliveries.len() < 2 * SWEEP_FLOOR + held.len(),
            "{} deliveries kept for {} holders",
            publishes.deliveries.len(),
            held.len()
        );
        // The ones still awaited are all there, and resolve.
        for id in (0..100_000u64).step_by(100) {
            assert!(
                publishes.deliveries.contains_key(&(0, id)),
                "delivery {id} lost"
            );
        }
        publishes.resolve(0, 0, Ok(ReasonCode::Success));
        let mut first = held.swap_remove(0);
        assert_eq!(first.try_recv().ok(), Some(Ok(ReasonCode::Success)));
    }
}
