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
/// With manual ack ([`ClientBuilder::manual_ack`](super::ClientBuilder::manual_ack)), call [`Message::ack`] once the
/// application is done with it; until then the server counts it against the client's Receive
/// Maximum, and a QoS 2 message comes again after a crash. Without manual ack it was acked
/// when it was handed to the application (taken into the [`Messages`] inbox, or given to a
/// waiting [`Client::request`](super::Client::request)) and `ack` does nothing.
#[derive(Debug)]
pub struct Message {
    pub(crate) publish: Publish,
    pub(crate) acker: Option<Acker>,
}

#[derive(Debug)]
pub(crate) struct Acker {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) slot: usize,
    pub(crate) tag: MessageTag,
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
        let Some(acker) = self.acker.take() else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        acker
            .commands
            .send(Command::Ack {
                slot: acker.slot,
                tag: acker.tag,
                reply,
            })
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// The PUBLISH, leaving any ack undone.
    pub fn into_publish(self) -> Publish {
        self.publish
    }
}

/// The messages the server sends, in arrival order. Ends when the client stops.
///
/// Use [`Router`](super::Router) to dispatch them by topic filter. Dropping it discards (and acks) later
/// messages.
#[derive(Debug)]
pub struct Messages {
    pub(crate) rx: mpsc::Receiver<Message>,
}

impl Messages {
    /// The next message; `None` once the client has stopped.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }
}
