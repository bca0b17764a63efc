//! Child process of the restart tests: `subscriber_child URL STORE [FILTER]`.
//!
//! Starts a client on a redb store at STORE (client id `restarted-subscriber`, persistent
//! session), subscribes to FILTER when one is given, and prints one line per event it sees:
//! `session lost resubscribed=N`, `session expired`, `connected present=P`, `subscribed FILTER`,
//! `message TOPIC PAYLOAD`. The parent kills it with SIGKILL; started again without FILTER it
//! must keep receiving. `EXPIRY_SECS` (default 3600) and `KEEP_ALIVE_SECS` (default 60) set
//! the Session Expiry Interval and keep alive.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use mooring::store::RedbStore;
use mooring::{Client, ClientEvent, QoS};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run(url: String, path: String, filter: Option<String>) -> Result<(), String> {
    let store =
        integration::open_when_free(|| RedbStore::open(&path)).map_err(|e| e.to_string())?;
    let secs = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(default), Duration::from_secs)
    };
    let mut builder = Client::builder()
        .server(url)
        .client_id("restarted-subscriber")
        .session_expiry(secs("EXPIRY_SECS", 3600))
        .keep_alive(secs("KEEP_ALIVE_SECS", 60))
        .store(store)
        .reconnect(integration::fast_backoff());
    let mut events = builder.events();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let ClientEvent::SessionExpired = event {
                say("session expired");
            }
            if let ClientEvent::SessionLost { resubscribed, .. } = event {
                say(&format!("session lost resubscribed={resubscribed}"));
            }
            if let ClientEvent::Connected {
                session_present, ..
            } = event
            {
                say(&format!("connected present={session_present}"));
            }
        }
    });
    let (client, mut messages) = builder.start().await.map_err(|e| e.to_string())?;
    if let Some(filter) = filter {
        client
            .subscribe(filter.clone(), QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        say(&format!("subscribed {filter}"));
    }
    while let Some(message) = messages.recv().await {
        say(&format!(
            "message {} {}",
            message.topic(),
            String::from_utf8_lossy(message.payload())
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: subscriber_child URL STORE [FILTER]");
        return ExitCode::from(2);
    };
    let filter = args.next();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(url, path, filter)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("subscriber_child: {e}");
            ExitCode::FAILURE
        }
    }
}
