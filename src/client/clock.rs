//! The client's time. Monotonic time is tokio's, so that a test can pause it and let timers
//! fire in order at once; the wall clock the session's expiry deadlines use follows it from
//! the moment the client started (see [`WallClock`]).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Now, on tokio's clock (paused in a test that pauses it), as the `Instant` the engine takes.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The wall clock as the session engine sees it, in milliseconds since the UNIX epoch: read
/// once when the client starts, then moved by monotonic time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    anchor_ms: u64,
    anchor: Instant,
}

impl WallClock {
    /// A clock that reads the system's wall clock now.
    pub(crate) fn start() -> Self {
        Self {
            anchor_ms: system_ms(),
            anchor: now(),
        }
    }

    /// Milliseconds since the UNIX epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        let elapsed = now().saturating_duration_since(self.anchor).as_millis();
        self.anchor_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

/// The system's wall clock in milliseconds since the UNIX epoch (0 before it).
pub(crate) fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
