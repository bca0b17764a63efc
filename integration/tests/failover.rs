//! Two clients on one session in PostgreSQL: the standby waits for the owner's lease, resumes
//! the session where the store says it is, and the owner it replaced is fenced: it stops and
//! sends nothing more to the broker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::Duration;

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::postgres::Postgres;
use integration::proxy::{Fault, FaultProxy};
use mooring::client::Events;
use mooring::store::{MemoryStore, PostgresOptions, PostgresStore};
use mooring::{Client, ClientBuilder, ClientEvent, QoS};

const WAIT: Duration = Duration::from_secs(20);
const CLIENT_ID: &str = "gateway-failover";
/// Short, so that a store still committing when the test stops its database lets go soon.
const OUTAGE_LIMIT: Duration = Duration::from_secs(3);

fn gateway(server: &str, store: PostgresStore) -> ClientBuilder {
    Client::builder()
        .server(server)
        .client_id(CLIENT_ID)
        // The two gateways reach the broker by different addresses here (one through a
        // proxy): one cluster scope makes theirs one session.
        .cluster_scope("site")
        .session_expiry(Duration::from_secs(600))
        .reconnect(integration::fast_backoff())
        .store(store)
}

/// A store on `pg` for the process named `holder`, with a 30 s lease.
fn open_store(pg: &Postgres, holder: &str, takeover: bool) -> PostgresStore {
    PostgresStore::open(
        PostgresOptions::new(pg.connection())
            .lease(Duration::from_secs(30))
            .holder(holder)
            .takeover(takeover)
            .outage_limit(OUTAGE_LIMIT),
    )
    .unwrap()
}

/// Waits for the event `pick` accepts.
async fn wait_for<T>(events: &mut Events, mut pick: impl FnMut(&ClientEvent) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("the event never came")
}

