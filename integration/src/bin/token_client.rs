//! Child process of the PKCS#11 tests, started with `SOFTHSM2_CONF` naming the test's token
//! (SoftHSM2 reads it when the module is initialized, and a test cannot set its own
//! environment). Modes:
//!
//! - `publish URL CA KEY_URI CERT|- COUNT PREFIX`: connects with the token's key (the
//!   certificate from the PEM file CERT, or with `-` the one in the token), publishes COUNT
//!   numbered QoS 2 messages under PREFIX, prints `published COUNT`.
//! - `config FILE COUNT PREFIX`: the same with a client configuration file.
//! - `relogin URL CA KEY_URI`: connects, logs the token out from another session of this
//!   process, connects again with a configuration that cannot resume (so the token must sign
//!   again), prints `connected again`.
//! - `signatures KEY_URI SPKI`: signs with every scheme the key offers and verifies each
//!   signature against the public key in the DER file SPKI; prints `SCHEME verified`.
//! - `extract MODULE TOKEN OBJECT`: tries to read the private key out of the token, prints
//!   what the token answered.
//!
//! Errors are printed to stderr with their causes, exit code 2.
#![forbid(unsafe_code)]
#![allow(clippy::indexing_slicing)]

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use integration::softhsm::{PIN, TokenPublicKey};
use mooring::client::{ClientConfig, Pkcs11Key, TlsOptions};
use mooring::store::MemoryStore;
use mooring::{Client, ClientBuilder, QoS};
use rustls::SignatureScheme;
use rustls::sign::SigningKey;

type Failure = Box<dyn Error>;

fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(&format!(": {e}"));
        cause = e.source();
    }
    text
}

fn tls(ca: &str, key: &Pkcs11Key, cert: &str) -> Result<TlsOptions, Failure> {
    let chain = match cert {
        "-" => None,
        file => Some(std::fs::read(file)?),
    };
    Ok(TlsOptions::with_ca_file(ca)?.client_certificate_pkcs11(key, chain.as_deref())?)
}

fn builder(url: &str, id: &str, tls: TlsOptions) -> ClientBuilder {
    Client::builder()
        .store(MemoryStore::default())
        .server(url)
        .client_id(id)
        .tls(tls)
        .reconnect(integration::fast_backoff())
}

async fn publish(builder: ClientBuilder, count: usize, prefix: &str) -> Result<(), Failure> {
    let (client, _messages) = builder.connect().await?;
    let publisher = integration::clients::publish_numbered(&client, prefix, count, Duration::ZERO);
    publisher.await?;
    let handshakes = client.stats().tls_handshakes;
    client.disconnect().await?;
    println!("published {count} handshakes={handshakes}");
    Ok(())
}

async fn relogin(url: &str, ca: &str, uri: &str) -> Result<(), Failure> {
    let key = Pkcs11Key::open(uri)?;
    let (first, _m) = builder(url, "token-first", tls(ca, &key, "-")?)
        .connect()
        .await?;
    first.disconnect().await?;
    // Login state belongs to the application, not the session: this logs Mooring's out too.
    let module = uri
        .split_once("module-path=")
        .and_then(|(_, rest)| rest.split('&').next())
        .ok_or("the URI names no module")?;
    let pkcs11 = Pkcs11::new(module)?;
    let _ = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = pkcs11.get_slots_with_token()?[0];
    let session = pkcs11.open_ro_session(slot)?;
    session.logout()?;
    println!("logged out");
    // A new configuration: no TLS session to resume, so the token signs again.
    let (second, _m) = builder(url, "token-second", tls(ca, &key, "-")?)
        .connect()
        .await?;
    second
        .publish("token/again", "1", QoS::ExactlyOnce)
        .await?
        .await?;
    second.disconnect().await?;
    println!("connected again");
    Ok(())
}

