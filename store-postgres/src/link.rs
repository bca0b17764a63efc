//! One connection to PostgreSQL that comes back: statements that fail because the connection
//! broke (the server restarted, the network cut it, or it stopped answering) are run again on
//! a new connection, with backoff, for as long as the outage limit allows.
//!
//! Every statement has a deadline. A database behind a black hole (packets dropped, nothing
//! reset) never answers, and TCP would wait for minutes; a proxy or a hung server in between
//! keeps TCP itself content. So the link drives tokio-postgres on a private current-thread
//! runtime and gives up on a statement, and its connection, once the deadline passes.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use mooring_core::store::StoreError;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

pub(crate) const NAME: &str = "postgres store";

/// A connection with its prepared statements, and the runtime that drives it.
pub(crate) struct Db {
    /// Always there until the connection is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// How long one statement may take before the connection is taken for dead.
    deadline: Duration,
}

/// Parameters of a statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Db {
    /// Runs `work` to its end on this connection's runtime, or fails once the deadline passed.
    fn block<T>(
        &self,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Failure> {
        let deadline = self.deadline;
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(Failure::TimedOut(Duration::ZERO));
        };
        // The backend blocks: called on an async task's thread, it would have to start its
        // runtime inside another, which tokio refuses with a panic. The store's own methods
        // call it from the store's thread; this says so to a caller who did not.
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Failure::Store(StoreError::backend(
                NAME,
                "PostgresBackend blocks: call it outside an async task (spawn_blocking, or \
                 a thread), or use the store's async methods"
                    .to_owned(),
            )));
        }
        runtime.block_on(async move {
            match tokio::time::timeout(deadline, work).await {
                Ok(result) => result.map_err(Failure::Db),
                Err(_) => Err(Failure::TimedOut(deadline)),
            }
        })
    }

    /// `sql` prepared once per connection: one round trip less for every later use.
    fn prepare(&mut self, sql: &'static str) -> Result<Statement, Failure> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.block(self.client.prepare(sql))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// The rows `sql` returns.
    pub(crate) fn query(&mut self, sql: &'static str, params: Params) -> Result<Vec<Row>, Failure> {
        let statement = self.prepare(sql)?;
        self.block(self.client.query(&statement, params))
    }

    /// The one row `sql` returns, if it returns one.
    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params,
    ) -> Result<Option<Row>, Failure> {
        let statement = self.prepare(sql)?;
        self.block(self.client.query_opt(&statement, params))
    }

    /// The one row `sql` must return.
    pub(crate) fn query_one(&mut self, sql: &'static str, params: Params) -> Result<Row, Failure> {
        let statement = self.prepare(sql)?;
        self.block(self.client.query_one(&statement, params))
    }

    /// How many rows `sql` changed.
    pub(crate) fn execute(&mut self, sql: &'static str, params: Params) -> Result<u64, Failure> {
        let statement = self.prepare(sql)?;
        self.block(self.client.execute(&statement, params))
    }

    /// Runs `sql`, any number of statements without parameters, through the simple protocol.
    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), Failure> {
        self.block(self.client.batch_execute(sql))
    }
}

/// Why a unit of work failed.
pub(crate) enum Failure {
    /// The database said no, or the connection broke.
    Db(tokio_postgres::Error),
    /// The database did not answer within the statement deadline: the connection is taken for
    /// dead (a black hole, a hung server).
    TimedOut(Duration),
    /// The work itself decided to stop (the session is fenced, a record is damaged).
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl Failure {
    /// Whether the connection, not the statement, failed: the work may be run again on a new
    /// connection. Serialization failures and deadlocks are worth a retry too.
    fn is_transient(&self) -> bool {
        match self {
            Failure::Db(error) => is_transient(error),
            Failure::TimedOut(_) => true,
            Failure::Store(_) => false,
        }
    }

    /// In one line, causes included.
    fn describe(&self) -> String {
        match self {
            Failure::Db(error) => described(error),
            Failure::TimedOut(deadline) => {
                format!("the database did not answer within {deadline:?}")
            }
            Failure::Store(error) => mooring_core::store::described(error),
        }
    }
}

/// Whether `error` says the connection, not the statement, failed.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        let code = code.code();
        return code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "25P03"
            );
    }
    // An I/O error on the socket (refused, reset) rather than a statement's error.
    std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>())
}

/// The error with its causes ("error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer"): tokio-postgres keeps the useful part in its sources.
pub(crate) fn described(error: &tokio_postgres::Error) -> String {
    mooring_core::store::described(error)
}

fn failure_error(failure: Failure) -> StoreError {
    match failure {
        Failure::Store(error) => error,
        Failure::Db(error) => StoreError::Backend {
            backend: NAME,
            message: described(&error),
            source: Some(Box::new(error)),
        },
        timed_out @ Failure::TimedOut(_) => StoreError::Backend {
            backend: NAME,
            message: timed_out.describe(),
            source: None,
        },
    }
}

/// A connection that is made again when it breaks.
pub(crate) struct Link {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    /// Settings for every new connection.
    setup: String,
    /// How long to keep trying while the database cannot be reached.
    outage_limit: Duration,
    /// How long one statement may take.
    deadline: Duration,
    db: Option<Db>,
}

