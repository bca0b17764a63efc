//! Credentials that expire: when the credential of the live connection will stop working,
//! and what is done before then. A connection that authenticated with an Authentication
//! Method re-authenticates in place with a fresh credential (AUTH 0x19); any other makes a
//! planned reconnection (DISCONNECT, then a new connection at once with a fresh credential;
//! the session kept, no backoff).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::super::attempt::HookError;
use super::super::clock;
use super::super::credentials::{Credential, refresh_margin};
use super::super::events::{ClientEvent, ReconnectReason};
use super::Driver;
use super::connection::Close;
use crate::packet::ReasonCode;

/// A fresh credential being asked for, to re-authenticate with.
type Fetching = Pin<Box<dyn Future<Output = Result<Credential, HookError>> + Send>>;

/// When the live connection's credential must be replaced.
#[derive(Default)]
pub(super) struct CredentialRefresh {
    /// The expiry of the credential the connection being made uses.
    dialed: Option<SystemTime>,
    /// When to replace it (the connection is up).
    at: Option<Instant>,
    /// The provider's answer, awaited by the loop, for a re-authentication in place.
    fetching: Option<Fetching>,
}

impl std::fmt::Debug for CredentialRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRefresh")
            .field("dialed", &self.dialed)
            .field("at", &self.at)
            .field("fetching", &self.fetching.is_some())
            .finish()
    }
}

impl CredentialRefresh {
    /// An attempt opened its stream with a credential that expires at `expires`.
    pub(super) fn dialed(&mut self, expires: Option<SystemTime>) {
        self.dialed = expires;
        self.at = None;
    }

    /// The connection is up: the reconnection is planned a margin before the expiry. A
    /// credential with no time left plans none (the server took it; a reconnection now would
    /// get one no better).
    pub(super) fn connected(&mut self) {
        self.at = self.dialed.take().and_then(|expires| {
            let left = expires.duration_since(SystemTime::now()).ok()?;
            (left > Duration::ZERO)
                .then(|| clock::now() + left.saturating_sub(refresh_margin(left)))
        });
    }

    /// The connection ended: nothing to refresh.
    pub(super) fn lost(&mut self) {
        *self = Self::default();
    }

    /// When the loop must wake to refresh (not while a fresh credential is on its way).
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.at.filter(|_| self.fetching.is_none())
    }

    /// The provider's answer, once it comes; pending while none is asked for.
    pub(super) async fn fetched(&mut self) -> Result<Credential, HookError> {
        match self.fetching.as_mut() {
            Some(fetching) => {
                let result = fetching.await;
                self.fetching = None;
                result
            }
            None => std::future::pending().await,
        }
    }

    /// Whether a fresh credential is on its way.
    pub(super) fn is_fetching(&self) -> bool {
        self.fetching.is_some()
    }

    /// Whether the refresh is due at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.fetching.is_none() && self.at.is_some_and(|at| now >= at)
    }
}

impl Driver {
    /// The credential expires soon. A connection with enhanced authentication asks the
    /// provider for a fresh one (the loop awaits the answer, [`Driver::reauthenticate_with`])
    /// and re-authenticates in place; any other reconnects.
    pub(super) async fn refresh_credential(&mut self) {
        let enhanced = self.session().is_some_and(|s| s.uses_enhanced_auth());
        match (&self.settings.credentials, enhanced) {
            (Some(provider), true) => {
                let (provider, server) = (provider.clone(), self.server_url());
                self.refresh.fetching =
                    Some(Box::pin(async move { provider.credential(&server).await }));
            }
            _ => self.reconnect_for_credentials().await,
        }
    }

    /// The provider answered: re-authenticate with the new credential (AUTH 0x19) and plan
    /// the next refresh by its expiry. If the provider failed or the session cannot
    /// re-authenticate, reconnect as without enhanced authentication; a server that refuses
    /// the new credential ends the connection itself, and the reconnection asks again.
    pub(super) async fn reauthenticate_with(&mut self, fetched: Result<Credential, HookError>) {
        let credential = match fetched {
            Ok(credential) => credential,
            Err(error) => {
                warn!(%error, "the credential provider failed: reconnecting instead");
                return self.reconnect_for_credentials().await;
            }
        };
        let sent = self.session().map(|session| {
            session.give_credential(
                credential.username.as_deref(),
                credential.password.as_deref(),
            );
            session.reauthenticate()
        });
        match sent {
            Some(Ok(())) => {
                info!(server = %self.server_url(), "re-authenticating with a fresh credential");
                self.stats.reauthentications.fetch_add(1, Ordering::Relaxed);
                self.refresh.dialed(credential.expires_at);
                self.refresh.connected();
            }
            Some(Err(error)) => {
                warn!(%error, "cannot re-authenticate: reconnecting instead");
                self.reconnect_for_credentials().await;
            }
            None => {}
        }
    }

    /// The credential expires soon: DISCONNECT (Success: the Will is not published, the
    /// session is kept), what waits for the store committed and written first, then a new
    /// attempt at once, which asks the provider for a fresh credential. Flows in flight go
    /// again on the new connection, as after any reconnection.
    pub(super) async fn reconnect_for_credentials(&mut self) {
        self.refresh.lost();
        let server = self.server_url();
        info!(%server, "the credential expires soon: reconnecting with a fresh one");
        let sent = self
            .session()
            .is_some_and(|s| s.disconnect(ReasonCode::Success, None).is_ok());
        if sent {
            self.flush_store(true).await;
        }
        self.close_link(Close::Graceful).await;
        self.emit(ClientEvent::Reconnecting {
            attempt: 0,
            delay: Duration::ZERO,
            server,
            reason: ReconnectReason::CredentialExpiring,
        });
        self.conn.reconnect_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reconnection_is_planned_a_fifth_of_the_lifetime_before_the_expiry() {
        let mut refresh = CredentialRefresh::default();
        refresh.dialed(Some(SystemTime::now() + Duration::from_secs(10)));
        assert_eq!(
            refresh.deadline(),
            None,
            "planned only once the connection is up"
        );
        let before = clock::now();
        refresh.connected();
        let at = refresh.deadline().expect("planned");
        let after = at.saturating_duration_since(before);
        // 8 s, give or take the microseconds between the clock readings here and there.
        assert!(
            after > Duration::from_millis(7_500) && after < Duration::from_millis(8_050),
            "{after:?}"
        );
        assert!(!refresh.due(before) && refresh.due(at));
        refresh.lost();
        assert_eq!(refresh.deadline(), None);

        // An hour-long token: 30 s before, not 12 minutes.
        refresh.dialed(Some(SystemTime::now() + Duration::from_secs(3600)));
        refresh.connected();
        let after = refresh
            .deadline()
            .expect("planned")
            .saturating_duration_since(clock::now());
        assert!(
            after > Duration::from_secs(3569) && after < Duration::from_millis(3_570_050),
            "{after:?}"
        );

        // Expired already, or not expiring: nothing planned.
        for expires in [Some(SystemTime::now() - Duration::from_secs(1)), None] {
            refresh.dialed(expires);
            refresh.connected();
            assert_eq!(refresh.deadline(), None);
        }
    }
}
