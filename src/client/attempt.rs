//! A connection attempt as the application's hook sees it ([`ClientBuilder::before_connect`]):
//! the credentials, CONNECT user properties and transport settings it may change.
//!
//! [`ClientBuilder::before_connect`]: super::ClientBuilder::before_connect

use std::sync::Arc;

use bytes::Bytes;

use super::transport::{BoxFuture, TransportOptions};
use super::url::ServerUrl;
use crate::packet::UserProperty;

/// What a hook may change before a connection attempt: credentials, CONNECT user properties and
/// transport settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectAttempt {
    server: ServerUrl,
    attempt: u32,
    /// The user name of CONNECT.
    pub username: Option<String>,
    /// The password of CONNECT (a fresh token, say).
    pub password: Option<Bytes>,
    /// The User Properties of CONNECT.
    pub user_properties: Vec<UserProperty>,
    /// TLS and WebSocket settings for this attempt.
    pub transport: TransportOptions,
    /// When the credentials of this attempt stop working (a token's expiry): the client
    /// reconnects before then, on its own, with fresh ones (a planned reconnection: the
    /// session kept, nothing lost, no backoff). `None`: they do not expire. A
    /// [`CredentialProvider`](super::CredentialProvider) sets it from its credential.
    pub credentials_expire: Option<std::time::SystemTime>,
}

impl std::fmt::Debug for ConnectAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("ConnectAttempt")
            .field("server", &self.server)
            .field("attempt", &self.attempt)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("user_properties", &self.user_properties)
            .field("transport", &self.transport)
            .field("credentials_expire", &self.credentials_expire)
            .finish()
    }
}

impl ConnectAttempt {
    pub(crate) fn new(server: ServerUrl, attempt: u32, transport: TransportOptions) -> Self {
        Self {
            server,
            attempt,
            username: None,
            password: None,
            user_properties: Vec::new(),
            transport,
            credentials_expire: None,
        }
    }

    /// The server this attempt goes to.
    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    /// How many attempts failed in a row before this one (0 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// What a [`ClientBuilder::before_connect`](super::ClientBuilder::before_connect) hook returns when it cannot prepare an attempt.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) type Hook =
    Arc<dyn Fn(ConnectAttempt) -> BoxFuture<Result<ConnectAttempt, HookError>> + Send + Sync>;
