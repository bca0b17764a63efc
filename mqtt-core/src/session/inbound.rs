//! Inbound PUBLISH: Topic Aliases, the client's Receive Maximum, delivery, acks in arrival
//! order, the durable PUBREC marker, and PUBREL.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::seen_keys::Arrival;
use super::{AckError, Event, Inbound, MessageTag, ProtocolViolation, Session};
use crate::idempotency;
use crate::packet::{Packet, PacketType, ProtocolVersion, PubAck, Publish, QoS, ReasonCode};
use crate::store::StoreOp;

/// What the session holds of what arrived from the server.
#[derive(Debug)]
pub(super) struct InboundState {
    /// Inbound QoS 2 PUBLISH answered with PUBREC (durable markers), awaiting PUBREL.
    pub(super) markers: BTreeSet<u16>,
    /// Inbound QoS 1/2 messages of the current connection, in arrival order: acks go out in
    /// this order [MQTT-4.6.0-2, MQTT-4.6.0-3].
    pub(super) acks: VecDeque<Inbound>,
    /// Inbound messages delivered on an earlier connection and not yet acked, by tag.
    pub(super) stale: HashMap<MessageTag, Inbound>,
    /// Messages beyond the client's Receive Maximum, waiting for an ack to make room.
    pub(super) held: VecDeque<Publish>,
    /// Packet identifiers of `acks` and `held`: unanswered on this connection.
    pub(super) in_use: HashMap<u16, QoS>,
    /// Topic and payload bytes of `held`.
    pub(super) held_bytes: usize,
    pub(super) held_total: u64,
    /// Entries of `acks` not acked yet (kept to avoid a scan per message).
    pub(super) awaiting_application: usize,
    /// Topic Alias mappings the server set on this connection.
    pub(super) aliases: HashMap<u16, String>,
    pub(super) next_tag: MessageTag,
}

impl InboundState {
    /// Nothing received yet but the stored PUBREC `markers`.
    pub(super) fn new(markers: BTreeSet<u16>) -> Self {
        Self {
            markers,
            acks: VecDeque::new(),
            stale: HashMap::new(),
            held: VecDeque::new(),
            in_use: HashMap::new(),
            held_bytes: 0,
            held_total: 0,
            awaiting_application: 0,
            aliases: HashMap::new(),
            next_tag: 1,
        }
    }
}

/// What a held-back message counts against [`SessionOptions::held_bytes_limit`](super::SessionOptions::held_bytes_limit).
fn held_size(publish: &Publish) -> usize {
    publish.topic.len() + publish.payload.len()
}

