//! Unit tests of the engine, one per rule, named after it.

use std::time::{Duration, Instant};

use crate::packet::{SubscribeProperties, Subscription, UnsubscribeProperties};

use super::*;
use crate::packet::*;
use crate::packet::{ConnAckProperties, PacketType, Publish};
use crate::store::StoreOp;
use crate::store::{QueuedPublish, StoredSubscription};

/// Wall-clock milliseconds used as "now" by the tests.
const NOW_MS: u64 = 1_764_000_000_000;

/// Options of a session that outlives its connections by an hour.
fn options() -> SessionOptions {
    let mut options = SessionOptions::new("c");
    options.properties.session_expiry_interval = Some(3600);
    options
}

/// What a store holds after committing the batches: the test's stand-in for a real store.
#[derive(Default)]
pub(super) struct Committed {
    meta: Option<SessionMeta>,
    outbound: BTreeMap<u64, OutboundRecord>,
    inbound: BTreeSet<u16>,
    queue: BTreeMap<u64, QueuedPublish>,
    subscriptions: BTreeMap<String, StoredSubscription>,
}

impl Committed {
    pub(super) fn apply(&mut self, batch: &Batch) {
        for op in batch.ops() {
            match op.clone() {
                StoreOp::SetMeta(meta) => self.meta = Some(meta),
                StoreOp::PutOutbound { seq, record } => {
                    self.outbound.insert(seq, record);
                }
                StoreOp::RemoveOutbound { seq } => {
                    self.outbound.remove(&seq);
                }
                StoreOp::PutInbound { packet_id } => {
                    self.inbound.insert(packet_id);
                }
                StoreOp::RemoveInbound { packet_id } => {
                    self.inbound.remove(&packet_id);
                }
                StoreOp::PushQueue { seq, message } => {
                    self.queue.insert(seq, message);
                }
                StoreOp::RemoveQueue { seq } => {
                    self.queue.remove(&seq);
                }
                StoreOp::PutSubscription(subscription) => {
                    self.subscriptions
                        .insert(subscription.filter.clone(), subscription);
                }
                StoreOp::RemoveSubscription { filter } => {
                    self.subscriptions.remove(&filter);
                }
            }
        }
    }

    pub(super) fn stored(&self) -> StoredSession {
        let queue: Vec<(u64, QueuedPublish)> = self.queue.clone().into_iter().collect();
        StoredSession {
            meta: self.meta.clone(),
            outbound: self.outbound.clone().into_iter().collect(),
            inbound: self.inbound.iter().copied().collect(),
            queue_summary: crate::store::QueueSummary::of(&queue),
            queue,
            subscriptions: self.subscriptions.values().cloned().collect(),
        }
    }

    /// What a store's `resume` returns: the queue's head that `head` admits.
    pub(super) fn resumed(&self, head: crate::store::QueueWindow) -> StoredSession {
        StoredSession {
            queue: self.read_queue(0, head),
            ..self.stored()
        }
    }

    /// What a store's `read_queue` returns.
    pub(super) fn read_queue(
        &self,
        from: u64,
        window: crate::store::QueueWindow,
    ) -> Vec<(u64, QueuedPublish)> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for (seq, message) in self.queue.range(from..) {
            if !window.admits(out.len(), bytes, message.packet.len()) {
                break;
            }
            bytes += message.packet.len();
            out.push((*seq, message.clone()));
        }
        out
    }
}

/// A session and the store it commits to, driven as a driver would.
struct Harness {
    session: Session,
    store: Committed,
}

impl Harness {
    fn new() -> Self {
        Self {
            session: Session::new(options(), StoredSession::default(), NOW_MS).unwrap(),
            store: Committed::default(),
        }
    }

    /// Commits what the session asks and returns the packets it then sends.
    fn flush(&mut self) -> Vec<Packet> {
        let mut sent = Vec::new();
        while let Some(output) = self.session.poll_output(Instant::now()) {
            sent.extend(output.early);
            self.store.apply(&output.commit);
            sent.extend(output.send);
            self.session.durable(output.generation);
        }
        sent
    }

    fn connack(&mut self, session_present: bool, receive_maximum: Option<u16>) -> Vec<Packet> {
        let mut connack = ConnAck::new(session_present);
        connack.properties = ConnAckProperties {
            receive_maximum,
            ..ConnAckProperties::default()
        };
        self.session
            .handle_connack(&connack, Instant::now())
            .unwrap();
        self.flush()
    }

    fn publish(&mut self, qos: QoS, payload: &'static str) -> PublishId {
        let mut p = Publish::new("t/1", payload);
        p.qos = qos;
        self.session.publish(p).unwrap()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    /// Rebuilds the session from what was committed, as after a crash.
    fn crash(&mut self) {
        self.session = Session::new(options(), self.store.stored(), NOW_MS).unwrap();
    }
}

fn publishes(sent: &[Packet]) -> Vec<(u16, bool, Bytes)> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.packet_id, p.dup, p.payload.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_qos1_publish_is_committed_before_it_is_sent() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::AtLeastOnce, "a");
    let output = h.session.poll_output(Instant::now()).unwrap();
    // The record and the packet come in one Output: the queue record (which it keeps while in
    // flight) to commit, then the packet; nothing goes early before its record is written.
    assert!(
        output
            .commit
            .ops()
            .iter()
            .any(|op| matches!(op, StoreOp::PushQueue { .. }))
    );
    assert!(output.early.is_empty());
    assert!(!output.deferrable);
    assert_eq!(publishes(&output.send), vec![(1, false, Bytes::from("a"))]);
}

/// An output given back lends the next ones its lists' memory, never its packets or
/// operations: what it still held is neither sent nor committed again.
#[test]
fn a_recycled_output_lends_its_memory_and_nothing_it_held() {
    let mut h = Harness::new();
    h.connack(false, None);
    let mut outputs = Vec::new();
    for payload in ["a", "b", "c"] {
        h.publish(QoS::AtLeastOnce, payload);
        let output = h.session.poll_output(Instant::now()).unwrap();
        h.store.apply(&output.commit);
        h.session.durable(output.generation);
        outputs.push((
            publishes(&output.send),
            output.commit.len(),
            output.send.as_ptr(),
        ));
        // Given back full: its packets and operations must not come out again.
        h.session.recycle(output);
    }
    let payloads: Vec<Vec<Bytes>> = outputs
        .iter()
        .map(|(sent, _, _)| sent.iter().map(|(_, _, p)| p.clone()).collect())
        .collect();
    assert_eq!(
        payloads,
        vec![
            vec![Bytes::from("a")],
            vec![Bytes::from("b")],
            vec![Bytes::from("c")]
        ]
    );
    assert!(outputs.iter().all(|(_, ops, _)| *ops == 1));
    // The first output's list took the third output's packet (the second was already
    // pending when the first came back).
    assert_eq!(outputs[2].2, outputs[0].2);
}

/// The refill that makes durable QoS 1 fast at a small broker window: a queued message whose
/// record is already durable goes out at once when a PUBACK frees quota, ahead of the commit
/// that removes the acknowledged one (which may wait: it protects nothing sent).
#[test]
fn a_queued_message_whose_record_is_durable_goes_out_early_when_quota_frees() {
    let mut h = Harness::new();
    h.connack(false, Some(1));
    h.publish(QoS::AtLeastOnce, "a");
    h.publish(QoS::AtLeastOnce, "b");
    assert_eq!(publishes(&h.flush()), vec![(1, false, Bytes::from("a"))]);
    assert_eq!(
        h.store.queue.len(),
        2,
        "both records durable, b waits for quota"
    );
    h.session.handle_puback(&PubAck::new(1));
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert_eq!(publishes(&output.early), vec![(2, false, Bytes::from("b"))]);
    assert!(output.send.is_empty());
    assert!(
        matches!(output.commit.ops(), [StoreOp::RemoveQueue { seq: 0 }]),
        "{:?}",
        output.commit
    );
    assert!(output.deferrable, "the removal may join a later commit");
}

/// A packet identifier is fixed by the sequence number (`seq % 65535 + 1`): a new message whose
/// identifier is that of a flow just ended waits until that flow's removal is durable, or a
/// crash could leave two records under one identifier. The output asks for the commit at once.
#[test]
fn a_packet_identifier_is_reused_only_once_the_removal_of_its_last_flow_is_durable() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.session.connection_lost(NOW_MS);
    h.publish(QoS::AtLeastOnce, "a"); // seq 0: identifier 1
    h.flush();
    // A PUBREL record at seq 65534 puts the next sequence number at 65535: identifier 1 again.
    h.store
        .outbound
        .insert(65_534, OutboundRecord::PubRel { packet_id: 999 });
    h.crash();
    let sent = h.connack(true, None);
    assert_eq!(publishes(&sent), vec![(1, true, Bytes::from("a"))]);
    h.session.handle_puback(&PubAck::new(1));
    h.publish(QoS::AtLeastOnce, "b"); // seq 65535: identifier 1
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(publishes(&[output.early.clone(), output.send.clone()].concat()).is_empty());
    assert!(!output.deferrable);
    h.store.apply(&output.commit);
    // Written is not enough: the removal must be durable.
    h.session.written(output.generation);
    assert!(
        publishes(
            &h.session
                .poll_output(Instant::now())
                .map(|o| [o.early, o.send].concat())
                .unwrap_or_default()
        )
        .is_empty()
    );
    h.session.durable(output.generation);
    assert_eq!(publishes(&h.flush()), vec![(1, false, Bytes::from("b"))]);
}

#[test]
fn publishing_offline_queues_durably_and_sends_on_connect() {
    let mut h = Harness::new();
    h.publish(QoS::ExactlyOnce, "a");
    h.publish(QoS::AtMostOnce, "b");
    assert!(h.flush().is_empty());
    assert_eq!(h.store.queue.len(), 2);
    let sent = h.connack(false, None);
    assert_eq!(
        publishes(&sent),
        vec![(1, false, Bytes::from("a")), (0, false, Bytes::from("b"))]
    );
    assert_eq!(
        h.store.queue.len(),
        1,
        "the QoS 2 message keeps its queue record while in flight; the QoS 0 one is gone"
    );
    assert!(h.store.outbound.is_empty());
    h.session
        .handle_incoming(Packet::PubRec(PubAck::new(1)), Instant::now())
        .unwrap();
    let sent = h.flush();
    assert!(matches!(sent.as_slice(), [Packet::PubRel(_)]));
    assert!(h.store.queue.is_empty());
    assert_eq!(h.store.outbound.len(), 1, "the PUBREL flow is stored");
}

