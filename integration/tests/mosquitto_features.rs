//! Every client feature against a real mosquitto (each test its own broker on a free port),
//! some through the fault proxy, and interoperability with `mosquitto_pub` / `mosquitto_sub`.
//! TLS is in `tls.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use integration::clients::{WAIT, client, event, recv};
use integration::mosquitto::{Mosquitto, MosquittoConfig, free_port};
use integration::proxy::{Fault, FaultProxy};
use mooring::client::{ConnectError, ConnectionLoss};
use mooring::packet::{Publish, SubscribeProperties, Subscription, UserProperty, Will};
use mooring::store::MemoryStore;
use mooring::{Client, ClientError, ClientEvent, QoS, ReasonCode};
use tokio::time::timeout;

fn proxy_to(broker: &Mosquitto) -> FaultProxy {
    FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], broker.port()))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_every_connect_option() {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        users: vec![("gw".into(), "s3cret".into())],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let refused = client(&broker.url(), "opts")
        .credentials("gw", "wrong")
        .connect()
        .await;
    match refused {
        Err(ClientError::Connect(ConnectError::Refused { reason })) => assert!(
            matches!(
                reason,
                ReasonCode::BadUserNameOrPassword | ReasonCode::NotAuthorized
            ),
            "{reason:?}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (c, _m) = client(&broker.url(), "opts")
        .credentials("gw", "s3cret")
        .keep_alive(Duration::from_secs(20))
        .session_expiry(Duration::from_secs(120))
        .receive_maximum(10)
        .maximum_packet_size(64 * 1024)
        .topic_alias_maximum(5)
        .user_property("site", "7")
        .request_response_information(true)
        .will(Will::new("gw/status", "gone"))
        .connect()
        .await
        .unwrap();
    assert_eq!(c.stats().connections, 1);
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_and_retained_messages() {
    let broker = Mosquitto::start().unwrap();
    let (sub, mut inbox) = client(&broker.url(), "sub").connect().await.unwrap();
    sub.subscribe("q/#", QoS::ExactlyOnce).await.unwrap();
    let (publ, _m) = client(&broker.url(), "pub").connect().await.unwrap();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let d = publ.publish(format!("q/{qos:?}"), "x", qos).await.unwrap();
        timeout(WAIT, d).await.unwrap().unwrap();
        let m = recv(&mut inbox).await;
        assert_eq!((m.topic(), m.qos()), (format!("q/{qos:?}").as_str(), qos));
    }
    let mut retained = Publish::new("r/state", "on");
    retained.retain = true;
    retained.qos = QoS::AtLeastOnce;
    timeout(WAIT, publ.publish_with(retained).await.unwrap())
        .await
        .unwrap()
        .unwrap();
    let (late, mut late_inbox) = client(&broker.url(), "late").connect().await.unwrap();
    late.subscribe("r/#", QoS::AtLeastOnce).await.unwrap();
    let m = recv(&mut late_inbox).await;
    assert!(m.retain(), "a retained message reaches a later subscriber");
    assert_eq!(m.payload().as_ref(), b"on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_with_a_delay_is_published_after_the_connection_is_cut() {
    let broker = Mosquitto::start().unwrap();
    let proxy = proxy_to(&broker);
    let (watcher, mut inbox) = client(&broker.url(), "watcher").connect().await.unwrap();
    watcher
        .subscribe("wills/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut will = Will::new("wills/gw", "gateway lost");
    will.qos = QoS::AtLeastOnce;
    will.properties.will_delay_interval = Some(1);
    let (gw, _m) = client(&proxy.url(), "gw")
        .will(will)
        .session_expiry(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    proxy.set(Fault::Refuse);
    let cut = Instant::now();
    proxy.cut();
    let m = recv(&mut inbox).await;
    assert_eq!(m.payload().as_ref(), b"gateway lost");
    assert!(
        cut.elapsed() >= Duration::from_millis(900),
        "{:?}",
        cut.elapsed()
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_present_after_a_cut_and_the_broker_restart() {
    let mut broker = Mosquitto::with_config(&MosquittoConfig {
        persistence: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let proxy = proxy_to(&broker);
    let (c, _m) = client(&proxy.url(), "present")
        .session_expiry(Duration::from_secs(300))
        .connect()
        .await
        .unwrap();
    let mut events = c.events();
    proxy.cut();
    event(&mut events, |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    let e = event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
    assert!(matches!(
        e,
        ClientEvent::Connected {
            session_present: true,
            ..
        }
    ));
    tokio::task::block_in_place(|| {
        broker.stop();
        broker.restart().unwrap();
    });
    let e = event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
    assert!(
        matches!(
            e,
            ClientEvent::Connected {
                session_present: true,
                ..
            }
        ),
        "a persistent broker keeps the session across its restart"
    );
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_noticed_by_the_client() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let (c, _m) = Client::builder()
        .server(broker.url())
        .client_id("expiring")
        .session_expiry(Duration::from_secs(1))
        .store(mooring::store::RedbStore::open(&path).unwrap())
        .connect()
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut builder = Client::builder()
        .server(broker.url())
        .client_id("expiring")
        .session_expiry(Duration::from_secs(1))
        .store(mooring::store::RedbStore::open(&path).unwrap());
    // Taken before the start: the expiry is found at once.
    let mut events = builder.events();
    let (_c, _m) = builder.start().await.unwrap();
    event(&mut events, |e| matches!(e, ClientEvent::SessionExpired)).await;
    let e = event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
    assert!(matches!(
        e,
        ClientEvent::Connected {
            session_present: false,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_second_server() {
    let broker = Mosquitto::start().unwrap();
    let dead = format!("mqtt://127.0.0.1:{}", free_port().unwrap());
    let (c, _m) = Client::builder()
        .server(dead)
        .server(broker.url())
        .client_id("failover")
        .store(MemoryStore::default())
        .connect()
        .await
        .unwrap();
    let d = c
        .publish("f/x", "via the second", QoS::AtLeastOnce)
        .await
        .unwrap();
    timeout(WAIT, d).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_maximum_packet_size_is_refused_locally() {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        max_packet_size: Some(256),
        ..MosquittoConfig::default()
    })
    .unwrap();
    let (c, _m) = client(&broker.url(), "big").connect().await.unwrap();
    let err = c
        .publish("b/x", vec![0u8; 1000], QoS::AtLeastOnce)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Publish(_)), "{err}");
    let d = c
        .publish("b/x", vec![0u8; 100], QoS::AtLeastOnce)
        .await
        .unwrap();
    timeout(WAIT, d).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_aliases_save_bytes_on_a_hot_topic() {
    let broker = Mosquitto::start().unwrap();
    let topic = "factory/line-7/cell-3/sensor/temperature/celsius";
    let mut sent = HashMap::new();
    for aliases in [false, true] {
        let proxy = proxy_to(&broker);
        let (c, _m) = client(&proxy.url(), "alias")
            .topic_aliases(aliases)
            .connect()
            .await
            .unwrap();
        let before = proxy.bytes_to_server();
        for i in 0..200 {
            let d = c
                .publish(topic, format!("{i}"), QoS::AtLeastOnce)
                .await
                .unwrap();
            timeout(WAIT, d).await.unwrap().unwrap();
        }
        sent.insert(aliases, proxy.bytes_to_server() - before);
        c.disconnect().await.unwrap();
    }
    let saved = sent[&false] - sent[&true];
    println!(
        "200 publishes on a {}-byte topic: {} bytes plain, {} with aliases, {saved} saved",
        topic.len(),
        sent[&false],
        sent[&true]
    );
    // Every publish after the first saves the topic; each one carries a 3-byte alias property.
    assert!(saved >= 199 * topic.len() as u64 - 200 * 3, "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_acks_in_any_order_are_not_redelivered() {
    let broker = Mosquitto::start().unwrap();
    let store = MemoryStore::default();
    let (consumer, mut inbox) = client(&broker.url(), "consumer")
        .store(store.clone())
        .manual_ack(true)
        .session_expiry(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    consumer.subscribe("work", QoS::ExactlyOnce).await.unwrap();
    let (producer, _m) = client(&broker.url(), "producer").connect().await.unwrap();
    for i in 0..10 {
        let d = producer
            .publish("work", format!("{i}"), QoS::ExactlyOnce)
            .await
            .unwrap();
        drop(d);
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(recv(&mut inbox).await);
    }
    let order: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
        .collect();
    assert_eq!(order, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    for m in got.into_iter().rev() {
        m.ack().await.unwrap();
    }
    assert_eq!(consumer.stats().inbound_unacked, 0);
    consumer.disconnect().await.unwrap();
    let (again, mut inbox) = client(&broker.url(), "consumer")
        .store(store)
        .manual_ack(true)
        .session_expiry(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    if let Ok(again) = timeout(Duration::from_millis(500), inbox.recv()).await {
        panic!(
            "nothing acked comes again, but: {:?}",
            again.map(|m| m.into_publish())
        );
    }
    again.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_between_two_clients() {
    let broker = Mosquitto::start().unwrap();
    let (responder, mut requests) = client(&broker.url(), "responder").connect().await.unwrap();
    responder
        .subscribe("svc/echo", QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let mut answer = b"echo: ".to_vec();
            answer.extend_from_slice(request.payload());
            drop(responder.respond(&request, answer).await);
        }
    });
    let (requester, _m) = client(&broker.url(), "requester").connect().await.unwrap();
    for i in 0..3 {
        let response = requester
            .request("svc/echo", format!("ping {i}"), WAIT)
            .await
            .unwrap();
        assert_eq!(
            response.payload().as_ref(),
            format!("echo: ping {i}").as_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscriptions_split_the_stream() {
    let broker = Mosquitto::start().unwrap();
    let mut workers = Vec::new();
    for i in 0..2 {
        let (c, inbox) = client(&broker.url(), &format!("worker-{i}"))
            .connect()
            .await
            .unwrap();
        c.subscribe("$share/pool/jobs/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        workers.push((c, inbox));
    }
    let (producer, _m) = client(&broker.url(), "jobs").connect().await.unwrap();
    for i in 0..100 {
        let d = producer
            .publish("jobs/x", format!("{i}"), QoS::AtLeastOnce)
            .await
            .unwrap();
        timeout(WAIT, d).await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut counts = Vec::new();
    for (_, inbox) in &mut workers {
        let mut n = 0;
        while inbox.try_recv().is_some() {
            n += 1;
        }
        counts.push(n);
    }
    assert_eq!(counts.iter().sum::<usize>(), 100, "{counts:?}");
    assert!(
        counts.iter().all(|n| *n > 0),
        "both workers got jobs: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifiers_come_back_on_messages() {
    let broker = Mosquitto::start().unwrap();
    let (c, mut inbox) = client(&broker.url(), "ids").connect().await.unwrap();
    let props = SubscribeProperties {
        subscription_identifier: Some(7),
        ..SubscribeProperties::default()
    };
    c.subscribe_with(vec![Subscription::new("ids/#", QoS::AtLeastOnce)], props)
        .await
        .unwrap();
    let d = c.publish("ids/a", "x", QoS::AtLeastOnce).await.unwrap();
    timeout(WAIT, d).await.unwrap().unwrap();
    let m = recv(&mut inbox).await;
    assert_eq!(m.publish().properties.subscription_identifiers, vec![7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_network_is_detected_and_the_client_comes_back() {
    let broker = Mosquitto::start().unwrap();
    let proxy = proxy_to(&broker);
    let (c, _m) = client(&proxy.url(), "stall")
        .keep_alive(Duration::from_secs(1))
        .ping_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let mut events = c.events();
    proxy.set(Fault::Stall);
    let lost = event(&mut events, |e| {
        matches!(e, ClientEvent::ConnectionLost { .. })
    })
    .await;
    assert!(
        matches!(
            lost,
            ClientEvent::ConnectionLost {
                reason: ConnectionLoss::KeepAliveTimeout,
                ..
            }
        ),
        "{lost:?}"
    );
    proxy.set(Fault::Pass);
    proxy.cut();
    event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_fragmented_and_refused_networks() {
    let broker = Mosquitto::start().unwrap();
    let proxy = proxy_to(&broker);
    proxy.set(Fault::Refuse);
    let (c, mut inbox) = client(&proxy.url(), "faults").start().await.unwrap();
    let mut events = c.events();
    event(&mut events, |e| {
        matches!(e, ClientEvent::ConnectFailed { .. })
    })
    .await;
    // Accepted while the network refuses: durable, sent once it lets the client through.
    let queued = c
        .publish("faults/x", "queued", QoS::ExactlyOnce)
        .await
        .unwrap();
    proxy.set(Fault::Fragment);
    event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
    timeout(WAIT, queued).await.unwrap().unwrap();
    c.subscribe("faults/#", QoS::ExactlyOnce).await.unwrap();
    for fault in [Fault::Fragment, Fault::Delay(Duration::from_millis(30))] {
        proxy.set(fault);
        let d = c
            .publish("faults/x", format!("{fault:?}"), QoS::ExactlyOnce)
            .await
            .unwrap();
        timeout(WAIT, d).await.unwrap().unwrap();
        let m = recv(&mut inbox).await;
        assert_eq!(m.payload().as_ref(), format!("{fault:?}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_with_mosquitto_pub_and_sub_keeps_properties() {
    let broker = Mosquitto::start().unwrap();
    let port = broker.port().to_string();
    let (c, mut inbox) = client(&broker.url(), "interop").connect().await.unwrap();
    c.subscribe("interop/in", QoS::ExactlyOnce).await.unwrap();
    let status = Command::new("mosquitto_pub")
        .args(["-V", "5", "-h", "127.0.0.1", "-p", &port, "-q", "2"])
        .args(["-t", "interop/in", "-m", "from mosquitto_pub"])
        .args(["-D", "publish", "user-property", "origin", "cli"])
        .args(["-D", "publish", "content-type", "text/plain"])
        .args(["-D", "publish", "response-topic", "interop/reply"])
        .status()
        .unwrap();
    assert!(status.success());
    let m = recv(&mut inbox).await;
    let props = &m.publish().properties;
    assert_eq!(m.payload().as_ref(), b"from mosquitto_pub");
    assert_eq!(m.qos(), QoS::ExactlyOnce);
    assert_eq!(
        props.user_properties,
        vec![UserProperty::new("origin", "cli")]
    );
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("interop/reply"));

    let sub = Command::new("mosquitto_sub")
        .args([
            "-V",
            "5",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-q",
            "2",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .args(["-t", "interop/out", "-F", "%t|%q|%C|%P|%R|%p"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Give mosquitto_sub time to subscribe; publish until it has one.
    let mut out = Publish::new("interop/out", "from mooring");
    out.qos = QoS::ExactlyOnce;
    out.properties.user_properties = vec![UserProperty::new("origin", "mooring")];
    out.properties.content_type = Some("text/plain".into());
    out.properties.response_topic = Some("interop/back".into());
    let waiting = tokio::task::spawn_blocking(move || sub.wait_with_output());
    tokio::time::sleep(Duration::from_millis(300)).await;
    timeout(WAIT, c.publish_with(out).await.unwrap())
        .await
        .unwrap()
        .unwrap();
    let output = waiting.await.unwrap().unwrap();
    let line = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        line.trim_end(),
        "interop/out|2|text/plain|origin:mooring|interop/back|from mooring"
    );
}
