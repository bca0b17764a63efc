//! Ownership of the session, for stores that several machines share: the client writes to the
//! server only while the store says this process owns the session, and stops for good once
//! another process has taken it over (fenced).

use std::sync::Arc;

use tracing::warn;

use super::super::error::{ConnectionLoss, StopReason};
use super::super::events::ClientEvent;
use super::super::inbox::lease_ran_out;
use super::Driver;
use super::connection::Close;
use crate::store::{SessionKey, SessionStore, StoreError};

/// Whether the store's lease on `key`'s session ran out, asked afresh at each call: the
/// driver's every write asks it (io::exchange), so a lease renewed meanwhile counts.
pub(super) fn lapsed_for<'a>(
    store: &'a dyn SessionStore,
    key: Option<&'a SessionKey>,
) -> impl Fn() -> bool + 'a {
    move || key.is_some_and(|key| lease_ran_out(store, key))
}

impl Driver {
    /// Whether this process may have lost the session without knowing: the store's lease
    /// ran out (a process frozen past it, or cut off from the store) and nothing confirmed it
    /// since. Nothing more may be written until a connection attempt checks with the store.
    pub(super) fn ownership_lapsed(&self) -> bool {
        lapsed_for(
            &*self.store,
            self.slots.get(self.active).map(|slot| &slot.key),
        )()
    }

    /// When the store's lease on the active session runs out, while a connection is up and it
    /// has not yet: the loop wakes then, to drop the connection.
    pub(super) fn lease_deadline(&self) -> Option<std::time::Instant> {
        if !self.conn.is_up() {
            return None;
        }
        let key = &self.slots.get(self.active)?.key;
        let until = self.store.owned_until(key)?;
        // The store measures on the system's monotonic clock; the loop's timers run on
        // tokio's, which a test may pause: convert through what remains.
        let remaining = until.checked_duration_since(std::time::Instant::now())?;
        Some(super::clock::now() + remaining)
    }

    /// Whether the connection may neither write nor deliver what it read, because ownership
    /// lapsed unconfirmed: the loop then drops it (nothing unacknowledged is lost: it is sent
    /// again, or sent to us again, once ownership is confirmed).
    pub(super) fn held_back(&mut self) -> bool {
        self.lease_lapsed |= self.ownership_lapsed();
        self.lease_lapsed
    }

    /// Drops the connection whose writes the lapsed lease held back; the next attempt
    /// confirms ownership with the store before its CONNECT (or finds the session taken).
    pub(super) async fn on_ownership_lapsed(&mut self) {
        self.lease_lapsed = false;
        warn!("the store's lease on the session lapsed unconfirmed; reconnecting once it is");
        self.lost(ConnectionLoss::LeaseLapsed, Close::Abrupt).await;
    }

    /// If `error` says another process took the session over (a refused commit, or one whose
    /// outcome is unknown because of it): reports it and stops the client for good (it must never connect with the client identifier again). Returns
    /// whether it did.
    pub(super) fn stop_if_fenced(&mut self, error: &Arc<StoreError>) -> bool {
        let (session, holder) = match &**error {
            StoreError::Fenced { session, holder }
            | StoreError::OutcomeUnknown {
                session,
                holder: Some(holder),
                ..
            } => (session, holder),
            _ => return false,
        };
        warn!(%session, %holder, "the session was taken over; this client stops");
        self.emit(ClientEvent::SessionTakenOver {
            session: session.clone(),
            holder: holder.clone(),
        });
        self.gate.revoke();
        self.conn
            .answer_first_connect(Err(super::ClientError::Connect(
                super::ConnectError::Ownership(error.clone()),
            )));
        self.stop(StopReason::TakenOver {
            session: session.clone(),
            holder: holder.clone(),
        });
        true
    }
}
