//! Credentials that expire (cloud tokens that live an hour): a provider the client asks for a
//! fresh credential before every connection, and a reconnection it plans before the
//! credential of the live connection expires.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::attempt::HookError;
use super::url::ServerUrl;

/// A user name and password (or token) for one connection, and when they stop working.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credential {
    /// The user name of CONNECT.
    pub username: Option<String>,
    /// The password of CONNECT: a password or a token.
    pub password: Option<Bytes>,
    /// When the server stops taking them; `None`: never.
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Credential {
    /// A user name and a password (or token) that do not expire.
    pub fn new(username: impl Into<String>, password: impl Into<Bytes>) -> Self {
        Self {
            username: Some(username.into()),
            password: Some(password.into()),
            expires_at: None,
        }
    }

    /// The same credential, valid until `at`.
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The same credential, valid for `lifetime` from now.
    pub fn expiring_in(self, lifetime: Duration) -> Self {
        self.expiring_at(SystemTime::now() + lifetime)
    }
}

/// Gives the client a fresh [`Credential`] before every connection attempt (the first, every
/// reconnection, and the reconnection it plans before the live connection's credential
/// expires). Set with [`ClientBuilder::credential_provider`](super::ClientBuilder::credential_provider).
///
/// ```
/// use mooring::client::{Credential, CredentialProvider, HookError, ServerUrl};
/// use std::time::Duration;
///
/// struct Tokens;
///
/// #[async_trait::async_trait]
/// impl CredentialProvider for Tokens {
///     async fn credential(&self, _server: &ServerUrl) -> Result<Credential, HookError> {
///         let token = String::from("eyJhbGciOi..."); // fetched from the token service
///         Ok(Credential::new("gateway-7", token).expiring_in(Duration::from_secs(3600)))
///     }
/// }
/// ```
#[async_trait]
pub trait CredentialProvider: Send + Sync + 'static {
    /// A credential to connect to `server` with now. An error fails the attempt (it counts
    /// towards the backoff, as any failed attempt does).
    async fn credential(&self, server: &ServerUrl) -> Result<Credential, HookError>;
}

/// A provider shared with the application (which may read what it gave).
#[async_trait]
impl<P: CredentialProvider> CredentialProvider for std::sync::Arc<P> {
    async fn credential(&self, server: &ServerUrl) -> Result<Credential, HookError> {
        (**self).credential(server).await
    }
}

/// How long before a credential expires the client reconnects with a fresh one: a fifth of
/// the credential's lifetime left at CONNACK, at most [`REFRESH_MARGIN_MAX`], so that a
/// reconnection has time to finish before the old credential stops working.
pub(crate) fn refresh_margin(left: Duration) -> Duration {
    (left / 5).min(REFRESH_MARGIN_MAX)
}

/// The most time a planned reconnection leaves before the credential expires.
pub(crate) const REFRESH_MARGIN_MAX: Duration = Duration::from_secs(30);
