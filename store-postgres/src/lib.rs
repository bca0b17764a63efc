//! [`PostgresStore`]: Mooring's session store on PostgreSQL, for a session that outlives its
//! machine.
//!
//! An embedded store survives a killed process, not a dead host: the session is on that host's
//! disk. With the session in a PostgreSQL database that two machines reach, a standby gateway
//! resumes it when the active one dies, exactly where the store says it is. One process at a
//! time owns a session:
//!
//! - [`SessionStore::acquire`](mooring_core::store::SessionStore::acquire) (the client calls it
//!   before it resumes the session) takes ownership and raises the session's *epoch*. While
//!   another process holds the session's lease it waits for the lease to lapse, unless
//!   [`PostgresOptions::takeover`] says to take the session at once.
//! - Every commit checks the epoch inside its own transaction, and renews the lease there.
//!   A process whose epoch is stale gets [`StoreError::Fenced`]: it can never write again.
//! - A thread renews the lease each third of [`PostgresOptions::lease`]. The lease is measured
//!   with the database's clock (`clock_timestamp()`), never the hosts'. The owner keeps its own
//!   deadline on its monotonic clock, from when it sent the last renewal: the client writes
//!   nothing to the broker past it until the database confirms ownership, and checks ownership
//!   before every CONNECT, so a fenced process, or one frozen past its lease, never takes the
//!   client identifier back.
//! - A client that stops releases its session, and
//!   [`SessionStore::close`](mooring_core::store::SessionStore::close) releases every lease
//!   and waits for it: a standby takes over at once after a clean stop. Dropping the store
//!   releases them too, in the background: a drop never blocks. So, in async code, a store
//!   dropped and opened again at once may find its sessions held for a moment by the one it
//!   replaced (a write then fails `Fenced`; `acquire` waits): close it first.
//! - A standby's wait stops when its future is dropped, and a session won just as the caller
//!   gave up is handed back.
//!
//! Records are the same versioned, checksummed, wire-format records as the embedded stores
//! ([`mooring_core::store::layout`]) in a `bytea` table; a commit is one transaction, made
//! durable as the database's `synchronous_commit` says (the store turns `off` back to `on` for
//! its own connections). When the connection breaks (the server restarts, the network cuts
//! it) the store connects again with backoff and runs the interrupted transaction again,
//! for up to [`PostgresOptions::outage_limit`]: a transaction that did commit is applied a
//! second time with the same result, since a commit writes whole records and no other process
//! can write the session meanwhile.
//!
//! A database on another machine is reached over TLS ([`PostgresOptions::tls`]: rustls with
//! the system's roots, a CA file, or a configuration of your own).
//!
//! Every statement has a deadline (a third of the lease, at least 500 ms), and so has
//! connecting: a database behind a black hole (packets dropped, nothing reset) is given up
//! within the lease, not after the minutes TCP would wait.
//!
//! Why tokio-postgres on a private current-thread runtime: every call runs on the store's own
//! thread ([`KvStore`]), one at a time, which a session store needs anyway (one commit in
//! flight); the store then works under any executor, as the embedded stores do, and a
//! statement's deadline is a timer on that runtime.
//!
//! ```no_run
//! use mooring_store_postgres::{PostgresOptions, PostgresStore};
//! use std::time::Duration;
//!
//! let store = PostgresStore::open(
//!     PostgresOptions::new("host=db.example user=gateway dbname=mooring")
//!         .lease(Duration::from_secs(10)),
//! )?;
//! # Ok::<(), mooring_core::store::StoreError>(())
//! ```
#![forbid(unsafe_code)]

mod clock;
mod link;
mod options;
mod ownership;
mod schema;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mooring_core::store::layout::{KvWrite, session_of_key, session_prefix};
use mooring_core::store::{Acquired, KvBackend, KvOpen, KvStore, SessionKey, StoreError};

use link::{Failure, Link, NAME};
use ownership::Ownership;

