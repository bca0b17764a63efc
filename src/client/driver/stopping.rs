//! Stopping: `disconnect()` drains what is in flight (up to the drain timeout), sends
//! DISCONNECT after its commit and closes; then every caller still waiting gets an answer,
//! once everything that holds the store is gone (the farewell).

use std::sync::Arc;
use std::time::Instant;

use super::super::clock;

use tracing::{info, warn};

use super::super::error::{ClientError, ConnectError, StopReason};
use super::super::event_queue::EventHub;
use super::super::events::ClientEvent;
use super::connection::{CLOSE_GRACE, Close};
use super::{Driver, Reply};
use crate::packet::{ProtocolVersion, ReasonCode};
use crate::store::{StoreError, described};

/// A disconnect in progress.
struct Disconnecting {
    reason: ReasonCode,
    session_expiry: Option<u32>,
    /// The callers, the first one first; later calls are answered with it.
    replies: Vec<Reply<()>>,
    deadline: Instant,
    /// DISCONNECT was handed to the session (it goes out with the next output).
    sent: bool,
    /// Why the client stops once it is done.
    why: StopReason,
}

/// Whether and how the client is stopping.
#[derive(Default)]
pub(super) struct Stopping {
    disconnecting: Option<Disconnecting>,
    /// Why the client stopped; the first reason given wins.
    reason: Option<StopReason>,
}

/// What the client tells once it has released its store: the callers of `disconnect`, the
/// first `connect` if it still waits, `closed()` and the event receivers.
pub(super) struct Farewell {
    replies: Vec<Reply<()>>,
    reason: StopReason,
    stopped: tokio::sync::watch::Sender<Option<StopReason>>,
    events: EventHub,
}

impl Farewell {
    pub(super) fn deliver(self) {
        let asked = matches!(self.reason, StopReason::Disconnected);
        for reply in self.replies {
            let _ = reply.send(if asked {
                Ok(())
            } else {
                Err(ClientError::Stopped)
            });
        }
        self.stopped.send_replace(Some(self.reason.clone()));
        self.events.send(ClientEvent::Stopped {
            reason: self.reason,
        });
        self.events.close();
    }
}

/// The answer `connect()` gets when the client stopped before its first connection.
fn first_connect_error(reason: &StopReason) -> ClientError {
    match reason {
        StopReason::FirstConnectFailed(error)
        | StopReason::AttemptsExhausted { last: error, .. } => ClientError::Connect(error.clone()),
        StopReason::Store(error) => ClientError::Store(error.clone()),
        StopReason::TakenOver { session, holder } => ClientError::Connect(ConnectError::Ownership(
            std::sync::Arc::new(StoreError::Fenced {
                session: session.clone(),
                holder: holder.clone(),
            }),
        )),
        _ => ClientError::Stopped,
    }
}

impl Stopping {
    pub(super) fn is_disconnecting(&self) -> bool {
        self.disconnecting.is_some()
    }

    /// When draining gives up.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.disconnecting.as_ref().map(|d| d.deadline)
    }

    /// Stop now, without waiting for what is in flight.
    pub(super) fn skip_drain(&mut self) {
        if let Some(d) = self.disconnecting.as_mut() {
            d.deadline = clock::now();
        }
    }
}

impl Driver {
    /// Stops the loop; `reason` says why (a reason given earlier stands).
    pub(super) fn stop(&mut self, reason: StopReason) {
        self.stopping.reason.get_or_insert(reason);
        if self.lease_lapsed || self.ownership_lapsed() {
            // Another process may own the session: what waits in the inbox is its to deliver.
            self.gate.revoke();
        }
        self.conn.end();
    }

    pub(super) fn begin_disconnect(
        &mut self,
        reason: ReasonCode,
        session_expiry: Option<u32>,
        reply: Option<Reply<()>>,
        why: StopReason,
    ) {
        let deadline = clock::now() + self.settings.drain_timeout;
        if let Some(d) = self.stopping.disconnecting.as_mut() {
            // A later call is answered with the first.
            d.replies.extend(reply);
            d.deadline = d.deadline.min(deadline);
            return;
        }
        self.stopping.disconnecting = Some(Disconnecting {
            reason,
            session_expiry,
            replies: reply.into_iter().collect(),
            deadline,
            sent: false,
            why,
        });
    }

    /// Why a disconnect in progress stops the client.
    pub(super) fn disconnect_reason(&self) -> StopReason {
        self.stopping
            .disconnecting
            .as_ref()
            .map_or(StopReason::Disconnected, |d| d.why.clone())
    }

