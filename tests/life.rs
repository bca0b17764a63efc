//! The client's life as the application sees it, against the in-process fake broker: why it
//! stopped, the store released when `disconnect` returns, events a slow reader cannot lose,
//! errors a caller can match, the Will after a panic, and backoff that survives connections
//! the server ends at once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::error::Error;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mooring::client::{
    Backoff, Client, ClientError, ClientEvent, ConnectError, ConnectionLoss, ProtocolError,
    ReconnectReason, StopReason,
};
use mooring::packet::{Packet, ProtocolVersion, QoS, ReasonCode, Will};
use mooring::store::{MemoryStore, RedbStore, StoreError};
use tokio::time::timeout;

mod support;

use support::*;

#[tokio::test]
async fn closed_resolves_with_the_reason_the_client_stopped() {
    let mut broker = Broker::new();
    let (client, _m, _peer) = connected_default(&mut broker).await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.closed().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    client.disconnect().await.unwrap();
    assert!(matches!(waiting.await.unwrap(), StopReason::Disconnected));
    // Asked again later, the same answer.
    assert!(matches!(client.closed().await, StopReason::Disconnected));

    let broker = Broker::new();
    broker.fake.refuse.store(u32::MAX, Ordering::SeqCst);
    let (client, _m) = builder(&broker, MemoryStore::default())
        .reconnect(fast_backoff().with_max_attempts(Some(2)))
        .start()
        .await
        .unwrap();
    match timeout(WAIT, client.closed()).await.unwrap() {
        StopReason::AttemptsExhausted { attempts: 2, last } => {
            assert!(matches!(last, ConnectError::Transport(_)), "{last}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_returns_once_the_store_is_released_so_it_opens_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.redb");
    let mut broker = Broker::new();
    for round in 0..20 {
        let store = RedbStore::open(&path).unwrap();
        let b = Client::builder()
            .server(URL)
            .client_id("gw")
            .store(store)
            .connector(broker.connector())
            .reconnect(fast_backoff());
        let (client, _m, mut peer) = connected(&mut broker, b).await;
        let _ = client
            .publish("t", format!("{round}"), QoS::AtMostOnce)
            .await;
        let closing = tokio::spawn({
            let client = client.clone();
            async move { client.disconnect().await }
        });
        while let Some(packet) = peer.try_recv().await {
            if matches!(packet, Packet::Disconnect(_)) {
                break;
            }
        }
        drop(peer);
        closing.await.unwrap().unwrap();
        // No wait, no retry: the file is free the moment disconnect returned.
        drop(RedbStore::open(&path).expect("the store is released"));
    }
}

/// The store is dropped (its file lock, its thread, its connections let go) before
/// `disconnect` returns, however long letting go takes: the one who disconnected may open it
/// again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_returns_only_after_the_store_is_dropped() {
    let mut broker = Broker::new();
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let b = Client::builder()
        .server(URL)
        .client_id("gw")
        .store(ControlledStore::releasing_slowly(
            &released,
            Duration::from_millis(300),
        ))
        .connector(broker.connector());
    let (client, _m, peer) = connected(&mut broker, b).await;
    drop(peer);
    client.disconnect().await.unwrap();
    assert!(
        released.load(Ordering::SeqCst),
        "disconnect returned before the store was let go"
    );
    assert!(matches!(client.closed().await, StopReason::Disconnected));
}

#[tokio::test]
async fn a_slow_reader_loses_no_critical_event_and_hears_what_it_missed() {
    let mut broker = Broker::new();
    let mut b = builder(&broker, MemoryStore::default()).reconnect(
        Backoff::default()
            .with_initial(Duration::from_micros(1))
            .with_maximum(Duration::from_micros(10)),
    );
    let mut events = b.events();
    let (_client, _m, peer) = connected(&mut broker, b).await;
    // Connected first, then hundreds of ordinary events behind it: refused attempts, two
    // events each (ConnectFailed, Reconnecting), then Connected again.
    broker.fake.refuse.store(300, Ordering::SeqCst);
    drop(peer);
    broker.next().await.accept(true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read: Vec<ClientEvent> = std::iter::from_fn(|| events.try_recv()).collect();
    let missed: u64 = read
        .iter()
        .map(|e| match e {
            ClientEvent::EventsMissed { count } => *count,
            _ => 0,
        })
        .sum();
    assert!(missed > 300, "missed {missed}");
    let connected = read
        .iter()
        .filter(|e| matches!(e, ClientEvent::Connected { .. }))
        .count();
    assert_eq!(connected, 2, "every Connected is kept, the first one too");
    assert!(read.len() <= 256 + 16, "{} kept", read.len());
}

/// Every error a caller can meet prints each cause once: no message repeats the message of its
/// source, so a chain printed whole (`anyhow`'s `{:#}`) says everything once.
#[test]
fn error_chains_print_each_cause_once() {
    fn io(what: &str) -> std::io::Error {
        std::io::Error::other(what.to_owned())
    }
    let samples: Vec<Box<dyn Error>> = vec![
        Box::new(ClientError::Store(std::sync::Arc::new(
            StoreError::backend("redb", io("disk full")),
        ))),
        Box::new(StoreError::open(
            std::path::Path::new("/x/gw.redb"),
            true,
            io("bad magic"),
        )),
        Box::new(ClientError::Connect(ConnectError::Closed(
            ConnectionLoss::Io(std::sync::Arc::new(io("reset by peer"))),
        ))),
        Box::new(StopReason::AttemptsExhausted {
            attempts: 5,
            last: ConnectError::Ownership(std::sync::Arc::new(StoreError::backend(
                "postgresql",
                io("timeout"),
            ))),
        }),
        Box::new(ConnectionLoss::Protocol(ProtocolError::Violation(
            mooring::session::ProtocolViolation::UnexpectedAuth,
        ))),
        Box::new(
            mooring::packet::Codec::default()
                .decode(&mut bytes::BytesMut::from(&[0x36u8, 0x02, 0x00, 0x00][..]))
                .unwrap_err(),
        ),
        Box::new(mooring::client::TlsOptions::with_ca_file("/nonexistent/ca.pem").unwrap_err()),
    ];
    for error in &samples {
        let mut messages = vec![error.to_string()];
        let mut cause = error.source();
        while let Some(c) = cause {
            messages.push(c.to_string());
            cause = c.source();
        }
        for pair in messages.windows(2) {
            assert!(
                !pair[0].contains(&pair[1]),
                "{:?} repeats its source {:?}",
                pair[0],
                pair[1]
            );
        }
        assert!(
            messages.len() >= 2 || !messages[0].is_empty(),
            "{messages:?}"
        );
    }
}

/// The last handle dropped while its thread panics: not a clean stop. The server gets
/// DISCONNECT 0x04 (Disconnect with Will Message) with MQTT 5, and with 3.1.1 no DISCONNECT at
/// all, so it publishes the Will either way.
#[tokio::test]
async fn a_handle_dropped_in_a_panic_ends_the_connection_so_that_the_will_is_published() {
    for protocol in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let mut broker = Broker::new();
        let b = builder(&broker, MemoryStore::default())
            .protocol(protocol)
            .will(Will::new("gw/status", "gone"));
        let connecting = tokio::spawn(b.connect());
        let mut peer = broker.next().await;
        peer.codec.protocol = protocol;
        peer.accept(false).await;
        let (client, _m) = connecting.await.unwrap().unwrap();
        std::thread::spawn(move || {
            let _held = client;
            panic!("the application failed");
        })
        .join()
        .unwrap_err();
        match protocol {
            ProtocolVersion::V311 => peer.closed().await,
            _ => match peer.recv().await {
                Packet::Disconnect(d) => {
                    assert_eq!(d.reason_code, ReasonCode::DisconnectWithWillMessage)
                }
                other => panic!("expected DISCONNECT, got {other:?}"),
            },
        }
    }
}

/// Long enough for any delay of the backoff below, on paused time.
const LONG: Duration = Duration::from_secs(600);

async fn next_event_within(
    events: &mut mooring::client::Events,
    want: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    timeout(LONG, async {
        loop {
            let event = events.recv().await.expect("events ended");
            if want(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the event did not come")
}

/// A server that ends each connection right after CONNACK (a second gateway with the same
/// client identifier, say) does not get a reconnect at once for ever: each such connection
/// counts as a failed attempt, the delay grows, and the event says why. A connection that
/// stayed up for `stable_after` starts the count again. On paused time, exactly.
#[tokio::test(start_paused = true)]
async fn connections_the_server_ends_at_once_keep_the_backoff_growing() {
    let mut broker = Broker::new();
    let backoff = Backoff::default()
        .with_initial(Duration::from_secs(1))
        .with_factor(2.0)
        .with_maximum(Duration::from_secs(60))
        .with_stable_after(Duration::from_secs(10));
    let mut b = builder(&broker, MemoryStore::default()).reconnect(backoff.clone());
    let mut events = b.events();
    let (_client, _m, peer) = connected(&mut broker, b).await;
    drop(peer);
    let mut attempts = Vec::new();
    for _ in 0..4 {
        let event = next_event(&mut events, |e| {
            matches!(e, ClientEvent::Reconnecting { .. })
        })
        .await;
        let ClientEvent::Reconnecting {
            attempt,
            delay,
            reason,
            ..
        } = event
        else {
            unreachable!()
        };
        assert!(
            matches!(reason, ReconnectReason::ShortLived { .. }),
            "{reason:?}"
        );
        assert!(
            delay <= backoff.bound(attempt - 1),
            "{delay:?} for attempt {attempt}"
        );
        attempts.push(attempt);
        broker.next_within(LONG).await.accept(true).await;
        next_event_within(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
        // The connection this accept made ends at once, as the next loop's peer drops.
    }
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    // One that stays up past stable_after: the next loss starts again from the first delay.
    let event = next_event(&mut events, |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    assert!(
        matches!(event, ClientEvent::Reconnecting { attempt: 5, .. }),
        "{event:?}"
    );
    let mut peer = broker.next_within(LONG).await;
    peer.accept(true).await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    drop(peer);
    let event = next_event(&mut events, |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    assert!(
        matches!(
            event,
            ClientEvent::Reconnecting {
                attempt: 0,
                reason: ReconnectReason::ConnectionLost,
                ..
            }
        ),
        "{event:?}"
    );
}
