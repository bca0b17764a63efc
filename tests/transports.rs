//! TLS and WebSocket transports against in-process servers: certificates are made at test time
//! (rcgen), the server side is tokio-rustls and tokio-tungstenite.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use mooring::client::{
    AsyncStream, Backoff, BoxFuture, Client, ClientError, ConnectError, Connector, ServerUrl,
    TlsOptions,
};
use mooring::packet::{Codec, ConnAck, Decoded, Packet, ProtocolVersion, PubAck, QoS};
use mooring::store::MemoryStore;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

const WAIT: Duration = Duration::from_secs(5);

struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
    client_cert_pem: String,
    client_key_pem: String,
    ca_der: CertificateDer<'static>,
}

fn pki(name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "gateway-7");
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server_chain: vec![server.der().clone()],
        server_key: server_key.serialize_der(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(pki: &Pki, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone()));
    Arc::new(
        builder
            .with_single_cert(pki.server_chain.clone(), key)
            .unwrap(),
    )
}

/// Hands the server end of each connection to the test.
struct Pipe(mpsc::UnboundedSender<DuplexStream>);

impl Connector for Pipe {
    fn connect(&self, _server: &ServerUrl) -> BoxFuture<io::Result<Box<dyn AsyncStream>>> {
        let (client, server) = tokio::io::duplex(1 << 16);
        let sent = self.0.send(server);
        Box::pin(async move {
            sent.map_err(|_| io::Error::other("test ended"))?;
            Ok(Box::new(client) as Box<dyn AsyncStream>)
        })
    }
}

async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Packet {
    loop {
        match Codec::default().decode(buf).unwrap() {
            Decoded::Packet(p) => return p,
            Decoded::Incomplete { .. } => {
                let n = timeout(WAIT, stream.read_buf(buf)).await.unwrap().unwrap();
                assert!(n > 0, "the client closed the connection");
            }
        }
    }
}

