//! Session and Message Expiry on a wall clock that is wrong at start and steps later, as on a
//! gateway without a real-time clock, against the in-process fake broker, on paused time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mooring::client::{ClientEvent, Events};
use mooring::packet::{Publish, QoS};
use mooring::store::MemoryStore;
use tokio::time::{Instant, timeout};

mod support;

use support::*;

/// 2026-12-01T00:00:00Z.
const T: u64 = 1_764_547_200_000;
const DAY: u64 = 86_400_000;

/// A wall clock the test sets: `base` plus the (paused) time elapsed since `since`.
fn wall(base: &Arc<AtomicU64>, since: Instant) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    let base = base.clone();
    move || {
        UNIX_EPOCH
            + Duration::from_millis(base.load(Ordering::SeqCst))
            + Instant::now().duration_since(since)
    }
}

/// Offline throughout: attempts a second apart, so that they do not flood the events.
fn slow(b: mooring::client::ClientBuilder) -> mooring::client::ClientBuilder {
    b.reconnect(
        mooring::client::Backoff::default()
            .with_initial(Duration::from_secs(1))
            .with_maximum(Duration::from_secs(2)),
    )
}

fn expiring(topic: &str, secs: u32) -> Publish {
    let mut p = Publish::new(topic, "reading");
    p.qos = QoS::AtLeastOnce;
    p.properties.message_expiry_interval = Some(secs);
    p
}

/// The topics of the messages that expired, among the events that wait.
fn expired(events: &mut Events) -> Vec<String> {
    std::iter::from_fn(|| events.try_recv())
        .filter_map(|e| match e {
            ClientEvent::MessageExpired { topic } => Some(topic),
            _ => None,
        })
        .collect()
}

/// The first run, with its clock right and the broker unreachable, queues a message with an
/// hour's expiry and stops: the broker, the store, and the base of the wall clock.
async fn first_run_queues_an_hour() -> (Broker, MemoryStore, Arc<AtomicU64>) {
    let broker = Broker::new();
    broker.fake.refuse.store(u32::MAX, Ordering::SeqCst);
    let store = MemoryStore::default();
    let base = Arc::new(AtomicU64::new(T));
    let (client, _m) = slow(builder(&broker, store.clone()))
        .wall_clock(wall(&base, Instant::now()))
        .start()
        .await
        .unwrap();
    drop(client.publish_with(expiring("hour", 3_600)).await.unwrap());
    client.disconnect().await.unwrap();
    (broker, store, base)
}

/// The first run, with its clock right, queues a message with an hour's expiry and stops.
/// The gateway boots again with its clock in 1970: the client's clock goes on from the
/// session's last stamp, so nothing expires at once, and it queues a message with ten
/// seconds of expiry. Then NTP steps the system clock to the real time, a day after the first
/// run: the hour-long message, a day old, expires at once; the ten-second one ten seconds
/// after it was accepted, and not before.
#[tokio::test(start_paused = true)]
async fn a_clock_that_boots_in_1970_and_steps_expires_what_expired_and_nothing_before_its_time() {
    let (broker, store, base) = first_run_queues_an_hour().await;

    // Powered off for most of a day; it boots with its clock at 1970.
    base.store(5_000, Ordering::SeqCst);
    let since = Instant::now();
    let mut b = slow(builder(&broker, store.clone())).wall_clock(wall(&base, since));
    let mut events = b.events();
    let (client, _m) = b.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(expired(&mut events).is_empty(), "something expired at boot");
    drop(
        client
            .publish_with(expiring("ten seconds", 10))
            .await
            .unwrap(),
    );
    let accepted = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // NTP steps the clock to the real time: a day after the first run.
    let elapsed = Instant::now().duration_since(since).as_millis() as u64;
    base.store(T + DAY - elapsed, Ordering::SeqCst);
    // The client looks at the system clock every few seconds at the least.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stepped = std::iter::from_fn(|| events.try_recv()).collect::<Vec<_>>();
    assert!(
        stepped
            .iter()
            .any(|e| matches!(e, ClientEvent::ClockStepped { shift_ms } if *shift_ms > 0)),
        "{stepped:?}"
    );
    let expired_now: Vec<&String> = stepped
        .iter()
        .filter_map(|e| match e {
            ClientEvent::MessageExpired { topic } => Some(topic),
            _ => None,
        })
        .collect();
    assert_eq!(
        expired_now,
        vec!["hour"],
        "only what ran out during the downtime"
    );
    tokio::time::sleep_until(accepted + Duration::from_millis(9_500)).await;
    assert!(
        expired(&mut events).is_empty(),
        "expired before its ten seconds"
    );
    tokio::time::sleep_until(accepted + Duration::from_millis(11_000)).await;
    assert_eq!(expired(&mut events), vec!["ten seconds"]);
    assert_eq!(client.stats().queued, 0);
    timeout(Duration::from_secs(60), client.disconnect())
        .await
        .unwrap()
        .unwrap();
}

/// A run on a clock behind the session's stamps that never saw a step (no network, no NTP)
/// stamped what it queued in the session's own frame; the next start, with the clock right,
/// moves those stamps to the right time instead of finding them all a day old.
#[tokio::test(start_paused = true)]
async fn an_unsure_run_never_corrected_is_caught_up_by_the_next_start_with_the_clock_right() {
    let broker = Broker::new();
    broker.fake.refuse.store(u32::MAX, Ordering::SeqCst);
    let store = MemoryStore::default();
    let base = Arc::new(AtomicU64::new(T));
    let (client, _m) = slow(builder(&broker, store.clone()))
        .wall_clock(wall(&base, Instant::now()))
        .start()
        .await
        .unwrap();
    client.disconnect().await.unwrap();

    // A day later it boots in 1970, queues a message with ten minutes of expiry, and stops.
    base.store(5_000, Ordering::SeqCst);
    let (client, _m) = slow(builder(&broker, store.clone()))
        .wall_clock(wall(&base, Instant::now()))
        .start()
        .await
        .unwrap();
    drop(
        client
            .publish_with(expiring("ten minutes", 600))
            .await
            .unwrap(),
    );
    client.disconnect().await.unwrap();

    // A minute later it starts with the clock right.
    base.store(T + DAY + 60_000, Ordering::SeqCst);
    let (client, _m) = slow(builder(&broker, store.clone()))
        .wall_clock(wall(&base, Instant::now()))
        .start()
        .await
        .unwrap();
    // Counted, not read from events: refused attempts flood those meanwhile.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let stats = client.stats();
    assert_eq!(
        (stats.expired, stats.queued),
        (0, 1),
        "a minute-old message expired at start"
    );
    tokio::time::sleep(Duration::from_secs(530)).await;
    assert_eq!(client.stats().expired, 0, "expired before its ten minutes");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(client.stats().expired, 1, "kept past its ten minutes");
}

/// Booted in 1970 and never corrected (no NTP), the client's clock goes on from the session's
/// last stamp: a message with an hour's expiry expires an hour into the run, as if the power
/// had been off no time at all (how long it was off is unknowable), instead of never.
#[tokio::test(start_paused = true)]
async fn a_clock_that_boots_behind_the_session_runs_on_from_its_last_stamp() {
    let (broker, store, base) = first_run_queues_an_hour().await;

    base.store(5_000, Ordering::SeqCst);
    let (client, _m) = slow(builder(&broker, store.clone()))
        .wall_clock(wall(&base, Instant::now()))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3_500)).await;
    assert_eq!(client.stats().expired, 0, "expired before its hour");
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(
        client.stats().expired,
        1,
        "never expires on a clock stuck in 1970"
    );
}
