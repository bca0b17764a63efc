//! `Message::forward`: a received message published through a client and acked in the same
//! store commit as its copy. Apart from `message.rs`, which the client's handle builds on: it
//! is the one method of a message that needs the handle.

use std::future::Future;

use super::Client;
use super::error::ClientError;
use super::message::{Delivery, Message};
use crate::packet::Publish;

impl Message {
    /// Publishes `publish` (typically this message's own, with a new topic) through `to`, and
    /// acks this message in the same store commit that makes the copy durable: after a crash
    /// either both happened or neither. `to` is this client, or another client on the same
    /// store (its clones count; the store must commit several sessions at once, as redb, sled,
    /// memory and PostgreSQL do): a bridge from one broker to another.
    ///
    /// Returns like [`Client::publish_with`](Client::publish_with): once the copy is
    /// durable, with its [`Delivery`]. A QoS 2 message is then never handed over again, and
    /// its copy goes out exactly once. A QoS 1 message's ack has no marker to store: a crash
    /// after the copy is durable and before the PUBACK reaches the server makes the server
    /// send it again, and it is forwarded again (at least once). A QoS 0 message is published.
    ///
    /// With automatic ack, call it before asking for the next message (asking acks this one);
    /// the future may be awaited later, side by side with others, so that their copies share
    /// commits.
    /// If `to` refuses the copy (an invalid topic, a full queue under `QueuePolicy::Fail`,
    /// another store) or has stopped, the error says why and this message is handed over again
    /// like a released one. If the commit fails, the client that made it stops, and the
    /// store says after a restart whether both happened.
    ///
    /// Cancel safety: dropped before the client took the copy, nothing is stored and this
    /// message is handed over again. Once the client has it, the forward completes (the copy
    /// and the ack go together) whether or not the future is awaited.
    pub fn forward(
        self,
        to: &Client,
        publish: Publish,
    ) -> impl Future<Output = Result<Delivery, ClientError>> + Send + '_ {
        let forwarding = self.take_forwarding();
        async move {
            match forwarding {
                Some(forwarding) => to.forward(publish, forwarding).await,
                None => to.publish_with(publish).await,
            }
        }
    }
}
