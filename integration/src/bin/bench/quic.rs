//! `bench quic [COUNT] [RUNS]`: MQTT over TCP and over QUIC on a path with a 20 ms round trip,
//! clean and with 1 % loss, against one broker that serves both (the `mqttv5` broker). A QoS 1
//! stream of COUNT 256-byte messages, at most 20 unacknowledged; the runs of each row are
//! interleaved; medians of rate and of publish-to-PUBACK latency.
//!
//! The paths: QUIC goes through the UDP relay, which delays each datagram 10 ms each way and
//! drops 1 % of them (QUIC's own recovery repairs that). TCP goes through the fault proxy,
//! which delivers each chunk 10 ms late each way; its 1 % loss is the kernel's, by an
//! iptables rule that drops 1 % of the packets between the client and the proxy, both ways
//! (root and iptables needed; without them the TCP rows say so). TCP recovers that loss on a
//! leg whose own round trip is a fraction of a millisecond, so its retransmissions cost it
//! less than they would on a real 20 ms path: where QUIC still wins, it wins by at least that.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use integration::proxy::{Fault, FaultProxy};
use integration::quic_broker::QuicBroker;
use integration::udp_relay::{PathShape, UdpRelay};
use mooring::client::TlsOptions;
use mooring::store::MemoryStore;
use mooring::{Client, QoS};

use super::Error;

const ONE_WAY: Duration = Duration::from_millis(10);
const LOSS: f64 = 0.01;
const WINDOW: usize = 20;
const PAYLOAD: usize = 256;

/// An iptables rule that drops a share of the packets to and from a local TCP port; removed
/// when dropped.
struct TcpLoss {
    rules: Vec<Vec<String>>,
}

impl TcpLoss {
    fn apply(port: u16, share: f64) -> Result<Self, String> {
        let mut applied = Self { rules: Vec::new() };
        for direction in ["--dport", "--sport"] {
            let rule: Vec<String> = [
                "INPUT",
                "-p",
                "tcp",
                direction,
                &port.to_string(),
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &share.to_string(),
                "-j",
                "DROP",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let status = Command::new("iptables")
                .arg("-I")
                .args(&rule)
                .status()
                .map_err(|e| format!("iptables: {e}"))?;
            if !status.success() {
                return Err(format!("iptables refused the rule ({status})"));
            }
            applied.rules.push(rule);
        }
        Ok(applied)
    }
}

impl Drop for TcpLoss {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(rule).status();
        }
    }
}

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

async fn stream(url: &str, ca: &std::path::Path, count: usize) -> Result<Sample, Error> {
    let (client, _m) = Client::builder()
        .server(url)
        .client_id(format!("bench-quic-{}", std::process::id()))
        .tls(TlsOptions::with_ca_file(ca)?)
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub(super) async fn run(count: usize, runs: usize) -> Result<(), Error> {
    let broker = QuicBroker::start()?;
    let ca = broker.pki().ca.clone();
    let tcp_port = broker
        .url()
        .rsplit(':')
        .next()
        .ok_or("port")?
        .parse::<u16>()?;
    let relay = UdpRelay::start(
        SocketAddr::from(([127, 0, 0, 1], broker.quic_port())),
        PathShape::default(),
    )?;
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], tcp_port)))?;
    proxy.set(Fault::Latency(ONE_WAY));
    // The broker's TLS listener is not used: TCP here is plain MQTT, as a gateway would
    // compare it with QUIC on the same broker.
    let tcp_url = format!("mqtt://127.0.0.1:{}", proxy.port());
    let quic_url = format!("quic://localhost:{}", relay.port());
    println!(
        "bench quic: {count} QoS 1 messages of {PAYLOAD} B, {WINDOW} unacknowledged at most, \
         {} ms round trip, {runs} interleaved runs per row (medians)",
        2 * ONE_WAY.as_millis()
    );
    println!("| path | loss | msg/s | p50 ms | p99 ms | QUIC ÷ TCP (msg/s) | QUIC ÷ TCP (p99) |");
    println!("|---|---|---|---|---|---|---|");
    for loss in [0.0, LOSS] {
        relay.set_shape(PathShape {
            delay: ONE_WAY,
            loss,
        });
        let tcp_loss = if loss > 0.0 {
            match TcpLoss::apply(proxy.port(), loss) {
                Ok(rule) => Some(rule),
                Err(why) => {
                    println!("(TCP loss not applied: {why})");
                    None
                }
            }
        } else {
            None
        };
        let mut samples: Vec<(Path, Sample)> = Vec::new();
        for _ in 0..runs {
            for path in [Path::Tcp, Path::Quic] {
                let url = if path == Path::Tcp {
                    &tcp_url
                } else {
                    &quic_url
                };
                samples.push((path, stream(url, &ca, count).await?));
            }
        }
        drop(tcp_loss);
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
    }
    println!("QUIC datagrams the relay dropped: {}", relay.dropped());
    Ok(())
}
