//! The connection's life: dial (hook, transport, the store's ownership check), the handshake
//! (CONNECT from the engine, CONNACK), protocol violations, loss, reconnect and backoff.
//! Reading and writing are in io.rs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::super::attempt::ConnectAttempt;
use super::super::clock;
use super::super::error::{ClientError, ConnectError, ConnectionLoss, ProtocolError, StopReason};
use super::super::events::{ClientEvent, ReconnectReason};
use super::super::transport::{self, BoxFuture, Handshake, Link, TransportError};
use super::Driver;
use crate::packet::ReasonCode;
use crate::session::{ConnectCredentials, ConnectPacketError, Event, ProtocolViolation, Session};

/// What a lost session dropped, reported once CONNACK is handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SessionLostCounts {
    pub(super) resent: usize,
    pub(super) discarded: usize,
    pub(super) dropped_pubrel: usize,
    pub(super) dropped_inbound: usize,
}

/// How long a graceful close waits for the server to close its side (a well-behaved server
/// closes at once after DISCONNECT; a broken one must not hold up the reconnect).
pub(super) const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// What the first failed round of connection attempts does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstFailure {
    /// Stop the client and fail `connect()`.
    Fail,
    /// Keep trying in the background (`start()`).
    Retry,
}

/// How a link is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// End the sending side and read until the server closes (bounded by [`CLOSE_GRACE`]), so
    /// that it reads what was sent last (a DISCONNECT, acks) before the socket goes.
    Graceful,
    /// Drop the socket at once.
    Abrupt,
}

enum Phase {
    /// Waiting until `at` to start the next attempt.
    Idle { at: Instant },
    /// Dialling (hook, TCP, TLS, WebSocket).
    Dialing {
        attempt: BoxFuture<Result<Dialed, ConnectError>>,
        deadline: Instant,
    },
    /// CONNECT handed to the session; CONNACK awaited.
    AwaitConnAck { deadline: Instant },
    /// Connected, since `since`.
    Up { since: Instant },
    /// Finished: the loop ends.
    Stopped,
}

/// An open stream, and the credentials the hook settled on for its CONNECT.
pub(super) struct Dialed {
    link: Link,
    /// Its TLS handshake, if any.
    tls: Option<Handshake>,
    /// When the credential it was opened with expires.
    credentials_expire: Option<std::time::SystemTime>,
    credentials: ConnectCredentials,
}

/// The state of the connection and of the attempts to make one.
pub(super) struct Connection {
    phase: Phase,
    /// Failed attempts in a row.
    failures: u32,
    /// Jitter for reconnect delays.
    rng: fastrand::Rng,
    /// The attempt's span (server, client id), the client's before the first.
    span: tracing::Span,
    first_connect: Option<oneshot::Sender<Result<(), ClientError>>>,
    first_failure: FirstFailure,
    /// What the session dropped when the server had none, until CONNACK is handled.
    session_lost: Option<SessionLostCounts>,
}

impl Connection {
    pub(super) fn new(
        client_id: &str,
        first_connect: oneshot::Sender<Result<(), ClientError>>,
        first_failure: FirstFailure,
        seed: u64,
    ) -> Self {
        Self {
            phase: Phase::Idle { at: clock::now() },
            failures: 0,
            rng: fastrand::Rng::with_seed(seed),
            span: tracing::info_span!("mooring", client_id = %client_id),
            first_connect: Some(first_connect),
            first_failure,
            session_lost: None,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up { .. })
    }

    pub(super) fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    /// The loop ends after this turn.
    pub(super) fn end(&mut self) {
        self.phase = Phase::Stopped;
    }

    /// A planned reconnection: the next attempt at once, the connection having worked.
    pub(super) fn reconnect_now(&mut self) {
        self.failures = 0;
        self.phase = Phase::Idle { at: clock::now() };
    }

    /// CONNACK accepted: the connection is up from now.
    pub(super) fn came_up(&mut self) {
        self.phase = Phase::Up {
            since: clock::now(),
        };
    }

