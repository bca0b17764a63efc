//! The connection task: owns the sessions, the store handle and the connection; runs the group
//! commit pipeline; reconnects.
//!
//! Invariants this module keeps:
//! - Packets polled from a session are written only after the store operations polled with
//!   them (and all before them) were committed: at most one commit is in flight, and a session
//!   is polled again only when it has returned. Everything produced meanwhile is the next batch.
//! - Packets polled for one connection never reach another (`link_gen`).
//! - Every caller waiting on the driver gets an answer: on stop, all of them get one.
//!
//! One file per concern, each owning its state behind its methods (no other file reads its
//! fields; `tests/layers.rs` checks); [`Driver`] holds one of each and the loop that wakes them:
//!
//! | File | Owns |
//! |---|---|
//! | `load.rs` | starting: the sessions loaded, the wall clock started, housekeeping begun |
//! | `housekeeping.rs` | the store's other sessions: stranded ones reported, expired ones purged once per store |
//! | `command.rs` | [`Command`]: what handles ask, and its dispatch |
//! | `pipeline.rs` | `Pipeline`: the commit in flight, its waiters, deferred operations |
//! | `store_call.rs` | `StoreCall`: a commit or queue read, polled by the loop itself, a store's panic caught |
//! | `wire.rs` | `Wire`: the link, what was read, what waits to be written, which link it is |
//! | `io.rs` | reading packets off the wire into the session, writing the session's output |
//! | `connection.rs` | `Connection`: phase, dial, the attempt's span, reconnect, backoff |
//! | `handshake.rs` | the handshake's outcome: connected, a session the server had lost |
//! | `publishes.rs` | `Publishes`: publishers waiting for queue room, deliveries awaited |
//! | `inbound.rs` | `Inbox`: inbox, backlog, settlements (acks from the application), awaited responses |
//! | `redelivery.rs` | `Redeliveries`: messages released unhandled, handed over again or settled by the policy |
//! | `requests.rs` | `Requests`: SUBSCRIBE/UNSUBSCRIBE, the subscriptions to make again |
//! | `servers.rs` | `Rotation`: which server to dial: rounds, the preferred server, Server References |
//! | `refresh.rs` | `CredentialRefresh`: a planned reconnection before the credential expires |
//! | `ownership.rs` | the store's lease on the session: writes held back once it lapsed |
//! | `stopping.rs` | `Stopping`: stop, disconnect, drain, and the final answers |

mod command;
mod connection;
mod handshake;
mod housekeeping;
mod inbound;
mod io;
mod load;
mod ownership;
mod pipeline;
mod publishes;
mod redelivery;
mod refresh;
mod requests;
mod servers;
mod stopping;
mod store_call;
mod wire;

pub(crate) use command::Command;
pub(crate) use connection::FirstFailure;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::clock::{self, WallClock};
use super::error::{ClientError, ConnectError, StopReason};
use super::event_queue::EventHub;
use super::events::ClientEvent;
use super::events::StatsCell;
use super::inbox::OwnershipGate;
use super::message::Message;
use super::metrics::{Levels, Metrics};
use super::options::Settings;
use super::settlement::Origin;
use super::transport::Exchanged;
use crate::packet::ReasonCode;
use crate::session::{Event, Session};
use crate::store::{SessionKey, SessionStore};
use connection::Connection;
use inbound::{Inbox, InboxWake};
use pipeline::{CommitResult, Flush, Pipeline};
use publishes::{Publishes, Unsent};
use requests::Requests;
use stopping::Stopping;

/// Bytes waiting for the socket beyond which the driver takes no new commands.
const OUTGOING_HIGH_WATER: usize = 1024 * 1024;

/// Where a caller's answer goes.
type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// One session: the server's (or the cluster's) and its key in the store.
struct Slot {
    key: SessionKey,
    session: Session,
    /// Its key and store, as every message received in it carries them (for forwards).
    origin: Arc<Origin>,
}

