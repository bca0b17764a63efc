//! Messages the application did not handle: handed over again after a delay, up to a number
//! of deliveries, then refused, sent to a dead-letter topic, or discarded (the
//! [`Redelivery`] policy).
//!
//! A released message stays unacknowledged in the session meanwhile, so acks of later
//! messages wait behind it (arrival order) and the server does not send it again. Whether it
//! can still be handed over is the session's to say when it is due: a QoS 1 message of a
//! connection that was lost is not (the server sends it again as a new message).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{debug, warn};

use super::super::clock;
use super::super::events::ClientEvent;
use super::super::policy::{Exhausted, Redelivery};
use super::Driver;
use crate::packet::{ProtocolVersion, Publish, UserProperty};
use crate::session::MessageTag;

/// A released message waiting for its next delivery.
struct Pending {
    slot: usize,
    tag: MessageTag,
    publish: Publish,
    /// Deliveries so far.
    deliveries: u32,
}

/// The released messages, by when each is due (and the order of release).
pub(super) struct Redeliveries {
    policy: Redelivery,
    due: BTreeMap<(Instant, u64), Pending>,
    next: u64,
}

impl Redeliveries {
    pub(super) fn new(policy: Redelivery) -> Self {
        Self {
            policy,
            due: BTreeMap::new(),
            next: 0,
        }
    }

    /// When the next message is due.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    fn take_due(&mut self, now: Instant) -> Vec<Pending> {
        let later = self.due.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.due, later)
            .into_values()
            .collect()
    }
}

/// The dead-letter copy of `publish`: the same message on `topic`, saying (MQTT 5) where it
/// came from and how often it was delivered.
fn dead_letter(
    mut publish: Publish,
    topic: &str,
    deliveries: u32,
    protocol: ProtocolVersion,
) -> Publish {
    let original = std::mem::replace(&mut publish.topic, topic.to_owned());
    if protocol != ProtocolVersion::V311 {
        let properties = &mut publish.properties.user_properties;
        properties.push(UserProperty::new("mooring-original-topic", original));
        properties.push(UserProperty::new(
            "mooring-deliveries",
            deliveries.to_string(),
        ));
    }
    publish
}

impl Driver {
    /// The application did not handle a message: schedule its next delivery, or, after its
    /// last, settle it by the policy.
    pub(super) fn release(
        &mut self,
        slot: usize,
        tag: MessageTag,
        publish: Publish,
        deliveries: u32,
    ) {
        self.stats.released.fetch_add(1, Ordering::Relaxed);
        let policy = &self.redeliveries.policy;
        if deliveries >= policy.max_deliveries.max(1) {
            return self.exhaust(slot, tag, publish, deliveries);
        }
        let delay = policy.delay;
        self.emit(ClientEvent::MessageReleased {
            topic: publish.topic.clone(),
            deliveries,
            retry_in: delay,
        });
        let redeliveries = &mut self.redeliveries;
        let order = redeliveries.next;
        redeliveries.next += 1;
        redeliveries.due.insert(
            (clock::now() + delay, order),
            Pending {
                slot,
                tag,
                publish,
                deliveries,
            },
        );
    }

    /// Hands over again every released message that is due and still waits for the
    /// application.
    pub(super) fn redeliver_due(&mut self) {
        if self.redeliveries.due.is_empty() {
            return;
        }
        for pending in self.redeliveries.take_due(clock::now()) {
            let Pending {
                slot,
                tag,
                publish,
                deliveries,
            } = pending;
            let waits = self
                .slots
                .get_mut(slot)
                .is_some_and(|s| s.session.awaits_application(tag));
            if waits {
                self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                self.deliver(slot, tag, publish, deliveries + 1);
            } else {
                // A QoS 1 message of a lost connection: the server sends it again itself.
                debug!(
                    tag,
                    "a released message is no longer awaited; the server sends it again"
                );
                if let Some(s) = self.slots.get_mut(slot) {
                    s.session.abandon(tag);
                }
                self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// After its last delivery: refuse it, publish it to the dead-letter topic in the same
    /// commit as its ack, or discard it.
    fn exhaust(&mut self, slot: usize, tag: MessageTag, publish: Publish, deliveries: u32) {
        self.stats.exhausted.fetch_add(1, Ordering::Relaxed);
        self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
        let outcome = self.redeliveries.policy.exhausted.clone();
        let topic = publish.topic.clone();
        let protocol = self.settings.session.protocol;
        warn!(%topic, deliveries, ?outcome, "a message was not handled in its last delivery");
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let settled = match &outcome {
            Exhausted::Refuse(refusal) => s.session.reject(tag, refusal.reason_code()),
            Exhausted::Discard => s.session.ack(tag),
            Exhausted::DeadLetter(to) => {
                // Both go into the session's next output, so into one commit.
                let copy = dead_letter(publish, to, deliveries, protocol);
                match s.session.publish(copy) {
                    Ok(_) => s.session.ack(tag),
                    Err(error) => {
                        warn!(%error, %to, "the dead-letter copy cannot be published; the message is refused");
                        s.session
                            .reject(
                                tag,
                                super::super::policy::Refusal::Unspecified.reason_code(),
                            )
                            .or_else(|_| s.session.ack(tag))
                    }
                }
            }
        };
        if let Err(error) = settled {
            // A QoS 1 message of a lost connection: the server sends it again.
            debug!(%error, tag, "an exhausted message is no longer awaited");
            s.session.abandon(tag);
        }
        self.emit(ClientEvent::MessageExhausted {
            topic,
            deliveries,
            outcome,
        });
    }
}
