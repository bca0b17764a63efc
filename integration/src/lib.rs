//! Tests of Mooring against real processes, real brokers and real faults, and the tools they
//! share: a mosquitto per test ([`mosquitto`]), a PostgreSQL per test ([`postgres`]), a
//! fault-injecting proxy ([`proxy`]), a test PKI ([`pki`]), packets over a raw TCP stream for
//! tests that play one side by hand ([`wire`]), the proofs' independent subscribers
//! ([`Arrivals`], and [`mosquitto_sub`], which is not Mooring) and ledgers ([`ledger`]), and
//! the machine's fsync ceiling ([`fdatasync_rate`]).
//!
//! The tests: `store_crash` (SIGKILL of a process committing to a store), `redb_power_loss`,
//! `store_space`, `store_fixtures`, `client_mosquitto` and `mosquitto_features` (every client
//! feature against mosquitto), `bad_broker` (a misbehaving broker over TCP), `broker_quirks`
//! (what mosquitto does that the guarantees depend on), `restart` (subscriptions across SIGKILL
//! and a broker that lost the session, with `src/bin/subscriber_child.rs`), `crash_proof`
//! (the end-to-end crash-safety proof with `src/bin/gateway_child.rs`), `postgres_store` (the
//! PostgreSQL store: conformance, cuts, restarts, ownership, TLS), `failover` (a standby client
//! taking over a session) and `failover_proof` (the end-to-end failover proof, three pairs of
//! `gateway_child` processes, each pair on one session in one PostgreSQL). The benchmarks:
//! `src/bin/store_bench.rs` and `src/bin/bench/`.
#![forbid(unsafe_code)]

mod arrivals;
/// The README's Rust blocks, compiled as doc tests of this crate (which depends on Mooring
/// with every feature the README shows), so that none can rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

pub mod clients;
pub mod mosquitto;
pub mod mosquitto_sub;
pub mod netem;
pub mod pki;
pub mod postgres;
mod proc_stat;
pub mod proxy;
pub mod proxy_servers;
pub mod quic_broker;
pub mod softhsm;
pub mod udp_relay;
pub mod wire;

pub use proc_stat::process_cpu_seconds;

pub use arrivals::Arrivals;

/// The complete lines of a gateway's ledger `DIR/ledgers/NAME` (a line cut short by a kill
/// does not count), for the crash and failover proofs.
pub fn ledger(dir: &std::path::Path, name: &str) -> Vec<String> {
    complete_lines(&dir.join("ledgers").join(name))
}

/// The complete lines of the file at `path`, none if there is no file: a line a kill cut
/// short does not count.
pub fn complete_lines(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An append-only file of lines that a proof's child process keeps: each line is durable
/// (`fdatasync`) before `append` returns, so it survives the SIGKILL that may follow.
pub struct LedgerFile(std::sync::Mutex<std::fs::File>);

impl LedgerFile {
    /// Opens (or creates) the file at `path` for appending.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self(std::sync::Mutex::new(file)))
    }

    /// Appends `line` and a newline, durably.
    pub fn append(&self, line: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut file = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("ledger lock poisoned"))?;
        file.write_all(format!("{line}\n").as_bytes())?;
        file.sync_data()
    }
}

/// Waits until `done` says so, checking every 10 ms; panics naming `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits until a server just started is ready (`ready` says so, asked every `pause`). Fails
/// with the server's log (`log`) if it exits first, or if `within` passes (it is killed then).
pub fn await_ready(
    child: &mut std::process::Child,
    name: &str,
    (within, pause): (std::time::Duration, std::time::Duration),
    mut ready: impl FnMut() -> std::io::Result<bool>,
    log: impl Fn() -> String,
) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if ready()? {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(std::io::Error::other(format!(
                "{name} exited with {status}: {}",
                log()
            )));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{name} was not ready within {within:?}: {}", log()),
            ));
        }
        std::thread::sleep(pause);
    }
}

