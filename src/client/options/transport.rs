//! How the client reaches its servers: TLS, WebSocket headers, proxies, or a connector of
//! the application's own.

use std::sync::Arc;

use super::ClientBuilder;
use crate::client::proxy::Proxy;
use crate::client::transport::Connector;

impl ClientBuilder {
    /// TLS settings for `mqtts://` and `wss://` (the system's roots without this, read once
    /// per process). The rustls configuration is built once, so reconnections resume the
    /// last TLS session.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::client::tls::TlsOptions) -> Self {
        self.settings.transport.tls = Some(tls);
        self
    }

    /// Adds an HTTP header to the WebSocket upgrade request.
    pub fn websocket_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings
            .transport
            .websocket_headers
            .push((name.into(), value.into()));
        self
    }

    /// Reaches every server through `proxy` (but those given one of their own with
    /// [`proxy_for`](Self::proxy_for)). TLS and WebSocket run inside the proxy's tunnel, so
    /// an HTTP proxy sees only the server's address of an `mqtts://` or `wss://` connection.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use mooring::client::{Client, Proxy};
    /// let builder = Client::builder()
    ///     .server("mqtts://broker.example:8883")
    ///     .proxy(Proxy::parse("http://proxy.plant:3128")?.with_credentials("gw", "s3cret"));
    /// # let _ = builder; Ok(()) }
    /// ```
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.settings.transport.proxy = Some(proxy);
        self
    }

    /// Reaches `server` (an address as given to [`server`](Self::server)) through `proxy`,
    /// whatever [`proxy`](Self::proxy) or the environment say for the others.
    pub fn proxy_for(mut self, server: impl Into<String>, proxy: Proxy) -> Self {
        self.settings.proxy_routes.set(server.into(), proxy);
        self
    }

    /// Reaches servers without a proxy of their own through the one the environment names
    /// ([`Proxy::from_env`]: `https_proxy`, `http_proxy`, `all_proxy`, `no_proxy`), read at
    /// every connection attempt. Off by default: a gateway's traffic goes where its
    /// configuration says, not where a variable set for some other program does.
    pub fn proxy_from_env(mut self, from_env: bool) -> Self {
        self.settings.proxy_routes.from_env = from_env;
        self
    }

    /// Opens byte streams with `connector` instead of TCP (and instead of any proxy).
    pub fn connector(mut self, connector: impl Connector) -> Self {
        self.settings.connector = Some(Arc::new(connector));
        self
    }
}
