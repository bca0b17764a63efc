//! Outbound QoS 1/2 flows: accepting a publish, the durable queue, send quota, identifiers,
//! topic aliases, and the acknowledgements PUBACK, PUBREC and PUBCOMP.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::packet_id::PacketIds;
use super::{Event, Flow, PublishError, PublishId, PublishLimits, Session, Stage};
use crate::idempotency;
use crate::packet::{Codec, Packet, PubAck, Publish, QoS, ReasonCode};
use crate::store::{QueuedPublish, StoreOp};

/// The packet identifier a queued publish goes out under: fixed by its sequence number, so that
/// after a crash it goes out again under the one it may have had, and sending it stores nothing.
/// A sequence number reuses an identifier 65,535 numbers later, and only once the earlier flow
/// is over and its record's removal durable.
pub(super) fn packet_id_of(seq: u64) -> u16 {
    u16::try_from(seq % u64::from(u16::MAX)).map_or(1, |n| n + 1)
}

/// What the session sends: the flows in flight, their identifiers, and the deadlines of
/// queued messages.
#[derive(Debug)]
pub(super) struct OutboundState {
    /// Outbound flows by store sequence number: the order of retransmission.
    pub(super) flows: BTreeMap<u64, Flow>,
    /// The lowest sequence number that may hold a flow not yet sent on this connection;
    /// `None` when all went out. `drain` starts there instead of scanning every flow, which
    /// with many flows in flight and a small quota would cost a full scan per ack.
    pub(super) unsent_from: Option<u64>,
    /// Sequence number of each in-flight packet identifier.
    pub(super) by_packet_id: HashMap<u16, u64>,
    pub(super) ids: PacketIds,
    /// Queued messages with a Message Expiry Interval, by deadline, and each one's deadline.
    pub(super) expiries: BTreeSet<(u64, PublishId)>,
    pub(super) deadlines: HashMap<PublishId, u64>,
    /// Packet identifiers whose last flow ended, and the output that removes its record: not
    /// given to a queued message again before that output is durable, or a crash could leave
    /// two records with one identifier (an old PUBREL would release the new message).
    pub(super) cooling: HashMap<u16, u64>,
    pub(super) cooling_order: VecDeque<(u64, u16)>,
    /// Queued messages below this sequence number were stored before the session was resumed:
    /// they may have gone out before a crash, so they go out with DUP set [MQTT-3.3.1-1].
    pub(super) resumed_below: u64,
    /// How many more of the oldest QoS 1/2 messages stored before the resume may have gone
    /// out before it (the last connection's in-flight limit): those keep no deadline.
    pub(super) may_have_gone_out: u64,
}

impl OutboundState {
    /// Nothing in flight; the store's queue resumed below sequence number `resumed_below`.
    pub(super) fn new(resumed_below: u64) -> Self {
        Self {
            flows: BTreeMap::new(),
            unsent_from: Some(0),
            by_packet_id: HashMap::new(),
            ids: PacketIds::default(),
            expiries: BTreeSet::new(),
            deadlines: HashMap::new(),
            cooling: HashMap::new(),
            cooling_order: VecDeque::new(),
            resumed_below,
            may_have_gone_out: 0,
        }
    }

    /// Keeps the Message Expiry deadline `at` of queued message `id` read back from the
    /// store (call it for every record, in order), unless the message is one of the oldest
    /// QoS 1/2 ones stored before the resume: it may have gone out before the restart, and a
    /// PUBLISH sent once never expires [MQTT-4.3.3-7] (the server may hold it under its
    /// identifier). It is sent again with the interval it was stored with.
    pub(super) fn track_resumed_deadline(&mut self, id: PublishId, qos: QoS, at: Option<u64>) {
        if qos != QoS::AtMostOnce && id < self.resumed_below && self.may_have_gone_out > 0 {
            self.may_have_gone_out -= 1;
            return;
        }
        if let Some(at) = at {
            self.expiries.insert((at, id));
            self.deadlines.insert(id, at);
        }
    }

    /// Forgets the Message Expiry deadline of queued message `id`, if it had one.
    pub(super) fn forget_deadline(&mut self, id: PublishId) {
        if let Some(at) = self.deadlines.remove(&id) {
            self.expiries.remove(&(at, id));
        }
    }
}

