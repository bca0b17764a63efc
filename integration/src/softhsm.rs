//! A SoftHSM2 token of the test's own (its own configuration and token directory), keys made
//! inside it by OpenSC's `pkcs11-tool`, and the certificates for them.
//!
//! SoftHSM2 finds its configuration through `SOFTHSM2_CONF`, read when the module is
//! initialized: a process that uses the token must be started with [`SoftToken::env`] set
//! (tests cannot set their own environment without `unsafe`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{PublicKeyData, SignatureAlgorithm};

/// The user PIN of every test token.
pub const PIN: &str = "4711";

/// The SoftHSM2 module: the distribution's path, or `SOFTHSM2_MODULE`.
pub fn module() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SOFTHSM2_MODULE") {
        return Ok(path.into());
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.exists())
    .ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "libsofthsm2.so not found: run scripts/install-softhsm.sh",
        )
    })
}

/// A token in a directory of its own, deleted with it.
pub struct SoftToken {
    dir: tempfile::TempDir,
    conf: PathBuf,
    module: PathBuf,
    /// The token's label.
    pub label: String,
}

fn run(command: &mut Command) -> io::Result<Output> {
    let output = command.output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(output)
}

impl SoftToken {
    /// Initializes a token labelled `label` with the user PIN [`PIN`].
    pub fn new(label: &str) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens)?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        let token = Self {
            dir,
            conf,
            module: module()?,
            label: label.to_owned(),
        };
        run(Command::new(crate::program("softhsm2-util"))
            .env("SOFTHSM2_CONF", &token.conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                "0000",
            ])
            .args(["--pin", PIN]))?;
        Ok(token)
    }

    /// The environment a process using this token needs.
    pub fn env(&self) -> (&'static str, &Path) {
        ("SOFTHSM2_CONF", &self.conf)
    }

    /// A directory for the test's other files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The module's file.
    pub fn module_path(&self) -> &Path {
        &self.module
    }

    /// Runs OpenSC's `pkcs11-tool` on this token, logged in.
    pub fn pkcs11_tool(&self, args: &[&str]) -> io::Result<Output> {
        run(Command::new(crate::program("pkcs11-tool"))
            .env("SOFTHSM2_CONF", &self.conf)
            .arg("--module")
            .arg(&self.module)
            .args(["--token-label", &self.label, "--login", "--pin", PIN])
            .args(args))
    }

    /// Generates a key pair inside the token (`EC:prime256v1`, `EC:secp384r1`, `rsa:2048`),
    /// its private half sensitive and not extractable, and returns the public half (also
    /// written as a SubjectPublicKeyInfo to `OBJECT.pub.der` in [`SoftToken::dir`]).
    pub fn generate(&self, key_type: &str, object: &str, id: &str) -> io::Result<TokenPublicKey> {
        let generated = self.pkcs11_tool(&[
            "--keypairgen",
            "--key-type",
            key_type,
            "--label",
            object,
            "--id",
            id,
            "--usage-sign",
        ])?;
        let out = self.dir().join(format!("{object}.pub.der"));
        // An EC key's point as the tool printed it (OpenSC 0.23 cannot export a P-384 key).
        let printed = String::from_utf8_lossy(&generated.stdout).into_owned();
        let hex_after = |name: &str| {
            printed
                .lines()
                .find_map(|line| line.trim().strip_prefix(name))
                .map(|hex| decode_hex(hex.trim()))
        };
        if let (Some(point), Some(params)) = (hex_after("EC_POINT:"), hex_after("EC_PARAMS:")) {
            let (point, params) = (point?, params?);
            // The point comes as a DER OCTET STRING: 0x04, its length, then the point.
            let point = point.get(2..).unwrap_or_default().to_vec();
            let algorithm = if params.ends_with(P384_OID) {
                &rcgen::PKCS_ECDSA_P384_SHA384
            } else {
                &rcgen::PKCS_ECDSA_P256_SHA256
            };
            let mut key = TokenPublicKey {
                spki: Vec::new(),
                key: point,
                algorithm,
            };
            key.spki = key.subject_public_key_info();
            std::fs::write(&out, &key.spki)?;
            return Ok(key);
        }
        let out_arg = out.to_string_lossy().into_owned();
        self.pkcs11_tool(&[
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            object,
            "-o",
            &out_arg,
        ])?;
        TokenPublicKey::from_spki(&std::fs::read(&out)?)
    }

    /// Stores a certificate (DER) in the token beside the key `object`/`id`.
    pub fn store_certificate(&self, der: &[u8], object: &str, id: &str) -> io::Result<()> {
        let file = self.dir().join(format!("{object}.crt.der"));
        std::fs::write(&file, der)?;
        let file_arg = file.to_string_lossy().into_owned();
        self.pkcs11_tool(&[
            "--write-object",
            &file_arg,
            "--type",
            "cert",
            "--label",
            object,
            "--id",
            id,
        ])?;
        Ok(())
    }

    /// The RFC 7512 URI of the key `object`, with the module and the PIN.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object};type=private?module-path={}&pin-value={PIN}",
            self.label,
            self.module.display()
        )
    }
}

