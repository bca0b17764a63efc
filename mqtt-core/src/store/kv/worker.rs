//! The thread that runs a blocking backend's calls, one at a time, in the order they came;
//! commits of several sessions waiting together go in one write (group commit).
//!
//! Why a thread of its own rather than a runtime's blocking pool: the core must not depend on
//! a runtime, and the stores serialise writes anyway (one redb write transaction at a time).

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use futures_channel::oneshot;

use super::{KvBackend, Shared};
use crate::store::{Batch, SessionKey, StoreError};

/// The most commits one write carries: enough for thousands of clients to share an
/// `fdatasync`, small enough that one write stays short.
const MOST_COMMITS_PER_WRITE: usize = 1024;

/// A call for the store's thread, run alone.
pub(super) type Call<B> = Box<dyn FnOnce(&Shared<B>) + Send>;

/// Work for the store's thread.
pub(super) enum Job<B> {
    /// One session's commit: grouped with the commits that wait behind it.
    Commit {
        key: SessionKey,
        batch: Batch,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Anything else, run alone.
    Call(Call<B>),
}

pub(super) struct Worker<B> {
    jobs: Option<mpsc::Sender<Job<B>>>,
    thread: Option<JoinHandle<()>>,
    join_on_drop: bool,
}

impl<B: KvBackend> Worker<B> {
    /// Starts the thread; `None` if the system will not give one (calls then run inline).
    pub(super) fn start(shared: Arc<Shared<B>>) -> Option<Self> {
        let (jobs, queue) = mpsc::channel::<Job<B>>();
        let thread = std::thread::Builder::new()
            .name(format!("mooring-store-{}", B::NAME))
            .spawn(move || serve(&shared, &queue))
            .ok()?;
        Some(Self {
            jobs: Some(jobs),
            thread: Some(thread),
            join_on_drop: B::JOIN_ON_DROP,
        })
    }

    /// Where to send jobs; `None` once the worker is closing.
    pub(super) fn jobs(&self) -> Option<&mpsc::Sender<Job<B>>> {
        self.jobs.as_ref()
    }
}

/// Runs the jobs until every sender is gone. A commit takes with it the commits queued right
/// behind it (never past another call, so the order callers see is kept), and they are written
/// together when the backend allows it ([`KvBackend::GROUP_COMMITS`]).
fn serve<B: KvBackend>(shared: &Shared<B>, queue: &mpsc::Receiver<Job<B>>) {
    let mut next = None;
    loop {
        let Some(job) = next.take().or_else(|| queue.recv().ok()) else {
            return;
        };
        let (key, batch, reply) = match job {
            Job::Call(call) => {
                call(shared);
                continue;
            }
            Job::Commit { key, batch, reply } => (key, batch, reply),
        };
        let mut group = vec![(key, batch)];
        let mut replies = vec![reply];
        while B::GROUP_COMMITS && group.len() < MOST_COMMITS_PER_WRITE {
            match queue.try_recv() {
                Ok(Job::Commit { key, batch, reply }) => {
                    group.push((key, batch));
                    replies.push(reply);
                }
                Ok(call) => {
                    next = Some(call);
                    break;
                }
                Err(_) => break,
            }
        }
        for (reply, result) in replies.into_iter().zip(shared.commit_group(&group)) {
            let _ = reply.send(result);
        }
    }
}

impl<B> Drop for Worker<B> {
    fn drop(&mut self) {
        // Closing the queue ends the thread once the jobs already sent are done. Joining
        // makes the backend's release deterministic: a store dropped and opened again at once
        // (a test, a restart in-process) does not find its file still held. A networked
        // backend's thread finishes on its own (`JOIN_ON_DROP`).
        self.jobs = None;
        if let Some(thread) = self.thread.take()
            && self.join_on_drop
        {
            let _ = thread.join();
        }
    }
}
