//! `bench tls [N]`: what a reconnection costs over TLS. One client connects to mosquitto's TLS
//! listener through the fault proxy, which cuts the connection N times; after each cut the
//! client connects again (TCP, the TLS handshake, CONNECT and CONNACK). Prints the time from a
//! cut to the next CONNACK, the client's and the broker's CPU per reconnection, and how many
//! of the handshakes resumed a TLS session (`Stats::tls_resumed`) rather than starting a new
//! one: a reconnect storm of full handshakes costs the broker most.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::proxy::FaultProxy;
use mooring::client::{ClientEvent, TlsOptions};
use mooring::store::MemoryStore;
use mooring::{Backoff, Client};

use super::Error;

pub(super) async fn run(count: usize) -> Result<(), Error> {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        tls: true,
        extra: vec!["set_tcp_nodelay true".into()],
        ..MosquittoConfig::default()
    })?;
    let tls_url = broker.tls_url().ok_or("mosquitto has no TLS listener")?;
    let tls_port: u16 = tls_url.rsplit(':').next().ok_or("port")?.parse()?;
    let pki = broker.pki().ok_or("mosquitto has no PKI")?;
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], tls_port)))?;
    let broker_pid = broker.pid().ok_or("mosquitto has no pid")?.to_string();
    let (client, _messages) = Client::builder()
        .server(format!("mqtts://localhost:{}", proxy.port()))
        .client_id("bench-tls")
        .tls(TlsOptions::with_ca_file(&pki.ca)?)
        .store(MemoryStore::default())
        // Every connection counts as stable: cuts in a row must not grow the backoff.
        .reconnect(
            Backoff::default()
                .with_initial(Duration::from_millis(1))
                .with_stable_after(Duration::ZERO),
        )
        .connect()
        .await?;
    let mut events = client.events();
    let client_cpu = integration::process_cpu_seconds("self");
    let broker_cpu = integration::process_cpu_seconds(&broker_pid);
    let before = client.stats();
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let cut = Instant::now();
        proxy.cut();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(ClientEvent::Connected { .. })) => break,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Err("no reconnection within 10 s".into()),
            }
        }
        times.push(cut.elapsed().as_secs_f64() * 1000.0);
    }
    let client_cpu = integration::process_cpu_seconds("self") - client_cpu;
    let broker_cpu = integration::process_cpu_seconds(&broker_pid) - broker_cpu;
    let after = client.stats();
    client.disconnect().await?;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let per = |s: f64| s * 1e6 / count.max(1) as f64;
    println!(
        "| reconnections | cut → CONNACK p50 ms | p99 ms | client CPU µs each | broker CPU µs each | TLS handshakes | resumed |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {count} | {:.2} | {:.2} | {:.0} | {:.0} | {} | {} |",
        at(0.5),
        at(0.99),
        per(client_cpu),
        per(broker_cpu),
        after.tls_handshakes - before.tls_handshakes,
        after.tls_resumed - before.tls_resumed,
    );
    Ok(())
}
