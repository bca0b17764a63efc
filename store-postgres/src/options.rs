//! What opening a [`PostgresStore`](crate::PostgresStore) needs: the connection, the lease,
//! the holder's name, TLS.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{BootClock, LeaseClock};

/// How to reach the database, and how ownership behaves. Its `Debug` shows the connection
/// without its password.
#[derive(Clone)]
pub struct PostgresOptions {
    /// The connection, as a URL (`postgres://user:secret@host:5432/db`) or `key=value`
    /// pairs (`host=... user=... dbname=...`), as libpq takes them.
    pub connection: String,
    /// How long ownership lasts without renewal (default 10 s): a standby takes over this long
    /// after the owner stopped renewing, and an owner cut off from the database for this long
    /// stops writing to the broker.
    pub lease: Duration,
    /// Take ownership at once, even from a holder whose lease runs, fencing it (default
    /// false: wait for the lease to lapse).
    pub takeover: bool,
    /// How this process names itself to the others (default: its process id and host name,
    /// with a random suffix). Should differ between processes: two live processes given the
    /// same name are still told apart (each draws an instance of its own), and the second to
    /// claim a session the first holds is refused with an error naming the clash.
    pub holder: String,
    /// How long to keep trying while the database cannot be reached before a call fails
    /// (default 60 s).
    pub outage_limit: Duration,
    /// Let processes own sessions with the same client identifier under different session
    /// keys at once (default false). A session is keyed by its servers (or cluster scope) and
    /// client identifier, but a broker tells clients apart by the identifier alone: two
    /// gateways whose server addresses differ (an IP address and a name for one broker) would
    /// each own "their" session and take the connection from each other. So, by default, a
    /// process that would own such a second session refuses it at `acquire`. Set this when
    /// the same identifier is used at different brokers on purpose.
    pub shared_client_ids: bool,
    /// What this process measures its own lease on ([`BootClock`] unless set: one that
    /// counts through suspend where the system has one). Set it in tests, to see what a clock
    /// that jumps does.
    pub lease_clock: Arc<dyn LeaseClock>,
    /// TLS to the database (default none). With TLS set, the connection requires it
    /// (`sslmode=require`, whatever the connection string says) and verifies the server's
    /// certificate and name.
    pub tls: Option<DatabaseTls>,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            connection,
            lease,
            takeover,
            holder,
            outage_limit,
            shared_client_ids,
            lease_clock: _,
            tls,
        } = self;
        f.debug_struct("PostgresOptions")
            .field("connection", &without_password(connection))
            .field("lease", lease)
            .field("takeover", takeover)
            .field("holder", holder)
            .field("outage_limit", outage_limit)
            .field("shared_client_ids", shared_client_ids)
            .field("tls", tls)
            .finish_non_exhaustive()
    }
}

const HIDDEN: &str = "<hidden>";