impl Session {
    /// Handles a PUBLISH from the server: resolves its Topic Alias, recognises a QoS 2 message
    /// already acknowledged (PUBREC again, not delivered twice [MQTT-4.3.3-10]), and delivers
    /// the rest as [`Event::Message`].
    ///
    /// With manual ack the application never holds more than the client's Receive Maximum
    /// unacknowledged messages: a message beyond that (the server is over its quota) waits
    /// here and is delivered when an ack makes room. The client does not disconnect for it
    /// (DISCONNECT 0x93 is allowed, not required): mosquitto 2.0 miscounts its quota after a
    /// reconnect and, for QoS 1, whenever messages queue for the client, and a disconnect only
    /// makes it worse. Waiting messages are forgotten with the connection; the server sends
    /// them again. They are bounded: in number by the packet identifiers a server can have
    /// unanswered, in bytes by
    /// [`SessionOptions::held_bytes_limit`](super::SessionOptions::held_bytes_limit), past which
    /// the server is refused with 0x93.
    ///
    /// A packet identifier still unanswered on this connection: with DUP 1 and the same QoS
    /// it is a retransmission (some brokers resend on a timer, although only a reconnect
    /// allows it [MQTT-4.4.0-1]) and is ignored; otherwise the server reused an identifier in
    /// use [MQTT-2.2.1-4], a protocol error.
    ///
    /// With [`SessionOptions::deduplication`](super::SessionOptions::deduplication), a QoS 1
    /// message whose idempotency key the application handled, or holds now, is acknowledged
    /// in its turn and not handed over ([`Session::duplicates_dropped`]).
    pub fn handle_publish(&mut self, mut publish: Publish) -> Result<(), ProtocolViolation> {
        self.resolve_alias(&mut publish)?;
        if self.options.deduplication.is_some_and(|d| d.envelopes) {
            idempotency::unwrap_envelope(&mut publish);
        }
        if publish.qos == QoS::AtMostOnce {
            self.events.push_back(Event::Message { tag: 0, publish });
            return Ok(());
        }
        let packet_id = publish.packet_id;
        if let Some(&qos) = self.inbound.in_use.get(&packet_id) {
            if publish.dup && qos == publish.qos {
                return Ok(());
            }
            return Err(ProtocolViolation::PacketIdInUse { packet_id });
        }
        if publish.qos == QoS::ExactlyOnce {
            let same = |qos: QoS, id: u16| qos == QoS::ExactlyOnce && id == packet_id;
            if self.inbound.markers.contains(&packet_id) {
                // Acknowledged before: answer again, never deliver twice, in arrival order
                // behind acks still awaited [MQTT-4.6.0-3].
                if self.inbound.acks.is_empty() {
                    self.out
                        .pending
                        .send
                        .push(Packet::PubRec(PubAck::new(packet_id)));
                } else {
                    self.answer_in_turn(packet_id);
                }
                return Ok(());
            }
            let stale = self
                .inbound
                .stale
                .values()
                .find(|e| same(e.qos, e.packet_id))
                .map(|e| e.tag);
            if let Some(entry) = stale.and_then(|tag| self.inbound.stale.remove(&tag)) {
                // Delivered on an earlier connection, ack still to come: bind it to this one.
                self.bind_to_this_connection(entry);
                return Ok(());
            }
        }
        if self.options.manual_ack && self.unacked_by_application() >= self.receive_maximum() {
            // Their number is bounded by the identifiers a server can have unanswered (a
            // reused one is refused above), their bytes here.
            let bytes = self.inbound.held_bytes + held_size(&publish);
            if bytes > self.options.held_bytes_limit {
                let held = self.inbound.held.len() + 1;
                return Err(ProtocolViolation::ReceiveMaximumExceeded { held, bytes });
            }
            self.inbound.in_use.insert(packet_id, publish.qos);
            self.inbound.held.push_back(publish);
            self.inbound.held_bytes = bytes;
            self.inbound.held_total += 1;
            return Ok(());
        }
        self.deliver(publish);
        Ok(())
    }

    fn deliver(&mut self, publish: Publish) {
        let tag = self.inbound.next_tag;
        self.inbound.next_tag += 1;
        let arrival = match idempotency::key_of(&publish) {
            Some(key)
                if publish.qos == QoS::AtLeastOnce && self.options.deduplication.is_some() =>
            {
                self.seen_keys.classify(key, tag)
            }
            _ => Arrival::New,
        };
        match arrival {
            Arrival::New => {}
            // Handled before: acknowledged in its turn, its key stored already.
            Arrival::Handled if self.inbound.acks.is_empty() => {
                self.out
                    .pending
                    .send
                    .push(Packet::PubAck(PubAck::new(publish.packet_id)));
                return;
            }
            Arrival::Handled => {
                self.answer_in_turn_as(tag, publish.packet_id, QoS::AtLeastOnce);
                return;
            }
            Arrival::Held(original) => {
                if let Some(mut entry) = self.inbound.stale.remove(&original) {
                    // Handed over on an earlier connection, ack still to come: this copy is
                    // the one its ack answers now.
                    entry.packet_id = publish.packet_id;
                    self.bind_to_this_connection(entry);
                } else {
                    // Behind the copy held on this connection, so after its key is stored,
                    // and with the verdict the application gives that copy.
                    self.seen_keys.copy_of(original, tag);
                    self.answer_in_turn_as(tag, publish.packet_id, QoS::AtLeastOnce);
                }
                return;
            }
        }
        self.inbound.in_use.insert(publish.packet_id, publish.qos);
        self.inbound.acks.push_back(Inbound {
            tag,
            packet_id: publish.packet_id,
            qos: publish.qos,
            acked: false,
            reason: ReasonCode::Success,
        });
        self.inbound.awaiting_application += 1;
        self.events.push_back(Event::Message { tag, publish });
        if !self.options.manual_ack {
            // Acknowledged as delivered; `ack` cannot refuse a tag just pushed.
            let _ = self.ack(tag);
        }
    }