#[test]
fn puback_ends_the_flow_and_its_record() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::AtLeastOnce, "a");
    h.flush();
    h.session.handle_puback(&PubAck::new(1));
    h.flush();
    assert!(h.store.outbound.is_empty());
    assert!(h.events().contains(&Event::Delivered {
        id,
        reason: ReasonCode::Success
    }));
}

#[test]
fn qos2_pubrec_stores_pubrel_before_sending_it_and_pubcomp_ends_it() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(output.commit.ops().iter().any(|op| matches!(
        op,
        StoreOp::PutOutbound {
            record: OutboundRecord::PubRel { packet_id: 1 },
            ..
        }
    )));
    assert_eq!(output.send, vec![Packet::PubRel(PubAck::new(1))]);
    h.store.apply(&output.commit);
    h.session.handle_pubcomp(&PubAck::new(1));
    h.flush();
    assert!(h.store.outbound.is_empty());
    assert!(h.events().contains(&Event::Delivered {
        id,
        reason: ReasonCode::Success
    }));
}

#[test]
fn pubrec_with_an_error_ends_the_flow_without_pubrel() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    let mut rec = PubAck::new(1);
    rec.reason_code = ReasonCode::QuotaExceeded;
    h.session.handle_pubrec(&rec);
    let sent = h.flush();
    assert!(sent.is_empty(), "no PUBREL after a failed PUBREC: {sent:?}");
    assert!(h.store.outbound.is_empty());
    assert!(h.events().contains(&Event::Failed {
        id,
        reason: ReasonCode::QuotaExceeded
    }));
}

#[test]
fn puback_with_an_error_reports_the_reason() {
    let mut h = Harness::new();
    h.connack(false, None);
    let id = h.publish(QoS::AtLeastOnce, "a");
    h.flush();
    let mut ack = PubAck::new(1);
    ack.reason_code = ReasonCode::NotAuthorized;
    h.session.handle_puback(&ack);
    h.flush();
    assert!(h.events().contains(&Event::Failed {
        id,
        reason: ReasonCode::NotAuthorized
    }));
}

#[test]
fn mqtt_3_3_4_7_no_more_than_receive_maximum_in_flight() {
    let mut h = Harness::new();
    h.connack(false, Some(2));
    for payload in ["a", "b", "c", "d", "e"] {
        h.publish(QoS::AtLeastOnce, payload);
    }
    let sent = h.flush();
    assert_eq!(publishes(&sent).len(), 2);
    assert_eq!(h.session.in_flight(), 2);
    assert_eq!(h.session.queued(), 3);
    h.session.handle_puback(&PubAck::new(1));
    let sent = h.flush();
    assert_eq!(publishes(&sent), vec![(3, false, Bytes::from("c"))]);
}

#[test]
fn unknown_identifiers_in_acks() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.session.handle_puback(&PubAck::new(9));
    h.session.handle_pubcomp(&PubAck::new(9));
    assert!(
        h.flush().is_empty(),
        "unknown PUBACK and PUBCOMP are ignored"
    );
    h.session.handle_pubrec(&PubAck::new(9));
    let mut rel = PubAck::new(9);
    rel.reason_code = ReasonCode::PacketIdentifierNotFound;
    assert_eq!(h.flush(), vec![Packet::PubRel(rel)]);
}

#[test]
fn a_repeated_pubrec_gets_pubrel_again() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    assert_eq!(h.flush(), vec![Packet::PubRel(PubAck::new(1))]);
}

#[test]
fn mqtt_4_4_0_1_reconnect_resends_in_order_with_dup_within_the_new_receive_maximum() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "a"); // id 1: will reach PUBREL
    h.publish(QoS::AtLeastOnce, "b"); // id 2
    h.publish(QoS::AtLeastOnce, "c"); // id 3
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.connection_lost(NOW_MS);
    // Order: PUBREL 1 first (it needs no send quota [MQTT-3.3.4-8], and the server still
    // counts its message against its Receive Maximum), then PUBLISH b and c in their order.
    let sent = h.connack(true, Some(2));
    assert_eq!(
        sent,
        vec![
            Packet::PubRel(PubAck::new(1)),
            Packet::Publish({
                let mut p = Publish::new("t/1", "b");
                p.qos = QoS::AtLeastOnce;
                p.packet_id = 2;
                p.dup = true;
                p
            }),
            Packet::Publish({
                let mut p = Publish::new("t/1", "c");
                p.qos = QoS::AtLeastOnce;
                p.packet_id = 3;
                p.dup = true;
                p
            }),
        ]
    );
}

#[test]
fn mqtt_3_3_4_8_a_pubrel_never_waits_for_send_quota_and_quota_never_exceeds_the_maximum() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::AtLeastOnce, "first"); // id 1
    h.publish(QoS::ExactlyOnce, "second"); // id 2: will reach PUBREL
    h.publish(QoS::AtLeastOnce, "third"); // id 3
    h.flush();
    h.session.handle_pubrec(&PubAck::new(2));
    h.flush();
    h.session.connection_lost(NOW_MS);
    // Quota 1: PUBREL 2 goes first and takes none; PUBLISH 1 takes it; PUBLISH 3 waits.
    let sent = h.connack(true, Some(1));
    let kinds: Vec<(PacketType, u16)> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((PacketType::Publish, p.packet_id)),
            Packet::PubRel(r) => Some((PacketType::PubRel, r.packet_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![(PacketType::PubRel, 2), (PacketType::Publish, 1)]
    );
    // PUBCOMP for the PUBREL gives back nothing it did not take: PUBLISH 3 still waits.
    h.session.handle_pubcomp(&PubAck::new(2));
    assert!(
        publishes(&h.flush()).is_empty(),
        "the quota stays at its maximum of 1"
    );
    h.session.handle_puback(&PubAck::new(1));
    assert_eq!(
        publishes(&h.flush()).len(),
        1,
        "PUBLISH 3 goes once PUBACK 1 frees quota"
    );
}

#[test]
fn a_retransmission_over_the_servers_new_maximum_packet_size_fails_its_flow_cleanly() {
    let mut h = Harness::new();
    h.connack(false, Some(10));
    let big = h.publish(QoS::ExactlyOnce, "x".repeat(1000).leak());
    let small = h.publish(QoS::AtLeastOnce, "b");
    h.flush();
    h.session.connection_lost(NOW_MS);
    h.events();
    let mut connack = ConnAck::new(true);
    connack.properties.maximum_packet_size = Some(500);
    connack.properties.receive_maximum = Some(1);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    h.store.apply(&output.commit);
    let sent = [output.early, output.send].concat();
    assert_eq!(publishes(&sent), vec![(2, true, Bytes::from("b"))]);
    assert!(h.events().contains(&Event::Failed {
        id: big,
        reason: ReasonCode::PacketTooLarge
    }));
    assert_eq!(h.session.in_flight(), 1);
    assert_eq!(h.store.stored().queue.len(), 1, "its record is gone");
    assert!(h.store.stored().outbound.is_empty());
    // It held no quota: the one there is went to the small one, and comes back with its
    // PUBACK for a new publish.
    h.session.handle_puback(&PubAck::new(2));
    assert!(h.events().contains(&Event::Delivered {
        id: small,
        reason: ReasonCode::Success
    }));
    h.publish(QoS::AtLeastOnce, "c");
    assert_eq!(publishes(&h.flush()), vec![(3, false, Bytes::from("c"))]);
}

/// Found by the session fuzzer: a PUBREC for a QoS 1 flow turned it into a PUBREL, and the
/// PUBCOMP that followed reported the message delivered without its PUBACK.
#[test]
fn a_pubrec_for_a_qos1_flow_never_releases_it() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.events();
    let id = h.publish(QoS::AtLeastOnce, "a");
    let sent = h.flush();
    assert_eq!(publishes(&sent).len(), 1);
    h.session.handle_pubrec(&PubAck::new(1));
    assert!(h.flush().is_empty(), "no PUBREL for a QoS 1 message");
    h.session.handle_pubcomp(&PubAck::new(1));
    assert_eq!(h.events(), vec![], "not reported delivered");
    assert_eq!(h.session.in_flight(), 1);
    h.session.handle_puback(&PubAck::new(1));
    assert_eq!(
        h.events(),
        vec![Event::Delivered {
            id,
            reason: ReasonCode::Success
        }]
    );
}

/// Found by the session fuzzer: a publish that fits the server's Maximum Packet Size without a
/// Topic Alias, and not with one, went out with the alias and could not be written.
#[test]
fn a_topic_alias_is_used_only_where_the_packet_still_fits() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.topic_alias_maximum = Some(2);
    connack.properties.maximum_packet_size = Some(30);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    h.flush();
    // 2 + 2 + 3 ("t/1") + 2 (identifier) + 1 (no properties) + 20 = 30: exactly the limit.
    let mut p = Publish::new("t/1", "x".repeat(20));
    p.qos = QoS::AtLeastOnce;
    h.session.publish(p).unwrap();
    let sent = h.flush();
    let codec = h.session.codec();
    for packet in &sent {
        codec.encode(packet, &mut BytesMut::new()).unwrap();
    }
    assert!(
        matches!(&sent[..], [Packet::Publish(p)] if p.properties.topic_alias.is_none()),
        "{sent:?}"
    );
}

#[test]
fn a_crash_resumes_from_the_committed_records_alone() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "a");
    h.publish(QoS::AtLeastOnce, "b");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.publish(QoS::AtLeastOnce, "c");
    // Accepted, not yet committed: lost in the crash, never acknowledged to the caller.
    h.crash();
    // The PUBREL flow is in flight; b is queued again under its queue record, and goes out
    // under the same identifier with DUP set (it may have gone out before the crash).
    assert_eq!(h.session.in_flight(), 1);
    assert_eq!(h.session.queued(), 1);
    let sent = h.connack(true, None);
    assert_eq!(
        sent.iter().map(|p| p.packet_type()).collect::<Vec<_>>(),
        vec![PacketType::PubRel, PacketType::Publish]
    );
    assert_eq!(publishes(&sent), vec![(2, true, Bytes::from("b"))]);
}