impl PublishLimits {
    /// Refuses `publish` (whose packet is `packet_bytes` long) when it is beyond a limit.
    fn check(
        &self,
        publish: &crate::packet::Publish,
        packet_bytes: usize,
    ) -> Result<(), PublishError> {
        if publish.qos > self.maximum_qos {
            return Err(PublishError::QosNotSupported {
                requested: publish.qos,
                maximum: self.maximum_qos,
            });
        }
        if publish.retain && !self.retain_available {
            return Err(PublishError::RetainNotSupported);
        }
        let over = |what: &'static str, size: usize, limit: Option<usize>| match limit {
            Some(limit) if size > limit => Err(PublishError::OverLimit { what, size, limit }),
            _ => Ok(()),
        };
        over(
            "payload in bytes",
            publish.payload.len(),
            self.maximum_payload_bytes,
        )?;
        over("packet in bytes", packet_bytes, self.maximum_packet_bytes)?;
        over(
            "topic in bytes",
            publish.topic.len(),
            self.maximum_topic_bytes,
        )?;
        let levels = publish.topic.split('/').count();
        over("number of topic levels", levels, self.maximum_topic_levels)
    }
}

impl Session {
    /// Accepts a publish from the application and returns its delivery id.
    ///
    /// QoS 1/2: the publish is stored with the next [`Output`](super::Output); it is sent at once when a
    /// connection, a packet identifier and send quota are there, and otherwise waits in the
    /// durable queue, behind what waits already. QoS 0 is sent only on a connection (nothing is
    /// stored); without one it waits in the queue like the others.
    ///
    /// The packet identifier, DUP flag and Topic Alias are the session's to set: whatever the
    /// publish carries there is replaced. Subscription Identifiers are removed: the server puts
    /// them on the messages it sends, a client must not send them [MQTT-3.3.4-6], and a gateway
    /// that forwards a received message as it is would otherwise break that rule.
    ///
    /// With [`SessionOptions::publish_keys`](super::SessionOptions::publish_keys), a QoS 1
    /// publish gets its idempotency key here, before it is stored: the key it carries already
    /// (a received message forwarded keeps its key end to end), or a new one from this run and
    /// the sequence number it is stored under.
    pub fn publish(&mut self, mut publish: Publish) -> Result<PublishId, PublishError> {
        publish.dup = false;
        publish.packet_id = 0;
        // Aliases are connection state: the session keeps full topics and aliases on the wire.
        publish.properties.topic_alias = None;
        publish.properties.subscription_identifiers.clear();
        if publish.qos == QoS::AtLeastOnce
            && let Some(stamp) = self.options.publish_keys
        {
            let key = idempotency::take_key(&mut publish).unwrap_or_else(|| {
                // The number `next_seq` hands out below, once the checks pass.
                idempotency::key_for(self.client_id(), stamp.run, self.next_seq)
            });
            idempotency::stamp(&mut publish, key, stamp.carrier).ok_or(PublishError::KeyTooLong)?;
        }
        // The packet must be valid as it will be sent: check with a stand-in identifier.
        if publish.qos != QoS::AtMostOnce {
            publish.packet_id = 1;
        }
        let size = self.codec.encoded_publish_len(&publish)?;
        publish.packet_id = 0;
        self.options.publish_limits.check(&publish, size)?;
        if let Some(conn) = &self.connection {
            if publish.qos > conn.maximum_qos {
                return Err(PublishError::QosNotSupported {
                    requested: publish.qos,
                    maximum: conn.maximum_qos,
                });
            }
            if publish.retain && !conn.retain_available {
                return Err(PublishError::RetainNotSupported);
            }
        }
        let id = self.next_seq();
        if publish.qos == QoS::AtMostOnce
            && self.connection.is_some()
            && self.nothing_queued()
            && self.may_send_publish()
        {
            self.spend_allowance(size);
            let packet = self.with_alias(publish);
            self.out.pending.send.push(packet);
            return Ok(id);
        }
        // QoS 1/2 is stored as a queue record, and keeps it while in flight: its packet
        // identifier follows from its sequence number, so sending it stores nothing more.
        let qos = publish.qos;
        publish.qos = QoS::AtMostOnce;
        // As a v5 record (properties, no packet identifier): a few bytes more at 3.1.1.
        let packet = self.records.encode(&publish, size + 8);
        publish.qos = qos;
        let packet = packet?;
        let size = packet.len();
        // It waits: its Message Expiry Interval starts counting now.
        let expires_at_ms = publish
            .properties
            .message_expiry_interval
            .map(|secs| self.clock.now_ms.saturating_add(u64::from(secs) * 1000));
        let message = QueuedPublish {
            qos: publish.qos,
            packet,
            expires_at_ms,
            accepted_at_ms: Some(self.clock.now_ms),
        };
        let latest_value = self.is_latest_value_topic(&publish.topic);
        let topic = latest_value.then(|| publish.topic.clone());
        let class = if self.options.backlog.priorities.is_empty() {
            0
        } else {
            self.class_of(&publish.topic)
        };
        self.ensure_lane(class);
        let (generation, now_ms) = (self.out.generation, self.clock.now_ms);
        let resident = self.with_queue(class, |s| {
            let push = s.queue_push(id, message);
            s.out.pending.commit.push(push);
            s.queue.push(id, publish, size, generation, now_ms)
        });
        if resident == Some(true)
            && let Some(at) = expires_at_ms
        {
            self.outbound.expiries.insert((at, id));
            self.outbound.deadlines.insert(id, at);
        }
        if let Some(topic) = topic {
            self.keep_latest_value(id, &topic, size, class);
        }
        self.drain();
        Ok(id)
    }