fn signatures(uri: &str, spki: &str) -> Result<(), Failure> {
    use aws_lc_rs::signature::{self, UnparsedPublicKey};
    let key = Pkcs11Key::open(uri)?;
    let public = TokenPublicKey::from_spki(&std::fs::read(spki)?)?;
    if key.public_key().as_deref() == Some(&public.spki[..]) {
        println!("public key matches");
    }
    let message = b"the handshake transcript a server asks the client to sign";
    let schemes = [
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &signature::ECDSA_P256_SHA256_ASN1 as &dyn signature::VerificationAlgorithm,
        ),
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &signature::ECDSA_P384_SHA384_ASN1,
        ),
        (
            SignatureScheme::RSA_PSS_SHA256,
            &signature::RSA_PSS_2048_8192_SHA256,
        ),
        (
            SignatureScheme::RSA_PSS_SHA384,
            &signature::RSA_PSS_2048_8192_SHA384,
        ),
        (
            SignatureScheme::RSA_PSS_SHA512,
            &signature::RSA_PSS_2048_8192_SHA512,
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
    ];
    for (scheme, algorithm) in schemes {
        let Some(signer) = key.choose_scheme(&[scheme]) else {
            continue;
        };
        let signed = signer.sign(message)?;
        let verdict =
            match UnparsedPublicKey::new(algorithm, public.bits()).verify(message, &signed) {
                Ok(()) => "verified",
                Err(_) => "FAILED",
            };
        println!("{scheme:?} {verdict}");
    }
    Ok(())
}

fn extract(module: &str, token: &str, object: &str) -> Result<(), Failure> {
    let pkcs11 = Pkcs11::new(module)?;
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = pkcs11
        .get_slots_with_token()?
        .into_iter()
        .find(|slot| {
            pkcs11
                .get_token_info(*slot)
                .is_ok_and(|info| info.label() == token)
        })
        .ok_or("no such token")?;
    let session = pkcs11.open_rw_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::from(PIN)))?;
    let key = session.find_objects(&[
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Label(object.as_bytes().to_vec()),
    ])?[0];
    for attribute in session.get_attributes(
        key,
        &[
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::Value,
        ],
    )? {
        match attribute {
            Attribute::Sensitive(on) => println!("sensitive={on}"),
            Attribute::Extractable(on) => println!("extractable={on}"),
            Attribute::Value(bytes) => println!("value read: {} bytes", bytes.len()),
            _ => {}
        }
    }
    let wrapping = session.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(false),
            Attribute::ValueLen(32.into()),
            Attribute::Wrap(true),
        ],
    )?;
    match session.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, key) {
        Ok(wrapped) => println!("wrapped: {} bytes", wrapped.len()),
        Err(e) => println!("wrap refused: {e}"),
    }
    match session.update_attributes(key, &[Attribute::Extractable(true)]) {
        Ok(()) => println!("made extractable"),
        Err(e) => println!("making it extractable refused: {e}"),
    }
    Ok(())
}

async fn run(args: &[String]) -> Result<(), Failure> {
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument");
    match arg(1)? {
        "publish" => {
            let key = Pkcs11Key::open(arg(4)?)?;
            let builder = builder(arg(2)?, "token-gateway", tls(arg(3)?, &key, arg(5)?)?);
            publish(builder, arg(6)?.parse()?, arg(7)?).await
        }
        "config" => {
            let config = ClientConfig::load(arg(2)?)?;
            let builder = ClientBuilder::from_config(&config)?.store_arc(config.open_store()?);
            publish(builder, arg(3)?.parse()?, arg(4)?).await
        }
        "relogin" => relogin(arg(2)?, arg(3)?, arg(4)?).await,
        "signatures" => signatures(arg(2)?, arg(3)?),
        "extract" => extract(arg(2)?, arg(3)?, arg(4)?),
        other => Err(format!("unknown mode {other:?}").into()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(e.as_ref()));
            ExitCode::from(2)
        }
    }
}
