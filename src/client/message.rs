//! What crosses between the driver and the application: messages from the server (with
//! their acks) and the delivery of a publish.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::{ClientError, DeliveryError};
use super::policy::Refusal;
use super::settlement::{AckMode, AckState, Forwarding, Released, Verdict};
use crate::packet::{Publish, QoS, ReasonCode};
use crate::session::PublishId;

/// Resolves when the server acknowledged a publish: PUBACK (QoS 1) or PUBCOMP (QoS 2), with
/// its reason code. QoS 0 resolves once accepted: nothing acknowledges QoS 0.
///
/// Dropping it does not cancel the publish.
#[derive(Debug)]
#[must_use = "await it to learn the outcome, or drop it to fire and forget"]
pub struct Delivery {
    pub(crate) id: PublishId,
    pub(crate) rx: oneshot::Receiver<Result<ReasonCode, DeliveryError>>,
}

impl Delivery {
    /// The publish's id in its session (its sequence number in the store).
    pub fn id(&self) -> PublishId {
        self.id
    }
}

impl Future for Delivery {
    type Output = Result<ReasonCode, DeliveryError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(DeliveryError::Stopped)))
    }
}

/// A message from the server.
///
/// A QoS 1 or 2 message is acknowledged to the server only once the application is done with
/// it, so that a message the process did not finish is sent again:
///
/// - **Automatic ack** (the default): when the application asks its
///   [`Messages`](super::Messages) for the next message, or drops this one. At QoS 2 the next
///   message is handed over only once this one's ack is durable, so after a crash a message is
///   handed over again only if the application still held it.
/// - **Manual ack** ([`ClientBuilder::manual_ack`](super::ClientBuilder::manual_ack)): when
///   the application calls [`Message::ack`] (or [`Message::reject`] to refuse it).
///
/// A message the application did not handle (dropped unacked with manual ack, dropped while
/// its thread panicked, or [`release`](Message::release)d) is handed over again after a delay,
/// up to a number of deliveries, then refused or sent to a dead-letter topic
/// ([`ClientBuilder::redelivery`](super::ClientBuilder::redelivery)). Until it is acked, the
/// server counts it against the client's Receive Maximum, and acks of later messages wait
/// for it (acks go out in arrival order).
#[derive(Debug)]
pub struct Message {
    pub(crate) publish: Publish,
    pub(crate) ack: Option<Arc<AckState>>,
    pub(crate) deliveries: u32,
}

impl Message {
    pub(crate) fn new(publish: Publish, ack: Option<Arc<AckState>>, deliveries: u32) -> Self {
        Self {
            publish,
            ack,
            deliveries,
        }
    }

    /// The topic (resolved when it came by Topic Alias).
    pub fn topic(&self) -> &str {
        &self.publish.topic
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.publish.payload
    }

    /// The QoS it was delivered at.
    pub fn qos(&self) -> QoS {
        self.publish.qos
    }

    /// Whether it is a retained message.
    pub fn retain(&self) -> bool {
        self.publish.retain
    }

    /// Whether the server marked it as possibly sent before (DUP).
    pub fn dup(&self) -> bool {
        self.publish.dup
    }

    /// The message's idempotency key, if its publisher gave it one
    /// ([`ClientBuilder::key_publishes`](super::ClientBuilder::key_publishes), or a consumer
    /// of [`crate::idempotency`]'s format; an envelope is opened first when the client
    /// [deduplicates](super::ClientBuilder::deduplicate) with `envelopes`): the same for
    /// every copy of one message, so an application that keeps its own record of what it did
    /// can key it by this.
    pub fn idempotency_key(&self) -> Option<&str> {
        crate::idempotency::key_of(&self.publish)
    }

    /// How many times the client has handed this message to the application, this time
    /// included: 1, then one more each time it comes again after it was released or dropped
    /// unhandled (see [`Redelivery`](super::Redelivery)).
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// The whole PUBLISH: properties (Response Topic, Correlation Data, User Properties,
    /// Subscription Identifiers, ...).
    pub fn publish(&self) -> &Publish {
        &self.publish
    }

    /// Whether it waits for [`Message::ack`]: a QoS 1/2 message with manual ack.
    pub fn needs_ack(&self) -> bool {
        self.ack.as_ref().is_some_and(|a| a.mode == AckMode::Manual)
    }

    /// Acknowledges it. Returns once the acknowledgement is durable (for QoS 2, the "PUBREC
    /// sent" marker is in the store: from then on the message is never delivered again, even
    /// after a crash). Acks go on the wire in arrival order. With automatic ack this acks it
    /// now, without waiting for the application to ask for the next message.
    ///
    /// After a lost connection the ack keeps one meaning: QoS 2 is marked as received and the
    /// server's redelivery is answered without delivering it again; QoS 1 is redelivered by
    /// the server (at least once) and delivered again.
    ///
    /// Cancel safety: dropping the future does not take the ack back; it still becomes
    /// durable, and the message is never handed over again.
    pub async fn ack(mut self) -> Result<(), ClientError> {
        match self.ack.take() {
            Some(state) => settle_and_wait(&state, Verdict::Ack).await,
            None => Ok(()),
        }
    }

