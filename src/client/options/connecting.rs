//! How the client connects and reconnects: the backoff, which server it dials, the time an
//! attempt and a write may take, pacing among many clients, and what runs before each attempt
//! (hooks, credentials, enhanced authentication).

use std::sync::Arc;
use std::time::Duration;

use super::ClientBuilder;
use crate::client::attempt::{ConnectAttempt, HookError};
use crate::client::credentials::CredentialProvider;
use crate::client::pace::ConnectPace;
use crate::client::policy::Backoff;
use crate::session::Authenticator;

impl ClientBuilder {
    /// The reconnect policy.
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// Follow a Server Reference: when the server ends the connection, or refuses it, with
    /// 0x9C Use Another Server or 0x9D Server Moved and names another server, dial that one
    /// next, at once (off by default: the reference comes from the broker, not from you).
    /// The named server gets a session of its own, as every server does: what is in flight
    /// with the first is never sent to it (name a [`cluster_scope`](Self::cluster_scope) when
    /// the servers share their sessions). 0x9D also makes it the server each new round of
    /// attempts starts from, for as long as the client runs. A reference is the first entry of
    /// a space-separated list, a full address or `host[:port]` in the current scheme; one that
    /// would drop TLS is refused, and at most 8 servers are added this way.
    pub fn follow_server_references(mut self, on: bool) -> Self {
        self.settings.follow_server_references = on;
        self
    }

    /// After a lost connection, try the server that worked last first, instead of the first
    /// one given (off by default). For fleets whose first server is often down or far away.
    pub fn prefer_last_server(mut self, on: bool) -> Self {
        self.settings.prefer_last_server = on;
        self
    }

    /// The time allowed for one attempt, from dialling to CONNACK.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// The time a write may take before the connection counts as dead (a stalled peer).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.settings.write_timeout = timeout;
        self
    }

    /// How long [`Client::disconnect`](crate::client::Client::disconnect) waits for messages in
    /// flight and queued to be acknowledged before it sends DISCONNECT anyway.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// Takes turns with the other clients given clones of `pace` for every connection
    /// attempt: thousands of clients in one process start, and reconnect after a broker
    /// restart, without storming the broker. See [`ConnectPace`].
    pub fn connect_pace(mut self, pace: ConnectPace) -> Self {
        self.settings.connect_pace = Some(pace);
        self
    }

    /// Runs `hook` before every connection attempt; it may change credentials, CONNECT user
    /// properties and transport settings (a fresh token per reconnect). An error fails the
    /// attempt, which counts towards the backoff.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), mooring::client::ClientError> {
    /// use mooring::client::Client;
    /// # let store = mooring::store::MemoryStore::default();
    /// # async fn fetch_token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// let (client, _messages) = Client::builder()
    ///     .server("mqtts://broker.example")
    ///     .store(store)
    ///     .before_connect(|mut attempt| async move {
    ///         attempt.password = Some(fetch_token().await?.into());
    ///         Ok(attempt)
    ///     })
    ///     .connect()
    ///     .await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn before_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(ConnectAttempt) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ConnectAttempt, HookError>> + Send + 'static,
    {
        self.settings.hook = Some(Arc::new(move |attempt| Box::pin(hook(attempt))));
        self
    }

    /// Asks `provider` for a fresh [`Credential`](crate::client::Credential) (user name, password or
    /// token, expiry) before every connection attempt, and reconnects before the live
    /// connection's credential expires: a planned reconnection (DISCONNECT, then at once a
    /// new connection with a fresh credential; the session kept, nothing lost, no backoff,
    /// [`ReconnectReason::CredentialExpiring`](crate::client::ReconnectReason::CredentialExpiring)),
    /// a fifth of the credential's lifetime before it expires (at most 30 s before). Runs
    /// before the [`before_connect`](Self::before_connect) hook, which sees (and may change)
    /// what it gave.
    pub fn credential_provider(mut self, provider: impl CredentialProvider) -> Self {
        self.settings.credentials = Some(Arc::new(provider));
        self
    }

    /// Enhanced authentication: `make` builds an [`Authenticator`] for each session.
    pub fn authenticator<F>(mut self, make: F) -> Self
    where
        F: Fn() -> Box<dyn Authenticator> + Send + Sync + 'static,
    {
        self.settings.authenticator = Some(Arc::new(make));
        self
    }
}
