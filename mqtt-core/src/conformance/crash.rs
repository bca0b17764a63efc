//! The SIGKILL proof any store can run: a child process commits numbered batches to the store
//! and says so after each `commit` returns; the harness kills it with SIGKILL at random moments
//! (while it starts, opens the store, or commits: a kill lands mid-commit as often as the
//! commits take the child's time), opens the store again and checks that every acknowledged
//! batch is there whole and that nothing of a batch is there in part.
//!
//! A store author needs two pieces:
//!
//! 1. A small binary that opens the store at the path it is given and hands it to
//!    [`run_child`], which commits until it is killed (the `custom_store` example of the
//!    Mooring repository does this for its journal store):
//!
//! ```ignore
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let path = std::env::args().nth(1).ok_or("usage: crash_child PATH")?;
//!     let store = MyStore::open(&path)?;
//!     mooring_core::conformance::crash::run_child(&store).await?;
//!     Ok(())
//! }
//! ```
//!
//! 2. A test that runs [`cycles`] with that binary (Cargo names it in `CARGO_BIN_EXE_<name>`
//!    for the crate's integration tests) and a way to open the store in the test's process:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_store_survives_sigkill() {
//!     let dir = tempfile::tempdir().unwrap();
//!     let report = crash::cycles(
//!         dir.path(),
//!         |path| {
//!             let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crash_child"));
//!             child.arg(path);
//!             child
//!         },
//!         |path| Ok(Box::new(MyStore::open(path)?) as Box<dyn SessionStore>),
//!         crash::Settings::new(30),
//!     )
//!     .await;
//!     assert!(report.is_ok(), "{report:?}");
//! }
//! ```
//!
//! Batch `n` writes [`RECORDS_PER_BATCH`] outbound records under `n * RECORDS_PER_BATCH ..`,
//! one queued message under `n` and metadata naming `n`, and removes what batch
//! `n - WINDOW` wrote: after batch `m` the session holds exactly batches
//! `m - WINDOW + 1 ..= m`, so a torn batch, a lost one or a removal applied without its
//! puts shows.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::packet::{ProtocolVersion, QoS};
use crate::store::{
    Batch, OutboundRecord, QueuedPublish, SessionKey, SessionMeta, SessionStore, StoreError,
    StoreOp, StoredSession,
};

/// Outbound records per batch.
pub const RECORDS_PER_BATCH: u64 = 8;
/// How many batches the session keeps.
pub const WINDOW: u64 = 16;

/// The line the child prints after each acknowledged commit: `committed N`.
const COMMITTED: &str = "committed ";

/// The session the crash test writes.
pub fn session() -> SessionKey {
    SessionKey::new("mqtt://crash.test:1883", "crash-child")
}

fn record(n: u64, i: u64) -> Bytes {
    let mut bytes = n.to_be_bytes().to_vec();
    bytes.extend_from_slice(&i.to_be_bytes());
    bytes.resize(256, (n % 251) as u8);
    Bytes::from(bytes)
}

/// The operations of batch `n`.
pub fn batch(n: u64) -> Batch {
    let mut ops = Vec::new();
    for i in 0..RECORDS_PER_BATCH {
        ops.push(StoreOp::PutOutbound {
            seq: n * RECORDS_PER_BATCH + i,
            record: OutboundRecord::Publish(record(n, i)),
        });
    }
    ops.push(StoreOp::PushQueue {
        seq: n,
        message: QueuedPublish {
            qos: QoS::ExactlyOnce,
            packet: record(n, u64::MAX),
            expires_at_ms: None,
            accepted_at_ms: None,
        },
    });
    if let Some(old) = n.checked_sub(WINDOW) {
        for i in 0..RECORDS_PER_BATCH {
            ops.push(StoreOp::RemoveOutbound {
                seq: old * RECORDS_PER_BATCH + i,
            });
        }
        ops.push(StoreOp::RemoveQueue { seq: old });
    }
    ops.push(StoreOp::SetMeta(SessionMeta {
        session_expiry_interval: u32::MAX,
        disconnected_at_ms: Some(n),
        assigned_client_id: None,
        alive_until_ms: None,
        protocol: ProtocolVersion::V5,
        in_flight_limit: None,
        clock: Default::default(),
    }));
    Batch::from(ops)
}

