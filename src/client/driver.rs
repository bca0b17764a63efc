//! The connection task: owns the sessions, the store handle and the connection; runs the group
//! commit pipeline; reconnects.
//!
//! Invariants this file keeps:
//! - Packets polled from a session are written only after the store operations polled with
//!   them (and all before them) were committed: at most one commit is in flight, and a session
//!   is polled again only when it has returned. Everything produced meanwhile is the next batch.
//! - Packets polled for one connection never reach another (`link_gen`).
//! - Every caller waiting on the driver gets an answer: on stop, all of them get one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::options::{ConnectAttempt, QueuePolicy, Settings};
use super::transport::{self, BoxFuture, Link};
use super::url::ServerUrl;
use super::{
    Acker, ClientError, ClientEvent, ConnectError, Delivery, DeliveryError, Message, StatsCell,
    SubAckInfo,
};
use crate::packet::{
    Codec, Decoded, Disconnect, Packet, PacketType, Publish, QoS, ReasonCode, SubscribeProperties,
    Subscription, UnsubscribeProperties,
};
use crate::session::{DeliveryId, DeliveryTag, Event, RequestError, RequestId, Session};
use crate::store::{Batch, SessionKey, SessionStore, StoreError, StoreOp};

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// How long a graceful close waits for the server to close its side (a well-behaved server
/// closes at once after DISCONNECT; a broken one must not hold up the reconnect).
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// How long the removal of a completed flow's record may wait for a commit to join.
const DEFER_LIMIT: Duration = Duration::from_millis(20);

