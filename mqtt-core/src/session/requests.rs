//! SUBSCRIBE and UNSUBSCRIBE: identifiers, local checks against what CONNACK said, and the
//! per-filter reason codes of SUBACK and UNSUBACK. What they change in the store:
//! `subscriptions.rs`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::{Event, ProtocolViolation, RequestError, RequestId, RequestInFlight, Session};
use crate::packet::{
    Packet, PacketType, ProtocolVersion, ReasonCode, SubAck, Subscribe, SubscribeProperties,
    Subscription, UnsubAck, Unsubscribe, UnsubscribeProperties,
};

/// SUBSCRIBE and UNSUBSCRIBE: the session's requests and the subscriptions they keep.
#[derive(Debug)]
pub(super) struct Requests {
    /// In flight, by packet identifier.
    pub(super) in_flight: HashMap<u16, RequestInFlight>,
    /// Waiting for a free packet identifier.
    pub(super) waiting: VecDeque<(RequestId, Packet)>,
    /// Granted subscriptions, by filter, as kept in the store (one SUBSCRIBE each).
    pub(super) subscriptions: BTreeMap<String, Subscribe>,
    /// Requests the session made itself to restore subscriptions.
    pub(super) resubscribing: HashSet<RequestId>,
    /// Per filter, a SUBSCRIBE or UNSUBSCRIBE an earlier process recorded and perhaps sent,
    /// never answered: sent again on each connection until answered, so that the server's
    /// session ends as the application asked.
    pub(super) in_doubt: BTreeMap<String, Packet>,
    /// Requests the session made itself to settle what is in doubt.
    pub(super) settling: HashSet<RequestId>,
    /// A restoring SUBSCRIBE went unanswered: restore again on the next connection.
    pub(super) resubscribe_needed: bool,
    pub(super) next_id: RequestId,
}

impl Default for Requests {
    fn default() -> Self {
        Self {
            in_flight: HashMap::new(),
            waiting: VecDeque::new(),
            subscriptions: BTreeMap::new(),
            resubscribing: HashSet::new(),
            in_doubt: BTreeMap::new(),
            settling: HashSet::new(),
            resubscribe_needed: false,
            next_id: 1,
        }
    }
}

impl Session {
    pub(super) fn send_request(&mut self, id: RequestId, packet_id: u16, mut packet: Packet) {
        match &mut packet {
            Packet::Subscribe(s) => s.packet_id = packet_id,
            Packet::Unsubscribe(u) => u.packet_id = packet_id,
            _ => return,
        }
        // Made on an earlier connection (kept, in doubt, or waiting for this one): the
        // server's Maximum Packet Size may be smaller now. Never sent, so never awaited.
        if let Err(error) = self.codec.encoded_len(&packet) {
            self.outbound.ids.remove(packet_id);
            if self.requests.resubscribing.remove(&id) {
                // The server has no such subscription: made again on the next connection.
                self.requests.resubscribe_needed = true;
            }
            self.requests.settling.remove(&id);
            let filters = match packet {
                Packet::Subscribe(s) => s.subscriptions.into_iter().map(|s| s.filter).collect(),
                Packet::Unsubscribe(u) => u.filters,
                _ => Vec::new(),
            };
            self.events
                .push_back(Event::RequestNotSent { id, filters, error });
            return;
        }
        self.requests.in_flight.insert(
            packet_id,
            RequestInFlight {
                id,
                packet: packet.clone(),
            },
        );
        self.out.pending.send.push(packet);
    }

    pub(super) fn request(&mut self, packet: Packet) -> Result<RequestId, RequestError> {
        if self.connection.is_none() {
            return Err(RequestError::NotConnected);
        }
        // Checked as it will be sent, with a stand-in identifier.
        self.codec.encoded_len(&packet)?;
        Ok(self.enqueue_request(packet))
    }

    /// An identifier for a SUBSCRIBE or UNSUBSCRIBE, searched from half the identifier space
    /// past the newest queued message: a queued message's identifier is fixed by its sequence
    /// number, and one taken by a request would hold the queue up until the request's ack.
    pub(super) fn allocate_request_id(&mut self) -> Option<u16> {
        let start = super::outbound::packet_id_of(self.next_seq.wrapping_add(32_767));
        self.outbound.ids.allocate_from(start)
    }

    pub(super) fn enqueue_request(&mut self, packet: Packet) -> RequestId {
        let id = self.new_request_id();
        self.enqueue_request_as(id, packet);
        id
    }

    pub(super) fn new_request_id(&mut self) -> RequestId {
        let id = self.requests.next_id;
        self.requests.next_id += 1;
        id
    }

    /// Sends request `id` now, or once an identifier is free.
    pub(super) fn enqueue_request_as(&mut self, id: RequestId, packet: Packet) {
        match self.allocate_request_id() {
            Some(packet_id) => self.send_request(id, packet_id, packet),
            // Every identifier is in flight: wait for one instead of failing.
            None => self.requests.waiting.push_back((id, packet)),
        }
    }

