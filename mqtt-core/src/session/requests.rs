//! SUBSCRIBE and UNSUBSCRIBE: identifiers, local checks against what CONNACK said, and the
//! per-filter reason codes of SUBACK and UNSUBACK.

use super::{Event, ProtocolViolation, RequestError, RequestId, RequestInFlight, Session};
use crate::packet::{
    Packet, PacketType, SubAck, Subscribe, SubscribeProperties, Subscription, UnsubAck,
    Unsubscribe, UnsubscribeProperties,
};

impl Session {
    pub(super) fn send_request(&mut self, id: RequestId, packet_id: u16, mut packet: Packet) {
        let (kind, filters) = match &mut packet {
            Packet::Subscribe(s) => {
                s.packet_id = packet_id;
                (PacketType::Subscribe, s.subscriptions.len())
            }
            Packet::Unsubscribe(u) => {
                u.packet_id = packet_id;
                (PacketType::Unsubscribe, u.filters.len())
            }
            _ => return,
        };
        self.requests
            .insert(packet_id, RequestInFlight { id, kind, filters });
        self.pending.send.push(packet);
    }

    pub(super) fn request(&mut self, packet: Packet) -> Result<RequestId, RequestError> {
        if self.connection.is_none() {
            return Err(RequestError::NotConnected);
        }
        // Checked as it will be sent, with a stand-in identifier.
        self.codec.encoded_len(&packet)?;
        let id = self.next_request;
        self.next_request += 1;
        match self.ids.allocate() {
            Some(packet_id) => self.send_request(id, packet_id, packet),
            // Every identifier is in flight: wait for one instead of failing.
            None => self.requests_waiting.push_back((id, packet)),
        }
        Ok(id)
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
    ) -> Result<RequestId, ProtocolViolation> {
        let request = match self.requests.get(&packet_id) {
            Some(r) if r.kind == kind => *r,
            _ => {
                return Err(ProtocolViolation::BadAck(format!(
                    "an answer for packet identifier {packet_id}, which no {kind} in flight has"
                )));
            }
        };
        if request.filters != codes {
            return Err(ProtocolViolation::BadAck(format!(
                "{codes} reason codes for {} filters [MQTT-3.8.4-6, MQTT-3.11.3-1]",
                request.filters
            )));
        }
        self.requests.remove(&packet_id);
        self.ids.remove(packet_id);
        self.drain();
        Ok(request.id)
    }

    /// SUBACK: the reason codes of a SUBSCRIBE, in order.
    pub fn handle_suback(&mut self, ack: SubAck) -> Result<(), ProtocolViolation> {
        let id =
            self.finish_request(PacketType::Subscribe, ack.packet_id, ack.reason_codes.len())?;
        self.events.push_back(Event::Subscribed {
            id,
            reason_codes: ack.reason_codes,
            properties: ack.properties,
        });
        Ok(())
    }

    /// UNSUBACK: the reason codes of an UNSUBSCRIBE, in order.
    pub fn handle_unsuback(&mut self, ack: UnsubAck) -> Result<(), ProtocolViolation> {
        let id = self.finish_request(
            PacketType::Unsubscribe,
            ack.packet_id,
            ack.reason_codes.len(),
        )?;
        self.events.push_back(Event::Unsubscribed {
            id,
            reason_codes: ack.reason_codes,
            properties: ack.properties,
        });
        Ok(())
    }
}