    /// Keeps what a lost session dropped until CONNACK is handled, if it is awaited (the
    /// report then names the subscriptions made again too); gives it back otherwise.
    pub(super) fn defer_session_lost(
        &mut self,
        lost: SessionLostCounts,
    ) -> Option<SessionLostCounts> {
        if matches!(self.phase, Phase::AwaitConnAck { .. }) {
            self.session_lost = Some(lost);
            None
        } else {
            Some(lost)
        }
    }

    /// What a lost session dropped, kept until CONNACK.
    pub(super) fn take_session_lost(&mut self) -> SessionLostCounts {
        self.session_lost.take().unwrap_or_default()
    }

    /// The span the loop's work runs in.
    pub(super) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The dial in progress, if any; otherwise never resolves.
    pub(super) async fn dialed(&mut self) -> Result<Dialed, ConnectError> {
        match &mut self.phase {
            Phase::Dialing { attempt, .. } => attempt.await,
            _ => std::future::pending().await,
        }
    }

    /// When the phase needs the loop next; `keep_alive` gives the session's deadline.
    pub(super) fn deadline(&self, keep_alive: impl FnOnce() -> Option<Instant>) -> Option<Instant> {
        match &self.phase {
            Phase::Idle { at } => Some(*at),
            Phase::Dialing { deadline, .. } | Phase::AwaitConnAck { deadline } => Some(*deadline),
            Phase::Up { .. } => keep_alive(),
            Phase::Stopped => None,
        }
    }

    /// Tells `connect()` how the first connection went, if it still waits.
    pub(super) fn answer_first_connect(&mut self, result: Result<(), ClientError>) {
        if let Some(first) = self.first_connect.take() {
            let _ = first.send(result);
        }
    }
}

impl Driver {
    // ----- dialling -----

    /// Starts an attempt on the current server: the hook, then the transport.
    fn start_attempt(&mut self) {
        if self.stopping.is_disconnecting() {
            return;
        }
        self.active = self.slot_of(self.rotation.server());
        if let Some(slot) = self.slots.get(self.active) {
            self.gate.set_active(&slot.key);
        }
        let url = self.server_url();
        let Some(session) = self.session() else {
            return;
        };
        let credentials = session.connect_credentials();
        self.conn.span = tracing::info_span!(
            "connection",
            server = %url,
            client_id = %self.settings.session.client_id,
        );
        info!(parent: &self.conn.span, attempt = self.conn.failures, "connecting");
        self.metrics.attempt();
        let mut transport = self.settings.transport.clone();
        // An environment that names no valid proxy fails the attempt, saying why.
        let bad_proxy = match self
            .settings
            .proxy_routes
            .choose(&url, transport.proxy.as_ref())
        {
            Ok(proxy) => {
                transport.proxy = proxy;
                None
            }
            Err(source) => Some(TransportError::Proxy {
                server: url.to_string(),
                proxy: "the one the environment names".to_owned(),
                source,
            }),
        };
        let mut attempt = ConnectAttempt::new(url, self.conn.failures, transport);
        attempt.username = credentials.username;
        attempt.password = credentials.password;
        attempt.user_properties = credentials.user_properties;
        let hook = self.settings.hook.clone();
        let provider = self.settings.credentials.clone();
        let connector = self.settings.connector.clone();
        let store = self.store.clone();
        let key = self.slots.get(self.active).map(|slot| slot.key.clone());
        let now = clock::now();
        let turn = self
            .settings
            .connect_pace
            .as_ref()
            .map_or(Duration::ZERO, |pace| pace.reserve(now));
        let future = async move {
            if let Some(error) = bad_proxy {
                return Err(ConnectError::Transport(Arc::new(error)));
            }
            if !turn.is_zero() {
                tokio::time::sleep(turn).await;
            }
            if let Some(provider) = provider {
                let credential = provider
                    .credential(attempt.server())
                    .await
                    .map_err(|e| ConnectError::Credentials(Arc::from(e)))?;
                attempt.username = credential.username.or(attempt.username);
                attempt.password = credential.password.or(attempt.password);
                attempt.credentials_expire = credential.expires_at;
            }
            let attempt = match hook {
                Some(hook) => hook(attempt)
                    .await
                    .map_err(|e| ConnectError::Hook(Arc::from(e)))?,
                None => attempt,
            };
            let opened =
                transport::open(attempt.server(), &attempt.transport, connector.as_deref())
                    .await
                    .map_err(|e| ConnectError::Transport(Arc::new(e)))?;
            // Last, right before CONNECT: a process fenced meanwhile never sends it.
            if let Some(key) = key {
                store
                    .check_owner(&key)
                    .await
                    .map_err(|e| ConnectError::Ownership(Arc::new(e)))?;
            }
            Ok(Dialed {
                link: opened.link,
                tls: opened.tls,
                credentials_expire: attempt.credentials_expire,
                credentials: ConnectCredentials {
                    username: attempt.username,
                    password: attempt.password,
                    user_properties: attempt.user_properties,
                },
            })
        };
        self.conn.phase = Phase::Dialing {
            attempt: Box::pin(future),
            deadline: now + turn + self.settings.connect_timeout,
        };
    }

