//! The session's clock ([`SessionClock`](crate::store::SessionClock)): the frame of the times
//! it stores. Stamped into the session's metadata while the client runs, so that a restart
//! with a system clock that is behind (a gateway without a real-time clock boots in 1970)
//! starts from the last time the session saw instead; corrected when the system clock steps,
//! so that what was stamped before the step keeps its age: nothing expires at once, nothing
//! outlives its deadline.

use super::Session;
use crate::store::ClockCorrection;

/// How often the clock is stamped into the session's metadata (then at most this stale).
pub const CLOCK_STAMP_MS: u64 = 60_000;

/// The wall clock as the session was last told it, and what stamps it.
#[derive(Debug)]
pub(super) struct ClockState {
    /// The wall clock as last told (`new`, `tick`), in milliseconds since the UNIX epoch.
    pub(super) now_ms: u64,
    /// The first sequence number of the clock's current frame: what a step corrects starts
    /// here (or earlier, after an unsure start).
    pub(super) epoch_seq: u64,
    /// Since when the session, never stamped, has waited for a commit to carry its first
    /// clock stamp.
    pub(super) unstamped_since: Option<u64>,
    /// When `meta.alive_until_ms` was last moved forward (see `note_alive`).
    pub(super) alive_stamped_ms: Option<u64>,
}

impl ClockState {
    /// Told `now_ms` at start, its frame starting at sequence number `epoch_seq`.
    pub(super) fn new(now_ms: u64, epoch_seq: u64) -> Self {
        Self {
            now_ms,
            epoch_seq,
            unstamped_since: None,
            alive_stamped_ms: None,
        }
    }
}

impl Session {
    /// The latest time this session saw (milliseconds since the UNIX epoch): its clock's last
    /// stamp, or when its last connection ended. A client whose system clock is behind it at
    /// start takes it as now, and tells [`Session::clock_unsure`].
    pub fn clock_floor_ms(&self) -> Option<u64> {
        self.meta.clock_floor_ms()
    }

    /// The client started with its system clock behind [`Session::clock_floor_ms`]: the time
    /// it gives is not known to be right until the system clock steps. Everything stamped from
    /// now on (and since an earlier such start) is corrected by that step.
    pub fn clock_unsure(&mut self) {
        if self.meta.clock.untrusted_since.is_none() {
            let mut meta = self.meta.clone();
            meta.clock.untrusted_since = Some(self.clock.epoch_seq);
            self.set_meta(meta);
        }
    }

    /// The system clock stepped by `shift_ms` and the client's clock followed it: what was
    /// stamped in the frame before the step (in this run, and since an unsure start) is moved
    /// with it, in memory now and, for records in the store, as they are read
    /// ([`ClockCorrection`], kept in the metadata until the queue drains past them).
    pub fn clock_stepped(&mut self, shift_ms: i64) {
        let from = self
            .meta
            .clock
            .untrusted_since
            .unwrap_or(self.clock.epoch_seq);
        let to = self.next_seq;
        let shift = |ms: u64| ms.saturating_add_signed(shift_ms);
        self.clock.now_ms = shift(self.clock.now_ms);
        self.clock.alive_stamped_ms = self.clock.alive_stamped_ms.map(shift);
        for (id, at) in self.outbound.deadlines.iter_mut() {
            if (from..to).contains(id) {
                *at = shift(*at);
            }
        }
        self.outbound.expiries = self
            .outbound
            .deadlines
            .iter()
            .map(|(id, at)| (*at, *id))
            .collect();
        let mut meta = self.meta.clone();
        meta.disconnected_at_ms = meta.disconnected_at_ms.map(shift);
        meta.alive_until_ms = meta.alive_until_ms.map(shift);
        meta.clock.stamped_ms = Some(self.clock.now_ms);
        meta.clock.untrusted_since = None;
        if from < to {
            meta.clock.corrections.push(ClockCorrection {
                from_seq: from,
                to_seq: to,
                shift_ms,
            });
        }
        self.set_meta(meta);
        self.clock.epoch_seq = to;
    }

    /// Stamps the clock into the metadata when the last stamp is a minute old, and forgets
    /// corrections that no stored record needs any more.
    pub(super) fn stamp_clock(&mut self, now_ms: u64) {
        match self.meta.clock.stamped_ms.or(self.clock.unstamped_since) {
            None => {
                // The first stamp rides on the next commit the session makes anyway
                // (`stamp_clock_with_commit`), instead of a commit of its own at start.
                self.clock.unstamped_since = Some(now_ms);
                return;
            }
            Some(last) if now_ms >= last && now_ms < last.saturating_add(CLOCK_STAMP_MS) => {
                return;
            }
            Some(_) => {}
        }
        self.clock.unstamped_since = None;
        let oldest = self
            .outbound
            .flows
            .keys()
            .next()
            .copied()
            .into_iter()
            .chain(self.queues().filter_map(super::queue::Queue::oldest))
            .min()
            .unwrap_or(self.next_seq);
        let mut meta = self.meta.clone();
        meta.clock.stamped_ms = Some(now_ms);
        meta.clock.corrections.retain(|c| c.to_seq > oldest);
        self.set_meta(meta);
    }

    /// A session never stamped rides its first stamp on a commit that is made anyway (one
    /// that protects something, not one of removals that may wait).
    pub(super) fn stamp_clock_with_commit(&mut self) {
        if self.clock.unstamped_since.is_some()
            && self.out.pending.commit.len() > self.out.deferrable_ops
        {
            self.clock.unstamped_since = None;
            let mut meta = self.meta.clone();
            meta.clock.stamped_ms = Some(self.clock.now_ms);
            self.set_meta(meta);
        }
    }

    /// Stamps the clock in the metadata the next output stores: a client that stops cleanly
    /// does, so that its next start knows the latest time the session saw.
    pub fn stamp_clock_now(&mut self, now_ms: u64) {
        self.clock.now_ms = self.clock.now_ms.max(now_ms);
        self.clock.unstamped_since = None;
        let mut meta = self.meta.clone();
        meta.clock.stamped_ms = Some(self.clock.now_ms);
        self.set_meta(meta);
    }

    /// When the clock is next to be stamped.
    pub(super) fn next_clock_stamp_ms(&self) -> u64 {
        self.meta
            .clock
            .stamped_ms
            .or(self.clock.unstamped_since)
            .map_or(0, |last| last.saturating_add(CLOCK_STAMP_MS))
    }
}
