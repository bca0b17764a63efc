//! TLS against a real mosquitto: the CA checked, client certificates, and reconnections that
//! resume the TLS session instead of a full handshake.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;

use integration::clients::{WAIT, client, event};
use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::proxy::FaultProxy;
use mooring::client::{ConnectError, TlsOptions};
use mooring::{ClientError, ClientEvent, QoS};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_right_ca_a_wrong_ca_and_a_client_certificate() {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        tls: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let pki = broker.pki().unwrap().clone();
    let url = broker.tls_url().unwrap();
    let (c, _m) = client(&url, "tls")
        .tls(TlsOptions::with_ca_file(&pki.ca).unwrap())
        .connect()
        .await
        .unwrap();
    timeout(
        WAIT,
        c.publish("t/x", "secure", QoS::AtLeastOnce).await.unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    c.disconnect().await.unwrap();

    let other = integration::pki::Pki::generate(broker.dir(), "other").unwrap();
    let wrong = client(&url, "tls-wrong")
        .tls(TlsOptions::with_ca_file(&other.ca).unwrap())
        .connect()
        .await;
    assert!(
        matches!(wrong, Err(ClientError::Connect(ConnectError::Transport(_)))),
        "{wrong:?}"
    );

    let strict = Mosquitto::with_config(&MosquittoConfig {
        tls: true,
        require_client_certificate: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let pki = strict.pki().unwrap().clone();
    let url = strict.tls_url().unwrap();
    let without = client(&url, "no-cert")
        .tls(TlsOptions::with_ca_file(&pki.ca).unwrap())
        .connect()
        .await;
    assert!(without.is_err(), "mosquitto requires a client certificate");
    let with = TlsOptions::with_ca_file(&pki.ca)
        .unwrap()
        .client_certificate_files(&pki.client_cert, &pki.client_key)
        .unwrap();
    let (c, _m) = client(&url, "cert").tls(with).connect().await.unwrap();
    c.disconnect().await.unwrap();
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnection_resumes_the_tls_session_of_the_last_connection() {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        tls: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let pki = broker.pki().unwrap().clone();
    let tls_port: u16 = broker
        .tls_url()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], tls_port))).unwrap();
    let (c, _m) = client(&format!("mqtts://localhost:{}", proxy.port()), "resuming")
        .tls(TlsOptions::with_ca_file(&pki.ca).unwrap())
        .connect()
        .await
        .unwrap();
    let mut events = c.events();
    assert_eq!((c.stats().tls_handshakes, c.stats().tls_resumed), (1, 0));
    for _ in 0..3 {
        proxy.cut();
        event(&mut events, |e| matches!(e, ClientEvent::Connected { .. })).await;
    }
    let stats = c.stats();
    assert_eq!(
        (stats.tls_handshakes, stats.tls_resumed),
        (4, 3),
        "every reconnection resumes the last TLS session"
    );
    timeout(
        WAIT,
        c.publish("t/x", "resumed", QoS::AtLeastOnce).await.unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    c.disconnect().await.unwrap();
}
