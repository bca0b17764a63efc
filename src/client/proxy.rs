//! Proxies a connection goes through: HTTP `CONNECT` (RFC 9110, 9.3.6) with Basic
//! authentication, and SOCKS5 (RFC 1928) with a user name and password (RFC 1929), the
//! server's name resolved by the client (`socks5://`) or by the proxy (`socks5h://`). The
//! tunnel is a plain byte stream: TLS and WebSocket run on top of it as they do on TCP, so the
//! proxy sees only encrypted bytes of an `mqtts://` or `wss://` server.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::url::{Scheme, ServerUrl, authority_of, port_number, split_authority};

/// How a proxy is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyKind {
    /// An HTTP proxy, asked with `CONNECT` (`http://`; port 8080 by default).
    Http,
    /// SOCKS5, the server's name resolved by the client (`socks5://`; port 1080 by default).
    Socks5,
    /// SOCKS5, the server's name resolved by the proxy (`socks5h://`): for a network where
    /// only the proxy can resolve names.
    Socks5h,
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Socks5 => "socks5",
            Self::Socks5h => "socks5h",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 8080,
            Self::Socks5 | Self::Socks5h => 1080,
        }
    }
}

/// A proxy to reach a server through: `http://[user:password@]host[:port]`,
/// `socks5://...` or `socks5h://...` (user name and password percent-encoded, as in the
/// `http_proxy` variables).
///
/// ```
/// use mooring::client::Proxy;
/// let proxy: Proxy = "socks5h://gw:s3cret@10.0.0.1:1080".parse()?;
/// assert_eq!(proxy.to_string(), "socks5h://gw@10.0.0.1:1080"); // the password is not shown
/// let proxy = Proxy::parse("http://proxy.plant:3128")?.with_credentials("gw", "s3cret");
/// # let _ = proxy;
/// # Ok::<(), mooring::client::ProxyError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username())
            .field("password", &self.password().map(|_| "<hidden>"))
            .finish()
    }
}

impl fmt::Display for Proxy {
    /// The proxy's address with its user name, never its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.scheme())?;
        if let Some(user) = self.username() {
            write!(f, "{user}@")?;
        }
        f.write_str(&authority_of(&self.host, self.port))
    }
}

impl FromStr for Proxy {
    type Err = ProxyError;

    fn from_str(url: &str) -> Result<Self, ProxyError> {
        Self::parse(url)
    }
}

impl Proxy {
    /// Parses a proxy address (see [`Proxy`]).
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let invalid = |why: &str| ProxyError::Invalid {
            url: hide_password(url),
            why: why.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("no scheme: write http://, socks5:// or socks5h://"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            "https" => {
                return Err(invalid(
                    "a TLS connection to the proxy itself is not supported",
                ));
            }
            _ => return Err(invalid("the scheme must be http, socks5 or socks5h")),
        };
        // A path (`http://proxy:3128/`) is allowed and ignored, as curl does.
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let credentials = userinfo
            .map(|userinfo| {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Ok::<_, ProxyError>((decode(user, &invalid)?, decode(password, &invalid)?))
            })
            .transpose()?;
        let (host, port) = split_authority(hostport).map_err(invalid)?;
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match port {
            Some(port) => port_number(port)
                .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
            None => kind.default_port(),
        };
        Ok(Self {
            kind,
            host: host.to_owned(),
            port,
            credentials,
        })
    }

