//! Who owns a session: one process at a time, by a lease that the database's clock measures.
//!
//! A row of `mooring_owners` per session holds its epoch, its holder and the lease's end.
//! Taking a session raises the epoch; every commit of the owner checks its epoch (and renews
//! the lease) inside its own transaction, so a process whose epoch is stale can never write
//! again. The lease's end is `clock_timestamp()` of the database plus the lease, compared with
//! the database's clock too: hosts' clocks play no part. The owner also keeps a deadline of its
//! own on its monotonic clock, from the moment it *sent* the last renewal: it is never later
//! than the database's, so a process frozen past its lease knows it on waking without asking.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::link::{Db, Failure, Link};
use mooring_core::store::layout::session_prefix;
use mooring_core::store::{SessionKey, StoreError};

/// What this process knows of one session's ownership.
#[derive(Debug)]
enum Held {
    /// This process owns it at `epoch`, surely until `until`.
    Owner { epoch: i64, until: Instant },
    /// Another process took it over.
    Fenced { holder: String },
}

/// How a claim ended.
enum Claim {
    Won {
        epoch: i64,
    },
    /// Another holder's lease runs for `remaining` more (by the database's clock).
    Taken {
        holder: String,
        remaining: Duration,
    },
}

const CLAIM: &str = "INSERT INTO mooring_owners AS o (session, name, epoch, holder, lease_until) \
     VALUES ($1, $2, 1, $3, clock_timestamp() + $4 * interval '1 millisecond') \
     ON CONFLICT (session) DO UPDATE \
     SET epoch = o.epoch + 1, name = EXCLUDED.name, holder = EXCLUDED.holder, \
         lease_until = EXCLUDED.lease_until \
     WHERE o.lease_until < clock_timestamp() OR o.holder = EXCLUDED.holder OR $5 \
     RETURNING epoch";
const HOLDER: &str = "SELECT holder, \
     greatest(0, extract(epoch FROM lease_until - clock_timestamp()) * 1000)::float8 \
     FROM mooring_owners WHERE session = $1";
/// Renews the lease if `epoch` is still the session's.
const RENEW: &str = "UPDATE mooring_owners \
     SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
     WHERE session = $1 AND epoch = $2";
const RELEASE: &str = "UPDATE mooring_owners \
     SET lease_until = clock_timestamp() - interval '1 millisecond' \
     WHERE session = $1 AND epoch = $2";

