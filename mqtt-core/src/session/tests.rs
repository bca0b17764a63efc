//! Unit tests of the engine, one per rule, named after it.

use super::*;
use crate::packet::{ConnAckProperties, PacketType, Publish};
use crate::store::StoreOp;

/// What a store holds after committing the batches: the test's stand-in for a real store.
#[derive(Default)]
struct Committed {
    outbound: BTreeMap<u64, OutboundRecord>,
    inbound: BTreeSet<u16>,
    queue: BTreeMap<u64, QueuedPublish>,
}

impl Committed {
    fn apply(&mut self, batch: &Batch) {
        for op in batch.ops() {
            match op.clone() {
                StoreOp::SetMeta(_) => {}
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
            }
        }
    }

    fn stored(&self) -> StoredSession {
        StoredSession {
            meta: None,
            outbound: self.outbound.clone().into_iter().collect(),
            inbound: self.inbound.iter().copied().collect(),
            queue: self.queue.clone().into_iter().collect(),
        }
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
            session: Session::new(SessionOptions::new("c"), StoredSession::default()).unwrap(),
            store: Committed::default(),
        }
    }

    /// Commits what the session asks and returns the packets it then sends.
    fn flush(&mut self) -> Vec<Packet> {
        let mut sent = Vec::new();
        while let Some(output) = self.session.poll_output() {
            self.store.apply(&output.commit);
            sent.extend(output.send);
        }
        sent
    }

    fn connack(&mut self, session_present: bool, receive_maximum: Option<u16>) -> Vec<Packet> {
        let mut connack = ConnAck::new(session_present);
        connack.properties = ConnAckProperties {
            receive_maximum,
            ..ConnAckProperties::default()
        };
        self.session.handle_connack(&connack).unwrap();
        self.flush()
    }

    fn publish(&mut self, qos: QoS, payload: &'static str) -> DeliveryId {
        let mut p = Publish::new("t/1", payload);
        p.qos = qos;
        self.session.publish(p).unwrap()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    /// Rebuilds the session from what was committed, as after a crash.
    fn crash(&mut self) {
        self.session = Session::new(SessionOptions::new("c"), self.store.stored()).unwrap();
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
    let output = h.session.poll_output().unwrap();
    // The record and the packet come in one Output: the record to commit, then the packet.
    assert!(output.commit.ops().iter().any(|op| matches!(
        op,
        StoreOp::PutOutbound {
            record: OutboundRecord::Publish(_),
            ..
        }
    )));
    assert_eq!(publishes(&output.send), vec![(1, false, Bytes::from("a"))]);
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
    assert!(h.store.queue.is_empty());
    assert_eq!(h.store.outbound.len(), 1, "the QoS 2 flow is in flight");
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
    let output = h.session.poll_output().unwrap();
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
    h.session.connection_lost();
    // Order: PUBLISH b, PUBLISH c (sent first), then PUBREL 1 (released later).
    let sent = h.connack(true, Some(2));
    assert_eq!(
        sent,
        vec![
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
    h.session.handle_puback(&PubAck::new(2));
    assert_eq!(h.flush(), vec![Packet::PubRel(PubAck::new(1))]);
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
    assert_eq!(h.session.in_flight(), 2);
    let sent = h.connack(true, None);
    assert_eq!(
        sent.iter().map(|p| p.packet_type()).collect::<Vec<_>>(),
        vec![PacketType::Publish, PacketType::PubRel]
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
    h.session.connection_lost();
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
    assert_eq!(h.store.outbound.len(), 1);
}

#[test]
fn mqtt_3_2_2_4_session_present_after_clean_start_is_a_protocol_error() {
    let mut options = SessionOptions::new("c");
    options.clean_start = true;
    let mut session = Session::new(options, StoredSession::default()).unwrap();
    assert!(session.connect_packet().clean_start);
    assert_eq!(
        session.handle_connack(&ConnAck::new(true)),
        Err(ProtocolViolation::UnexpectedSession)
    );
    assert!(session.handle_connack(&ConnAck::new(false)).is_ok());
    assert!(
        !session.connect_packet().clean_start,
        "reconnects resume the session"
    );
}

#[test]
fn mqtt_3_2_2_11_and_14_maximum_qos_and_retain_available() {
    let mut h = Harness::new();
    let mut connack = ConnAck::new(false);
    connack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    connack.properties.retain_available = Some(false);
    h.session.handle_connack(&connack).unwrap();
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
    h.session.handle_connack(&connack).unwrap();
    assert!(!h.session.is_connected());
    assert_eq!(
        h.events(),
        vec![Event::ConnectionRefused {
            reason: ReasonCode::NotAuthorized
        }]
    );
}
