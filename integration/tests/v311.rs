//! MQTT 3.1.1 against mosquitto: QoS 0, 1 and 2 both ways with a v5 client and with
//! `mosquitto_pub`/`mosquitto_sub -V mqttv311`, a Will, and a persistent session that resumes
//! from a redb store and receives what was queued for it while it was away.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::time::Duration;

use std::net::SocketAddr;

use integration::mosquitto::Mosquitto;
use integration::proxy::{Fault, FaultProxy};
use mooring::client::{ClientBuilder, Messages};
use mooring::packet::{ProtocolVersion, Will};
use mooring::store::{MemoryStore, RedbStore};
use mooring::{Client, ClientError, ClientEvent, QoS};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn v311(url: &str, id: &str) -> ClientBuilder {
    Client::builder()
        .server(url)
        .client_id(id)
        .protocol(ProtocolVersion::V311)
        .reconnect(integration::fast_backoff())
}

fn v5(url: &str, id: &str) -> ClientBuilder {
    Client::builder()
        .server(url)
        .client_id(id)
        .store(MemoryStore::default())
        .reconnect(integration::fast_backoff())
}

async fn recv(messages: &mut Messages) -> mooring::Message {
    timeout(WAIT, messages.recv())
        .await
        .expect("a message in time")
        .expect("the client runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_both_ways_between_a_3_1_1_and_a_v5_client() {
    let broker = Mosquitto::start().unwrap();
    let (old, mut old_in) = v311(&broker.url(), "old")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    let (new, mut new_in) = v5(&broker.url(), "new").connect().await.unwrap();
    old.subscribe("to-old/#", QoS::ExactlyOnce).await.unwrap();
    new.subscribe("to-new/#", QoS::ExactlyOnce).await.unwrap();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let body = format!("{qos:?}");
        new.publish("to-old/x", body.clone(), qos)
            .await
            .unwrap()
            .await
            .unwrap();
        let m = recv(&mut old_in).await;
        assert_eq!((m.qos(), m.payload().as_ref()), (qos, body.as_bytes()));
        old.publish("to-new/x", body.clone(), qos)
            .await
            .unwrap()
            .await
            .unwrap();
        let m = recv(&mut new_in).await;
        assert_eq!((m.qos(), m.payload().as_ref()), (qos, body.as_bytes()));
    }
    // Retained, through 3.1.1.
    let mut kept = mooring::packet::Publish::new("to-new/kept", "r");
    kept.qos = QoS::AtLeastOnce;
    kept.retain = true;
    old.publish_with(kept).await.unwrap().await.unwrap();
    let (late, mut late_in) = v5(&broker.url(), "late").connect().await.unwrap();
    late.subscribe("to-new/kept", QoS::AtLeastOnce)
        .await
        .unwrap();
    let m = recv(&mut late_in).await;
    assert!(m.publish().retain);
    // A v5 property on a 3.1.1 client is refused, not dropped.
    let mut with_expiry = mooring::packet::Publish::new("to-new/x", "e");
    with_expiry.properties.message_expiry_interval = Some(5);
    assert!(matches!(
        old.publish_with(with_expiry).await,
        Err(ClientError::Publish(_))
    ));
    old.disconnect().await.unwrap();
    new.disconnect().await.unwrap();
    late.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_3_1_1_session_resumes_from_the_store_and_gets_what_was_queued() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v311.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        let (c, _in) = v311(&broker.url(), "keeper")
            .store(store)
            .session_expiry(Duration::from_secs(3600))
            .connect()
            .await
            .unwrap();
        c.subscribe("kept/#", QoS::ExactlyOnce).await.unwrap();
        c.disconnect().await.unwrap();
    }
    let (sender, _) = v5(&broker.url(), "sender").connect().await.unwrap();
    for n in 0..3 {
        sender
            .publish("kept/x", format!("{n}"), QoS::ExactlyOnce)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // `disconnect` returned once the first client had let go of the store.
    let store = RedbStore::open(&path).unwrap();
    let mut builder = v311(&broker.url(), "keeper")
        .store(store)
        .session_expiry(Duration::from_secs(3600));
    let mut events = builder.events();
    let (c, mut inbox) = builder.connect().await.unwrap();
    let connected = timeout(WAIT, async {
        loop {
            if let ClientEvent::Connected {
                session_present, ..
            } = events.recv().await.unwrap()
            {
                return session_present;
            }
        }
    })
    .await
    .unwrap();
    assert!(connected, "Clean Session 0 resumed the broker's session");
    for n in 0..3 {
        let m = recv(&mut inbox).await;
        assert_eq!(m.payload().as_ref(), format!("{n}").as_bytes());
    }
    c.disconnect().await.unwrap();
    sender.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_with_mosquitto_pub_and_sub_at_3_1_1_and_a_will() {
    let broker = Mosquitto::start().unwrap();
    let port = broker.port().to_string();
    let (c, mut inbox) = v311(&broker.url(), "cli-peer")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    c.subscribe("cli/in", QoS::ExactlyOnce).await.unwrap();
    let status = Command::new("mosquitto_pub")
        .args(["-V", "mqttv311", "-h", "127.0.0.1", "-p", &port, "-q", "2"])
        .args(["-t", "cli/in", "-m", "from mosquitto_pub"])
        .status()
        .unwrap();
    assert!(status.success());
    let m = recv(&mut inbox).await;
    assert_eq!(m.payload().as_ref(), b"from mosquitto_pub");

    let sub = Command::new("mosquitto_sub")
        .args(["-V", "mqttv311", "-h", "127.0.0.1", "-p", &port, "-q", "2"])
        .args(["-C", "1", "-W", "10", "-t", "cli/out", "-F", "%t|%q|%p"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = tokio::task::spawn_blocking(move || sub.wait_with_output());
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.publish("cli/out", "from mooring", QoS::ExactlyOnce)
        .await
        .unwrap()
        .await
        .unwrap();
    let output = waiting.await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim_end(),
        "cli/out|2|from mooring"
    );

    // A Will (no Will properties in 3.1.1), published when the connection is cut.
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], broker.port()))).unwrap();
    let (watcher, mut watched) = v5(&broker.url(), "watcher").connect().await.unwrap();
    watcher
        .subscribe("wills/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut will = Will::new("wills/gone", "offline");
    will.qos = QoS::AtLeastOnce;
    let (doomed, _) = v311(&proxy.url(), "doomed")
        .store(MemoryStore::default())
        .will(will.clone())
        .connect()
        .await
        .unwrap();
    proxy.set(Fault::Refuse);
    proxy.cut();
    let m = recv(&mut watched).await;
    assert_eq!(m.payload().as_ref(), b"offline");
    drop(doomed);
    // Will properties need MQTT 5: refused when the client is built.
    will.properties.will_delay_interval = Some(5);
    let refused = v311(&broker.url(), "no")
        .store(MemoryStore::default())
        .will(will)
        .connect()
        .await;
    assert!(matches!(
        refused,
        Err(ClientError::NeedsV5("Will properties"))
    ));
    c.disconnect().await.unwrap();
    watcher.disconnect().await.unwrap();
}
