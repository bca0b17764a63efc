//! Child process of the backlog proof: `backlog_child URL STORE TOPICS`.
//!
//! A gateway on a redb store at STORE (client id `backlog-gateway`) whose `reading/+` topics
//! keep only their newest unsent value and whose `alarm/#` topics are of priority class 1. With `PUBLISH=1` (the default) it publishes at QoS 1,
//! round-robin over TOPICS topics `reading/<i>`, the payload a counter, and after every 25
//! readings an alarm `alarm/<n>` (every value kept); each publish accepted (durable) prints
//! `accepted TOPIC N`. `RATE` (messages per second, unset: none) sets a drain rate. The
//! parent kills it with SIGKILL; `PUBLISH=0` only drains what the store holds.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use mooring::store::RedbStore;
use mooring::{Client, DrainRate, QoS};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run(url: String, path: String, topics: u32) -> Result<(), String> {
    let store =
        integration::open_when_free(|| RedbStore::open(&path)).map_err(|e| e.to_string())?;
    let mut builder = Client::builder()
        .server(url)
        .client_id("backlog-gateway")
        .session_expiry(std::time::Duration::from_secs(3600))
        .store(store)
        .latest_value_topics(["reading/+"])
        .priority(1, ["alarm/#"])
        .reconnect(integration::fast_backoff());
    let rate: u32 = integration::env_or("RATE", 0);
    if rate > 0 {
        builder = builder.drain_rate(DrainRate::messages(rate));
    }
    let (client, _messages) = builder.start().await.map_err(|e| e.to_string())?;
    if integration::env_or("PUBLISH", 1) == 0 {
        say("draining");
        std::future::pending::<()>().await;
    }
    // Numbers go on from a start the parent gives, so that values of runs never repeat.
    let mut n: u64 = integration::env_or("FIRST", 0);
    let mut alarms = n / 25;
    loop {
        let topic = format!("reading/{}", n % u64::from(topics.max(1)));
        let _delivery = client
            .publish(topic.clone(), n.to_string(), QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        say(&format!("accepted {topic} {n}"));
        n += 1;
        if n.is_multiple_of(25) {
            let topic = format!("alarm/{alarms}");
            let _delivery = client
                .publish(topic.clone(), alarms.to_string(), QoS::AtLeastOnce)
                .await
                .map_err(|e| e.to_string())?;
            say(&format!("accepted {topic} {alarms}"));
            alarms += 1;
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(path), Some(topics)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: backlog_child URL STORE TOPICS");
        return ExitCode::from(2);
    };
    let Ok(topics) = topics.parse() else {
        eprintln!("TOPICS must be a number");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(url, path, topics)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
