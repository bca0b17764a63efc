//! Credentials that expire, on a broker with enhanced authentication: the `mqttv5` broker
//! checks JSON Web Tokens (Authentication Method `JWT`, HS256, no clock skew allowed) at
//! CONNECT and at every re-authentication. Each token lives three seconds; the client asks its
//! provider for a fresh one before the one in use expires and re-authenticates on the live
//! connection (AUTH 0x19) instead of reconnecting, while a QoS 2 stream runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use integration::clients::{assert_each_once, client, event, publish_numbered, receive_numbered};
use integration::quic_broker::QuicBroker;
use mooring::client::{ClientEvent, Credential, CredentialProvider, HookError, ServerUrl};
use mooring::session::{AuthError, Authenticator};
use mooring::{QoS, ReasonCode};

const SECRET: &str = "the broker's and the token service's shared secret";
const LIFETIME: Duration = Duration::from_secs(3);

/// An HS256 JSON Web Token for `sub`, expiring at `exp` (seconds since the epoch).
fn token(secret: &str, sub: &str, exp: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"{sub}","exp":{exp}}}"#));
    let signed = format!("{header}.{claims}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(hmac::sign(&key, signed.as_bytes()).as_ref());
    format!("{signed}.{signature}")
}

fn epoch_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Authentication Method `JWT`: the token is the Authentication Data, no challenge.
#[derive(Debug, Default)]
struct Jwt {
    token: Vec<u8>,
}

impl Authenticator for Jwt {
    fn method(&self) -> &str {
        "JWT"
    }

    fn start(&mut self) -> Result<Option<Bytes>, AuthError> {
        Ok(Some(Bytes::from(self.token.clone())))
    }

    fn challenge(&mut self, _data: Option<&Bytes>) -> Result<Option<Bytes>, AuthError> {
        Err(AuthError("a JWT exchange has no challenge".into()))
    }

    fn success(&mut self, _data: Option<&Bytes>) -> Result<(), AuthError> {
        Ok(())
    }

    fn credential(&mut self, _username: Option<&str>, password: Option<&[u8]>) {
        if let Some(token) = password {
            self.token = token.to_vec();
        }
    }
}

/// Mints a token for every request; signs with a wrong key once told to.
#[derive(Default)]
struct TokenService {
    issued: AtomicUsize,
    forge: AtomicBool,
    expiries: Mutex<Vec<SystemTime>>,
}

#[async_trait::async_trait]
impl CredentialProvider for TokenService {
    async fn credential(&self, _server: &ServerUrl) -> Result<Credential, HookError> {
        self.issued.fetch_add(1, Ordering::SeqCst);
        let expires = SystemTime::now() + LIFETIME;
        self.expiries.lock().unwrap().push(expires);
        let secret = if self.forge.load(Ordering::SeqCst) {
            "a key the broker does not know"
        } else {
            SECRET
        };
        let jwt = token(secret, "gateway-7", epoch_secs(expires));
        Ok(Credential::new("gateway-7", jwt).expiring_at(expires))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_stream_outlives_tokens_renewed_on_the_live_connection() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.key");
    std::fs::write(&key, SECRET).unwrap();
    let key = key.to_string_lossy().into_owned();
    let broker = QuicBroker::with_args(&[
        "--quic-delivery-strategy",
        "control-only",
        "--allow-anonymous",
        "false",
        "--auth-method",
        "jwt",
        "--jwt-algorithm",
        "hs256",
        "--jwt-key-file",
        &key,
        "--jwt-clock-skew",
        "0",
    ])
    .unwrap();
    // The reader holds a token that outlives the test.
    let lasting = token(SECRET, "reader", epoch_secs(SystemTime::now()) + 3600);
    let (reader, mut messages) = client(&broker.url(), "jwt-reader")
        .authenticator(move || {
            Box::new(Jwt {
                token: lasting.clone().into_bytes(),
            })
        })
        .connect()
        .await
        .unwrap();
    reader
        .subscribe("renewed/#", QoS::ExactlyOnce)
        .await
        .unwrap();

    let service = std::sync::Arc::new(TokenService::default());
    let mut builder = client(&broker.url(), "jwt-gateway")
        .authenticator(|| Box::new(Jwt::default()))
        .credential_provider(service.clone());
    let mut events = builder.events();
    let (gateway, _m) = builder.connect().await.unwrap();
    // About ten seconds of stream: the first token and at least three more.
    let count = 400;
    let stream = publish_numbered(&gateway, "renewed", count, Duration::from_millis(25));
    let mut seen = BTreeMap::new();
    receive_numbered(&mut messages, &mut seen, count).await;
    stream.await.unwrap();
    assert_each_once(&mut messages, &seen, count).await;
    let stats = gateway.stats();
    assert_eq!(
        stats.connections, 1,
        "the tokens were renewed in place: {stats:?}"
    );
    assert!(stats.reauthentications >= 3, "{stats:?}");
    assert!(service.issued.load(Ordering::SeqCst) >= 4);
    // Each token was replaced before it expired (a fifth of its life before).
    let expiries = service.expiries.lock().unwrap().clone();
    for pair in expiries.windows(2) {
        let overlap = pair[0].duration_since(pair[1] - LIFETIME);
        assert!(overlap.is_ok(), "a token was renewed only after it expired");
    }

    // The broker checks every re-authentication: a token it cannot verify ends the
    // connection with Not Authorized.
    service.forge.store(true, Ordering::SeqCst);
    let ended = event(&mut events, |e| {
        matches!(e, ClientEvent::ServerDisconnected { reason, .. } if *reason == ReasonCode::NotAuthorized)
            || matches!(e, ClientEvent::ConnectionLost { .. })
    })
    .await;
    assert!(
        matches!(ended, ClientEvent::ServerDisconnected { .. }),
        "{ended:?}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), gateway.disconnect()).await;
    reader.disconnect().await.unwrap();
}
