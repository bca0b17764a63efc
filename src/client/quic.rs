//! MQTT over QUIC (feature `quic`, through quinn): TLS 1.3 over UDP, and one bidirectional
//! stream that carries MQTT exactly as a TCP connection does, so everything above the byte
//! stream (the engine, keep alive, the store) is the same code.
//!
//! A QUIC connection survives a change of the client's address or port (NAT rebinding, a
//! new cellular address): the broker sees the same connection arrive from elsewhere and
//! validates the new path. When the broker cannot follow, the link breaks like any other and
//! the session resumes on a new connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::tls::TlsOptions;
use super::url::ServerUrl;
use crate::store::described;

/// Why a QUIC connection could not be made (`transport.rs` names the server).
pub(crate) enum QuicFailure {
    /// The name did not resolve, or the UDP socket could not be bound.
    Io(io::Error),
    /// The TLS settings, the handshake or the stream.
    Quic(String),
}

/// QUIC PINGs at this interval keep NAT bindings and the broker's idle timer alive when MQTT's
/// own keep alive is longer than the broker's QUIC idle timeout (often 30 s).
const QUIC_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The byte stream of an MQTT connection over QUIC: one bidirectional stream, and the
/// connection and endpoint it lives on.
pub(crate) struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    connection: quinn::Connection,
    /// Refuses streams the broker opens (see [`refuse_streams`]); stopped with the stream.
    watcher: tokio::task::JoinHandle<()>,
    /// Set when the watcher closed the connection, to say why instead of "closed".
    refused: Arc<AtomicBool>,
    _endpoint: quinn::Endpoint,
}

impl Drop for QuicStream {
    fn drop(&mut self) {
        self.watcher.abort();
        self.connection.close(0u32.into(), b"");
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.recv).poll_read(cx, buf) {
            Poll::Ready(Err(_)) if self.refused.load(Ordering::Relaxed) => {
                Poll::Ready(Err(io::Error::other(STREAM_REFUSED)))
            }
            other => other,
        }
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}

const STREAM_REFUSED: &str = "the broker opened a QUIC stream of its own: Mooring carries \
     MQTT on one stream, so the connection was closed; configure the broker to deliver on the \
     client's stream (the mqttv5 broker: --quic-delivery-strategy control-only)";

/// MQTT runs on the one stream the client opens. A broker that delivers on streams of its
/// own (the `mqttv5` broker's default "per-topic" delivery) would have messages read by no
/// one: the connection is closed with a reason, rather than acknowledging nothing silently.
fn refuse_streams(
    connection: quinn::Connection,
    server: String,
    refused: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let opened = tokio::select! {
            bi = connection.accept_bi() => bi.is_ok(),
            uni = connection.accept_uni() => uni.is_ok(),
        };
        if opened {
            tracing::warn!(server, "{STREAM_REFUSED}");
            refused.store(true, Ordering::Relaxed);
            connection.close(
                1u32.into(),
                b"MQTT on one stream: the server opened another",
            );
        }
    })
}

fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(QUIC_KEEP_ALIVE));
    transport
}

async fn resolve(server: &ServerUrl) -> io::Result<SocketAddr> {
    tokio::net::lookup_host(server.authority())
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address"))
}

/// Connects to `server` over QUIC and opens the stream MQTT runs on.
pub(crate) async fn connect(
    server: &ServerUrl,
    tls: &TlsOptions,
) -> Result<QuicStream, QuicFailure> {
    let fail = QuicFailure::Quic;
    let io_error = QuicFailure::Io;
    let rustls_config = tls.quic_config().map_err(|e| fail(described(&e)))?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls_config)
        .map_err(|e| fail(format!("the TLS settings cannot do QUIC (TLS 1.3): {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));

    let address = resolve(server).await.map_err(io_error)?;
    let local: SocketAddr = if address.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(local).map_err(io_error)?;
    let connecting = endpoint
        .connect_with(config, address, tls.name_for(server.host()))
        .map_err(|e| fail(e.to_string()))?;
    let connection = connecting.await.map_err(|e| fail(e.to_string()))?;
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| fail(format!("cannot open the MQTT stream: {e}")))?;
    let refused = Arc::new(AtomicBool::new(false));
    let watcher = refuse_streams(connection.clone(), server.to_string(), refused.clone());
    Ok(QuicStream {
        send,
        recv,
        connection,
        watcher,
        refused,
        _endpoint: endpoint,
    })
}