/// The sessions this process owns or lost, shared by the store's thread and the renewer.
pub(crate) struct Ownership {
    /// How this process names itself in `mooring_owners.holder`: unique per process.
    pub(crate) holder: String,
    lease: Duration,
    takeover: bool,
    held: Mutex<HashMap<SessionKey, Held>>,
    /// Set when the store closes; wakes the renewer.
    closing: Mutex<bool>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn lease_ms(lease: Duration) -> f64 {
    lease.as_secs_f64() * 1000.0
}

impl Ownership {
    pub(crate) fn new(holder: String, lease: Duration, takeover: bool) -> Self {
        Self {
            holder,
            lease,
            takeover,
            held: Mutex::new(HashMap::new()),
            closing: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    /// The deadline a renewal sent at `sent` earns: the lease, less a twentieth for the
    /// difference in rate between this host's clock and the database's.
    fn until(&self, sent: Instant) -> Instant {
        sent + self.lease - self.lease / 20
    }

    pub(crate) fn owned_until(&self, session: &SessionKey) -> Option<Instant> {
        match lock(&self.held).get(session) {
            Some(Held::Owner { until, .. }) => Some(*until),
            // Long past: nothing may be written.
            _ => Some(Instant::now() - Duration::from_secs(1).min(self.lease)),
        }
    }

    fn fenced(&self, session: &SessionKey, holder: String) -> StoreError {
        lock(&self.held).insert(
            session.clone(),
            Held::Fenced {
                holder: holder.clone(),
            },
        );
        StoreError::Fenced {
            session: session.to_string(),
            holder,
        }
    }

    fn try_claim(&self, db: &mut Db, session: &SessionKey, force: bool) -> Result<Claim, Failure> {
        let prefix = session_prefix(session);
        let row = db.query_opt(
            CLAIM,
            &[
                &prefix,
                &session.to_string(),
                &self.holder,
                &lease_ms(self.lease),
                &force,
            ],
        )?;
        if let Some(row) = row {
            return Ok(Claim::Won {
                epoch: row.try_get(0)?,
            });
        }
        let row = db.query_opt(HOLDER, &[&prefix])?;
        Ok(match row {
            Some(row) => Claim::Taken {
                holder: row.try_get(0)?,
                remaining: Duration::from_secs_f64(row.try_get::<_, f64>(1)? / 1000.0),
            },
            // Deleted between the two statements: try again at once.
            None => Claim::Taken {
                holder: String::new(),
                remaining: Duration::ZERO,
            },
        })
    }

    /// Claims `session` once, without waiting: the epoch if won, else who holds it and for
    /// how long.
    fn claim_once(
        &self,
        link: &mut Link,
        session: &SessionKey,
        force: bool,
    ) -> Result<Claim, StoreError> {
        let sent = std::cell::Cell::new(Instant::now());
        let claim = link.run(|db| {
            sent.set(Instant::now());
            self.try_claim(db, session, force)
        })?;
        if let Claim::Won { epoch } = claim {
            lock(&self.held).insert(
                session.clone(),
                Held::Owner {
                    epoch,
                    until: self.until(sent.get()),
                },
            );
        }
        Ok(claim)
    }

    /// Renews the lease of a session this process owns; `Fenced` if another took it.
    fn renew(&self, link: &mut Link, session: &SessionKey, epoch: i64) -> Result<(), StoreError> {
        let prefix = session_prefix(session);
        let sent = std::cell::Cell::new(Instant::now());
        let renewed = link.run(|db| {
            sent.set(Instant::now());
            db.execute(RENEW, &[&prefix, &epoch, &lease_ms(self.lease)])
        })?;
        if renewed == 0 {
            return Err(self.lost(link, session));
        }
        self.confirmed(session, epoch, sent.get());
        Ok(())
    }

    /// Records that the session was confirmed at `epoch` by a statement sent at `sent` (a
    /// renewal, or a commit that checked the epoch).
    pub(crate) fn confirmed(&self, session: &SessionKey, epoch: i64, sent: Instant) {
        let mut held = lock(&self.held);
        if let Some(Held::Owner { epoch: e, until }) = held.get_mut(session)
            && *e == epoch
        {
            *until = (*until).max(self.until(sent));
        }
    }

    /// The session's epoch moved on: who holds it now, and the error to report.
    fn lost(&self, link: &mut Link, session: &SessionKey) -> StoreError {
        let prefix = session_prefix(session);
        let holder = link
            .run(|db| db.query_opt(HOLDER, &[&prefix]))
            .ok()
            .flatten()
            .and_then(|row| row.try_get::<_, String>(0).ok())
            .unwrap_or_else(|| "another process".to_owned());
        self.fenced(session, holder)
    }

    /// What this process already knows of `session`: the epoch it owns it at, `None` if it
    /// never held it, [`StoreError::Fenced`] if another process took it.
    fn known_epoch(&self, session: &SessionKey) -> Result<Option<i64>, StoreError> {
        match lock(&self.held).get(session) {
            Some(Held::Owner { epoch, .. }) => Ok(Some(*epoch)),
            Some(Held::Fenced { holder }) => Err(StoreError::Fenced {
                session: session.to_string(),
                holder: holder.clone(),
            }),
            None => Ok(None),
        }
    }

    /// See `SessionStore::acquire`: owns `session` when this returns `Ok`, waiting for
    /// another holder's lease to lapse unless told to take over.
    pub(crate) fn acquire(&self, link: &mut Link, session: &SessionKey) -> Result<(), StoreError> {
        loop {
            if let Some(epoch) = self.known_epoch(session)? {
                return self.renew(link, session, epoch);
            }
            match self.claim_once(link, session, self.takeover)? {
                Claim::Won { .. } => return Ok(()),
                Claim::Taken { remaining, .. } => {
                    // Wake just after the lease's end, or sooner to see a release.
                    let nap = (remaining + Duration::from_millis(20)).min(self.lease / 4);
                    std::thread::sleep(nap.max(Duration::from_millis(20)));
                }
            }
        }
    }

    /// See `SessionStore::check_owner`: confirms ownership with the database (claiming a
    /// session this process never held, if no one holds it).
    pub(crate) fn check(&self, link: &mut Link, session: &SessionKey) -> Result<(), StoreError> {
        match self.known_epoch(session)? {
            Some(epoch) => self.renew(link, session, epoch),
            None => self.claim_for_write(link, session).map(|_| ()),
        }
    }

    /// The epoch under which this process writes `session`: claimed now if it never held it
    /// and no one else does (a tool, a test); `Fenced` if another holds it.
    pub(crate) fn claim_for_write(
        &self,
        link: &mut Link,
        session: &SessionKey,
    ) -> Result<i64, StoreError> {
        if let Some(epoch) = self.known_epoch(session)? {
            return Ok(epoch);
        }
        match self.claim_once(link, session, false)? {
            Claim::Won { epoch } => Ok(epoch),
            Claim::Taken { holder, .. } => Err(self.fenced(session, holder)),
        }
    }

    /// The lease in milliseconds, as statements take it.
    pub(crate) fn lease_ms(&self) -> f64 {
        lease_ms(self.lease)
    }

    /// Renews every lease this process holds, each lease/3, until the store closes. Runs on
    /// a thread of its own with its own connection, so that a long commit never delays it.
    pub(crate) fn renew_until_closed(self: Arc<Self>, mut link: Link) {
        loop {
            {
                let closing = lock(&self.closing);
                let (closing, _) = self
                    .wake
                    .wait_timeout_while(closing, self.lease / 3, |closing| !*closing)
                    .unwrap_or_else(|e| e.into_inner());
                if *closing {
                    break;
                }
            }
            for (session, epoch) in self.owned() {
                // A failure is tried again next round; the deadline tells the client meanwhile.
                let _ = self.renew(&mut link, &session, epoch);
            }
        }
        // A clean close hands the sessions on at once: a standby need not wait for the lease.
        // One attempt each: a database that is down now just lets the leases run out.
        link.set_outage_limit(Duration::ZERO);
        for (session, epoch) in self.owned() {
            let prefix = session_prefix(&session);
            let _ = link.run(|db| db.execute(RELEASE, &[&prefix, &epoch]));
        }
    }

    /// The sessions this process owns, with their epochs.
    fn owned(&self) -> Vec<(SessionKey, i64)> {
        lock(&self.held)
            .iter()
            .filter_map(|(k, h)| match h {
                Held::Owner { epoch, .. } => Some((k.clone(), *epoch)),
                Held::Fenced { .. } => None,
            })
            .collect()
    }

    /// Ends the renewer (which then releases the leases).
    pub(crate) fn close(&self) {
        *lock(&self.closing) = true;
        self.wake.notify_all();
    }
}
