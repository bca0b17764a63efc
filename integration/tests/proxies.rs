//! Through real proxies (tinyproxy for HTTP CONNECT, microsocks for SOCKS5, each its own
//! process per test) to a real mosquitto: plain TCP, TLS and WebSocket inside the tunnel, a
//! proxy that refuses, and a tunnel dropped mid-stream (the session resumes, nothing is lost
//! or duplicated).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::Duration;

use integration::clients::{
    WAIT, assert_each_once, client, publish_numbered, receive_numbered, recv,
};
use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::proxy_servers::{ProxyProgram, ProxyServer};
use mooring::client::{ConnectError, Proxy, TlsOptions, TransportError};
use mooring::{ClientError, QoS};
use tokio::time::timeout;

fn broker() -> Mosquitto {
    Mosquitto::with_config(&MosquittoConfig {
        tls: true,
        websockets: true,
        ..MosquittoConfig::default()
    })
    .unwrap()
}

/// The broker's addresses by scheme, with the name its certificate carries (`localhost`).
fn addresses(broker: &Mosquitto) -> Vec<String> {
    vec![
        format!("mqtt://localhost:{}", broker.port()),
        broker.tls_url().unwrap(),
        broker.ws_url().unwrap().replace("127.0.0.1", "localhost"),
    ]
}

/// A client through `proxy` publishes to itself on `url` and gets its message back.
async fn round_trip(broker: &Mosquitto, url: &str, proxy: Proxy, id: &str) {
    let ca = TlsOptions::with_ca_file(&broker.pki().unwrap().ca).unwrap();
    let (c, mut messages) = client(url, id)
        .tls(ca)
        .proxy(proxy)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{url} through the proxy: {e}"));
    let topic = format!("proxied/{id}");
    c.subscribe(topic.as_str(), QoS::AtLeastOnce).await.unwrap();
    let delivery = c
        .publish(topic.as_str(), "through", QoS::AtLeastOnce)
        .await
        .unwrap();
    timeout(WAIT, delivery).await.unwrap().unwrap();
    let message = recv(&mut messages).await;
    assert_eq!(&message.payload()[..], b"through", "{url}");
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_and_socks5_carry_tcp_tls_and_websocket() {
    let broker = broker();
    let http = ProxyServer::start(ProxyProgram::Tinyproxy, Some(("gw", "pr0xy"))).unwrap();
    let socks = ProxyServer::start(ProxyProgram::Microsocks, Some(("gw", "s0cks"))).unwrap();
    let proxies = [
        (
            &http,
            Proxy::parse(&http.url("http"))
                .unwrap()
                .with_credentials("gw", "pr0xy"),
        ),
        (
            &socks,
            Proxy::parse(&socks.url("socks5"))
                .unwrap()
                .with_credentials("gw", "s0cks"),
        ),
        // The proxy resolves `localhost`; the certificate is checked against that name.
        (
            &socks,
            Proxy::parse(&socks.url("socks5h"))
                .unwrap()
                .with_credentials("gw", "s0cks"),
        ),
    ];
    for (i, (server, proxy)) in proxies.into_iter().enumerate() {
        for (j, url) in addresses(&broker).iter().enumerate() {
            let before = server.tunnels();
            round_trip(&broker, url, proxy.clone(), &format!("gw-{i}-{j}")).await;
            assert!(
                server.tunnels() > before,
                "{url} did not go through {proxy}:\n{}",
                server.log()
            );
        }
    }
}

fn proxy_error(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(ClientError::Connect(ConnectError::Transport(e))) => {
            assert!(matches!(*e, TransportError::Proxy { .. }), "{e:?}");
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
        other => panic!("not a proxy error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_fails_the_attempt_saying_why() {
    let broker = broker();
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let http = ProxyServer::start(ProxyProgram::Tinyproxy, Some(("gw", "pr0xy"))).unwrap();
    let plain = Proxy::parse(&http.url("http")).unwrap();
    let error = proxy_error(
        client(&url, "no-credentials")
            .proxy(plain.clone())
            .connect()
            .await,
    );
    assert!(
        error.contains("407") && error.contains("wants a user name"),
        "{error}"
    );
    let wrong = plain.with_credentials("gw", "wrong");
    let error = proxy_error(client(&url, "wrong").proxy(wrong).connect().await);
    assert!(
        error.contains("refused the user name and password"),
        "{error}"
    );

    let socks = ProxyServer::start(ProxyProgram::Microsocks, Some(("gw", "s0cks"))).unwrap();
    let wrong = Proxy::parse(&socks.url("socks5"))
        .unwrap()
        .with_credentials("gw", "wrong");
    let error = proxy_error(client(&url, "socks-wrong").proxy(wrong).connect().await);
    assert!(error.contains("proxy refused"), "{error}");

    // A proxy that is not there.
    let gone = Proxy::parse(&format!(
        "socks5://127.0.0.1:{}",
        integration::mosquitto::free_port().unwrap()
    ))
    .unwrap();
    let error = proxy_error(client(&url, "gone").proxy(gone).connect().await);
    assert!(error.contains("cannot connect to the proxy"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_dropped_mid_stream_resumes_the_session_with_nothing_lost_or_twice() {
    const COUNT: usize = 400;
    let broker = broker();
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let mut socks = ProxyServer::start(ProxyProgram::Microsocks, None).unwrap();
    // The subscriber connects straight to the broker; the publisher goes through the proxy.
    let (sub, mut messages) = client(&url, "direct-subscriber").connect().await.unwrap();
    sub.subscribe("stream/+", QoS::ExactlyOnce).await.unwrap();
    let proxy = Proxy::parse(&socks.url("socks5")).unwrap();
    let (publisher, _m) = client(&url, "proxied-publisher")
        .proxy(proxy)
        .connect()
        .await
        .unwrap();
    let publishing = publish_numbered(&publisher, "stream", COUNT, Duration::from_millis(2));
    let mut seen = BTreeMap::new();
    receive_numbered(&mut messages, &mut seen, COUNT / 3).await;
    // Every tunnel drops at once; the proxy comes back a moment later.
    socks.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    socks.restart().unwrap();
    publishing.await.unwrap();
    receive_numbered(&mut messages, &mut seen, COUNT).await;
    assert_each_once(&mut messages, &seen, COUNT).await;
    assert!(
        publisher.stats().connections >= 2,
        "the publisher reconnected through the proxy"
    );
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}
