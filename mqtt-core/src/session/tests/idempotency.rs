//! Effectively-once over QoS 1: the publisher's idempotency keys, and the subscriber that
//! drops copies by them, with the keys it kept in the store.

use std::time::Duration;

use super::inbound::{incoming, tags};
use super::*;
use crate::idempotency::{self, KeyCarrier, KeyStamp};
use crate::session::Deduplication;

const RUN: u64 = 0x00c0_ffee;

fn keyed_options(carrier: KeyCarrier) -> SessionOptions {
    let mut options = options();
    options.publish_keys = Some(KeyStamp { run: RUN, carrier });
    options
}

fn publisher(carrier: KeyCarrier) -> Harness {
    Harness {
        session: Session::new(keyed_options(carrier), StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    }
}

/// The PUBLISHes among `packets`.
fn published(packets: &[Packet]) -> Vec<Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn dedup_options(limits: Deduplication) -> SessionOptions {
    let mut options = options();
    options.manual_ack = true;
    options.properties.receive_maximum = Some(10);
    options.deduplication = Some(limits);
    options
}

fn subscriber_with(limits: Deduplication) -> Harness {
    let mut h = Harness {
        session: Session::new(dedup_options(limits), StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    };
    h.connack(false, None);
    h.events();
    h
}

fn subscriber() -> Harness {
    subscriber_with(Deduplication::default())
}

/// A QoS 1 message from the server carrying `key`.
fn keyed(packet_id: u16, key: &str) -> Publish {
    let mut p = incoming(QoS::AtLeastOnce, packet_id, false);
    p.properties
        .user_properties
        .push(UserProperty::new(idempotency::KEY_PROPERTY, key));
    p
}

/// Restarts the subscriber on what its store holds, as after SIGKILL, and reconnects.
fn restart(h: &mut Harness, limits: Deduplication) {
    h.session = Session::new(dedup_options(limits), h.store.stored(), NOW_MS).unwrap();
    h.session
        .handle_connack(&ConnAck::new(true), Instant::now())
        .unwrap();
    h.flush();
    h.events();
}

#[test]
fn every_qos1_publish_carries_a_key_of_its_run_and_sequence_number_and_keeps_it_when_resent() {
    let mut h = publisher(KeyCarrier::UserProperty);
    h.connack(false, None);
    let first = h.publish(QoS::AtLeastOnce, "a");
    h.publish(QoS::AtMostOnce, "b");
    h.publish(QoS::ExactlyOnce, "c");
    let second = h.publish(QoS::AtLeastOnce, "d");
    let sent = published(&h.flush());
    let keys: Vec<Option<&str>> = sent.iter().map(idempotency::key_of).collect();
    let expected = |seq: u64| format!("c/{RUN:016x}/{seq}");
    assert_eq!(
        keys,
        vec![
            Some(expected(first).as_str()),
            None,
            None,
            Some(expected(second).as_str())
        ]
    );
    // Killed before the PUBACKs: the restart resends both under the same keys.
    h.session = Session::new(
        keyed_options(KeyCarrier::UserProperty),
        h.store.stored(),
        NOW_MS,
    )
    .unwrap();
    let resent = published(&h.connack(true, None));
    let resent_keys: Vec<Option<&str>> = resent
        .iter()
        .filter(|p| p.qos == QoS::AtLeastOnce)
        .map(idempotency::key_of)
        .collect();
    assert_eq!(
        resent_keys,
        vec![
            Some(expected(first).as_str()),
            Some(expected(second).as_str())
        ]
    );
    assert!(resent.iter().all(|p| p.dup || p.qos == QoS::AtMostOnce));
}

#[test]
fn a_queued_message_sealed_in_an_envelope_goes_out_with_its_key_around_the_payload() {
    let mut h = publisher(KeyCarrier::Envelope);
    let id = h.publish(QoS::AtLeastOnce, "21.5");
    h.flush();
    let sent = published(&h.connack(false, None));
    assert_eq!(sent.len(), 1);
    assert!(sent[0].properties.user_properties.is_empty());
    let (key, payload) = idempotency::open(&sent[0].payload).unwrap();
    assert_eq!(key, format!("c/{RUN:016x}/{id}"));
    assert_eq!(&payload[..], b"21.5");
}

#[test]
fn a_forwarded_message_keeps_the_key_it_carries() {
    let mut h = publisher(KeyCarrier::UserProperty);
    h.connack(false, None);
    let mut p = Publish::new("up/1", "x");
    p.qos = QoS::AtLeastOnce;
    p.properties
        .user_properties
        .push(UserProperty::new(idempotency::KEY_PROPERTY, "origin/1/9"));
    p.properties
        .user_properties
        .push(UserProperty::new(idempotency::KEY_PROPERTY, "second"));
    h.session.publish(p).unwrap();
    let sent = published(&h.flush());
    let keys: Vec<&str> = sent[0]
        .properties
        .user_properties
        .iter()
        .filter(|p| p.name == idempotency::KEY_PROPERTY)
        .map(|p| p.value.as_str())
        .collect();
    assert_eq!(keys, vec!["origin/1/9"], "one key, the one it came with");
}

#[test]
fn a_key_too_long_for_an_envelope_is_refused_and_nothing_is_stored() {
    let mut h = publisher(KeyCarrier::Envelope);
    let mut p = Publish::new("up/1", "x");
    p.qos = QoS::AtLeastOnce;
    p.properties.user_properties.push(UserProperty::new(
        idempotency::KEY_PROPERTY,
        "k".repeat(70_000),
    ));
    assert!(matches!(
        h.session.publish(p),
        Err(PublishError::KeyTooLong)
    ));
    h.flush();
    assert!(h.store.stored().queue.is_empty());
}

#[test]
fn a_copy_of_a_handled_message_is_acked_and_not_handed_over_even_after_a_restart() {
    let mut h = subscriber();
    h.session.handle_publish(keyed(1, "gw/1/0")).unwrap();
    let t = tags(&h.events());
    h.session.ack(t[0]).unwrap();
    assert_eq!(h.flush(), vec![Packet::PubAck(PubAck::new(1))]);
    assert_eq!(
        h.store.stored().seen_keys.len(),
        1,
        "the key is in the store"
    );
    // The publisher resent it (its PUBACK lost): a new message to the broker.
    h.session.handle_publish(keyed(2, "gw/1/0")).unwrap();
    assert_eq!(h.flush(), vec![Packet::PubAck(PubAck::new(2))]);
    assert!(tags(&h.events()).is_empty());
    // Killed and started again: the key came back from the store.
    restart(&mut h, Deduplication::default());
    h.session.handle_publish(keyed(3, "gw/1/0")).unwrap();
    h.session.handle_publish(keyed(4, "gw/1/1")).unwrap();
    assert_eq!(
        tags(&h.events()).len(),
        1,
        "only the new key is handed over"
    );
    assert_eq!(h.flush(), vec![Packet::PubAck(PubAck::new(3))]);
    assert_eq!(h.session.duplicates_dropped(), 1);
}

#[test]
fn the_key_is_committed_before_the_puback_goes_out() {
    let mut h = subscriber();
    h.session.handle_publish(keyed(1, "gw/1/0")).unwrap();
    let t = tags(&h.events());
    h.session.ack(t[0]).unwrap();
    let output = h.session.poll_output(Instant::now()).unwrap();
    assert!(
        output
            .commit
            .ops()
            .iter()
            .any(|op| matches!(op, StoreOp::PutSeenKey { seen, .. } if seen.key == "gw/1/0")),
        "{:?}",
        output.commit
    );
    assert_eq!(output.send, vec![Packet::PubAck(PubAck::new(1))]);
    assert!(output.early.is_empty());
}

#[test]
fn a_copy_arriving_while_the_application_holds_the_message_is_acked_behind_it() {
    let mut h = subscriber();
    h.session.handle_publish(keyed(1, "gw/1/0")).unwrap();
    h.session.handle_publish(keyed(2, "gw/1/0")).unwrap();
    let t = tags(&h.events());
    assert_eq!(t.len(), 1, "the copy is not handed over");
    assert!(
        h.flush().is_empty(),
        "nothing is acked before the message is"
    );
    h.session.ack(t[0]).unwrap();
    assert_eq!(
        h.flush(),
        vec![
            Packet::PubAck(PubAck::new(1)),
            Packet::PubAck(PubAck::new(2))
        ]
    );
}

#[test]
fn the_redelivery_of_a_message_the_application_still_holds_is_answered_by_its_ack() {
    let mut h = subscriber();
    h.session.handle_publish(keyed(1, "gw/1/0")).unwrap();
    let t = tags(&h.events());
    h.session.connection_lost(NOW_MS);
    h.connack(true, None);
    // The server sends it again under another identifier while the application holds it.
    h.session.handle_publish(keyed(5, "gw/1/0")).unwrap();
    assert!(tags(&h.events()).is_empty(), "not handed over twice");
    assert!(
        h.flush().is_empty(),
        "not acked before the application is done"
    );
    assert!(h.session.awaits_application(t[0]));
    h.session.ack(t[0]).unwrap();
    assert_eq!(h.flush(), vec![Packet::PubAck(PubAck::new(5))]);
    assert_eq!(h.store.stored().seen_keys.len(), 1);
}

#[test]
fn a_refused_message_and_one_given_up_after_the_connection_dropped_are_handed_over_again() {
    let mut h = subscriber();
    h.session.handle_publish(keyed(1, "gw/1/0")).unwrap();
    h.session.handle_publish(keyed(2, "gw/1/1")).unwrap();
    let t = tags(&h.events());
    h.session
        .reject(t[1], ReasonCode::UnspecifiedError)
        .unwrap();
    h.session.connection_lost(NOW_MS);
    // The client gives the first up (released after the connection dropped).
    h.session.abandon(t[0]);
    h.connack(true, None);
    // The server sends the first again; the publisher resends the refused one.
    h.session.handle_publish(keyed(1, "gw/1/0")).unwrap();
    h.session.handle_publish(keyed(3, "gw/1/1")).unwrap();
    assert_eq!(tags(&h.events()).len(), 2);
    assert_eq!(h.session.duplicates_dropped(), 0);
    assert!(h.store.stored().seen_keys.is_empty());
}

#[test]
fn an_ack_after_the_connection_dropped_records_the_key_so_the_redelivery_is_not_handed_over() {
    let mut h = subscriber();
    h.session.handle_publish(keyed(1, "gw/1/0")).unwrap();
    let t = tags(&h.events());
    h.session.connection_lost(NOW_MS);
    h.session.ack(t[0]).unwrap();
    h.flush();
    h.connack(true, None);
    h.session.handle_publish(keyed(1, "gw/1/0")).unwrap();
    assert!(tags(&h.events()).is_empty());
    assert_eq!(h.flush(), vec![Packet::PubAck(PubAck::new(1))]);
}

/// The keys the store holds, oldest first.
fn kept_keys(h: &Harness) -> Vec<String> {
    h.store
        .stored()
        .seen_keys
        .into_iter()
        .map(|(_, s)| s.key)
        .collect()
}

/// A message with `key` arrives and the application acks it.
fn handle(h: &mut Harness, packet_id: u16, key: &str) {
    h.session.handle_publish(keyed(packet_id, key)).unwrap();
    let t = tags(&h.events());
    h.session.ack(t[0]).unwrap();
    h.flush();
}

#[test]
fn keys_are_kept_up_to_the_count_and_the_age_asked_for_and_the_store_follows() {
    let limits = Deduplication {
        keep_at_most: 2,
        keep_for: Duration::from_secs(60),
        envelopes: false,
    };
    let mut h = subscriber_with(limits);
    for (id, key) in [(1, "k0"), (2, "k1"), (3, "k2")] {
        handle(&mut h, id, key);
    }
    let kept = kept_keys(&h);
    assert_eq!(kept, vec!["k1", "k2"], "the oldest went first");
    // k0 was forgotten: a copy of it is handed over again.
    h.session.handle_publish(keyed(4, "k0")).unwrap();
    let t = tags(&h.events());
    assert_eq!(t.len(), 1);
    // A minute and more later, acking one more drops every key older than that.
    h.session.tick(NOW_MS + 61_000);
    h.session.ack(t[0]).unwrap();
    h.flush();
    let kept = kept_keys(&h);
    assert_eq!(kept, vec!["k0"]);
    assert_eq!(h.session.seen_keys_kept(), 1);
    // After a restart the numbering goes on above what is stored.
    restart(&mut h, limits);
    handle(&mut h, 5, "k3");
    let numbers: Vec<u64> = h.store.stored().seen_keys.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, vec![3, 4]);
}

#[test]
fn an_envelope_is_opened_for_the_application_and_its_key_deduplicates() {
    let limits = Deduplication {
        envelopes: true,
        ..Deduplication::default()
    };
    let mut h = subscriber_with(limits);
    for packet_id in [1, 2] {
        let mut p = incoming(QoS::AtLeastOnce, packet_id, false);
        p.payload = idempotency::seal("gw/2/7", b"21.5").unwrap();
        h.session.handle_publish(p).unwrap();
    }
    let events = h.events();
    let [Event::Message { tag, publish }] = &events[..] else {
        panic!("one message: {events:?}");
    };
    assert_eq!(&publish.payload[..], b"21.5");
    assert_eq!(idempotency::key_of(publish), Some("gw/2/7"));
    h.session.ack(*tag).unwrap();
    assert_eq!(h.flush().len(), 2);
    assert_eq!(h.session.duplicates_dropped(), 1);
}

#[test]
fn without_deduplication_every_copy_is_handed_over() {
    let mut h = super::inbound::manual();
    h.session.handle_publish(keyed(1, "gw/1/0")).unwrap();
    let t = tags(&h.events());
    h.session.ack(t[0]).unwrap();
    h.flush();
    h.session.handle_publish(keyed(2, "gw/1/0")).unwrap();
    assert_eq!(tags(&h.events()).len(), 1);
    assert!(h.store.stored().seen_keys.is_empty());
}

/// What the server and the application do, for the property test below.
#[derive(Debug, Clone)]
enum Step {
    /// A copy of the message with key `k<n>` arrives.
    Arrive(u8),
    /// The application acks (true) or refuses the oldest message it holds.
    Settle(bool),
    /// The connection drops and comes back; the application keeps what it holds.
    Reconnect,
    /// SIGKILL and a restart on what the store holds; what the application held is gone.
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..5).prop_map(Step::Arrive),
        4 => Just(Step::Settle(true)),
        1 => Just(Step::Settle(false)),
        1 => Just(Step::Reconnect),
        1 => Just(Step::Crash),
    ]
}

