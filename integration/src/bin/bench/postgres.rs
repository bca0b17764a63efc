//! `bench postgres [COUNT] [RUNS]`: the session store on PostgreSQL beside redb and memory, in
//! one run against one mosquitto (`max_inflight_messages 100`) and one local PostgreSQL:
//!
//! - the client, durable QoS 1, 64 B, 16 tasks: each store in turn, RUNS times (default 3),
//!   medians and spreads, the ratio to memory of medians;
//! - the store alone: messages per second committed one transaction per message against
//!   group commits of 16, 64 and 256 (what the client's group commit does);
//! - failover: from the active gateway's death (it can reach neither the broker nor the
//!   database any more) to the standby's first message at a subscriber, against the lease.

use std::time::{Duration, Instant};

use bytes::Bytes;
use integration::mosquitto::{Mosquitto, MosquittoConfig};
use integration::postgres::Postgres;
use integration::proxy::{Fault, FaultProxy};
use mooring::packet::QoS;
use mooring::store::{
    Batch, MemoryStore, PostgresOptions, PostgresStore, QueuedPublish, RedbStore, SessionKey,
    SessionStore, StoreOp,
};
use mooring::{Client, ClientBuilder};

use super::{Error, Measured, Row, WINDOW, measure, median, spread};

pub(crate) async fn run(count: usize, runs: usize) -> Result<(), Error> {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        quiet_log: true,
        ..super::broker_config(100)
    })?;
    let pg = Postgres::start()?;
    let dir = tempfile::tempdir()?;
    println!(
        "Machine: {}; mosquitto max_inflight_messages 100; PostgreSQL on 127.0.0.1 (fsync on, \
         synchronous_commit on)\n",
        super::machine()
    );
    let fsync = integration::fdatasync_rate(dir.path(), 2.0, false)?;
    println!("Raw fdatasync (4 KiB overwrite): {fsync:.0}/s\n");

    client_rows(&broker, &pg, count, runs)?;
    store_rows(&pg, dir.path()).await?;
    failover_rows(&broker, &pg, runs).await?;
    Ok(())
}

fn client_rows(broker: &Mosquitto, pg: &Postgres, count: usize, runs: usize) -> Result<(), Error> {
    let postgres = format!("postgres={}", pg.connection());
    let stores = [
        ("memory", "memory"),
        ("redb", "redb"),
        ("postgres", postgres.as_str()),
    ];
    let mut measured: Vec<Vec<Measured>> = stores.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        // Interleaved: each run measures every store once.
        for ((_, store), out) in stores.iter().zip(measured.iter_mut()) {
            let row = Row {
                qos: 1,
                payload: 64,
                tasks: 16,
                count,
            };
            out.push(measure("mooring", store, &broker.url(), row, WINDOW)?);
        }
    }
    let memory = measured.first().map_or(0.0, |runs| {
        median(&mut runs.iter().map(|m| m.rate).collect::<Vec<_>>())
    });
    println!("Client, durable QoS 1, 64 B, 16 tasks, {count} messages, {runs} runs interleaved:\n");
    println!("| store | msg/s (median) | spread | × memory | p50 µs | p99 µs | batch |");
    println!("|---|---|---|---|---|---|---|");
    for ((name, _), runs) in stores.iter().zip(&measured) {
        let rates: Vec<f64> = runs.iter().map(|m| m.rate).collect();
        let rate = median(&mut rates.clone());
        let p50 = median(&mut runs.iter().map(|m| m.p50_us).collect::<Vec<_>>());
        let p99 = median(&mut runs.iter().map(|m| m.p99_us).collect::<Vec<_>>());
        let batch = median(&mut runs.iter().map(|m| m.batch).collect::<Vec<_>>());
        println!(
            "| {name} | {rate:.0} | {} | {:.2} | {p50:.0} | {p99:.0} | {} |",
            spread(&rates),
            rate / memory,
            if *name == "memory" {
                "–".to_owned()
            } else {
                format!("{batch:.1}")
            }
        );
    }
    Ok(())
}

fn queued(n: u64) -> QueuedPublish {
    QueuedPublish {
        qos: QoS::AtLeastOnce,
        packet: Bytes::from(vec![0x5A; 64 + (n % 2) as usize]),
        expires_at_ms: None,
        accepted_at_ms: Some(n),
    }
}

/// Messages per second committed in batches of `batch`, each message one queued record.
async fn commit_rate(store: &dyn SessionStore, batch: usize, seconds: f64) -> Result<f64, Error> {
    let key = SessionKey::new("mqtt://bench:1883", format!("store-bench-{batch}"));
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        let mut ops = Batch::new();
        for _ in 0..batch {
            ops.push(StoreOp::PushQueue {
                seq,
                message: queued(seq),
            });
            seq += 1;
        }
        store.commit(&key, ops).await?;
    }
    let rate = seq as f64 / start.elapsed().as_secs_f64();
    store.clear(&key).await?;
    Ok(rate)
}

