//! Byte streams to a server: TCP, TLS, WebSocket, or a stream of the user's own.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

pub(crate) use super::outgoing::Outgoing;
use super::proxy::{Proxy, ProxyError};
#[cfg(feature = "tls")]
use super::tls::TlsOptions;
use super::url::ServerUrl;
#[cfg(feature = "tls")]
use crate::store::described;

/// A bidirectional byte stream a connection can run over.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// A boxed future, as [`Connector`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Opens the byte stream to a server in place of a TCP connection: a proxy, a Unix socket, an
/// in-process fake for tests. TLS and WebSocket framing still apply on top, by the address's
/// scheme.
pub trait Connector: Send + Sync + 'static {
    /// Opens a stream to `server`.
    fn connect(&self, server: &ServerUrl) -> BoxFuture<io::Result<Box<dyn AsyncStream>>>;
}

impl<F, Fut> Connector for F
where
    F: Fn(ServerUrl) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Box<dyn AsyncStream>>> + Send + 'static,
{
    fn connect(&self, server: &ServerUrl) -> BoxFuture<io::Result<Box<dyn AsyncStream>>> {
        Box::pin(self(server.clone()))
    }
}

/// Why a transport could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The TCP connection (or the custom connector) failed.
    #[error("cannot connect to {server}")]
    Io {
        /// The server.
        server: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake or configuration failed (a wrong CA, a name mismatch, ...).
    #[error("TLS with {server} failed: {why}")]
    Tls {
        /// The server.
        server: String,
        /// Why.
        why: String,
    },
    /// The WebSocket handshake failed.
    #[error("WebSocket handshake with {server} failed: {why}")]
    WebSocket {
        /// The server.
        server: String,
        /// Why.
        why: String,
    },
    /// The tunnel through the proxy could not be opened.
    #[error("cannot reach {server} through the proxy {proxy}")]
    Proxy {
        /// The server.
        server: String,
        /// The proxy (its password never shown).
        proxy: String,
        /// Why.
        #[source]
        source: ProxyError,
    },
    /// The QUIC connection could not be made (handshake, TLS 1.3 settings, the stream), or
    /// was asked to go where QUIC cannot (through a proxy or a [`Connector`]).
    #[error("QUIC with {server} failed: {why}")]
    Quic {
        /// The server.
        server: String,
        /// Why.
        why: String,
    },
    /// The address needs a feature this build lacks.
    #[error("{server} needs the `{feature}` feature of mooring")]
    FeatureMissing {
        /// The server.
        server: String,
        /// The feature.
        feature: &'static str,
    },
}

/// Transport settings an attempt may change (see `ConnectAttempt`). Fields are added by
/// Cargo features (`tls`), so it is built from `Default` and changed field by field.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TransportOptions {
    /// TLS settings for `mqtts://` and `wss://`; the system's roots when `None` (read once
    /// per process, at the first connection that needs them).
    #[cfg(feature = "tls")]
    pub tls: Option<TlsOptions>,
    /// HTTP headers added to the WebSocket upgrade request (an authorization token, ...).
    pub websocket_headers: Vec<(String, String)>,
    /// The proxy the connection goes through (TLS and WebSocket run inside its tunnel);
    /// `None`: straight to the server. Ignored when a [`Connector`] opens the stream.
    pub proxy: Option<Proxy>,
}

impl std::fmt::Debug for TransportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("TransportOptions");
        #[cfg(feature = "tls")]
        s.field("tls", &self.tls);
        // Header values may be secrets.
        let names: Vec<&str> = self
            .websocket_headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        s.field("websocket_headers", &names)
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// An open connection's byte stream.
pub(crate) enum Link {
    Stream(Box<dyn AsyncStream>),
    #[cfg(feature = "websocket")]
    WebSocket(Box<tokio_tungstenite::WebSocketStream<Box<dyn AsyncStream>>>),
}