#[test]
fn session_present_0_resends_publishes_as_new_and_drops_pubrel() {
    let mut h = Harness::new();
    h.connack(false, None);
    let a = h.publish(QoS::ExactlyOnce, "a");
    h.publish(QoS::AtLeastOnce, "b");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.connection_lost(NOW_MS);
    h.events();
    let sent = h.connack(false, None);
    assert_eq!(publishes(&sent), vec![(2, false, Bytes::from("b"))]);
    assert!(!sent.iter().any(|p| matches!(p, Packet::PubRel(_))));
    let events = h.events();
    assert!(events.contains(&Event::SessionLost {
        resent: 1,
        dropped_pubrel: 1,
        dropped_inbound: 0
    }));
    assert!(events.contains(&Event::Delivered {
        id: a,
        reason: ReasonCode::Success
    }));
    assert!(h.store.outbound.is_empty(), "the PUBREL record is gone");
    assert_eq!(h.store.queue.len(), 1, "b keeps its queue record in flight");
}

#[test]
fn mqtt_3_2_2_4_session_present_after_clean_start_is_a_protocol_error() {
    let mut options = options();
    options.clean_start = true;
    let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
    assert!(session.connect_packet().unwrap().clean_start);
    assert_eq!(
        session.handle_connack(&ConnAck::new(true), Instant::now()),
        Err(ProtocolViolation::UnexpectedSession)
    );
    assert!(
        session
            .handle_connack(&ConnAck::new(false), Instant::now())
            .is_ok()
    );
    assert!(
        !session.connect_packet().unwrap().clean_start,
        "reconnects resume the session"
    );
}

#[test]
fn mqtt_3_2_2_4_session_present_without_local_state_is_refused_and_the_next_attempt_starts_clean() {
    // A new store and Clean Start 0: the server's old session may hold packet identifiers
    // this client would reuse for new messages.
    let mut session = Session::new(options(), StoredSession::default(), NOW_MS).unwrap();
    assert!(!session.connect_packet().unwrap().clean_start);
    assert_eq!(
        session.handle_connack(&ConnAck::new(true), Instant::now()),
        Err(ProtocolViolation::SessionWithoutState)
    );
    assert!(
        session.connect_packet().unwrap().clean_start,
        "the next attempt starts the session anew"
    );
    assert_eq!(
        session.handle_connack(&ConnAck::new(true), Instant::now()),
        Err(ProtocolViolation::UnexpectedSession),
        "Session Present 1 after that Clean Start 1 is the server's error"
    );
    session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    assert!(!session.connect_packet().unwrap().clean_start);
    assert!(
        session
            .handle_connack(&ConnAck::new(true), Instant::now())
            .is_ok(),
        "once connected, the client has state the server may resume"
    );

    // A stored session is local state: the server may resume it on the first connection.
    let stored = StoredSession {
        meta: Some(SessionMeta {
            session_expiry_interval: 3600,
            ..SessionMeta::default()
        }),
        ..StoredSession::default()
    };
    let mut resumed = Session::new(options(), stored, NOW_MS).unwrap();
    assert!(!resumed.connect_packet().unwrap().clean_start);
    assert!(
        resumed
            .handle_connack(&ConnAck::new(true), Instant::now())
            .is_ok()
    );
}

#[test]
fn mqtt_3_2_2_11_and_14_maximum_qos_and_retain_available() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    connack.properties.retain_available = Some(false);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    let mut p = Publish::new("t", "x");
    p.qos = QoS::ExactlyOnce;
    assert!(matches!(
        h.session.publish(p),
        Err(PublishError::QosNotSupported { .. })
    ));
    let mut p = Publish::new("t", "x");
    p.retain = true;
    assert!(matches!(
        h.session.publish(p),
        Err(PublishError::RetainNotSupported)
    ));
    assert!(matches!(
        h.session.publish(Publish::new("t/#", "x")),
        Err(PublishError::Invalid(_))
    ));
    assert!(h.flush().is_empty(), "refused publishes store nothing");
}

#[test]
fn a_refused_connection_is_reported() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.reason_code = ReasonCode::NotAuthorized;
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    assert!(!h.session.is_connected());
    assert_eq!(
        h.events(),
        vec![Event::ConnectionRefused {
            reason: ReasonCode::NotAuthorized,
            server_reference: None,
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Inbound

fn manual() -> Harness {
    let mut options = options();
    options.manual_ack = true;
    options.properties.receive_maximum = Some(3);
    options.properties.topic_alias_maximum = Some(5);
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.connack(false, None);
    h.events();
    h
}

fn incoming(qos: QoS, packet_id: u16, dup: bool) -> Publish {
    let mut p = Publish::new("in/1", "m");
    p.qos = qos;
    p.packet_id = packet_id;
    p.dup = dup;
    p
}

fn tags(events: &[Event]) -> Vec<MessageTag> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { tag, .. } => Some(*tag),
            _ => None,
        })
        .collect()
}

/// Rebuilds a manual-ack session from what was committed, as after a crash, and reconnects.
fn crash_manual(h: &mut Harness) {
    let mut options = options();
    options.manual_ack = true;
    options.properties.receive_maximum = Some(3);
    h.session = Session::new(options, h.store.stored(), NOW_MS).unwrap();
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    h.flush();
    h.events();
}

#[test]
fn automatic_ack_answers_at_delivery() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 7, false))
        .unwrap();
    assert_eq!(h.flush(), vec![Packet::PubAck(PubAck::new(7))]);
    assert_eq!(tags(&h.events()).len(), 1);
}

#[test]
fn mqtt_4_6_0_2_acks_go_out_in_arrival_order() {
    let mut h = manual();
    for id in [1, 2, 3] {
        h.session
            .handle_publish(incoming(QoS::AtLeastOnce, id, false))
            .unwrap();
    }
    let t = tags(&h.events());
    h.session.ack(t[2]).unwrap();
    assert!(
        h.flush().is_empty(),
        "the third ack waits for the first two"
    );
    assert_eq!(h.session.acks_waiting(), 1);
    h.session.ack(t[0]).unwrap();
    assert_eq!(h.flush(), vec![Packet::PubAck(PubAck::new(1))]);
    h.session.ack(t[1]).unwrap();
    assert_eq!(
        h.flush(),
        vec![
            Packet::PubAck(PubAck::new(2)),
            Packet::PubAck(PubAck::new(3))
        ]
    );
    assert_eq!(h.session.ack(t[1]), Err(AckError::NotAwaiting(t[1])));
}

#[test]
fn the_pubrec_marker_is_committed_before_pubrec_is_sent() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    let t = tags(&h.events());
    assert!(h.flush().is_empty(), "nothing goes out before the ack");
    h.session.ack(t[0]).unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert_eq!(output.commit.ops(), &[StoreOp::PutInbound { packet_id: 4 }]);
    assert_eq!(output.send, vec![Packet::PubRec(PubAck::new(4))]);
}

#[test]
fn mqtt_4_3_3_10_a_redelivered_qos2_message_is_answered_never_delivered_twice() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    // Redelivered before the ack: nothing new for the application.
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    let t = tags(&h.events());
    assert_eq!(t.len(), 1);
    h.session.ack(t[0]).unwrap();
    h.flush();
    // Redelivered after the ack: PUBREC again.
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    assert_eq!(h.flush(), vec![Packet::PubRec(PubAck::new(4))]);
    assert!(tags(&h.events()).is_empty());
}

#[test]
fn a_crash_after_the_ack_never_delivers_again_and_one_before_it_does() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 5, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.ack(t[0]).unwrap();
    h.flush();
    crash_manual(&mut h);
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 5, true))
        .unwrap();
    assert_eq!(h.flush(), vec![Packet::PubRec(PubAck::new(4))]);
    let events = h.events();
    assert_eq!(
        tags(&events).len(),
        1,
        "only the unacked message comes again"
    );
}

/// The client never expires an inbound message: one whose Message Expiry Interval ran out
/// while the application held it still gets PUBREC when acked, and PUBCOMP for its PUBREL.
#[test]
fn mqtt_4_3_3_13_an_expired_inbound_qos2_message_still_completes_its_acknowledgements() {
    let mut h = manual();
    let mut p = incoming(QoS::ExactlyOnce, 4, false);
    p.properties.message_expiry_interval = Some(1);
    h.session.handle_publish(p).unwrap();
    let tag = tags(&h.events())[0];
    h.session.tick(NOW_MS + 60_000);
    h.session.ack(tag).unwrap();
    assert_eq!(h.flush(), vec![Packet::PubRec(PubAck::new(4))]);
    h.session.handle_pubrel(&PubAck::new(4));
    assert_eq!(h.flush(), vec![Packet::PubComp(PubAck::new(4))]);
}

#[test]
fn pubrel_removes_the_marker_before_pubcomp() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.ack(t[0]).unwrap();
    h.flush();
    h.session.handle_pubrel(&PubAck::new(4));
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert_eq!(
        output.commit.ops(),
        &[StoreOp::RemoveInbound { packet_id: 4 }]
    );
    assert_eq!(output.send, vec![Packet::PubComp(PubAck::new(4))]);
    h.store.apply(&output.commit);
    assert!(h.store.inbound.is_empty());
    // The identifier is free for a new message now.
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    assert_eq!(tags(&h.events()).len(), 1);
    // PUBREL for an identifier never acknowledged.
    h.session.handle_pubrel(&PubAck::new(9));
    let mut comp = PubAck::new(9);
    comp.reason_code = ReasonCode::PacketIdentifierNotFound;
    assert_eq!(h.flush(), vec![Packet::PubComp(comp)]);
}