    /// The stream is open: the session produces CONNECT, which the pipeline writes first.
    pub(super) fn on_dialed(&mut self, result: Result<Dialed, ConnectError>) {
        let Phase::Dialing { deadline, .. } = self.conn.phase else {
            return;
        };
        let dialed = match result {
            Ok(dialed) => dialed,
            Err(ConnectError::Ownership(e)) if self.stop_if_fenced(&e) => return,
            Err(error) => return self.attempt_failed(error),
        };
        let started = match self.session() {
            Some(session) => {
                let c = &dialed.credentials;
                session.give_credential(c.username.as_deref(), c.password.as_deref());
                session.start_connection(dialed.credentials)
            }
            None => return,
        };
        if let Err(error) = started {
            return self.attempt_failed(match error {
                ConnectPacketError::Auth(e) => ConnectError::Auth(e),
                other => ConnectError::Protocol(ProtocolError::InvalidConnect(Arc::new(other))),
            });
        }
        if let Some(handshake) = dialed.tls {
            let resumed = handshake == Handshake::Resumed;
            self.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            self.stats
                .tls_resumed
                .fetch_add(u64::from(resumed), Ordering::Relaxed);
            self.metrics.tls_handshake(resumed);
        }
        self.refresh.dialed(dialed.credentials_expire);
        self.wire.attach(dialed.link);
        self.conn.phase = Phase::AwaitConnAck { deadline };
    }

    /// An attempt failed: report it, pick the next server, and wait (after a full round)
    /// before the next one.
    pub(super) fn attempt_failed(&mut self, error: ConnectError) {
        let server = self.server_url();
        warn!(%server, %error, "connection attempt failed");
        self.metrics.attempt_failed(error.kind());
        self.emit(ClientEvent::ConnectFailed {
            server,
            error: error.clone(),
        });
        self.conn.failures = self.conn.failures.saturating_add(1);
        // A refusal that named another server: that one next, at once, in a round from there.
        let redirected = self.rotation.redirected();
        let round_done = if redirected {
            self.start_round();
            false
        } else {
            self.next_server()
        };
        if round_done
            && self.conn.first_failure == FirstFailure::Fail
            && self.conn.first_connect.is_some()
        {
            self.conn
                .answer_first_connect(Err(ClientError::Connect(error.clone())));
            return self.stop(StopReason::FirstConnectFailed(error));
        }
        if self.attempts_exhausted(&error) {
            return;
        }
        let delay = if round_done {
            self.backoff_delay()
        } else {
            Duration::ZERO
        };
        self.reconnect_after(delay, ReconnectReason::AttemptFailed);
    }