    /// Sends what waits, oldest first, while the connection and its quota allow: first flows
    /// not yet sent on this connection (after a reconnect), then the queue.
    pub(super) fn drain(&mut self) {
        // SUBSCRIBE and UNSUBSCRIBE wait for identifiers only, never for send quota
        // [MQTT-3.3.4-8].
        while !self.requests.waiting.is_empty() && self.connection.is_some() {
            let Some(packet_id) = self.allocate_request_id() else {
                break;
            };
            if let Some((id, packet)) = self.requests.waiting.pop_front() {
                self.send_request(id, packet_id, packet);
            }
        }
        if self.connection.is_none() {
            return;
        }
        self.resend_flows();
        if self.outbound.unsent_from.is_some() {
            // Older flows wait for quota: the queue comes after them.
            return;
        }
        if self.lanes.is_empty() {
            self.drain_queue();
            return;
        }
        // Higher classes first; a class with messages it cannot send yet holds the lower
        // ones back.
        for class in self.classes_by_rank() {
            if self.with_queue(class, Self::drain_queue) == Some(false) {
                return;
            }
        }
    }

    /// Sends from the queue in `self.queue`, oldest first, while the connection, its quota
    /// and the allowance let it. Whether the queue is empty now (lower classes may go).
    fn drain_queue(&mut self) -> bool {
        while let Some((id, front, stored_by)) = self.queue.front() {
            if !self.may_send_publish() {
                return false;
            }
            if front.qos == QoS::AtMostOnce {
                if let Some((id, mut publish)) = self.queue.pop_front() {
                    // Sent after this output's commit, which removes its records.
                    self.release_latest_value(id, &publish.topic);
                    if !self.take_remaining_expiry(id, &mut publish) {
                        continue;
                    }
                    let removal = self.queue_removal(id);
                    self.out.pending.commit.push(removal);
                    if let Ok(len) = self.codec.encoded_publish_len(&publish) {
                        self.spend_allowance(len);
                        let packet = self.with_alias(publish);
                        self.out.pending.send.push(packet);
                    }
                }
                continue;
            }
            if !self.can_start_flow(id) {
                return false;
            }
            let Some((id, mut publish)) = self.queue.pop_front() else {
                return false;
            };
            // A latest-value record goes before the value is sent: the send waits for this
            // output's commit.
            let stored_by = if self.release_latest_value(id, &publish.topic) {
                self.out.generation
            } else {
                stored_by
            };
            if self.take_remaining_expiry(id, &mut publish) {
                self.start_flow(id, publish, stored_by);
            }
        }
        // Empty, or waiting for messages read back from the store.
        self.queue.is_empty()
    }

    /// The flows not yet sent on this connection (after a reconnect), in order: on the first
    /// pass every PUBREL, which needs no send quota [MQTT-3.3.4-8], then the PUBLISHes (DUP set)
    /// as quota allows; later passes resume at the first PUBLISH that had none. PUBRELs go
    /// first because a server counts a QoS 2 message against its Receive Maximum until PUBREL
    /// (mosquitto does): a PUBLISH ahead of them could find no room and be refused with 0x97.
    fn resend_flows(&mut self) {
        let placing = self.placing();
        let Some(conn) = self.connection.as_mut() else {
            return;
        };
        let Some(from) = self.outbound.unsent_from else {
            return;
        };
        let pending = &mut self.out.pending;
        let mut emit = |packet: Packet, record_generation: u64| {
            placing.place(pending, packet, record_generation);
        };
        if std::mem::replace(&mut conn.first_pass, false) {
            for flow in self.outbound.flows.values_mut() {
                if !flow.sent && flow.stage.is_released() {
                    flow.sent = true;
                    emit(
                        Packet::PubRel(PubAck::new(flow.packet_id)),
                        flow.record_generation,
                    );
                }
            }
        }
        let mut blocked = None;
        let mut too_large = Vec::new();
        for (seq, flow) in self.outbound.flows.range_mut(from..) {
            let Stage::Published(publish) = &flow.stage else {
                continue;
            };
            if flow.sent {
                continue;
            }
            if conn.send_quota == 0 {
                blocked = Some(*seq);
                break;
            }
            let mut again = Publish::clone(publish);
            again.dup = flow.retransmit;
            let packet = Packet::Publish(again);
            if self.codec.encoded_len(&packet).is_err() {
                // The server's Maximum Packet Size shrank since the flow began.
                too_large.push(*seq);
                continue;
            }
            conn.send_quota -= 1;
            flow.holds_quota = true;
            flow.sent = true;
            flow.retransmit = true;
            emit(packet, flow.record_generation);
        }
        for seq in too_large {
            // Over the server's new Maximum Packet Size; it took no quota on this pass.
            self.too_large_to_resend(seq);
        }
        // Resume there when quota comes back: no scan of what went out already. New flows
        // are sent as they are made; only a new connection unsends them.
        self.outbound.unsent_from = blocked;
    }

