//! Looking after the store's other sessions: a client reports its own stranded sessions when
//! it starts, and expired sessions are purged in one pass per store per hour, whichever of the
//! process's clients on that store comes first, never touching a session one of them uses.
//!
//! Why shared: a gateway holds one client per device on one store. A pass per client start
//! read every session of the store, so starting N clients cost N² session reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::super::clock::WallClock;
use super::super::event_queue::EventHub;
use super::super::events::ClientEvent;
use crate::store::{SessionKey, SessionStore, stranded_sessions, tidy_sessions};

/// How often expired sessions are purged from a store while clients use it.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// What this process knows of one store (by [`SessionStore::storage_id`]).
#[derive(Default)]
struct StoreUse {
    /// The sessions its running clients use, each with how many clients hold it.
    in_use: HashMap<SessionKey, usize>,
    /// When a pass over it last started.
    last_pass: Option<Instant>,
}

fn stores() -> &'static Mutex<HashMap<usize, StoreUse>> {
    static STORES: OnceLock<Mutex<HashMap<usize, StoreUse>>> = OnceLock::new();
    STORES.get_or_init(Mutex::default)
}

fn with_stores<T>(f: impl FnOnce(&mut HashMap<usize, StoreUse>) -> T) -> T {
    f(&mut stores().lock().unwrap_or_else(|e| e.into_inner()))
}

/// A client's sessions, marked in use on their store while it runs (until dropped).
pub(super) struct InUse {
    /// The store's identity; `None` when it has none: the client then passes alone.
    store_id: Option<usize>,
    keys: Vec<SessionKey>,
}

impl InUse {
    pub(super) fn mark(store: &dyn SessionStore, keys: Vec<SessionKey>) -> Self {
        let store_id = store.storage_id();
        if let Some(id) = store_id {
            with_stores(|stores| {
                let entry = stores.entry(id).or_default();
                for key in &keys {
                    *entry.in_use.entry(key.clone()).or_default() += 1;
                }
            });
        }
        Self { store_id, keys }
    }

    /// The sessions to keep if a pass over the store is due now (none ran in the last
    /// `interval`), marking it started; `None` if another client ran one.
    fn pass_due(&self, now: Instant, interval: Duration) -> Option<Vec<SessionKey>> {
        let Some(id) = self.store_id else {
            return Some(self.keys.clone());
        };
        with_stores(|stores| {
            let entry = stores.entry(id).or_default();
            if entry
                .last_pass
                .is_some_and(|last| now.saturating_duration_since(last) < interval)
            {
                return None;
            }
            entry.last_pass = Some(now);
            Some(entry.in_use.keys().cloned().collect())
        })
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        let Some(id) = self.store_id else { return };
        with_stores(|stores| {
            let Some(entry) = stores.get_mut(&id) else {
                return;
            };
            for key in &self.keys {
                if let Some(count) = entry.in_use.get_mut(key) {
                    *count -= 1;
                    if *count == 0 {
                        entry.in_use.remove(key);
                    }
                }
            }
            // The last client gone: a store opened again later (its identity may be reused)
            // starts afresh.
            if entry.in_use.is_empty() {
                stores.remove(&id);
            }
        });
    }
}

/// Reports `client_id`'s sessions under servers no longer configured that hold messages:
/// they would otherwise wait forever. Reads only that client's sessions.
async fn report_stranded(
    store: &dyn SessionStore,
    client_id: &str,
    configured: &[SessionKey],
    events: &EventHub,
) {
    let stranded = match stranded_sessions(store, client_id, configured).await {
        Ok(stranded) => stranded,
        Err(error) => return warn!(%error, "could not look for this client's stranded sessions"),
    };
    for (session, held) in stranded {
        warn!(
            %session,
            in_flight = held.in_flight,
            queued = held.queued,
            "a session of this client id under a server no longer configured holds messages"
        );
        events.send(ClientEvent::StrandedSession {
            session,
            in_flight: held.in_flight,
            queued: held.queued,
        });
    }
}

/// Purges the expired sessions that hold no message, but those in `keep`. A store that cannot
/// say is reported in the log; it does not stop the client.
async fn purge(store: &dyn SessionStore, now_ms: u64, keep: &[SessionKey]) {
    match tidy_sessions(store, now_ms, None, keep).await {
        Ok(tidied) if !tidied.purged.is_empty() => {
            info!(count = tidied.purged.len(), "expired sessions purged");
        }
        Ok(_) => {}
        Err(error) => warn!(%error, "could not purge the store's expired sessions"),
    }
}

/// Looks after the store's other sessions, in the background (a standby's first CONNECT must
/// not wait for a pass over a store of many sessions): this client's stranded sessions at
/// start, then a purge whenever one is due. On a store other processes share, it only reports:
/// the other sessions are theirs (clearing one would take its ownership from its gateway).
pub(super) async fn look_after_other_sessions(
    store: Arc<dyn SessionStore>,
    clock: WallClock,
    client_id: String,
    in_use: InUse,
    events: EventHub,
) {
    report_stranded(&*store, &client_id, &in_use.keys, &events).await;
    if store.is_shared() {
        return;
    }
    loop {
        if let Some(keep) = in_use.pass_due(Instant::now(), PURGE_INTERVAL) {
            purge(&*store, clock.now_ms(), &keep).await;
        }
        tokio::time::sleep(PURGE_INTERVAL).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn one_pass_per_store_per_interval_keeping_every_clients_sessions() {
        let store = MemoryStore::default();
        let a = InUse::mark(&store, vec![SessionKey::new("mqtt://b", "a")]);
        let b = InUse::mark(&store, vec![SessionKey::new("mqtt://b", "b")]);
        let now = Instant::now();
        let mut keep = a.pass_due(now, PURGE_INTERVAL).unwrap();
        keep.sort();
        assert_eq!(
            keep,
            [
                SessionKey::new("mqtt://b", "a"),
                SessionKey::new("mqtt://b", "b")
            ]
        );
        assert_eq!(
            b.pass_due(now + Duration::from_secs(1), PURGE_INTERVAL),
            None
        );
        assert!(b.pass_due(now + PURGE_INTERVAL, PURGE_INTERVAL).is_some());
    }

    #[test]
    fn a_stopped_client_s_sessions_are_no_longer_kept() {
        let store = MemoryStore::default();
        let a = InUse::mark(&store, vec![SessionKey::new("mqtt://b", "a")]);
        let b = InUse::mark(&store, vec![SessionKey::new("mqtt://b", "b")]);
        drop(b);
        let keep = a.pass_due(Instant::now(), PURGE_INTERVAL).unwrap();
        assert_eq!(keep, [SessionKey::new("mqtt://b", "a")]);
    }

    #[test]
    fn another_store_has_passes_of_its_own() {
        let one = MemoryStore::default();
        let other = MemoryStore::default();
        let a = InUse::mark(&one, vec![SessionKey::new("mqtt://b", "a")]);
        let b = InUse::mark(&other, vec![SessionKey::new("mqtt://b", "a")]);
        let now = Instant::now();
        assert!(a.pass_due(now, PURGE_INTERVAL).is_some());
        assert!(b.pass_due(now, PURGE_INTERVAL).is_some());
    }
}
