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