impl Link {
    /// Reads (when `reading`) and writes `out` at the same time, so that a server that stops
    /// reading cannot stop the client from reading. Ready when bytes were read into `buf`
    /// (`Read(0)` at the end of the stream) or when all of `out` has been written and flushed.
    /// What was read is in `buf`, what was written is gone from `out`, and `progress` is
    /// stamped at every write that moved bytes, whatever the poll returns.
    pub(crate) fn poll_exchange(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        out: &mut Outgoing,
        reading: bool,
        progress: &mut std::time::Instant,
    ) -> Poll<io::Result<Exchanged>> {
        match self {
            Self::Stream(s) => poll_stream(Pin::new(&mut **s), cx, buf, out, reading, progress),
            #[cfg(feature = "websocket")]
            Self::WebSocket(ws) => ws::poll_exchange(ws, cx, buf, out, reading, progress),
        }
    }

    /// Writes all of `bytes` and flushes.
    pub(crate) async fn write(&mut self, bytes: bytes::Bytes) -> io::Result<()> {
        match self {
            Self::Stream(s) => {
                s.write_all(&bytes).await?;
                s.flush().await
            }
            #[cfg(feature = "websocket")]
            Self::WebSocket(ws) => ws::write(ws, bytes).await,
        }
    }

    /// Closes the stream politely: ends the sending side (TLS close_notify, WebSocket close
    /// frame), then reads and discards until the server closes its side. Closing with unread
    /// bytes would make the kernel send RST, and a peer that gets RST may drop what it had
    /// received and not yet processed (the acks sent just before DISCONNECT). The caller
    /// bounds the time.
    pub(crate) async fn close(&mut self) {
        match self {
            Self::Stream(s) => {
                if s.shutdown().await.is_ok() {
                    let mut sink = [0u8; 1024];
                    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                }
            }
            #[cfg(feature = "websocket")]
            Self::WebSocket(ws) => {
                if ws.close(None).await.is_ok() {
                    while let Some(Ok(_)) = futures_util::StreamExt::next(ws.as_mut()).await {}
                }
            }
        }
    }
}

/// What [`Link::poll_exchange`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exchanged {
    /// Read this many bytes; 0 at the end of the stream.
    Read(usize),
    /// Everything outgoing is written and flushed.
    Written,
}

fn poll_stream(
    mut stream: Pin<&mut dyn AsyncStream>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    out: &mut Outgoing,
    reading: bool,
    progress: &mut std::time::Instant,
) -> Poll<io::Result<Exchanged>> {
    while !out.is_empty() {
        let mut slices = Outgoing::no_slices();
        let filled = out.slices(&mut slices);
        let slices = slices.get(..filled).unwrap_or_default();
        match stream.as_mut().poll_write_vectored(cx, slices) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                out.advance(n);
                out.unflushed = true;
                *progress = super::clock::now();
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => break,
        }
    }
    if out.is_empty() && out.unflushed {
        match stream.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                out.unflushed = false;
                return Poll::Ready(Ok(Exchanged::Written));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
    }
    if reading {
        let mut chunk = [0u8; 8 * 1024];
        let mut read = ReadBuf::new(&mut chunk);
        match stream.poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                buf.extend_from_slice(read.filled());
                return Poll::Ready(Ok(Exchanged::Read(read.filled().len())));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
    }
    Poll::Pending
}

/// How a connection's TLS handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Without the `tls` feature there is no handshake to tell of.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) enum Handshake {
    /// A new TLS session: certificates sent and verified, keys agreed from scratch.
    Full,
    /// A session of an earlier connection resumed (a ticket): no certificates, less work.
    Resumed,
}

/// An open stream, and its TLS handshake (`None` without TLS).
pub(crate) struct Opened {
    pub(crate) link: Link,
    pub(crate) tls: Option<Handshake>,
}

