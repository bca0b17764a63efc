//! Credentials that expire, against a real mosquitto that checks a password file: a QoS 2
//! stream runs while each credential lives three seconds. The client asks its provider for a
//! fresh one before every connection and reconnects, on its own, before the one in use
//! expires. The broker enforces the expiry: as each credential expires the test revokes it
//! (the file rewritten, mosquitto told to read it again with SIGHUP), and mosquitto then
//! closes a connection still using it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use integration::clients::{assert_each_once, client, publish_numbered, receive_numbered};
use integration::mosquitto::{Mosquitto, MosquittoConfig};
use mooring::QoS;
use mooring::client::{
    ClientEvent, Credential, CredentialProvider, HookError, ReconnectReason, ServerUrl,
};
use tokio::time::timeout;

const TOKENS: usize = 12;
const LIFETIME: Duration = Duration::from_secs(3);

/// Hands out `gw-0`, `gw-1`, ... each valid for [`LIFETIME`]; remembers when each expires.
#[derive(Default)]
struct Tokens {
    issued: Mutex<Vec<SystemTime>>,
}

#[async_trait::async_trait]
impl CredentialProvider for Tokens {
    async fn credential(&self, _server: &ServerUrl) -> Result<Credential, HookError> {
        let mut issued = self.issued.lock().unwrap();
        let n = issued.len();
        if n == TOKENS {
            return Err("no tokens left".into());
        }
        let expires = SystemTime::now() + LIFETIME;
        issued.push(expires);
        Ok(Credential::new(format!("gw-{n}"), format!("token-{n}")).expiring_at(expires))
    }
}

/// Revokes `user` at the broker: removed from the password file, which mosquitto reads again.
fn revoke(broker: &Mosquitto, user: &str) {
    let file = broker.dir().join("passwords");
    let status = Command::new("mosquitto_passwd")
        .arg("-D")
        .arg(&file)
        .arg(user)
        .status()
        .unwrap();
    assert!(status.success(), "mosquitto_passwd -D {user}");
    let pid = broker.pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_stream_outlives_credentials_that_expire_every_three_seconds() {
    let mut users: Vec<(String, String)> = (0..TOKENS)
        .map(|n| (format!("gw-{n}"), format!("token-{n}")))
        .collect();
    users.push(("reader".into(), "reader-pw".into()));
    let broker = Mosquitto::with_config(&MosquittoConfig {
        users,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let url = broker.url();
    let (reader, mut messages) = client(&url, "reader")
        .credentials("reader", "reader-pw")
        .connect()
        .await
        .unwrap();
    reader
        .subscribe("expiring/#", QoS::ExactlyOnce)
        .await
        .unwrap();

    let tokens = Arc::new(Tokens::default());
    let mut builder = client(&url, "expiring-publisher");
    let mut events = builder.events();
    let (publisher, _m) = builder
        .credential_provider(tokens.clone())
        .connect()
        .await
        .unwrap();

    // Publishes for about ten seconds: three credentials' lifetimes and more.
    const COUNT: usize = 500;
    let publishing = publish_numbered(&publisher, "expiring", COUNT, Duration::from_millis(20));

    // Revokes each credential as it expires; watches the publisher: planned reconnections
    // only, never a connection lost or an attempt refused.
    let mut planned = Vec::new();
    let mut revoked = 0;
    while !publishing.is_finished() {
        let expired = tokens
            .issued
            .lock()
            .unwrap()
            .iter()
            .filter(|at| **at <= SystemTime::now())
            .count();
        for n in revoked..expired {
            revoke(&broker, &format!("gw-{n}"));
        }
        revoked = revoked.max(expired);
        let Ok(Some(event)) = timeout(Duration::from_millis(20), events.recv()).await else {
            continue;
        };
        match event {
            ClientEvent::Reconnecting {
                reason: ReconnectReason::CredentialExpiring,
                ..
            } => planned.push(SystemTime::now()),
            ClientEvent::ConnectFailed { error, .. } => panic!("an attempt failed: {error}"),
            ClientEvent::ConnectionLost { reason, .. } => {
                panic!("the connection was lost: {reason}")
            }
            _ => {}
        }
    }
    assert!(revoked >= 3, "{revoked} credentials expired and revoked");
    publishing.await.unwrap();

    let issued = tokens.issued.lock().unwrap().clone();
    assert!(
        planned.len() >= 3,
        "{} planned reconnections in ten seconds",
        planned.len()
    );
    for (n, at) in planned.iter().enumerate() {
        assert!(
            *at < issued[n],
            "reconnection {n} came after its credential expired ({at:?} ≥ {:?})",
            issued[n]
        );
    }
    // Every message once.
    let mut seen = BTreeMap::new();
    receive_numbered(&mut messages, &mut seen, COUNT).await;
    assert_each_once(&mut messages, &seen, COUNT).await;
    publisher.disconnect().await.unwrap();
    reader.disconnect().await.unwrap();
}
