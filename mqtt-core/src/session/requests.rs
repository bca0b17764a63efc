//! SUBSCRIBE and UNSUBSCRIBE: identifiers, local checks against what CONNACK said, the
//! per-filter reason codes of SUBACK and UNSUBACK, and the granted subscriptions kept in the
//! store and made again when the server has lost the session.

use bytes::BytesMut;

use super::{Event, ProtocolViolation, RequestError, RequestId, RequestInFlight, Session};
use crate::packet::{
    Codec, Packet, PacketType, ProtocolVersion, ReasonCode, SubAck, Subscribe, SubscribeProperties,
    Subscription, UnsubAck, Unsubscribe, UnsubscribeProperties,
};
use crate::store::{StoreOp, StoredSubscription};

impl Session {
    pub(super) fn send_request(&mut self, id: RequestId, packet_id: u16, mut packet: Packet) {
        match &mut packet {
            Packet::Subscribe(s) => s.packet_id = packet_id,
            Packet::Unsubscribe(u) => u.packet_id = packet_id,
            _ => return,
        }
        self.requests.insert(
            packet_id,
            RequestInFlight {
                id,
                packet: packet.clone(),
            },
        );
        self.pending.send.push(packet);
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
        self.ids.allocate_from(start)
    }

    fn enqueue_request(&mut self, packet: Packet) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        match self.allocate_request_id() {
            Some(packet_id) => self.send_request(id, packet_id, packet),
            // Every identifier is in flight: wait for one instead of failing.
            None => self.requests_waiting.push_back((id, packet)),
        }
        id
    }

    /// Makes every kept subscription again (the server has no session, or an earlier attempt
    /// went unanswered); returns how many. Called on CONNACK, before anything else is sent.
    pub(super) fn restore_subscriptions(&mut self) -> usize {
        self.resubscribe_needed = false;
        let kept: Vec<Subscribe> = self.subscriptions.values().cloned().collect();
        for subscribe in &kept {
            let id = self.enqueue_request(Packet::Subscribe(subscribe.clone()));
            self.resubscribing.insert(id);
        }
        kept.len()
    }

    /// Keeps `subscription` (granted by the server), with the properties it was asked with.
    fn keep_subscription(&mut self, subscription: &Subscription, properties: &SubscribeProperties) {
        let subscribe = Subscribe {
            packet_id: 1,
            properties: properties.clone(),
            subscriptions: vec![subscription.clone()],
        };
        if self.subscriptions.get(&subscription.filter) == Some(&subscribe) {
            // Made again after a lost session, as it was: the store has it already.
            return;
        }
        let mut packet = BytesMut::new();
        // It was sent as part of a valid SUBSCRIBE, so alone it encodes too.
        if Codec::default()
            .encode(&Packet::Subscribe(subscribe.clone()), &mut packet)
            .is_err()
        {
            return;
        }
        self.pending
            .commit
            .push(StoreOp::PutSubscription(StoredSubscription {
                filter: subscription.filter.clone(),
                packet: packet.freeze(),
            }));
        self.subscriptions
            .insert(subscription.filter.clone(), subscribe);
    }

    /// Sends SUBSCRIBE; [`Event::Subscribed`] carries the server's answer. Refuses locally what
    /// CONNACK said the server does not support: wildcards, Subscription Identifiers, shared
    /// subscriptions.
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
        self.request(Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties,
            subscriptions,
        }))
    }

    /// Sends UNSUBSCRIBE; [`Event::Unsubscribed`] carries the server's answer.
    pub fn unsubscribe(
        &mut self,
        filters: Vec<String>,
        properties: UnsubscribeProperties,
    ) -> Result<RequestId, RequestError> {
        self.request(Packet::Unsubscribe(Unsubscribe {
            packet_id: 1,
            properties,
            filters,
        }))
    }

    pub(super) fn finish_request(
        &mut self,
        kind: PacketType,
        packet_id: u16,
        codes: usize,
    ) -> Result<RequestInFlight, ProtocolViolation> {
        let filters = match self.requests.get(&packet_id).map(|r| &r.packet) {
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
        let request = self.requests.remove(&packet_id).ok_or_else(|| {
            ProtocolViolation::BadAck(format!("packet identifier {packet_id} vanished"))
        })?;
        self.ids.remove(packet_id);
        self.drain();
        Ok(request)
    }

    /// SUBACK: the reason codes of a SUBSCRIBE, in order.
    ///
    /// Every subscription granted (a reason code below 0x80) is kept in the store with the
    /// session, to be made again if the server loses the session.
    pub fn handle_suback(&mut self, ack: SubAck) -> Result<(), ProtocolViolation> {
        let request =
            self.finish_request(PacketType::Subscribe, ack.packet_id, ack.reason_codes.len())?;
        if let Packet::Subscribe(subscribe) = &request.packet {
            for (subscription, code) in subscribe.subscriptions.iter().zip(&ack.reason_codes) {
                if !code.is_error() {
                    self.keep_subscription(subscription, &subscribe.properties);
                }
            }
        }
        self.resubscribing.remove(&request.id);
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
            let filters = match self.requests.get(&ack.packet_id).map(|r| &r.packet) {
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
                if self.subscriptions.remove(filter).is_some() {
                    self.pending.commit.push(StoreOp::RemoveSubscription {
                        filter: filter.clone(),
                    });
                }
            }
        }
        self.events.push_back(Event::Unsubscribed {
            id: request.id,
            reason_codes: ack.reason_codes,
            properties: ack.properties,
        });
        Ok(())
    }
}
