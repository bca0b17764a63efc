//! Why TLS settings could not be built: in every build, so that `ClientError`
//! has the same shape with and without the `tls` feature.

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// PEM text holds no usable certificate or key.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the certificates or key.
    #[cfg(feature = "tls")]
    #[error("TLS configuration refused")]
    Config(#[from] rustls::Error),
    /// A key in a PKCS#11 token could not be used.
    #[error("PKCS#11 key {key}: {why}")]
    Pkcs11 {
        /// The key's URI, without its PIN.
        key: String,
        /// Why.
        why: String,
    },
    /// The system has no trusted root certificates.
    #[error("no system root certificates could be loaded: {0}")]
    NoSystemRoots(String),
}
