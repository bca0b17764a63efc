//! The subscriptions kept with the session, and the requests that change them.
//!
//! A SUBSCRIBE or UNSUBSCRIBE changes the server's session, so it goes out only after a
//! record of it is durable: the commit that stores the record is the one that confirms this
//! process still owns the session (a store shared by a standby), and a process that resumes
//! the session (after a crash, or a takeover) finds what may have reached the server and
//! sends it again. Without it, an UNSUBSCRIBE written by a process frozen past its lease could
//! strip a filter from the session the standby had just resumed, and the standby would
//! silently receive nothing on it.
//!
//! One record per filter, its value the packet that makes it (MQTT wire format; stores never
//! parse it), its packet identifier telling the state:
//! - a SUBSCRIBE with identifier [`GRANTED`]: the server granted it; made again if the server
//!   loses the session;
//! - a SUBSCRIBE with identifier [`REQUESTED`]: asked for, outcome unknown until SUBACK;
//! - an UNSUBSCRIBE (identifier [`REQUESTED`]): asked to remove, outcome unknown until
//!   UNSUBACK.
//!
//! A request lost with its connection is sent again first on the next one, under its own id
//! (its caller still waits); one found in the store by a later process is sent again by the
//! session itself, filter by filter.

use bytes::{Bytes, BytesMut};

use super::{RequestId, Session, SessionError};
use crate::packet::{
    Codec, DecodeError, Decoded, Packet, Subscribe, SubscribeProperties, Subscription, Unsubscribe,
    UnsubscribeProperties,
};
use crate::store::{StoreOp, StoredSubscription};

/// The packet identifier of a stored SUBSCRIBE the server granted (every record before
/// requests were recorded has it).
pub(super) const GRANTED: u16 = 1;
/// The packet identifier of a stored request whose answer has not come.
pub(super) const REQUESTED: u16 = 2;

/// `packet` in wire format, for a record; `None` if it does not encode (it was checked as
/// part of a request that did).
fn record(filter: &str, packet: &Packet) -> Option<StoreOp> {
    let mut bytes = BytesMut::new();
    Codec::default().encode(packet, &mut bytes).ok()?;
    Some(StoreOp::PutSubscription(StoredSubscription {
        filter: filter.to_owned(),
        packet: bytes.freeze(),
    }))
}

/// One filter's SUBSCRIBE, with the request's properties.
fn subscribe_one(
    packet_id: u16,
    subscription: &Subscription,
    properties: &SubscribeProperties,
) -> Subscribe {
    Subscribe {
        packet_id,
        properties: properties.clone(),
        subscriptions: vec![subscription.clone()],
    }
}

/// One filter's UNSUBSCRIBE, with the request's properties.
fn unsubscribe_one(filter: &str, properties: &UnsubscribeProperties) -> Unsubscribe {
    Unsubscribe {
        packet_id: REQUESTED,
        properties: properties.clone(),
        filters: vec![filter.to_owned()],
    }
}

/// A stored record: one SUBSCRIBE or UNSUBSCRIBE whose one filter is `filter`.
fn decode_record(bytes: &Bytes, filter: &str) -> Result<Packet, String> {
    let mut buf = BytesMut::from(&bytes[..]);
    match Codec::default().decode(&mut buf) {
        Ok(Decoded::Packet(Packet::Subscribe(s)))
            if buf.is_empty()
                && s.subscriptions.len() == 1
                && s.subscriptions.first().is_some_and(|x| x.filter == filter) =>
        {
            Ok(Packet::Subscribe(s))
        }
        Ok(Decoded::Packet(Packet::Unsubscribe(u)))
            if buf.is_empty()
                && u.filters.len() == 1
                && u.filters.first().is_some_and(|f| f == filter) =>
        {
            Ok(Packet::Unsubscribe(u))
        }
        Ok(other) => Err(format!(
            "not one SUBSCRIBE or UNSUBSCRIBE for the filter: {other:?}"
        )),
        Err(DecodeError { violation, .. }) => Err(violation.to_string()),
    }
}

impl Session {
    /// Takes a stored record back: granted, or in doubt.
    pub(super) fn load_subscription(
        &mut self,
        stored: StoredSubscription,
    ) -> Result<(), SessionError> {
        let packet = decode_record(&stored.packet, &stored.filter).map_err(|reason| {
            SessionError::BadSubscription {
                filter: stored.filter.clone(),
                reason,
            }
        })?;
        match packet {
            Packet::Subscribe(subscribe) if subscribe.packet_id == GRANTED => {
                self.requests.subscriptions.insert(stored.filter, subscribe);
            }
            packet => {
                self.requests.in_doubt.insert(stored.filter, packet);
            }
        }
        Ok(())
    }

