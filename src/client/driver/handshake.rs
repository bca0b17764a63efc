//! The handshake's outcome: a connection up (CONNACK accepted), and a session the server had
//! lost, reported once, with what was sent again and the subscriptions made again.

use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::super::events::ClientEvent;
use super::Driver;
use super::connection::SessionLostCounts;
use crate::packet::ConnAckProperties;

impl Driver {
    pub(super) fn on_connected(
        &mut self,
        session_present: bool,
        properties: Box<ConnAckProperties>,
        resubscribed: usize,
    ) {
        let server = self.server_url();
        let retransmits = self
            .slots
            .get(self.active)
            .map_or(0, |s| s.session.in_flight());
        info!(session_present, retransmits, "connected");
        // The failures in a row count on until the connection proves stable (lost()).
        self.conn.came_up();
        self.refresh.connected();
        self.server_worked();
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        self.metrics.connected();
        let lost = self.conn.take_session_lost();
        if lost != SessionLostCounts::default() || resubscribed > 0 {
            self.emit_session_lost(lost, resubscribed);
        }
        self.emit(ClientEvent::Connected {
            server,
            session_present,
            properties,
        });
        // After the events: a receiver taken once `connect()` returned sees none of the
        // first connection's (Client::events), as its tests rely on.
        self.conn.answer_first_connect(Ok(()));
        self.send_offline_requests();
    }

    pub(super) fn on_session_lost(&mut self, lost: SessionLostCounts) {
        let SessionLostCounts {
            resent,
            discarded,
            dropped_pubrel,
            dropped_inbound,
        } = lost;
        warn!(
            resent,
            discarded, dropped_pubrel, dropped_inbound, "the server had no session for the client"
        );
        if let Some(lost) = self.conn.defer_session_lost(lost) {
            self.emit_session_lost(lost, 0);
        }
    }

    fn emit_session_lost(&self, lost: SessionLostCounts, resubscribed: usize) {
        self.emit(ClientEvent::SessionLost {
            resent: lost.resent,
            discarded: lost.discarded,
            dropped_pubrel: lost.dropped_pubrel,
            dropped_inbound: lost.dropped_inbound,
            resubscribed,
        });
    }
}
