//! The group commit pipeline: what the sessions produce is committed as one batch while the
//! next gathers (sessions are polled during the commit, and what they may send at once,
//! `early`, is written at once); the packets that depend on it are written, and the callers
//! answered, only when it has returned, and then the sessions hear which outputs are written
//! and durable. Reads of the offline queue beyond a session's window go through it too,
//! between commits; a session only asks to read what it was told is written.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::super::clock;
use super::super::error::{ClientError, StopReason};
use super::super::message::Delivery;
use super::super::settlement::Forwarding;
use super::connection::Close;
use super::store_call::StoreCall;
use super::{Driver, Reply, Slot};
use crate::packet::Packet;
use crate::store::{Batch, QueuedPublish, SessionKey, SessionStore, StoreError, StoreOp};

/// How long the removal of a completed flow's record may wait for a commit to join.
const DEFER_LIMIT: Duration = Duration::from_millis(20);

/// Deferred operations beyond which a commit is made at once.
const DEFER_MAX_OPS: usize = 4096;

/// How a commit ended.
pub(super) type CommitResult = Result<(), StoreError>;

/// What [`Pipeline::finished`] saw end.
pub(super) enum Finished {
    Commit(CommitResult),
    Read(ReadResult),
}

/// Queued messages read back from the store.
pub(super) type QueueRecords = Vec<(u64, QueuedPublish)>;

/// How a queue read ended: which slot asked, and what the store returned.
pub(super) type ReadResult = (usize, Result<QueueRecords, StoreError>);

/// Whether operations that protect no packet are committed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flush {
    /// Only when something else needs a commit, or they waited `DEFER_LIMIT`.
    WhenDue,
    /// Now (the client is stopping).
    All,
}

/// A caller to answer when the next commit (or, with nothing to commit, the next pump) is done.
pub(super) enum Waiter {
    /// A publish accepted into `slot`'s session; `withdrawable` unless it forwards a message
    /// (whose ack is in the same commit: the two go together or not at all).
    Accept {
        reply: Reply<Delivery>,
        delivery: Delivery,
        slot: usize,
        withdrawable: bool,
    },
    Ack(Reply<()>),
}

/// A publish whose caller gave up before it was answered: its slot and id.
pub(super) type Cancelled = (usize, crate::session::PublishId);

impl Waiter {
    /// Answers the caller; the publish it could not be told of, if its caller is gone.
    fn succeed(self) -> Option<Cancelled> {
        match self {
            Self::Accept {
                reply,
                delivery,
                slot,
                withdrawable,
            } => {
                let id = delivery.id;
                let gone = reply.send(Ok(delivery)).is_err();
                (gone && withdrawable).then_some((slot, id))
            }
            Self::Ack(reply) => {
                let _ = reply.send(Ok(()));
                None
            }
        }
    }

    /// The publish of a caller that is gone, before anything is answered.
    fn cancelled(&self) -> Option<Cancelled> {
        match self {
            Self::Accept {
                reply,
                delivery,
                slot,
                withdrawable: true,
            } if reply.is_closed() => Some((*slot, delivery.id)),
            _ => None,
        }
    }

