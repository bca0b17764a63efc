//! TLS client keys that stay in a PKCS#11 token: SoftHSM2 from the distribution's packages,
//! keys generated inside it by OpenSC's `pkcs11-tool`, and a mosquitto that requires a client
//! certificate. The client runs in a child process (`token_client`) started with the token's
//! `SOFTHSM2_CONF`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::process::{Command, Output};

use integration::clients::{assert_each_once, client, receive_numbered};
use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::pki::Pki;
use integration::softhsm::{PIN, SoftToken};
use mooring::QoS;

fn strict_broker() -> Mosquitto {
    Mosquitto::with_config(&MosquittoConfig {
        tls: true,
        require_client_certificate: true,
        ..MosquittoConfig::default()
    })
    .unwrap()
}

fn token_client(token: &SoftToken, args: &[&str]) -> Output {
    let (name, value) = token.env();
    Command::new(env!("CARGO_BIN_EXE_token_client"))
        .env(name, value)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the child and returns its stdout; panics with its stderr if it failed.
fn succeed(token: &SoftToken, args: &[&str]) -> String {
    let output = token_client(token, args);
    assert!(
        output.status.success(),
        "token_client {args:?} failed: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// A token with a key of `key_type` labelled `device` (id 01), and its certificate from the
/// broker's CA: returns the certificate's PEM file.
fn token_with_key(
    label: &str,
    key_type: &str,
    pki: &Pki,
    cert_in_token: bool,
) -> (SoftToken, String) {
    let token = SoftToken::new(label).unwrap();
    let public = token.generate(key_type, "device", "01").unwrap();
    let (pem, der) = pki.certify("token-gateway", &public).unwrap();
    if cert_in_token {
        token.store_certificate(&der, "device", "01").unwrap();
    }
    let file = token.dir().join("device.pem");
    std::fs::write(&file, pem).unwrap();
    (token, file.to_string_lossy().into_owned())
}

async fn stream_through_the_token(
    broker: &Mosquitto,
    count: usize,
    args: Vec<String>,
    token: &SoftToken,
) {
    let (subscriber, mut messages) = client(&broker.url(), "token-reader")
        .connect()
        .await
        .unwrap();
    subscriber
        .subscribe("token/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    let (name, value) = token.env();
    let value = value.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_token_client"))
            .env(name, value)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("published {count}")));
    let mut seen = BTreeMap::new();
    receive_numbered(&mut messages, &mut seen, count).await;
    assert_each_once(&mut messages, &seen, count).await;
    subscriber.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_generated_in_the_token_authenticates_a_qos2_stream_to_a_broker_that_requires_a_certificate()
 {
    let broker = strict_broker();
    let pki = broker.pki().unwrap().clone();
    let (token, _) = token_with_key("gw-ec", "EC:prime256v1", &pki, true);
    let url = broker.tls_url().unwrap();
    let ca = pki.ca.to_string_lossy().into_owned();
    let uri = token.uri("device");
    // The certificate stored in the token beside the key.
    let args = ["publish", &url, &ca, &uri, "-", "200", "token"]
        .map(str::to_owned)
        .to_vec();
    stream_through_the_token(&broker, 200, args, &token).await;
    assert!(
        broker.log().contains("as token-gateway"),
        "the broker accepted the client"
    );

    // The broker does require a certificate: the same client without the token fails.
    let refused = client(&url, "no-token")
        .tls(mooring::client::TlsOptions::with_ca_file(&pki.ca).unwrap())
        .connect()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    // And a token key certified by another CA is refused by the broker.
    let other = Pki::generate(token.dir(), "other").unwrap();
    let (stranger, stranger_cert) = token_with_key("gw-other", "EC:prime256v1", &other, false);
    let uri = stranger.uri("device");
    let output = token_client(
        &stranger,
        &["publish", &url, &ca, &uri, &stranger_cert, "1", "token"],
    );
    assert!(!output.status.success(), "{}", text(&output.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_key_in_the_token_named_by_a_config_file_with_its_certificate_in_a_file() {
    let broker = strict_broker();
    let pki = broker.pki().unwrap().clone();
    let (token, cert) = token_with_key("gw-rsa", "rsa:2048", &pki, false);
    // The PIN from a file, as an operator would keep it.
    let pin = token.dir().join("pin");
    std::fs::write(&pin, format!("{PIN}\n")).unwrap();
    let uri = format!(
        "pkcs11:token=gw-rsa;object=device?module-path={}&pin-source=file:{}",
        token.module_path().display(),
        pin.display()
    );
    let config = token.dir().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "servers = [{:?}]\nclient_id = \"token-gateway\"\n\n[tls]\nca_file = {:?}\n\
             client_cert_file = {cert:?}\nclient_key_pkcs11 = {uri:?}\n\n[store]\nbackend = \"memory\"\n",
            broker.tls_url().unwrap(),
            pki.ca.to_string_lossy()
        ),
    )
    .unwrap();
    let args = ["config", &config.to_string_lossy(), "100", "token"]
        .map(str::to_owned)
        .to_vec();
    stream_through_the_token(&broker, 100, args, &token).await;
}

#[test]
fn every_scheme_the_token_signs_with_verifies_against_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "schemes").unwrap();
    for (key_type, schemes) in [
        ("EC:prime256v1", vec!["ECDSA_NISTP256_SHA256"]),
        ("EC:secp384r1", vec!["ECDSA_NISTP384_SHA384"]),
        (
            "rsa:2048",
            vec![
                "RSA_PSS_SHA256",
                "RSA_PSS_SHA384",
                "RSA_PSS_SHA512",
                "RSA_PKCS1_SHA256",
                "RSA_PKCS1_SHA384",
                "RSA_PKCS1_SHA512",
            ],
        ),
    ] {
        let (token, _) = token_with_key("gw-schemes", key_type, &pki, false);
        let spki = token.dir().join("device.pub.der");
        let out = succeed(
            &token,
            &["signatures", &token.uri("device"), &spki.to_string_lossy()],
        );
        assert!(out.contains("public key matches"), "{key_type}: {out}");
        for scheme in schemes {
            assert!(
                out.contains(&format!("{scheme} verified")),
                "{key_type}: {out}"
            );
        }
        assert!(!out.contains("FAILED"), "{key_type}: {out}");
    }
}

#[test]
fn the_private_key_cannot_be_read_out_of_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "extract").unwrap();
    let (token, _) = token_with_key("gw-extract", "EC:prime256v1", &pki, false);
    let module = token.module_path().to_string_lossy().into_owned();
    let out = succeed(&token, &["extract", &module, "gw-extract", "device"]);
    assert!(out.contains("sensitive=true"), "{out}");
    assert!(out.contains("extractable=false"), "{out}");
    assert!(
        !out.contains("value read"),
        "the token gave the key's value: {out}"
    );
    assert!(
        out.contains("wrap refused"),
        "the token wrapped the key out: {out}"
    );
    assert!(!out.contains("made extractable"), "{out}");
}