    /// A flow whose PUBLISH no longer fits the server's Maximum Packet Size fails (0x95).
    /// At QoS 2, once its PUBLISH went out, the server may hold its identifier until a
    /// PUBREL, and would take a new message under it for that one: the flow is released with
    /// PUBREL (stored first, like any), and its identifier comes back with the PUBCOMP.
    fn too_large_to_resend(&mut self, seq: u64) {
        let resent_qos2 = self.outbound.flows.get(&seq).is_some_and(|flow| {
            flow.retransmit
                && matches!(&flow.stage, Stage::Published(p) if p.qos == QoS::ExactlyOnce)
        });
        let failed = |id| Event::Failed {
            id,
            reason: ReasonCode::PacketTooLarge,
        };
        if !resent_qos2 {
            self.end_flow(seq, |id| Some(failed(id)));
            return;
        }
        if let Some(flow) = self.outbound.flows.get_mut(&seq) {
            flow.reported = true;
            let id = flow.id;
            self.events.push_back(failed(id));
        }
        self.release(seq);
    }

    /// A queued message leaves the queue: with a Message Expiry Interval, it goes out with
    /// what remains of it (rounded up, at least a second); `false` when nothing remains, and
    /// then it is dropped from the store and reported ([`Event::Expired`]), never sent.
    fn take_remaining_expiry(&mut self, id: PublishId, publish: &mut Publish) -> bool {
        let Some(at) = self.outbound.deadlines.remove(&id) else {
            return true;
        };
        self.outbound.expiries.remove(&(at, id));
        if at <= self.clock.now_ms {
            self.out
                .pending
                .commit
                .push(StoreOp::RemoveQueue { seq: id });
            self.events.push_back(Event::Expired {
                id,
                topic: std::mem::take(&mut publish.topic),
            });
            return false;
        }
        let remaining_secs = (at - self.clock.now_ms).div_ceil(1000);
        publish.properties.message_expiry_interval =
            Some(u32::try_from(remaining_secs).unwrap_or(u32::MAX));
        true
    }

    /// Drops every queued message whose Message Expiry Interval ran out by the session's
    /// clock, without waiting for a connection to try to send it.
    pub(super) fn drop_expired(&mut self) {
        while let Some(&(at, id)) = self.outbound.expiries.first() {
            if at > self.clock.now_ms {
                return;
            }
            self.outbound.expiries.remove(&(at, id));
            self.outbound.deadlines.remove(&id);
            if let Some((class, publish)) = self.remove_queued(id) {
                self.release_latest_value(id, &publish.topic);
                self.out
                    .pending
                    .commit
                    .push(super::classes::class_removal(class, id));
                self.events.push_back(Event::Expired {
                    id,
                    topic: publish.topic,
                });
            }
        }
    }

    /// Tells the session the wall-clock time (milliseconds since the UNIX epoch): queued
    /// messages whose Message Expiry Interval ran out are dropped ([`Event::Expired`]), and a
    /// connected session records that it is alive ([`Session::note_alive`]). Call it often
    /// (the client does on every turn of its loop); [`Session::next_tick_ms`] says when it is
    /// next needed.
    pub fn tick(&mut self, now_ms: u64) {
        self.clock.now_ms = self.clock.now_ms.max(now_ms);
        self.drop_expired();
        self.note_alive(now_ms);
        self.stamp_clock(self.clock.now_ms);
    }

