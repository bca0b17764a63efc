//! SUBSCRIBE and UNSUBSCRIBE from handles: sent when connected, kept for the next connection
//! otherwise or when one is lost unanswered. (The subscriptions granted are the session's: it
//! keeps them in the store and makes them again when a server has lost the session.)

use std::collections::{HashMap, VecDeque};

use super::super::error::ClientError;
use super::super::events::SubAckInfo;
use tracing::warn;

use super::{Driver, Reply};
use crate::packet::{
    AckProperties, EncodeError, ReasonCode, SubscribeProperties, Subscription,
    UnsubscribeProperties,
};
use crate::session::{RequestError, RequestId};

/// A SUBSCRIBE or UNSUBSCRIBE from a handle.
pub(super) enum SubscriptionChange {
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
}

impl SubscriptionChange {
    /// Whether the caller gave up waiting (the future was dropped).
    fn abandoned(&self) -> bool {
        match self {
            Self::Subscribe { reply, .. } => reply.is_closed(),
            Self::Unsubscribe { reply, .. } => reply.is_closed(),
        }
    }

    fn fail(self, error: impl FnOnce() -> ClientError) {
        match self {
            Self::Subscribe { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            Self::Unsubscribe { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

/// Requests in flight and waiting.
#[derive(Default)]
pub(super) struct Requests {
    /// Sent, by slot and request id, awaiting SUBACK or UNSUBACK.
    in_flight: HashMap<(usize, RequestId), SubscriptionChange>,
    /// Waiting for a connection, in order.
    offline: VecDeque<SubscriptionChange>,
}

impl Requests {
    /// SUBACK: answer the caller. A SUBACK nobody waits for answers a subscription the
    /// session made again after a lost session; a refusal there is worth a warning.
    pub(super) fn subscribed(
        &mut self,
        slot: usize,
        id: RequestId,
        reason_codes: Vec<ReasonCode>,
        properties: AckProperties,
    ) {
        match self.in_flight.remove(&(slot, id)) {
            Some(SubscriptionChange::Subscribe { reply, .. }) => {
                let _ = reply.send(Ok(SubAckInfo {
                    reason_codes,
                    properties,
                }));
            }
            Some(other) => other.fail(|| ClientError::Stopped),
            None => {
                if let Some(code) = reason_codes.iter().find(|c| c.is_error()) {
                    warn!(
                        ?code,
                        "the server refused a subscription the client made again; it stays kept"
                    );
                }
            }
        }
    }

    /// UNSUBACK: answer the caller.
    pub(super) fn unsubscribed(&mut self, slot: usize, id: RequestId, codes: Vec<ReasonCode>) {
        match self.in_flight.remove(&(slot, id)) {
            Some(SubscriptionChange::Unsubscribe { reply, .. }) => {
                let _ = reply.send(Ok(codes));
            }
            Some(other) => other.fail(|| ClientError::Stopped),
            None => {}
        }
    }

    /// A request the session could not send on this connection: its caller, if one waits,
    /// gets the error; otherwise (a kept subscription or a request in doubt, tried again on
    /// the next connection) the filters and the error are returned, for an event.
    pub(super) fn not_sent(
        &mut self,
        slot: usize,
        id: RequestId,
        filters: Vec<String>,
        error: EncodeError,
    ) -> Option<(Vec<String>, EncodeError)> {
        match self.in_flight.remove(&(slot, id)) {
            Some(request) => {
                request.fail(|| ClientError::Request(RequestError::Invalid(error)));
                None
            }
            None => {
                warn!(?filters, %error, "a kept subscription change cannot be sent on this connection");
                Some((filters, error))
            }
        }
    }

    /// The client stops: every caller gets `Stopped`.
    pub(super) fn stop(&mut self) {
        for (_, request) in self.in_flight.drain() {
            request.fail(|| ClientError::Stopped);
        }
        for request in self.offline.drain(..) {
            request.fail(|| ClientError::Stopped);
        }
    }
}

impl Driver {
    /// Sends a request on the connection, or keeps it for the next one. One whose caller
    /// gave up before it was sent is never sent.
    pub(super) fn send_request(&mut self, request: SubscriptionChange) {
        if request.abandoned() {
            return;
        }
        if !self.conn.is_up() {
            self.requests.offline.push_back(request);
            return;
        }
        let slot = self.active;
        let Some(session) = self.session() else {
            request.fail(|| ClientError::Stopped);
            return;
        };
        let result = match &request {
            SubscriptionChange::Subscribe {
                subscriptions,
                properties,
                ..
            } => session.subscribe(subscriptions.clone(), properties.clone()),
            SubscriptionChange::Unsubscribe {
                filters,
                properties,
                ..
            } => session.unsubscribe(filters.clone(), properties.clone()),
        };
        match result {
            Ok(id) => {
                self.requests.in_flight.insert((slot, id), request);
            }
            Err(RequestError::NotConnected) => self.requests.offline.push_back(request),
            Err(e) => request.fail(|| ClientError::Request(e)),
        }
    }

    /// Sends every request that waited for a connection, in order.
    pub(super) fn send_offline_requests(&mut self) {
        for request in std::mem::take(&mut self.requests.offline) {
            self.send_request(request);
        }
    }
}