impl Slot {
    fn new(key: SessionKey, session: Session, store: &dyn SessionStore) -> Self {
        let origin = Arc::new(Origin {
            key: key.clone(),
            storage: store.storage_id(),
        });
        Self {
            key,
            session,
            origin,
        }
    }
}

/// What the client hands the driver when it starts.
pub(crate) struct Parts {
    pub(crate) settings: Settings,
    pub(crate) store: Arc<dyn SessionStore>,
    /// Holds the application's manual-ack messages back while the lease lapsed (inbox.rs).
    pub(crate) gate: OwnershipGate,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) inbox: mpsc::Sender<Message>,
    pub(crate) events: EventHub,
    pub(crate) stats: Arc<StatsCell>,
    pub(crate) alive: oneshot::Receiver<()>,
    /// The last handle was dropped in a panic.
    pub(crate) panicked: Arc<AtomicBool>,
    /// Told why once the client has stopped and released its store.
    pub(crate) stopped: watch::Sender<Option<super::error::StopReason>>,
    pub(crate) first_connect: oneshot::Sender<Result<(), ClientError>>,
    pub(crate) first_failure: FirstFailure,
    pub(crate) seed: u64,
}

pub(crate) struct Driver {
    settings: Settings,
    /// Servers given to the builder; those after them were added by Server References.
    configured_servers: usize,
    slots: Vec<Slot>,
    /// The slot of the server in use.
    active: usize,
    conn: Connection,
    /// The link and its bytes (wire.rs).
    wire: wire::Wire,
    /// Which server is dialled (servers.rs).
    rotation: servers::Rotation,
    pipeline: Pipeline,
    publishes: Publishes,
    inbox: Inbox,
    /// Messages released unhandled, waiting to be handed over again (redelivery.rs).
    redeliveries: redelivery::Redeliveries,
    /// The drain rate's token bucket, when publishes are paced.
    pacer: Option<crate::client::drain_rate::Pacer>,
    requests: Requests,
    stopping: Stopping,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    /// Resolves when every `Client` handle is gone.
    alive: Option<oneshot::Receiver<()>>,
    /// The last handle was dropped in a panic.
    panicked: Arc<AtomicBool>,
    stopped: watch::Sender<Option<super::error::StopReason>>,
    events: EventHub,
    stats: Arc<StatsCell>,
    metrics: Metrics,
    /// Purges expired sessions now and then; ends with the driver.
    housekeeping: JoinHandle<()>,
    /// Writes were held back because the store's lease on the session lapsed (ownership.rs).
    lease_lapsed: bool,
    /// The session store, also the pipeline's (which commits to it): the rest of the driver
    /// reaches it here, so that the lease can be asked while the pipeline is borrowed.
    store: Arc<dyn SessionStore>,
    gate: OwnershipGate,
    /// The wall clock the sessions' expiry deadlines use.
    clock: WallClock,
    /// The loop's one timer, kept across turns: a timer made anew each turn registered
    /// with tokio's timer wheel, and woke the thread that parks on it, once per turn.
    timer: Pin<Box<tokio::time::Sleep>>,
    /// When the live connection's credential must be replaced (refresh.rs).
    refresh: refresh::CredentialRefresh,
}

/// What woke the loop.
enum Wake {
    Committed(CommitResult),
    QueueRead(pipeline::ReadResult),
    Dialed(Result<connection::Dialed, ConnectError>),
    /// The link read bytes, or wrote out everything pending, or failed.
    Exchanged(std::io::Result<Exchanged>),
    /// The store's lease ran out while bytes waited to be written (ownership.rs).
    LeaseLapsed,
    Inbox(InboxWake),
    Command(Option<Command>),
    HandlesGone,
    Timer,
    /// The credential provider answered, for a re-authentication in place (refresh.rs).
    Credential(Result<super::credentials::Credential, super::attempt::HookError>),
}

/// How often, at the longest, the loop looks whether the system clock stepped: a step moves
/// Message Expiry deadlines, which then run out at the right time (a few seconds late at
/// most).
const CLOCK_CHECK: Duration = Duration::from_secs(5);

