//! Stopping: `disconnect()` drains what is in flight (up to the drain timeout), sends
//! DISCONNECT after its commit and closes; then every caller still waiting gets an answer.

use std::time::Instant;

use super::super::clock;

use tracing::info;

use super::super::{ClientError, ClientEvent, ConnectError};
use super::connection::{CLOSE_GRACE, Close};
use super::{Driver, Reply};
use crate::packet::ReasonCode;

/// A disconnect in progress.
struct Disconnecting {
    reason: ReasonCode,
    session_expiry: Option<u32>,
    /// The callers, the first one first; later calls are answered with it.
    replies: Vec<Reply<()>>,
    deadline: Instant,
    /// DISCONNECT was handed to the session (it goes out with the next output).
    sent: bool,
}

/// Whether and how the client is stopping.
#[derive(Default)]
pub(super) struct Stopping {
    disconnecting: Option<Disconnecting>,
    /// Why the client stopped, when it was not asked to.
    pub(super) error: Option<String>,
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
    pub(super) fn begin_disconnect(
        &mut self,
        reason: ReasonCode,
        session_expiry: Option<u32>,
        reply: Option<Reply<()>>,
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
        });
    }

    pub(super) async fn progress_disconnect(&mut self) {
        let Some(d) = self.stopping.disconnecting.as_ref() else {
            return;
        };
        if !self.conn.is_up() {
            // Nothing to drain towards: stop; the store keeps what is pending.
            if !self.conn.is_stopped() {
                if let Some(mut link) = self.conn.link.take() {
                    let _ = tokio::time::timeout(CLOSE_GRACE, link.close()).await;
                }
                self.stop(None);
            }
            return;
        }
        if d.sent {
            if !self.pipeline.holds_packets() && !self.conn.out.is_pending() {
                // DISCONNECT is on the wire.
                self.close_link(Close::Graceful).await;
                self.stop(None);
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
                    self.stop(None);
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
            None => self.stop(None),
        }
    }

    /// Commits what remains and answers everyone still waiting.
    pub(super) async fn finish(&mut self) {
        self.housekeeping.abort();
        self.flush_store().await;
        // The last acks, if the link takes them (a stalled one does not hold up the stop), and
        // only while this process surely owns the session.
        if !self.ownership_lapsed() {
            self.flush_out(CLOSE_GRACE).await;
            if let Some(link) = self.conn.link.as_mut() {
                let _ = tokio::time::timeout(CLOSE_GRACE, link.close()).await;
            }
        }
        self.conn.link = None;
        self.pipeline.fail_all();
        self.publishes.stop();
        self.requests.stop();
        self.inbox.stop();
        let error = self.stopping.error.take();
        self.conn.answer_first_connect(Err(ConnectError::Io(
            error
                .clone()
                .unwrap_or_else(|| "the client stopped".to_owned()),
        )));
        // Pending Ack commands and the like get Stopped as the channel closes.
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            command.reject();
        }
        if let Some(d) = self.stopping.disconnecting.take() {
            for reply in d.replies {
                let _ = reply.send(match &error {
                    None => Ok(()),
                    Some(_) => Err(ClientError::Stopped),
                });
            }
        }
        info!(error = ?error, "client stopped");
        self.update_stats();
        self.emit(ClientEvent::Stopped { error });
    }
}