pub use clock::{BootClock, LeaseClock};
pub use options::{DatabaseTls, MIN_LEASE, PostgresOptions};
pub use schema::SCHEMA_VERSION;

/// The session store on PostgreSQL.
pub type PostgresStore = KvStore<PostgresBackend>;

/// Rows read per statement when scanning: bounded memory however long a queue grows.
const PAGE: i64 = 256;

const GET: &str = "SELECT value FROM mooring_records WHERE key = $1";
/// The first record of every session that holds one: every session written here has an
/// owner row (a write claims it), and a cleared one has no record left past its prefix.
const FIRST_OF_EACH: &str = "SELECT r.key FROM mooring_owners AS o \
     CROSS JOIN LATERAL (SELECT key FROM mooring_records WHERE key >= o.session \
       ORDER BY key LIMIT 1) AS r \
     WHERE substring(r.key FROM 1 FOR length(o.session)) = o.session";
const NOW_MS: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";
const PAGE_FROM: &str = "SELECT key, value FROM mooring_records \
     WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) ORDER BY key LIMIT $3";
const LAST_IN: &str = "SELECT key FROM mooring_records \
     WHERE key >= $1 AND key < $2 ORDER BY key DESC LIMIT 1";
const FIRST_FROM: &str = "SELECT key FROM mooring_records WHERE key >= $1 ORDER BY key LIMIT 1";
/// A whole commit in one statement, so in one round trip and one implicit transaction: the
/// epoch check of every session written (which renews the lease and locks the ownership row,
/// so that a takeover waits for it), then the deletes and upserts, which happen only if every
/// epoch still holds, and the commit's number as its epoch's last (read back when the answer
/// was lost). Returns whether they did.
const COMMIT: &str = "WITH owner AS ( \
       UPDATE mooring_owners AS o \
       SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
       FROM unnest($1::bytea[], $2::bigint[]) AS s(session, epoch) \
       WHERE o.session = s.session AND o.epoch = s.epoch \
       RETURNING o.session), \
     allowed AS (SELECT count(*) = cardinality($1::bytea[]) AS ok FROM owner), \
     removed AS ( \
       DELETE FROM mooring_records \
       WHERE key = ANY($4::bytea[]) AND (SELECT ok FROM allowed)), \
     written AS ( \
       INSERT INTO mooring_records (key, value) \
       SELECT k, v FROM unnest($5::bytea[], $6::bytea[]) AS w(k, v) \
       WHERE (SELECT ok FROM allowed) \
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value), \
     marked AS ( \
       INSERT INTO mooring_commits (session, epoch, last) \
       SELECT session, epoch, $7::bigint FROM unnest($1::bytea[], $2::bigint[]) AS m(session, epoch) \
       WHERE (SELECT ok FROM allowed) \
       ON CONFLICT (session, epoch) DO UPDATE SET last = EXCLUDED.last) \
     SELECT ok FROM allowed";

/// The PostgreSQL database behind [`PostgresStore`].
pub struct PostgresBackend {
    link: Mutex<Link>,
    ownership: Arc<Ownership>,
    renewer: Mutex<Option<JoinHandle<()>>>,
    /// Numbers this process's commits, each epoch's last kept in `mooring_commits`.
    commits: AtomicI64,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("holder", &self.ownership.holder)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long one statement may take before its connection is taken for dead (a black hole, a
/// hung server): a third of the lease, so that a renewal that hangs is given up and tried
/// again on a new connection while the lease still runs; never below half a second, so that
/// a loaded database is not taken for a dead one.
fn statement_deadline(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(500))
}

/// Where the store is, for messages: never the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "postgres database {:?} on {} port {:?}",
        config.get_dbname().unwrap_or("(default)"),
        hosts.join(","),
        config.get_ports()
    )
}