use proptest::prelude::*;

proptest! {
    /// Whatever the order of copies, acks, refusals, lost connections and crashes: a copy is
    /// acknowledged with Success only once the application acked a message with its key and
    /// that key is in the store (so the server never forgets a message the application did
    /// not finish), and the application is never handed a message whose key the store holds,
    /// nor one it holds already.
    #[test]
    fn no_copy_is_acked_before_its_message_is_handled_and_none_is_handed_over_after(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        let limits = Deduplication::default();
        let mut h = subscriber_with(limits);
        let mut next_id: u16 = 1;
        let mut copies: BTreeMap<u16, String> = BTreeMap::new();
        let mut held: std::collections::VecDeque<(MessageTag, String)> = Default::default();
        let stored = |h: &Harness| -> BTreeSet<String> {
            h.store.stored().seen_keys.into_iter().map(|(_, s)| s.key).collect()
        };
        let check_output = |h: &mut Harness,
                                copies: &BTreeMap<u16, String>,
                                held: &mut std::collections::VecDeque<(MessageTag, String)>|
         -> Result<(), TestCaseError> {
            let sent = h.flush();
            let keys = stored(h);
            for packet in sent {
                if let Packet::PubAck(ack) = packet
                    && ack.reason_code == ReasonCode::Success
                {
                    let key = &copies[&ack.packet_id];
                    prop_assert!(keys.contains(key), "copy {} of {key} acked unhandled", ack.packet_id);
                }
            }
            for event in h.events() {
                if let Event::Message { tag, publish } = event {
                    let key = idempotency::key_of(&publish).unwrap().to_owned();
                    prop_assert!(!keys.contains(&key), "{key} handed over after it was handled");
                    prop_assert!(
                        !held.iter().any(|(_, k)| *k == key),
                        "{key} handed over while the application holds it"
                    );
                    held.push_back((tag, key));
                }
            }
            Ok(())
        };
        for step in steps {
            match step {
                Step::Arrive(n) => {
                    let key = format!("k{n}");
                    copies.insert(next_id, key.clone());
                    h.session.handle_publish(keyed(next_id, &key)).unwrap();
                    next_id += 1;
                }
                Step::Settle(ack) => {
                    if let Some((tag, _)) = held.pop_front() {
                        let settled = if ack {
                            h.session.ack(tag)
                        } else {
                            h.session.reject(tag, ReasonCode::UnspecifiedError)
                        };
                        // A message of an earlier connection may be given up meanwhile.
                        let _ = settled;
                    }
                }
                Step::Reconnect => {
                    h.flush();
                    h.session.connection_lost(NOW_MS);
                    h.session
                        .handle_connack(&ConnAck::new(true), Instant::now())
                        .unwrap();
                }
                Step::Crash => {
                    held.clear();
                    h.session = Session::new(dedup_options(limits), h.store.stored(), NOW_MS).unwrap();
                    h.session
                        .handle_connack(&ConnAck::new(true), Instant::now())
                        .unwrap();
                }
            }
            check_output(&mut h, &copies, &mut held)?;
        }
    }
}
