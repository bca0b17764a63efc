//! An application that handles messages with automatic ack, written the obvious way, for the
//! proof that exactly-once reaches the application (`tests/handling_proof.rs`): it is killed
//! with SIGKILL at random moments and started again on the same store.
//!
//! Usage: `handler_child STORE PATH URL DIR QOS HANDLE_MS`
//!
//! - Subscribes to `proof/handle/#` at `QOS` (1 or 2) with automatic ack, the default, and
//!   reads `while let Some(message) = messages.recv().await`, taking `HANDLE_MS` to handle
//!   each message.
//! - When `recv` returns a message, appends `<n> <incarnation>` to `DIR/received` (fsync'd):
//!   from then until the next `recv` returns, the application holds it. Each start appends a
//!   line to `DIR/incarnation`.
//! - Prints `SUBSCRIBED` once its subscription is granted; disconnects and exits when its
//!   standard input closes.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use integration::{LedgerFile, complete_lines};
use mooring::{Client, QoS};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    store: String,
    path: PathBuf,
    url: String,
    dir: PathBuf,
    qos: QoS,
    handle: Duration,
}

fn args() -> Result<Args, Error> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [store, path, url, dir, qos, handle] = a.as_slice() else {
        return Err("usage: handler_child STORE PATH URL DIR QOS HANDLE_MS".into());
    };
    Ok(Args {
        store: store.clone(),
        path: path.into(),
        url: url.clone(),
        dir: dir.into(),
        qos: match qos.as_str() {
            "1" => QoS::AtLeastOnce,
            "2" => QoS::ExactlyOnce,
            other => return Err(format!("QoS must be 1 or 2, not {other}").into()),
        },
        handle: Duration::from_millis(handle.parse()?),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("handler_child: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let a = args()?;
    std::fs::create_dir_all(&a.dir)?;
    let incarnation = complete_lines(&a.dir.join("incarnation")).len();
    LedgerFile::open(&a.dir.join("incarnation"))?.append(&format!("start {incarnation}"))?;
    let received = LedgerFile::open(&a.dir.join("received"))?;
    let (client, mut messages) = Client::builder()
        .server(a.url.clone())
        .client_id("proof-handler")
        .store_arc(integration::open_embedded_store(&a.store, &a.path)?)
        .session_expiry(Duration::from_secs(86_400))
        .reconnect(integration::fast_backoff())
        .start()
        .await?;
    let handler = tokio::spawn(async move {
        while let Some(message) = messages.recv().await {
            let n = String::from_utf8_lossy(message.payload()).into_owned();
            received.append(&format!("{n} {incarnation}"))?;
            tokio::time::sleep(a.handle).await;
        }
        Ok::<(), std::io::Error>(())
    });
    client.subscribe("proof/handle/#", a.qos).await?;
    println!("SUBSCRIBED");
    // Until the test closes standard input.
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    client.disconnect().await?;
    handler.abort();
    Ok(())
}