/// What a handle asks of the driver.
pub(crate) enum Command {
    Publish {
        publish: Publish,
        reply: Reply<Delivery>,
    },
    Subscribe {
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
        reply: Reply<SubAckInfo>,
    },
    Unsubscribe {
        filters: Vec<String>,
        properties: UnsubscribeProperties,
        reply: Reply<Vec<ReasonCode>>,
    },
    Ack {
        slot: usize,
        tag: DeliveryTag,
        reply: Reply<()>,
    },
    Expect {
        correlation: Bytes,
        reply: oneshot::Sender<Message>,
    },
    Forget {
        correlation: Bytes,
    },
    Disconnect {
        reason: ReasonCode,
        session_expiry: Option<u32>,
        reply: Reply<()>,
    },
    Reauthenticate {
        reply: Reply<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Publish { .. } => "Publish",
            Self::Subscribe { .. } => "Subscribe",
            Self::Unsubscribe { .. } => "Unsubscribe",
            Self::Ack { .. } => "Ack",
            Self::Expect { .. } => "Expect",
            Self::Forget { .. } => "Forget",
            Self::Disconnect { .. } => "Disconnect",
            Self::Reauthenticate { .. } => "Reauthenticate",
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One session: the server's (or the cluster's) and its key in the store.
struct Slot {
    key: SessionKey,
    session: Session,
}

/// A caller to answer when the next commit (or, with nothing to commit, the next pump) is done.
enum Waiter {
    Accept(Reply<Delivery>, Delivery),
    Ack(Reply<()>),
}

impl Waiter {
    fn succeed(self) {
        match self {
            Self::Accept(reply, delivery) => {
                let _ = reply.send(Ok(delivery));
            }
            Self::Ack(reply) => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn fail(self, error: impl FnOnce() -> ClientError) {
        match self {
            Self::Accept(reply, _) => {
                let _ = reply.send(Err(error()));
            }
            Self::Ack(reply) => {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

struct CommitInFlight {
    task: JoinHandle<Result<(), StoreError>>,
    sends: Vec<Packet>,
    link_gen: u64,
    waiters: Vec<Waiter>,
    started: Instant,
}

/// A SUBSCRIBE or UNSUBSCRIBE: sent, or waiting for a connection.
enum Request {
    Subscribe {
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
        /// `None` for a subscription made again after a lost session.
        reply: Option<Reply<SubAckInfo>>,
    },
    Unsubscribe {
        filters: Vec<String>,
        properties: UnsubscribeProperties,
        reply: Reply<Vec<ReasonCode>>,
    },
}

impl Request {
    fn fail(self, error: impl FnOnce() -> ClientError) {
        match self {
            Self::Subscribe {
                reply: Some(reply), ..
            } => {
                let _ = reply.send(Err(error()));
            }
            Self::Subscribe { reply: None, .. } => {}
            Self::Unsubscribe { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

enum Phase {
    /// Waiting until `at` to start the next attempt.
    Idle { at: Instant },
    /// Dialling (hook, TCP, TLS, WebSocket, CONNECT written).
    Dialing {
        attempt: BoxFuture<Result<Link, ConnectError>>,
        deadline: Instant,
    },
    /// CONNECT sent; CONNACK awaited.
    AwaitConnAck { deadline: Instant },
    /// Connected.
    Up,
    /// Finished: the loop ends.
    Stopped,
}

struct Disconnecting {
    reason: ReasonCode,
    session_expiry: Option<u32>,
    reply: Option<Reply<()>>,
    /// Later disconnect calls, answered with the first.
    more: Vec<Reply<()>>,
    deadline: Instant,
    /// DISCONNECT was handed to the session (it goes out with the next output).
    sent: bool,
}

pub(crate) struct Parts {
    pub(crate) settings: Settings,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) self_commands: mpsc::WeakSender<Command>,
    pub(crate) inbox: mpsc::Sender<Message>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    pub(crate) stats: Arc<StatsCell>,
    pub(crate) alive: oneshot::Receiver<()>,
    pub(crate) first_connect: oneshot::Sender<Result<(), ConnectError>>,
    pub(crate) fail_fast: bool,
    pub(crate) seed: u64,
}

pub(crate) struct Driver {
    settings: Settings,
    /// The first server: the preferred one.
    primary: ServerUrl,
    store: Arc<dyn SessionStore>,
    slots: Vec<Slot>,
    /// The slot of the server in use.
    active: usize,
    /// The server in use (or tried last).
    server: usize,
    link: Option<Link>,
    link_gen: u64,
    rbuf: BytesMut,
    phase: Phase,
    /// Failed attempts in a row.
    failures: u32,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    self_commands: mpsc::WeakSender<Command>,
    alive: Option<oneshot::Receiver<()>>,
    commit: Option<CommitInFlight>,
    waiters: Vec<Waiter>,
    deliveries: HashMap<(usize, DeliveryId), oneshot::Sender<Result<ReasonCode, DeliveryError>>>,
    requests: HashMap<(usize, RequestId), Request>,
    requests_offline: VecDeque<Request>,
    /// Subscriptions the server granted, to make again when a session is lost.
    subscriptions: Vec<(Subscription, SubscribeProperties)>,
    parked: VecDeque<(Publish, Reply<Delivery>)>,
    responses: HashMap<Bytes, oneshot::Sender<Message>>,
    inbox: mpsc::Sender<Message>,
    /// Messages waiting for room in the inbox, with the automatic ack each one still owes.
    inbox_backlog: VecDeque<(Message, Option<(usize, DeliveryTag)>)>,
    /// QoS 0 messages in `inbox_backlog`.
    backlog_qos0: usize,
    inbox_closed: bool,
    events: broadcast::Sender<ClientEvent>,
    stats: Arc<StatsCell>,
    first_connect: Option<oneshot::Sender<Result<(), ConnectError>>>,
    fail_fast: bool,
    disconnecting: Option<Disconnecting>,
    stop_error: Option<String>,
    /// What the session dropped when the server had none, until CONNACK is handled.
    session_lost: Option<(usize, usize, usize)>,
    store_failed: bool,
    span: tracing::Span,
    /// Jitter for reconnect delays.
    rng: fastrand::Rng,
    /// Publishes in the current (not yet polled) batch.
    batch_publishes: u64,
    /// Operations polled and not yet committed (see `pump_with`), one batch per slot.
    deferred: Vec<Batch>,
    /// When the oldest of them was polled.
    deferred_since: Option<Instant>,
}

/// What woke the loop.
enum Wake {
    Committed(Result<Result<(), StoreError>, tokio::task::JoinError>),
    Dialed(Result<Link, ConnectError>),
    Read(std::io::Result<usize>),
    InboxGone,
    Command(Option<Command>),
    HandlesGone,
    Timer,
    /// A message left the backlog for the inbox; the automatic ack it owes.
    HandedOver(Option<(usize, DeliveryTag)>),
}

/// Reads from the link if there is one; otherwise never resolves.
async fn read_link(link: &mut Option<Link>, buf: &mut BytesMut) -> std::io::Result<usize> {
    match link {
        Some(link) => link.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn dial(phase: &mut Phase) -> Result<Link, ConnectError> {
    match phase {
        Phase::Dialing { attempt, .. } => attempt.await,
        _ => std::future::pending().await,
    }
}

async fn commit_done(
    commit: &mut Option<CommitInFlight>,
) -> Result<Result<(), StoreError>, tokio::task::JoinError> {
    match commit {
        Some(c) => (&mut c.task).await,
        None => std::future::pending().await,
    }
}

async fn alive(alive: &mut Option<oneshot::Receiver<()>>) {
    match alive {
        Some(rx) => {
            let _ = rx.await;
        }
        None => std::future::pending().await,
    }
}

impl Driver {
    /// Loads every session the servers use and builds the driver.
    pub(crate) async fn load(parts: Parts) -> Result<Self, ClientError> {
        let settings = parts.settings;
        let primary = settings
            .servers
            .first()
            .cloned()
            .ok_or(ClientError::NoServer)?;
        let keys: Vec<SessionKey> = match &settings.cluster_scope {
            Some(scope) => vec![SessionKey::cluster(
                scope.clone(),
                settings.session.client_id.clone(),
            )],
            None => settings
                .servers
                .iter()
                .map(|s| SessionKey::new(s.to_string(), settings.session.client_id.clone()))
                .collect(),
        };
        let mut slots = Vec::with_capacity(keys.len());
        for key in keys {
            let stored = parts
                .store
                .load(&key)
                .await
                .map_err(|e| ClientError::Store(Arc::new(e)))?;
            let mut session = Session::new(settings.session.clone(), stored, now_ms())?;
            if let Some(make) = &settings.authenticator {
                session.set_authenticator(make());
            }
            slots.push(Slot { key, session });
        }
        Ok(Self {
            slots,
            active: 0,
            server: 0,
            link: None,
            link_gen: 0,
            rbuf: BytesMut::with_capacity(8 * 1024),
            phase: Phase::Idle { at: Instant::now() },
            failures: 0,
            commands: parts.commands,
            commands_open: true,
            self_commands: parts.self_commands,
            alive: Some(parts.alive),
            commit: None,
            waiters: Vec::new(),
            deliveries: HashMap::new(),
            requests: HashMap::new(),
            requests_offline: VecDeque::new(),
            subscriptions: Vec::new(),
            parked: VecDeque::new(),
            responses: HashMap::new(),
            inbox: parts.inbox,
            inbox_backlog: VecDeque::new(),
            backlog_qos0: 0,
            inbox_closed: false,
            events: parts.events,
            stats: parts.stats,
            first_connect: Some(parts.first_connect),
            fail_fast: parts.fail_fast,
            disconnecting: None,
            stop_error: None,
            session_lost: None,
            store_failed: false,
            span: tracing::info_span!("mooring", client_id = %settings.session.client_id),
            primary,
            rng: fastrand::Rng::with_seed(parts.seed),
            batch_publishes: 0,
            deferred: Vec::new(),
            deferred_since: None,
            store: parts.store,
            settings,
        })
    }

    fn slot_of(&self, server: usize) -> usize {
        if self.settings.cluster_scope.is_some() {
            0
        } else {
            server
        }
    }

    fn server_url(&self) -> ServerUrl {
        self.settings
            .servers
            .get(self.server)
            .cloned()
            .unwrap_or_else(|| self.primary.clone())
    }

    fn session(&mut self) -> Option<&mut Session> {
        self.slots.get_mut(self.active).map(|s| &mut s.session)
    }

    fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    /// Runs until the client stops.
    pub(crate) async fn run(mut self) {
        loop {
            // One span per connection attempt (server, client id), the client's otherwise.
            let span = self.span.clone();
            if !tracing::Instrument::instrument(self.turn(), span).await {
                break;
            }
        }
        let span = self.span.clone();
        tracing::Instrument::instrument(self.finish(), span).await;
    }

    /// One turn of the loop; `false` once the client has stopped.
    async fn turn(&mut self) -> bool {
        {
            self.admit_parked();
            self.pump().await;
            self.progress_disconnect().await;
            self.update_stats();
            if matches!(self.phase, Phase::Stopped) {
                return false;
            }
            let deadline = self.deadline();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            // QoS 1/2 messages wait unacknowledged, so the server's quota (and the engine,
            // for a server over it) bounds them; only QoS 0 can flood the backlog, and that
            // stops reading.
            let reading = self.backlog_qos0 < self.settings.inbox_capacity;
            let wake = tokio::select! {
                result = commit_done(&mut self.commit) => Wake::Committed(result),
                result = dial(&mut self.phase) => Wake::Dialed(result),
                result = read_link(&mut self.link, &mut self.rbuf), if reading => Wake::Read(result),
                permit = self.inbox.reserve(), if !self.inbox_backlog.is_empty() => match permit {
                    Ok(permit) => {
                        let auto = self.inbox_backlog.pop_front().and_then(|(message, auto)| {
                            if message.qos() == QoS::AtMostOnce {
                                self.backlog_qos0 = self.backlog_qos0.saturating_sub(1);
                            }
                            permit.send(message);
                            auto
                        });
                        Wake::HandedOver(auto)
                    }
                    Err(_) => Wake::InboxGone,
                },
                command = self.commands.recv(), if self.commands_open => Wake::Command(command),
                () = alive(&mut self.alive) => Wake::HandlesGone,
                () = sleep => Wake::Timer,
            };
            match wake {
                Wake::Committed(result) => self.on_commit(result).await,
                Wake::Dialed(result) => self.on_dialed(result),
                Wake::Read(result) => self.on_read(result).await,
                Wake::InboxGone => self.inbox_gone(),
                Wake::Command(Some(command)) => {
                    self.on_command(command);
                    // Take what else waits, so that it joins the same commit.
                    for _ in 0..256 {
                        match self.commands.try_recv() {
                            Ok(command) => self.on_command(command),
                            Err(_) => break,
                        }
                    }
                    // An ack can release a message held beyond Receive Maximum.
                    self.settle_events().await;
                }
                Wake::Command(None) => {
                    self.commands_open = false;
                    self.begin_disconnect(ReasonCode::Success, None, None);
                }
                Wake::HandlesGone => {
                    // Every Client handle is gone: disconnect without waiting to drain.
                    self.alive = None;
                    self.begin_disconnect(ReasonCode::Success, None, None);
                    if let Some(d) = self.disconnecting.as_mut() {
                        d.deadline = Instant::now();
                    }
                }
                Wake::Timer => self.on_timer().await,
                Wake::HandedOver(auto) => {
                    self.auto_ack(auto);
                    // The ack can release a message held beyond Receive Maximum.
                    self.settle_events().await;
                }
            }
        }
        true
    }

    fn deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut at = match &self.phase {
            Phase::Idle { at } => *at,
            Phase::Dialing { deadline, .. } | Phase::AwaitConnAck { deadline } => *deadline,
            Phase::Up => self
                .slots
                .get(self.active)
                .and_then(|s| s.session.poll_timeout())
                .unwrap_or(far),
            Phase::Stopped => far,
        };
        if let Some(d) = &self.disconnecting {
            at = at.min(d.deadline);
        }
        if let Some(since) = self.deferred_since {
            at = at.min(since + DEFER_LIMIT);
        }
        at
    }

    fn update_stats(&self) {
        let s = &self.stats;
        let in_flight: usize = self.slots.iter().map(|s| s.session.in_flight()).sum();
        let queued: usize = self.slots.iter().map(|s| s.session.queued()).sum();
        s.outbound_in_flight
            .store(in_flight as u64, Ordering::Relaxed);
        s.queued
            .store((queued + self.parked.len()) as u64, Ordering::Relaxed);
        let held: usize = self.slots.iter().map(|s| s.session.held()).sum();
        let held_total: u64 = self.slots.iter().map(|s| s.session.held_total()).sum();
        s.inbound_held.store(held as u64, Ordering::Relaxed);
        if held_total
            > s.inbound_over_receive_maximum
                .swap(held_total, Ordering::Relaxed)
        {
            debug!(
                held,
                held_total, "the server sent more than the client's Receive Maximum"
            );
        }
    }

    // ----- the commit pipeline -----

    /// Polls every session; commits what they produced, or, with nothing to commit, writes
    /// their packets at once. Does nothing while a commit is in flight.
    async fn pump(&mut self) {
        self.pump_with(false).await;
    }

    /// Like `pump`; `flush` commits deferred operations even when nothing else is due.
    async fn pump_with(&mut self, flush: bool) {
        if self.commit.is_some() {
            return;
        }
        let now = Instant::now();
        let mut urgent = false;
        let mut sends = Vec::new();
        if self.deferred.len() < self.slots.len() {
            self.deferred.resize_with(self.slots.len(), Batch::new);
        }
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(output) = slot.session.poll_output(now) else {
                continue;
            };
            if index == self.active {
                sends.extend(output.send);
            }
            if output.commit.is_empty() {
                continue;
            }
            // Removing the record of a completed flow protects nothing that is sent: it can
            // wait for the next commit. A crash before then resends a publish the server
            // already acknowledged (QoS 1: a duplicate QoS 1 allows; QoS 2: a PUBREL the server
            // answers with PUBCOMP), never a loss.
            let lazy = output
                .commit
                .ops()
                .iter()
                .all(|op| matches!(op, StoreOp::RemoveOutbound { .. }));
            urgent |= !lazy;
            if let Some(deferred) = self.deferred.get_mut(index) {
                deferred.append(output.commit);
            }
            self.deferred_since.get_or_insert(now);
        }
        let deferred_ops: usize = self.deferred.iter().map(Batch::len).sum();
        let due = self
            .deferred_since
            .is_some_and(|since| now >= since + DEFER_LIMIT);
        let commit_now = deferred_ops > 0 && (urgent || flush || due || deferred_ops >= 4096);
        let waiters = std::mem::take(&mut self.waiters);
        if !commit_now {
            // Nothing here needs durability first.
            waiters.into_iter().for_each(Waiter::succeed);
            self.write(sends).await;
            return;
        }
        let publishes = std::mem::take(&mut self.batch_publishes);
        let batches: Vec<(SessionKey, Batch)> = self
            .slots
            .iter()
            .zip(self.deferred.iter_mut())
            .filter(|(_, batch)| !batch.is_empty())
            .map(|(slot, batch)| (slot.key.clone(), std::mem::take(batch)))
            .collect();
        self.deferred_since = None;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .committed_ops
            .fetch_add(deferred_ops as u64, Ordering::Relaxed);
        self.stats
            .committed_publishes
            .fetch_add(publishes, Ordering::Relaxed);
        let store = self.store.clone();
        let task = tokio::spawn(async move {
            for (key, batch) in batches {
                store.commit(&key, batch).await?;
            }
            Ok(())
        });
        self.commit = Some(CommitInFlight {
            task,
            sends,
            link_gen: self.link_gen,
            waiters,
            started: now,
        });
    }

    async fn on_commit(&mut self, result: Result<Result<(), StoreError>, tokio::task::JoinError>) {
        let Some(done) = self.commit.take() else {
            return;
        };
        debug!(
            latency_us = done.started.elapsed().as_micros() as u64,
            "store commit"
        );
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(join) => Some(StoreError::Backend {
                backend: "commit task",
                message: join.to_string(),
                source: None,
            }),
        };
        match error {
            None => {
                done.waiters.into_iter().for_each(Waiter::succeed);
                if done.link_gen == self.link_gen {
                    self.write(done.sends).await;
                }
            }
            Some(error) => {
                warn!(%error, "store commit failed; the client stops");
                let error = Arc::new(error);
                self.stop_error = Some(format!("the session store failed: {error}"));
                self.store_failed = true;
                for waiter in done.waiters {
                    waiter.fail(|| ClientError::Store(error.clone()));
                }
                // The store refuses writes from now on: nothing more can be made durable.
                self.close_link(false).await;
                self.phase = Phase::Stopped;
            }
        }
    }

    /// Encodes and writes packets; a failure ends the connection.
    async fn write(&mut self, packets: Vec<Packet>) {
        if packets.is_empty() {
            return;
        }
        let Some(codec) = self.slots.get(self.active).map(|s| s.session.codec()) else {
            return;
        };
        let mut buf = BytesMut::new();
        for packet in &packets {
            if let Err(error) = codec.encode(packet, &mut buf) {
                // The engine checks sizes before it emits a packet; this is a bug, not input.
                warn!(%error, packet = ?packet.packet_type(), "packet not encodable; skipped");
            }
        }
        if let Err(why) = self.write_bytes(buf.freeze()).await {
            self.lost(why).await;
        }
    }

    async fn write_bytes(&mut self, bytes: Bytes) -> Result<(), String> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        match tokio::time::timeout(self.settings.write_timeout, link.write(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err(format!(
                "a write took longer than {:?}",
                self.settings.write_timeout
            )),
        }
    }

    // ----- connecting -----

    fn on_timer_idle(&mut self) {
        if self.disconnecting.is_some() {
            return;
        }
        let server = self.server;
        let slot = self.slot_of(server);
        self.active = slot;
        let url = self.server_url();
        let Some(session) = self.session() else {
            return;
        };
        let connect = match session.connect_packet() {
            Ok(connect) => connect,
            Err(e) => {
                self.attempt_failed(ConnectError::Auth(e.to_string()));
                return;
            }
        };
        self.span = tracing::info_span!(
            "connection",
            server = %url,
            client_id = %self.settings.session.client_id,
        );
        info!(parent: &self.span, attempt = self.failures, "connecting");
        let mut attempt = ConnectAttempt::new(url, self.failures, self.settings.transport.clone());
        attempt.username = connect.username.clone();
        attempt.password = connect.password.clone();
        attempt.user_properties = connect.properties.user_properties.clone();
        let hook = self.settings.hook.clone();
        let connector = self.settings.connector.clone();
        let future = async move {
            let attempt = match hook {
                Some(hook) => hook(attempt)
                    .await
                    .map_err(|e| ConnectError::Hook(e.to_string()))?,
                None => attempt,
            };
            let mut link =
                transport::open(attempt.server(), &attempt.transport, connector.as_deref())
                    .await
                    .map_err(|e| ConnectError::Transport(Arc::new(e)))?;
            let mut connect = connect;
            connect.username = attempt.username;
            connect.password = attempt.password;
            connect.properties.user_properties = attempt.user_properties;
            let mut buf = BytesMut::new();
            Codec::default()
                .encode(&Packet::Connect(Box::new(connect)), &mut buf)
                .map_err(|e| ConnectError::Protocol(format!("CONNECT is invalid: {e}")))?;
            link.write(buf.freeze())
                .await
                .map_err(|e| ConnectError::Io(e.to_string()))?;
            Ok(link)
        };
        self.phase = Phase::Dialing {
            attempt: Box::pin(future),
            deadline: Instant::now() + self.settings.connect_timeout,
        };
    }

    fn on_dialed(&mut self, result: Result<Link, ConnectError>) {
        let Phase::Dialing { deadline, .. } = self.phase else {
            return;
        };
        match result {
            Ok(link) => {
                self.link = Some(link);
                self.link_gen += 1;
                self.rbuf.clear();
                self.phase = Phase::AwaitConnAck { deadline };
            }
            Err(error) => self.attempt_failed(error),
        }
    }

    /// An attempt failed: report it, pick the next server, and wait (after a full round)
    /// before the next one.
    fn attempt_failed(&mut self, error: ConnectError) {
        let server = self.server_url();
        warn!(%server, %error, "connection attempt failed");
        self.emit(ClientEvent::ConnectFailed {
            server,
            error: error.clone(),
        });
        self.failures = self.failures.saturating_add(1);
        let count = self.settings.servers.len().max(1);
        self.server = (self.server + 1) % count;
        let round_done = self.server == 0;
        if round_done && self.fail_fast {
            if let Some(first) = self.first_connect.take() {
                let _ = first.send(Err(error));
                self.stop_error = Some("the first connection failed".to_owned());
                self.phase = Phase::Stopped;
                return;
            }
        }
        if self
            .settings
            .backoff
            .max_attempts
            .is_some_and(|max| self.failures >= max)
        {
            self.stop_error = Some(format!(
                "gave up after {} failed connection attempts; last: {error}",
                self.failures
            ));
            if let Some(first) = self.first_connect.take() {
                let _ = first.send(Err(error));
            }
            self.phase = Phase::Stopped;
            return;
        }
        let delay = if round_done {
            let rounds = self.failures / count as u32;
            self.settings
                .backoff
                .delay(rounds.saturating_sub(1), self.rng.u64(..))
        } else {
            Duration::ZERO
        };
        self.emit(ClientEvent::Reconnecting {
            attempt: self.failures,
            delay,
            server: self.server_url(),
        });
        self.phase = Phase::Idle {
            at: Instant::now() + delay,
        };
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        match &self.phase {
            Phase::Idle { at } if now >= *at => self.on_timer_idle(),
            Phase::Dialing { deadline, .. } if now >= *deadline => {
                self.attempt_failed(ConnectError::Timeout(self.settings.connect_timeout));
            }
            Phase::AwaitConnAck { deadline } if now >= *deadline => {
                self.close_link(false).await;
                self.attempt_failed(ConnectError::Timeout(self.settings.connect_timeout));
            }
            Phase::Up => {
                if let Some(session) = self.session() {
                    session.handle_timeout(now);
                }
                self.process_events().await;
            }
            _ => {}
        }
    }

    // ----- the connection -----

    async fn on_read(&mut self, result: std::io::Result<usize>) {
        match result {
            Ok(0) => {
                self.lost("the server closed the connection".to_owned())
                    .await
            }
            Ok(_) => self.decode_all().await,
            Err(e) => self.lost(format!("read failed: {e}")).await,
        }
    }

    async fn decode_all(&mut self) {
        let generation = self.link_gen;
        while self.link.is_some() && self.link_gen == generation {
            let Some(slot) = self.slots.get_mut(self.active) else {
                return;
            };
            let codec = slot.session.codec();
            match codec.decode(&mut self.rbuf) {
                Ok(Decoded::Incomplete { .. }) => return,
                Ok(Decoded::Packet(packet)) => {
                    let handled = slot.session.handle_incoming(packet, Instant::now());
                    if let Err(violation) = handled {
                        self.process_events().await;
                        self.violation(violation.reason_code(), violation.to_string())
                            .await;
                        return;
                    }
                    self.process_events().await;
                }
                Err(error) => {
                    self.violation(error.violation.reason_code(), error.to_string())
                        .await;
                    return;
                }
            }
        }
    }

    /// The server broke a rule: DISCONNECT with its reason code, then close.
    async fn violation(&mut self, reason: ReasonCode, why: String) {
        warn!(?reason, %why, "protocol violation by the server");
        let up = matches!(self.phase, Phase::Up);
        if up && reason.is_valid_for(PacketType::Disconnect) {
            let mut buf = BytesMut::new();
            let packet = Packet::Disconnect(Disconnect::new(reason));
            if Codec::default().encode(&packet, &mut buf).is_ok() {
                let _ = self.write_bytes(buf.freeze()).await;
            }
        }
        if up {
            self.lost_with(format!("protocol violation by the server: {why}"), true)
                .await;
        } else {
            self.close_link(false).await;
            self.attempt_failed(ConnectError::Protocol(why));
        }
    }

    /// Closes the link (politely when `polite`), and tells the session.
    async fn close_link(&mut self, polite: bool) {
        if let Some(mut link) = self.link.take() {
            if polite {
                let _ = tokio::time::timeout(CLOSE_GRACE, link.close()).await;
            }
        }
        self.link_gen += 1;
        self.rbuf.clear();
        if let Some(session) = self.session() {
            session.connection_lost(now_ms());
        }
        self.process_events_sync();
    }

    /// The connection ended: report it and schedule a reconnect.
    async fn lost(&mut self, why: String) {
        self.lost_with(why, false).await;
    }

    /// Like `lost`; `polite` closes the stream gracefully (after a DISCONNECT we sent, so that
    /// the server reads it before the socket goes).
    async fn lost_with(&mut self, why: String, polite: bool) {
        let was_up = matches!(self.phase, Phase::Up);
        let awaiting = matches!(self.phase, Phase::AwaitConnAck { .. });
        self.close_link(polite).await;
        if was_up {
            let server = self.server_url();
            info!(%server, reason = %why, "connection lost");
            self.emit(ClientEvent::ConnectionLost {
                server,
                reason: why,
            });
            if self.disconnecting.is_some() {
                // No reconnect; what is unacknowledged stays in the store.
                self.phase = Phase::Stopped;
                return;
            }
            // Start again from the preferred server.
            self.failures = 0;
            self.server = 0;
            let delay = self.settings.backoff.delay(0, self.rng.u64(..));
            self.emit(ClientEvent::Reconnecting {
                attempt: 0,
                delay,
                server: self.server_url(),
            });
            self.phase = Phase::Idle {
                at: Instant::now() + delay,
            };
        } else if awaiting {
            self.attempt_failed(ConnectError::Io(why));
        }
    }

    // ----- events from the session -----

    /// Handles the session's events; some end the connection.
    async fn process_events(&mut self) {
        let mut end: Option<String> = None;
        let mut refused = None;
        while let Some(event) = self.session().and_then(Session::poll_event) {
            match event {
                Event::KeepAliveTimeout => {
                    end = Some("no PINGRESP within the ping timeout".to_owned());
                }
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
                        server_reference,
                    });
                    end = Some(format!(
                        "the server sent DISCONNECT {reason:?}{}",
                        reason_string.map(|s| format!(": {s}")).unwrap_or_default()
                    ));
                }
                Event::ConnectionRefused { reason } => refused = Some(reason),
                other => self.on_event(self.active, other),
            }
        }
        if let Some(reason) = refused {
            self.close_link(false).await;
            self.attempt_failed(ConnectError::Refused { reason });
        } else if let Some(why) = end {
            self.lost(why).await;
        }
    }

    /// Handles events that need no I/O (after a connection loss).
    fn process_events_sync(&mut self) {
        for slot in 0..self.slots.len() {
            while let Some(event) = self
                .slots
                .get_mut(slot)
                .and_then(|s| s.session.poll_event())
            {
                self.on_event(slot, event);
            }
        }
    }

    fn on_event(&mut self, slot: usize, event: Event) {
        match event {
            Event::Delivered { id, reason } => {
                if let Some(tx) = self.deliveries.remove(&(slot, id)) {
                    let _ = tx.send(Ok(reason));
                }
            }
            Event::Failed { id, reason } => {
                if let Some(tx) = self.deliveries.remove(&(slot, id)) {
                    let _ = tx.send(Err(DeliveryError::Refused(reason)));
                }
            }
            Event::Message { tag, publish } => self.on_message(slot, tag, publish),
            Event::Connected {
                session_present,
                properties,
            } => self.on_connected(session_present, properties),
            Event::Subscribed {
                id,
                reason_codes,
                properties,
            } => match self.requests.remove(&(slot, id)) {
                Some(Request::Subscribe {
                    subscriptions,
                    properties: sub_props,
                    reply,
                }) => {
                    for (sub, code) in subscriptions.iter().zip(&reason_codes) {
                        if !code.is_error() {
                            self.subscriptions.retain(|(s, _)| s.filter != sub.filter);
                            self.subscriptions.push((sub.clone(), sub_props.clone()));
                        }
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(SubAckInfo {
                            reason_codes,
                            properties,
                        }));
                    }
                }
                Some(other) => other.fail(|| ClientError::Stopped),
                None => {}
            },
            Event::Unsubscribed {
                id, reason_codes, ..
            } => match self.requests.remove(&(slot, id)) {
                Some(Request::Unsubscribe { filters, reply, .. }) => {
                    self.subscriptions
                        .retain(|(s, _)| !filters.contains(&s.filter));
                    let _ = reply.send(Ok(reason_codes));
                }
                Some(other) => other.fail(|| ClientError::Stopped),
                None => {}
            },
            Event::RequestLost { id } => {
                // Unanswered: send it again on the next connection.
                if let Some(request) = self.requests.remove(&(slot, id)) {
                    self.requests_offline.push_back(request);
                }
            }
            Event::SessionExpired => self.emit(ClientEvent::SessionExpired),
            Event::SessionLost {
                resent,
                dropped_pubrel,
                dropped_inbound,
            } => {
                warn!(
                    resent,
                    dropped_pubrel, dropped_inbound, "the server had no session for the client"
                );
                let lost = (resent, dropped_pubrel, dropped_inbound);
                if matches!(self.phase, Phase::AwaitConnAck { .. }) {
                    // Reported with the subscriptions made again, once CONNACK is handled.
                    self.session_lost = Some(lost);
                } else {
                    self.emit_session_lost(lost, 0);
                }
            }
            // Handled by process_events, which ends the connection.
            Event::KeepAliveTimeout
            | Event::ServerDisconnected { .. }
            | Event::ConnectionRefused { .. } => {}
        }
    }

    fn on_connected(
        &mut self,
        session_present: bool,
        properties: Box<crate::packet::ConnAckProperties>,
    ) {
        let server = self.server_url();
        let retransmits = self
            .slots
            .get(self.active)
            .map_or(0, |s| s.session.in_flight());
        info!(session_present, retransmits, "connected");
        self.phase = Phase::Up;
        self.failures = 0;
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        if let Some(first) = self.first_connect.take() {
            let _ = first.send(Ok(()));
        }
        let mut resubscribed = 0;
        if !session_present && self.settings.resubscribe {
            for (subscription, properties) in self.subscriptions.clone() {
                self.requests_offline.push_front(Request::Subscribe {
                    subscriptions: vec![subscription],
                    properties,
                    reply: None,
                });
                resubscribed += 1;
            }
        }
        let lost = self.session_lost.take().unwrap_or_default();
        if lost != (0, 0, 0) || resubscribed > 0 {
            self.emit_session_lost(lost, resubscribed);
        }
        self.emit(ClientEvent::Connected {
            server,
            session_present,
            properties,
        });
        for request in std::mem::take(&mut self.requests_offline) {
            self.send_request(request);
        }
    }

    fn emit_session_lost(&self, lost: (usize, usize, usize), resubscribed: usize) {
        let (resent, dropped_pubrel, dropped_inbound) = lost;
        self.emit(ClientEvent::SessionLost {
            resent,
            dropped_pubrel,
            dropped_inbound,
            resubscribed,
        });
    }

    fn on_message(&mut self, slot: usize, tag: DeliveryTag, publish: Publish) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let owes_ack = tag != 0;
        let acker = if owes_ack && !self.settings.auto_ack {
            self.self_commands.upgrade().map(|commands| Acker {
                commands,
                slot,
                tag,
            })
        } else {
            None
        };
        if acker.is_some() {
            self.stats.inbound_unacked.fetch_add(1, Ordering::Relaxed);
        }
        // An automatic ack is given once the message is in the application's hands.
        let auto = (owes_ack && self.settings.auto_ack).then_some((slot, tag));
        let mut message = Message { publish, acker };
        if let Some(correlation) = message.publish.properties.correlation_data.clone() {
            if let Some(waiter) = self.responses.remove(&correlation) {
                match waiter.send(message) {
                    Ok(()) => {
                        self.auto_ack(auto);
                        return;
                    }
                    Err(back) => message = back,
                }
            }
        }
        if self.inbox_closed {
            self.discard(message, auto);
        } else if self.inbox_backlog.is_empty() {
            match self.inbox.try_send(message) {
                Ok(()) => self.auto_ack(auto),
                Err(mpsc::error::TrySendError::Full(message)) => self.wait_for_room(message, auto),
                Err(mpsc::error::TrySendError::Closed(message)) => {
                    self.inbox_closed = true;
                    self.discard(message, auto);
                }
            }
        } else {
            self.wait_for_room(message, auto);
        }
    }

    fn wait_for_room(&mut self, message: Message, auto: Option<(usize, DeliveryTag)>) {
        if message.qos() == QoS::AtMostOnce {
            self.backlog_qos0 += 1;
        }
        self.inbox_backlog.push_back((message, auto));
    }

    fn auto_ack(&mut self, auto: Option<(usize, DeliveryTag)>) {
        if let Some((slot, tag)) = auto {
            if let Some(s) = self.slots.get_mut(slot) {
                // Cannot be refused: the tag was delivered and nothing else acks it.
                let _ = s.session.ack(tag);
            }
        }
    }

    /// Nobody reads messages any more: ack and drop them so the server is not held up.
    fn discard(&mut self, mut message: Message, auto: Option<(usize, DeliveryTag)>) {
        if let Some(acker) = message.acker.take() {
            self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
            if let Some(slot) = self.slots.get_mut(acker.slot) {
                let _ = slot.session.ack(acker.tag);
            }
        }
        self.auto_ack(auto);
    }

    fn inbox_gone(&mut self) {
        self.inbox_closed = true;
        self.backlog_qos0 = 0;
        for (message, auto) in std::mem::take(&mut self.inbox_backlog) {
            self.discard(message, auto);
        }
    }

    /// Handles the events acks left behind: the active session's (which may end the
    /// connection), then the others'.
    async fn settle_events(&mut self) {
        self.process_events().await;
        self.process_events_sync();
    }

    // ----- commands -----

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { publish, reply } => {
                if self.disconnecting.is_some() {
                    let _ = reply.send(Err(ClientError::Stopped));
                    return;
                }
                let queued = self
                    .slots
                    .get(self.active)
                    .map_or(0, |s| s.session.queued());
                let publish_qos0_live = publish.qos == QoS::AtMostOnce
                    && matches!(self.phase, Phase::Up)
                    && queued == 0;
                if !publish_qos0_live
                    && (queued + self.parked.len() >= self.settings.queue_limit
                        || !self.parked.is_empty())
                {
                    match self.settings.queue_policy {
                        QueuePolicy::Fail => {
                            let _ =
                                reply.send(Err(ClientError::QueueFull(self.settings.queue_limit)));
                        }
                        QueuePolicy::Wait => self.parked.push_back((publish, reply)),
                    }
                    return;
                }
                self.accept(publish, reply);
            }
            Command::Subscribe {
                subscriptions,
                properties,
                reply,
            } => self.send_request(Request::Subscribe {
                subscriptions,
                properties,
                reply: Some(reply),
            }),
            Command::Unsubscribe {
                filters,
                properties,
                reply,
            } => self.send_request(Request::Unsubscribe {
                filters,
                properties,
                reply,
            }),
            Command::Ack { slot, tag, reply } => {
                let Some(s) = self.slots.get_mut(slot) else {
                    let _ = reply.send(Err(ClientError::Stopped));
                    return;
                };
                match s.session.ack(tag) {
                    Ok(()) => {
                        self.stats.inbound_unacked.fetch_sub(1, Ordering::Relaxed);
                        self.waiters.push(Waiter::Ack(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Expect { correlation, reply } => {
                self.responses.insert(correlation, reply);
            }
            Command::Forget { correlation } => {
                self.responses.remove(&correlation);
            }
            Command::Disconnect {
                reason,
                session_expiry,
                reply,
            } => self.begin_disconnect(reason, session_expiry, Some(reply)),
            Command::Reauthenticate { reply } => {
                let result = match self.session() {
                    Some(session) => session.reauthenticate().map_err(ClientError::from),
                    None => Err(ClientError::Stopped),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn accept(&mut self, publish: Publish, reply: Reply<Delivery>) {
        let qos = publish.qos;
        let slot = self.active;
        let Some(session) = self.session() else {
            let _ = reply.send(Err(ClientError::Stopped));
            return;
        };
        match session.publish(publish) {
            Ok(id) => {
                let (tx, rx) = oneshot::channel();
                if qos == QoS::AtMostOnce {
                    let _ = tx.send(Ok(ReasonCode::Success));
                } else {
                    self.deliveries.insert((slot, id), tx);
                }
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                self.batch_publishes += 1;
                self.waiters
                    .push(Waiter::Accept(reply, Delivery { id, rx }));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// Lets waiting publishers in while the queue has room.
    fn admit_parked(&mut self) {
        if self.disconnecting.is_some() {
            for (_, reply) in self.parked.drain(..) {
                let _ = reply.send(Err(ClientError::Stopped));
            }
            return;
        }
        while !self.parked.is_empty() {
            let queued = self
                .slots
                .get(self.active)
                .map_or(0, |s| s.session.queued());
            if queued >= self.settings.queue_limit {
                return;
            }
            if let Some((publish, reply)) = self.parked.pop_front() {
                self.accept(publish, reply);
            }
        }
    }

    fn send_request(&mut self, request: Request) {
        if !matches!(self.phase, Phase::Up) {
            self.requests_offline.push_back(request);
            return;
        }
        let slot = self.active;
        let Some(session) = self.session() else {
            request.fail(|| ClientError::Stopped);
            return;
        };
        let result = match &request {
            Request::Subscribe {
                subscriptions,
                properties,
                ..
            } => session.subscribe(subscriptions.clone(), properties.clone()),
            Request::Unsubscribe {
                filters,
                properties,
                ..
            } => session.unsubscribe(filters.clone(), properties.clone()),
        };
        match result {
            Ok(id) => {
                self.requests.insert((slot, id), request);
            }
            Err(RequestError::NotConnected) => self.requests_offline.push_back(request),
            Err(e) => request.fail(|| ClientError::Request(e)),
        }
    }

    // ----- disconnecting and stopping -----

    fn begin_disconnect(
        &mut self,
        reason: ReasonCode,
        session_expiry: Option<u32>,
        reply: Option<Reply<()>>,
    ) {
        if let Some(d) = self.disconnecting.as_mut() {
            // A later call is answered with the first.
            d.more.extend(reply);
            d.deadline = d.deadline.min(Instant::now() + self.settings.drain_timeout);
            return;
        }
        self.disconnecting = Some(Disconnecting {
            reason,
            session_expiry,
            reply,
            more: Vec::new(),
            deadline: Instant::now() + self.settings.drain_timeout,
            sent: false,
        });
    }

    async fn progress_disconnect(&mut self) {
        let Some(d) = self.disconnecting.as_ref() else {
            return;
        };
        if !matches!(self.phase, Phase::Up) {
            // Nothing to drain towards: stop; the store keeps what is pending.
            if !matches!(self.phase, Phase::Stopped) {
                if let Some(mut link) = self.link.take() {
                    let _ = tokio::time::timeout(CLOSE_GRACE, link.close()).await;
                }
                self.phase = Phase::Stopped;
            }
            return;
        }
        if d.sent {
            if self.commit.is_none() {
                // DISCONNECT is on the wire.
                self.close_link(true).await;
                self.phase = Phase::Stopped;
            }
            return;
        }
        let drained = self
            .slots
            .get(self.active)
            .is_some_and(|s| s.session.in_flight() == 0 && s.session.queued() == 0)
            && self.parked.is_empty();
        if !drained && Instant::now() < d.deadline {
            return;
        }
        let (reason, expiry) = (d.reason, d.session_expiry);
        let result = self.session().map(|s| s.disconnect(reason, expiry));
        match result {
            Some(Ok(())) => {
                if let Some(d) = self.disconnecting.as_mut() {
                    d.sent = true;
                }
                // Its output goes out now (after any commit).
                self.pump().await;
                if self.commit.is_none() {
                    self.close_link(true).await;
                    self.phase = Phase::Stopped;
                }
            }
            Some(Err(error)) => {
                // An expiry the session cannot take: refused, the connection stays.
                if let Some(d) = self.disconnecting.take() {
                    let message = error.to_string();
                    for reply in d.reply.into_iter().chain(d.more) {
                        let _ = reply.send(Err(ClientError::Request(RequestError::Unsupported(
                            if message.contains("expiry") {
                                "extending a Session Expiry Interval of 0"
                            } else {
                                "this DISCONNECT"
                            },
                        ))));
                    }
                }
            }
            None => self.phase = Phase::Stopped,
        }
    }

    /// Commits what remains and answers everyone still waiting.
    async fn finish(&mut self) {
        // Flush the store unless it failed.
        if !self.store_failed {
            loop {
                if let Some(commit) = self.commit.as_mut() {
                    let result = (&mut commit.task).await;
                    self.link = None;
                    self.on_commit(result).await;
                    continue;
                }
                self.pump_with(true).await;
                if self.commit.is_none() {
                    break;
                }
            }
        }
        if let Some(link) = self.link.as_mut() {
            let _ = tokio::time::timeout(CLOSE_GRACE, link.close()).await;
        }
        self.link = None;
        let stopped = || ClientError::Stopped;
        if let Some(commit) = self.commit.take() {
            commit.task.abort();
            commit.waiters.into_iter().for_each(|w| w.fail(stopped));
        }
        for waiter in std::mem::take(&mut self.waiters) {
            waiter.fail(stopped);
        }
        for (_, tx) in self.deliveries.drain() {
            let _ = tx.send(Err(DeliveryError::Stopped));
        }
        for (_, request) in self.requests.drain() {
            request.fail(stopped);
        }
        for request in self.requests_offline.drain(..) {
            request.fail(stopped);
        }
        for (_, reply) in self.parked.drain(..) {
            let _ = reply.send(Err(ClientError::Stopped));
        }
        self.responses.clear();
        if let Some(first) = self.first_connect.take() {
            let _ = first.send(Err(ConnectError::Io(
                self.stop_error
                    .clone()
                    .unwrap_or_else(|| "the client stopped".to_owned()),
            )));
        }
        // Pending Ack commands and the like get Stopped as the channel closes.
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            reject(command);
        }
        let error = self.stop_error.take();
        if let Some(d) = self.disconnecting.take() {
            for reply in d.reply.into_iter().chain(d.more) {
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

fn reject(command: Command) {
    match command {
        Command::Publish { reply, .. } => {
            let _ = reply.send(Err(ClientError::Stopped));
        }
        Command::Subscribe { reply, .. } => {
            let _ = reply.send(Err(ClientError::Stopped));
        }
        Command::Unsubscribe { reply, .. } => {
            let _ = reply.send(Err(ClientError::Stopped));
        }
        Command::Ack { reply, .. }
        | Command::Disconnect { reply, .. }
        | Command::Reauthenticate { reply } => {
            let _ = reply.send(Err(ClientError::Stopped));
        }
        Command::Expect { .. } | Command::Forget { .. } => {}
    }
}