impl PostgresBackend {
    /// Connects, creates or checks the schema, and starts the lease renewer. Runs on a thread
    /// of its own: the connection's runtime may not be entered from inside an async task.
    pub fn connect(options: PostgresOptions) -> Result<Self, StoreError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| Self::connect_here(options))
                .join()
                .unwrap_or_else(|_| {
                    Err(StoreError::Backend {
                        backend: NAME,
                        message: "connecting panicked".to_owned(),
                        source: None,
                    })
                })
        })
    }

    fn connect_here(options: PostgresOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = options
            .connection
            .parse()
            .map_err(|e| StoreError::open(std::path::Path::new("(connection string)"), false, e))?;
        let place = describe(&config);
        let open_error = |cause: String| StoreError::Open {
            path: place.clone(),
            cause,
            damaged: false,
            source: None,
        };
        let tls = match &options.tls {
            Some(tls) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let client = tls
                    .client_config()
                    .map_err(|e| open_error(format!("TLS: {e}")))?;
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(client))
            }
            None => None,
        };
        if options.lease < MIN_LEASE {
            return Err(open_error(format!(
                "the lease of {:?} is shorter than {MIN_LEASE:?}",
                options.lease
            )));
        }
        // A transaction left open by a process that froze holds the ownership row; the server
        // ends it well within a lease, so a standby's takeover never waits on it for long.
        let idle_ms = (options.lease / 4).as_millis().max(100);
        let setup = format!(
            "SET application_name = 'mooring'; \
             SET idle_in_transaction_session_timeout = {idle_ms}; \
             DO $$ BEGIN IF current_setting('synchronous_commit') = 'off' THEN \
             PERFORM set_config('synchronous_commit', 'on', false); END IF; END $$;"
        );
        // Opening fails at once when the database cannot be reached; later work waits out an
        // outage up to the limit.
        let deadline = statement_deadline(options.lease);
        let mut link = Link::new(
            config.clone(),
            tls.clone(),
            setup.clone(),
            Duration::ZERO,
            deadline,
        );
        link.run(schema::ensure)
            .map_err(|e| open_error(mooring_core::store::described(&e)))?;
        link.set_outage_limit(options.outage_limit);
        let ownership = Arc::new(Ownership::new(
            options.holder,
            options.lease,
            options.takeover,
            options.shared_client_ids,
            options.lease_clock.clone(),
        ));
        let renewing = Arc::clone(&ownership);
        let renewer_link = Link::new(config, tls, setup, options.lease / 3, deadline);
        let renewer = std::thread::Builder::new()
            .name("mooring-postgres-lease".to_owned())
            .spawn(move || renewing.renew_until_closed(renewer_link))
            .map_err(|e| open_error(format!("cannot start the lease thread: {e}")))?;
        Ok(Self {
            link: Mutex::new(link),
            ownership,
            renewer: Mutex::new(Some(renewer)),
            commits: AtomicI64::new(1),
        })
    }

    /// How this process names itself as a holder.
    pub fn holder(&self) -> &str {
        &self.ownership.holder
    }

    fn read<T>(
        &self,
        work: impl FnMut(&mut link::Db) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        lock(&self.link).run(work)
    }

    /// The first column of the one row `sql` returns, if it returns one.
    fn bytes_or_none(
        &self,
        sql: &'static str,
        params: link::Params,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|db| {
            let row = db.query_opt(sql, params)?;
            Ok(row.map(|r| r.try_get::<_, Vec<u8>>(0)).transpose()?)
        })
    }

    /// A commit refused: nothing was written, some session's epoch moved on. Which one, and
    /// who has it (`Fenced`).
    fn refused(&self, link: &mut Link, sessions: &BTreeMap<SessionKey, i64>) -> StoreError {
        for session in sessions.keys() {
            if let Err(fenced) = self.ownership.check(link, session) {
                return fenced;
            }
        }
        StoreError::Backend {
            backend: NAME,
            message: "a commit was refused for a stale epoch, yet every session is still owned"
                .to_owned(),
            source: None,
        }
    }

    /// A commit whose answer was lost: read back whether it landed. Landed, it is reported
    /// done, as it is (the new owner, if any, will act on it); not landed, the refusal
    /// (`Fenced`) or the `failure` stands; and when the database cannot say (unreachable, or
    /// the epoch's mark pruned after many takeovers), the outcome is unknown, which is not the
    /// same as failed: the application must not take it for a refusal and send again.
    fn resolve(
        &self,
        link: &mut Link,
        sessions: &BTreeMap<SessionKey, i64>,
        number: i64,
        failure: Option<StoreError>,
    ) -> Result<(), StoreError> {
        let Some((session, epoch)) = sessions.iter().next() else {
            return failure.map_or(Ok(()), Err);
        };
        let landed = self.ownership.landed(link, session, *epoch, number);
        let mut holder = || {
            self.ownership
                .current_holder(link, session)
                .filter(|holder| *holder != self.ownership.holder)
        };
        match (landed, failure) {
            (Ok(Some(true)), _) => {
                // Done; whether this process still owns the sessions, the next commit learns.
                if let Some(holder) = holder() {
                    for session in sessions.keys() {
                        self.ownership.mark_fenced(session, holder.clone());
                    }
                }
                Ok(())
            }
            (Ok(Some(false)), Some(failure)) => Err(failure),
            (Ok(Some(false)), None) => Err(self.refused(link, sessions)),
            (Ok(None), failure) => Err(StoreError::OutcomeUnknown {
                session: session.to_string(),
                holder: holder(),
                cause: failure.map_or_else(
                    || {
                        "its answer was lost, and another process took the session over \
                        before it could be read back"
                            .to_owned()
                    },
                    |f| mooring_core::store::described(&f),
                ),
            }),
            (Err(unreadable), failure) => Err(StoreError::OutcomeUnknown {
                session: session.to_string(),
                holder: None,
                cause: format!(
                    "{}; reading it back failed too: {}",
                    failure.map_or_else(
                        || "its answer was lost".to_owned(),
                        |f| mooring_core::store::described(&f)
                    ),
                    mooring_core::store::described(&unreadable)
                ),
            }),
        }
    }
}