async fn write_packet<S: AsyncWrite + Unpin>(stream: &mut S, packet: Packet) {
    let mut out = BytesMut::new();
    Codec::default().encode(&packet, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    stream.flush().await.unwrap();
}

/// A broker on any byte stream: CONNECT → CONNACK, then one QoS 1 PUBLISH → PUBACK.
async fn serve_mqtt<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = BytesMut::new();
    assert!(matches!(
        read_packet(&mut stream, &mut buf).await,
        Packet::Connect(_)
    ));
    write_packet(&mut stream, Packet::ConnAck(Box::new(ConnAck::new(false)))).await;
    match read_packet(&mut stream, &mut buf).await {
        Packet::Publish(p) => {
            write_packet(&mut stream, Packet::PubAck(PubAck::new(p.packet_id))).await;
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn builder(url: &str, pipe: Pipe) -> mooring::client::ClientBuilder {
    Client::builder()
        .server(url)
        .client_id("gw")
        .store(MemoryStore::default())
        .connector(pipe)
        .reconnect(Backoff::default().with_max_attempts(Some(1)))
}

async fn publish_once(client: &Client) {
    let delivery = client.publish("t", "x", QoS::AtLeastOnce).await.unwrap();
    assert!(timeout(WAIT, delivery).await.unwrap().is_ok());
}

#[tokio::test]
async fn tls_with_the_right_ca_connects_and_verifies_the_name() {
    let pki = pki("right");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&pki, false));
    let server = tokio::spawn(async move {
        let stream = rx.recv().await.unwrap();
        serve_mqtt(acceptor.accept(stream).await.unwrap()).await;
    });
    let tls = TlsOptions::with_ca_pem(pki.ca_pem.as_bytes()).unwrap();
    let (client, _m) = builder("mqtts://localhost:8883", Pipe(tx))
        .tls(tls)
        .connect()
        .await
        .unwrap();
    publish_once(&client).await;
    server.await.unwrap();
}

async fn refused_tls(url: &str, tls: TlsOptions, pki: &Pki) -> String {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(pki, false));
    tokio::spawn(async move {
        let stream = rx.recv().await.unwrap();
        let _ = acceptor.accept(stream).await;
    });
    match builder(url, Pipe(tx)).tls(tls).connect().await {
        Err(ClientError::Connect(ConnectError::Transport(e))) => e.to_string(),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_with_a_wrong_ca_or_a_wrong_name_is_refused() {
    let pki_server = pki("server");
    let other = pki("other");
    let wrong_ca = TlsOptions::with_ca_pem(other.ca_pem.as_bytes()).unwrap();
    let why = refused_tls("mqtts://localhost:8883", wrong_ca, &pki_server).await;
    assert!(why.contains("TLS"), "{why}");

    let right_ca = TlsOptions::with_ca_pem(pki_server.ca_pem.as_bytes()).unwrap();
    let why = refused_tls("mqtts://127.0.0.2:8883", right_ca.clone(), &pki_server).await;
    assert!(
        why.contains("TLS"),
        "a certificate for localhost is not 127.0.0.2: {why}"
    );
    // Naming the expected server explicitly makes the same address acceptable.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&pki_server, false));
    tokio::spawn(async move {
        serve_mqtt(acceptor.accept(rx.recv().await.unwrap()).await.unwrap()).await;
    });
    let (client, _m) = builder("mqtts://127.0.0.2:8883", Pipe(tx))
        .tls(right_ca.server_name("localhost"))
        .connect()
        .await
        .unwrap();
    publish_once(&client).await;
}

#[tokio::test]
async fn tls_client_certificates_are_presented() {
    let pki = pki("mutual");
    let config = server_config(&pki, true);
    // Without a client certificate the server refuses the handshake.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
    let refused = tokio::spawn(async move { acceptor.accept(rx.recv().await.unwrap()).await });
    let tls = TlsOptions::with_ca_pem(pki.ca_pem.as_bytes()).unwrap();
    let result = builder("mqtts://localhost", Pipe(tx))
        .tls(tls.clone())
        .connect()
        .await;
    assert!(result.is_err());
    assert!(
        refused.await.unwrap().is_err(),
        "the server saw no client certificate"
    );

    let (tx, mut rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let server = tokio::spawn(async move {
        let stream = acceptor.accept(rx.recv().await.unwrap()).await.unwrap();
        let (_, session) = stream.get_ref();
        assert!(session.peer_certificates().is_some_and(|c| !c.is_empty()));
        serve_mqtt(stream).await;
    });
    let tls = tls
        .client_certificate_pem(
            pki.client_cert_pem.as_bytes(),
            pki.client_key_pem.as_bytes(),
        )
        .unwrap();
    let (client, _m) = builder("mqtts://localhost", Pipe(tx))
        .tls(tls)
        .connect()
        .await
        .unwrap();
    publish_once(&client).await;
    server.await.unwrap();
}

/// A server that speaks only the ALPN protocol `mqtt` and requires a client certificate, as a
/// cloud broker on port 443 does.
fn alpn_server_config(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let mut config = Arc::unwrap_or_clone(server_config(pki, true));
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    Arc::new(config)
}

#[tokio::test]
async fn tls_from_a_config_offers_alpn_and_presents_the_client_certificate() {
    let pki = pki("alpn");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(alpn_server_config(&pki));
    let server = tokio::spawn(async move {
        let stream = acceptor.accept(rx.recv().await.unwrap()).await.unwrap();
        let (_, session) = stream.get_ref();
        assert_eq!(session.alpn_protocol(), Some(&b"mqtt"[..]));
        assert!(session.peer_certificates().is_some_and(|c| !c.is_empty()));
        serve_mqtt(stream).await;
    });
    // Everything by PEM text in the configuration, as a file would carry it.
    let mut config = mooring::client::TlsConfig::default();
    config.ca_pem = Some(pki.ca_pem.clone());
    config.client_cert_pem = Some(pki.client_cert_pem.clone());
    config.client_key_pem = Some(pki.client_key_pem.clone());
    config.alpn = vec!["x-unknown".into(), "mqtt".into()];
    let (client, _m) = builder("mqtts://localhost", Pipe(tx))
        .tls(TlsOptions::from_config(&config).unwrap())
        .connect()
        .await
        .unwrap();
    publish_once(&client).await;
    server.await.unwrap();
}

#[tokio::test]
async fn a_server_that_speaks_none_of_the_offered_alpn_protocols_is_refused() {
    let pki = pki("alpn-none");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(alpn_server_config(&pki));
    let server = tokio::spawn(async move { acceptor.accept(rx.recv().await.unwrap()).await });
    let tls = TlsOptions::with_ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .client_certificate_pem(
            pki.client_cert_pem.as_bytes(),
            pki.client_key_pem.as_bytes(),
        )
        .unwrap()
        .alpn_protocols(["h2"]);
    assert!(
        builder("mqtts://localhost", Pipe(tx))
            .tls(tls)
            .connect()
            .await
            .is_err()
    );
    let refused = server.await.unwrap().err().unwrap();
    assert!(refused.to_string().contains("known protocol"), "{refused}");
}

#[test]
fn bad_pem_is_a_clear_error() {
    let err = TlsOptions::with_ca_pem(b"not a certificate").unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    let err = TlsOptions::with_ca_file("/nonexistent/ca.pem").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    let pki = pki("pem");
    let err = TlsOptions::with_ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .client_certificate_pem(pki.client_cert_pem.as_bytes(), b"no key")
        .unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
}

/// A WebSocket server that checks the upgrade request, then speaks MQTT in binary frames.
async fn serve_websocket(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    deliver_in_pieces: bool,
    protocol: ProtocolVersion,
) {
    let codec = || Codec {
        protocol,
        ..Codec::default()
    };
    let callback = |request: &Request, mut response: Response| {
        assert_eq!(request.uri().path(), "/mqtt");
        let protocol = request.headers().get("Sec-WebSocket-Protocol");
        assert_eq!(protocol.and_then(|v| v.to_str().ok()), Some("mqtt"));
        assert_eq!(
            request
                .headers()
                .get("Authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer t0ken")
        );
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        Ok(response)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback)
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    let mut next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        if let Decoded::Packet(p) = codec().decode(&mut buf).unwrap() {
            return p;
        }
        match timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(WsMessage::Binary(data))) => buf.extend_from_slice(&data),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    };
    assert!(matches!(next(&mut ws).await, Packet::Connect(_)));
    let mut out = BytesMut::new();
    codec()
        .encode(&Packet::ConnAck(Box::new(ConnAck::new(false))), &mut out)
        .unwrap();
    if deliver_in_pieces {
        // One MQTT packet across several frames is legal [MQTT-6.0.0-2].
        for byte in out.iter() {
            ws.send(WsMessage::Binary(vec![*byte].into()))
                .await
                .unwrap();
        }
    } else {
        ws.send(WsMessage::Binary(out.freeze())).await.unwrap();
    }
    let Packet::Publish(p) = next(&mut ws).await else {
        panic!("expected PUBLISH")
    };
    let mut out = BytesMut::new();
    codec()
        .encode(&Packet::PubAck(PubAck::new(p.packet_id)), &mut out)
        .unwrap();
    ws.send(WsMessage::Binary(out.freeze())).await.unwrap();
}

#[tokio::test]
async fn websocket_uses_the_mqtt_subprotocol_and_binary_frames() {
    // Either protocol travels the same way [MQTT-6.0.0-1 to MQTT-6.0.0-3, both versions].
    for protocol in [ProtocolVersion::V5, ProtocolVersion::V311] {
        for pieces in [false, true] {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let server = tokio::spawn(async move {
                serve_websocket(rx.recv().await.unwrap(), pieces, protocol).await;
            });
            let (client, _m) = builder("ws://localhost:8080", Pipe(tx))
                .protocol(protocol)
                .websocket_header("Authorization", "Bearer t0ken")
                .connect()
                .await
                .unwrap();
            publish_once(&client).await;
            server.await.unwrap();
        }
    }
}

/// MQTT travels in binary frames only; a text frame from the server ends the connection
/// [MQTT-6.0.0-1].
#[tokio::test]
async fn mqtt_6_0_0_1_a_text_frame_closes_the_connection() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let stream = rx.recv().await.unwrap();
        let mut ws = tokio_tungstenite::accept_hdr_async(stream, |_: &Request, mut r: Response| {
            r.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
            Ok(r)
        })
        .await
        .unwrap();
        let first = timeout(WAIT, ws.next()).await.unwrap();
        assert!(matches!(first, Some(Ok(WsMessage::Binary(_)))), "{first:?}");
        let mut out = BytesMut::new();
        Codec::default()
            .encode(&Packet::ConnAck(Box::new(ConnAck::new(false))), &mut out)
            .unwrap();
        // A valid CONNACK, but in a text frame.
        let text = out.iter().map(|b| char::from(*b)).collect::<String>();
        ws.send(WsMessage::Text(text.into())).await.unwrap();
        // The client closes: the stream ends (a close frame, an error, or nothing more).
        loop {
            match timeout(WAIT, ws.next()).await.unwrap() {
                Some(Ok(WsMessage::Binary(data))) => panic!("the client went on: {data:?}"),
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    });
    let connecting = builder("ws://localhost:8080", Pipe(tx)).connect().await;
    assert!(connecting.is_err(), "the connection must not come up");
    server.await.unwrap();
}

#[tokio::test]
async fn secure_websocket_layers_tls_under_the_websocket() {
    let pki = pki("wss");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&pki, false));
    let server = tokio::spawn(async move {
        let tls = acceptor.accept(rx.recv().await.unwrap()).await.unwrap();
        serve_websocket(tls, false, ProtocolVersion::V5).await;
    });
    let (client, _m) = builder("wss://localhost/mqtt", Pipe(tx))
        .tls(TlsOptions::with_ca_pem(pki.ca_pem.as_bytes()).unwrap())
        .websocket_header("Authorization", "Bearer t0ken")
        .connect()
        .await
        .unwrap();
    publish_once(&client).await;
    server.await.unwrap();
}