    /// When [`Session::tick`] must next be called, at the latest.
    pub fn next_tick_ms(&self) -> Option<u64> {
        let expiry = self.outbound.expiries.first().map(|(at, _)| *at);
        [
            expiry,
            self.next_alive_ms(),
            Some(self.next_clock_stamp_ms()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the queued QoS 1/2 publish `id` could be sent now: a connection, send quota, and
    /// its packet identifier free, with the removal of its previous flow's record durable
    /// (when only that is missing, the next output asks for a commit at once).
    fn can_start_flow(&mut self, id: PublishId) -> bool {
        if self.connection.as_ref().is_none_or(|c| c.send_quota == 0) {
            return false;
        }
        let packet_id = packet_id_of(id);
        if self.outbound.ids.contains(packet_id) {
            return false;
        }
        if self.outbound.cooling.contains_key(&packet_id) {
            self.out.force_commit = true;
            return false;
        }
        true
    }

    /// Sends a queued QoS 1/2 publish as a new flow under the identifier its sequence number
    /// gives; its queue record, stored by output `stored_by`, stays its record. Call only when
    /// [`Session::can_start_flow`].
    fn start_flow(&mut self, id: PublishId, mut publish: Publish, stored_by: u64) {
        let packet_id = packet_id_of(id);
        publish.packet_id = packet_id;
        // Checked against the server's limits as they are now.
        let len = self.codec.encoded_publish_len(&publish).ok();
        if len.is_none() || !self.outbound.ids.insert(packet_id) {
            // Accepted when queued; it can only fail now against limits that changed.
            let removal = self.queue_removal(id);
            self.out.pending.commit.push(removal);
            self.events.push_back(Event::Failed {
                id,
                reason: ReasonCode::PacketTooLarge,
            });
            return;
        }
        if let Some(conn) = self.connection.as_mut() {
            conn.send_quota = conn.send_quota.saturating_sub(1);
        }
        self.spend_allowance(len.unwrap_or_default());
        let mut first = publish.clone();
        // Stored before this session was resumed: it may have gone out before a crash, so it
        // goes as a retransmission does, DUP set and with its topic.
        first.dup = id < self.outbound.resumed_below;
        let packet = if first.dup {
            Packet::Publish(first)
        } else {
            self.with_alias(first)
        };
        self.emit_flow_packet(packet, stored_by);
        self.outbound.by_packet_id.insert(packet_id, id);
        self.outbound.flows.insert(
            id,
            Flow {
                id,
                packet_id,
                stage: Stage::Published(Box::new(publish)),
                sent: true,
                retransmit: true,
                holds_quota: true,
                queued: true,
                class: self.queue_class,
                record_generation: stored_by,
                first_sent_in: self.out.generation,
                reported: false,
            },
        );
    }

    /// A publish as it goes on the wire, with a Topic Alias when one helps.
    fn with_alias(&mut self, mut publish: Publish) -> Packet {
        // An alias adds a property: used only where the packet still fits the server's
        // Maximum Packet Size with it (the fuzzer found one 3 bytes over). A new mapping, topic
        // and alias both, is the largest form.
        let topic_alias = publish.properties.topic_alias.replace(1);
        let fits = self.codec.encoded_publish_len(&publish).is_ok();
        publish.properties.topic_alias = topic_alias;
        if let Some(conn) = self.connection.as_mut().filter(|_| fits) {
            conn.aliases.apply(&mut publish);
        }
        Packet::Publish(publish)
    }

    /// QoS 1/2 publishes in flight (PUBLISH or PUBREL awaiting its answer).
    pub fn in_flight(&self) -> usize {
        self.outbound.flows.len()
    }

    /// Publishes accepted and waiting for an identifier, a connection or send quota: those in
    /// memory and those the store holds beyond the window.
    pub fn queued(&self) -> u64 {
        self.queues().map(super::queue::Queue::len).sum()
    }

    /// When the oldest publish still waiting to be sent was accepted (milliseconds since the
    /// UNIX epoch, by the session's clock); `None` with nothing waiting, or for a record
    /// written before acceptance times were kept.
    pub fn oldest_queued_at_ms(&self) -> Option<u64> {
        self.queues()
            .filter_map(super::queue::Queue::oldest_accepted_at_ms)
            .min()
    }

    /// The stored size of the queued publishes, in bytes (their records' packets).
    pub fn queued_bytes(&self) -> u64 {
        self.queues().map(super::queue::Queue::bytes).sum()
    }

    /// The stored size a publish would take in the queue (its packet at QoS 0, without an
    /// identifier); `None` for a publish the codec refuses.
    pub fn queued_size_of(publish: &Publish) -> Option<usize> {
        let mut probe = publish.clone();
        probe.qos = QoS::AtMostOnce;
        probe.packet_id = 0;
        probe.dup = false;
        Codec::default().encoded_publish_len(&probe).ok()
    }
}
