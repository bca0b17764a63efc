//! What opening a [`PostgresStore`](crate::PostgresStore) needs: the connection, the lease,
//! the holder's name, TLS.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{BootClock, LeaseClock};

/// How to reach the database, and how ownership behaves.
#[derive(Debug, Clone)]
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

/// Whom to trust when the database is reached over TLS (rustls, with ring).
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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
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