async fn store_rows(pg: &Postgres, dir: &std::path::Path) -> Result<(), Error> {
    let postgres = PostgresStore::open(pg.connection())?;
    let redb = RedbStore::open(dir.join("bench.redb"))?;
    println!("\nThe store alone: 64 B queued messages committed in batches, 3 s each:\n");
    println!("| messages per commit | postgres msg/s | postgres commits/s | redb msg/s |");
    println!("|---|---|---|---|");
    for batch in [1usize, 16, 64, 256] {
        let pg_rate = commit_rate(&postgres, batch, 3.0).await?;
        let redb_rate = commit_rate(&redb, batch, 3.0).await?;
        println!(
            "| {batch} | {pg_rate:.0} | {:.0} | {redb_rate:.0} |",
            pg_rate / batch as f64
        );
    }
    Ok(())
}

fn gateway(server: String, scope: &str, store: PostgresStore) -> ClientBuilder {
    Client::builder()
        .server(server)
        .client_id(format!("bench-failover-{scope}"))
        .cluster_scope(scope)
        .store(store)
        .reconnect(integration::fast_backoff())
}

/// From the active gateway's death to the standby's first message at a subscriber.
async fn failover_once(
    broker: &Mosquitto,
    pg: &Postgres,
    lease: Duration,
    scope: &str,
) -> Result<Duration, Error> {
    let to_broker = FaultProxy::start(([127, 0, 0, 1], broker.port()).into())?;
    let to_db = FaultProxy::start(pg.addr())?;
    let a_store = PostgresStore::open(
        PostgresOptions::new(format!(
            "host=127.0.0.1 port={} user=mooring dbname=postgres connect_timeout=2",
            to_db.port()
        ))
        .lease(lease)
        .outage_limit(Duration::from_secs(1)),
    )?;
    let (a, _a_messages) = gateway(to_broker.url(), scope, a_store).connect().await?;
    let topic = format!("bench/failover/{scope}");
    let (checker, mut inbox) = Client::builder()
        .server(broker.url())
        .client_id(format!("bench-failover-checker-{scope}"))
        .store(MemoryStore::default())
        .connect()
        .await?;
    checker.subscribe(topic.clone(), QoS::AtLeastOnce).await?;
    a.publish(topic.clone(), "a", QoS::AtLeastOnce)
        .await?
        .await?;
    let b_store = PostgresStore::open(PostgresOptions::new(pg.connection()).lease(lease))?;
    let standby = tokio::spawn(gateway(broker.url(), scope, b_store).connect());
    // Let the standby settle into waiting, and the owner renew a few times; then die at a
    // random moment of the renewal cycle (renewals come each third of the lease).
    tokio::time::sleep(lease + lease.mul_f64(fastrand::f64() / 3.0)).await;
    // The active gateway dies: everything it had is cut and it reaches nothing again.
    let died = Instant::now();
    for proxy in [&to_broker, &to_db] {
        proxy.set(Fault::Refuse);
        proxy.cut();
    }
    let (b, _b_messages) = standby.await??;
    drop(b.publish(topic.clone(), "b", QoS::AtLeastOnce).await?);
    let took = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(m) = inbox.recv().await {
            if m.payload().as_ref() == b"b" {
                return Some(died.elapsed());
            }
        }
        None
    })
    .await?
    .ok_or("the checker stopped")?;
    b.disconnect().await?;
    checker.disconnect().await?;
    drop(a);
    Ok(took)
}

async fn failover_rows(broker: &Mosquitto, pg: &Postgres, runs: usize) -> Result<(), Error> {
    println!(
        "\nFailover: the active gateway dies (cut from broker and database) → the standby's \
         first message at a subscriber, {runs} runs per lease:\n"
    );
    println!("| lease | median | min | max |\n|---|---|---|---|");
    for lease_ms in [1000u64, 2000, 5000, 10_000] {
        let mut took = Vec::new();
        for run in 0..runs {
            let scope = format!("lease{lease_ms}-{run}");
            let t = failover_once(broker, pg, Duration::from_millis(lease_ms), &scope).await?;
            took.push(t.as_secs_f64());
        }
        let min = took.iter().copied().fold(f64::INFINITY, f64::min);
        let max = took.iter().copied().fold(0.0, f64::max);
        println!(
            "| {:.0} s | {:.2} s | {min:.2} s | {max:.2} s |",
            lease_ms as f64 / 1000.0,
            median(&mut took)
        );
    }
    Ok(())
}