/// A subscriber that counts every payload it receives on `failover/#`.
async fn subscriber(broker: &Mosquitto) -> (Client, mooring::Messages) {
    let (client, messages) = Client::builder()
        .server(broker.url())
        .client_id("failover-checker")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    client
        .subscribe("failover/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    (client, messages)
}

async fn receive(messages: &mut mooring::Messages, count: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    tokio::time::timeout(WAIT, async {
        while seen.values().sum::<usize>() < count {
            let message = messages.recv().await.expect("the subscriber stopped");
            let payload = String::from_utf8_lossy(message.payload()).into_owned();
            *seen.entry(payload).or_insert(0) += 1;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("received only {seen:?}"));
    // Anything more (a duplicate) would arrive within a moment.
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), messages.recv()).await
    {
        let payload = String::from_utf8_lossy(extra.payload()).into_owned();
        *seen.entry(payload).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_resumes_what_the_owner_accepted_and_the_owner_is_fenced() {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        persistence: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let pg = Postgres::start().unwrap();
    let (_checker, mut checked) = subscriber(&broker).await;
    // A reaches the broker and the database through proxies of its own.
    let a_broker = FaultProxy::start(([127, 0, 0, 1], broker.port()).into()).unwrap();
    let a_db = FaultProxy::start(pg.addr()).unwrap();
    let lease = Duration::from_secs(1);
    let a_store = PostgresStore::open(
        PostgresOptions::new(format!(
            "host=127.0.0.1 port={} user=mooring dbname=postgres connect_timeout=2",
            a_db.port()
        ))
        .lease(lease)
        .holder("gateway A")
        .outage_limit(OUTAGE_LIMIT),
    )
    .unwrap();
    let mut a_builder = gateway(&a_broker.url(), a_store);
    let mut a_events = a_builder.events();
    let (a, _a_messages) = a_builder.connect().await.unwrap();
    for n in 0..5 {
        a.publish("failover/m", format!("{n}"), QoS::ExactlyOnce)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // The broker becomes unreachable for A: what it accepts now waits in the store.
    a_broker.set(Fault::Refuse);
    a_broker.cut();
    for n in 5..10 {
        // Durable when publish returns; sent whenever a connection comes.
        drop(
            a.publish("failover/m", format!("{n}"), QoS::ExactlyOnce)
                .await
                .unwrap(),
        );
    }
    let sent_by_a = a_broker.bytes_to_server();

    // The standby starts: it waits for A's lease.
    let b_store = PostgresStore::open(
        PostgresOptions::new(pg.connection())
            .lease(lease)
            .holder("gateway B")
            .outage_limit(OUTAGE_LIMIT),
    )
    .unwrap();
    let mut b_builder = gateway(&broker.url(), b_store);
    let mut b_events = b_builder.events();
    let standby = tokio::spawn(b_builder.connect());
    tokio::time::sleep(lease * 3).await;
    assert!(
        !standby.is_finished(),
        "B started while A owned the session"
    );

    // A loses the database (its host failing, as far as anyone can tell): B takes over and
    // sends what A accepted, once each.
    a_db.set(Fault::Stall);
    a_db.cut();
    let (_b, _b_messages) = standby.await.unwrap().unwrap();
    wait_for(&mut b_events, |e| {
        matches!(e, ClientEvent::Connected { .. }).then_some(())
    })
    .await;
    let seen = receive(&mut checked, 10).await;
    let expected: BTreeMap<String, usize> = (0..10).map(|n| (n.to_string(), 1)).collect();
    assert_eq!(seen, expected, "every accepted message exactly once");

    // A comes back to the database and the broker: it is fenced and stops without a word
    // to the broker.
    a_db.set(Fault::Pass);
    a_broker.set(Fault::Pass);
    let holder = wait_for(&mut a_events, |e| match e {
        ClientEvent::SessionTakenOver { holder, .. } => Some(holder.clone()),
        _ => None,
    })
    .await;
    assert_eq!(holder, "gateway B");
    wait_for(&mut a_events, |e| {
        matches!(e, ClientEvent::Stopped { .. }).then_some(())
    })
    .await;
    assert_eq!(
        a_broker.bytes_to_server(),
        sent_by_a,
        "the fenced gateway sent bytes to the broker"
    );
    assert!(
        a.publish("failover/m", "late", QoS::ExactlyOnce)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_session_is_taken_over_stops_instead_of_fighting_for_the_client_id() {
    let broker = Mosquitto::start().unwrap();
    let pg = Postgres::start().unwrap();
    let a_broker = FaultProxy::start(([127, 0, 0, 1], broker.port()).into()).unwrap();
    let open = |holder: &str, takeover: bool| open_store(&pg, holder, takeover);
    let mut a_builder = gateway(&a_broker.url(), open("gateway A", false));
    let mut a_events = a_builder.events();
    let (a, _a_messages) = a_builder.connect().await.unwrap();
    a.publish("failover/a", "1", QoS::ExactlyOnce)
        .await
        .unwrap()
        .await
        .unwrap();
    let sent_by_a = a_broker.bytes_to_server();

    // An operator starts B with an explicit takeover: the broker tells A "Session taken
    // over" (0x8E); A checks the store before reconnecting, finds itself fenced, and stops.
    let mut b_builder = gateway(&broker.url(), open("gateway B", true));
    let mut b_events = b_builder.events();
    let (b, _b_messages) = b_builder.connect().await.unwrap();
    wait_for(&mut a_events, |e| {
        matches!(e, ClientEvent::SessionTakenOver { .. }).then_some(())
    })
    .await;
    wait_for(&mut a_events, |e| {
        matches!(e, ClientEvent::Stopped { .. }).then_some(())
    })
    .await;
    // B keeps the connection: nothing took the client identifier back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.publish("failover/b", "1", QoS::ExactlyOnce)
        .await
        .unwrap()
        .await
        .unwrap();
    while let Some(event) = b_events.try_recv() {
        assert!(
            !matches!(event, ClientEvent::ConnectionLost { .. }),
            "B lost its connection: {event:?}"
        );
    }
    assert_eq!(
        a_broker.bytes_to_server(),
        sent_by_a,
        "A sent the broker something (a CONNECT) after the takeover"
    );
}

/// A client that stops cleanly hands its session on there and then, although its store stays
/// open (the application keeps it for another client, or just has not dropped it): the
/// standby need not wait for a lease that nobody uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_hands_the_session_to_the_standby_while_the_store_stays_open() {
    let broker = Mosquitto::start().unwrap();
    let pg = Postgres::start().unwrap();
    let open = |holder: &str| open_store(&pg, holder, false);
    let a_store = open("gateway A");
    let (a, _a_messages) = gateway(&broker.url(), a_store.clone())
        .connect()
        .await
        .unwrap();
    a.publish("failover/a", "1", QoS::ExactlyOnce)
        .await
        .unwrap()
        .await
        .unwrap();
    a.disconnect().await.unwrap();
    let (b, _b_messages) = tokio::time::timeout(
        Duration::from_secs(5),
        gateway(&broker.url(), open("gateway B")).connect(),
    )
    .await
    .expect("the standby waited for the lease of a client that had stopped")
    .unwrap();
    b.publish("failover/b", "1", QoS::ExactlyOnce)
        .await
        .unwrap()
        .await
        .unwrap();
    drop(a_store);
}

/// A client on a database that other gateways share touches no session but its own: an
/// expired session of another gateway is neither cleared nor claimed (a claim would keep that
/// gateway's standby out for as long as this process lives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_a_shared_database_leaves_the_other_gateways_sessions_alone() {
    use mooring::store::{Batch, SessionKey, SessionMeta, SessionStore, StoreOp};
    let broker = Mosquitto::start().unwrap();
    let pg = Postgres::start().unwrap();
    let open = |holder: &str| open_store(&pg, holder, false);
    // Another gateway's session, expired long ago by any clock, holding only a marker.
    let other = SessionKey::cluster("elsewhere", "other-gateway");
    {
        let theirs = open("the other gateway");
        let mut ops = Batch::new();
        ops.push(StoreOp::SetMeta(SessionMeta {
            session_expiry_interval: 60,
            disconnected_at_ms: Some(1_000),
            ..SessionMeta::default()
        }));
        ops.push(StoreOp::PutInbound { packet_id: 4 });
        theirs.commit(&other, ops).await.unwrap();
        theirs.close().await.unwrap();
    }
    let (client, _messages) = gateway(&broker.url(), open("gateway A"))
        .connect()
        .await
        .unwrap();
    // Time for the look over the store's other sessions that follows the start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let theirs = open("the other gateway, again");
    tokio::time::timeout(Duration::from_secs(5), theirs.acquire(&other))
        .await
        .expect("the client took the other gateway's session")
        .unwrap();
    assert_eq!(
        theirs.load(&other).await.unwrap().inbound,
        vec![4],
        "the client cleared another gateway's session"
    );
    client.disconnect().await.unwrap();
}
