//! The client's time. Monotonic time is tokio's, so that a test can pause it and let timers
//! fire in order at once. The wall clock the sessions' deadlines use ([`WallClock`]) follows
//! monotonic time from a start that is never before what the sessions already saw, and
//! follows a step of the system clock (see the engine's session clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where the wall-clock time comes from: the system's clock unless the builder set another
/// (a GPS receiver, a test).
pub(crate) type WallClockSource = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A difference between the system clock and the client's clock beyond which the system
/// clock is taken to have stepped (NTP slews smaller ones in; steps are seconds to years).
const STEP_MS: u64 = 2_000;

/// Now, on tokio's clock (paused in a test that pauses it), as the `Instant` the engine takes.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The wall clock as the session engine sees it, in milliseconds since the UNIX epoch: read
/// when the client starts, then moved by monotonic time and by the system clock's steps.
/// Clones share it.
#[derive(Clone)]
pub(crate) struct WallClock {
    frame: Arc<Frame>,
}

struct Frame {
    base_ms: u64,
    base: Instant,
    /// What the steps followed so far add.
    offset_ms: AtomicI64,
    /// The latest time the sessions saw at start: a system clock behind it is wrong.
    floor_ms: u64,
    source: Option<WallClockSource>,
}

impl WallClock {
    /// A clock that starts at the system's time, or at `floor_ms` (the latest time the
    /// sessions saw) when the system clock is behind it; `trusted` says whether it was not.
    pub(crate) fn start(source: Option<WallClockSource>, floor_ms: Option<u64>) -> (Self, bool) {
        let system = system_ms(source.as_ref());
        let floor_ms = floor_ms.unwrap_or(0);
        let frame = Frame {
            base_ms: system.max(floor_ms),
            base: now(),
            offset_ms: AtomicI64::new(0),
            floor_ms,
            source,
        };
        (
            Self {
                frame: Arc::new(frame),
            },
            system >= floor_ms,
        )
    }

    /// Milliseconds since the UNIX epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        let frame = &self.frame;
        let elapsed = now().saturating_duration_since(frame.base).as_millis();
        frame
            .base_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
            .saturating_add_signed(frame.offset_ms.load(Ordering::Relaxed))
    }

    /// Whether the system clock stepped away from this clock (by more than a couple of
    /// seconds, to a time not before what the sessions saw): then this clock follows it, and
    /// the step is returned, for the sessions to correct what they stamped before it.
    pub(crate) fn follow_step(&self) -> Option<i64> {
        let frame = &self.frame;
        let system = system_ms(frame.source.as_ref());
        let ours = self.now_ms();
        if system.abs_diff(ours) <= STEP_MS || system < frame.floor_ms {
            return None;
        }
        let shift = i64::try_from(i128::from(system) - i128::from(ours)).ok()?;
        frame.offset_ms.fetch_add(shift, Ordering::Relaxed);
        Some(shift)
    }
}

/// The wall clock of `source`, or the system's, in milliseconds since the UNIX epoch (0
/// before it).
pub(crate) fn system_ms(source: Option<&WallClockSource>) -> u64 {
    let now = source.map_or_else(SystemTime::now, |source| source());
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
