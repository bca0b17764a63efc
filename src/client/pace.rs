//! [`ConnectPace`]: a limit on connection attempts per second, shared by the clients given it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most so many connection attempts per second across every client given a clone of it.
///
/// A process that holds one session per device restarts with thousands of clients, and a broker
/// that comes back finds them all reconnecting at once: every attempt is a TCP (and TLS)
/// handshake and a session to look up. Give the same `ConnectPace` to each client's builder
/// ([`ClientBuilder::connect_pace`](super::ClientBuilder::connect_pace)) and their attempts,
/// first connections and reconnections alike, take turns at an even rate. An attempt's connect
/// timeout starts when its turn comes.
///
/// ```
/// use mooring::{Client, ConnectPace};
/// use mooring::store::MemoryStore;
///
/// # async fn f() -> Result<(), mooring::ClientError> {
/// let store = std::sync::Arc::new(MemoryStore::default());
/// let pace = ConnectPace::per_second(200);
/// for device in 0..1000 {
///     let (_client, _messages) = Client::builder()
///         .server("mqtt://broker.example:1883")
///         .client_id(format!("device-{device}"))
///         .store_arc(store.clone())
///         .connect_pace(pace.clone())
///         .start()
///         .await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConnectPace {
    interval: Duration,
    /// When the next attempt may start.
    next: Arc<Mutex<Option<Instant>>>,
}

impl ConnectPace {
    /// At most `attempts` connection attempts per second (at least one).
    pub fn per_second(attempts: u32) -> Self {
        Self::every(Duration::from_secs(1) / attempts.max(1))
    }

    /// One connection attempt per `interval`.
    pub fn every(interval: Duration) -> Self {
        Self {
            interval,
            next: Arc::new(Mutex::new(None)),
        }
    }

    /// The time between two attempts.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes the next turn at or after `now` and says how long to wait for it.
    pub(crate) fn reserve(&self, now: Instant) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let turn = next.map_or(now, |n| n.max(now));
        *next = Some(turn + self.interval);
        turn.saturating_duration_since(now)
    }
}

impl std::fmt::Debug for ConnectPace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectPace")
            .field("interval", &self.interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_take_turns_one_interval_apart() {
        let pace = ConnectPace::per_second(100);
        let now = Instant::now();
        let waits: Vec<Duration> = (0..4).map(|_| pace.reserve(now)).collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [ms(0), ms(10), ms(20), ms(30)]);
    }

    #[test]
    fn clones_share_the_turns() {
        let pace = ConnectPace::per_second(10);
        let other = pace.clone();
        let now = Instant::now();
        assert_eq!(pace.reserve(now), Duration::ZERO);
        assert_eq!(other.reserve(now), Duration::from_millis(100));
    }

    #[test]
    fn a_pace_left_idle_does_not_bank_turns() {
        let pace = ConnectPace::per_second(10);
        let start = Instant::now();
        assert_eq!(pace.reserve(start), Duration::ZERO);
        let later = start + Duration::from_secs(5);
        assert_eq!(pace.reserve(later), Duration::ZERO);
        assert_eq!(pace.reserve(later), Duration::from_millis(100));
    }
}