impl Link {
    /// A link that connects on first use. `deadline` bounds each statement, and connecting:
    /// the socket's own timeouts are set from it too, so that a dead peer is noticed by TCP
    /// where nothing in between answers for it.
    pub(crate) fn new(
        mut config: Config,
        tls: Option<MakeRustlsConnect>,
        setup: String,
        outage_limit: Duration,
        deadline: Duration,
    ) -> Self {
        // Keepalive times are whole seconds to the kernel, which refuses 0.
        let second = Duration::from_secs(1);
        config
            .connect_timeout(deadline)
            .tcp_user_timeout(deadline)
            .keepalives(true)
            .keepalives_idle(deadline.max(second))
            .keepalives_interval(second)
            .keepalives_retries(3);
        Self {
            config,
            tls,
            setup,
            outage_limit,
            deadline,
            db: None,
        }
    }

    fn connect(&mut self) -> Result<&mut Db, Failure> {
        if self.db.as_ref().is_some_and(|db| db.client.is_closed()) {
            self.forget();
        }
        let db = match self.db.take() {
            Some(db) => db,
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        Failure::Store(StoreError::Backend {
                            backend: NAME,
                            message: format!("cannot start the connection's runtime: {e}"),
                            source: None,
                        })
                    })?;
                let (config, tls, deadline) = (&self.config, &self.tls, self.deadline);
                let client = runtime.block_on(async {
                    let connected = async {
                        Ok::<Client, tokio_postgres::Error>(match tls {
                            Some(tls) => {
                                let (client, connection) = config.connect(tls.clone()).await?;
                                tokio::spawn(connection);
                                client
                            }
                            None => {
                                let (client, connection) = config.connect(NoTls).await?;
                                tokio::spawn(connection);
                                client
                            }
                        })
                    };
                    match tokio::time::timeout(deadline, connected).await {
                        Ok(result) => result.map_err(Failure::Db),
                        Err(_) => Err(Failure::TimedOut(deadline)),
                    }
                })?;
                let mut db = Db {
                    runtime: Some(runtime),
                    client,
                    statements: HashMap::new(),
                    deadline,
                };
                db.batch_execute(&self.setup)?;
                db
            }
        };
        Ok(self.db.insert(db))
    }

    /// Changes how long [`Link::run`] keeps trying while the database is unreachable.
    pub(crate) fn set_outage_limit(&mut self, limit: Duration) {
        self.outage_limit = limit;
    }

    /// Drops the connection, without waiting for anything (see `Db`'s `Drop`).
    pub(crate) fn forget(&mut self) {
        self.db = None;
    }

    /// Runs `work` until it succeeds, fails for a reason of its own, or the database stays
    /// unreachable past the outage limit. `work` may run more than once: it must be a whole
    /// transaction, or reads, so that running it again after a broken connection is safe.
    pub(crate) fn run<T>(
        &mut self,
        work: impl FnMut(&mut Db) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.run_tracked(work).0
    }

    /// [`Link::run`] with one attempt: for work that may as well not happen when the database
    /// cannot be reached at once (a release, which the lease's end does anyway).
    pub(crate) fn run_once<T>(
        &mut self,
        work: impl FnMut(&mut Db) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let limit = std::mem::replace(&mut self.outage_limit, Duration::ZERO);
        let result = self.run(work);
        self.outage_limit = limit;
        result
    }

    /// [`Link::run`], also saying whether the work's outcome may differ from what the result
    /// says: whether some run of it was cut off after it began (the connection broke or the
    /// deadline passed), so that it may have taken effect unseen.
    pub(crate) fn run_tracked<T>(
        &mut self,
        mut work: impl FnMut(&mut Db) -> Result<T, Failure>,
    ) -> (Result<T, StoreError>, bool) {
        let mut first_failure: Option<Instant> = None;
        let mut delay = Duration::from_millis(50);
        let mut cut_off = false;
        loop {
            let (outcome, began) = match self.connect() {
                Ok(db) => (work(db), true),
                Err(e) => (Err(e), false),
            };
            let failure = match outcome {
                Ok(value) => return (Ok(value), cut_off),
                Err(failure) if !failure.is_transient() => {
                    return (Err(failure_error(failure)), cut_off);
                }
                Err(failure) => failure,
            };
            cut_off |= began;
            self.forget();
            let since = *first_failure.get_or_insert_with(Instant::now);
            if since.elapsed() + delay > self.outage_limit {
                let error = StoreError::Backend {
                    backend: NAME,
                    // The message tells the whole chain: no source repeats it.
                    message: format!(
                        "the database stayed unreachable for {:?}: {}",
                        since.elapsed(),
                        failure.describe()
                    ),
                    source: None,
                };
                return (Err(error), cut_off);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

/// Dropping a connection never waits: its runtime stops in the background, taking the
/// connection's task with it (the server sees the socket close). Nothing here may block: the
/// last handle to a store can go on an async worker, and closing politely a connection to a
/// database behind a black hole would wait until TCP gives up.
impl Drop for Db {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