/// Manual ack: the application never holds more than Receive Maximum (3) unacked messages; a
/// server over its quota is not disconnected, its extra messages wait for acks, in order.
#[test]
fn messages_beyond_the_clients_receive_maximum_wait_for_an_ack() {
    let mut h = manual();
    for id in 1..=5 {
        h.session
            .handle_publish(incoming(QoS::AtLeastOnce, id, false))
            .unwrap();
    }
    // QoS 0 never waits.
    h.session
        .handle_publish(incoming(QoS::AtMostOnce, 0, false))
        .unwrap();
    let first = tags(&h.events());
    assert_eq!(first.len(), 4, "three QoS 1 and the QoS 0");
    assert_eq!((h.session.held(), h.session.held_total()), (2, 2));
    // An ack makes room for the application even while its PUBACK waits for the order.
    h.session.ack(first[1]).unwrap();
    let mut second = tags(&h.events());
    assert_eq!(second.len(), 1);
    assert!(h.flush().is_empty(), "PUBACK 2 waits for PUBACK 1");
    h.session.ack(first[0]).unwrap();
    second.extend(tags(&h.events()));
    assert_eq!(second.len(), 2, "two acked, two delivered");
    assert_eq!(h.session.held(), 0);
    for tag in [first[2], second[0], second[1]] {
        h.session.ack(tag).unwrap();
    }
    let acked: Vec<u16> = h
        .flush()
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some(a.packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![1, 2, 3, 4, 5], "PUBACKs in arrival order");
}

/// A QoS 2 retransmission of a waiting message does not wait twice, waiting messages are
/// forgotten with the connection (the server sends them again), and without manual ack
/// nothing waits and nothing is refused.
#[test]
fn waiting_messages_are_forgotten_with_the_connection_and_not_held_twice() {
    let mut h = manual();
    for id in 1..=4 {
        h.session
            .handle_publish(incoming(QoS::ExactlyOnce, id, false))
            .unwrap();
    }
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    assert_eq!(tags(&h.events()).len(), 3);
    assert_eq!(h.session.held(), 1);
    h.session.connection_lost(NOW_MS);
    assert_eq!(h.session.held(), 0);
    h.connack(true, None);
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    assert_eq!(tags(&h.events()).len(), 1, "sent again, delivered");

    let mut auto = Harness::new();
    auto.connack(false, None);
    for id in 1..=100 {
        auto.session
            .handle_publish(incoming(QoS::ExactlyOnce, id, false))
            .unwrap();
    }
    assert_eq!(tags(&auto.events()).len(), 100);
    assert_eq!(auto.session.held(), 0);
}

/// A hostile server cannot make the client hold messages without bound: their number is
/// bounded by the identifiers (a reused one is refused), their bytes by the limit (0x93).
#[test]
fn held_messages_are_bounded_by_count_and_bytes() {
    let mut h = manual();
    for id in 1..=u16::MAX {
        h.session
            .handle_publish(incoming(QoS::AtLeastOnce, id, false))
            .unwrap();
    }
    assert_eq!(h.session.held(), usize::from(u16::MAX) - 3);
    let refused = h
        .session
        .handle_publish(incoming(QoS::AtLeastOnce, 1, false))
        .unwrap_err();
    assert_eq!(refused, ProtocolViolation::PacketIdInUse { packet_id: 1 });
    assert_eq!(h.session.held(), usize::from(u16::MAX) - 3);

    let mut options = options();
    options.manual_ack = true;
    options.properties.receive_maximum = Some(1);
    options.held_bytes_limit = 100;
    let mut small = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    small.connack(false, None);
    let big = |id| {
        let mut p = incoming(QoS::AtLeastOnce, id, false);
        p.payload = Bytes::from(vec![0u8; 60]);
        p
    };
    small.session.handle_publish(big(1)).unwrap();
    small.session.handle_publish(big(2)).unwrap();
    assert_eq!(small.session.held(), 1);
    let refused = small.session.handle_publish(big(3)).unwrap_err();
    assert!(
        matches!(refused, ProtocolViolation::ReceiveMaximumExceeded { bytes, .. } if bytes > 100),
        "{refused:?}"
    );
}

/// A server may not reuse a packet identifier it still awaits an answer for [MQTT-2.2.1-4];
/// a retransmission (DUP 1, same QoS), which some brokers make on a timer, is ignored.
#[test]
fn a_reused_packet_identifier_is_a_protocol_error_and_a_retransmission_is_ignored() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut h = manual();
        h.session.handle_publish(incoming(qos, 9, false)).unwrap();
        assert_eq!(tags(&h.events()).len(), 1);
        h.session.handle_publish(incoming(qos, 9, true)).unwrap();
        assert!(tags(&h.events()).is_empty(), "{qos:?}: not delivered twice");
        let refused = h
            .session
            .handle_publish(incoming(qos, 9, false))
            .unwrap_err();
        assert_eq!(refused, ProtocolViolation::PacketIdInUse { packet_id: 9 });
        assert_eq!(refused.reason_code(), ReasonCode::ProtocolError);
        let other = match qos {
            QoS::AtLeastOnce => QoS::ExactlyOnce,
            _ => QoS::AtLeastOnce,
        };
        assert!(h.session.handle_publish(incoming(other, 9, true)).is_err());
    }
    // Once answered, the identifier is free again.
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 9, false))
        .unwrap();
    let tag = tags(&h.events())[0];
    h.session.ack(tag).unwrap();
    h.flush();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 9, false))
        .unwrap();
    assert_eq!(tags(&h.events()).len(), 1);
}

#[test]
fn the_default_maximum_packet_size_is_announced_and_enforced() {
    let mut session = Session::new(options(), StoredSession::default(), NOW_MS).unwrap();
    let connect = session.connect_packet().unwrap();
    assert_eq!(
        connect.properties.maximum_packet_size,
        Some(DEFAULT_MAXIMUM_PACKET_SIZE)
    );
    assert_eq!(
        session.codec().max_incoming_packet_size,
        Some(DEFAULT_MAXIMUM_PACKET_SIZE)
    );
    // A PUBLISH header claiming 256 MiB is refused before its body is buffered.
    let mut claim = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0x7f][..]);
    let error = session.codec().decode(&mut claim).unwrap_err();
    assert_eq!(error.violation.reason_code(), ReasonCode::PacketTooLarge);
}

#[test]
fn inbound_topic_aliases_map_and_unknown_or_too_large_is_0x94() {
    let mut h = manual();
    let mut first = incoming(QoS::AtMostOnce, 0, false);
    first.properties.topic_alias = Some(2);
    h.session.handle_publish(first).unwrap();
    let mut aliased = incoming(QoS::AtMostOnce, 0, false);
    aliased.topic = String::new();
    aliased.properties.topic_alias = Some(2);
    h.session.handle_publish(aliased).unwrap();
    let events = h.events();
    assert!(matches!(&events[1], Event::Message { publish, .. } if publish.topic == "in/1"));
    for alias in [3, 6] {
        let mut bad = incoming(QoS::AtMostOnce, 0, false);
        bad.topic = String::new();
        bad.properties.topic_alias = Some(alias);
        let err = h.session.handle_publish(bad).unwrap_err();
        assert_eq!(
            err.reason_code(),
            ReasonCode::TopicAliasInvalid,
            "alias {alias}"
        );
    }
    // Mappings do not outlive the connection [MQTT-3.3.2-7].
    h.session.connection_lost(NOW_MS);
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    let mut aliased = incoming(QoS::AtMostOnce, 0, false);
    aliased.topic = String::new();
    aliased.properties.topic_alias = Some(2);
    assert!(h.session.handle_publish(aliased).is_err());
}

#[test]
fn an_ack_after_the_connection_dropped_is_persisted_for_qos2_and_dropped_for_qos1() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 5, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.connection_lost(NOW_MS);
    h.session.ack(t[0]).unwrap();
    h.session.ack(t[1]).unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(
        output
            .commit
            .ops()
            .contains(&StoreOp::PutInbound { packet_id: 4 })
    );
    assert!(
        output.send.is_empty(),
        "nothing can be sent without a connection"
    );
    h.store.apply(&output.commit);
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    h.flush();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, true))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 5, true))
        .unwrap();
    assert_eq!(
        h.flush(),
        vec![Packet::PubRec(PubAck::new(4))],
        "QoS 2 is answered; QoS 1 awaits its new ack"
    );
    let events = h.events();
    assert_eq!(
        tags(&events).len(),
        1,
        "QoS 1 is delivered again, QoS 2 is not"
    );
}

#[test]
fn a_held_back_qos2_ack_is_not_lost_with_the_connection() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 1, false))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 2, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.ack(t[1]).unwrap();
    assert!(h.flush().is_empty());
    h.session.connection_lost(NOW_MS);
    h.flush();
    assert!(h.store.inbound.contains(&2), "the given ack is kept");
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 2, true))
        .unwrap();
    assert_eq!(h.flush(), vec![Packet::PubRec(PubAck::new(2))]);
    assert!(tags(&h.events()).is_empty());
}

