//! `bench quic [COUNT] [RUNS]`: MQTT over TCP and over QUIC on a link with a 20 ms round trip,
//! clean and with 1 % loss, against one broker that serves both (the `mqttv5` broker). A QoS 1
//! stream of COUNT 256-byte messages, at most 20 unacknowledged; the runs of each row are
//! interleaved; medians of rate and of publish-to-PUBACK latency.
//!
//! The link is `integration::netem`: the client runs in a network namespace whose packets
//! this process carries to the host through TUN devices, 10 ms late each way and 1 % of them
//! dropped, so TCP and QUIC meet the same loss on the same round trip, each recovering with
//! its own machinery (root, `ip`, `iptables` and `/dev/net/tun` needed).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use integration::netem::EmulatedLink;
use integration::quic_broker::QuicBroker;
use integration::udp_relay::PathShape;
use mooring::client::TlsOptions;
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

use super::Error;

const ONE_WAY: Duration = Duration::from_millis(10);
const LOSS: f64 = 0.01;
const WINDOW: usize = 20;
const PAYLOAD: usize = 256;

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Tcp,
    Quic,
}

struct Sample {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn stream(url: &str, ca: &str, count: usize) -> Result<Sample, Error> {
    let (client, _m) = Client::builder()
        .server(url)
        .client_id(format!("bench-quic-{}", std::process::id()))
        // The broker's certificate names localhost; the link reaches it by another address.
        .tls(TlsOptions::with_ca_file(ca)?.server_name("localhost"))
        .store(MemoryStore::default())
        .connect()
        .await?;
    let payload = bytes::Bytes::from(vec![0x5Au8; PAYLOAD]);
    let mut waiting = FuturesOrdered::new();
    let mut latencies = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        if waiting.len() >= WINDOW
            && let Some(done) = waiting.next().await
        {
            latencies.push(done?);
        }
        let t0 = Instant::now();
        let delivery = client
            .publish("bench/quic", payload.clone(), QoS::AtLeastOnce)
            .await?;
        waiting.push_back(async move { delivery.await.map(|_| t0.elapsed()) });
    }
    while let Some(done) = waiting.next().await {
        latencies.push(done?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    client.disconnect().await?;
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Sample {
        rate: count as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}

/// `bench quic-stream URL CA COUNT`, run inside the link's namespace: one stream, printed as
/// `SAMPLE rate p50_ms p99_ms`.
pub(super) async fn child(url: &str, ca: &str, count: usize) -> Result<(), Error> {
    let sample = stream(url, ca, count).await?;
    println!("SAMPLE {} {} {}", sample.rate, sample.p50_ms, sample.p99_ms);
    Ok(())
}

fn sample_in(link: &EmulatedLink, url: &str, ca: &str, count: usize) -> Result<Sample, Error> {
    let output = link
        .command(std::env::current_exe()?)
        .args(["quic-stream", url, ca, &count.to_string()])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("SAMPLE "))
        .ok_or_else(|| {
            format!(
                "no sample from {url}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
    let values: Vec<f64> = line.split(' ').map(str::parse).collect::<Result<_, _>>()?;
    match values[..] {
        [rate, p50_ms, p99_ms] => Ok(Sample {
            rate,
            p50_ms,
            p99_ms,
        }),
        _ => Err(format!("a malformed sample: {line}").into()),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub(super) async fn run(count: usize, runs: usize) -> Result<(), Error> {
    let broker = QuicBroker::start()?;
    let ca = broker.pki().ca.to_string_lossy().into_owned();
    let tcp_port = broker
        .url()
        .rsplit(':')
        .next()
        .ok_or("port")?
        .parse::<u16>()?;
    println!(
        "bench quic: {count} QoS 1 messages of {PAYLOAD} B, {WINDOW} unacknowledged at most, \
         {} ms round trip, {runs} interleaved runs per row (medians)",
        2 * ONE_WAY.as_millis()
    );
    println!("| path | loss | msg/s | p50 ms | p99 ms | QUIC ÷ TCP (msg/s) | QUIC ÷ TCP (p99) |");
    println!("|---|---|---|---|---|---|---|");
    for loss in [0.0, LOSS] {
        let link = EmulatedLink::start(PathShape {
            delay: ONE_WAY,
            loss,
        })?;
        let host = link.host_address();
        let tcp_url = format!("mqtt://{host}:{tcp_port}");
        let quic_url = format!("quic://{host}:{}", broker.quic_port());
        let mut samples: Vec<(Path, Sample)> = Vec::new();
        for _ in 0..runs {
            for path in [Path::Tcp, Path::Quic] {
                let url = if path == Path::Tcp {
                    &tcp_url
                } else {
                    &quic_url
                };
                let link = &link;
                let sample = tokio::task::block_in_place(|| sample_in(link, url, &ca, count))?;
                samples.push((path, sample));
            }
        }
        let of = |path: Path, f: fn(&Sample) -> f64| {
            median(
                samples
                    .iter()
                    .filter(|(p, _)| *p == path)
                    .map(|(_, s)| f(s))
                    .collect(),
            )
        };
        let rate = |s: &Sample| s.rate;
        let p50 = |s: &Sample| s.p50_ms;
        let p99 = |s: &Sample| s.p99_ms;
        let percent = format!("{:.0} %", loss * 100.0);
        println!(
            "| TCP | {percent} | {:.0} | {:.1} | {:.1} | | |",
            of(Path::Tcp, rate),
            of(Path::Tcp, p50),
            of(Path::Tcp, p99)
        );
        println!(
            "| QUIC | {percent} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} |",
            of(Path::Quic, rate),
            of(Path::Quic, p50),
            of(Path::Quic, p99),
            of(Path::Quic, rate) / of(Path::Tcp, rate),
            of(Path::Quic, p99) / of(Path::Tcp, p99)
        );
        println!(
            "(packets the link dropped at {percent}: {})",
            link.dropped()
        );
    }
    Ok(())
}
