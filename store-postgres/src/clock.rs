//! The clock the owner measures its own lease on.
//!
//! The database decides who owns a session, on its own clock; the owner keeps a deadline of
//! its own, so that it stops writing to the broker without asking once the lease may have
//! run out. That deadline must never pass later than the database's: the owner's clock must
//! not fall behind while time passes for the database. `Instant` (CLOCK_MONOTONIC on Linux)
//! stops while the system is suspended, so a host that slept past its lease would wake
//! believing it still owned the session. On Linux the lease is measured on CLOCK_BOOTTIME,
//! which counts through suspend; elsewhere on `Instant`.

use std::fmt;
use std::time::{Duration, Instant};

/// A clock for the lease: the time elapsed since an origin of its own, which never goes back
/// and keeps counting while the system is suspended. Inject one
/// ([`PostgresOptions::lease_clock`](crate::PostgresOptions::lease_clock)) to test what a clock
/// that jumps does to ownership.
pub trait LeaseClock: Send + Sync + fmt::Debug {
    /// The time since this clock's origin.
    fn elapsed(&self) -> Duration;
}

/// The system's clock that counts through suspend where there is one (CLOCK_BOOTTIME on
/// Linux), the monotonic clock elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootClock;

impl LeaseClock for BootClock {
    #[cfg(target_os = "linux")]
    fn elapsed(&self) -> Duration {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Duration::new(
            u64::try_from(now.tv_sec).unwrap_or(0),
            u32::try_from(now.tv_nsec).unwrap_or(0),
        )
    }

    #[cfg(not(target_os = "linux"))]
    fn elapsed(&self) -> Duration {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// A reading of the lease clock turned into an `Instant`, as the client compares deadlines:
/// as far ahead of now as it is ahead of the clock now (or behind).
pub(crate) fn as_instant(clock: &dyn LeaseClock, reading: Duration) -> Instant {
    let now = clock.elapsed();
    let instant = Instant::now();
    if reading >= now {
        instant + (reading - now)
    } else {
        // Past: any instant not after now says so.
        instant.checked_sub(now - reading).unwrap_or(instant)
    }
}