#[test]
fn without_a_session_on_the_server_old_tags_cannot_be_acked() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 4, false))
        .unwrap();
    let t = tags(&h.events());
    h.session.connection_lost(NOW_MS);
    h.session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    assert_eq!(h.session.ack(t[0]), Err(AckError::NotAwaiting(t[0])));
    h.flush();
    assert!(h.store.inbound.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Connection, keep alive, requests, metadata

#[test]
fn mqtt_3_1_2_20_pingreq_after_keep_alive_idle_and_a_missing_pingresp_kills_the_connection() {
    let mut h = Harness::new();
    let t0 = Instant::now();
    let mut connack = ConnAck::new(false);
    connack.properties.server_keep_alive = Some(30); // replaces the client's 60 [MQTT-3.2.2-21]
    h.session.handle_connack(&connack, t0).unwrap();
    while h.session.poll_output(t0).is_some() {}
    assert_eq!(h.session.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    h.session.handle_timeout(t0 + Duration::from_secs(29));
    assert!(h.session.poll_output(t0).is_none());
    let t1 = t0 + Duration::from_secs(30);
    h.session.handle_timeout(t1);
    assert_eq!(
        h.session.poll_output(t1).unwrap().send,
        vec![Packet::PingReq]
    );
    assert_eq!(h.session.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    h.session.handle_incoming(Packet::PingResp, t1).unwrap();
    assert_eq!(h.session.poll_timeout(), Some(t1 + Duration::from_secs(30)));
    let t2 = t1 + Duration::from_secs(30);
    h.session.handle_timeout(t2);
    let _ = h.session.poll_output(t2);
    h.events();
    h.session.handle_timeout(t2 + Duration::from_secs(10));
    assert_eq!(h.events(), vec![Event::KeepAliveTimeout]);
}

#[test]
fn mqtt_3_14_4_1_nothing_follows_disconnect() {
    let mut h = Harness::new();
    let t0 = Instant::now();
    h.session.handle_connack(&ConnAck::new(false), t0).unwrap();
    h.flush();
    // DISCONNECT with a new expiry: its commit and the packet are not yet polled when a
    // PUBLISH arrives and the keep alive runs out.
    h.session.disconnect(ReasonCode::Success, Some(60)).unwrap();
    h.session
        .handle_incoming(Packet::Publish(incoming(QoS::AtLeastOnce, 7, false)), t0)
        .unwrap();
    h.session.handle_timeout(t0 + Duration::from_secs(60));
    let output = h.session.poll_output(t0).unwrap();
    assert!(!output.commit.is_empty(), "the new expiry is committed");
    assert_eq!(
        output.send.last().map(Packet::packet_type),
        Some(PacketType::Disconnect),
        "DISCONNECT is the last packet: {:?}",
        output.send
    );
    // Nor does anything made later go out on this connection.
    h.session
        .handle_incoming(Packet::Publish(incoming(QoS::AtLeastOnce, 8, false)), t0)
        .unwrap();
    h.session.handle_timeout(t0 + Duration::from_secs(120));
    assert!(h.flush().is_empty());
    // The next connection sends again.
    h.session.connection_lost(NOW_MS);
    h.session
        .start_connection(h.session.connect_credentials())
        .unwrap();
    assert_eq!(
        h.flush()
            .iter()
            .map(Packet::packet_type)
            .collect::<Vec<_>>(),
        vec![PacketType::Connect]
    );
}

#[test]
fn keep_alive_zero_turns_pings_off() {
    let mut options = options();
    options.keep_alive = 0;
    let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
    session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn subscribe_and_unsubscribe_report_every_reason_code() {
    let mut h = Harness::new();
    assert!(matches!(
        h.session.subscribe(
            vec![Subscription::new("a/+", QoS::AtLeastOnce)],
            SubscribeProperties::default()
        ),
        Err(RequestError::NotConnected)
    ));
    h.connack(false, None);
    h.events();
    let id = h
        .session
        .subscribe(
            vec![
                Subscription::new("a/+", QoS::ExactlyOnce),
                Subscription::new("b/#", QoS::AtLeastOnce),
            ],
            SubscribeProperties::default(),
        )
        .unwrap();
    let sent = h.flush();
    let Packet::Subscribe(sub) = &sent[0] else {
        panic!("{sent:?}");
    };
    let suback = SubAck {
        packet_id: sub.packet_id,
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::GrantedQos2, ReasonCode::NotAuthorized],
    };
    h.session
        .handle_incoming(Packet::SubAck(suback), Instant::now())
        .unwrap();
    assert_eq!(
        h.events(),
        vec![Event::Subscribed {
            id,
            reason_codes: vec![ReasonCode::GrantedQos2, ReasonCode::NotAuthorized],
            properties: AckProperties::default(),
        }]
    );
    // A SUBACK nobody asked for, or with the wrong count, is a protocol error.
    let stray = SubAck {
        packet_id: sub.packet_id,
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::GrantedQos1],
    };
    assert!(
        h.session
            .handle_incoming(Packet::SubAck(stray), Instant::now())
            .is_err()
    );
    let id = h
        .session
        .unsubscribe(vec!["a/+".into()], UnsubscribeProperties::default())
        .unwrap();
    let sent = h.flush();
    let Packet::Unsubscribe(unsub) = &sent[0] else {
        panic!("{sent:?}");
    };
    let wrong_count = UnsubAck {
        packet_id: unsub.packet_id,
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::Success, ReasonCode::Success],
    };
    assert!(h.session.handle_unsuback(wrong_count).is_err());
    h.session
        .handle_unsuback(UnsubAck {
            packet_id: unsub.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::NoSubscriptionExisted],
        })
        .unwrap();
    assert!(matches!(&h.events()[..], [Event::Unsubscribed { id: got, .. }] if *got == id));
}

#[test]
fn a_request_in_flight_is_reported_lost_with_the_connection() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.events();
    let id = h
        .session
        .subscribe(
            vec![Subscription::new("a", QoS::AtMostOnce)],
            SubscribeProperties::default(),
        )
        .unwrap();
    h.flush();
    h.session.connection_lost(NOW_MS);
    assert!(h.events().contains(&Event::RequestLost { id }));
}

#[test]
fn the_dispatcher_rejects_what_a_server_never_sends() {
    let mut h = Harness::new();
    let now = Instant::now();
    assert!(
        h.session
            .handle_incoming(Packet::PubAck(PubAck::new(1)), now)
            .is_err(),
        "nothing but CONNACK, AUTH or DISCONNECT before CONNACK"
    );
    h.session
        .handle_incoming(Packet::ConnAck(Box::new(ConnAck::new(false))), now)
        .unwrap();
    let second = h
        .session
        .handle_incoming(Packet::ConnAck(Box::new(ConnAck::new(false))), now);
    assert!(second.is_err(), "a second CONNACK [MQTT-3.2.0-2]");
    assert!(h.session.handle_incoming(Packet::PingReq, now).is_err());
    let auth = Packet::Auth(crate::packet::Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: crate::packet::AuthProperties::default(),
    });
    assert_eq!(
        h.session
            .handle_incoming(auth, now)
            .unwrap_err()
            .reason_code(),
        ReasonCode::BadAuthenticationMethod
    );
}

#[test]
fn server_disconnect_is_reported_and_may_not_set_session_expiry() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.events();
    let mut moved = Disconnect::new(ReasonCode::UseAnotherServer);
    moved.properties.server_reference = Some("other:1883".into());
    h.session
        .handle_incoming(Packet::Disconnect(moved), Instant::now())
        .unwrap();
    assert_eq!(
        h.events(),
        vec![Event::ServerDisconnected {
            reason: ReasonCode::UseAnotherServer,
            reason_string: None,
            server_reference: Some("other:1883".into()),
        }]
    );
    let mut bad = Disconnect::new(ReasonCode::ServerShuttingDown);
    bad.properties.session_expiry_interval = Some(5);
    assert_eq!(
        h.session.handle_disconnect(bad),
        Err(ProtocolViolation::ExpiryFromServer)
    );
}

#[test]
fn client_disconnect_commits_a_new_expiry_and_cannot_extend_zero() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.session
        .disconnect(ReasonCode::NORMAL_DISCONNECTION, Some(60))
        .unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(
        output
            .commit
            .ops()
            .iter()
            .any(|op| matches!(op, StoreOp::SetMeta(m) if m.session_expiry_interval == 60))
    );
    assert!(matches!(&output.send[..], [Packet::Disconnect(_)]));

    let mut zero =
        Session::new(SessionOptions::new("c"), StoredSession::default(), NOW_MS).unwrap();
    zero.handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    assert!(matches!(
        zero.disconnect(ReasonCode::NORMAL_DISCONNECTION, Some(60)),
        Err(RequestError::ExpiryExtended)
    ));
}

#[test]
fn metadata_records_expiry_assigned_identifier_and_when_the_connection_ended() {
    let mut options = options();
    options.client_id = String::new();
    let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
    let mut connack = ConnAck::new(false);
    connack.properties.assigned_client_identifier = Some("auto-9".into());
    connack.properties.session_expiry_interval = Some(120);
    session.handle_connack(&connack, Instant::now()).unwrap();
    session.connection_lost(NOW_MS + 5);
    let mut store = Committed::default();
    let mut metas = Vec::new();
    while let Some(output) = session.poll_output(Instant::now()) {
        store.apply(&output.commit);
        metas.extend(output.commit.ops().iter().filter_map(|op| match op {
            StoreOp::SetMeta(m) => Some(m.clone()),
            _ => None,
        }));
    }
    assert_eq!(
        metas.last(),
        Some(&SessionMeta {
            session_expiry_interval: 120,
            disconnected_at_ms: Some(NOW_MS + 5),
            assigned_client_id: Some("auto-9".into()),
            alive_until_ms: None,
            protocol: ProtocolVersion::V5,
        })
    );
    // The assigned identifier names the session on the next connection.
    assert_eq!(session.connect_packet().unwrap().client_id, "auto-9");
}

#[test]
fn an_expired_session_is_discarded_locally_on_the_next_start() {
    let mut h = Harness::new();
    h.connack(false, None);
    h.publish(QoS::ExactlyOnce, "a");
    h.flush();
    h.session.handle_pubrec(&PubAck::new(1));
    h.flush();
    h.session.connection_lost(NOW_MS);
    h.flush();
    let mut stored = h.store.stored();
    stored.meta = Some(SessionMeta {
        session_expiry_interval: 60,
        disconnected_at_ms: Some(NOW_MS),
        assigned_client_id: None,
        alive_until_ms: None,
        protocol: ProtocolVersion::V5,
    });
    let mut session = Session::new(options(), stored, NOW_MS + 60_000).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| session.poll_event()).collect();
    assert_eq!(events[0], Event::SessionExpired);
    assert_eq!(
        session.in_flight(),
        0,
        "the PUBREL flow the server forgot is gone"
    );
}

#[test]
fn session_expiry_zero_ends_the_session_with_the_connection() {
    let mut session =
        Session::new(SessionOptions::new("c"), StoredSession::default(), NOW_MS).unwrap();
    session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    let mut p = Publish::new("t", "x");
    p.qos = QoS::ExactlyOnce;
    session.publish(p).unwrap();
    let _ = session.poll_output(Instant::now());
    session.handle_pubrec(&PubAck::new(1));
    let _ = session.poll_output(Instant::now());
    session.connection_lost(NOW_MS);
    let events: Vec<Event> = std::iter::from_fn(|| session.poll_event()).collect();
    assert!(events.contains(&Event::SessionExpired));
    assert_eq!(session.in_flight(), 0);
}

