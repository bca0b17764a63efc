//! What crosses between the driver and the application: messages from the server (with
//! their acks), the inbox, and the delivery of a publish.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::driver::Command;
use super::{ClientError, DeliveryError};
use crate::packet::{Publish, QoS, ReasonCode};
use crate::session::{MessageTag, PublishId};

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
/// With manual ack ([`ClientBuilder::manual_ack`](super::ClientBuilder::manual_ack)), call
/// [`Message::ack`] once the application is done with it, or [`Message::reject`] to refuse it;
/// until then the server counts it against the client's Receive Maximum, and a QoS 2 message
/// comes again after a crash. A message dropped (or turned into its PUBLISH) without either
/// counts as handled: it is acked, so that later acks, which go out in arrival order, are not
/// held up; a drop without ack is also logged as a warning and counted in
/// [`Stats::dropped_unacked`](super::Stats::dropped_unacked). Without manual ack it was acked
/// when it was handed to the application (taken into the [`Messages`](super::Messages)
/// inbox, or given to a waiting [`Client::request`](super::Client::request)), and `ack` and
/// `reject` do nothing.
#[derive(Debug)]
pub struct Message {
    pub(crate) publish: Publish,
    pub(crate) acker: Option<Acker>,
}

/// Why the application refuses a message ([`Message::reject`]): the reason codes of 0x80 and
/// above that both PUBACK and PUBREC may carry and that say something about the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// 0x80 Unspecified error.
    Unspecified,
    /// 0x83 Implementation specific error: the message is valid but not accepted.
    ImplementationSpecific,
    /// 0x87 Not authorized.
    NotAuthorized,
    /// 0x90 Topic Name invalid: the topic is not one this application accepts.
    TopicNameInvalid,
    /// 0x97 Quota exceeded.
    QuotaExceeded,
    /// 0x99 Payload format invalid.
    PayloadFormatInvalid,
}

impl Refusal {
    /// The reason code the PUBACK or PUBREC carries.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Self::Unspecified => ReasonCode::UnspecifiedError,
            Self::ImplementationSpecific => ReasonCode::ImplementationSpecificError,
            Self::NotAuthorized => ReasonCode::NotAuthorized,
            Self::TopicNameInvalid => ReasonCode::TopicNameInvalid,
            Self::QuotaExceeded => ReasonCode::QuotaExceeded,
            Self::PayloadFormatInvalid => ReasonCode::PayloadFormatInvalid,
        }
    }
}

/// What the application decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `ack`: handled.
    Ack,
    /// `reject`: refused with this reason code.
    Reject(ReasonCode),
    /// Turned into its PUBLISH: handled, the application keeps the packet.
    Released,
    /// Dropped without a word: counted as handled, with a warning.
    Dropped,
}

/// The ack a manual-ack message owes. Whatever happens to the message, the driver hears of
/// it exactly once: through `ack`/`reject`, or from this guard's drop.
#[derive(Debug)]
pub(crate) struct Acker {
    owed: Option<AckOwed>,
}

#[derive(Debug)]
struct AckOwed {
    commands: mpsc::Sender<Command>,
    slot: usize,
    tag: MessageTag,
}

impl Acker {
    pub(crate) fn new(commands: mpsc::Sender<Command>, slot: usize, tag: MessageTag) -> Self {
        Self {
            owed: Some(AckOwed {
                commands,
                slot,
                tag,
            }),
        }
    }

    /// The slot and tag, without telling the driver anything (the driver itself settles it).
    pub(crate) fn disarm(mut self) -> Option<(usize, MessageTag)> {
        self.owed.take().map(|o| (o.slot, o.tag))
    }

    /// Tells the driver, and waits for its answer (the ack durable).
    async fn settle(mut self, verdict: Verdict) -> Result<(), ClientError> {
        let Some(owed) = self.owed.take() else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        owed.commands
            .send(Command::Ack {
                slot: owed.slot,
                tag: owed.tag,
                verdict,
                reply: Some(reply),
            })
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Tells the driver without waiting.
    fn settle_later(&mut self, verdict: Verdict) {
        let Some(owed) = self.owed.take() else {
            return;
        };
        let command = Command::Ack {
            slot: owed.slot,
            tag: owed.tag,
            verdict,
            reply: None,
        };
        match owed.commands.try_send(command) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                // A drop cannot wait: a task carries it once the queue has room.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let commands = owed.commands;
                    runtime.spawn(async move {
                        let _ = commands.send(command).await;
                    });
                }
            }
        }
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        self.settle_later(Verdict::Dropped);
    }
}

impl Message {
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

    /// The whole PUBLISH: properties (Response Topic, Correlation Data, User Properties,
    /// Subscription Identifiers, ...).
    pub fn publish(&self) -> &Publish {
        &self.publish
    }

    /// Whether it waits for [`Message::ack`].
    pub fn needs_ack(&self) -> bool {
        self.acker.is_some()
    }

    /// Acknowledges it. Returns once the acknowledgement is durable (for QoS 2, the "PUBREC
    /// sent" marker is in the store: from then on the message is never delivered again, even
    /// after a crash). Acks go on the wire in arrival order.
    ///
    /// After a lost connection the ack keeps one meaning: QoS 2 is marked as received and the
    /// server's redelivery is answered without delivering it again; QoS 1 is redelivered by
    /// the server (at least once) and delivered again.
    pub async fn ack(mut self) -> Result<(), ClientError> {
        match self.acker.take() {
            Some(acker) => acker.settle(Verdict::Ack).await,
            None => Ok(()),
        }
    }

    /// Refuses it: its PUBACK or PUBREC carries the refusal's reason code. The server does not
    /// send it again on this session, and for QoS 2 no marker is stored. Like acks, refusals
    /// go out in arrival order; this returns once the refusal is on its way. After a lost
    /// connection nothing is sent: the server redelivers the message.
    pub async fn reject(mut self, refusal: Refusal) -> Result<(), ClientError> {
        match self.acker.take() {
            Some(acker) => acker.settle(Verdict::Reject(refusal.reason_code())).await,
            None => Ok(()),
        }
    }

    /// The PUBLISH. With manual ack, the message counts as handled and is acked (without
    /// waiting for the ack to be durable); keep the `Message` instead to ack it later.
    pub fn into_publish(mut self) -> Publish {
        if let Some(mut acker) = self.acker.take() {
            acker.settle_later(Verdict::Released);
        }
        self.publish
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