    /// Stops the client when the failed attempts in a row reached `Backoff::max_attempts`;
    /// whether it did.
    fn attempts_exhausted(&mut self, last: &ConnectError) -> bool {
        let attempts = self.conn.failures;
        if self
            .settings
            .backoff
            .max_attempts
            .is_none_or(|max| attempts < max)
        {
            return false;
        }
        self.conn
            .answer_first_connect(Err(ClientError::Connect(last.clone())));
        self.stop(StopReason::AttemptsExhausted {
            attempts,
            last: last.clone(),
        });
        true
    }

    /// The backoff delay after the failures so far: it grows with every full round of the
    /// servers that failed.
    fn backoff_delay(&mut self) -> Duration {
        let count = self.settings.servers.len().max(1) as u32;
        let rounds = self.conn.failures / count;
        let random = self.conn.rng.u64(..);
        self.settings
            .backoff
            .delay(rounds.saturating_sub(1), random)
    }

    /// Schedules the next attempt `delay` from now, and says so.
    fn reconnect_after(&mut self, delay: Duration, reason: ReconnectReason) {
        self.emit(ClientEvent::Reconnecting {
            attempt: self.conn.failures,
            delay,
            server: self.server_url(),
            reason,
        });
        self.conn.phase = Phase::Idle {
            at: clock::now() + delay,
        };
    }

    pub(super) async fn on_timer(&mut self) {
        let now = clock::now();
        let timeout = self.settings.write_timeout;
        if self
            .wire
            .write_deadline(timeout)
            .is_some_and(|at| now >= at)
        {
            return self
                .lost(ConnectionLoss::WriteStalled(timeout), Close::Abrupt)
                .await;
        }
        match &self.conn.phase {
            Phase::Idle { at } if now >= *at => self.start_attempt(),
            Phase::Dialing { deadline, .. } if now >= *deadline => {
                self.attempt_failed(ConnectError::Timeout(self.settings.connect_timeout));
            }
            Phase::AwaitConnAck { deadline } if now >= *deadline => {
                self.close_link(Close::Abrupt).await;
                self.attempt_failed(ConnectError::Timeout(self.settings.connect_timeout));
            }
            Phase::Up { .. } if self.refresh.due(now) => self.refresh_credential().await,
            Phase::Up { .. } => {
                if let Some(session) = self.session() {
                    session.handle_timeout(now);
                }
                self.process_events().await;
            }
            _ => {}
        }
    }

    // ----- the end of a connection -----

    /// The server resumed a session this client holds no state of [MQTT-3.2.2-4]: close, and
    /// try again at once with Clean Start 1 (the engine asks for it). Not counted as a failed
    /// attempt: a new store meeting an old server session is normal, not an outage.
    pub(super) async fn start_clean(&mut self, violation: ProtocolViolation) {
        let server = self.server_url();
        warn!(%server, %violation, "starting the session anew");
        self.close_link(Close::Abrupt).await;
        self.emit(ClientEvent::ConnectFailed {
            server,
            error: ConnectError::Protocol(ProtocolError::Violation(violation)),
        });
        self.conn.phase = Phase::Idle { at: clock::now() };
    }

    /// The server broke a rule: DISCONNECT with its reason code, then close. Written directly,
    /// not through the pipeline, which may be waiting for a commit.
    pub(super) async fn violation(&mut self, error: ProtocolError) {
        let reason = error.reason_code();
        warn!(?reason, %error, "protocol violation by the server");
        self.metrics.violation();
        let up = self.conn.is_up();
        let disconnect = self.session().and_then(|s| s.violation_disconnect(reason));
        if let Some(disconnect) = disconnect.filter(|_| up) {
            // After what already waits to go out; the graceful close writes it all.
            self.write(&mut vec![disconnect]);
        }
        if up {
            self.lost(ConnectionLoss::Protocol(error), Close::Graceful)
                .await;
        } else {
            self.close_link(Close::Abrupt).await;
            self.attempt_failed(ConnectError::Protocol(error));
        }
    }

