//! Opening the session store a configuration names ([`StoreConfig::open`],
//! [`ClientConfig::open_store`]): the stores by feature, the database password added to the
//! connection.

use std::sync::Arc;

use super::config::{ClientConfig, ConfigError, StoreBackend, StoreConfig};
use super::error::ClientError;
use crate::store::SessionStore;

impl StoreConfig {
    /// Opens the store. Fails as [`StoreConfig::check`] does, or as the store does (a file
    /// that cannot be opened, a database that cannot be reached).
    pub fn open(&self) -> Result<Arc<dyn SessionStore>, ClientError> {
        self.check()?;
        match self.backend {
            StoreBackend::Memory => Ok(Arc::new(crate::store::MemoryStore::default())),
            #[cfg(feature = "redb")]
            StoreBackend::Redb => Ok(Arc::new(
                crate::store::RedbStore::open(self.path.clone().unwrap_or_default())
                    .map_err(store_error)?,
            )),
            #[cfg(feature = "sled")]
            StoreBackend::Sled => Ok(Arc::new(
                crate::store::SledStore::open(self.path.clone().unwrap_or_default())
                    .map_err(store_error)?,
            )),
            #[cfg(feature = "sqlite")]
            StoreBackend::Sqlite => Ok(Arc::new(
                crate::store::SqliteStore::open(self.path.clone().unwrap_or_default())
                    .map_err(store_error)?,
            )),
            #[cfg(feature = "postgres")]
            StoreBackend::Postgres => {
                let mut connection = self.connection.clone().unwrap_or_default();
                if let Some(password) = self.password()? {
                    connection = with_password(&connection, &password);
                }
                let options = crate::store::PostgresOptions::new(connection);
                Ok(Arc::new(
                    crate::store::PostgresStore::open(options).map_err(store_error)?,
                ))
            }
            #[allow(unreachable_patterns)]
            other => Err(ClientError::FeatureMissing {
                feature: other.name(),
                needed_for: format!("a {} store", other.name()),
            }),
        }
    }
}

impl ClientConfig {
    /// Opens the store the `[store]` section names; give it to the builder
    /// ([`ClientBuilder::store`](super::ClientBuilder::store)). Fails without a `[store]`
    /// section.
    pub fn open_store(&self) -> Result<Arc<dyn SessionStore>, ClientError> {
        match &self.store {
            Some(store) => store.open(),
            None => Err(ConfigError::Invalid {
                origin: "the configuration".to_owned(),
                field: "store".to_owned(),
                message: "no [store] section".to_owned(),
            }
            .into()),
        }
    }
}

#[cfg(any(
    feature = "redb",
    feature = "sled",
    feature = "sqlite",
    feature = "postgres"
))]
fn store_error(error: crate::store::StoreError) -> ClientError {
    ClientError::Store(Arc::new(error))
}

/// `connection` with `password` added: as a `password` pair in libpq's `key=value` form, as a
/// `password` query parameter in its URL form.
#[cfg(feature = "postgres")]
fn with_password(connection: &str, password: &str) -> String {
    if connection.contains("://") {
        let encoded: String = password
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let separator = if connection.contains('?') { '&' } else { '?' };
        format!("{connection}{separator}password={encoded}")
    } else {
        let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
        format!("{connection} password='{quoted}'")
    }
}