#[test]
fn a_token_that_logged_the_client_out_is_logged_in_again_for_the_next_handshake() {
    let broker = strict_broker();
    let pki = broker.pki().unwrap().clone();
    let (token, _) = token_with_key("gw-relogin", "EC:prime256v1", &pki, true);
    let url = broker.tls_url().unwrap();
    let out = succeed(
        &token,
        &[
            "relogin",
            &url,
            &pki.ca.to_string_lossy(),
            &token.uri("device"),
        ],
    );
    assert!(
        out.contains("logged out") && out.contains("connected again"),
        "{out}"
    );
}

#[test]
fn a_wrong_pin_or_a_missing_key_fails_with_an_error_naming_the_key_but_not_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "errors").unwrap();
    let (token, _) = token_with_key("gw-errors", "EC:prime256v1", &pki, false);
    let ca = pki.ca.to_string_lossy().into_owned();
    let module = token.module_path().display().to_string();
    for (uri, why) in [
        (
            format!("pkcs11:token=gw-errors;object=device?module-path={module}&pin-value=0000"),
            "cannot log in",
        ),
        (
            format!("pkcs11:token=gw-errors;object=absent?module-path={module}&pin-value={PIN}"),
            "no private key",
        ),
        (
            format!("pkcs11:token=elsewhere;object=device?module-path={module}&pin-value={PIN}"),
            "no token matches",
        ),
        (
            format!(
                "pkcs11:token=gw-errors;object=device?module-path=/nonexistent.so&pin-value={PIN}"
            ),
            "cannot load the module",
        ),
        // The certificate stored in the token was not given, and there is none.
        (
            format!("pkcs11:token=gw-errors;object=device?module-path={module}&pin-value={PIN}"),
            "holds no certificate",
        ),
    ] {
        let output = token_client(
            &token,
            &[
                "publish",
                "mqtts://127.0.0.1:1",
                &ca,
                &uri,
                "-",
                "1",
                "token",
            ],
        );
        let err = text(&output.stderr);
        assert!(!output.status.success(), "{uri}");
        assert!(err.contains("PKCS#11 key pkcs11:"), "{uri}: {err}");
        assert!(err.contains(why), "{uri}: {err}");
        assert!(
            !err.contains(PIN) && !err.contains("0000"),
            "the PIN printed: {err}"
        );
    }
    // A certificate that is not the key's is refused before any connection.
    let (_other_token, wrong) = token_with_key("gw-errors-2", "EC:prime256v1", &pki, false);
    let output = token_client(
        &token,
        &[
            "publish",
            "mqtts://127.0.0.1:1",
            &ca,
            &token.uri("device"),
            &wrong,
            "1",
            "token",
        ],
    );
    assert!(
        text(&output.stderr).contains("not the key's"),
        "{}",
        text(&output.stderr)
    );
}