    /// The same proxy with this user name and password (Basic authentication for HTTP, RFC
    /// 1929 for SOCKS5).
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }

    /// How it is spoken to.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// Its host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name it is given, if any.
    pub fn username(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(user, _)| user.as_str())
    }

    /// The password it is given, if any.
    pub fn password(&self) -> Option<&str> {
        self.credentials
            .as_ref()
            .map(|(_, password)| password.as_str())
    }

    /// The same proxy without its user name and password.
    pub(crate) fn without_credentials(&self) -> Self {
        Self {
            credentials: None,
            ..self.clone()
        }
    }

    /// The proxy the environment names for `server`, as curl and most HTTP clients read it:
    /// `https_proxy` (or `HTTPS_PROXY`) for `mqtts://` and `wss://`, `http_proxy` (or
    /// `HTTP_PROXY`) for `mqtt://` and `ws://`, then `all_proxy` (or `ALL_PROXY`); none for a
    /// host that `no_proxy` (or `NO_PROXY`) lists: `*`, a name, a domain (`example.com` and
    /// `.example.com` both cover its subdomains) or an IP address, comma-separated. An empty
    /// variable counts as unset; one that is not a proxy address is an error.
    pub fn from_env(server: &ServerUrl) -> Result<Option<Self>, ProxyError> {
        Self::from_env_with(server, |name| std::env::var(name).ok())
    }

    /// [`Proxy::from_env`] with the variables read through `var`.
    pub(crate) fn from_env_with(
        server: &ServerUrl,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ProxyError> {
        let read = |lower: &str, upper: &str| {
            var(lower)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| var(upper).filter(|v| !v.trim().is_empty()))
        };
        if let Some(no_proxy) = read("no_proxy", "NO_PROXY")
            && bypasses(&no_proxy, server.host())
        {
            return Ok(None);
        }
        let specific = match server.scheme() {
            // HTTP and SOCKS5 proxies carry TCP; QUIC is UDP and goes straight to the server.
            Scheme::Quic => return Ok(None),
            Scheme::Tls | Scheme::Wss => read("https_proxy", "HTTPS_PROXY"),
            _ => read("http_proxy", "HTTP_PROXY"),
        };
        specific
            .or_else(|| read("all_proxy", "ALL_PROXY"))
            .map(|url| Self::parse(url.trim()))
            .transpose()
    }

    /// Opens a TCP connection to the proxy and a tunnel through it to `server`.
    pub(crate) async fn tunnel(&self, server: &ServerUrl) -> Result<TcpStream, ProxyError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(ProxyError::Unreachable)?;
        // MQTT packets are small and latency matters more than segment count.
        tcp.set_nodelay(true).map_err(ProxyError::Unreachable)?;
        match self.kind {
            ProxyKind::Http => self.http_connect(tcp, server).await,
            ProxyKind::Socks5 => {
                let target = tokio::net::lookup_host((server.host(), server.port()))
                    .await
                    .map_err(|e| ProxyError::Resolve {
                        host: server.host().to_owned(),
                        source: e,
                    })?
                    .next()
                    .ok_or_else(|| ProxyError::Resolve {
                        host: server.host().to_owned(),
                        source: std::io::Error::other("no address"),
                    })?;
                self.socks5(tcp, target).await
            }
            ProxyKind::Socks5h => self.socks5(tcp, (server.host(), server.port())).await,
        }
    }

    async fn socks5<'t>(
        &self,
        tcp: TcpStream,
        target: impl tokio_socks::IntoTargetAddr<'t>,
    ) -> Result<TcpStream, ProxyError> {
        use tokio_socks::tcp::Socks5Stream;
        let stream = match &self.credentials {
            Some((user, password)) => {
                Socks5Stream::connect_with_password_and_socket(tcp, target, user, password).await
            }
            None => Socks5Stream::connect_with_socket(tcp, target).await,
        };
        match stream {
            Ok(stream) => Ok(stream.into_inner()),
            Err(e @ tokio_socks::Error::PasswordAuthFailure(_)) => Err(ProxyError::Refused {
                why: format!("it refused the user name and password ({e})"),
            }),
            Err(e @ tokio_socks::Error::NoAcceptableAuthMethods) => Err(ProxyError::Refused {
                why: format!(
                    "{e}: {}",
                    if self.credentials.is_some() {
                        "it takes no user name and password"
                    } else {
                        "it wants a user name and password"
                    }
                ),
            }),
            Err(tokio_socks::Error::Io(e)) => Err(ProxyError::Io(e)),
            Err(e) => Err(ProxyError::Refused { why: e.to_string() }),
        }
    }

    async fn http_connect(
        &self,
        mut tcp: TcpStream,
        server: &ServerUrl,
    ) -> Result<TcpStream, ProxyError> {
        let target = server.authority();
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some((user, password)) = &self.credentials {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .map_err(ProxyError::Io)?;
        let (head, more) = read_head(&mut tcp).await?;
        let status_line = head.lines().next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| {
                ProxyError::Protocol(format!("not an HTTP response: {status_line:?}"))
            })?;
        let reason = parts.next().unwrap_or_default().trim();
        match status {
            // The server behind the tunnel has not been spoken to: bytes from it now would be
            // lost with the answer's.
            200..=299 if more => Err(ProxyError::Protocol(
                "the proxy sent bytes after its answer to CONNECT, before the server was \
                 spoken to"
                    .to_owned(),
            )),
            200..=299 => Ok(tcp),
            407 if self.credentials.is_none() => Err(ProxyError::Refused {
                why: format!("{status} {reason}: it wants a user name and password"),
            }),
            401 | 407 => Err(ProxyError::Refused {
                why: format!("{status} {reason}: it refused the user name and password"),
            }),
            _ => Err(ProxyError::Refused {
                why: format!("{status} {reason}"),
            }),
        }
    }
}

