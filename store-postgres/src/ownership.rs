//! Who owns a session: one process at a time, by a lease that the database's clock measures.
//!
//! A row of `mooring_owners` per session holds its epoch, its holder and the lease's end.
//! Taking a session raises the epoch; every commit of the owner checks its epoch (and renews
//! the lease) inside its own transaction, so a process whose epoch is stale can never write
//! again. The lease's end is `clock_timestamp()` of the database plus the lease, compared with
//! the database's clock too: hosts' clocks play no part. The owner also keeps a deadline of its
//! own on its lease clock (`clock.rs`: one that counts through suspend), from the moment it
//! *sent* the last renewal: it is never later than the database's, so a process frozen or
//! suspended past its lease knows it on waking without asking.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock::{LeaseClock, as_instant};
use crate::link::{Db, Failure, Link, NAME};
use mooring_core::store::layout::session_prefix;
use mooring_core::store::{Acquired, SessionKey, StoreError};

/// What this process knows of one session's ownership.
#[derive(Debug)]
enum Held {
    /// This process owns it at `epoch`, surely until `until` (on the lease clock).
    Owner { epoch: i64, until: Duration },
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
        instance: String,
        remaining: Duration,
    },
}

/// Takes the session where its lease lapsed, this very process holds it already (a claim
/// repeated after a lost answer), or a takeover is asked for; starts the epoch's commit mark
/// and forgets the marks of epochs long gone.
const CLAIM: &str = "WITH claimed AS ( \
       INSERT INTO mooring_owners AS o \
         (session, name, epoch, holder, instance, client_id, lease_until) \
       VALUES ($1, $2, 1, $3, $6, $7, clock_timestamp() + $4 * interval '1 millisecond') \
       ON CONFLICT (session) DO UPDATE \
       SET epoch = o.epoch + 1, name = EXCLUDED.name, holder = EXCLUDED.holder, \
           instance = EXCLUDED.instance, client_id = EXCLUDED.client_id, \
           lease_until = EXCLUDED.lease_until \
       WHERE o.lease_until < clock_timestamp() \
          OR (o.holder = EXCLUDED.holder AND o.instance = EXCLUDED.instance) OR $5 \
       RETURNING o.epoch), \
     marked AS ( \
       INSERT INTO mooring_commits (session, epoch, last) SELECT $1, epoch, 0 FROM claimed \
       ON CONFLICT DO NOTHING), \
     pruned AS ( \
       DELETE FROM mooring_commits AS c USING claimed \
       WHERE c.session = $1 AND c.epoch < claimed.epoch - $8) \
     SELECT epoch FROM claimed";
/// How many epochs before the current one keep their commit marks: a process that lost its
/// answer and wakes after more takeovers than this learns only that the outcome is unknown.
const MARKED_EPOCHS: i64 = 3;
const HOLDER: &str = "SELECT holder, instance, \
     greatest(0, extract(epoch FROM lease_until - clock_timestamp()) * 1000)::float8 \
     FROM mooring_owners WHERE session = $1";
/// Another process's live session with the same client identifier: the broker knows only the
/// identifier, so two owners of them would take the connection from each other.
const SAME_CLIENT_ID: &str = "SELECT name, holder FROM mooring_owners \
     WHERE client_id = $1 AND session <> $2 AND lease_until > clock_timestamp() \
       AND NOT (holder = $3 AND instance = $4) LIMIT 1";
/// The last commit this epoch made.
const LAST_COMMIT: &str = "SELECT last FROM mooring_commits WHERE session = $1 AND epoch = $2";
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
    /// Drawn at random when the store opens: two processes given the same holder name are
    /// still told apart, so that both cannot win the same session.
    instance: String,
    lease: Duration,
    takeover: bool,
    shared_client_ids: bool,
    /// What the owner measures its own lease on.
    clock: Arc<dyn LeaseClock>,
    held: Mutex<HashMap<SessionKey, Held>>,
    /// Set when the store closes; wakes the renewer.
    closing: Mutex<bool>,
    wake: Condvar,
    /// Held by the renewer for a round and by a release: a renewal sent just after a release
    /// would hold the lease again for a whole lease that nobody uses.
    renewing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn lease_ms(lease: Duration) -> f64 {
    lease.as_secs_f64() * 1000.0
}

