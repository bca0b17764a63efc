//! How an outbound flow ends: PUBACK, PUBREC (then PUBREL, stored first) and PUBCOMP, with
//! the identifier, quota and record each gives back.

use super::{Event, PublishId, Session, Stage};
use crate::packet::{Packet, PubAck, QoS, ReasonCode};
use crate::store::{OutboundRecord, StoreOp};

impl Session {
    /// Finds the flow of an acknowledged packet identifier, sent on this connection, in the
    /// expected stage (PUBLISH awaiting its answer, or PUBREL awaiting PUBCOMP).
    pub(super) fn flow_for(&self, packet_id: u16, released: bool) -> Option<u64> {
        let seq = *self.outbound.by_packet_id.get(&packet_id)?;
        let flow = self.outbound.flows.get(&seq)?;
        (flow.stage.is_released() == released && flow.sent).then_some(seq)
    }

    /// Ends a flow, then sends what its identifier and quota make room for.
    pub(super) fn finish(&mut self, seq: u64, event: Event) {
        if self.end_flow(seq, |_| Some(event)) {
            self.drain();
        }
    }

    /// Ends a flow whose outcome the application has already been told.
    pub(super) fn finish_reported(&mut self, seq: u64) {
        if self.end_flow(seq, |_| None) {
            self.drain();
        }
    }

    /// Removes the flow stored under `seq`: its record goes, its identifier and any send quota
    /// it held come back, and `event` (given the flow's delivery id) reports it, if it gives
    /// one. Whether there was one.
    pub(super) fn end_flow(
        &mut self,
        seq: u64,
        event: impl FnOnce(PublishId) -> Option<Event>,
    ) -> bool {
        let Some(flow) = self.outbound.flows.remove(&seq) else {
            return false;
        };
        self.outbound.ids.remove(flow.packet_id);
        self.outbound.by_packet_id.remove(&flow.packet_id);
        self.out.pending.commit.push(if flow.queued {
            super::classes::class_removal(flow.class, flow.id)
        } else {
            StoreOp::RemoveOutbound { seq }
        });
        self.out.deferrable_ops += 1;
        self.outbound
            .cooling
            .insert(flow.packet_id, self.out.generation);
        self.outbound
            .cooling_order
            .push_back((self.out.generation, flow.packet_id));
        if let Some(conn) = self.connection.as_mut().filter(|_| flow.holds_quota) {
            // Never above the initial quota.
            conn.send_quota = conn.send_quota.saturating_add(1).min(conn.receive_maximum);
        }
        self.events.extend(event(flow.id));
        if self.outbound.flows.is_empty() && self.nothing_queued() {
            self.records.release();
        }
        true
    }

    /// The QoS of a flow still awaiting the answer to its PUBLISH.
    fn published_qos(&self, seq: u64) -> Option<QoS> {
        match &self.outbound.flows.get(&seq)?.stage {
            Stage::Published(publish) => Some(publish.qos),
            Stage::Released => None,
        }
    }

    /// PUBACK: a QoS 1 flow ends, delivered or refused by its reason code. An identifier with no
    /// QoS 1 flow awaiting PUBACK is ignored (the server repeats itself after a reconnect).
    pub fn handle_puback(&mut self, ack: &PubAck) {
        let Some(seq) = self.flow_for(ack.packet_id, false) else {
            return;
        };
        if self.published_qos(seq) != Some(QoS::AtLeastOnce) {
            return;
        }
        let event = if ack.reason_code.is_error() {
            Event::Failed {
                id: seq,
                reason: ack.reason_code,
            }
        } else {
            Event::Delivered {
                id: seq,
                reason: ack.reason_code,
            }
        };
        self.finish(seq, event);
    }

    /// PUBREC: a QoS 2 flow moves to PUBREL, stored under a new sequence number so that PUBREL
    /// records keep the order PUBREC arrived in [MQTT-4.6.0-4]; with an error reason code the
    /// flow ends and no PUBREL follows. An unknown identifier is answered with PUBREL 0x92. A
    /// PUBREC for a QoS 1 flow is ignored: only PUBACK ends it (the fuzzer found that such a
    /// PUBREC turned a QoS 1 message into a PUBREL, and PUBCOMP then ended it unacknowledged).
    pub fn handle_pubrec(&mut self, rec: &PubAck) {
        let Some(seq) = self.flow_for(rec.packet_id, false) else {
            if self.flow_for(rec.packet_id, true).is_some() {
                // A repeated PUBREC: the PUBREL it asks for is already stored; send it again.
                self.out
                    .pending
                    .send
                    .push(Packet::PubRel(PubAck::new(rec.packet_id)));
            } else if self.connection.is_some() {
                let mut rel = PubAck::new(rec.packet_id);
                if self.options.protocol != crate::packet::ProtocolVersion::V311 {
                    rel.reason_code = ReasonCode::PacketIdentifierNotFound;
                }
                self.out.pending.send.push(Packet::PubRel(rel));
            }
            return;
        };
        if self.published_qos(seq) != Some(QoS::ExactlyOnce) {
            return;
        }
        if rec.reason_code.is_error() {
            self.finish(
                seq,
                Event::Failed {
                    id: seq,
                    reason: rec.reason_code,
                },
            );
            return;
        }
        self.release(seq);
    }

    /// Moves a QoS 2 flow from its PUBLISH to its PUBREL: the PUBREL's record replaces the
    /// PUBLISH's in the next commit, and the PUBREL goes out after it.
    pub(super) fn release(&mut self, seq: u64) {
        let new_seq = self.next_seq();
        let Some(mut flow) = self.outbound.flows.remove(&seq) else {
            return;
        };
        flow.stage = Stage::Released;
        self.outbound.by_packet_id.insert(flow.packet_id, new_seq);
        self.out.pending.commit.push(if flow.queued {
            super::classes::class_removal(flow.class, flow.id)
        } else {
            StoreOp::RemoveOutbound { seq }
        });
        self.out.pending.commit.push(StoreOp::PutOutbound {
            seq: new_seq,
            record: OutboundRecord::PubRel {
                packet_id: flow.packet_id,
            },
        });
        flow.queued = false;
        flow.sent = true;
        flow.record_generation = self.out.generation;
        // After the commit: the PUBREL depends on its record.
        self.out
            .pending
            .send
            .push(Packet::PubRel(PubAck::new(flow.packet_id)));
        self.outbound.flows.insert(new_seq, flow);
    }

    /// PUBCOMP: a QoS 2 flow ends, delivered: the server took the message with its PUBREC,
    /// and a PUBCOMP only frees the identifier. Its one error, 0x92 (the server no longer
    /// knows the identifier), is what a PUBREL resent after a reconnection gets when the
    /// server had completed the flow and its PUBCOMP was lost with the connection, "not an
    /// error during recovery" (MQTT 5.0, 3.7.2.1); reporting it as a failure would have the
    /// application publish again what the server already has. The reason stays in the
    /// event. An identifier with no flow awaiting PUBCOMP is ignored.
    pub fn handle_pubcomp(&mut self, comp: &PubAck) {
        let Some(seq) = self.flow_for(comp.packet_id, true) else {
            return;
        };
        let (id, reported) = self
            .outbound
            .flows
            .get(&seq)
            .map_or((seq, false), |f| (f.id, f.reported));
        if reported {
            self.finish_reported(seq);
            return;
        }
        self.finish(
            seq,
            Event::Delivered {
                id,
                reason: comp.reason_code,
            },
        );
    }
}