/// Opens the stream for `server`: the connector's or TCP, then TLS, then WebSocket, by scheme.
pub(crate) async fn open(
    server: &ServerUrl,
    options: &TransportOptions,
    connector: Option<&dyn Connector>,
) -> Result<Opened, TransportError> {
    let name = server.to_string();
    let io_error = |source| TransportError::Io {
        server: name.clone(),
        source,
    };
    if server.scheme() == super::url::Scheme::Quic {
        return open_quic(server, options, connector.is_some()).await;
    }
    let stream: Box<dyn AsyncStream> = match (connector, &options.proxy) {
        (Some(c), _) => c.connect(server).await.map_err(io_error)?,
        (None, Some(proxy)) => {
            Box::new(
                proxy
                    .tunnel(server)
                    .await
                    .map_err(|source| TransportError::Proxy {
                        server: name.clone(),
                        proxy: proxy.to_string(),
                        source,
                    })?,
            )
        }
        (None, None) => {
            let tcp = tokio::net::TcpStream::connect(server.authority())
                .await
                .map_err(io_error)?;
            // MQTT packets are small and latency matters more than segment count.
            tcp.set_nodelay(true).map_err(io_error)?;
            Box::new(tcp)
        }
    };
    let (stream, tls) = if server.scheme().is_tls() {
        let (stream, handshake) = tls_wrap(server, options, stream).await?;
        (stream, Some(handshake))
    } else {
        (stream, None)
    };
    if server.scheme().is_websocket() {
        #[cfg(feature = "websocket")]
        return Ok(Opened {
            link: ws::handshake(server, options, stream).await?,
            tls,
        });
        #[cfg(not(feature = "websocket"))]
        return Err(TransportError::FeatureMissing {
            server: name,
            feature: "websocket",
        });
    }
    Ok(Opened {
        link: Link::Stream(stream),
        tls,
    })
}

/// QUIC opens its own UDP socket: neither a proxy (TCP tunnels) nor a [`Connector`] (byte
/// streams) can carry it, and asking for one is an error rather than a silent bypass.
async fn open_quic(
    server: &ServerUrl,
    options: &TransportOptions,
    with_connector: bool,
) -> Result<Opened, TransportError> {
    let refuse = |why: &str| TransportError::Quic {
        server: server.to_string(),
        why: why.to_owned(),
    };
    if with_connector {
        return Err(refuse(
            "a Connector opens byte streams; QUIC needs its own UDP socket",
        ));
    }
    if options.proxy.is_some() {
        return Err(refuse("HTTP and SOCKS5 proxies carry TCP, not QUIC's UDP"));
    }
    #[cfg(feature = "quic")]
    {
        let tls = match &options.tls {
            Some(tls) => tls.clone(),
            None => super::tls::system_default().map_err(|e| TransportError::Tls {
                server: server.to_string(),
                why: described(&e),
            })?,
        };
        let stream = super::quic::connect(server, &tls)
            .await
            .map_err(|failure| match failure {
                super::quic::QuicFailure::Io(source) => TransportError::Io {
                    server: server.to_string(),
                    source,
                },
                super::quic::QuicFailure::Quic(why) => TransportError::Quic {
                    server: server.to_string(),
                    why,
                },
            })?;
        // quinn does not tell whether the TLS session was resumed: counted as full.
        Ok(Opened {
            link: Link::Stream(Box::new(stream)),
            tls: Some(Handshake::Full),
        })
    }
    #[cfg(not(feature = "quic"))]
    Err(TransportError::FeatureMissing {
        server: server.to_string(),
        feature: "quic",
    })
}