async fn alive(alive: &mut Option<oneshot::Receiver<()>>) {
    match alive {
        Some(rx) => {
            let _ = rx.await;
        }
        None => std::future::pending().await,
    }
}

impl Driver {
    fn session(&mut self) -> Option<&mut Session> {
        self.slots.get_mut(self.active).map(|s| &mut s.session)
    }

    /// Gives the session in use what the drain rate earned since the last turn.
    fn pace(&mut self) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        let grant = pacer.grant(clock::now());
        if let Some(slot) = self.slots.get_mut(self.active) {
            slot.session.allow_sends(
                grant.messages,
                grant.bytes,
                grant.burst_messages,
                grant.burst_bytes,
            );
        }
    }

    fn emit(&self, event: ClientEvent) {
        self.events.send(event);
    }

    /// Runs until the client stops.
    pub(crate) async fn run(mut self) {
        loop {
            // One span per connection attempt (server, client id), the client's otherwise.
            let span = self.conn.span().clone();
            if !tracing::Instrument::instrument(self.turn(), span).await {
                break;
            }
        }
        let span = self.conn.span().clone();
        let farewell = tracing::Instrument::instrument(self.finish(), span).await;
        // Everything that holds the store goes first: whoever hears of the stop can open the
        // store again at once.
        drop(self);
        farewell.deliver();
    }

    /// One turn of the loop; `false` once the client has stopped.
    async fn turn(&mut self) -> bool {
        // A lease that ran out while nothing was written ends the connection too: nothing
        // more is read from it, and the next attempt asks the store first.
        if self.conn.is_up() && self.ownership_lapsed() {
            self.lease_lapsed = true;
        }
        if self.lease_lapsed {
            self.on_ownership_lapsed().await;
        }
        self.admit_parked();
        self.redeliver_due();
        if let Some(shift_ms) = self.clock.follow_step() {
            warn!(
                shift_ms,
                "the system clock stepped; the sessions' deadlines follow it"
            );
            for slot in &mut self.slots {
                slot.session.clock_stepped(shift_ms);
            }
            self.emit(ClientEvent::ClockStepped { shift_ms });
        }
        let now = self.clock.now_ms();
        for slot in &mut self.slots {
            slot.session.tick(now);
        }
        self.pace();
        // Expired queued messages resolve their deliveries.
        self.settle_events().await;
        self.pump(Flush::WhenDue).await;
        self.progress_disconnect().await;
        self.update_stats();
        if self.conn.is_stopped() {
            return false;
        }
        self.set_timer();
        let reading = self.inbox.reads_on(self.settings.inbox_capacity);
        let writing = self.wire.writing();
        let backed_up = self.wire.backed_up(OUTGOING_HIGH_WATER);
        let wake = tokio::select! {
            finished = self.pipeline.finished() => match finished {
                pipeline::Finished::Commit(result) => Wake::Committed(result),
                pipeline::Finished::Read(result) => Wake::QueueRead(result),
            },
            result = self.conn.dialed() => Wake::Dialed(result),
            exchanged = self.wire.exchange(
                reading,
                ownership::lapsed_for(&*self.store, self.slots.get(self.active).map(|s| &s.key)),
            ), if reading || writing => match exchanged {
                wire::Exchange::Done(result) => Wake::Exchanged(result),
                wire::Exchange::LeaseLapsed => Wake::LeaseLapsed,
            },
            inbox = self.inbox.wake(self.settings.inbox_capacity) => Wake::Inbox(inbox),
            // A server that stops reading fills `out`: take no more commands until it drains
            // (or the write timeout ends the connection); reading goes on meanwhile.
            command = self.commands.recv(), if self.commands_open && !backed_up => {
                Wake::Command(command)
            }
            fetched = self.refresh.fetched(), if self.refresh.is_fetching() => {
                Wake::Credential(fetched)
            }
            () = alive(&mut self.alive) => Wake::HandlesGone,
            () = self.timer.as_mut() => Wake::Timer,
        };
        match wake {
            Wake::Committed(result) => self.on_commit(result).await,
            Wake::QueueRead(result) => self.on_queue_read(result).await,
            Wake::Dialed(result) => self.on_dialed(result),
            Wake::Exchanged(result) => self.on_exchanged(result).await,
            Wake::LeaseLapsed => self.on_ownership_lapsed().await,
            Wake::Inbox(InboxWake::Gone) => self.inbox_gone(),
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
                if self.panicked.load(Ordering::SeqCst) {
                    self.abandon_in_panic().await;
                } else {
                    let why = StopReason::HandlesDropped;
                    self.begin_disconnect(ReasonCode::Success, None, None, why);
                }
            }
            Wake::HandlesGone => {
                // Every Client handle is gone: disconnect without waiting to drain.
                self.alive = None;
                if self.panicked.load(Ordering::SeqCst) {
                    self.abandon_in_panic().await;
                } else {
                    let why = StopReason::HandlesDropped;
                    self.begin_disconnect(ReasonCode::Success, None, None, why);
                    self.stopping.skip_drain();
                }
            }
            Wake::Timer => self.on_timer().await,
            Wake::Credential(fetched) => self.reauthenticate_with(fetched).await,
            Wake::Inbox(InboxWake::HandedOver) => {}
            Wake::Inbox(InboxWake::Settled(settlement)) => {
                // An application that does not wait for this answer reads on and settles the
                // next messages meanwhile: let it, so that one write carries many acks (one ack
                // per write keeps the server at one message per round trip). One that waits
                // would only wait longer.
                if settlement.reply.is_none() {
                    tokio::task::yield_now().await;
                }
                self.take_settlements(settlement);
                // An ack can release a message held beyond Receive Maximum.
                self.settle_events().await;
            }
        }
        true
    }

    /// Sets the timer for the next deadline. A timer already set earlier is left as it is
    /// (a deadline that moved later, as keep-alive's does with each packet sent, only costs
    /// one early turn, which finds nothing due): moving it is what costs.
    fn set_timer(&mut self) {
        let deadline = tokio::time::Instant::from_std(self.deadline());
        let current = self.timer.deadline();
        if deadline < current || self.timer.is_elapsed() {
            self.timer.as_mut().reset(deadline);
        }
    }

    fn deadline(&self) -> Instant {
        // At least this often the loop looks whether the system clock stepped.
        let far = clock::now() + CLOCK_CHECK;
        let keep_alive = || {
            self.slots
                .get(self.active)
                .and_then(|s| s.session.poll_timeout())
        };
        let mut at = self.conn.deadline(keep_alive).unwrap_or(far);
        if let Some(stall) = self.wire.write_deadline(self.settings.write_timeout) {
            at = at.min(stall);
        }
        if let Some(drain) = self.stopping.deadline() {
            at = at.min(drain);
        }
        if let Some(flush) = self.pipeline.deadline() {
            at = at.min(flush);
        }
        if let Some(redelivery) = self.redeliveries.deadline() {
            at = at.min(redelivery);
        }
        if let Some(pacer) = &self.pacer
            && self
                .slots
                .get(self.active)
                .is_some_and(|s| s.session.waits_for_allowance())
        {
            at = at.min(clock::now() + pacer.interval());
        }
        if let Some(lapse) = self.lease_deadline() {
            at = at.min(lapse);
        }
        if let Some(refresh) = self.refresh.deadline() {
            at = at.min(refresh);
        }
        if let Some(next) = self
            .slots
            .iter()
            .filter_map(|s| s.session.next_tick_ms())
            .min()
        {
            let wait = next.saturating_sub(self.clock.now_ms());
            at = at.min(clock::now() + Duration::from_millis(wait));
        }
        at
    }

    fn update_stats(&mut self) {
        let awaited = self.inbox.responses_awaited();
        let s = &self.stats;
        s.responses_awaited.store(awaited as u64, Ordering::Relaxed);
        let in_flight: usize = self.slots.iter().map(|s| s.session.in_flight()).sum();
        let queued: u64 = self.slots.iter().map(|s| s.session.queued()).sum();
        s.outbound_in_flight
            .store(in_flight as u64, Ordering::Relaxed);
        s.queued
            .store(queued + self.publishes.parked() as u64, Ordering::Relaxed);
        let queued_bytes: u64 = self.slots.iter().map(|s| s.session.queued_bytes()).sum();
        s.queued_bytes.store(queued_bytes, Ordering::Relaxed);
        let oldest = self
            .slots
            .iter()
            .filter_map(|s| s.session.oldest_queued_at_ms())
            .min();
        let age_ms = oldest.map_or(0, |at| self.clock.now_ms().saturating_sub(at));
        s.oldest_queued_age_ms.store(age_ms, Ordering::Relaxed);
        let held: usize = self.slots.iter().map(|s| s.session.held()).sum();
        let held_total: u64 = self.slots.iter().map(|s| s.session.held_total()).sum();
        s.inbound_held.store(held as u64, Ordering::Relaxed);
        let duplicates: u64 = self
            .slots
            .iter()
            .map(|s| s.session.duplicates_dropped())
            .sum();
        s.duplicates_dropped.store(duplicates, Ordering::Relaxed);
        let seen_keys: usize = self.slots.iter().map(|s| s.session.seen_keys_kept()).sum();
        s.seen_keys.store(seen_keys as u64, Ordering::Relaxed);
        self.metrics.levels(Levels {
            queued: queued + self.publishes.parked() as u64,
            queued_bytes,
            in_flight: in_flight as u64,
            inbound_unacked: s.inbound_unacked.load(Ordering::Relaxed),
            inbound_held: held as u64,
            dropped_unacked: s.dropped_unacked.load(Ordering::Relaxed),
            duplicates_dropped: duplicates,
            oldest_queued_age: Duration::from_millis(age_ms),
            connected: self.conn.is_up(),
        });
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

    // ----- events from the sessions -----

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

    /// Handles the events acks left behind: the active session's (which may end the
    /// connection), then the others'.
    async fn settle_events(&mut self) {
        self.process_events().await;
        self.process_events_sync();
    }

    fn on_event(&mut self, slot: usize, event: Event) {
        match event {
            Event::Delivered { id, reason } => {
                self.metrics.acked();
                self.publishes.resolve(slot, id, Ok(reason))
            }
            Event::Dropped { id, topic } => self.on_unsent(slot, id, topic, Unsent::Dropped),
            Event::Expired { id, topic } => self.on_unsent(slot, id, topic, Unsent::Expired),
            Event::Replaced { id, topic, .. } => self.on_unsent(slot, id, topic, Unsent::Replaced),
            Event::Failed { id, reason } => {
                self.publishes
                    .resolve(slot, id, Err(super::error::DeliveryError::Refused(reason)))
            }
            Event::Message { tag, publish } => self.on_message(slot, tag, publish),
            Event::Connected {
                session_present,
                properties,
                resubscribed,
            } => self.on_connected(session_present, properties, resubscribed),
            Event::Subscribed {
                id,
                reason_codes,
                properties,
            } => self.requests.subscribed(slot, id, reason_codes, properties),
            Event::Unsubscribed {
                id, reason_codes, ..
            } => self.requests.unsubscribed(slot, id, reason_codes),
            Event::RequestNotSent { id, filters, error } => {
                if let Some((filters, error)) = self.requests.not_sent(slot, id, filters, error) {
                    self.emit(ClientEvent::SubscriptionChangeNotSent { filters, error });
                }
            }
            Event::SessionExpired => self.emit(ClientEvent::SessionExpired),
            Event::SessionLost {
                resent,
                discarded,
                dropped_pubrel,
                dropped_inbound,
            } => self.on_session_lost(connection::SessionLostCounts {
                resent,
                discarded,
                dropped_pubrel,
                dropped_inbound,
            }),
            Event::Discarded { id, topic } => self.on_unsent(slot, id, topic, Unsent::Discarded),
            // Handled by process_events, which ends the connection.
            Event::KeepAliveTimeout
            | Event::ServerDisconnected { .. }
            | Event::ConnectionRefused { .. } => {}
        }
    }
}
