//! TLS settings for `mqtts://` and `wss://` (feature `tls`), through rustls.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::TlsConfig;
use super::tls_error::TlsError;

/// How to verify the server and, optionally, who the client is.
///
/// Server certificate and name verification are always on. Build from the system's trusted
/// roots ([`TlsOptions::system_roots`]), from a CA of your own ([`TlsOptions::with_ca_pem`]), or
/// from a complete rustls configuration ([`TlsOptions::from_rustls`]).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mooring::client::TlsOptions;
/// # let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()])?.cert.pem();
/// let tls = TlsOptions::with_ca_pem(ca.as_bytes())?.server_name("localhost");
/// # let _ = tls;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsOptions {
    roots: Arc<RootCertStore>,
    client_auth: Option<ClientAuth>,
    custom: Option<Arc<rustls::ClientConfig>>,
    server_name: Option<String>,
    alpn: Vec<String>,
    /// Where the settings came from, to write them back ([`TlsOptions::config`]); `None` for a
    /// rustls configuration given whole.
    described: Option<TlsConfig>,
    /// The rustls configuration, built at its first use and shared by the clones (every
    /// connection attempt uses a clone): its session cache then lets a reconnection resume
    /// the TLS session of the last connection instead of a full handshake.
    built: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
    /// The same for QUIC: TLS 1.3 and an ALPN protocol always (`mqtt` when none is set).
    #[cfg(feature = "quic")]
    built_quic: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
}

/// Who the client is: a key it holds, or a key a token holds for it.
#[derive(Clone)]
enum ClientAuth {
    Key(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>),
    #[cfg(feature = "pkcs11")]
    Token(Arc<rustls::sign::CertifiedKey>),
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TlsOptions")
            .field("roots", &self.roots.len())
            .field("client_certificate", &self.client_auth.is_some())
            .field("custom_config", &self.custom.is_some())
            .field("server_name", &self.server_name)
            .field("alpn", &self.alpn)
            .finish()
    }
}

/// The ALPN protocol offered over QUIC when the options name none: QUIC requires one, and
/// the brokers that serve MQTT over QUIC (EMQX, the `mqttv5` broker) accept `mqtt`.
#[cfg(feature = "quic")]
const QUIC_DEFAULT_ALPN: &[u8] = b"mqtt";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(
            "the PEM text holds no certificate".to_owned(),
        ));
    }
    Ok(certs)
}

/// The options of a server without TLS settings of its own: the system's roots, read once per
/// process (at the first connection that needs them) rather than at every attempt.
pub(crate) fn system_default() -> Result<TlsOptions, TlsError> {
    static SYSTEM: OnceLock<TlsOptions> = OnceLock::new();
    if let Some(options) = SYSTEM.get() {
        return Ok(options.clone());
    }
    // A failure is not kept: roots installed later are found by the next attempt.
    let options = TlsOptions::system_roots()?;
    Ok(SYSTEM.get_or_init(|| options).clone())
}