// ---------------------------------------------------------------------------------------------
// Outbound topic aliases

fn connack_with_aliases(h: &mut Harness, maximum: Option<u16>) -> Vec<Packet> {
    let mut connack = ConnAck::new(false);
    connack.properties.topic_alias_maximum = maximum;
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    h.flush()
}

fn on_wire(sent: &[Packet]) -> Vec<(String, Option<u16>)> {
    sent.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.topic.clone(), p.properties.topic_alias)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_hot_topic_goes_by_alias_after_its_first_use_and_saves_bytes() {
    let mut h = Harness::new();
    connack_with_aliases(&mut h, Some(2));
    let topic = "plant/7/line-3/press-12/telemetry";
    let mut sizes = Vec::new();
    for _ in 0..3 {
        h.session.publish(Publish::new(topic, "x")).unwrap();
        let sent = h.flush();
        sizes.push(Codec::default().encoded_len(&sent[0]).unwrap());
        h.store.apply(&Batch::new());
        assert_eq!(sent.len(), 1);
    }
    let mut h2 = Harness::new();
    connack_with_aliases(&mut h2, None);
    h2.session.publish(Publish::new(topic, "x")).unwrap();
    let plain = Codec::default().encoded_len(&h2.flush()[0]).unwrap();
    // First: topic and alias (3 bytes more); then the topic is gone from the wire.
    assert_eq!(
        sizes,
        vec![plain + 3, plain + 3 - topic.len(), plain + 3 - topic.len()]
    );
}

#[test]
fn mqtt_3_3_2_9_aliases_stay_within_the_servers_maximum_least_recently_used_first() {
    let mut h = Harness::new();
    connack_with_aliases(&mut h, Some(2));
    for topic in ["a", "b", "a", "c", "b"] {
        h.session.publish(Publish::new(topic, "x")).unwrap();
    }
    assert_eq!(
        on_wire(&h.flush()),
        vec![
            ("a".into(), Some(1)),
            ("b".into(), Some(2)),
            (String::new(), Some(1)),
            // "b" is the least recently used: "c" takes alias 2.
            ("c".into(), Some(2)),
            // "a" (alias 1) is now the least recently used: "b" takes it.
            ("b".into(), Some(1)),
        ]
    );
}

#[test]
fn mqtt_3_2_2_18_no_alias_without_a_server_maximum_or_when_turned_off() {
    let mut h = Harness::new();
    connack_with_aliases(&mut h, None);
    h.session.publish(Publish::new("a", "x")).unwrap();
    h.session.publish(Publish::new("a", "x")).unwrap();
    assert!(on_wire(&h.flush()).iter().all(|(_, alias)| alias.is_none()));

    let mut options = options();
    options.topic_aliases = false;
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    connack_with_aliases(&mut h, Some(10));
    h.session.publish(Publish::new("a", "x")).unwrap();
    h.session.publish(Publish::new("a", "x")).unwrap();
    assert!(on_wire(&h.flush()).iter().all(|(_, alias)| alias.is_none()));
}

#[test]
fn stored_records_and_retransmissions_carry_the_full_topic_never_an_alias() {
    let mut h = Harness::new();
    connack_with_aliases(&mut h, Some(5));
    h.publish(QoS::AtLeastOnce, "1");
    h.publish(QoS::AtLeastOnce, "2");
    assert_eq!(
        on_wire(&h.flush()),
        vec![("t/1".into(), Some(1)), (String::new(), Some(1))]
    );
    for record in h.store.outbound.values() {
        let OutboundRecord::Publish(bytes) = record else {
            panic!("{record:?}");
        };
        let stored = decode_publish(bytes).unwrap();
        assert_eq!(stored.topic, "t/1");
        assert_eq!(stored.properties.topic_alias, None);
    }
    h.session.connection_lost(NOW_MS);
    let mut connack = ConnAck::new(true);
    connack.properties.topic_alias_maximum = Some(5);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    let resent = h.flush();
    assert_eq!(
        on_wire(&resent),
        vec![("t/1".into(), None), ("t/1".into(), None)]
    );
}

// ---------------------------------------------------------------------------------------------
// Enhanced authentication

/// A toy challenge-response method: answers a challenge with it reversed and expects "ok".
#[derive(Debug, Default)]
struct Reverse {
    started: usize,
}

impl Authenticator for Reverse {
    fn method(&self) -> &str {
        "REVERSE"
    }
    fn start(&mut self) -> Result<Option<Bytes>, AuthError> {
        self.started += 1;
        Ok(Some(Bytes::from_static(b"hello")))
    }
    fn challenge(&mut self, data: Option<&Bytes>) -> Result<Option<Bytes>, AuthError> {
        let data = data.ok_or_else(|| AuthError("no challenge".into()))?;
        Ok(Some(data.iter().rev().copied().collect()))
    }
    fn success(&mut self, data: Option<&Bytes>) -> Result<(), AuthError> {
        match data.map(|d| &d[..]) {
            Some(b"ok") | None => Ok(()),
            other => Err(AuthError(format!("bad server proof {other:?}"))),
        }
    }
}

fn auth(reason_code: ReasonCode, method: &str, data: &'static [u8]) -> Packet {
    Session::auth_packet(reason_code, method.into(), Some(Bytes::from_static(data)))
}

#[test]
fn enhanced_authentication_exchange_through_the_authenticator() {
    let mut h = Harness::new();
    h.session.set_authenticator(Box::new(Reverse::default()));
    let connect = h.session.connect_packet().unwrap();
    assert_eq!(
        connect.properties.authentication_method.as_deref(),
        Some("REVERSE")
    );
    assert_eq!(
        connect.properties.authentication_data.as_deref(),
        Some(&b"hello"[..])
    );
    let now = Instant::now();
    // [MQTT-4.12.0-2/3]: a challenge before CONNACK is answered with Continue.
    h.session
        .handle_incoming(
            auth(ReasonCode::ContinueAuthentication, "REVERSE", b"abc"),
            now,
        )
        .unwrap();
    assert_eq!(
        h.flush(),
        vec![auth(ReasonCode::ContinueAuthentication, "REVERSE", b"cba")]
    );
    let mut connack = ConnAck::new(false);
    connack.properties.authentication_method = Some("REVERSE".into());
    connack.properties.authentication_data = Some(Bytes::from_static(b"ok"));
    h.session
        .handle_incoming(Packet::ConnAck(Box::new(connack)), now)
        .unwrap();
    assert!(h.session.is_connected());
    // Re-authentication [MQTT-4.12.1-1].
    h.session.reauthenticate().unwrap();
    assert_eq!(
        h.flush(),
        vec![auth(ReasonCode::ReAuthenticate, "REVERSE", b"hello")]
    );
    h.session
        .handle_incoming(auth(ReasonCode::Success, "REVERSE", b"ok"), now)
        .unwrap();
}

#[test]
fn mqtt_4_12_0_5_another_method_or_a_bad_proof_ends_the_connection() {
    let mut h = Harness::new();
    h.session.set_authenticator(Box::new(Reverse::default()));
    h.session.connect_packet().unwrap();
    let now = Instant::now();
    let err = h
        .session
        .handle_incoming(auth(ReasonCode::ContinueAuthentication, "OTHER", b"x"), now)
        .unwrap_err();
    assert_eq!(err, ProtocolViolation::AuthMethodMismatch);
    let mut connack = ConnAck::new(false);
    connack.properties.authentication_method = Some("REVERSE".into());
    connack.properties.authentication_data = Some(Bytes::from_static(b"forged"));
    let err = h.session.handle_connack(&connack, now).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::NotAuthorized);
    assert!(!h.session.is_connected());
}

