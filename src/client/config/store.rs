//! The `[store]` section of a configuration: which session store a gateway opens, and where.
//! The store is otherwise code ([`ClientBuilder::store`](crate::client::ClientBuilder::store)):
//! this lets an operator choose it in the file, with the database password kept out of it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// The session store a configuration names ([`ClientConfig::open_store`](super::ClientConfig::open_store)).
///
/// ```toml
/// [store]
/// backend = "redb"
/// path = "/var/lib/gateway/sessions.redb"
/// ```
///
/// ```toml
/// [store]
/// backend = "postgres"
/// connection = "host=db user=gateway dbname=mooring"
/// password_env = "GATEWAY_DB_PASSWORD"
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `"redb"` (a file), `"sqlite"` (a file), `"sled"` (a directory), `"postgres"` (a
    /// database shared with a standby) or `"memory"` (nothing survives the process).
    pub backend: StoreBackend,
    /// The file (redb, SQLite) or directory (sled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The PostgreSQL connection, as libpq takes it (`host=db user=gw dbname=m`, or a URL),
    /// best without its password: give that by `password_env` or `password_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// The database password, from this environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The database password, from this file (its first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// The kinds of session store a configuration can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreBackend {
    /// redb: one file, the default durable store (feature `redb`).
    Redb,
    /// sled: one directory (feature `sled`).
    Sled,
    /// SQLite: one file (feature `sqlite`).
    Sqlite,
    /// PostgreSQL, owned by one process at a time (feature `postgres`).
    Postgres,
    /// Memory: sessions last as long as the process.
    Memory,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A connection string may hold a password.
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("connection", &self.connection.as_ref().map(|_| "<hidden>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl StoreBackend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Redb => "redb",
            Self::Sled => "sled",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Memory => "memory",
        }
    }
}

impl StoreConfig {
    /// A store of `backend` with nothing else set.
    pub fn new(backend: StoreBackend) -> Self {
        Self {
            backend,
            path: None,
            connection: None,
            password_env: None,
            password_file: None,
        }
    }

    /// Checks what opening needs, without opening anything: a path for redb, SQLite and sled, a
    /// connection for PostgreSQL, a password source that can be read, the backend's feature.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            origin: "the configuration".to_owned(),
            field: format!("store.{field}"),
            message,
        };
        let backend = self.backend.name();
        let compiled = match self.backend {
            StoreBackend::Redb => cfg!(feature = "redb"),
            StoreBackend::Sled => cfg!(feature = "sled"),
            StoreBackend::Sqlite => cfg!(feature = "sqlite"),
            StoreBackend::Postgres => cfg!(feature = "postgres"),
            StoreBackend::Memory => true,
        };
        if !compiled {
            return Err(invalid(
                "backend",
                format!(
                    "{backend:?} needs the `{backend}` feature of mooring-mqtt, which this build lacks"
                ),
            ));
        }
        let needs_path = matches!(
            self.backend,
            StoreBackend::Redb | StoreBackend::Sled | StoreBackend::Sqlite
        );
        if needs_path && self.path.is_none() {
            return Err(invalid("path", format!("a {backend} store needs a path")));
        }
        if !needs_path && self.path.is_some() {
            return Err(invalid("path", format!("a {backend} store has no path")));
        }
        let postgres = self.backend == StoreBackend::Postgres;
        if postgres && self.connection.is_none() {
            return Err(invalid(
                "connection",
                "a postgres store needs a connection".to_owned(),
            ));
        }
        if !postgres {
            for (field, set) in [
                ("connection", self.connection.is_some()),
                ("password_env", self.password_env.is_some()),
                ("password_file", self.password_file.is_some()),
            ] {
                if set {
                    return Err(invalid(field, format!("a {backend} store has no {field}")));
                }
            }
        }
        self.password().map(|_| ())
    }

    /// The database password from `password_env` or `password_file`, if one is named.
    pub(crate) fn password(&self) -> Result<Option<String>, ConfigError> {
        Secret::from_sources(
            "store.password",
            None,
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
    }
}