    /// Queues the PUBREC for a message whose marker is stored behind the acks still awaited:
    /// an entry already acked, under a tag never given to the application.
    fn answer_in_turn(&mut self, packet_id: u16) {
        let tag = self.inbound.next_tag;
        self.inbound.next_tag += 1;
        self.answer_in_turn_as(tag, packet_id, QoS::ExactlyOnce);
    }

    /// A message handed over on an earlier connection and not yet settled: the server's
    /// redelivery (under `entry.packet_id`) is answered when the application settles it.
    fn bind_to_this_connection(&mut self, entry: Inbound) {
        self.inbound.in_use.insert(entry.packet_id, entry.qos);
        self.inbound.acks.push_back(entry);
        self.inbound.awaiting_application += 1;
    }

    /// Queues the ack of a message the application never gets, under `tag`.
    fn answer_in_turn_as(&mut self, tag: MessageTag, packet_id: u16, qos: QoS) {
        self.inbound.in_use.insert(packet_id, qos);
        self.inbound.acks.push_back(Inbound {
            tag,
            packet_id,
            qos,
            acked: true,
            reason: ReasonCode::Success,
        });
    }

    fn receive_maximum(&self) -> usize {
        usize::from(self.options.properties.receive_maximum.unwrap_or(u16::MAX))
    }

    /// Messages of this connection delivered to the application and not acked yet.
    fn unacked_by_application(&self) -> usize {
        debug_assert_eq!(
            self.inbound.awaiting_application,
            self.inbound.acks.iter().filter(|e| !e.acked).count()
        );
        debug_assert_eq!(
            self.inbound.in_use.len(),
            self.inbound.acks.len() + self.inbound.held.len()
        );
        self.inbound.awaiting_application
    }

    /// Messages that arrived beyond the client's Receive Maximum and wait for an ack to make
    /// room (see [`Session::handle_publish`]).
    pub fn held(&self) -> usize {
        self.inbound.held.len()
    }

    /// How many messages ever had to wait because the server went over the client's Receive
    /// Maximum.
    pub fn held_total(&self) -> u64 {
        self.inbound.held_total
    }

