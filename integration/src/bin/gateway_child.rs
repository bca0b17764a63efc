//! The gateway of the crash-safety proof (`tests/crash_proof.rs`), killed with SIGKILL at random
//! moments and started again on the same store.
//!
//! Usage: `gateway_child STORE PATH URL DIR QOS TASKS PER_TASK PACE_MS RECEIVE_MAXIMUM`
//!
//! - Publishes `PER_TASK` numbered messages from each of `TASKS` tasks on `proof/out/<task>`,
//!   payload `"<task> <n> <incarnation>"`, and appends that line to `DIR/accepted` (fsync'd)
//!   once `publish` returned, that is once the message is durable. Each start continues after
//!   the last accepted number of each task.
//! - Consumes `proof/in/<n>` with manual ack (`GATEWAY_AUTO_ACK=1`: automatic, a message acked
//!   when the next is asked for): a number not yet in `DIR/consumed` is appended there
//!   (fsync'd) before the ack; after the ack returned (automatic: once the next message came,
//!   which at QoS 2 waits for that ack to be durable) it goes to `DIR/acked`. A delivery of a
//!   number already in `acked` is appended to `DIR/redelivered` (at QoS 2 the client must never
//!   do that). Every delivery is traced to `DIR/deliveries` (`<n> delivered m<id> dup=<dup> run
//!   <incarnation> at <ms>`), and each start to `DIR/incarnation` (`start <ms>`).
//! - Prints `SUBSCRIBED` once its subscription is granted and `PUBLISHED` once every task is
//!   done; disconnects cleanly and exits when its standard input closes.
//! - `MQTT_VERSION=3.1.1` makes it speak MQTT 3.1.1 (default 5), with `RECEIVE_MAXIMUM` as its
//!   in-flight window too (a 3.1.1 broker announces none).
//! - `QUEUE_WINDOW=N` holds at most N queued messages in memory (the rest are read back from
//!   the store as the queue drains).
//! - `GATEWAY_PROXY_FROM_ENV=1` reaches the broker through the proxy the environment names
//!   (`all_proxy`, ...: `ClientBuilder::proxy_from_env`).
//! - `GATEWAY_CA_FILE=PEM` trusts that CA for the broker's certificate (`mqtts://`,
//!   `quic://`); with `GATEWAY_PKCS11_URI` its client key is in a PKCS#11 token (and the
//!   certificate beside it).
//! - `STORE` `postgres` takes `PATH` as the connection string and `GATEWAY_LEASE_MS` as the
//!   lease (the failover proof, `tests/failover_proof/`): the gateway waits as a standby
//!   until it owns the session, then prints `ACTIVE` and reads the ledgers; once another
//!   process takes the session over it prints `FENCED` and exits with status 3.
//!   `GATEWAY_CLUSTER=<scope>` names the session by a cluster scope instead of the URL.
//!   The lease is measured on the system's boot clock plus the steps asked for on standard
//!   input: a line `STEP <ms>` moves that clock forward (as a host woken from suspend sees
//!   it) and the gateway answers `STEPPED`.
//! - `GATEWAY_KEEP_ALIVE_MS` (default 5000) is its keep alive.
//! - `GATEWAY_CLIENT_ID` (default `proof-gateway`) is its client identifier, and
//!   `GATEWAY_TOPICS` (default `proof`) the first level of its topics (`<it>/out/<task>`,
//!   `<it>/in/#`): several pairs of gateways share one broker and one database.
//! - For the soak (`src/bin/soak.rs`): `QOS` may be `mixed` (even tasks publish at QoS 1, odd
//!   ones at QoS 2; it consumes at QoS 2); `GATEWAY_UNTIL=<ms since the UNIX epoch>` ends
//!   every task's publishing then, whatever `PER_TASK` says; `GATEWAY_STATS=1` prints
//!   `STATS <queued> <in flight>` every second.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use integration::{LedgerFile, complete_lines};
use mooring::packet::ProtocolVersion;
use mooring::store::{BootClock, LeaseClock, PostgresOptions, PostgresStore, SessionStore};
use mooring::{Client, Messages, QoS};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    store: String,
    path: PathBuf,
    url: String,
    dir: PathBuf,
    /// The QoS of each task's publishes, by task parity (even, odd), and of consuming.
    qos: (QoS, QoS),
    consume_qos: QoS,
    tasks: u32,
    per_task: u64,
    pace: Duration,
    receive_maximum: u16,
}

