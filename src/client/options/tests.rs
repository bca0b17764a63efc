use super::*;

#[test]
fn backoff_bound_grows_and_caps() {
    let b = Backoff::default();
    assert_eq!(b.bound(0), Duration::from_millis(100));
    assert_eq!(b.bound(1), Duration::from_millis(200));
    assert_eq!(b.bound(3), Duration::from_millis(800));
    assert_eq!(b.bound(20), Duration::from_secs(30));
    assert_eq!(b.bound(u32::MAX), Duration::from_secs(30));
}

#[test]
fn jitter_spans_zero_to_bound() {
    let b = Backoff::default();
    assert_eq!(b.delay(2, 0), Duration::ZERO);
    let top = b.delay(2, u64::MAX);
    assert!(top <= b.bound(2) && top > b.bound(2) * 99 / 100, "{top:?}");
    let mid = b.delay(2, u64::MAX / 2);
    assert!(mid > b.bound(2) * 45 / 100 && mid < b.bound(2) * 55 / 100);
}

#[test]
fn settings_refuse_missing_or_bad_servers() {
    assert!(matches!(
        ClientBuilder::default().settings(),
        Err(super::super::error::ClientError::NoServer)
    ));
    assert!(matches!(
        ClientBuilder::default().server("nope").settings(),
        Err(super::super::error::ClientError::Url(_))
    ));
}

/// An address whose scheme needs a feature this build lacks is refused when the client is
/// built, naming the feature, instead of failing every connection attempt. The test command
/// runs this without default features too, where `mqtts://` and `ws://` are refused.
#[test]
fn an_address_whose_feature_is_off_is_refused_naming_the_feature() {
    let tls = cfg!(feature = "tls");
    let websocket = cfg!(feature = "websocket");
    for (address, missing) in [
        ("mqtt://h", None),
        ("mqtts://h", (!tls).then_some("tls")),
        ("ws://h", (!websocket).then_some("websocket")),
        (
            "wss://h",
            (!tls)
                .then_some("tls")
                .or((!websocket).then_some("websocket")),
        ),
    ] {
        let result = ClientBuilder::default().server(address).settings();
        match missing {
            None => assert!(result.is_ok(), "{address}"),
            Some(feature) => match result {
                Err(super::super::error::ClientError::FeatureMissing {
                    feature: named,
                    needed_for,
                }) => {
                    assert_eq!(named, feature, "{address}");
                    assert!(needed_for.starts_with(address), "{needed_for}");
                }
                Err(other) => panic!("{address}: {other}"),
                Ok(_) => panic!("{address}: accepted"),
            },
        }
    }
}

/// A fraction of a second is rounded up, never cut off: 500 ms of keep alive is 1 s, not 0
/// (off), and a session expiry of 1.5 s is 2 s, not 1.
#[test]
fn sub_second_keep_alive_and_expiry_round_up_never_to_zero() {
    let settings = ClientBuilder::default()
        .server("mqtt://h")
        .keep_alive(Duration::from_millis(500))
        .session_expiry(Duration::from_millis(1_500))
        .settings()
        .unwrap();
    assert_eq!(settings.session.keep_alive, 1);
    assert_eq!(settings.session.properties.session_expiry_interval, Some(2));
    let long = ClientBuilder::default()
        .server("mqtt://h")
        .keep_alive(Duration::from_secs(100_000))
        .session_expiry(Duration::MAX)
        .settings()
        .unwrap();
    assert_eq!(long.session.keep_alive, u16::MAX);
    assert_eq!(
        long.session.properties.session_expiry_interval,
        Some(u32::MAX),
        "never expires"
    );
}