    pub(super) fn resolve_alias(&mut self, publish: &mut Publish) -> Result<(), ProtocolViolation> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        let maximum = self.options.properties.topic_alias_maximum.unwrap_or(0);
        if alias == 0 || alias > maximum {
            return Err(ProtocolViolation::TopicAliasInvalid {
                alias,
                why: "it is 0 or above the client's Topic Alias Maximum [MQTT-3.3.2-10]",
            });
        }
        if publish.topic.is_empty() {
            publish.topic = self.inbound.aliases.get(&alias).cloned().ok_or(
                ProtocolViolation::TopicAliasInvalid {
                    alias,
                    why: "it was never mapped on this connection",
                },
            )?;
        } else {
            self.inbound.aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    /// Acknowledges an inbound QoS 1/2 message.
    ///
    /// Acks go on the wire in the order the messages arrived [MQTT-4.6.0-2, MQTT-4.6.0-3]: an
    /// ack given early waits until the messages before it are acked too ([`Session::acks_waiting`]
    /// counts them). For QoS 2 the "PUBREC sent" marker is committed with the next [`Output`](super::Output),
    /// before PUBREC goes out and even while PUBREC waits its turn, so from then on a redelivery
    /// (after a crash, too) is answered, never delivered again.
    ///
    /// An ack for a message of an earlier connection (the connection dropped before the ack) is
    /// defined as follows. QoS 2: the marker is committed, so the server's redelivery is answered
    /// with PUBREC and never delivered again. QoS 1: nothing is sent; the server redelivers the
    /// message as a new one, which is delivered again (QoS 1 is at least once).
    pub fn ack(&mut self, tag: MessageTag) -> Result<(), AckError> {
        self.settle(tag, ReasonCode::Success)
    }

    /// Refuses an inbound QoS 1/2 message: its PUBACK or PUBREC carries `reason` (0x80 or
    /// above, one those packets may carry, such as 0x80 Unspecified error or 0x83
    /// Implementation specific error), in arrival order like any ack. The server does not
    /// send it again on this session: for QoS 2 no PUBREL follows [MQTT-4.3.3-4] and no marker
    /// is stored. A refusal given after the connection dropped sends nothing: the server
    /// redelivers the message, and it is delivered again.
    pub fn reject(&mut self, tag: MessageTag, reason: ReasonCode) -> Result<(), AckError> {
        if self.options.protocol == ProtocolVersion::V311 {
            return Err(AckError::RefusalNeedsV5);
        }
        if !reason.is_error()
            || !reason.is_valid_for(PacketType::PubAck)
            || !reason.is_valid_for(PacketType::PubRec)
        {
            return Err(AckError::NotARefusal(reason));
        }
        self.settle(tag, reason)
    }

    /// Acks a message whose copy was forwarded to another session, when the commit that
    /// queued the copy also stored this message's QoS 2 marker (`marker_stored`, under
    /// `packet_id`): the ack goes out in arrival order like any other, without storing the
    /// marker again. A message no longer awaited (the server lost the session meanwhile and
    /// its markers were dropped) has that marker removed again, so that it cannot swallow a
    /// later message under the same identifier.
    pub fn ack_forwarded(
        &mut self,
        tag: MessageTag,
        packet_id: u16,
        marker_stored: bool,
    ) -> Result<(), AckError> {
        let settled = self.settle_with(tag, ReasonCode::Success, !marker_stored);
        if settled.is_err() && marker_stored && !self.inbound.markers.contains(&packet_id) {
            self.out
                .pending
                .commit
                .push(StoreOp::RemoveInbound { packet_id });
        }
        settled
    }

    /// Acks (`Success`) or refuses (an error code) a message.
    fn settle(&mut self, tag: MessageTag, reason: ReasonCode) -> Result<(), AckError> {
        self.settle_with(tag, reason, true)
    }

    /// `settle`; `store_marker` false when the QoS 2 marker is durable already.
    fn settle_with(
        &mut self,
        tag: MessageTag,
        reason: ReasonCode,
        store_marker: bool,
    ) -> Result<(), AckError> {
        let accepted = !reason.is_error();
        let mark = |session: &mut Self, packet_id: u16| {
            if session.inbound.markers.insert(packet_id) && store_marker {
                session
                    .out
                    .pending
                    .commit
                    .push(StoreOp::PutInbound { packet_id });
            }
        };
        if let Some(entry) = self.inbound.stale.remove(&tag) {
            if accepted && entry.qos == QoS::ExactlyOnce {
                mark(self, entry.packet_id);
            }
            self.settle_key(tag, accepted);
            return Ok(());
        }
        let entry = self
            .inbound
            .acks
            .iter_mut()
            .find(|e| e.tag == tag && !e.acked)
            .ok_or(AckError::NotAwaiting(tag))?;
        entry.acked = true;
        entry.reason = reason;
        self.inbound.awaiting_application = self.inbound.awaiting_application.saturating_sub(1);
        let (qos, packet_id) = (entry.qos, entry.packet_id);
        self.settle_key(tag, accepted);
        for copy in self.seen_keys.take_copies(tag) {
            if let Some(entry) = self.inbound.acks.iter_mut().find(|e| e.tag == copy) {
                entry.reason = reason;
            }
        }
        // The ack is durable with the next commit, even while its PUBREC waits its turn: a
        // crash after this point never delivers the message again.
        if accepted && qos == QoS::ExactlyOnce {
            mark(self, packet_id);
        }
        while self.inbound.acks.front().is_some_and(|e| e.acked) {
            let Some(entry) = self.inbound.acks.pop_front() else {
                break;
            };
            self.inbound.in_use.remove(&entry.packet_id);
            let mut ack = PubAck::new(entry.packet_id);
            ack.reason_code = entry.reason;
            self.out.pending.send.push(match entry.qos {
                QoS::ExactlyOnce => Packet::PubRec(ack),
                _ => Packet::PubAck(ack),
            });
        }
        while !self.inbound.held.is_empty()
            && self.unacked_by_application() < self.receive_maximum()
        {
            if let Some(publish) = self.inbound.held.pop_front() {
                self.inbound.held_bytes =
                    self.inbound.held_bytes.saturating_sub(held_size(&publish));
                self.deliver(publish);
            }
        }
        Ok(())
    }

    /// Remembers the key of the message `tag` when it was accepted (committed before its
    /// PUBACK goes out), and stops holding it either way.
    fn settle_key(&mut self, tag: MessageTag, accepted: bool) {
        if let Some(limits) = self.options.deduplication {
            let now_ms = self.clock.now_ms;
            let commit = &mut self.out.pending.commit;
            self.seen_keys
                .settled(tag, accepted, now_ms, &limits, commit);
        }
    }

    /// Copies of keyed messages acknowledged without being handed over.
    pub fn duplicates_dropped(&self) -> u64 {
        self.seen_keys.dropped
    }

    /// Idempotency keys of handled messages the session keeps.
    pub fn seen_keys_kept(&self) -> usize {
        self.seen_keys.len()
    }

    /// Ends the ordering of this connection's acks: those not given yet wait in `stale` (see
    /// [`Session::ack`]); QoS 2 acks given but held back get their marker, so the server's
    /// redelivery is answered and not delivered again.
    pub(super) fn retire_acks(&mut self) {
        // Never delivered and never acknowledged: the server sends them again.
        self.inbound.held.clear();
        self.inbound.held_bytes = 0;
        self.inbound.in_use.clear();
        self.inbound.awaiting_application = 0;
        self.seen_keys.connection_ended();
        for entry in std::mem::take(&mut self.inbound.acks) {
            if !entry.acked {
                self.inbound.stale.insert(entry.tag, entry);
            } else if entry.qos == QoS::ExactlyOnce
                && !entry.reason.is_error()
                && self.inbound.markers.insert(entry.packet_id)
            {
                self.out.pending.commit.push(StoreOp::PutInbound {
                    packet_id: entry.packet_id,
                });
            }
        }
    }

    /// Whether the message `tag` still waits for the application's ack: unacked on this
    /// connection, or delivered at QoS 2 on an earlier one (the server's redelivery is bound
    /// to it and answered when it is acked). A QoS 1 message of an earlier connection does
    /// not: the server sends it again as a new message.
    pub fn awaits_application(&self, tag: MessageTag) -> bool {
        self.inbound.acks.iter().any(|e| e.tag == tag && !e.acked)
            || self
                .inbound
                .stale
                .get(&tag)
                .is_some_and(|e| e.qos == QoS::ExactlyOnce)
    }

    /// The application will never settle the message `tag` of an earlier connection (the
    /// server sends it again): forget it. A message of the current connection is kept: it
    /// stays unacknowledged.
    pub fn abandon(&mut self, tag: MessageTag) {
        if self.inbound.stale.remove(&tag).is_some() {
            self.seen_keys.forget(tag);
        }
    }

    /// Acks given but held back behind an older message not yet acked.
    pub fn acks_waiting(&self) -> usize {
        self.inbound.acks.iter().filter(|e| e.acked).count()
    }

    /// PUBREL for an inbound QoS 2 message: the marker's removal is committed before PUBCOMP
    /// goes out, so a crash in between cannot leave a marker that would swallow a new message
    /// reusing the identifier. An unknown identifier is answered with PUBCOMP 0x92.
    pub fn handle_pubrel(&mut self, rel: &PubAck) {
        let mut comp = PubAck::new(rel.packet_id);
        if self.inbound.markers.remove(&rel.packet_id) {
            self.out.pending.commit.push(StoreOp::RemoveInbound {
                packet_id: rel.packet_id,
            });
        } else {
            // 3.1.1 has no reason codes: a plain PUBCOMP ends the server's flow there.
            if self.options.protocol != ProtocolVersion::V311 {
                comp.reason_code = ReasonCode::PacketIdentifierNotFound;
            }
        }
        self.out.pending.send.push(Packet::PubComp(comp));
    }
}
