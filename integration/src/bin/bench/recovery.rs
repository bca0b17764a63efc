//! The recovery rows: a store filled with no broker reachable by a process that then dies,
//! and a new process that starts on it and sends everything (`bench fill`, `bench recover`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use mooring::{Client, QoS};

use super::{Error, open, peak_rss_kib};

/// `bench fill STORE PATH COUNT`: stores COUNT QoS 1 publishes with no broker reachable, then
/// dies without a word (the process exits as a crash would leave it).
pub(super) async fn fill(store_kind: &str, path: &str, count: usize) -> Result<(), Error> {
    let store = open(store_kind, path)?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (client, _m) = Client::builder()
        .server(format!("mqtt://{dead}"))
        .client_id("bench-recovery")
        .cluster_scope("bench")
        .store_arc(store)
        .queue_limit(count + 1, mooring::QueuePolicy::Fail)
        .start()
        .await?;
    let mut accepting = FuturesOrdered::new();
    for i in 0..count {
        let client = client.clone();
        accepting.push_back(async move {
            client
                .publish("bench/recovery", format!("{i}"), QoS::AtLeastOnce)
                .await
        });
        if accepting.len() >= 256
            && let Some(r) = accepting.next().await
        {
            drop(r?);
        }
    }
    while let Some(r) = accepting.next().await {
        drop(r?);
    }
    std::process::exit(0);
}

/// `bench recover STORE PATH URL`: from process start to every stored message acknowledged.
pub(super) async fn recover(
    started: Instant,
    store_kind: &str,
    path: &str,
    url: &str,
) -> Result<(), Error> {
    // Both processes name the session by a cluster scope, so it follows them to this broker.
    let store = open(store_kind, path)?;
    let loaded = started.elapsed();
    let (client, _m) = Client::builder()
        .server(url)
        .client_id("bench-recovery")
        .cluster_scope("bench")
        .store_arc(store)
        .connect()
        .await?;
    loop {
        let s = client.stats();
        if s.outbound_in_flight == 0 && s.queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "RECOVERED {} {} {}",
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        peak_rss_kib()
    );
    client.disconnect().await?;
    Ok(())
}