/// The last batch wholly present in `session`, after checking that the session holds exactly
/// the batches `last - WINDOW + 1 ..= last`, each whole and unaltered. `None` when the session
/// is empty.
pub fn last_whole_batch(session: &StoredSession) -> Result<Option<u64>, String> {
    let Some(meta) = &session.meta else {
        if session.is_empty() {
            return Ok(None);
        }
        return Err(format!("records without metadata: {session:?}"));
    };
    let last = meta
        .disconnected_at_ms
        .ok_or("the metadata names no batch")?;
    let first = last.saturating_sub(WINDOW - 1);
    let want_outbound: Vec<(u64, OutboundRecord)> = (first..=last)
        .flat_map(|n| {
            (0..RECORDS_PER_BATCH).map(move |i| {
                (
                    n * RECORDS_PER_BATCH + i,
                    OutboundRecord::Publish(record(n, i)),
                )
            })
        })
        .collect();
    if session.outbound != want_outbound {
        let got: Vec<u64> = session.outbound.iter().map(|(s, _)| *s).collect();
        return Err(format!(
            "the metadata says batch {last} is the last, but the outbound records are {got:?}, \
             not batches {first}..={last} whole"
        ));
    }
    let queued: Vec<u64> = session.queue.iter().map(|(s, _)| *s).collect();
    if queued != (first..=last).collect::<Vec<_>>() {
        return Err(format!(
            "the queue holds {queued:?}, not batches {first}..={last}"
        ));
    }
    Ok(Some(last))
}

/// The child's side: finds the last batch `store` holds and commits the following ones until
/// the process is killed, printing `committed N` on stdout after each `commit` returns.
/// Returns only with the error that stopped it.
pub async fn run_child(store: &dyn SessionStore) -> Result<(), String> {
    let key = session();
    let loaded = store.load(&key).await.map_err(|e| e.to_string())?;
    let mut next = last_whole_batch(&loaded)?.map_or(0, |n| n + 1);
    loop {
        store
            .commit(&key, batch(next))
            .await
            .map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{COMMITTED}{next}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        next += 1;
    }
}

/// What a store that cannot be opened (or read) after a kill means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unopenable {
    /// A failure: the store promises to open after any kill.
    Fails,
    /// Counted and reported, and the run goes on with a new file (for a store known to damage
    /// its own files now and then, as sled 0.34 does). A store that opens and lost an
    /// acknowledged batch still fails the run.
    Counted,
}

/// How [`cycles`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How many times the child is started and killed.
    pub kills: u64,
    /// The seed of the kill timing; the report names it, so a failing run can be replayed.
    pub seed: u64,
    /// What a store that does not open after a kill means.
    pub unopenable: Unopenable,
}

impl Settings {
    /// `kills` kills, a seed from the clock, a store that must always open again.
    pub fn new(kills: u64) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self {
            kills,
            seed: seed | 1,
            unopenable: Unopenable::Fails,
        }
    }

    /// `CRASH_CYCLES` kills (else `kills`), the seed `CRASH_SEED` names (else one from the
    /// clock): what the workspace's scripts set to run longer or to replay a run.
    pub fn from_env(kills: u64) -> Self {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        let defaults = Self::new(number("CRASH_CYCLES").unwrap_or(kills));
        Self {
            seed: number("CRASH_SEED").unwrap_or(defaults.seed),
            ..defaults
        }
    }
}

/// What a run of [`cycles`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Kills made.
    pub kills: u64,
    /// Kills that came while the child was committing (after its first acknowledgement).
    pub kills_mid_run: u64,
    /// The last batch the store held at the end.
    pub last_batch: Option<u64>,
    /// Times the store did not open after a kill ([`Unopenable::Counted`]).
    pub refused: u64,
    /// The seed, to replay the run.
    pub seed: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} kills, {} during the commit loop, last batch {:?}; refused to open {} times \
             ({:.1}% of kills); CRASH_SEED={}",
            self.kills,
            self.kills_mid_run,
            self.last_batch,
            self.refused,
            100.0 * self.refused as f64 / self.kills.max(1) as f64,
            self.seed
        )
    }
}

/// xorshift64*: enough randomness for kill timing, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

/// When to kill the child.
enum KillAt {
    /// This long after it started: during start-up and opening the store, or early commits.
    AfterStart(Duration),
    /// This long after its first acknowledgement: inside the commit loop.
    AfterFirstAck(Duration),
}