    /// Records a SUBSCRIBE before it goes out: each filter's record says it was asked for.
    pub(super) fn record_subscribe(
        &mut self,
        subscriptions: &[Subscription],
        properties: &SubscribeProperties,
    ) {
        for subscription in subscriptions {
            let packet = Packet::Subscribe(subscribe_one(REQUESTED, subscription, properties));
            self.requests.in_doubt.remove(&subscription.filter);
            if let Some(op) = record(&subscription.filter, &packet) {
                self.out.pending.commit.push(op);
            }
        }
    }

    /// Records an UNSUBSCRIBE before it goes out: each filter's record says it is being
    /// removed.
    pub(super) fn record_unsubscribe(
        &mut self,
        filters: &[String],
        properties: &UnsubscribeProperties,
    ) {
        for filter in filters {
            let packet = Packet::Unsubscribe(unsubscribe_one(filter, properties));
            self.requests.in_doubt.remove(filter);
            if let Some(op) = record(filter, &packet) {
                self.out.pending.commit.push(op);
            }
        }
    }

    /// SUBACK for a filter of request `id`: granted, the record says so; refused, the record
    /// goes back to what it was (the subscription granted before, or none).
    pub(super) fn settle_subscription(
        &mut self,
        id: RequestId,
        subscription: &Subscription,
        properties: &SubscribeProperties,
        granted: bool,
    ) {
        let filter = &subscription.filter;
        let restoring = self.requests.resubscribing.contains(&id);
        if self.requests.settling.contains(&id) {
            self.requests.in_doubt.remove(filter);
        }
        if granted {
            let subscribe = subscribe_one(GRANTED, subscription, properties);
            // Made again after a lost session, as it was: the store has it already.
            if restoring && self.requests.subscriptions.get(filter) == Some(&subscribe) {
                return;
            }
            if let Some(op) = record(filter, &Packet::Subscribe(subscribe.clone())) {
                self.out.pending.commit.push(op);
            }
            self.requests
                .subscriptions
                .insert(filter.clone(), subscribe);
        } else if !restoring {
            let earlier = self
                .requests
                .subscriptions
                .get(filter)
                .and_then(|s| record(filter, &Packet::Subscribe(s.clone())));
            self.out
                .pending
                .commit
                .push(earlier.unwrap_or_else(|| StoreOp::RemoveSubscription {
                    filter: filter.clone(),
                }));
        }
    }

    /// UNSUBACK for `filter`: whatever the code, the filter is forgotten, as asked.
    pub(super) fn settle_unsubscription(&mut self, id: RequestId, filter: &str) {
        if self.requests.settling.contains(&id) {
            self.requests.in_doubt.remove(filter);
        }
        self.requests.subscriptions.remove(filter);
        self.out.pending.commit.push(StoreOp::RemoveSubscription {
            filter: filter.to_owned(),
        });
    }

    /// Makes every kept subscription again (the server has no session, or an earlier attempt
    /// went unanswered); returns how many are on their way (one that does not fit the
    /// server's Maximum Packet Size is reported instead, and tried on the next connection). Called on CONNACK, before anything else is sent.
    pub(super) fn restore_subscriptions(&mut self) -> usize {
        self.requests.resubscribe_needed = false;
        let kept: Vec<Subscribe> = self.requests.subscriptions.values().cloned().collect();
        let mut made = 0;
        for subscribe in kept {
            let id = self.new_request_id();
            self.requests.resubscribing.insert(id);
            self.enqueue_request_as(id, Packet::Subscribe(subscribe));
            // Gone at once when it cannot be sent on this connection (`send_request`).
            made += usize::from(self.requests.resubscribing.contains(&id));
        }
        made
    }

    /// Sends again every request in doubt, on CONNACK. On a session the server lost, an
    /// UNSUBSCRIBE has nothing left to remove: its record goes at once.
    pub(super) fn settle_in_doubt(&mut self, session_present: bool) {
        let in_doubt: Vec<(String, Packet)> = self
            .requests
            .in_doubt
            .iter()
            .map(|(filter, packet)| (filter.clone(), packet.clone()))
            .collect();
        for (filter, packet) in in_doubt {
            if !session_present && matches!(packet, Packet::Unsubscribe(_)) {
                self.requests.in_doubt.remove(&filter);
                self.out
                    .pending
                    .commit
                    .push(StoreOp::RemoveSubscription { filter });
                continue;
            }
            let id = self.new_request_id();
            self.requests.settling.insert(id);
            self.enqueue_request_as(id, packet);
        }
    }
}