fn args() -> Result<Args, Error> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [
        store,
        path,
        url,
        dir,
        qos,
        tasks,
        per_task,
        pace,
        receive_maximum,
    ] = a.as_slice()
    else {
        return Err(
            "usage: gateway_child STORE PATH URL DIR QOS TASKS PER_TASK PACE_MS RECEIVE_MAXIMUM"
                .into(),
        );
    };
    Ok(Args {
        store: store.clone(),
        path: path.into(),
        url: url.clone(),
        dir: dir.into(),
        qos: match qos.as_str() {
            "1" => (QoS::AtLeastOnce, QoS::AtLeastOnce),
            "2" => (QoS::ExactlyOnce, QoS::ExactlyOnce),
            "mixed" => (QoS::AtLeastOnce, QoS::ExactlyOnce),
            other => return Err(format!("QoS must be 1, 2 or mixed, not {other}").into()),
        },
        consume_qos: match qos.as_str() {
            "1" => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        },
        tasks: tasks.parse()?,
        per_task: per_task.parse()?,
        pace: Duration::from_millis(pace.parse()?),
        receive_maximum: receive_maximum.parse()?,
    })
}

/// The boot clock plus the steps the test asked for on standard input.
#[derive(Debug, Default)]
struct SteppedClock {
    stepped_ms: AtomicU64,
}

impl LeaseClock for SteppedClock {
    fn elapsed(&self) -> Duration {
        BootClock.elapsed() + Duration::from_millis(self.stepped_ms.load(Ordering::SeqCst))
    }
}

/// Reads standard input on a thread of its own: `STEP <ms>` lines step `clock`; the returned
/// receiver completes when the input closes.
fn read_commands(clock: Arc<SteppedClock>) -> tokio::sync::oneshot::Receiver<()> {
    let (closed, on_close) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(ms) = line.trim().strip_prefix("STEP ")
                && let Ok(ms) = ms.parse::<u64>()
            {
                clock.stepped_ms.fetch_add(ms, Ordering::SeqCst);
                println!("STEPPED");
            }
            line.clear();
        }
        let _ = closed.send(());
    });
    on_close
}

