//! TLS client keys that stay in a PKCS#11 token (feature `pkcs11`): an HSM, a TPM through
//! tpm2-pkcs11, a secure element, a smart card, or SoftHSM2.
//!
//! The key is found by an RFC 7512 URI and used only through `C_Sign`: the private key never
//! enters this process. The token signs a digest computed here (raw `CKM_ECDSA`,
//! `CKM_RSA_PKCS_PSS`, `CKM_RSA_PKCS`), the mechanisms every token with such keys offers.

mod der;
mod uri;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use aws_lc_rs::digest;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer, alg_id};
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use super::tls_error::TlsError;
use uri::Pkcs11Uri;

/// A private key in a PKCS#11 token, found by an RFC 7512 URI.
///
/// The URI names the module (`module-path`), the token (`token`, `serial`, `manufacturer`,
/// `model`, `slot-id`...), the key (`object` = its label, `id`) and the PIN (`pin-value`, or
/// `pin-source` = a file holding it). Give it to
/// [`TlsOptions::client_certificate_pkcs11`](crate::client::TlsOptions::client_certificate_pkcs11);
/// it also is a rustls [`SigningKey`] for a rustls configuration of your own. More, with TPMs
/// and secure elements: `docs/hardware-keys.md` in the repository.
///
/// Signing calls the token from the connection's task: a token that takes long to sign (a
/// TPM takes tens of milliseconds) holds that task as long, once per full TLS handshake
/// (resumed sessions sign nothing).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use mooring::client::{Pkcs11Key, TlsOptions};
/// let key = Pkcs11Key::open(
///     "pkcs11:token=gateway;object=device\
///      ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/mooring/token-pin",
/// )?;
/// // The certificate stored in the token beside the key:
/// let tls = TlsOptions::with_ca_file("ca.pem")?.client_certificate_pkcs11(&key, None)?;
/// # let _ = tls;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pkcs11Key {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URI as given, PIN included, to write a configuration back.
    given: String,
    uri: Pkcs11Uri,
    module: Pkcs11,
    slot: Slot,
    pin: Option<AuthPin>,
    kind: Kind,
    public_key: Option<SubjectPublicKeyInfoDer<'static>>,
    certificate: Option<CertificateDer<'static>>,
    /// The session the key is used through; reopened when the token lost it.
    open: Mutex<Option<Opened>>,
}

struct Opened {
    session: Session,
    key: ObjectHandle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    P256,
    P384,
    Rsa,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("uri", &self.inner.uri.redacted())
            .field("kind", &self.inner.kind)
            .finish()
    }
}

/// Loaded modules, one per file: `C_Initialize` is once per process.
fn module(path: &Path) -> Result<Pkcs11, String> {
    static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, module)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(module.clone());
    }
    let module =
        Pkcs11::new(path).map_err(|e| format!("cannot load the module {}: {e}", path.display()))?;
    match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another library of this process initialized it first: its state is shared.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(format!("cannot initialize the module: {e}")),
    }
    modules.push((path.to_path_buf(), module.clone()));
    Ok(module)
}

fn matches(wanted: &Option<String>, have: &str) -> bool {
    wanted.as_deref().is_none_or(|w| w == have.trim_end())
}

