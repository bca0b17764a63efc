//! One connection to PostgreSQL that comes back: statements that fail because the connection
//! broke (the server restarted, the network cut it) are run again on a new connection, with
//! backoff, for as long as the outage limit allows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mooring_core::store::StoreError;
use postgres::{Client, Config, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

pub(crate) const NAME: &str = "postgres store";

/// A connection with its prepared statements.
pub(crate) struct Db {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Db {
    /// `sql` prepared once per connection: one round trip less for every later use.
    pub(crate) fn prepare(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Why a unit of work failed.
pub(crate) enum Failure {
    /// The database said no, or the connection broke.
    Db(postgres::Error),
    /// The work itself decided to stop (the session is fenced, a record is damaged).
    Store(StoreError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// Whether `error` says the connection, not the statement, failed: the work may be run again
/// on a new connection. Serialization failures and deadlocks are worth a retry too.
pub(crate) fn is_transient(error: &postgres::Error) -> bool {
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
/// UnknownIssuer"): the postgres crate keeps the useful part in its sources.
pub(crate) fn described(error: &postgres::Error) -> String {
    mooring_core::store::described(error)
}

pub(crate) fn backend_error(error: postgres::Error) -> StoreError {
    StoreError::Backend {
        backend: NAME,
        message: described(&error),
        source: Some(Box::new(error)),
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
    db: Option<Db>,
}

impl Link {
    pub(crate) fn new(
        config: Config,
        tls: Option<MakeRustlsConnect>,
        setup: String,
        outage_limit: Duration,
    ) -> Self {
        Self {
            config,
            tls,
            setup,
            outage_limit,
            db: None,
        }
    }

    fn connect(&mut self) -> Result<&mut Db, postgres::Error> {
        if self.db.as_ref().is_some_and(|db| db.client.is_closed()) {
            self.forget();
        }
        let db = match self.db.take() {
            Some(db) => db,
            None => {
                let mut client = match &self.tls {
                    Some(tls) => self.config.connect(tls.clone())?,
                    None => self.config.connect(NoTls)?,
                };
                client.batch_execute(&self.setup)?;
                Db {
                    client,
                    statements: HashMap::new(),
                }
            }
        };
        Ok(self.db.insert(db))
    }

    /// Changes how long [`Link::run`] keeps trying while the database is unreachable.
    pub(crate) fn set_outage_limit(&mut self, limit: Duration) {
        self.outage_limit = limit;
    }

    /// Drops the connection (on a thread of its own: see [`close_off_runtime`]).
    pub(crate) fn forget(&mut self) {
        if let Some(db) = self.db.take() {
            close_off_runtime(db.client);
        }
    }

    /// Runs `work` until it succeeds, fails for a reason of its own, or the database stays
    /// unreachable past the outage limit. `work` may run more than once: it must be a whole
    /// transaction, or reads, so that running it again after a broken connection is safe.
    pub(crate) fn run<T>(
        &mut self,
        mut work: impl FnMut(&mut Db) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut first_failure: Option<Instant> = None;
        let mut delay = Duration::from_millis(50);
        loop {
            let outcome = match self.connect() {
                Ok(db) => work(db),
                Err(e) => Err(Failure::Db(e)),
            };
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Db(e)) => e,
            };
            if !is_transient(&error) {
                return Err(backend_error(error));
            }
            self.forget();
            let since = *first_failure.get_or_insert_with(Instant::now);
            if since.elapsed() + delay > self.outage_limit {
                return Err(StoreError::Backend {
                    backend: NAME,
                    // The message tells the whole chain: no source repeats it.
                    message: format!(
                        "the database stayed unreachable for {:?}: {}",
                        since.elapsed(),
                        described(&error)
                    ),
                    source: None,
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.forget();
    }
}

/// Closes `client` on a thread of its own. The client owns a small tokio runtime, which may
/// not be dropped on a thread that runs another runtime's tasks (the last handle to a store
/// can go anywhere).
pub(crate) fn close_off_runtime(client: Client) {
    let closing = std::thread::Builder::new()
        .name("mooring-postgres-close".to_owned())
        .spawn(move || drop(client));
    if let Ok(thread) = closing {
        let _ = thread.join();
    }
}
