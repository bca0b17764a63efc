//! The two sides of the effectively-once proof (`tests/effectively_once.rs`), each killed with
//! SIGKILL at random moments and started again on its redb store, against a broker without
//! QoS 2.
//!
//! Usage: `effectively_once_child publish STORE URL DIR COUNT` and
//! `effectively_once_child subscribe STORE URL DIR HANDLE_MS`.
//!
//! - `publish`: publishes at QoS 1, with idempotency keys, `COUNT` numbered messages on
//!   `proof/eo/<n>`, payload `"<n> <incarnation>"`, and appends the payload to
//!   `DIR/accepted` (fsync'd) once `publish` returned, that is once the message is durable;
//!   each start continues after the last number accepted; `EO_PACE_MS` waits that long before
//!   each. Prints `PUBLISHED` when done.
//! - `subscribe`: subscribes to `proof/eo/#` at QoS 1 with manual ack and deduplication. For
//!   each message it appends `"<payload> <incarnation>"` to `DIR/handled` (fsync'd), takes
//!   `HANDLE_MS` to handle it, acks it, and once the ack returned appends the payload to
//!   `DIR/acked`. A message whose payload is in `acked` already is appended to
//!   `DIR/duplicated` too: the library handed over a message the application had finished.
//!   Every 100 ms it appends `"<incarnation> <Stats::duplicates_dropped>"` to `DIR/dropped`.
//!   Prints `SUBSCRIBED` once its subscription is granted.
//! - Both disconnect and exit when standard input closes. `MQTT_VERSION=3.1.1` speaks 3.1.1,
//!   with the keys in envelopes; `EO_WITHOUT_KEYS=1` turns keys (publisher) and
//!   deduplication (subscriber) off, to watch the proof fail.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use integration::{LedgerFile, complete_lines};
use mooring::idempotency::KeyCarrier;
use mooring::packet::ProtocolVersion;
use mooring::session::Deduplication;
use mooring::{Client, ClientBuilder, QoS};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("effectively_once_child: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [role, store, url, dir, number] = a.as_slice() else {
        return Err("usage: effectively_once_child publish|subscribe STORE URL DIR N".into());
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let incarnations = dir.join(format!("{role}-incarnation"));
    let incarnation = complete_lines(&incarnations).len();
    LedgerFile::open(&incarnations)?.append(&format!("start {incarnation}"))?;
    let protocol = integration::mqtt_version()?;
    let keyed = std::env::var_os("EO_WITHOUT_KEYS").is_none();
    let builder = Client::builder()
        .server(url.clone())
        .client_id(format!("proof-eo-{role}"))
        .protocol(protocol)
        .store_arc(integration::open_embedded_store("redb", Path::new(store))?)
        .session_expiry(Duration::from_secs(86_400))
        .reconnect(integration::fast_backoff());
    match role.as_str() {
        "publish" => publish(builder, keyed, protocol, &dir, incarnation, number.parse()?).await,
        "subscribe" => {
            let handle = Duration::from_millis(number.parse()?);
            subscribe(builder, keyed, protocol, &dir, incarnation, handle).await
        }
        other => Err(format!("unknown role {other}").into()),
    }
}

async fn publish(
    builder: ClientBuilder,
    keyed: bool,
    protocol: ProtocolVersion,
    dir: &Path,
    incarnation: usize,
    count: u64,
) -> Result<(), Error> {
    let builder = match (keyed, protocol) {
        (false, _) => builder,
        (true, ProtocolVersion::V311) => builder.key_publishes(KeyCarrier::Envelope),
        (true, _) => builder.key_publishes(KeyCarrier::UserProperty),
    };
    let (client, _messages) = builder.start().await?;
    let accepted_path = dir.join("accepted");
    let next = complete_lines(&accepted_path)
        .iter()
        .filter_map(|line| line.split(' ').next()?.parse::<u64>().ok())
        .max()
        .map_or(0, |n| n + 1);
    let accepted = LedgerFile::open(&accepted_path)?;
    let pace = std::env::var("EO_PACE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    for n in next..count {
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
        let payload = format!("{n} {incarnation}");
        // The delivery is not awaited: the store holds the message, the client sends it.
        let _delivery = client
            .publish(format!("proof/eo/{n}"), payload.clone(), QoS::AtLeastOnce)
            .await?;
        accepted.append(&payload)?;
    }
    println!("PUBLISHED");
    until_stdin_closes().await?;
    client.disconnect().await?;
    Ok(())
}

async fn subscribe(
    builder: ClientBuilder,
    keyed: bool,
    protocol: ProtocolVersion,
    dir: &Path,
    incarnation: usize,
    handle: Duration,
) -> Result<(), Error> {
    let builder = match keyed {
        true => builder.deduplicate(Deduplication {
            envelopes: protocol == ProtocolVersion::V311,
            ..Deduplication::default()
        }),
        false => builder,
    };
    let (client, mut messages) = builder.manual_ack(true).start().await?;
    let mut acked: HashSet<String> = complete_lines(&dir.join("acked")).into_iter().collect();
    let handled = LedgerFile::open(&dir.join("handled"))?;
    let acked_ledger = LedgerFile::open(&dir.join("acked"))?;
    let duplicated = LedgerFile::open(&dir.join("duplicated"))?;
    let application = tokio::spawn(async move {
        while let Some(message) = messages.recv().await {
            let payload = String::from_utf8_lossy(message.payload()).into_owned();
            handled.append(&format!("{payload} {incarnation}"))?;
            if acked.contains(&payload) {
                duplicated.append(&payload)?;
            }
            tokio::time::sleep(handle).await;
            message.ack().await?;
            acked_ledger.append(&payload)?;
            acked.insert(payload);
        }
        Ok::<(), Error>(())
    });
    let dropped = LedgerFile::open(&dir.join("dropped"))?;
    let stats = client.clone();
    let reporter = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        loop {
            ticks.tick().await;
            let count = stats.stats().duplicates_dropped;
            if dropped.append(&format!("{incarnation} {count}")).is_err() {
                break;
            }
        }
    });
    client.subscribe("proof/eo/#", QoS::AtLeastOnce).await?;
    println!("SUBSCRIBED");
    until_stdin_closes().await?;
    reporter.abort();
    client.disconnect().await?;
    application.abort();
    Ok(())
}

/// Until the test closes standard input.
async fn until_stdin_closes() -> Result<(), Error> {
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    Ok(())
}
