//! Limits of the server known in advance (a broker profile's): refused when the publish is
//! made, nothing stored.

use super::*;
use crate::session::PublishLimits;

fn limited() -> Harness {
    let mut options = options();
    options.publish_limits = PublishLimits {
        maximum_qos: QoS::AtLeastOnce,
        retain_available: false,
        maximum_payload_bytes: Some(8),
        maximum_packet_bytes: Some(40),
        maximum_topic_levels: Some(3),
        maximum_topic_bytes: Some(12),
    };
    Harness {
        session: Session::new(options, StoredSession::default(), NOW_MS).unwrap(),
        store: Committed::default(),
    }
}

fn attempt(
    h: &mut Harness,
    topic: &str,
    payload: &'static str,
    qos: QoS,
    retain: bool,
) -> Result<PublishId, PublishError> {
    let mut p = Publish::new(topic, payload);
    p.qos = qos;
    p.retain = retain;
    h.session.publish(p)
}

#[test]
fn a_publish_beyond_a_known_limit_is_refused_before_any_connack_and_nothing_is_stored() {
    let mut h = limited();
    let refused = [
        attempt(&mut h, "a/b", "x", QoS::ExactlyOnce, false),
        attempt(&mut h, "a/b", "x", QoS::AtLeastOnce, true),
        attempt(&mut h, "a/b", "123456789", QoS::AtLeastOnce, false),
        attempt(&mut h, "a/b/c/d", "x", QoS::AtLeastOnce, false),
        attempt(&mut h, "abcdefghijklm", "x", QoS::AtLeastOnce, false),
    ];
    assert!(matches!(
        refused[0],
        Err(PublishError::QosNotSupported {
            requested: QoS::ExactlyOnce,
            maximum: QoS::AtLeastOnce
        })
    ));
    assert!(matches!(refused[1], Err(PublishError::RetainNotSupported)));
    for (result, what) in refused[2..].iter().zip([
        "payload in bytes",
        "number of topic levels",
        "topic in bytes",
    ]) {
        assert!(
            matches!(result, Err(PublishError::OverLimit { what: w, .. }) if *w == what),
            "{result:?}"
        );
    }
    h.flush();
    assert!(h.store.stored().queue.is_empty());
    // At the limits, it goes.
    assert!(attempt(&mut h, "a/b/cdefghij", "12345678", QoS::AtLeastOnce, false).is_ok());
}

#[test]
fn the_packet_limit_counts_the_whole_packet() {
    let mut h = limited();
    let mut p = Publish::new("a", "1");
    p.qos = QoS::AtLeastOnce;
    p.properties
        .user_properties
        .push(UserProperty::new("site", "plant-7-line-3-cell-12-robot"));
    let refused = h.session.publish(p);
    assert!(
        matches!(
            refused,
            Err(PublishError::OverLimit {
                what: "packet in bytes",
                limit: 40,
                ..
            })
        ),
        "{refused:?}"
    );
}