    /// Closes the link and tells the session.
    pub(super) async fn close_link(&mut self, close: Close) {
        // Past the lease not even a TLS close_notify goes out: the socket is just dropped.
        let graceful = close == Close::Graceful && !self.ownership_lapsed();
        if graceful {
            self.flush_out(self.settings.write_timeout).await;
        }
        if let Some(mut link) = self.wire.detach()
            && graceful
        {
            let _ = tokio::time::timeout(CLOSE_GRACE, link.close()).await;
        }
        self.metrics.connection_lost();
        self.refresh.lost();
        let wall_ms = self.clock.now_ms();
        if let Some(session) = self.session() {
            session.connection_lost(wall_ms);
        }
        self.process_events_sync();
    }

    /// The connection ended: report it and schedule a reconnect. One that ended before
    /// `Backoff::stable_after` counts as a failed attempt, so the delays keep growing.
    pub(super) async fn lost(&mut self, loss: ConnectionLoss, close: Close) {
        let up_since = match self.conn.phase {
            Phase::Up { since } => Some(since),
            _ => None,
        };
        let awaiting = matches!(self.conn.phase, Phase::AwaitConnAck { .. });
        self.close_link(close).await;
        if let Some(since) = up_since {
            let server = self.server_url();
            info!(%server, reason = %loss, "connection lost");
            self.emit(ClientEvent::ConnectionLost {
                server,
                reason: loss.clone(),
            });
            if self.stopping.is_disconnecting() {
                // No reconnect; what is unacknowledged stays in the store.
                return self.stop(self.disconnect_reason());
            }
            let lasted = clock::now().saturating_duration_since(since);
            if lasted < self.settings.backoff.stable_after {
                // Ended too soon to trust: one more failure in a row, the delay grows.
                self.conn.failures = self.conn.failures.saturating_add(1);
                if self.attempts_exhausted(&ConnectError::Closed(loss)) {
                    return;
                }
                let delay = if self.start_round() {
                    Duration::ZERO
                } else {
                    self.backoff_delay()
                };
                return self.reconnect_after(delay, ReconnectReason::ShortLived { lasted });
            }
            // Start again from the preferred server, or at once from a referenced one.
            self.conn.failures = 0;
            let delay = if self.start_round() {
                Duration::ZERO
            } else {
                self.settings.backoff.delay(0, self.conn.rng.u64(..))
            };
            self.reconnect_after(delay, ReconnectReason::ConnectionLost);
        } else if awaiting {
            self.attempt_failed(ConnectError::Closed(loss));
        }
    }

    /// Handles the active session's events; some end the connection.
    pub(super) async fn process_events(&mut self) {
        let mut end: Option<ConnectionLoss> = None;
        let mut refused = None;
        // A Server Reference the connection ended with.
        let mut referred: Option<(ReasonCode, Option<String>)> = None;
        while let Some(event) = self.session().and_then(Session::poll_event) {
            match event {
                Event::KeepAliveTimeout => end = Some(ConnectionLoss::KeepAliveTimeout),
                Event::ServerDisconnected {
                    reason,
                    reason_string,
                    server_reference,
                } => {
                    let server = self.server_url();
                    warn!(%server, ?reason, ?reason_string, "the server disconnected");
                    self.emit(ClientEvent::ServerDisconnected {
                        server,
                        reason,
                        reason_string: reason_string.clone(),
                        server_reference: server_reference.clone(),
                    });
                    referred = Some((reason, server_reference));
                    end = Some(ConnectionLoss::ServerDisconnected {
                        reason,
                        reason_string,
                    });
                }
                Event::ConnectionRefused {
                    reason,
                    server_reference,
                } => {
                    refused = Some(reason);
                    referred = Some((reason, server_reference));
                }
                other => self.on_event(self.active, other),
            }
        }
        if let Some((reason, reference)) = referred {
            self.follow(reason, reference.as_deref()).await;
        }
        if let Some(reason) = refused {
            self.close_link(Close::Abrupt).await;
            self.attempt_failed(ConnectError::Refused { reason });
        } else if let Some(loss) = end {
            self.lost(loss, Close::Abrupt).await;
        }
    }
}
