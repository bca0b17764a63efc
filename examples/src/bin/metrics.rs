//! A client's metrics served for Prometheus: installs the Prometheus exporter on
//! `METRICS_ADDR` (default `127.0.0.1:9464`), publishes 20 QoS 1 messages, then serves
//! `http://METRICS_ADDR/metrics` until standard input closes or Ctrl-C.
//!
//! ```text
//! MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin metrics
//! curl -s http://127.0.0.1:9464/metrics | grep mooring_
//! ```
//! The names are listed in `mooring::client::metrics`; any exporter of the `metrics` facade
//! works the same way.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use mooring::client::metrics::{
    COMMIT_BATCH, COMMIT_BATCH_BUCKETS, COMMIT_DURATION, COMMIT_DURATION_BUCKETS,
    PUBLISH_ACK_DURATION, PUBLISH_ACK_DURATION_BUCKETS,
};
use mooring::store::MemoryStore;
use mooring::{Client, QoS};
use tokio::io::AsyncReadExt;

const COUNT: usize = 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let addr: SocketAddr = std::env::var("METRICS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9464".into())
        .parse()?;
    // The recorder first: the client takes its metric handles when it starts. Buckets make
    // the histograms Prometheus histograms (without them, summaries).
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full(COMMIT_DURATION.into()),
            COMMIT_DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(COMMIT_BATCH.into()), COMMIT_BATCH_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(PUBLISH_ACK_DURATION.into()),
            PUBLISH_ACK_DURATION_BUCKETS,
        )?
        .install()?;
    println!("metrics at http://{addr}/metrics");

    let (client, _messages) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url)
        .client_id("mooring-metrics")
        .store(MemoryStore::default())
        .connect()
        .await?;
    for i in 0..COUNT {
        let delivery = client
            .publish("metrics/example", i.to_string(), QoS::AtLeastOnce)
            .await?;
        delivery.await?;
    }
    println!("published {COUNT}");

    let (mut stdin, mut rest) = (tokio::io::stdin(), Vec::new());
    tokio::select! {
        _ = stdin.read_to_end(&mut rest) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    client.disconnect().await?;
    Ok(())
}