/// An authenticator of any method, answering nothing.
#[derive(Debug)]
struct Named(&'static str);

impl Authenticator for Named {
    fn method(&self) -> &str {
        self.0
    }
    fn start(&mut self) -> Result<Option<Bytes>, AuthError> {
        Ok(None)
    }
    fn challenge(&mut self, _: Option<&Bytes>) -> Result<Option<Bytes>, AuthError> {
        Ok(None)
    }
    fn success(&mut self, _: Option<&Bytes>) -> Result<(), AuthError> {
        Ok(())
    }
}

#[test]
fn mqtt_4_12_1_1_reauthentication_keeps_the_method_connect_carried() {
    let mut h = Harness::new();
    h.session.set_authenticator(Box::new(Named("A")));
    h.session.connect_packet().unwrap();
    let mut connack = ConnAck::new(false);
    connack.properties.authentication_method = Some("A".into());
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    h.flush();
    // The application swaps the authenticator while connected: the connection keeps "A".
    h.session.set_authenticator(Box::new(Named("B")));
    assert!(matches!(
        h.session.reauthenticate(),
        Err(RequestError::AuthMethodChanged { connected, now }) if connected == "A" && now == "B"
    ));
    assert!(h.flush().is_empty(), "no AUTH with another method");
    h.session.set_authenticator(Box::new(Named("A")));
    h.session.reauthenticate().unwrap();
    let sent = h.flush();
    assert!(
        matches!(&sent[..], [Packet::Auth(a)]
            if a.reason_code == ReasonCode::ReAuthenticate
                && a.properties.authentication_method.as_deref() == Some("A")),
        "{sent:?}"
    );
    // The next connection carries the method the authenticator has then.
    h.session.set_authenticator(Box::new(Named("B")));
    h.session.connection_lost(NOW_MS);
    let connect = h.session.connect_packet().unwrap();
    assert_eq!(
        connect.properties.authentication_method.as_deref(),
        Some("B")
    );

    // [MQTT-4.12.0-7]: a CONNECT without a method allows no AUTH on its connection.
    let mut plain = Harness::new();
    plain.connack(false, None);
    plain.session.set_authenticator(Box::new(Named("A")));
    assert!(matches!(
        plain.session.reauthenticate(),
        Err(RequestError::NoAuthenticator)
    ));
    assert!(plain.flush().is_empty());
}

#[test]
fn connect_carries_will_credentials_and_every_option() {
    let mut options = options();
    options.will = Some(crate::packet::Will::new("site/7/status", "offline"));
    options.username = Some("gw".into());
    options.password = Some(Bytes::from_static(b"secret"));
    options.properties.receive_maximum = Some(20);
    options.properties.maximum_packet_size = Some(4096);
    options.properties.request_problem_information = Some(true);
    let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
    let connect = session.connect_packet().unwrap();
    assert_eq!(connect.will.unwrap().topic, "site/7/status");
    assert_eq!(connect.username.as_deref(), Some("gw"));
    assert_eq!(connect.properties.receive_maximum, Some(20));
    assert_eq!(connect.properties.session_expiry_interval, Some(3600));
    assert_eq!(session.codec().max_incoming_packet_size, Some(4096));
}

#[test]
fn problem_information_where_the_client_asked_for_none_is_a_protocol_error() {
    let new = |asked: Option<bool>| {
        let mut options = options();
        options.properties.request_problem_information = asked;
        let mut session = Session::new(options, StoredSession::default(), NOW_MS).unwrap();
        session
            .handle_connack(&ConnAck::new(false), Instant::now())
            .unwrap();
        session
    };
    let mut with_reason = PubAck::new(1);
    with_reason.properties.reason_string = Some("why".into());
    let mut with_property = PubAck::new(1);
    with_property
        .properties
        .user_properties
        .push(UserProperty::new("k", "v"));
    for packet in [
        Packet::PubAck(with_reason.clone()),
        Packet::PubRec(with_property.clone()),
        Packet::PubComp(with_reason.clone()),
        Packet::PubRel(with_property.clone()),
    ] {
        let refused = new(Some(false))
            .handle_incoming(packet.clone(), Instant::now())
            .unwrap_err();
        assert_eq!(
            refused.reason_code(),
            ReasonCode::ProtocolError,
            "{packet:?}"
        );
        // Allowed when the client asked for it, or left the default (1).
        assert!(
            new(None)
                .handle_incoming(packet.clone(), Instant::now())
                .is_ok()
        );
        assert!(
            new(Some(true))
                .handle_incoming(packet, Instant::now())
                .is_ok()
        );
    }
    // PUBLISH, CONNACK and DISCONNECT may carry them anyway.
    let mut publish = incoming(QoS::AtMostOnce, 0, false);
    publish
        .properties
        .user_properties
        .push(UserProperty::new("k", "v"));
    assert!(
        new(Some(false))
            .handle_incoming(Packet::Publish(publish), Instant::now())
            .is_ok()
    );
    let mut disconnect = Disconnect::new(ReasonCode::ServerShuttingDown);
    disconnect.properties.reason_string = Some("bye".into());
    assert!(
        new(Some(false))
            .handle_incoming(Packet::Disconnect(disconnect), Instant::now())
            .is_ok()
    );
}

#[test]
fn connack_details_reach_the_application_and_its_limits_apply() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.server_reference = Some("backup:1883".into());
    connack.properties.maximum_packet_size = Some(64);
    connack.properties.wildcard_subscription_available = Some(false);
    connack.properties.subscription_identifiers_available = Some(false);
    connack.properties.shared_subscription_available = Some(false);
    h.session.handle_connack(&connack, Instant::now()).unwrap();
    assert!(matches!(
        &h.events()[..],
        [Event::Connected { properties, .. }] if properties.server_reference.as_deref() == Some("backup:1883")
    ));
    assert_eq!(h.session.codec().max_outgoing_packet_size, Some(64));
    assert!(matches!(
        h.session.publish(Publish::new("t", vec![0u8; 100])),
        Err(PublishError::Invalid(_))
    ));
    for (filter, sub_id) in [("a/+", None), ("$share/g/a", None), ("a", Some(3))] {
        let result = h.session.subscribe(
            vec![Subscription::new(filter, QoS::AtMostOnce)],
            SubscribeProperties {
                subscription_identifier: sub_id,
                user_properties: vec![],
            },
        );
        assert!(
            matches!(result, Err(RequestError::Unsupported(_))),
            "{filter}"
        );
    }
}

#[test]
fn a_violation_closes_with_disconnect_and_its_reason_code() {
    let mut h = Harness::new();
    h.connack(false, None);
    let err = h
        .session
        .handle_incoming(
            Packet::ConnAck(Box::new(ConnAck::new(false))),
            Instant::now(),
        )
        .unwrap_err();
    h.session.close_with(err.reason_code());
    assert_eq!(
        h.flush(),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ProtocolError
        ))]
    );
}

#[test]
fn connect_is_the_first_output_of_a_new_connection_with_the_attempts_credentials() {
    let mut options = options();
    options.username = Some("configured".into());
    options.properties.maximum_packet_size = Some(4096);
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    // Offline: a publish queues, nothing is sent.
    h.publish(QoS::AtLeastOnce, "queued");
    assert!(h.flush().is_empty());
    let mut credentials = h.session.connect_credentials();
    assert_eq!(credentials.username.as_deref(), Some("configured"));
    credentials.password = Some(Bytes::from_static(b"fresh"));
    credentials.user_properties = vec![UserProperty::new("attempt", "2")];
    h.session.start_connection(credentials).unwrap();
    let sent = h.flush();
    let [Packet::Connect(connect)] = sent.as_slice() else {
        panic!("CONNECT alone before CONNACK, got {sent:?}");
    };
    assert_eq!(connect.username.as_deref(), Some("configured"));
    assert_eq!(connect.password.as_deref(), Some(&b"fresh"[..]));
    assert_eq!(
        connect.properties.user_properties,
        vec![UserProperty::new("attempt", "2")]
    );
    assert_eq!(connect.properties.maximum_packet_size, Some(4096));
    // The queued publish goes out once the server accepted the connection.
    let sent = h.connack(false, None);
    assert_eq!(publishes(&sent).len(), 1);
    assert!(!sent.iter().any(|p| matches!(p, Packet::Connect(_))));
}

#[test]
fn a_connect_that_breaks_the_specification_is_refused_and_nothing_is_sent() {
    let mut h = Harness::new();
    let mut credentials = h.session.connect_credentials();
    credentials.username = Some("u".repeat(70_000));
    assert!(matches!(
        h.session.start_connection(credentials),
        Err(ConnectPacketError::Invalid(_))
    ));
    assert!(h.flush().is_empty());
}

#[test]
fn a_refusal_answers_with_its_reason_code_in_arrival_order_and_stores_no_marker() {
    let mut h = manual();
    h.session
        .handle_publish(incoming(QoS::AtLeastOnce, 1, false))
        .unwrap();
    h.session
        .handle_publish(incoming(QoS::ExactlyOnce, 2, false))
        .unwrap();
    let t = tags(&h.events());
    assert_eq!(
        h.session.reject(t[1], ReasonCode::Success),
        Err(AckError::NotARefusal(ReasonCode::Success)),
        "a refusal needs an error code"
    );
    assert_eq!(
        h.session.reject(t[1], ReasonCode::PacketIdentifierNotFound),
        Err(AckError::NotARefusal(ReasonCode::PacketIdentifierNotFound)),
        "0x92 belongs to PUBREL and PUBCOMP, not to PUBACK or PUBREC"
    );
    h.session
        .reject(t[1], ReasonCode::ImplementationSpecificError)
        .unwrap();
    assert!(h.flush().is_empty(), "the refusal waits for the first ack");
    h.session
        .reject(t[0], ReasonCode::UnspecifiedError)
        .unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(
        output.commit.is_empty(),
        "a refused QoS 2 message gets no marker"
    );
    let mut puback = PubAck::new(1);
    puback.reason_code = ReasonCode::UnspecifiedError;
    let mut pubrec = PubAck::new(2);
    pubrec.reason_code = ReasonCode::ImplementationSpecificError;
    assert_eq!(
        output.send,
        vec![Packet::PubAck(puback), Packet::PubRec(pubrec)]
    );
    assert_eq!(h.session.ack(t[0]), Err(AckError::NotAwaiting(t[0])));
}

#[test]
fn mqtt_3_3_4_6_a_forwarded_message_loses_its_subscription_identifiers_and_wire_fields() {
    let mut h = Harness::new();
    h.connack(false, None);
    // A message as the server delivered it, forwarded as it is.
    let mut forwarded = incoming(QoS::AtLeastOnce, 77, true);
    forwarded.properties.subscription_identifiers = vec![7, 9];
    forwarded.properties.topic_alias = Some(3);
    h.session.publish(forwarded).unwrap();
    let sent = h.flush();
    let [Packet::Publish(p)] = sent.as_slice() else {
        panic!("one PUBLISH, got {sent:?}");
    };
    assert!(p.properties.subscription_identifiers.is_empty());
    assert!(!p.dup, "a first transmission");
    assert_ne!(
        p.properties.topic_alias,
        Some(3),
        "the session's own alias, if any"
    );
    // A message in flight keeps its queue record: that is the flow's record.
    assert!(h.store.outbound.is_empty());
    let Some(stored) = h.store.queue.values().next().cloned() else {
        panic!("the flow's record");
    };
    let back = decode_publish(&stored.packet).unwrap();
    assert!(back.properties.subscription_identifiers.is_empty());
}