/// The longest response head a proxy may send to `CONNECT`.
const HEAD_LIMIT: usize = 16 * 1024;

/// Reads an HTTP response head, up to its empty line, and says whether bytes came after it (a
/// refusal's body; after a success, bytes the tunnel would lose).
async fn read_head(tcp: &mut TcpStream) -> Result<(String, bool), ProxyError> {
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await.map_err(ProxyError::Io)?;
        if n == 0 {
            return Err(ProxyError::Protocol(
                "the proxy closed the connection before it answered CONNECT".to_owned(),
            ));
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let more = head.len() > end + 4;
            head.truncate(end);
            return Ok((String::from_utf8_lossy(&head).into_owned(), more));
        }
        if head.len() > HEAD_LIMIT {
            return Err(ProxyError::Protocol(format!(
                "the proxy's answer to CONNECT is longer than {HEAD_LIMIT} bytes"
            )));
        }
    }
}

/// Whether a `no_proxy` list covers `host`.
fn bypasses(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            host == entry || host.ends_with(&format!(".{entry}"))
        })
}

fn decode(text: &str, invalid: &impl Fn(&str) -> ProxyError) -> Result<String, ProxyError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid("the user name or password is not UTF-8 once percent-decoded"))
}

/// The address with any password replaced, for errors.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest.get(..authority_end).and_then(|a| a.rsplit_once('@')) {
        Some((userinfo, hostport)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:<hidden>@{hostport}")
        }
        None => url.to_owned(),
    }
}

/// Which proxy each server is reached through, beyond the one for every server
/// (`TransportOptions::proxy`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxyRoutes {
    /// Servers with a proxy of their own, by address as given.
    per_server: Vec<(String, Proxy)>,
    /// Servers without one take the environment's, read at each attempt.
    pub(crate) from_env: bool,
}

impl ProxyRoutes {
    /// Gives `server` a proxy of its own (replacing any it had).
    pub(crate) fn set(&mut self, server: String, proxy: Proxy) {
        self.per_server.retain(|(s, _)| *s != server);
        self.per_server.push((server, proxy));
    }

    /// The servers given proxies of their own, as given, with their proxies.
    pub(crate) fn per_server(&self) -> &[(String, Proxy)] {
        &self.per_server
    }

    /// Every server named is an address.
    pub(crate) fn check(&self) -> Result<(), super::url::UrlError> {
        self.per_server
            .iter()
            .try_for_each(|(server, _)| server.parse::<ServerUrl>().map(|_| ()))
    }

    /// The proxy for an attempt at `server`: its own, else `every`, else (when asked) the
    /// environment's.
    pub(crate) fn choose(
        &self,
        server: &ServerUrl,
        every: Option<&Proxy>,
    ) -> Result<Option<Proxy>, ProxyError> {
        let own = self
            .per_server
            .iter()
            .find(|(s, _)| s.parse::<ServerUrl>().is_ok_and(|s| s == *server));
        match (own, every) {
            (Some((_, proxy)), _) | (None, Some(proxy)) => Ok(Some(proxy.clone())),
            (None, None) if self.from_env => Proxy::from_env(server),
            (None, None) => Ok(None),
        }
    }
}

/// Why a connection through a proxy failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy address is not one.
    #[error("invalid proxy address {url:?}: {why}")]
    Invalid {
        /// The address (its password hidden).
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The proxy could not be reached.
    #[error("cannot connect to the proxy")]
    Unreachable(#[source] std::io::Error),
    /// The server's name could not be resolved (`socks5://`; `socks5h://` leaves it to the
    /// proxy).
    #[error("cannot resolve {host}")]
    Resolve {
        /// The server's host.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The proxy refused the tunnel: credentials wanted or refused, a server it will not
    /// reach, or a rule of its own.
    #[error("the proxy refused: {why}")]
    Refused {
        /// What it answered.
        why: String,
    },
    /// The proxy did not speak its protocol.
    #[error("the proxy broke its protocol: {0}")]
    Protocol(String),
    /// The connection to the proxy failed while the tunnel was being opened.
    #[error("the connection to the proxy failed")]
    Io(#[source] std::io::Error),
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