impl TlsOptions {
    /// Trust the operating system's root certificates (read from disk now).
    pub fn system_roots() -> Result<Self, TlsError> {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            let why = loaded
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(TlsError::NoSystemRoots(why));
        }
        Ok(Self::with_roots(roots, TlsConfig::default()))
    }

    fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(pem)? {
            roots.add(cert)?;
        }
        Ok(roots)
    }

    /// Trust only the CA certificates in this PEM text.
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let described = TlsConfig {
            ca_pem: Some(String::from_utf8_lossy(pem).into_owned()),
            ..TlsConfig::default()
        };
        Ok(Self::with_roots(Self::roots_from_pem(pem)?, described))
    }

    /// Trust only the CA certificates in this PEM file.
    pub fn with_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        let described = TlsConfig {
            ca_file: Some(path.to_path_buf()),
            ..TlsConfig::default()
        };
        Ok(Self::with_roots(
            Self::roots_from_pem(&read(path)?)?,
            described,
        ))
    }

    /// Use a complete rustls client configuration as it is (its own ALPN protocols included).
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            roots: Arc::new(RootCertStore::empty()),
            client_auth: None,
            custom: Some(config),
            server_name: None,
            alpn: Vec::new(),
            described: None,
            built: Arc::default(),
            #[cfg(feature = "quic")]
            built_quic: Arc::default(),
        }
    }

    /// The options a [`TlsConfig`] describes: CA and client certificate by file or PEM text,
    /// server name, ALPN protocols.
    pub fn from_config(config: &TlsConfig) -> Result<Self, TlsError> {
        let mut options = match (&config.ca_file, &config.ca_pem) {
            (Some(_), Some(_)) => {
                return Err(TlsError::Pem(
                    "give the CA as ca_file or as ca_pem, not both".to_owned(),
                ));
            }
            (Some(path), None) => Self::with_ca_file(path)?,
            (None, Some(pem)) => Self::with_ca_pem(pem.as_bytes())?,
            (None, None) => Self::system_roots()?,
        };
        if let Some(uri) = &config.client_key_pkcs11 {
            options = options.token_key_from_config(uri, config)?;
        } else {
            options = options.key_from_config(config)?;
        }
        if let Some(name) = &config.server_name {
            options = options.server_name(name.clone());
        }
        Ok(options.alpn_protocols(config.alpn.iter().cloned()))
    }

    #[cfg(feature = "pkcs11")]
    fn token_key_from_config(self, uri: &str, config: &TlsConfig) -> Result<Self, TlsError> {
        if config.client_key_file.is_some() || config.client_key_pem.is_some() {
            return Err(TlsError::Pem(
                "the client key is in a token (client_key_pkcs11): give no client_key_file or \
                 client_key_pem"
                    .to_owned(),
            ));
        }
        let key = super::pkcs11::Pkcs11Key::open(uri)?;
        match (&config.client_cert_file, &config.client_cert_pem) {
            (Some(_), Some(_)) => Err(TlsError::Pem(
                "give the client certificate as client_cert_file or as client_cert_pem, not both"
                    .to_owned(),
            )),
            (Some(path), None) => {
                let mut options = self.client_certificate_pkcs11(&key, Some(&read(path)?))?;
                if let Some(d) = &mut options.described {
                    d.client_cert_file = Some(path.clone());
                    d.client_cert_pem = None;
                }
                Ok(options)
            }
            (None, pem) => self.client_certificate_pkcs11(&key, pem.as_ref().map(String::as_bytes)),
        }
    }

    #[cfg(not(feature = "pkcs11"))]
    fn token_key_from_config(self, _uri: &str, _config: &TlsConfig) -> Result<Self, TlsError> {
        Err(TlsError::Pem(
            "client_key_pkcs11 needs Mooring built with the `pkcs11` feature".to_owned(),
        ))
    }

    fn key_from_config(mut self, config: &TlsConfig) -> Result<Self, TlsError> {
        match (
            &config.client_cert_file,
            &config.client_key_file,
            &config.client_cert_pem,
            &config.client_key_pem,
        ) {
            (None, None, None, None) => {}
            (Some(cert), Some(key), None, None) => {
                self = self.client_certificate_files(cert, key)?;
            }
            (None, None, Some(cert), Some(key)) => {
                self = self.client_certificate_pem(cert.as_bytes(), key.as_bytes())?;
            }
            _ => {
                return Err(TlsError::Pem(
                    "a client certificate needs its key, both as files (client_cert_file, \
                     client_key_file) or both as PEM text (client_cert_pem, client_key_pem)"
                        .to_owned(),
                ));
            }
        }
        Ok(self)
    }

    /// The settings as a [`TlsConfig`], to write to a file; `None` for a rustls configuration
    /// given whole ([`TlsOptions::from_rustls`]).
    pub fn config(&self) -> Option<&TlsConfig> {
        self.described.as_ref()
    }

    fn with_roots(roots: RootCertStore, described: TlsConfig) -> Self {
        Self {
            roots: Arc::new(roots),
            client_auth: None,
            custom: None,
            server_name: None,
            alpn: Vec::new(),
            described: Some(described),
            built: Arc::default(),
            #[cfg(feature = "quic")]
            built_quic: Arc::default(),
        }
    }

    fn set_client_auth(&mut self, chain: &[u8], key: &[u8]) -> Result<(), TlsError> {
        let chain = certificates(chain)?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| TlsError::Pem(format!("bad private key PEM: {e}")))?;
        self.client_auth = Some(ClientAuth::Key(chain, Arc::new(key)));
        self.forget_built();
        // Fail now rather than at the first connection.
        self.client_config()?;
        Ok(())
    }

    /// Present this client certificate chain and private key (PEM) to the server.
    pub fn client_certificate_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        self.set_client_auth(chain, key)?;
        if let Some(d) = &mut self.described {
            d.client_cert_pem = Some(String::from_utf8_lossy(chain).into_owned());
            d.client_key_pem = Some(String::from_utf8_lossy(key).into_owned());
            d.client_cert_file = None;
            d.client_key_file = None;
        }
        Ok(self)
    }

    /// Present the client certificate chain and private key in these PEM files.
    pub fn client_certificate_files(
        mut self,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let (chain, key) = (chain.as_ref(), key.as_ref());
        self.set_client_auth(&read(chain)?, &read(key)?)?;
        if let Some(d) = &mut self.described {
            d.client_cert_file = Some(chain.to_path_buf());
            d.client_key_file = Some(key.to_path_buf());
            d.client_cert_pem = None;
            d.client_key_pem = None;
        }
        Ok(self)
    }

    /// Present a certificate whose private key stays in a PKCS#11 token (feature `pkcs11`):
    /// the chain given as PEM text, or with `None` the certificate stored in the token beside
    /// the key. Fails if the certificate is not the key's.
    #[cfg(feature = "pkcs11")]
    pub fn client_certificate_pkcs11(
        mut self,
        key: &super::pkcs11::Pkcs11Key,
        chain_pem: Option<&[u8]>,
    ) -> Result<Self, TlsError> {
        let chain = match chain_pem {
            Some(pem) => certificates(pem)?,
            None => vec![key.certificate().cloned().ok_or_else(|| TlsError::Pkcs11 {
                key: key.uri(),
                why: "the token holds no certificate beside the key: give one".to_owned(),
            })?],
        };
        let certified = rustls::sign::CertifiedKey::new(chain, Arc::new(key.clone()));
        match certified.keys_match() {
            // A token that does not show the public key cannot be checked here.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                return Err(TlsError::Pkcs11 {
                    key: key.uri(),
                    why: format!("the certificate is not the key's: {e}"),
                });
            }
        }
        self.client_auth = Some(ClientAuth::Token(Arc::new(certified)));
        self.forget_built();
        if let Some(d) = &mut self.described {
            d.client_key_pkcs11 = Some(key.uri_as_given());
            d.client_cert_pem = chain_pem.map(|pem| String::from_utf8_lossy(pem).into_owned());
            d.client_cert_file = None;
            d.client_key_file = None;
            d.client_key_pem = None;
        }
        self.client_config()?;
        Ok(self)
    }

    /// Verify the server's certificate against this name instead of the address's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if let Some(d) = &mut self.described {
            d.server_name = Some(name.clone());
        }
        self.server_name = Some(name);
        self
    }

    /// Offer these ALPN protocol names, in order of preference (`"mqtt"` for a cloud broker
    /// that serves MQTT and HTTPS on port 443). Replaces any offered before; ignored with a
    /// rustls configuration given whole, which carries its own.
    pub fn alpn_protocols<S: Into<String>>(
        mut self,
        protocols: impl IntoIterator<Item = S>,
    ) -> Self {
        self.alpn = protocols.into_iter().map(Into::into).collect();
        self.forget_built();
        if let Some(d) = &mut self.described {
            d.alpn = self.alpn.clone();
        }
        self
    }

    /// The ALPN protocol names offered, in order (empty: none, or QUIC's default).
    pub fn alpn(&self) -> &[String] {
        &self.alpn
    }

    /// A setting changed: the configurations are built again at their next use.
    fn forget_built(&mut self) {
        self.built = Arc::default();
        #[cfg(feature = "quic")]
        {
            self.built_quic = Arc::default();
        }
    }

    /// The rustls configuration for QUIC, built once for these options and their clones:
    /// TLS 1.3 only, and `mqtt` offered by ALPN when no protocol is set (QUIC needs one).
    #[cfg(feature = "quic")]
    pub(crate) fn quic_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        if let Some(built) = self.built_quic.get() {
            return Ok(built.clone());
        }
        let mut config = match &self.custom {
            Some(custom) => (**custom).clone(),
            None => self.build_config(&[&rustls::version::TLS13])?,
        };
        if config.alpn_protocols.is_empty() {
            config.alpn_protocols = vec![QUIC_DEFAULT_ALPN.to_vec()];
        }
        Ok(self.built_quic.get_or_init(|| Arc::new(config)).clone())
    }

    pub(crate) fn name_for<'a>(&'a self, host: &'a str) -> &'a str {
        self.server_name.as_deref().unwrap_or(host)
    }

    /// The rustls configuration, built once for these options and their clones.
    pub(crate) fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        if let Some(custom) = &self.custom {
            return Ok(custom.clone());
        }
        if let Some(built) = self.built.get() {
            return Ok(built.clone());
        }
        let config = Arc::new(self.build_config(rustls::DEFAULT_VERSIONS)?);
        Ok(self.built.get_or_init(|| config).clone())
    }

    /// A rustls configuration of these options for these TLS versions.
    fn build_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<rustls::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_root_certificates(self.roots.clone());
        let mut config = self.with_client_auth(builder)?;
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Ok(config)
    }

    fn with_client_auth(
        &self,
        builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    ) -> Result<rustls::ClientConfig, TlsError> {
        Ok(match &self.client_auth {
            Some(ClientAuth::Key(chain, key)) => {
                builder.with_client_auth_cert(chain.clone(), key.clone_key())?
            }
            #[cfg(feature = "pkcs11")]
            Some(ClientAuth::Token(certified)) => builder.with_client_cert_resolver(Arc::new(
                rustls::sign::SingleCertAndKey::from(certified.clone()),
            )),
            None => builder.with_no_client_auth(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn clones_share_one_configuration_until_a_setting_changes() {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .unwrap()
            .cert
            .pem();
        let first = TlsOptions::with_ca_pem(ca.as_bytes()).unwrap();
        let clone = first.clone();
        let built = first.client_config().unwrap();
        assert!(Arc::ptr_eq(&built, &clone.client_config().unwrap()));
        let changed = clone.alpn_protocols(["mqtt"]);
        let rebuilt = changed.client_config().unwrap();
        assert!(!Arc::ptr_eq(&built, &rebuilt));
        assert_eq!(rebuilt.alpn_protocols, vec![b"mqtt".to_vec()]);
        assert!(Arc::ptr_eq(&built, &first.client_config().unwrap()));
    }
}