fn find_slot(module: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, String> {
    let library = module.get_library_info().map_err(|e| e.to_string())?;
    let version = library.library_version();
    let library_matches = matches(&uri.library_manufacturer, library.manufacturer_id())
        && matches(&uri.library_description, library.library_description())
        && uri.library_version.is_none_or(|(major, minor)| {
            major == version.major() && minor.is_none_or(|m| m == version.minor())
        });
    if !library_matches {
        return Err("the module is not the library the URI names".to_owned());
    }
    let mut found = Vec::new();
    for slot in module.get_slots_with_token().map_err(|e| e.to_string())? {
        if uri.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        let info = module.get_slot_info(slot).map_err(|e| e.to_string())?;
        let token = module.get_token_info(slot).map_err(|e| e.to_string())?;
        if matches(&uri.slot_description, info.slot_description())
            && matches(&uri.slot_manufacturer, info.manufacturer_id())
            && matches(&uri.token, token.label())
            && matches(&uri.manufacturer, token.manufacturer_id())
            && matches(&uri.model, token.model())
            && matches(&uri.serial, token.serial_number())
        {
            found.push(slot);
        }
    }
    match found[..] {
        [slot] => Ok(slot),
        [] => Err("no token matches".to_owned()),
        _ => Err(format!(
            "{} tokens match: name one by token, serial or slot-id",
            found.len()
        )),
    }
}

/// The attributes that select the key's objects (its certificate and public key share them).
fn selection(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
    let mut template = vec![Attribute::Class(class)];
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    template
}

fn attribute(session: &Session, object: ObjectHandle, kind: AttributeType) -> Option<Attribute> {
    session
        .get_attributes(object, &[kind])
        .ok()
        .and_then(|mut found| found.pop())
}

fn bytes(session: &Session, object: ObjectHandle, kind: AttributeType) -> Option<Vec<u8>> {
    match attribute(session, object, kind)? {
        Attribute::EcParams(v)
        | Attribute::EcPoint(v)
        | Attribute::Modulus(v)
        | Attribute::PublicExponent(v)
        | Attribute::Value(v) => Some(v),
        _ => None,
    }
}

/// Whether an error means the token lost the session (removed, reset, logged out), so that
/// opening it again may help.
fn session_lost(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

impl Inner {
    fn open_session(&self) -> Result<Opened, String> {
        let session = self
            .module
            .open_ro_session(self.slot)
            .map_err(|e| format!("cannot open a session: {e}"))?;
        let token = self
            .module
            .get_token_info(self.slot)
            .map_err(|e| e.to_string())?;
        if token.login_required() {
            if self.pin.is_none() && !token.protected_authentication_path() {
                return Err("the token needs a PIN: give pin-value or pin-source".to_owned());
            }
            match session.login(UserType::User, self.pin.as_ref()) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(format!("cannot log in to the token: {e}")),
            }
        }
        let keys = session
            .find_objects(&selection(&self.uri, ObjectClass::PRIVATE_KEY))
            .map_err(|e| e.to_string())?;
        match keys[..] {
            [key] => Ok(Opened { session, key }),
            [] => Err("the token holds no private key the URI names".to_owned()),
            _ => Err(format!(
                "{} private keys match: name one by object and id",
                keys.len()
            )),
        }
    }

    fn session(&self) -> MutexGuard<'_, Option<Opened>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signs with the key, opening the session again once if the token lost it.
    fn sign(&self, mechanism: &Mechanism<'_>, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut open = self.session();
        for attempt in 0..2 {
            if open.is_none() {
                *open = Some(self.open_session()?);
            }
            let Some(opened) = open.as_ref() else {
                continue;
            };
            match opened.session.sign(mechanism, opened.key, data) {
                Ok(signature) => return Ok(signature),
                Err(e) if attempt == 0 && session_lost(&e) => {
                    tracing::info!(key = %self.uri.redacted(), error = %e, "PKCS#11 session lost, opening it again");
                    *open = None;
                }
                Err(e) => return Err(format!("the token could not sign: {e}")),
            }
        }
        Err("the token could not sign".to_owned())
    }
}

impl Pkcs11Key {
    /// Finds the key the URI names, logs in to its token and keeps a session open to it.
    /// The certificate stored beside it (same id, or same label), if any, is read too.
    pub fn open(uri: &str) -> Result<Self, TlsError> {
        Self::open_given(uri, None)
    }

    /// As [`Pkcs11Key::open`], with the PIN given here rather than in the URI.
    pub fn open_with_pin(uri: &str, pin: &str) -> Result<Self, TlsError> {
        Self::open_given(uri, Some(AuthPin::from(pin)))
    }

    fn open_given(given: &str, pin: Option<AuthPin>) -> Result<Self, TlsError> {
        let uri = Pkcs11Uri::parse(given).map_err(|why| TlsError::Pkcs11 {
            key: "the PKCS#11 URI".to_owned(),
            why,
        })?;
        let key = uri.redacted();
        Self::load(given, uri, pin).map_err(|why| TlsError::Pkcs11 { key, why })
    }

    fn load(given: &str, uri: Pkcs11Uri, pin: Option<AuthPin>) -> Result<Self, String> {
        let path = uri
            .module_path
            .clone()
            .ok_or("the URI names no module: add ?module-path=/path/to/module.so")?;
        let pin = match (pin, &uri.pin_value, &uri.pin_source) {
            (Some(pin), _, _) => Some(pin),
            (None, Some(value), _) => Some(AuthPin::from(value.as_str())),
            (None, None, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read the PIN from {}: {e}", file.display()))?;
                Some(AuthPin::from(text.trim_end_matches(['\r', '\n'])))
            }
            (None, None, None) => None,
        };
        let module = module(&path)?;
        let slot = find_slot(&module, &uri)?;
        let mut inner = Inner {
            given: given.to_owned(),
            uri,
            module,
            slot,
            pin,
            kind: Kind::Rsa,
            public_key: None,
            certificate: None,
            open: Mutex::new(None),
        };
        let opened = inner.open_session()?;
        let (kind, public_key) = describe(&inner.uri, &opened)?;
        inner.kind = kind;
        inner.public_key = public_key;
        inner.certificate = certificate(&inner.uri, &opened.session);
        inner.open = Mutex::new(Some(opened));
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The certificate stored in the token beside the key, if there is one.
    pub fn certificate(&self) -> Option<&CertificateDer<'static>> {
        self.inner.certificate.as_ref()
    }

    /// The URI the key was opened by, without its PIN.
    pub fn uri(&self) -> String {
        self.inner.uri.redacted()
    }

    pub(crate) fn uri_as_given(&self) -> String {
        self.inner.given.clone()
    }
}

/// The key's type and, where the token shows it, its public key.
fn describe(
    uri: &Pkcs11Uri,
    opened: &Opened,
) -> Result<(Kind, Option<SubjectPublicKeyInfoDer<'static>>), String> {
    let session = &opened.session;
    let key_type = match attribute(session, opened.key, AttributeType::KeyType) {
        Some(Attribute::KeyType(kind)) => kind,
        _ => return Err("the key has no key type".to_owned()),
    };
    let public_object = session
        .find_objects(&selection(uri, ObjectClass::PUBLIC_KEY))
        .ok()
        .and_then(|found| match found[..] {
            [object] => Some(object),
            _ => None,
        });
    if key_type == KeyType::EC {
        let params = bytes(session, opened.key, AttributeType::EcParams)
            .ok_or("the EC key has no curve (CKA_EC_PARAMS)")?;
        let (kind, algorithm) = if params == der::P256_PARAMS {
            (Kind::P256, alg_id::ECDSA_P256)
        } else if params == der::P384_PARAMS {
            (Kind::P384, alg_id::ECDSA_P384)
        } else {
            return Err("the key's curve is neither P-256 nor P-384".to_owned());
        };
        let public_key = public_object
            .and_then(|object| bytes(session, object, AttributeType::EcPoint))
            .and_then(|point| {
                der::ec_point(&point).map(|p| rustls::sign::public_key_to_spki(&algorithm, p))
            });
        Ok((kind, public_key))
    } else if key_type == KeyType::RSA {
        let of = |object| {
            Some(der::rsa_public_key(
                &bytes(session, object, AttributeType::Modulus)?,
                &bytes(session, object, AttributeType::PublicExponent)?,
            ))
        };
        let public_key = of(opened.key)
            .or_else(|| public_object.and_then(of))
            .map(|key| rustls::sign::public_key_to_spki(&alg_id::RSA_ENCRYPTION, key));
        Ok((Kind::Rsa, public_key))
    } else {
        Err(format!(
            "keys of type {key_type} cannot sign in TLS here (EC or RSA)"
        ))
    }
}

fn certificate(uri: &Pkcs11Uri, session: &Session) -> Option<CertificateDer<'static>> {
    let mut template = selection(uri, ObjectClass::CERTIFICATE);
    template.push(Attribute::CertificateType(CertificateType::X_509));
    let found = session.find_objects(&template).ok()?;
    let [object] = found[..] else {
        return None;
    };
    bytes(session, object, AttributeType::Value).map(CertificateDer::from)
}

