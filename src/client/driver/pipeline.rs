//! The group commit pipeline: what the sessions produce is committed as one batch while the
//! next gathers; the packets that depend on it are written, and the callers answered, only
//! when it has returned. Reads of the offline queue beyond a session's window go through it
//! too, never at the same time as a commit: a read then sees every message polled before it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::super::{ClientError, Delivery};
use super::connection::Close;
use super::{Driver, Reply, Slot};
use crate::packet::Packet;
use crate::store::{Batch, QueuedPublish, SessionKey, SessionStore, StoreError, StoreOp};

/// How long the removal of a completed flow's record may wait for a commit to join.
const DEFER_LIMIT: Duration = Duration::from_millis(20);

/// Deferred operations beyond which a commit is made at once.
const DEFER_MAX_OPS: usize = 4096;

/// How a commit task ended.
pub(super) type CommitResult = Result<Result<(), StoreError>, tokio::task::JoinError>;

/// What [`Pipeline::finished`] saw end.
pub(super) enum Finished {
    Commit(CommitResult),
    Read(ReadResult),
}

/// Queued messages read back from the store.
pub(super) type QueueRecords = Vec<(u64, QueuedPublish)>;

/// How a queue read ended: which slot asked, and what the store returned.
pub(super) type ReadResult = (
    usize,
    Result<Result<QueueRecords, StoreError>, tokio::task::JoinError>,
);

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

    pub(super) fn fail(self, error: impl FnOnce() -> ClientError) {
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
    /// The packets that wait for it, and the link they were polled for.
    sends: Vec<Packet>,
    link_gen: u64,
    waiters: Vec<Waiter>,
    started: Instant,
    /// Publishes it makes durable.
    publishes: u64,
}

/// The commit in flight and what gathers for the next one.
pub(super) struct Pipeline {
    store: Arc<dyn SessionStore>,
    commit: Option<CommitInFlight>,
    /// A queue read in flight, for the slot it names.
    read: Option<(usize, JoinHandle<Result<QueueRecords, StoreError>>)>,
    /// Callers answered by the next commit.
    waiters: Vec<Waiter>,
    /// Publishes in the current (not yet polled) batch.
    batch_publishes: u64,
    /// Operations polled and not yet committed, one batch per slot.
    deferred: Vec<Batch>,
    /// When the oldest of them was polled.
    deferred_since: Option<Instant>,
    /// A commit failed: the store refuses writes until it is reopened.
    failed: bool,
}

/// What a poll of the sessions asks the driver to do.
enum Polled {
    /// Nothing here needs durability first: write these now.
    Write(Vec<Packet>),
    /// A commit started; its packets wait for it.
    Committing,
}