/// Runs the child once, kills it as `kill_at` says, and returns the batches it acknowledged.
fn run_child_and_kill(mut command: Command, kill_at: KillAt) -> Result<Vec<u64>, String> {
    let mut child: Child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let (acks_tx, acks_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line
                .strip_prefix(COMMITTED)
                .and_then(|n| n.parse::<u64>().ok())
            {
                let _ = acks_tx.send(n);
            }
        }
    });
    let mut acked = Vec::new();
    match kill_at {
        KillAt::AfterStart(delay) => std::thread::sleep(delay),
        KillAt::AfterFirstAck(delay) => {
            if let Ok(first) = acks_rx.recv_timeout(Duration::from_secs(20)) {
                acked.push(first);
            }
            std::thread::sleep(delay);
        }
    }
    let still_running = child
        .try_wait()
        .map_err(|e| format!("cannot poll the child: {e}"))?
        .is_none();
    // `Child::kill` sends SIGKILL on Unix.
    child
        .kill()
        .map_err(|e| format!("cannot kill the child: {e}"))?;
    let status = child
        .wait()
        .map_err(|e| format!("cannot reap the child: {e}"))?;
    let _ = reader.join();
    if !still_running {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            use std::io::Read;
            let _ = stderr.read_to_string(&mut err);
        }
        return Err(format!("the child exited by itself ({status}): {err}"));
    }
    acked.extend(acks_rx.try_iter());
    Ok(acked)
}

/// The harness's side: `settings.kills` times, starts the child (`child(path)` makes its
/// command, for the store at `path`, a file or directory under `dir`), kills it, opens the
/// store with `open` and checks it: every batch the child acknowledged is there whole, and
/// no batch is there in part. One kill in four lands anywhere from start-up on, the others
/// inside the commit loop. `Err` describes the first violation, with the seed.
pub async fn cycles(
    dir: &Path,
    child: impl Fn(&Path) -> Command,
    open: impl Fn(&Path) -> Result<Box<dyn SessionStore>, StoreError>,
    settings: Settings,
) -> Result<Report, String> {
    let seed = settings.seed;
    let mut rng = Rng(seed | 1);
    let mut generation = 0;
    let path_of = |generation: u64| -> PathBuf { dir.join(format!("crash-{generation}.store")) };
    let mut path = path_of(generation);
    let mut report = Report {
        kills: settings.kills,
        kills_mid_run: 0,
        last_batch: None,
        refused: 0,
        seed,
    };
    let mut highest_acked: Option<u64> = None;
    for cycle in 0..settings.kills {
        let fail = |what: String| format!("cycle {cycle}: {what} (CRASH_SEED={seed})");
        let kill_at = if rng.below(4) == 0 {
            KillAt::AfterStart(Duration::from_millis(rng.below(50)))
        } else {
            KillAt::AfterFirstAck(Duration::from_millis(rng.below(100)))
        };
        let acked = run_child_and_kill(child(&path), kill_at).map_err(fail)?;
        if let Some(&last) = acked.last() {
            report.kills_mid_run += 1;
            if !acked
                .windows(2)
                .all(|w| w.get(1) == w.first().map(|n| n + 1).as_ref())
            {
                return Err(fail(format!("acknowledgements out of sequence: {acked:?}")));
            }
            highest_acked = Some(last);
        }
        let loaded = match open(&path) {
            Ok(store) => store.load(&session()).await,
            Err(e) => Err(e),
        };
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(_) if settings.unopenable == Unopenable::Counted => {
                report.refused += 1;
                generation += 1;
                path = path_of(generation);
                highest_acked = None;
                continue;
            }
            Err(e) => return Err(fail(format!("the store does not open after SIGKILL: {e}"))),
        };
        let last = last_whole_batch(&loaded).map_err(fail)?;
        match (highest_acked, last) {
            (None, _) => {}
            (Some(acked), Some(last)) if last == acked || last == acked + 1 => {}
            (Some(acked), Some(last)) => {
                return Err(fail(format!(
                    "batch {acked} was acknowledged, the store's last whole batch is {last}"
                )));
            }
            (Some(acked), None) => {
                return Err(fail(format!(
                    "batch {acked} was acknowledged, the store is empty"
                )));
            }
        }
        if let Some(last) = last {
            // A batch committed but not reported still counts from here on.
            highest_acked = Some(highest_acked.map_or(last, |a| a.max(last)));
        }
    }
    report.last_batch = highest_acked;
    if report.kills_mid_run * 2 < settings.kills {
        return Err(format!(
            "only {} of {} kills happened while batches were committed: the child starts too \
             slowly to prove anything (CRASH_SEED={seed})",
            report.kills_mid_run, settings.kills
        ));
    }
    Ok(report)
}