/// Sends `signal` (`-TERM`, `-INT`, `-KILL`) to `child` and waits up to `within` for it to
/// exit; kills it if it has not.
pub fn signal_and_wait(child: &mut std::process::Child, signal: &str, within: std::time::Duration) {
    let _ = std::process::Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status();
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Opens a store, waiting up to five seconds while another handle still holds its lock: a
/// process killed a moment ago (or a sled handle just dropped, which releases its lock from a
/// background thread) can outlive the call that starts the next one.
pub fn open_when_free<S>(
    open: impl Fn() -> Result<S, mooring::store::StoreError>,
) -> Result<S, mooring::store::StoreError> {
    for _ in 0..250 {
        match open() {
            Err(mooring::store::StoreError::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
    open()
}

/// Opens the embedded store `kind` names (`redb`, `sled` or `sqlite`) at `path`, waiting while a
/// previous incarnation's lock outlives it (see [`open_when_free`]).
pub fn open_embedded_store(
    kind: &str,
    path: &std::path::Path,
) -> Result<
    std::sync::Arc<dyn mooring::store::SessionStore>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use mooring::store::{RedbStore, SledStore, SqliteStore};
    Ok(match kind {
        "redb" => std::sync::Arc::new(open_when_free(|| RedbStore::open(path))?),
        "sled" => std::sync::Arc::new(open_when_free(|| SledStore::open(path))?),
        "sqlite" => std::sync::Arc::new(open_when_free(|| SqliteStore::open(path))?),
        other => return Err(format!("unknown store {other}").into()),
    })
}

/// The protocol `MQTT_VERSION` asks for: `5` (also when unset) or `3.1.1`; anything else is
/// an error naming the variable.
pub fn mqtt_version() -> Result<mooring::packet::ProtocolVersion, String> {
    match std::env::var("MQTT_VERSION").as_deref() {
        Err(_) | Ok("5") => Ok(mooring::packet::ProtocolVersion::V5),
        Ok("3.1.1") => Ok(mooring::packet::ProtocolVersion::V311),
        Ok(other) => Err(format!("MQTT_VERSION={other:?}: use 5 or 3.1.1")),
    }
}

/// Where a program from the distribution's packages is: the system's directories first
/// (`/usr/sbin` is not on every user's PATH), else its name alone, found on PATH.
pub fn program(name: &str) -> std::path::PathBuf {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| name.into())
}

/// A proof's setting from the environment variable `name` (`HANDLING_KILLS=100`), or
/// `default` when it is unset or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reconnect delays for tests: a lost connection comes back within tens of milliseconds.
pub fn fast_backoff() -> mooring::Backoff {
    mooring::Backoff::default()
        .with_initial(std::time::Duration::from_millis(20))
        .with_maximum(std::time::Duration::from_millis(300))
}

/// Syncs per second of a 4 KiB write followed by `fdatasync`: appending (the file grows, so
/// each sync also commits its new size) or overwriting the same block (data only).
pub fn fdatasync_rate(dir: &std::path::Path, seconds: f64, append: bool) -> std::io::Result<f64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::File::create(dir.join("fdatasync.bin"))?;
    let block = [0xA5u8; 4096];
    let start = std::time::Instant::now();
    let mut syncs = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        if !append {
            file.seek(SeekFrom::Start(0))?;
        }
        file.write_all(&block)?;
        file.sync_data()?;
        syncs += 1;
    }
    Ok(syncs as f64 / start.elapsed().as_secs_f64())
}

/// The disk's sequential write bandwidth when every `block` bytes appended are made durable
/// (`fdatasync`), in bytes per second, measured for about `seconds` in `dir`: the ceiling of a
/// store that writes big payloads.
pub fn write_sync_bandwidth(
    dir: &std::path::Path,
    block: usize,
    seconds: f64,
) -> std::io::Result<f64> {
    use std::io::Write;
    let path = dir.join("bandwidth.bin");
    let mut file = std::fs::File::create(&path)?;
    let data = vec![0xA5u8; block];
    let start = std::time::Instant::now();
    let mut written = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        file.write_all(&data)?;
        file.sync_data()?;
        written += block as u64;
    }
    let rate = written as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(rate)
}

/// The wall clock in milliseconds since the UNIX epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The bytes a store takes on disk: its file, or every file below its directory.
pub fn disk_bytes(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| disk_bytes(&e.path()))
            .sum()
    })
}

/// A field of `/proc/<pid>/status` given in kB (`VmRSS`, `VmHWM`), for `pid` or `self`; 0 when
/// it cannot be read.
pub fn proc_status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
