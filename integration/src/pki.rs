//! A throwaway PKI for TLS tests, made at test time with rcgen: a CA, a server certificate for
//! `localhost` and 127.0.0.1, and a client certificate, written as PEM files.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, Issuer, KeyPair,
    PublicKeyData, SanType,
};

/// Paths of the PEM files.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate (`localhost`, 127.0.0.1).
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA (common name `gateway-7`).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// The CA's key, to certify keys made elsewhere ([`Pki::certify`]).
    pub ca_key: PathBuf,
    /// The CA's common name.
    ca_name: String,
}

fn ca_params(name: &str) -> io::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(params)
}

fn other(e: rcgen::Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl Pki {
    /// Makes the CA and certificates and writes them into `dir`, named after `name`.
    pub fn generate(dir: &Path, name: &str) -> io::Result<Self> {
        let ca_name = format!("{name} test CA");
        let ca_key = KeyPair::generate().map_err(other)?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params(&ca_name)?, ca_key).map_err(other)?;
        let server_key = KeyPair::generate().map_err(other)?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned()]).map_err(other)?;
        server_params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let server = server_params.signed_by(&server_key, &ca).map_err(other)?;
        let client_key = KeyPair::generate().map_err(other)?;
        let mut client_params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "gateway-7");
        let client = client_params.signed_by(&client_key, &ca).map_err(other)?;
        let write = |file: &str, text: String| -> io::Result<PathBuf> {
            let path = dir.join(format!("{name}-{file}"));
            std::fs::write(&path, text)?;
            Ok(path)
        };
        Ok(Self {
            ca: write("ca.pem", ca.pem())?,
            server_cert: write("server.pem", server.pem())?,
            server_key: write("server.key", server_key.serialize_pem())?,
            client_cert: write("client.pem", client.pem())?,
            client_key: write("client.key", client_key.serialize_pem())?,
            ca_key: write("ca.key", ca_key_pem)?,
            ca_name,
        })
    }

    /// A client certificate for a public key whose private key is elsewhere (in a token),
    /// signed by this CA: (PEM, DER).
    pub fn certify(
        &self,
        common_name: &str,
        public_key: &impl PublicKeyData,
    ) -> io::Result<(String, Vec<u8>)> {
        let key = KeyPair::from_pem(&std::fs::read_to_string(&self.ca_key)?).map_err(other)?;
        let issuer = Issuer::new(ca_params(&self.ca_name)?, key);
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(public_key, &issuer).map_err(other)?;
        Ok((cert.pem(), cert.der().to_vec()))
    }
}
