//! Server addresses: `mqtt://`, `mqtts://`, `ws://`, `wss://`, `quic://`, and `tcp://`,
//! `ssl://` as aliases.

use std::fmt;
use std::str::FromStr;

/// How to reach a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// Plain TCP (`mqtt://`, `tcp://`), port 1883 by default.
    Tcp,
    /// TLS over TCP (`mqtts://`, `ssl://`), port 8883 by default.
    Tls,
    /// WebSocket (`ws://`), port 80 by default.
    Ws,
    /// WebSocket over TLS (`wss://`), port 443 by default.
    Wss,
    /// QUIC (`quic://`, feature `quic`): TLS 1.3 over UDP, MQTT on one stream; port 14567 by
    /// default (EMQX's and the `mqttv5` broker's).
    Quic,
}

impl Scheme {
    /// Whether the connection is encrypted.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss | Self::Quic)
    }

    /// Whether MQTT travels in WebSocket frames.
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Tcp => 1883,
            Self::Tls => 8883,
            Self::Ws => 80,
            Self::Wss => 443,
            Self::Quic => 14567,
        }
    }

    /// The Cargo feature of `mooring-mqtt` that this scheme needs and this build lacks, if
    /// any: `tls` for `mqtts://` and `wss://`, `websocket` for `ws://` and `wss://`, `quic`
    /// for `quic://`.
    pub fn missing_feature(self) -> Option<&'static str> {
        if self == Self::Quic && !cfg!(feature = "quic") {
            return Some("quic");
        }
        if self.is_tls() && !cfg!(feature = "tls") {
            return Some("tls");
        }
        if self.is_websocket() && !cfg!(feature = "websocket") {
            return Some("websocket");
        }
        None
    }

    /// The scheme as written in an address (`mqtts`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "mqtt",
            Self::Tls => "mqtts",
            Self::Ws => "ws",
            Self::Wss => "wss",
            Self::Quic => "quic",
        }
    }
}

/// A parsed server address such as `mqtts://broker.example:8883` or `ws://[::1]:8080/mqtt`.
///
/// Its [`Display`](fmt::Display) form is canonical (scheme aliases resolved, port always
/// written): it names the server's session in the store, so `tcp://h` and `mqtt://h:1883` share
/// one session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    scheme: Scheme,
    host: String,
    port: u16,
    path: String,
}

/// Why a server address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid server address {url:?}: {why}")]
pub struct UrlError {
    url: String,
    why: &'static str,
}

impl ServerUrl {
    /// The key under which a client with `client_id` keeps its session with this server (the
    /// canonical form of the address: scheme, host, port).
    pub fn session_key(&self, client_id: impl Into<String>) -> crate::store::SessionKey {
        crate::store::SessionKey::new(self.to_string(), client_id)
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP path of a WebSocket address (`/mqtt` when none is given).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `host:port`, with brackets around an IPv6 address, for dialling.
    pub fn authority(&self) -> String {
        authority_of(&self.host, self.port)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn authority_of(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An address's authority taken apart: `host[:port]` or `[v6][:port]`, the port as written
/// (`None` when there is none); the error says what is wrong.
pub(crate) fn split_authority(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address lacks its closing ']'")?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("unexpected text after the IPv6 address"),
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// A port as written: a number from 1 to 65535.
pub(crate) fn port_number(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

impl FromStr for ServerUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, UrlError> {
        let fail = |why| UrlError {
            url: url.to_owned(),
            why,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| fail("it has no scheme (mqtt://, mqtts://, ws://, wss://, quic://)"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Scheme::Tcp,
            "mqtts" | "ssl" | "tls" => Scheme::Tls,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "quic" => Scheme::Quic,
            _ => {
                return Err(fail(
                    "unknown scheme (use mqtt, mqtts, ws, wss, quic, tcp or ssl)",
                ));
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(fail(
                "credentials in the address are not supported; set them on the builder",
            ));
        }
        let (host, port) = split_authority(authority).map_err(fail)?;
        if host.is_empty() {
            return Err(fail("the host is empty"));
        }
        let port = match port {
            Some(port) => {
                port_number(port).ok_or_else(|| fail("the port is not a number from 1 to 65535"))?
            }
            None => scheme.default_port(),
        };
        let path = if scheme.is_websocket() {
            if path.is_empty() { "/mqtt" } else { path }.to_owned()
        } else if path.is_empty() || path == "/" {
            String::new()
        } else {
            return Err(fail("only WebSocket addresses have a path"));
        };
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
            path,
        })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.name(),
            self.authority(),
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_aliases_and_default_ports() {
        let cases = [
            ("mqtt://h", "mqtt://h:1883"),
            ("tcp://h:1884", "mqtt://h:1884"),
            ("MQTTS://h", "mqtts://h:8883"),
            ("ssl://h", "mqtts://h:8883"),
            ("QUIC://h", "quic://h:14567"),
            ("ws://h", "ws://h:80/mqtt"),
            ("wss://h:8443/x/y", "wss://h:8443/x/y"),
            ("mqtt://[::1]:1999", "mqtt://[::1]:1999"),
            ("mqtt://[::1]", "mqtt://[::1]:1883"),
            ("mqtt://127.0.0.1:5/", "mqtt://127.0.0.1:5"),
        ];
        for (input, canonical) in cases {
            let url: ServerUrl = input.parse().unwrap();
            assert_eq!(url.to_string(), canonical, "{input}");
        }
        let v6: ServerUrl = "mqtt://[::1]:1999".parse().unwrap();
        assert_eq!(v6.host(), "::1");
        assert_eq!(v6.authority(), "[::1]:1999");
    }

    #[test]
    fn refused_addresses_say_why() {
        for bad in [
            "broker:1883",
            "http://h",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:70000",
            "mqtt://h:x",
            "mqtt://user:pw@h",
            "mqtt://[::1",
            "mqtt://h/path",
        ] {
            let err = bad.parse::<ServerUrl>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