/// What one TLS signature scheme asks of the token.
#[derive(Clone, Copy, Debug)]
enum Method {
    Ecdsa,
    Pss,
    Pkcs1,
}

const RSA_SCHEMES: [SignatureScheme; 6] = [
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

fn method(scheme: SignatureScheme) -> Option<(Method, &'static digest::Algorithm)> {
    use SignatureScheme as S;
    Some(match scheme {
        S::ECDSA_NISTP256_SHA256 => (Method::Ecdsa, &digest::SHA256),
        S::ECDSA_NISTP384_SHA384 => (Method::Ecdsa, &digest::SHA384),
        S::RSA_PSS_SHA256 => (Method::Pss, &digest::SHA256),
        S::RSA_PSS_SHA384 => (Method::Pss, &digest::SHA384),
        S::RSA_PSS_SHA512 => (Method::Pss, &digest::SHA512),
        S::RSA_PKCS1_SHA256 => (Method::Pkcs1, &digest::SHA256),
        S::RSA_PKCS1_SHA384 => (Method::Pkcs1, &digest::SHA384),
        S::RSA_PKCS1_SHA512 => (Method::Pkcs1, &digest::SHA512),
        _ => return None,
    })
}

impl SigningKey for Pkcs11Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let ours: &[SignatureScheme] = match self.inner.kind {
            Kind::P256 => &[SignatureScheme::ECDSA_NISTP256_SHA256],
            Kind::P384 => &[SignatureScheme::ECDSA_NISTP384_SHA384],
            Kind::Rsa => &RSA_SCHEMES,
        };
        let scheme = *ours.iter().find(|s| offered.contains(s))?;
        Some(Box::new(TokenSigner {
            key: self.inner.clone(),
            scheme,
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        self.inner.public_key.clone()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.inner.kind {
            Kind::P256 | Kind::P384 => SignatureAlgorithm::ECDSA,
            Kind::Rsa => SignatureAlgorithm::RSA,
        }
    }
}

struct TokenSigner {
    key: Arc<Inner>,
    scheme: SignatureScheme,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl Signer for TokenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let failed = |why: String| {
            tracing::warn!(key = %self.key.uri.redacted(), %why, "PKCS#11 signature failed");
            rustls::Error::General(format!("PKCS#11 key {}: {why}", self.key.uri.redacted()))
        };
        let (method, algorithm) =
            method(self.scheme).ok_or_else(|| failed("unsupported scheme".to_owned()))?;
        let hashed = digest::digest(algorithm, message);
        let hashed = hashed.as_ref();
        match method {
            Method::Ecdsa => {
                let raw = self.key.sign(&Mechanism::Ecdsa, hashed).map_err(failed)?;
                der::ecdsa_signature(&raw).ok_or_else(|| {
                    failed("the token's ECDSA signature has an odd length".to_owned())
                })
            }
            Method::Pss => {
                let (hash, mgf) = match hashed.len() {
                    32 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
                    48 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
                    _ => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
                };
                let params = PkcsPssParams {
                    hash_alg: hash,
                    mgf,
                    // TLS fixes the salt at the digest's length (RFC 8446 §4.2.3).
                    s_len: (hashed.len() as u64).into(),
                };
                self.key
                    .sign(&Mechanism::RsaPkcsPss(params), hashed)
                    .map_err(failed)
            }
            Method::Pkcs1 => {
                let prefix = match hashed.len() {
                    32 => der::SHA256_DIGEST_INFO,
                    48 => der::SHA384_DIGEST_INFO,
                    _ => der::SHA512_DIGEST_INFO,
                };
                let mut info = prefix.to_vec();
                info.extend_from_slice(hashed);
                self.key.sign(&Mechanism::RsaPkcs, &info).map_err(failed)
            }
        }
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