impl Ownership {
    pub(crate) fn new(
        holder: String,
        lease: Duration,
        takeover: bool,
        shared_client_ids: bool,
        clock: Arc<dyn LeaseClock>,
    ) -> Self {
        Self {
            holder,
            instance: format!("{:016x}", fastrand::u64(..)),
            lease,
            takeover,
            shared_client_ids,
            clock,
            held: Mutex::new(HashMap::new()),
            closing: Mutex::new(false),
            wake: Condvar::new(),
            renewing: Mutex::new(()),
        }
    }

    /// The reading of the lease clock now.
    pub(crate) fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    /// The deadline a renewal sent at `sent` (on the lease clock) earns: the lease, less a
    /// twentieth for the difference in rate between this host's clock and the database's, less
    /// a tenth as a margin for what no clock here can see (a step of the database's clock, the
    /// time between a check and the write it allows).
    fn until(&self, sent: Duration) -> Duration {
        sent + self.lease - self.lease / 20 - self.lease / 10
    }

    pub(crate) fn owned_until(&self, session: &SessionKey) -> Option<Instant> {
        match lock(&self.held).get(session) {
            Some(Held::Owner { until, .. }) => Some(as_instant(&*self.clock, *until)),
            // Long past: nothing may be written.
            _ => Some(as_instant(
                &*self.clock,
                self.now()
                    .saturating_sub(Duration::from_secs(1).min(self.lease)),
            )),
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
                &self.instance,
                &session.client_id(),
                &MARKED_EPOCHS,
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
                instance: row.try_get(1)?,
                remaining: Duration::from_secs_f64(row.try_get::<_, f64>(2)? / 1000.0),
            },
            // Deleted between the two statements: try again at once.
            None => Claim::Taken {
                holder: String::new(),
                instance: String::new(),
                remaining: Duration::ZERO,
            },
        })
    }

    /// Whether another process, given this one's holder name, holds `claim`'s session: two
    /// processes configured alike, which the name alone cannot tell apart.
    fn named_alike(&self, claim: &Claim) -> bool {
        matches!(claim, Claim::Taken { holder, instance, remaining }
            if *holder == self.holder && *instance != self.instance && !remaining.is_zero())
    }

    /// Refuses `session`, just won, if another process owns a session with the same client
    /// identifier under another key (other server addresses, another cluster scope): both
    /// would connect to one broker with one identifier and take the connection from each
    /// other. The session is handed back first. Allowed with `shared_client_ids`, for one
    /// identifier at different brokers, which the store cannot tell apart.
    fn refuse_same_client_id(
        &self,
        link: &mut Link,
        session: &SessionKey,
    ) -> Result<(), StoreError> {
        if self.shared_client_ids {
            return Ok(());
        }
        let prefix = session_prefix(session);
        let other = link.run(|db| {
            let row = db.query_opt(
                SAME_CLIENT_ID,
                &[&session.client_id(), &prefix, &self.holder, &self.instance],
            )?;
            row.map(|row| {
                Ok::<_, Failure>((row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?))
            })
            .transpose()
        })?;
        let Some((name, holder)) = other else {
            return Ok(());
        };
        let _ = self.release(link, session);
        Err(StoreError::Backend {
            backend: NAME,
            message: format!(
                "{holder} owns {name}, with the same client identifier as {session}: at one \
                 broker the two would take the connection from each other. Give every gateway \
                 of this client the same servers or cluster_scope; or, if the identifier is \
                 used at different brokers on purpose, set PostgresOptions::shared_client_ids"
            ),
            source: None,
        })
    }

    /// Whether the commit numbered `number` of `session` at `epoch` landed: `None` when that
    /// is no longer known (the epoch's mark was pruned after later takeovers).
    pub(crate) fn landed(
        &self,
        link: &mut Link,
        session: &SessionKey,
        epoch: i64,
        number: i64,
    ) -> Result<Option<bool>, StoreError> {
        let prefix = session_prefix(session);
        let last = link.run_once(|db| {
            let row = db.query_opt(LAST_COMMIT, &[&prefix, &epoch])?;
            Ok(row.map(|row| row.try_get::<_, i64>(0)).transpose()?)
        })?;
        Ok(last.map(|last| last >= number))
    }

    /// Who owns `session` now, by the database; `None` if no one or the database cannot say.
    pub(crate) fn current_holder(&self, link: &mut Link, session: &SessionKey) -> Option<String> {
        let prefix = session_prefix(session);
        link.run_once(|db| db.query_opt(HOLDER, &[&prefix]))
            .ok()
            .flatten()
            .and_then(|row| row.try_get::<_, String>(0).ok())
    }

    /// Marks `session` as taken over by `holder`: nothing more may be written to it.
    pub(crate) fn mark_fenced(&self, session: &SessionKey, holder: String) {
        let _ = self.fenced(session, holder);
    }

    /// Claims `session` once, without waiting: the epoch if won, else who holds it and for
    /// how long.
    fn claim_once(
        &self,
        link: &mut Link,
        session: &SessionKey,
        force: bool,
    ) -> Result<Claim, StoreError> {
        if *lock(&self.closing) {
            return Err(StoreError::Closed);
        }
        let sent = std::cell::Cell::new(self.now());
        let claim = link.run(|db| {
            sent.set(self.now());
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
        let sent = std::cell::Cell::new(self.now());
        let renewed = link.run(|db| {
            sent.set(self.now());
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
    pub(crate) fn confirmed(&self, session: &SessionKey, epoch: i64, sent: Duration) {
        let mut held = lock(&self.held);
        if let Some(Held::Owner { epoch: e, until }) = held.get_mut(session)
            && *e == epoch
        {
            *until = (*until).max(self.until(sent));
        }
    }

    /// The session's epoch moved on: who holds it now, and the error to report.
    fn lost(&self, link: &mut Link, session: &SessionKey) -> StoreError {
        let holder = self
            .current_holder(link, session)
            .unwrap_or_else(|| "another process".to_owned());
        self.fenced(session, holder)
    }

    /// What this process already knows of `session`: the epoch it owns it at, `None` if it
    /// never held it, [`StoreError::Fenced`] if another process took it.
    fn known_epoch(&self, session: &SessionKey) -> Result<Option<i64>, StoreError> {
        if *lock(&self.closing) {
            return Err(StoreError::Closed);
        }
        match lock(&self.held).get(session) {
            Some(Held::Owner { epoch, .. }) => Ok(Some(*epoch)),
            Some(Held::Fenced { holder }) => Err(StoreError::Fenced {
                session: session.to_string(),
                holder: holder.clone(),
            }),
            None => Ok(None),
        }
    }

    /// One attempt at `SessionStore::acquire`: the session is this process's, or another
    /// holds it and the caller should try again after the returned wait.
    pub(crate) fn try_acquire(
        &self,
        link: &mut Link,
        session: &SessionKey,
    ) -> Result<Acquired, StoreError> {
        if let Some(epoch) = self.known_epoch(session)? {
            self.renew(link, session, epoch)?;
            return Ok(Acquired::Owned);
        }
        let claim = self.claim_once(link, session, self.takeover)?;
        if self.named_alike(&claim) {
            return Err(StoreError::Backend {
                backend: NAME,
                message: format!(
                    "another live process also names itself {:?} and holds session {session}: \
                     give each process its own PostgresOptions::holder (or keep the default)",
                    self.holder
                ),
                source: None,
            });
        }
        Ok(match claim {
            Claim::Won { .. } => {
                self.refuse_same_client_id(link, session)?;
                Acquired::Won
            }
            // Try again just after the lease's end, or sooner to see a release.
            Claim::Taken { remaining, .. } => Acquired::HeldFor(
                (remaining + Duration::from_millis(20))
                    .min(self.lease / 4)
                    .max(Duration::from_millis(20)),
            ),
        })
    }

    /// Hands `session` on: its lease ends now (if this process still owns it), and this
    /// process forgets it, so that it neither renews it nor writes to it without claiming it
    /// again. One attempt: a database that cannot be reached lets the lease run out instead.
    pub(crate) fn release(&self, link: &mut Link, session: &SessionKey) -> Result<(), StoreError> {
        let _round = lock(&self.renewing);
        let epoch = match lock(&self.held).remove(session) {
            Some(Held::Owner { epoch, .. }) => epoch,
            _ => return Ok(()),
        };
        let prefix = session_prefix(session);
        link.run_once(|db| db.execute(RELEASE, &[&prefix, &epoch]))
            .map(|_| ())
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
            let _round = lock(&self.renewing);
            for (session, epoch) in self.owned() {
                // A failure is tried again next round; the deadline tells the client meanwhile.
                let _ = self.renew(&mut link, &session, epoch);
            }
        }
        // A clean close hands the sessions on at once: a standby need not wait for the lease.
        for (session, _) in self.owned() {
            let _ = self.release(&mut link, &session);
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
