//! Publishes from the application: admission to the durable queue (wait or fail when it is
//! full), acceptance by the session, and the deliveries that resolve on PUBACK or PUBCOMP.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::super::options::QueuePolicy;
use super::super::{ClientError, Delivery, DeliveryError};
use super::pipeline::Waiter;
use super::{Driver, Reply};
use crate::packet::{Publish, QoS, ReasonCode};
use crate::session::PublishId;

type Outcome = Result<ReasonCode, DeliveryError>;

/// Publishers waiting for room in the queue, and the deliveries the server has yet to answer.
#[derive(Default)]
pub(super) struct Publishes {
    /// Publishers waiting for room in the durable queue (`QueuePolicy::Wait`).
    parked: VecDeque<(Publish, Reply<Delivery>)>,
    /// Accepted QoS 1/2 publishes, by slot and id, awaiting PUBACK or PUBCOMP.
    deliveries: HashMap<(usize, PublishId), oneshot::Sender<Outcome>>,
}

impl Publishes {
    /// How many publishers wait for room.
    pub(super) fn parked(&self) -> usize {
        self.parked.len()
    }

    /// The server answered a publish (or refused it).
    pub(super) fn resolve(&mut self, slot: usize, id: PublishId, outcome: Outcome) {
        if let Some(tx) = self.deliveries.remove(&(slot, id)) {
            let _ = tx.send(outcome);
        }
    }

    /// Answers every waiting publisher with `Stopped`.
    pub(super) fn refuse_parked(&mut self) {
        for (_, reply) in self.parked.drain(..) {
            let _ = reply.send(Err(ClientError::Stopped));
        }
    }

    /// The client stops: every delivery still awaited resolves `Stopped` (it resumes from the
    /// store on the next start), every waiting publisher gets `Stopped`.
    pub(super) fn stop(&mut self) {
        for (_, tx) in self.deliveries.drain() {
            let _ = tx.send(Err(DeliveryError::Stopped));
        }
        self.refuse_parked();
    }
}

impl Driver {
    /// A publish from a handle: accepted, parked, or refused by the queue policy.
    pub(super) fn on_publish(&mut self, publish: Publish, reply: Reply<Delivery>) {
        if self.stopping.is_disconnecting() {
            let _ = reply.send(Err(ClientError::Stopped));
            return;
        }
        let queued = self.queued();
        let qos0_goes_out_now = publish.qos == QoS::AtMostOnce && self.conn.is_up() && queued == 0;
        let parked = self.publishes.parked.len();
        if !qos0_goes_out_now && (queued + parked >= self.settings.queue_limit || parked > 0) {
            match self.settings.queue_policy {
                QueuePolicy::Fail => {
                    let _ = reply.send(Err(ClientError::QueueFull(self.settings.queue_limit)));
                }
                QueuePolicy::Wait => self.publishes.parked.push_back((publish, reply)),
            }
            return;
        }
        self.accept(publish, reply);
    }

    /// The active session's durable queue length.
    fn queued(&self) -> usize {
        self.slots
            .get(self.active)
            .map_or(0, |s| s.session.queued())
    }

    fn accept(&mut self, publish: Publish, reply: Reply<Delivery>) {
        let qos = publish.qos;
        let slot = self.active;
        let Some(session) = self.session() else {
            let _ = reply.send(Err(ClientError::Stopped));
            return;
        };
        // The clock a Message Expiry Interval starts from must be now, not the loop's last turn.
        session.tick(super::now_ms());
        match session.publish(publish) {
            Ok(id) => {
                let (tx, rx) = oneshot::channel();
                if qos == QoS::AtMostOnce {
                    let _ = tx.send(Ok(ReasonCode::Success));
                } else {
                    self.publishes.deliveries.insert((slot, id), tx);
                }
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                self.pipeline.count_publish();
                self.pipeline
                    .wait(Waiter::Accept(reply, Delivery { id, rx }));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// Lets waiting publishers in while the queue has room.
    pub(super) fn admit_parked(&mut self) {
        if self.stopping.is_disconnecting() {
            self.publishes.refuse_parked();
            return;
        }
        while !self.publishes.parked.is_empty() {
            if self.queued() >= self.settings.queue_limit {
                return;
            }
            if let Some((publish, reply)) = self.publishes.parked.pop_front() {
                self.accept(publish, reply);
            }
        }
    }
}