fn decode_hex(hex: &str) -> io::Result<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|at| {
            hex.get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| io::Error::other(format!("not hex: {hex}")))
        })
        .collect()
}

/// A public key read out of a token (its SubjectPublicKeyInfo), to certify it.
#[derive(Debug, Clone)]
pub struct TokenPublicKey {
    /// The whole SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    key: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

/// The header of a DER element at the start of `der`: (tag, header length, content length).
fn header(der: &[u8]) -> io::Result<(u8, usize, usize)> {
    let bad = || io::Error::other("malformed SubjectPublicKeyInfo");
    let tag = *der.first().ok_or_else(bad)?;
    let first = *der.get(1).ok_or_else(bad)?;
    if first < 0x80 {
        return Ok((tag, 2, usize::from(first)));
    }
    let count = usize::from(first & 0x7f);
    let bytes = der.get(2..2 + count).ok_or_else(bad)?;
    let len = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
    Ok((tag, 2 + count, len))
}

const EC_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P384_OID: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

impl TokenPublicKey {
    /// The key itself: the uncompressed point of an EC key, the `RSAPublicKey` of an RSA key.
    pub fn bits(&self) -> &[u8] {
        &self.key
    }

    /// Takes the key's bits and algorithm out of a SubjectPublicKeyInfo.
    pub fn from_spki(spki: &[u8]) -> io::Result<Self> {
        let bad = || io::Error::other("malformed SubjectPublicKeyInfo");
        let (_, outer, _) = header(spki)?;
        let rest = spki.get(outer..).ok_or_else(bad)?;
        let (_, alg_header, alg_len) = header(rest)?;
        let algorithm_id = rest.get(..alg_header + alg_len).ok_or_else(bad)?;
        let bits = rest.get(alg_header + alg_len..).ok_or_else(bad)?;
        let (tag, bits_header, _) = header(bits)?;
        if tag != 0x03 {
            return Err(bad());
        }
        // Skip the BIT STRING's count of unused bits.
        let key = bits.get(bits_header + 1..).ok_or_else(bad)?.to_vec();
        let contains = |oid: &[u8]| algorithm_id.windows(oid.len()).any(|w| w == oid);
        let algorithm = if contains(EC_OID) && contains(P384_OID) {
            &rcgen::PKCS_ECDSA_P384_SHA384
        } else if contains(EC_OID) {
            &rcgen::PKCS_ECDSA_P256_SHA256
        } else {
            &rcgen::PKCS_RSA_SHA256
        };
        Ok(Self {
            spki: spki.to_vec(),
            key,
            algorithm,
        })
    }
}

impl PublicKeyData for TokenPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}