fn open_store(
    kind: &str,
    path: &Path,
    clock: Arc<SteppedClock>,
) -> Result<Arc<dyn SessionStore>, Error> {
    Ok(match kind {
        "postgres" => {
            let lease: u64 = std::env::var("GATEWAY_LEASE_MS")
                .ok()
                .map_or(Ok(10_000), |v| v.parse())?;
            let connection = path.to_str().ok_or("the connection string is not UTF-8")?;
            Arc::new(PostgresStore::open(
                PostgresOptions::new(connection)
                    .lease(Duration::from_millis(lease))
                    .lease_clock(clock),
            )?)
        }
        embedded => integration::open_embedded_store(embedded, path)?,
    })
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gateway_child: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A publish that failed because the session was taken over: the event watcher
            // exits with status 3 in a moment (the runtime's workers run on meanwhile).
            std::thread::sleep(Duration::from_secs(1));
            eprintln!("gateway_child: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let a = args()?;
    std::fs::create_dir_all(&a.dir)?;
    let clock = Arc::new(SteppedClock::default());
    let input_closed = read_commands(clock.clone());
    let store = open_store(&a.store, &a.path, clock)?;
    let client_id = env_or_default("GATEWAY_CLIENT_ID", "proof-gateway");
    let topics = env_or_default("GATEWAY_TOPICS", "proof");
    let mut builder = Client::builder();
    if integration::mqtt_version()? == ProtocolVersion::V311 {
        builder = builder
            .protocol(ProtocolVersion::V311)
            .in_flight_maximum(a.receive_maximum);
    }
    // Gateways that reach the broker by different addresses (each through a proxy of its
    // own) share one session by naming one cluster scope.
    if let Some(scope) = std::env::var("GATEWAY_CLUSTER")
        .ok()
        .filter(|v| !v.is_empty())
    {
        builder = builder.cluster_scope(scope);
    }
    if let Some(window) = std::env::var("QUEUE_WINDOW").ok().filter(|v| !v.is_empty()) {
        builder = builder.queue_window(window.parse()?, 1 << 20);
    }
    // A broker whose certificate the test's CA signed (TLS, QUIC), and a client key that
    // stays in a PKCS#11 token.
    if let Some(ca) = std::env::var_os("GATEWAY_CA_FILE") {
        let mut tls = mooring::client::TlsOptions::with_ca_file(ca)?;
        if let Ok(uri) = std::env::var("GATEWAY_PKCS11_URI") {
            let key = mooring::client::Pkcs11Key::open(&uri)?;
            tls = tls.client_certificate_pkcs11(&key, None)?;
        }
        builder = builder.tls(tls);
    }
    // Behind the proxy the environment names (`all_proxy`, ...).
    if std::env::var("GATEWAY_PROXY_FROM_ENV").is_ok_and(|v| v == "1") {
        builder = builder.proxy_from_env(true);
    }
    let (client, messages) = builder
        .server(a.url.clone())
        .client_id(client_id)
        .store_arc(store)
        .manual_ack(!auto_ack())
        .receive_maximum(a.receive_maximum)
        .session_expiry(Duration::from_secs(86_400))
        .keep_alive(Duration::from_millis(
            env_or_default("GATEWAY_KEEP_ALIVE_MS", "5000").parse()?,
        ))
        .ping_timeout(Duration::from_secs(2))
        .reconnect(integration::fast_backoff())
        .start()
        .await?;
    // From here on this process owns the session (a standby waited in `start`): the ledgers
    // say where the previous owner stopped.
    println!("ACTIVE");
    let mut fenced = client.events();
    tokio::spawn(async move {
        while let Some(event) = fenced.recv().await {
            if let mooring::ClientEvent::SessionTakenOver { holder, .. } = event {
                println!("FENCED by {holder}");
                std::process::exit(3);
            }
        }
    });
    let incarnation = complete_lines(&a.dir.join("incarnation")).len() as u64;
    // When it became the owner (ms since the UNIX epoch): the failover proof tells by it
    // whether an earlier owner had a message before or after this one took the session over.
    LedgerFile::open(&a.dir.join("incarnation"))?
        .append(&format!("start {}", integration::now_ms()))?;
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    for line in complete_lines(&a.dir.join("accepted")) {
        let mut parts = line.split(' ');
        if let (Some(t), Some(n)) = (parts.next(), parts.next()) {
            let (t, n): (u32, u64) = (t.parse()?, n.parse()?);
            let e = next.entry(t).or_insert(0);
            *e = (*e).max(n + 1);
        }
    }

    if std::env::var_os("GATEWAY_EVENTS").is_some() {
        let mut events = client.events();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if !matches!(event, mooring::ClientEvent::Connected { .. }) {
                    eprintln!("gateway event: {event:?}");
                }
            }
        });
    }
    let consumer = tokio::spawn(consume(messages, a.dir.clone(), incarnation));
    client
        .subscribe(format!("{topics}/in/#"), a.consume_qos)
        .await?;
    println!("SUBSCRIBED");
    if std::env::var_os("GATEWAY_STATS").is_some() {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                let s = client.stats();
                println!("STATS {} {}", s.queued, s.outbound_in_flight);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    let until_ms: Option<u64> = match std::env::var("GATEWAY_UNTIL") {
        Ok(v) if !v.is_empty() => Some(v.parse()?),
        _ => None,
    };

    let accepted = Arc::new(LedgerFile::open(&a.dir.join("accepted"))?);
    let mut tasks = Vec::new();
    for t in 0..a.tasks {
        let client = client.clone();
        let accepted = accepted.clone();
        let from = next.get(&t).copied().unwrap_or(0);
        let per_task = a.per_task;
        let pace = a.pace;
        let qos = if t % 2 == 0 { a.qos.0 } else { a.qos.1 };
        let topic = format!("{topics}/out/{t}");
        tasks.push(tokio::spawn(async move {
            // Awaited as they go once many are outstanding: a soak's memory stays flat.
            let mut deliveries = std::collections::VecDeque::new();
            for n in from..per_task {
                if until_ms.is_some_and(|until| integration::now_ms() >= until) {
                    break;
                }
                let line = format!("{t} {n} {incarnation}");
                let delivery = client.publish(topic.clone(), line.clone(), qos).await?;
                accepted.append(&line)?;
                deliveries.push_back(delivery);
                if deliveries.len() > 1000
                    && let Some(oldest) = deliveries.pop_front()
                {
                    oldest.await?;
                }
                tokio::time::sleep(pace).await;
            }
            for d in deliveries {
                d.await?;
            }
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("PUBLISHED");

    // Run until standard input closes, then stop cleanly.
    let _ = input_closed.await;
    client.disconnect().await?;
    consumer.abort();
    Ok(())
}

fn env_or_default(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// `GATEWAY_AUTO_ACK=1`: messages are acked automatically, when the next one is asked for.
fn auto_ack() -> bool {
    std::env::var("GATEWAY_AUTO_ACK").is_ok_and(|v| v == "1")
}

async fn consume(mut messages: Messages, dir: PathBuf, incarnation: u64) -> Result<(), Error> {
    // Diagnostics only (not synced): what arrived under which packet id, and when its ack returned.
    let mut trace = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("deliveries"))?;
    let consumed_ledger = LedgerFile::open(&dir.join("consumed"))?;
    let acked_ledger = LedgerFile::open(&dir.join("acked"))?;
    let redelivered = LedgerFile::open(&dir.join("redelivered"))?;
    let mut consumed = Numbers::of(complete_lines(&dir.join("consumed")));
    let mut acked = Numbers::of(complete_lines(&dir.join("acked")));
    let auto = auto_ack();
    // With automatic ack, the message before: at QoS 2 the next is handed over only once its
    // ack is durable.
    let mut handled: Option<(String, u16)> = None;
    while let Some(message) = messages.recv().await {
        if let Some((n, id)) = handled.take() {
            writeln!(trace, "{n} acked m{id} run {incarnation}")?;
            if acked.insert(&n) {
                acked_ledger.append(&n)?;
            }
        }
        let n = String::from_utf8_lossy(message.payload()).into_owned();
        let (id, dup) = (message.publish().packet_id, message.dup());
        let at = integration::now_ms();
        writeln!(
            trace,
            "{n} delivered m{id} dup={dup} run {incarnation} at {at}"
        )?;
        if acked.contains(&n) {
            redelivered.append(&n)?;
        }
        if consumed.insert(&n) {
            consumed_ledger.append(&n)?;
        }
        if auto {
            handled = Some((n, id));
            continue;
        }
        message.ack().await?;
        writeln!(trace, "{n} acked m{id} run {incarnation}")?;
        if acked.insert(&n) {
            acked_ledger.append(&n)?;
        }
    }
    Ok(())
}

/// A set of the numbers sent to the gateway, one bit each: an hour's soak (hundreds of
/// thousands of numbers) must not grow the gateway's memory by what it remembers of them.
/// What is not a number is kept as text.
#[derive(Default)]
struct Numbers {
    bits: Vec<u64>,
    other: HashSet<String>,
}

impl Numbers {
    fn of(lines: Vec<String>) -> Self {
        let mut set = Self::default();
        for line in lines {
            set.insert(&line);
        }
        set
    }

    fn slot(n: u64) -> (usize, u64) {
        ((n / 64) as usize, 1 << (n % 64))
    }

    fn contains(&self, text: &str) -> bool {
        match text.parse::<u64>() {
            Ok(n) => {
                let (word, bit) = Self::slot(n);
                self.bits.get(word).is_some_and(|w| w & bit != 0)
            }
            Err(_) => self.other.contains(text),
        }
    }

    /// Adds `text`; whether it was new.
    fn insert(&mut self, text: &str) -> bool {
        match text.parse::<u64>() {
            Ok(n) => {
                let (word, bit) = Self::slot(n);
                if self.bits.len() <= word {
                    self.bits.resize(word + 1, 0);
                }
                match self.bits.get_mut(word) {
                    Some(w) if *w & bit == 0 => {
                        *w |= bit;
                        true
                    }
                    _ => false,
                }
            }
            Err(_) => self.other.insert(text.to_owned()),
        }
    }
}