    pub(super) fn fail(self, error: impl FnOnce() -> ClientError) {
        match self {
            Self::Accept { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            Self::Ack(reply) => {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

struct CommitInFlight {
    call: StoreCall<()>,
    /// The packets that wait for it, and the link they were polled for.
    sends: Vec<Packet>,
    link_gen: u64,
    waiters: Vec<Waiter>,
    started: Instant,
    /// Publishes it makes durable.
    publishes: u64,
    /// Per slot, the last output whose operations it holds (0: none polled yet).
    generations: Vec<u64>,
    /// Messages of other clients whose copies (and QoS 2 markers) it stores: told once it
    /// returns.
    forwards: Vec<Forwarding>,
}

/// The commit in flight and what gathers for the next one.
pub(super) struct Pipeline {
    store: Arc<dyn SessionStore>,
    commit: Option<CommitInFlight>,
    /// A queue read in flight, for the slot it names.
    read: Option<(usize, StoreCall<QueueRecords>)>,
    /// Callers answered by the next commit.
    waiters: Vec<Waiter>,
    /// Publishes in the current (not yet polled) batch.
    batch_publishes: u64,
    /// Operations polled and not yet committed, one batch per slot.
    deferred: Vec<Batch>,
    /// When the oldest of them was polled.
    deferred_since: Option<Instant>,
    /// A deferred operation protects a packet or a caller: commit as soon as none is in flight.
    urgent: bool,
    /// Packets polled behind the commit in flight (they follow its packets), and their link.
    gathered: Vec<Packet>,
    gathered_link_gen: u64,
    /// The lists of the last commit, emptied and kept for the next one with their memory:
    /// lists grown anew for each commit cost allocations per message.
    spare: (Vec<Packet>, Vec<Waiter>),
    /// Per slot, the last output polled.
    polled: Vec<u64>,
    /// A commit failed: the store refuses writes until it is reopened.
    failed: bool,
    /// Operations on sessions of other clients on the same store (forwarded messages'
    /// markers), for the next commit.
    foreign: Vec<(SessionKey, StoreOp)>,
    /// The forwarded messages those operations belong to.
    forwards: Vec<Forwarding>,
    /// The next commit must apply every session's batch at once (a forward's copy and its
    /// message's ack are in different sessions).
    atomic: bool,
}

impl Pipeline {
    pub(super) fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            commit: None,
            read: None,
            waiters: Vec::new(),
            spare: (Vec::new(), Vec::new()),
            batch_publishes: 0,
            deferred: Vec::new(),
            deferred_since: None,
            urgent: false,
            gathered: Vec::new(),
            gathered_link_gen: 0,
            polled: Vec::new(),
            failed: false,
            foreign: Vec::new(),
            forwards: Vec::new(),
            atomic: false,
        }
    }

    /// A message forwarded from another client: its marker (if any) joins the next commit,
    /// which applies every session's batch at once, and its client hears when that returns.
    pub(super) fn forward_from(&mut self, from: Forwarding) {
        if let Some(marker) = from.marker() {
            self.foreign.push(marker);
        }
        self.forwards.push(from);
        self.atomic = true;
    }

    /// The next commit applies every session's batch at once (a forward within this client
    /// between two of its sessions).
    pub(super) fn commit_atomically(&mut self) {
        self.atomic = true;
    }

    /// Answers `waiter` with the next commit.
    pub(super) fn wait(&mut self, waiter: Waiter) {
        self.waiters.push(waiter);
    }

    /// Takes the publishes whose callers gave up while they wait for the next commit: their
    /// waiters go, the publishes are to be withdrawn.
    pub(super) fn take_cancelled(&mut self) -> Vec<Cancelled> {
        let mut cancelled = Vec::new();
        self.waiters.retain(|waiter| match waiter.cancelled() {
            Some(c) => {
                cancelled.push(c);
                false
            }
            None => true,
        });
        cancelled
    }

    /// The packets polled behind the commit, not yet written (a withdrawn publish leaves).
    pub(super) fn gathered_mut(&mut self) -> &mut Vec<Packet> {
        &mut self.gathered
    }

    /// Counts a publish accepted into the batch being gathered.
    pub(super) fn count_publish(&mut self) {
        self.batch_publishes += 1;
    }

    pub(super) fn is_committing(&self) -> bool {
        self.commit.is_some()
    }

    /// Whether packets wait for a commit: in flight, or behind it.
    pub(super) fn holds_packets(&self) -> bool {
        self.commit.is_some() || !self.gathered.is_empty()
    }

    pub(super) fn is_reading(&self) -> bool {
        self.read.is_some()
    }

    /// Resolves when the commit or the read in flight returns (there is never both); never
    /// without one.
    pub(super) async fn finished(&mut self) -> Finished {
        if self.commit.is_some() {
            Finished::Commit(self.done().await)
        } else {
            Finished::Read(self.read_done().await)
        }
    }

    /// Resolves when the queue read in flight returns; never without one.
    pub(super) async fn read_done(&mut self) -> ReadResult {
        match self.read.as_mut() {
            Some((slot, call)) => (*slot, call.answer("queue read").await),
            None => std::future::pending().await,
        }
    }

    /// Starts the first queue read a session asks for; `false` when none does.
    fn start_read(&mut self, slots: &mut [Slot]) -> bool {
        let wanted = slots.iter_mut().enumerate().find_map(|(index, slot)| {
            Some((index, slot.key.clone(), slot.session.poll_queue_read()?))
        });
        let Some((index, key, read)) = wanted else {
            return false;
        };
        let store = self.store.clone();
        let call = StoreCall::new(async move {
            match read.class {
                0 => store.read_queue(&key, read.from, read.window).await,
                class => {
                    store
                        .read_class_queue(&key, class, read.from, read.window)
                        .await
                }
            }
        });
        self.read = Some((index, call));
        true
    }

    pub(super) fn has_failed(&self) -> bool {
        self.failed
    }

    /// When deferred operations must be committed.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deferred_since.map(|since| since + DEFER_LIMIT)
    }

    /// Resolves when the commit in flight returns; never without one.
    pub(super) async fn done(&mut self) -> CommitResult {
        match self.commit.as_mut() {
            Some(commit) => commit.call.answer("commit").await,
            None => std::future::pending().await,
        }
    }

    /// Polls every session, also while a commit is in flight: what may go out at once
    /// (`early`) is handed back to write now; the operations join the next commit, and the
    /// packets that follow them wait behind it.
    fn gather(&mut self, slots: &mut [Slot], active: usize, link_gen: u64) -> (Vec<Packet>, bool) {
        let now = clock::now();
        let mut early = Vec::new();
        let mut polled_any = false;
        if self.deferred.len() < slots.len() {
            self.deferred.resize_with(slots.len(), Batch::new);
            self.polled.resize(slots.len(), 0);
        }
        if self.gathered_link_gen != link_gen {
            // Polled for a connection that is gone: the session sends them again.
            self.gathered.clear();
            self.gathered_link_gen = link_gen;
        }
        for (index, slot) in slots.iter_mut().enumerate() {
            while let Some(mut output) = slot.session.poll_output(now) {
                polled_any = true;
                if let Some(polled) = self.polled.get_mut(index) {
                    *polled = output.generation;
                }
                if index == active {
                    early.append(&mut output.early);
                    self.gathered.append(&mut output.send);
                }
                // Not deferrable with nothing to commit: a packet identifier waits for what is
                // deferred to be durable.
                self.urgent |= !output.deferrable;
                if !output.commit.is_empty() {
                    if let Some(deferred) = self.deferred.get_mut(index) {
                        deferred.append(&mut output.commit);
                    }
                    self.deferred_since.get_or_insert(now);
                }
                slot.session.recycle(output);
            }
        }
        (early, polled_any)
    }

    /// Starts a commit of everything deferred when it is due, taking the gathered packets and
    /// callers with it; `false` when nothing needs one now.
    fn start_commit(&mut self, slots: &[Slot], flush: Flush, stats: &super::StatsCell) -> bool {
        let now = clock::now();
        let deferred_ops: usize = self.deferred.iter().map(Batch::len).sum();
        let due = self
            .deferred_since
            .is_some_and(|since| now >= since + DEFER_LIMIT);
        let commit_now = deferred_ops > 0
            && (self.urgent || flush == Flush::All || due || deferred_ops >= DEFER_MAX_OPS);
        if !commit_now {
            self.urgent &= deferred_ops > 0;
            return false;
        }
        let publishes = std::mem::take(&mut self.batch_publishes);
        let mut batches: Vec<(SessionKey, Batch)> = slots
            .iter()
            .zip(self.deferred.iter_mut())
            .filter(|(_, batch)| !batch.is_empty())
            .map(|(slot, batch)| (slot.key.clone(), std::mem::take(batch)))
            .collect();
        batches.extend(
            std::mem::take(&mut self.foreign)
                .into_iter()
                .map(|(key, op)| (key, Batch::from(vec![op]))),
        );
        let atomic = std::mem::take(&mut self.atomic) && batches.len() > 1;
        self.deferred_since = None;
        self.urgent = false;
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats
            .committed_ops
            .fetch_add(deferred_ops as u64, Ordering::Relaxed);
        stats
            .committed_publishes
            .fetch_add(publishes, Ordering::Relaxed);
        let store = self.store.clone();
        let call = StoreCall::new(async move {
            if atomic {
                return store.commit_sessions(batches).await;
            }
            for (key, batch) in batches {
                store.commit(&key, batch).await?;
            }
            Ok(())
        });
        self.commit = Some(CommitInFlight {
            call,
            sends: std::mem::replace(&mut self.gathered, std::mem::take(&mut self.spare.0)),
            link_gen: self.gathered_link_gen,
            waiters: std::mem::replace(&mut self.waiters, std::mem::take(&mut self.spare.1)),
            started: now,
            publishes,
            generations: self.polled.clone(),
            forwards: std::mem::take(&mut self.forwards),
        });
        true
    }

    /// Fails every caller still waiting, and abandons a commit or read in flight (the client
    /// stops).
    pub(super) async fn fail_all(&mut self) {
        let stopped = || ClientError::Stopped;
        // Dropped: a call ends, and lets go of the store, as it drops.
        self.read = None;
        if let Some(commit) = self.commit.take() {
            drop(commit.call);
            commit.waiters.into_iter().for_each(|w| w.fail(stopped));
            // It may have been applied or not: the store says after a restart.
            commit
                .forwards
                .into_iter()
                .for_each(Forwarding::outcome_unknown);
        }
        // Never committed: dropped, their messages are handed over again.
        self.forwards.clear();
        for waiter in std::mem::take(&mut self.waiters) {
            waiter.fail(stopped);
        }
    }
}

impl Driver {
    /// Polls every session, writing at once what may go out before any commit; commits what
    /// they produced when it is due, or, with nothing to commit, writes their packets and
    /// reports them written. While a commit is in flight, what is polled gathers behind it. A
    /// session whose window of the queue runs low is read for first (between commits).
    pub(super) async fn pump(&mut self, flush: Flush) {
        if self.pipeline.is_reading() {
            return;
        }
        if !self.pipeline.holds_packets()
            && flush == Flush::WhenDue
            && self.pipeline.start_read(&mut self.slots)
        {
            return;
        }
        // A report of what was written can release more (queued messages in the freed
        // window); a few rounds take what it releases.
        for _ in 0..8 {
            let link_gen = self.wire.generation();
            let (mut early, polled_any) =
                self.pipeline.gather(&mut self.slots, self.active, link_gen);
            self.write(&mut early);
            if self.pipeline.is_committing() {
                return;
            }
            if self.withdraw_cancelled() {
                // Removals of records polled already join the commit that stores them.
                let (mut early, _) = self.pipeline.gather(&mut self.slots, self.active, link_gen);
                self.write(&mut early);
            }
            if self.pipeline.start_commit(&self.slots, flush, &self.stats) {
                return;
            }
            // Written from a list taken and put back, so that it keeps its memory.
            let mut sends = std::mem::take(&mut self.pipeline.gathered);
            self.write(&mut sends);
            self.pipeline.gathered = sends;
            for waiter in std::mem::take(&mut self.pipeline.waiters) {
                // Nothing was committed: a caller gone now was answered too late to matter.
                let _ = waiter.succeed();
            }
            self.report_polled();
            if !polled_any {
                break;
            }
        }
    }

    /// Nothing polled waits for a commit: every output polled is written, and wholly durable
    /// where no deferred operation of its session remains.
    fn report_polled(&mut self) {
        let pipeline = &self.pipeline;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(&generation) = pipeline.polled.get(index) else {
                continue;
            };
            if pipeline.deferred.get(index).is_none_or(Batch::is_empty) {
                slot.session.durable(generation);
            } else {
                slot.session.written(generation);
            }
        }
    }

    /// The commit in flight returned: answer its callers and write its packets, or, if it
    /// failed, stop.
    pub(super) async fn on_commit(&mut self, result: CommitResult) {
        let Some(done) = self.pipeline.commit.take() else {
            return;
        };
        debug!(
            latency_us = done.started.elapsed().as_micros() as u64,
            "store commit"
        );
        match result.err() {
            None => {
                self.metrics
                    .committed(done.started.elapsed(), done.publishes);
                let mut waiters = done.waiters;
                let cancelled: Vec<Cancelled> =
                    waiters.drain(..).filter_map(Waiter::succeed).collect();
                let mut sends = done.sends;
                for publish in cancelled {
                    // Durable now, but not yet sent: taken back, its record removed next.
                    self.withdraw(publish, &mut sends);
                }
                for from in done.forwards {
                    let marker_stored = from.marker().is_some();
                    from.done(marker_stored);
                }
                if done.link_gen == self.wire.generation() {
                    self.write(&mut sends);
                }
                sends.clear();
                self.pipeline.spare = (sends, waiters);
                // Everything deferred when it started was in it.
                for (slot, generation) in self.slots.iter_mut().zip(done.generations) {
                    slot.session.durable(generation);
                }
            }
            Some(error) => {
                warn!(%error, "store commit failed; the client stops");
                self.metrics.commit_failed();
                let error = Arc::new(error);
                self.pipeline.failed = true;
                for waiter in done.waiters {
                    waiter.fail(|| ClientError::Store(error.clone()));
                }
                done.forwards
                    .into_iter()
                    .for_each(Forwarding::outcome_unknown);
                // The store refuses writes from now on: nothing more can be made durable.
                self.close_link(Close::Abrupt).await;
                if !self.stop_if_fenced(&error) {
                    self.stop(StopReason::Store(error));
                }
            }
        }
    }

    /// The queue read in flight returned: the session takes the messages, or, if the store
    /// failed or broke its contract, the client stops.
    pub(super) async fn on_queue_read(&mut self, (slot, result): ReadResult) {
        self.pipeline.read = None;
        let records = match result {
            Ok(records) => records,
            Err(e) => return self.read_failed(StopReason::Store(Arc::new(e))).await,
        };
        let taken = match self.slots.get_mut(slot) {
            Some(s) => s.session.queue_read(records),
            None => Ok(()),
        };
        if let Err(e) = taken {
            self.read_failed(StopReason::Session(Arc::new(e))).await;
        }
    }

    async fn read_failed(&mut self, reason: StopReason) {
        warn!(%reason, "reading the queue from the store failed; the client stops");
        self.close_link(Close::Abrupt).await;
        self.stop(reason);
    }

    /// Commits everything that remains, waiting for the read and the commit in flight first.
    /// With `write_released`, the packets each commit releases are written (a planned
    /// reconnection: its DISCONNECT among them); without, the link is dropped first (a stop
    /// writes nothing more).
    pub(super) async fn flush_store(&mut self, write_released: bool) {
        if self.pipeline.has_failed() {
            return;
        }
        loop {
            if self.pipeline.is_reading() {
                let result = self.pipeline.read_done().await;
                self.on_queue_read(result).await;
                continue;
            }
            if self.pipeline.is_committing() {
                let result = self.pipeline.done().await;
                if !write_released {
                    self.wire.detach();
                }
                self.on_commit(result).await;
                continue;
            }
            self.pump(Flush::All).await;
            if !self.pipeline.is_committing() {
                break;
            }
        }
    }
}