    /// Sends SUBSCRIBE, once a record of it is durable (see `subscriptions.rs`);
    /// [`Event::Subscribed`] carries the server's answer. Refuses locally what CONNACK said
    /// the server does not support: wildcards, Subscription Identifiers, shared subscriptions.
    pub fn subscribe(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<RequestId, RequestError> {
        if let Some(conn) = &self.connection {
            if !conn.subscription_ids_available && properties.subscription_identifier.is_some() {
                return Err(RequestError::Unsupported("Subscription Identifiers"));
            }
            for s in &subscriptions {
                let shared = crate::packet::is_shared_subscription(&s.filter);
                if shared && !conn.shared_available {
                    return Err(RequestError::Unsupported("shared subscriptions"));
                }
                if s.filter.contains(['+', '#']) && !conn.wildcards_available {
                    return Err(RequestError::Unsupported("wildcard subscriptions"));
                }
            }
        }
        let id = self.request(Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: properties.clone(),
            subscriptions: subscriptions.clone(),
        }))?;
        // In the same output as the SUBSCRIBE, which goes out once this is durable.
        self.record_subscribe(&subscriptions, &properties);
        Ok(id)
    }

    /// Sends UNSUBSCRIBE, once a record of it is durable; [`Event::Unsubscribed`] carries the
    /// server's answer.
    pub fn unsubscribe(
        &mut self,
        filters: Vec<String>,
        properties: UnsubscribeProperties,
    ) -> Result<RequestId, RequestError> {
        let id = self.request(Packet::Unsubscribe(Unsubscribe {
            packet_id: 1,
            properties: properties.clone(),
            filters: filters.clone(),
        }))?;
        self.record_unsubscribe(&filters, &properties);
        Ok(id)
    }

    pub(super) fn finish_request(
        &mut self,
        kind: PacketType,
        packet_id: u16,
        codes: usize,
    ) -> Result<RequestInFlight, ProtocolViolation> {
        let filters = match self.requests.in_flight.get(&packet_id).map(|r| &r.packet) {
            Some(Packet::Subscribe(s)) if kind == PacketType::Subscribe => s.subscriptions.len(),
            Some(Packet::Unsubscribe(u)) if kind == PacketType::Unsubscribe => u.filters.len(),
            _ => {
                return Err(ProtocolViolation::BadAck(format!(
                    "an answer for packet identifier {packet_id}, which no {kind} in flight has"
                )));
            }
        };
        if filters != codes {
            // The server's rules: one reason code per filter, in order.
            let rule = if kind == PacketType::Subscribe {
                "MQTT-3.8.4-6, MQTT-3.9.3-1"
            } else {
                "MQTT-3.11.3-1"
            };
            return Err(ProtocolViolation::BadAck(format!(
                "{codes} reason codes for {filters} filters [{rule}]"
            )));
        }
        let request = self.requests.in_flight.remove(&packet_id).ok_or_else(|| {
            ProtocolViolation::BadAck(format!("packet identifier {packet_id} vanished"))
        })?;
        self.outbound.ids.remove(packet_id);
        self.drain();
        Ok(request)
    }

    /// SUBACK: the reason codes of a SUBSCRIBE, in order.
    ///
    /// Every subscription granted (a reason code below 0x80) is kept in the store with the
    /// session, to be made again if the server loses the session; a refused one's record goes
    /// back to what it was before the request.
    pub fn handle_suback(&mut self, ack: SubAck) -> Result<(), ProtocolViolation> {
        let request =
            self.finish_request(PacketType::Subscribe, ack.packet_id, ack.reason_codes.len())?;
        if let Packet::Subscribe(subscribe) = &request.packet {
            for (subscription, code) in subscribe.subscriptions.iter().zip(&ack.reason_codes) {
                self.settle_subscription(
                    request.id,
                    subscription,
                    &subscribe.properties,
                    !code.is_error(),
                );
            }
        }
        self.requests.resubscribing.remove(&request.id);
        self.requests.settling.remove(&request.id);
        self.events.push_back(Event::Subscribed {
            id: request.id,
            reason_codes: ack.reason_codes,
            properties: ack.properties,
        });
        Ok(())
    }

    /// UNSUBACK: the reason codes of an UNSUBSCRIBE, in order.
    ///
    /// The filters are forgotten (and removed from the store) whatever the codes say: the
    /// application asked not to receive them any more.
    pub fn handle_unsuback(&mut self, mut ack: UnsubAck) -> Result<(), ProtocolViolation> {
        if self.options.protocol == ProtocolVersion::V311 {
            // A 3.1.1 UNSUBACK carries no reason codes: every filter is gone.
            let filters = match self
                .requests
                .in_flight
                .get(&ack.packet_id)
                .map(|r| &r.packet)
            {
                Some(Packet::Unsubscribe(u)) => u.filters.len(),
                _ => 0,
            };
            ack.reason_codes = vec![ReasonCode::Success; filters];
        }
        let request = self.finish_request(
            PacketType::Unsubscribe,
            ack.packet_id,
            ack.reason_codes.len(),
        )?;
        if let Packet::Unsubscribe(unsubscribe) = &request.packet {
            for filter in &unsubscribe.filters {
                self.settle_unsubscription(request.id, filter);
            }
        }
        self.requests.settling.remove(&request.id);
        self.events.push_back(Event::Unsubscribed {
            id: request.id,
            reason_codes: ack.reason_codes,
            properties: ack.properties,
        });
        Ok(())
    }
}
