//! Credentials that expire: when the credential of the live connection will stop working,
//! and the planned reconnection before then (DISCONNECT, then a new connection at once with
//! a fresh credential; the session kept, no backoff).

use std::time::{Duration, Instant, SystemTime};

use tracing::info;

use super::super::clock;
use super::super::credentials::refresh_margin;
use super::super::events::{ClientEvent, ReconnectReason};
use super::Driver;
use super::connection::Close;
use crate::packet::ReasonCode;

/// When the live connection's credential must be replaced.
#[derive(Debug, Default)]
pub(super) struct CredentialRefresh {
    /// The expiry of the credential the connection being made uses.
    dialed: Option<SystemTime>,
    /// When to reconnect with a fresh one (the connection is up).
    at: Option<Instant>,
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

    /// When the loop must wake to refresh.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// Whether the refresh is due at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.at.is_some_and(|at| now >= at)
    }
}

impl Driver {
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