/// Dropping releases the leases (the renewer does, one attempt each, within the statement
/// deadline). On a thread that runs async tasks it does not wait for that: the last handle to
/// a store may go on an async worker, and `SessionStore::close` is the way to wait there.
/// Elsewhere (the store's own thread, a plain thread) it waits, so that a store dropped and
/// opened again at once finds its sessions free.
impl Drop for PostgresBackend {
    fn drop(&mut self) {
        self.ownership.close();
        if tokio::runtime::Handle::try_current().is_err()
            && let Some(renewer) = lock(&self.renewer).take()
        {
            let _ = renewer.join();
        }
    }
}

impl KvOpen for PostgresBackend {
    type Options = PostgresOptions;

    fn open(options: PostgresOptions) -> Result<Self, StoreError> {
        Self::connect(options)
    }
}

impl KvBackend for PostgresBackend {
    const NAME: &'static str = NAME;
    const BLOCKING: bool = true;
    // A call can wait on the network for up to the outage limit.
    const JOIN_ON_DROP: bool = false;
    const SHARED: bool = true;
    // A write fails whole when one session in it was taken over (fenced).
    const GROUP_COMMITS: bool = false;

    fn first_key_of_each_session(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let keys = self.read(|db| {
            let rows = db.query(FIRST_OF_EACH, &[])?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in rows {
                keys.push(row.try_get::<_, Vec<u8>>(0)?);
            }
            Ok(keys)
        })?;
        Ok(Some(keys))
    }

    fn clock_ms(&self) -> Result<Option<u64>, StoreError> {
        // Sessions here are stamped by many hosts: the database's clock is the one they share.
        let ms = self.read(|db| Ok(db.query_one(NOW_MS, &[])?.try_get::<_, i64>(0)?))?;
        Ok(Some(u64::try_from(ms).unwrap_or(0)))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.bytes_or_none(GET, &[&key])
    }

