//! `bench sessions N [PACE]`: a gateway holding one MQTT session per downstream device. N
//! clients in one process share one redb store and one mosquitto. A first process connects them
//! one after another (does a start cost more when the store holds more sessions?), measures the
//! memory of N idle connected clients, has every client publish one QoS 1 message at once
//! (are commits shared across clients?), and is killed with SIGKILL. A second process starts
//! all N again at once, at most PACE connection attempts per second across them (0: unpaced),
//! and times how long until every session is resumed and connected.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::mosquitto::{Mosquitto, MosquittoConfig};
use mooring::store::{RedbStore, SessionStore};
use mooring::{Client, ConnectPace, Messages, QoS};

use super::Error;

/// Client identifiers: `device-00042`.
fn device(i: usize) -> String {
    format!("device-{i:05}")
}

fn rss_kib() -> u64 {
    integration::proc_status_kib("self", "VmRSS")
}

fn builder(store: &Arc<RedbStore>, url: &str, i: usize) -> mooring::ClientBuilder {
    Client::builder()
        .server(url)
        .client_id(device(i))
        .store_arc(store.clone())
        .session_expiry(Duration::from_secs(24 * 3600))
}

/// Milliseconds per client over a slice of start times.
fn mean_ms(durations: &[Duration]) -> f64 {
    let total: f64 = durations.iter().map(Duration::as_secs_f64).sum();
    total * 1000.0 / durations.len().max(1) as f64
}

/// `bench sessions-first PATH URL N`: connect N clients one after another, measure, publish
/// once from each, print `READY` and wait to be killed.
pub(super) async fn first(path: &str, url: &str, count: usize) -> Result<(), Error> {
    let store = Arc::new(RedbStore::open(path)?);
    let before = rss_kib();
    let mut clients: Vec<(Client, Messages)> = Vec::with_capacity(count);
    let mut starts = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let t = Instant::now();
        clients.push(builder(&store, url, i).connect().await?);
        starts.push(t.elapsed());
    }
    let connect_s = started.elapsed().as_secs_f64();
    let tenth = (count / 10).max(1);
    println!("SESSIONS connect_s {connect_s}");
    let first_tenth = starts.get(..tenth).unwrap_or_default();
    let last_tenth = starts
        .get(count.saturating_sub(tenth)..)
        .unwrap_or_default();
    println!("SESSIONS first_tenth_ms {}", mean_ms(first_tenth));
    println!("SESSIONS last_tenth_ms {}", mean_ms(last_tenth));
    // Idle: let every task settle before reading the memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib().saturating_sub(before);
    println!(
        "SESSIONS idle_kib_per_client {}",
        idle as f64 / count as f64
    );

    let writes_before = store.writes();
    let published = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for (i, (client, _)) in clients.iter().enumerate() {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let delivery = client
                .publish(format!("devices/{i}/reading"), "21.5", QoS::AtLeastOnce)
                .await?;
            delivery.await?;
            Ok::<(), Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let publish_s = published.elapsed().as_secs_f64();
    let writes = store.writes().saturating_sub(writes_before);
    println!("SESSIONS publish_s {publish_s}");
    println!("SESSIONS store_writes {writes}");
    println!("READY");
    // The parent kills this process: a crash, with every session stored.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

/// `bench sessions-restart PATH URL N PACE`: start all N clients at once on the store a killed
/// process left, at most PACE connection attempts per second (0: unpaced).
pub(super) async fn restart(path: &str, url: &str, count: usize, pace: u32) -> Result<(), Error> {
    let started = Instant::now();
    let store = Arc::new(RedbStore::open(path)?);
    let stored = store.sessions().await?.len();
    if stored != count {
        return Err(format!("the store holds {stored} sessions, not {count}").into());
    }
    let pace = (pace > 0).then(|| ConnectPace::per_second(pace));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let mut b = builder(&store, url, i);
        if let Some(pace) = &pace {
            b = b.connect_pace(pace.clone());
        }
        tasks.push(tokio::spawn(
            async move { Ok::<_, Error>(b.connect().await?) },
        ));
    }
    let mut clients = Vec::with_capacity(count);
    for task in tasks {
        clients.push(task.await??);
    }
    println!("SESSIONS restart_s {}", started.elapsed().as_secs_f64());
    std::process::exit(0);
}

/// Runs `args` in a child and collects its `SESSIONS key value` lines until it exits or says
/// `READY`; a child that said `READY` is killed with SIGKILL.
fn phase(args: &[String]) -> Result<Vec<(String, f64)>, Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut rows = Vec::new();
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line == "READY" {
            ready = true;
            break;
        }
        if let Some(rest) = line.strip_prefix("SESSIONS ")
            && let Some((key, value)) = rest.split_once(' ')
        {
            rows.push((key.to_owned(), value.parse()?));
        }
    }
    if ready {
        child.kill()?;
        child.wait()?;
    } else {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("bench {args:?} failed: {status}").into());
        }
    }
    Ok(rows)
}

fn value(rows: &[(String, f64)], key: &str) -> Result<f64, Error> {
    rows.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("the child printed no {key}").into())
}

/// `bench sessions N [PACE]`.
pub(super) fn run(count: usize, pace: u32) -> Result<(), Error> {
    let broker = Mosquitto::with_config(&MosquittoConfig {
        quiet_log: true,
        ..MosquittoConfig::default()
    })?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sessions.redb");
    let path = path.to_string_lossy().into_owned();
    let url = broker.url();
    eprintln!("sessions: connecting {count} clients one after another");
    let first = phase(&[
        "sessions-first".to_owned(),
        path.clone(),
        url.clone(),
        count.to_string(),
    ])?;
    eprintln!("sessions: killed; starting all {count} again ({pace} connects/s, 0: unpaced)");
    let restart = phase(&[
        "sessions-restart".to_owned(),
        path,
        url,
        count.to_string(),
        pace.to_string(),
    ])?;
    let publish_s = value(&first, "publish_s")?;
    let writes = value(&first, "store_writes")?;
    let pace_text = if pace == 0 {
        "unpaced".to_owned()
    } else {
        format!("at most {pace} connects/s")
    };
    println!("\n{count} clients in one process, one redb store, one mosquitto\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| connect one after another, total | {:.2} s |",
        value(&first, "connect_s")?
    );
    println!(
        "| start + connect, first tenth of the clients | {:.2} ms per client |",
        value(&first, "first_tenth_ms")?
    );
    println!(
        "| start + connect, last tenth of the clients | {:.2} ms per client |",
        value(&first, "last_tenth_ms")?
    );
    println!(
        "| memory per idle connected client (store and tasks included) | {:.1} KiB |",
        value(&first, "idle_kib_per_client")?
    );
    println!(
        "| one QoS 1 publish from each client, all at once | {publish_s:.2} s, {:.0} acknowledged/s |",
        count as f64 / publish_s
    );
    println!(
        "| store writes for those publishes | {writes:.0} ({:.1} publishes per write) |",
        count as f64 / writes.max(1.0)
    );
    println!(
        "| restart after SIGKILL: all {count} resumed and connected, {pace_text} | {:.2} s |",
        value(&restart, "restart_s")?
    );
    Ok(())
}