/// A connection string with its password replaced by `<hidden>`: the user information of a
/// URL (`postgres://user:secret@host`), a `password` query parameter, a `password=` pair.
pub(crate) fn without_password(connection: &str) -> String {
    let Some((scheme, rest)) = connection.split_once("://") else {
        return without_password_pair(connection);
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:{HIDDEN}@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key == "password" => format!("{key}={HIDDEN}"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `key=value` pairs (values may be quoted, with `\'` inside) with the `password` value
/// hidden.
fn without_password_pair(connection: &str) -> String {
    let mut out = String::with_capacity(connection.len());
    let mut rest = connection;
    while let Some(at) = rest.find("password") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after_key = &from["password".len()..];
        let trimmed = after_key.trim_start();
        let starts_a_key = before.is_empty() || before.ends_with(char::is_whitespace);
        let Some(value) = trimmed.strip_prefix('=').filter(|_| starts_a_key) else {
            out.push_str("password");
            rest = after_key;
            continue;
        };
        let value = value.trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|&(_, c)| {
                    let closes = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })
                .map_or(value.len(), |(i, _)| i + 2)
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        out.push_str("password=");
        out.push_str(HIDDEN);
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Whom to trust when the database is reached over TLS (rustls, with aws-lc-rs).
#[derive(Debug, Clone)]
pub enum DatabaseTls {
    /// The operating system's root certificates.
    SystemRoots,
    /// Only the CA certificates in this PEM file.
    CaFile(std::path::PathBuf),
    /// A rustls configuration of the application's own (client certificates, say).
    Config(Arc<rustls::ClientConfig>),
}

impl DatabaseTls {
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match self {
            Self::Config(config) => return Ok((**config).clone()),
            Self::SystemRoots => {
                let loaded = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(loaded.certs);
            }
            Self::CaFile(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("the CA file {}: {e}", path.display()))?;
                for cert in certs {
                    roots.add(cert).map_err(|e| e.to_string())?;
                }
            }
        }
        if roots.is_empty() {
            return Err("no CA certificate to trust".to_owned());
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

impl PostgresOptions {
    /// Options for `connection`, with the defaults.
    pub fn new(connection: impl Into<String>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "an unnamed host".to_owned());
        Self {
            connection: connection.into(),
            lease: Duration::from_secs(10),
            takeover: false,
            holder: format!(
                "pid {} on {host} ({:08x})",
                std::process::id(),
                fastrand::u32(..)
            ),
            outage_limit: Duration::from_secs(60),
            shared_client_ids: false,
            lease_clock: Arc::new(BootClock),
            tls: None,
        }
    }

    /// Sets [`PostgresOptions::lease`].
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets [`PostgresOptions::takeover`].
    pub fn takeover(mut self, takeover: bool) -> Self {
        self.takeover = takeover;
        self
    }

    /// Sets [`PostgresOptions::holder`].
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Sets [`PostgresOptions::shared_client_ids`].
    pub fn shared_client_ids(mut self, shared: bool) -> Self {
        self.shared_client_ids = shared;
        self
    }

    /// Sets [`PostgresOptions::lease_clock`].
    pub fn lease_clock(mut self, clock: Arc<dyn LeaseClock>) -> Self {
        self.lease_clock = clock;
        self
    }

    /// Sets [`PostgresOptions::tls`].
    pub fn tls(mut self, tls: DatabaseTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`PostgresOptions::outage_limit`].
    pub fn outage_limit(mut self, limit: Duration) -> Self {
        self.outage_limit = limit;
        self
    }
}

impl From<&str> for PostgresOptions {
    fn from(connection: &str) -> Self {
        Self::new(connection)
    }
}

impl From<String> for PostgresOptions {
    fn from(connection: String) -> Self {
        Self::new(connection)
    }
}

/// The shortest lease: renewals go out each third of it, and a round trip must fit.
pub const MIN_LEASE: Duration = Duration::from_millis(300);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password_of_the_connection() {
        for (connection, shown) in [
            (
                "postgres://gw:s3cr3t@db:5432/mooring",
                "postgres://gw:<hidden>@db:5432/mooring",
            ),
            (
                "postgresql://gw:s3cr3t@db?sslmode=disable&password=s3cr3t",
                "postgresql://gw:<hidden>@db?sslmode=disable&password=<hidden>",
            ),
            ("postgres://gw@db/m", "postgres://gw@db/m"),
            (
                "host=db user=gw password=s3cr3t dbname=m",
                "host=db user=gw password=<hidden> dbname=m",
            ),
            (
                "host=db password = 's3 cr\\'3t' dbname=m",
                "host=db password=<hidden> dbname=m",
            ),
            ("host=db user=password_user", "host=db user=password_user"),
        ] {
            assert_eq!(without_password(connection), shown, "{connection}");
            let options = PostgresOptions::new(connection);
            let printed = format!("{options:?}");
            assert!(!printed.contains("s3"), "{printed}");
            assert!(printed.contains("db"), "{printed}");
        }
    }
}