    fn visit_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        // Page by page, each page a statement: the session's owner is the only writer, and
        // it reads between its own commits, so the pages see one state.
        let mut from = start.to_vec();
        loop {
            let rows = self.read(|db| {
                let rows = db.query(PAGE_FROM, &[&from, &end, &PAGE])?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push((row.try_get::<_, Vec<u8>>(0)?, row.try_get::<_, Vec<u8>>(1)?));
                }
                Ok(out)
            })?;
            let full = rows.len() as i64 == PAGE;
            for (key, value) in &rows {
                if !visit(key, value) {
                    return Ok(());
                }
            }
            match rows.into_iter().next_back() {
                Some((mut last, _)) if full => {
                    // The least key above the last one read.
                    last.push(0);
                    from = last;
                }
                _ => return Ok(()),
            }
        }
    }

    fn last_key_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.bytes_or_none(LAST_IN, &[&start, &end])
    }

    fn first_key_from(&self, start: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.bytes_or_none(FIRST_FROM, &[&start])
    }

    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        let mut link = lock(&self.link);
        // Every session the writes touch, with the epoch this process owns it at.
        let mut sessions: BTreeMap<SessionKey, i64> = BTreeMap::new();
        for write in writes {
            let session = session_of_key(write.key())?;
            if let std::collections::btree_map::Entry::Vacant(entry) = sessions.entry(session) {
                let epoch = self.ownership.claim_for_write(&mut link, entry.key())?;
                entry.insert(epoch);
            }
        }
        // In order, the last write to a key wins: one upsert and one delete do the lot.
        let mut last: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for write in writes {
            match write {
                KvWrite::Put(k, v) => last.insert(k, Some(v)),
                KvWrite::Delete(k) => last.insert(k, None),
            };
        }
        let (mut put_keys, mut put_values, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in last {
            match value {
                Some(value) => {
                    put_keys.push(key);
                    put_values.push(value);
                }
                None => deletes.push(key),
            }
        }
        let (owned, epochs): (Vec<Vec<u8>>, Vec<i64>) = sessions
            .iter()
            .map(|(session, epoch)| (session_prefix(session), *epoch))
            .unzip();
        let sent = Cell::new(self.ownership.now());
        let lease_ms = self.ownership.lease_ms();
        let number = self.commits.fetch_add(1, Ordering::Relaxed);
        let (outcome, cut_off) = link.run_tracked(|db| {
            sent.set(self.ownership.now());
            let row = db.query_one(
                COMMIT,
                &[
                    &owned,
                    &epochs,
                    &lease_ms,
                    &deletes,
                    &put_keys,
                    &put_values,
                    &number,
                ],
            )?;
            Ok(row.try_get::<_, bool>(0)?)
        });
        match outcome {
            Ok(true) => {
                for (session, epoch) in &sessions {
                    self.ownership.confirmed(session, *epoch, sent.get());
                }
                Ok(())
            }
            // An earlier run, cut off, may have landed before the epoch moved on.
            Ok(false) if cut_off => self.resolve(&mut link, &sessions, number, None),
            Ok(false) => Err(self.refused(&mut link, &sessions)),
            Err(error) if cut_off => self.resolve(&mut link, &sessions, number, Some(error)),
            Err(error) => Err(error),
        }
    }

    fn try_acquire(&self, session: &SessionKey) -> Result<Acquired, StoreError> {
        self.ownership.try_acquire(&mut lock(&self.link), session)
    }

    fn release(&self, session: &SessionKey) -> Result<(), StoreError> {
        self.ownership.release(&mut lock(&self.link), session)
    }

    fn close(&self) -> Result<(), StoreError> {
        self.ownership.close();
        let renewer = lock(&self.renewer).take();
        if let Some(renewer) = renewer {
            renewer.join().map_err(|_| StoreError::Backend {
                backend: NAME,
                message: "the lease thread panicked".to_owned(),
                source: None,
            })?;
        }
        Ok(())
    }

    fn check_owner(&self, session: &SessionKey) -> Result<(), StoreError> {
        self.ownership.check(&mut lock(&self.link), session)
    }

    fn owned_until(&self, session: &SessionKey) -> Option<Instant> {
        self.ownership.owned_until(session)
    }
}
