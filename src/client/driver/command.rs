//! What a handle asks of the driver, and where each request goes.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::super::error::ClientError;
use super::super::events::SubAckInfo;
use super::super::message::{Delivery, Message};
use super::super::policy::QueuePolicy;
use super::super::settlement::Forwarding;
use super::requests::SubscriptionChange;
use super::{Driver, Reply};
use crate::packet::{
    Publish, ReasonCode, SubscribeProperties, Subscription, UnsubscribeProperties,
};

/// What a handle asks of the driver.
pub(crate) enum Command {
    Publish {
        publish: Publish,
        /// The policy for a full queue, when the call sets its own (`try_publish`).
        when_full: Option<QueuePolicy>,
        reply: Reply<Delivery>,
    },
    /// The copy of a message being forwarded, to store in one commit with its ack.
    Forward {
        publish: Publish,
        from: Forwarding,
        reply: Reply<Delivery>,
    },
    Subscribe {
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
        reply: Reply<SubAckInfo>,
    },
    Unsubscribe {
        filters: Vec<String>,
        properties: UnsubscribeProperties,
        reply: Reply<Vec<ReasonCode>>,
    },
    /// A request waits for the response carrying this Correlation Data.
    ExpectResponse {
        correlation: Bytes,
        reply: oneshot::Sender<Message>,
    },
    /// The request gave up waiting.
    ForgetResponse {
        correlation: Bytes,
    },
    Disconnect {
        reason: ReasonCode,
        session_expiry: Option<u32>,
        reply: Reply<()>,
    },
    Reauthenticate {
        reply: Reply<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Publish { .. } => "Publish",
            Self::Forward { .. } => "Forward",
            Self::Subscribe { .. } => "Subscribe",
            Self::Unsubscribe { .. } => "Unsubscribe",
            Self::ExpectResponse { .. } => "ExpectResponse",
            Self::ForgetResponse { .. } => "ForgetResponse",
            Self::Disconnect { .. } => "Disconnect",
            Self::Reauthenticate { .. } => "Reauthenticate",
        })
    }
}

impl Command {
    /// Answers the caller with `Stopped` (the client has stopped).
    pub(super) fn reject(self) {
        match self {
            // A forward's message is handed over again as `from` drops: nothing was stored.
            Self::Publish { reply, .. } | Self::Forward { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Self::Subscribe { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Self::Unsubscribe { reply, .. } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Self::Disconnect { reply, .. } | Self::Reauthenticate { reply } => {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            Self::ExpectResponse { .. } | Self::ForgetResponse { .. } => {}
        }
    }
}

impl Driver {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish {
                publish,
                when_full,
                reply,
            } => self.on_publish(publish, when_full, reply, None),
            Command::Forward {
                publish,
                from,
                reply,
            } => self.on_forward(publish, from, reply),
            Command::Subscribe {
                subscriptions,
                properties,
                reply,
            } => self.send_request(SubscriptionChange::Subscribe {
                subscriptions,
                properties,
                reply,
            }),
            Command::Unsubscribe {
                filters,
                properties,
                reply,
            } => self.send_request(SubscriptionChange::Unsubscribe {
                filters,
                properties,
                reply,
            }),
            Command::ExpectResponse { correlation, reply } => {
                self.inbox.expect(correlation, reply);
            }
            Command::ForgetResponse { correlation } => self.inbox.forget(&correlation),
            Command::Disconnect {
                reason,
                session_expiry,
                reply,
            } => self.begin_disconnect(
                reason,
                session_expiry,
                Some(reply),
                super::super::error::StopReason::Disconnected,
            ),
            Command::Reauthenticate { reply } => {
                let result = match self.session() {
                    Some(session) => session.reauthenticate().map_err(ClientError::from),
                    None => Err(ClientError::Stopped),
                };
                let _ = reply.send(result);
            }
        }
    }
}