    /// The last handle was dropped while its thread panicked: no clean stop. The connection
    /// ends so that the server publishes the Will: DISCONNECT 0x04 with MQTT 5, none with
    /// 3.1.1 (where a DISCONNECT discards the Will). What is unacknowledged stays stored.
    pub(super) async fn abandon_in_panic(&mut self) {
        if self.settings.session.protocol == ProtocolVersion::V311 {
            self.close_link(Close::Abrupt).await;
            return self.stop(StopReason::Panicked);
        }
        let reason = ReasonCode::DisconnectWithWillMessage;
        self.begin_disconnect(reason, None, None, StopReason::Panicked);
        self.stopping.skip_drain();
    }

    pub(super) async fn progress_disconnect(&mut self) {
        let Some(d) = self.stopping.disconnecting.as_ref() else {
            return;
        };
        if !self.conn.is_up() {
            // Nothing to drain towards: stop; the store keeps what is pending.
            if !self.conn.is_stopped() {
                if let Some(mut link) = self.wire.detach() {
                    let _ = tokio::time::timeout(CLOSE_GRACE, link.close()).await;
                }
                self.stop(self.disconnect_reason());
            }
            return;
        }
        if d.sent {
            if !self.pipeline.holds_packets() && !self.wire.writing() {
                // DISCONNECT is on the wire.
                self.close_link(Close::Graceful).await;
                self.stop(self.disconnect_reason());
            }
            return;
        }
        let drained = self
            .slots
            .get(self.active)
            .is_some_and(|s| s.session.in_flight() == 0 && s.session.queued() == 0)
            && self.publishes.parked() == 0;
        if !drained && clock::now() < d.deadline {
            return;
        }
        let (reason, expiry) = (d.reason, d.session_expiry);
        let result = self.session().map(|s| s.disconnect(reason, expiry));
        match result {
            Some(Ok(())) => {
                if let Some(d) = self.stopping.disconnecting.as_mut() {
                    d.sent = true;
                }
                // Its output goes out now (after any commit).
                self.pump(super::Flush::WhenDue).await;
                if !self.pipeline.holds_packets() {
                    self.close_link(Close::Graceful).await;
                    self.stop(self.disconnect_reason());
                }
            }
            Some(Err(error)) => {
                // A DISCONNECT the session cannot make (an expiry it cannot take): refused,
                // and the connection stays.
                if let Some(d) = self.stopping.disconnecting.take() {
                    for reply in d.replies {
                        let _ = reply.send(Err(ClientError::Request(error.clone())));
                    }
                }
            }
            None => self.stop(self.disconnect_reason()),
        }
    }

    /// Commits what remains, ends every task that holds the store and answers everyone still
    /// waiting but those the farewell tells, once the store is released.
    pub(super) async fn finish(&mut self) -> Farewell {
        // Nothing handed out from now on could be acked, and once the store is released a
        // standby may own the session at once: what still waits in the inbox stays
        // unacknowledged, and the server sends it again with the session.
        self.gate.revoke();
        self.housekeeping.abort();
        let _ = (&mut self.housekeeping).await;
        // The next start learns the latest time the sessions saw (a clock behind it is wrong).
        let now = self.clock.now_ms();
        if !self.pipeline.has_failed() && !self.ownership_lapsed() {
            for slot in &mut self.slots {
                slot.session.stamp_clock_now(now);
            }
        }
        self.flush_store(false).await;
        // The last acks, if the link takes them (a stalled one does not hold up the stop), and
        // only while this process surely owns the session.
        if !self.ownership_lapsed() {
            self.flush_out(CLOSE_GRACE).await;
        }
        if let Some(mut link) = self.wire.detach()
            && !self.ownership_lapsed()
        {
            let _ = tokio::time::timeout(CLOSE_GRACE, link.close()).await;
        }
        // Nothing more is written: a store shared with a standby lets it take over now rather
        // than when the lease lapses. Not waited for long: the store finishes a slow release
        // on its own, and a lease that runs out hands the session on anyway.
        let store = Arc::clone(&self.store);
        let keys: Vec<_> = self.slots.iter().map(|slot| slot.key.clone()).collect();
        for key in keys {
            if let Ok(Err(e)) = tokio::time::timeout(CLOSE_GRACE, store.release(&key)).await {
                warn!(session = %key, error = %described(&e), "the session was not released; its lease will lapse");
            }
        }
        self.pipeline.fail_all().await;
        self.publishes.stop();
        self.requests.stop();
        self.inbox.stop();
        let reason = self
            .stopping
            .reason
            .take()
            .unwrap_or(StopReason::Disconnected);
        self.conn
            .answer_first_connect(Err(first_connect_error(&reason)));
        // Pending commands get Stopped as the channel closes.
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            command.reject();
        }
        info!(%reason, "client stopped");
        self.update_stats();
        Farewell {
            replies: self
                .stopping
                .disconnecting
                .take()
                .map(|d| d.replies)
                .unwrap_or_default(),
            reason,
            stopped: self.stopped.clone(),
            events: self.events.clone(),
        }
    }
}