#[test]
fn granted_subscriptions_are_kept_and_made_again_first_when_the_server_lost_the_session() {
    let mut h = Harness::new();
    h.connack(false, None);
    let properties = SubscribeProperties {
        subscription_identifier: Some(4),
        ..SubscribeProperties::default()
    };
    h.session
        .subscribe(
            vec![
                Subscription::new("plant/+/telemetry", QoS::ExactlyOnce),
                Subscription::new("forbidden/#", QoS::AtLeastOnce),
            ],
            properties,
        )
        .unwrap();
    let sent = h.flush();
    let Some(Packet::Subscribe(subscribe)) = sent.first() else {
        panic!("SUBSCRIBE, got {sent:?}");
    };
    h.session
        .handle_suback(SubAck {
            packet_id: subscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::GrantedQos2, ReasonCode::NotAuthorized],
        })
        .unwrap();
    h.flush();
    let kept: Vec<&str> = h.store.subscriptions.keys().map(String::as_str).collect();
    assert_eq!(kept, ["plant/+/telemetry"], "only what was granted is kept");

    // A restart from the store, a publish made offline, then a server without the session.
    h.crash();
    h.publish(QoS::AtLeastOnce, "queued");
    let sent = h.connack(false, None);
    let Some(Packet::Subscribe(again)) = sent.first() else {
        panic!("SUBSCRIBE before anything else, got {sent:?}");
    };
    assert_eq!(again.subscriptions[0].filter, "plant/+/telemetry");
    assert_eq!(again.subscriptions[0].options.qos, QoS::ExactlyOnce);
    assert_eq!(again.properties.subscription_identifier, Some(4));
    assert_eq!(publishes(&sent).len(), 1, "the queued publish follows");
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::Connected {
            resubscribed: 1,
            ..
        }
    )));

    // The answer lost with the connection: made again even though the server resumes.
    h.session.connection_lost(NOW_MS);
    let sent = h.connack(true, None);
    let resent: Vec<&Packet> = sent
        .iter()
        .filter(|p| matches!(p, Packet::Subscribe(_)))
        .collect();
    assert_eq!(
        resent.len(),
        1,
        "an unanswered restore is made again: {sent:?}"
    );
    let Some(Packet::Subscribe(again)) = resent.first() else {
        unreachable!()
    };
    h.session
        .handle_suback(SubAck {
            packet_id: again.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::GrantedQos2],
        })
        .unwrap();
    h.flush();
    h.session.connection_lost(NOW_MS);
    let sent = h.connack(true, None);
    assert!(
        !sent.iter().any(|p| matches!(p, Packet::Subscribe(_))),
        "a resumed session keeps its subscriptions on the server"
    );

    // Unsubscribed: forgotten in the store too.
    h.session
        .unsubscribe(
            vec!["plant/+/telemetry".into()],
            UnsubscribeProperties::default(),
        )
        .unwrap();
    let sent = h.flush();
    let Some(Packet::Unsubscribe(unsubscribe)) = sent.first() else {
        panic!("UNSUBSCRIBE, got {sent:?}");
    };
    h.session
        .handle_unsuback(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::Success],
        })
        .unwrap();
    h.flush();
    assert!(h.store.subscriptions.is_empty());
    h.crash();
    assert!(
        !h.connack(false, None)
            .iter()
            .any(|p| matches!(p, Packet::Subscribe(_)))
    );
}

/// The metadata the outputs committed last, if any.
fn last_meta(h: &mut Harness) -> Option<SessionMeta> {
    let mut meta = None;
    while let Some(output) = h.session.poll_output(Instant::now()) {
        h.store.apply(&output.commit);
        for op in output.commit.ops() {
            if let StoreOp::SetMeta(m) = op {
                meta = Some(m.clone());
            }
        }
    }
    meta
}

#[test]
fn a_kill_while_connected_expires_the_session_locally_once_alive_until_and_expiry_passed() {
    let mut options = options();
    options.properties.session_expiry_interval = Some(80); // stamps every 10 s
    options.keep_alive = 20; // the server notices a dead connection within 30 s
    let mut h = Harness {
        session: Session::new(options.clone(), StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    let connected = last_meta(&mut h).unwrap();
    assert_eq!(
        connected.alive_until_ms, None,
        "unknown until the first stamp"
    );
    assert_eq!(h.session.next_alive_ms(), Some(0), "due at once");
    h.session.note_alive(NOW_MS);
    let stamped = last_meta(&mut h).unwrap();
    assert_eq!(stamped.alive_until_ms, Some(NOW_MS + 20_000 + 30_000));
    h.session.note_alive(NOW_MS + 9_999);
    assert!(last_meta(&mut h).is_none(), "not due within the interval");
    assert_eq!(h.session.next_alive_ms(), Some(NOW_MS + 10_000));
    h.session.note_alive(NOW_MS + 10_000);
    let meta = last_meta(&mut h).unwrap();
    let alive_until = NOW_MS + 10_000 + 20_000 + 30_000;
    assert_eq!(meta.alive_until_ms, Some(alive_until));

    // Killed here. A restart before alive-until + expiry keeps the session...
    let stored = |meta: &SessionMeta| StoredSession {
        meta: Some(meta.clone()),
        ..StoredSession::default()
    };
    let mut early = Session::new(options.clone(), stored(&meta), alive_until + 79_999).unwrap();
    assert_eq!(early.poll_event(), None);
    // ...one after it knows the server has let it expire.
    let mut late = Session::new(options.clone(), stored(&meta), alive_until + 80_000).unwrap();
    assert_eq!(late.poll_event(), Some(Event::SessionExpired));

    // A clean loss of the connection says when it ended instead.
    h.session.connection_lost(NOW_MS + 12_000);
    let ended = last_meta(&mut h).unwrap();
    assert_eq!(ended.disconnected_at_ms, Some(NOW_MS + 12_000));
    assert_eq!(ended.alive_until_ms, None);
    assert_eq!(
        h.session.next_alive_ms(),
        None,
        "no stamps without a connection"
    );

    // Without keep alive nothing bounds when the server notices: never stamped.
    let mut options = options;
    options.keep_alive = 0;
    let mut h = Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.session
        .handle_connack(&ConnAck::new(false), Instant::now())
        .unwrap();
    last_meta(&mut h);
    h.session.note_alive(NOW_MS);
    assert!(last_meta(&mut h).is_none());
}

#[test]
fn queued_messages_go_out_with_the_remaining_expiry_and_expired_ones_are_never_sent() {
    let mut h = Harness::new();
    let expiring = |payload: &'static str, secs: Option<u32>| {
        let mut p = Publish::new("t/1", payload);
        p.qos = QoS::AtLeastOnce;
        p.properties.message_expiry_interval = secs;
        p
    };
    // Offline: all three wait; the clock is NOW_MS.
    let short = h.session.publish(expiring("short", Some(10))).unwrap();
    h.session.publish(expiring("long", Some(100))).unwrap();
    h.session.publish(expiring("forever", None)).unwrap();
    h.flush();
    assert_eq!(
        h.store
            .queue
            .values()
            .map(|q| q.expires_at_ms)
            .collect::<Vec<_>>(),
        vec![Some(NOW_MS + 10_000), Some(NOW_MS + 100_000), None],
        "the deadline is stored with the message"
    );
    assert_eq!(h.session.next_tick_ms(), Some(NOW_MS + 10_000));
    h.session.tick(NOW_MS + 9_999);
    assert!(h.events().is_empty());
    h.session.tick(NOW_MS + 10_000);
    assert_eq!(
        h.events(),
        vec![Event::Expired {
            id: short,
            topic: "t/1".into()
        }]
    );
    h.flush();
    assert_eq!(h.store.queue.len(), 2, "dropped from the store");

    // 30.5 s later the broker is back: 69.5 s remain, sent as 70.
    h.session.tick(NOW_MS + 30_500);
    let sent = h.connack(false, None);
    let intervals: Vec<Option<u32>> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.properties.message_expiry_interval),
            _ => None,
        })
        .collect();
    assert_eq!(intervals, vec![Some(70), None]);

    // A restart after the deadline of a stored message drops it at once.
    let mut h = Harness::new();
    h.session.publish(expiring("stale", Some(5))).unwrap();
    h.flush();
    let mut restarted = Session::new(options(), h.store.stored(), NOW_MS + 5_000).unwrap();
    assert!(matches!(
        restarted.poll_event(),
        Some(Event::Expired { .. })
    ));
    let output = restarted.poll_output(Instant::now()).unwrap();
    assert!(matches!(output.commit.ops(), [StoreOp::RemoveQueue { .. }]));
}

/// What a broker that counts a QoS 2 message against its Receive Maximum until PUBREL (as
/// mosquitto does) makes of `sent`, holding `held` such messages before it: the most it holds
/// at once. A new PUBLISH over the maximum is refused with 0x97 and its message lost.
fn broker_holds_at_most(held: &[u16], sent: &[Packet]) -> usize {
    let mut holding: BTreeSet<u16> = held.iter().copied().collect();
    let mut most = holding.len();
    for packet in sent {
        match packet {
            Packet::PubRel(rel) => {
                holding.remove(&rel.packet_id);
            }
            Packet::Publish(p) if p.qos == QoS::ExactlyOnce => {
                holding.insert(p.packet_id);
            }
            _ => {}
        }
        most = most.max(holding.len());
    }
    most
}

/// The failure the crash proof found when identifiers were bound at acceptance: with the
/// broker's Receive Maximum at 2 and two QoS 2 messages awaiting PUBREL, the session sent
/// PUBLISHes ahead of the PUBRELs (in sequence order, the PUBREL records being newer), and the
/// broker refused them with 0x97. PUBRELs now go first on every new connection: after a lost
/// connection (the messages behind them in flight) and after a crash (queued).
#[test]
fn pubrels_go_before_publishes_on_a_new_connection_so_a_receive_maximum_of_2_is_never_exceeded() {
    for crash in [false, true] {
        let mut h = Harness::new();
        h.connack(false, Some(4));
        for payload in ["a", "b", "c", "d"] {
            h.publish(QoS::ExactlyOnce, payload);
        }
        let sent = h.flush();
        assert_eq!(publishes(&sent).len(), 4, "all four fill the window of 4");
        // a and b reach PUBREC: their PUBREL records come after c and d in sequence order.
        let ids: Vec<u16> = publishes(&sent)
            .iter()
            .take(2)
            .map(|(id, _, _)| *id)
            .collect();
        for id in &ids {
            h.session
                .handle_incoming(Packet::PubRec(PubAck::new(*id)), Instant::now())
                .unwrap();
        }
        // The PUBRELs are stored and sent; the broker holds both messages until they arrive.
        let rels = h.flush();
        assert_eq!(rels.len(), 2);
        if crash {
            h.crash();
        } else {
            h.session.connection_lost(NOW_MS);
            h.flush();
        }
        // The PUBRELs were lost on the way: the broker still holds a and b.
        let resent = h.connack(true, Some(2));
        assert_eq!(
            resent
                .iter()
                .filter(|p| matches!(p, Packet::PubRel(_)))
                .count(),
            2,
            "crash {crash}: both PUBRELs again: {resent:?}"
        );
        assert!(
            broker_holds_at_most(&ids, &resent) <= 2,
            "crash {crash}: the broker would refuse a PUBLISH: {resent:?}"
        );
    }
}