impl Pipeline {
    pub(super) fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            commit: None,
            read: None,
            waiters: Vec::new(),
            batch_publishes: 0,
            deferred: Vec::new(),
            deferred_since: None,
            failed: false,
        }
    }

    /// Answers `waiter` with the next commit.
    pub(super) fn wait(&mut self, waiter: Waiter) {
        self.waiters.push(waiter);
    }

    /// Counts a publish accepted into the batch being gathered.
    pub(super) fn count_publish(&mut self) {
        self.batch_publishes += 1;
    }

    pub(super) fn is_committing(&self) -> bool {
        self.commit.is_some()
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
            Some((slot, task)) => {
                let result = task.await;
                (*slot, result)
            }
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
        let task =
            tokio::spawn(async move { store.read_queue(&key, read.from, read.window).await });
        self.read = Some((index, task));
        true
    }

    pub(super) fn has_failed(&self) -> bool {
        self.failed
    }

    /// The store the pipeline commits to.
    pub(super) fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// When deferred operations must be committed.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deferred_since.map(|since| since + DEFER_LIMIT)
    }

    /// Resolves when the commit in flight returns; never without one.
    pub(super) async fn done(&mut self) -> CommitResult {
        match self.commit.as_mut() {
            Some(commit) => (&mut commit.task).await,
            None => std::future::pending().await,
        }
    }

    /// Polls every session. Starts a commit when something must be durable first; otherwise
    /// answers the waiters and hands back the packets to write at once.
    fn poll(
        &mut self,
        slots: &mut [Slot],
        active: usize,
        link_gen: u64,
        flush: Flush,
        stats: &super::StatsCell,
    ) -> Polled {
        let now = Instant::now();
        let mut urgent = false;
        let mut sends = Vec::new();
        if self.deferred.len() < slots.len() {
            self.deferred.resize_with(slots.len(), Batch::new);
        }
        for (index, slot) in slots.iter_mut().enumerate() {
            let Some(output) = slot.session.poll_output(now) else {
                continue;
            };
            if index == active {
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
        let commit_now = deferred_ops > 0
            && (urgent || flush == Flush::All || due || deferred_ops >= DEFER_MAX_OPS);
        let waiters = std::mem::take(&mut self.waiters);
        if !commit_now {
            waiters.into_iter().for_each(Waiter::succeed);
            return Polled::Write(sends);
        }
        let publishes = std::mem::take(&mut self.batch_publishes);
        let batches: Vec<(SessionKey, Batch)> = slots
            .iter()
            .zip(self.deferred.iter_mut())
            .filter(|(_, batch)| !batch.is_empty())
            .map(|(slot, batch)| (slot.key.clone(), std::mem::take(batch)))
            .collect();
        self.deferred_since = None;
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats
            .committed_ops
            .fetch_add(deferred_ops as u64, Ordering::Relaxed);
        stats
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
            link_gen,
            waiters,
            started: now,
            publishes,
        });
        Polled::Committing
    }

    /// Fails every caller still waiting, and abandons a commit or read in flight (the client
    /// stops).
    pub(super) fn fail_all(&mut self) {
        let stopped = || ClientError::Stopped;
        if let Some((_, read)) = self.read.take() {
            read.abort();
        }
        if let Some(commit) = self.commit.take() {
            commit.task.abort();
            commit.waiters.into_iter().for_each(|w| w.fail(stopped));
        }
        for waiter in std::mem::take(&mut self.waiters) {
            waiter.fail(stopped);
        }
    }
}

impl Driver {
    /// Polls every session; commits what they produced, or, with nothing to commit, writes
    /// their packets at once. Does nothing while a commit or a read is in flight. A session
    /// whose window of the queue runs low is read for first: everything it polled before is
    /// committed by now, and its messages then join the next commit.
    pub(super) async fn pump(&mut self, flush: Flush) {
        if self.pipeline.is_committing() || self.pipeline.is_reading() {
            return;
        }
        if flush == Flush::WhenDue && self.pipeline.start_read(&mut self.slots) {
            return;
        }
        let link_gen = self.conn.link_gen;
        let polled = self
            .pipeline
            .poll(&mut self.slots, self.active, link_gen, flush, &self.stats);
        if let Polled::Write(sends) = polled {
            self.write(sends);
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
                self.metrics
                    .committed(done.started.elapsed(), done.publishes);
                done.waiters.into_iter().for_each(Waiter::succeed);
                if done.link_gen == self.conn.link_gen {
                    self.write(done.sends);
                }
            }
            Some(error) => {
                warn!(%error, "store commit failed; the client stops");
                let error = Arc::new(error);
                self.pipeline.failed = true;
                for waiter in done.waiters {
                    waiter.fail(|| ClientError::Store(error.clone()));
                }
                // The store refuses writes from now on: nothing more can be made durable.
                self.close_link(Close::Abrupt).await;
                if !self.stop_if_fenced(&error) {
                    self.stop(Some(format!("the session store failed: {error}")));
                }
            }
        }
    }

    /// The queue read in flight returned: the session takes the messages, or, if the store
    /// failed or broke its contract, the client stops.
    pub(super) async fn on_queue_read(&mut self, (slot, result): ReadResult) {
        self.pipeline.read = None;
        let records = match result {
            Ok(Ok(records)) => records,
            Ok(Err(e)) => return self.read_failed(e.to_string()).await,
            Err(join) => return self.read_failed(join.to_string()).await,
        };
        let taken = match self.slots.get_mut(slot) {
            Some(s) => s.session.queue_read(records),
            None => Ok(()),
        };
        if let Err(e) = taken {
            self.read_failed(e.to_string()).await;
        }
    }

    async fn read_failed(&mut self, error: String) {
        warn!(%error, "reading the queue from the store failed; the client stops");
        self.close_link(Close::Abrupt).await;
        self.stop(Some(format!("the session store failed: {error}")));
    }

    /// Commits everything that remains, waiting for the commit in flight first.
    pub(super) async fn flush_store(&mut self) {
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
                self.conn.link = None;
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