#[cfg(feature = "tls")]
async fn tls_wrap(
    server: &ServerUrl,
    options: &TransportOptions,
    stream: Box<dyn AsyncStream>,
) -> Result<(Box<dyn AsyncStream>, Handshake), TransportError> {
    let fail = |why: String| TransportError::Tls {
        server: server.to_string(),
        why,
    };
    let tls = match &options.tls {
        Some(tls) => tls.clone(),
        None => super::tls::system_default().map_err(|e| fail(described(&e)))?,
    };
    let config = tls.client_config().map_err(|e| fail(described(&e)))?;
    let name = rustls::pki_types::ServerName::try_from(tls.name_for(server.host()).to_owned())
        .map_err(|e| fail(format!("invalid server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| fail(described(&e)))?;
    let handshake = match stream.get_ref().1.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => Handshake::Resumed,
        _ => Handshake::Full,
    };
    Ok((Box::new(stream), handshake))
}

#[cfg(not(feature = "tls"))]
async fn tls_wrap(
    server: &ServerUrl,
    _options: &TransportOptions,
    _stream: Box<dyn AsyncStream>,
) -> Result<(Box<dyn AsyncStream>, Handshake), TransportError> {
    Err(TransportError::FeatureMissing {
        server: server.to_string(),
        feature: "tls",
    })
}

#[cfg(feature = "websocket")]
mod ws {
    use std::io;

    use bytes::{Bytes, BytesMut};
    use futures_util::SinkExt;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Instant;

    use futures_util::{Sink, Stream};

    use super::{
        AsyncStream, Exchanged, Link, Outgoing, ServerUrl, TransportError, TransportOptions,
    };

    type Ws = WebSocketStream<Box<dyn AsyncStream>>;

    pub(super) async fn handshake(
        server: &ServerUrl,
        options: &TransportOptions,
        stream: Box<dyn AsyncStream>,
    ) -> Result<Link, TransportError> {
        let fail = |why: String| TransportError::WebSocket {
            server: server.to_string(),
            why,
        };
        let http = if server.scheme().is_tls() {
            "wss"
        } else {
            "ws"
        };
        let url = format!("{http}://{}{}", server.authority(), server.path());
        let mut request = url.into_client_request().map_err(|e| fail(e.to_string()))?;
        let headers = request.headers_mut();
        // MQTT over WebSocket uses the "mqtt" subprotocol [MQTT-6.0.0-3].
        headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        for (name, value) in &options.websocket_headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| fail(format!("header name {name:?}: {e}")))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| fail(format!("header {name}: {e}")))?;
            headers.insert(name, value);
        }
        let (ws, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if protocol.is_some_and(|p| !p.eq_ignore_ascii_case("mqtt")) {
            return Err(fail(format!(
                "the server chose subprotocol {protocol:?}, not mqtt"
            )));
        }
        Ok(Link::WebSocket(Box::new(ws)))
    }

    pub(super) async fn write(ws: &mut Ws, bytes: Bytes) -> io::Result<()> {
        ws.send(Message::Binary(bytes))
            .await
            .map_err(io::Error::other)
    }

    /// [`Link::poll_exchange`] for a WebSocket: what is outgoing goes as one binary frame.
    pub(super) fn poll_exchange(
        ws: &mut Ws,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        out: &mut Outgoing,
        reading: bool,
        progress: &mut Instant,
    ) -> Poll<io::Result<Exchanged>> {
        let mut ws = Pin::new(ws);
        if !out.is_empty() {
            match ws.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let frame = Message::Binary(out.take_all());
                    ws.as_mut().start_send(frame).map_err(io::Error::other)?;
                    out.unflushed = true;
                    *progress = crate::client::clock::now();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Pending => {}
            }
        }
        if out.is_empty() && out.unflushed {
            match ws.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    out.unflushed = false;
                    return Poll::Ready(Ok(Exchanged::Written));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Pending => {}
            }
        }
        if !reading {
            return Poll::Pending;
        }
        loop {
            match ws.as_mut().poll_next(cx) {
                Poll::Ready(None | Some(Ok(Message::Close(_)))) => {
                    return Poll::Ready(Ok(Exchanged::Read(0)));
                }
                Poll::Ready(Some(Ok(Message::Binary(data)))) => {
                    buf.extend_from_slice(&data);
                    if !data.is_empty() {
                        return Poll::Ready(Ok(Exchanged::Read(data.len())));
                    }
                }
                // Control frames are answered by tungstenite itself.
                Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
                Poll::Ready(Some(Ok(Message::Text(_)))) => {
                    // MQTT travels in binary frames only [MQTT-6.0.0-1].
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the server sent a text WebSocket frame [MQTT-6.0.0-1]",
                    )));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