    /// Refuses it: its PUBACK or PUBREC carries the refusal's reason code. The server does not
    /// send it again on this session, and for QoS 2 no marker is stored. Like acks, refusals
    /// go out in arrival order; this returns once the refusal is on its way. After a lost
    /// connection nothing is sent: the server redelivers the message. MQTT 5 only (3.1.1 has
    /// no way to refuse a message).
    ///
    /// Cancel safety: dropping the future does not take the refusal back.
    pub async fn reject(mut self, refusal: Refusal) -> Result<(), ClientError> {
        match self.ack.take() {
            Some(state) => settle_and_wait(&state, Verdict::Reject(refusal.reason_code())).await,
            None => Ok(()),
        }
    }

    /// Gives it back unhandled: the client hands it to the application again after the
    /// [`Redelivery`](super::Redelivery) delay, or, after its last delivery, refuses it or
    /// sends it to the dead-letter topic. Until then it stays unacknowledged. A QoS 0 message
    /// owes no ack and is simply dropped.
    pub fn release(mut self) {
        self.release_as(Released::Asked);
    }

    fn release_as(&mut self, why: Released) {
        if let Some(state) = self.ack.take() {
            let publish = std::mem::replace(&mut self.publish, Publish::new("", Bytes::new()));
            let deliveries = self.deliveries;
            state.settle(
                Verdict::Release {
                    publish: Box::new(publish),
                    deliveries,
                    why,
                },
                None,
            );
        }
    }

    /// Takes this message for [`Message::forward`](super::Message::forward): its
    /// forwarding (the ack that goes with the copy's commit), or `None` when it owes no ack.
    /// Taken at once: asking for the next message meanwhile must not ack this one.
    pub(super) fn take_forwarding(mut self) -> Option<Forwarding> {
        let original = std::mem::replace(&mut self.publish, Publish::new("", Bytes::new()));
        let state = self.ack.take()?;
        state.forwarding(original, self.deliveries)
    }

    /// The PUBLISH. The message counts as handled and is acked (without waiting for the ack
    /// to be durable); keep the `Message` instead to ack it later, or use
    /// [`Message::forward`] to publish it elsewhere in one commit with its ack.
    pub fn into_publish(mut self) -> Publish {
        if let Some(state) = self.ack.take() {
            state.settle(Verdict::Ack, None);
        }
        std::mem::replace(&mut self.publish, Publish::new("", Bytes::new()))
    }

    /// The message reached the application: from now on dropping it means done (automatic
    /// ack) or not handled (manual ack), no longer unread.
    pub(crate) fn hand_over(&self) -> Option<&Arc<AckState>> {
        let state = self.ack.as_ref()?;
        state.hand_over();
        Some(state)
    }
}

/// Tells the driver, and waits for its answer (the verdict durable).
async fn settle_and_wait(state: &AckState, verdict: Verdict) -> Result<(), ClientError> {
    let (reply, answer) = oneshot::channel();
    if !state.settle(verdict, Some(reply)) {
        // Settled already: the receiver acked it when the next message was asked for.
        return Ok(());
    }
    answer.await.map_err(|_| ClientError::Stopped)?
}

impl Drop for Message {
    fn drop(&mut self) {
        let Some(state) = self.ack.as_ref() else {
            return;
        };
        if !state.handed() {
            if let Some(state) = self.ack.take() {
                state.settle(Verdict::Unread, None);
            }
        } else if state.mode == AckMode::Manual {
            self.release_as(Released::Dropped);
        } else if std::thread::panicking() {
            // The handler did not finish: not done with it.
            self.release_as(Released::Panicked);
        } else if let Some(state) = self.ack.take() {
            state.ack_automatically();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketType;

    #[test]
    fn every_refusal_is_an_error_code_puback_and_pubrec_may_carry() {
        for refusal in [
            Refusal::Unspecified,
            Refusal::ImplementationSpecific,
            Refusal::NotAuthorized,
            Refusal::TopicNameInvalid,
            Refusal::QuotaExceeded,
            Refusal::PayloadFormatInvalid,
        ] {
            let code = refusal.reason_code();
            assert!(code.is_error(), "{refusal:?}");
            assert!(code.is_valid_for(PacketType::PubAck), "{refusal:?}");
            assert!(code.is_valid_for(PacketType::PubRec), "{refusal:?}");
        }
    }
}
