//! What the bench's peer programs share (bench-paho, and bench-mqtt5 by path): the task
//! bound, the latencies, the process's CPU time and peak RSS, and the `ROW` line the bench
//! reads.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

// The bench's own reading of /proc, shared by path (these crates are outside the workspace).
#[path = "../../integration/src/proc_stat.rs"]
mod proc_stat;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Windows a task keeps awaiting their ack beside the one being accepted (the bench's
/// `UNACKED_PER_WINDOW` + 1).
pub const WINDOWS_OUTSTANDING: usize = 5;

/// What `row LIB STORE URL QOS PAYLOAD TASKS COUNT WINDOW` asks for (the bench's arguments
/// to a row's program).
pub struct Row {
    pub store: String,
    pub url: String,
    /// 1 or 2: the peers' rows measure acknowledged publishes.
    pub qos: u8,
    pub payload: usize,
    pub tasks: usize,
    pub count: usize,
    /// Publishes a task keeps being accepted (at least one).
    pub window: usize,
}

impl Row {
    /// Reads the arguments of `program`, which measures `lib`.
    pub fn parse(args: &[String], program: &str, lib: &str) -> Result<Self, Error> {
        let [cmd, asked, store, url, qos, payload, tasks, count, window] = args else {
            return Err(format!(
                "usage: {program} row {lib} STORE URL QOS PAYLOAD TASKS COUNT WINDOW"
            )
            .into());
        };
        if cmd != "row" || asked != lib {
            return Err(format!("{program} measures `row {lib} ...`, not `{cmd} {asked}`").into());
        }
        let qos = qos.parse()?;
        if !(1..=2).contains(&qos) {
            return Err(format!("the {lib} rows measure QoS 1 and 2, not {qos}").into());
        }
        Ok(Self {
            store: store.clone(),
            url: url.clone(),
            qos,
            payload: payload.parse()?,
            tasks: tasks.parse()?,
            count: count.parse()?,
            window: window.parse::<usize>()?.max(1),
        })
    }
}

/// Runs `row` on a multi-threaded runtime, prints the line it returns, and exits as it went.
pub fn main_with<F>(name: &str, row: impl FnOnce(Vec<String>) -> F) -> ExitCode
where
    F: Future<Output = Result<String, Error>>,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(row(args)));
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The latencies of a row's publishes and its start, in time and in CPU.
pub struct Run {
    latency: Mutex<Vec<f64>>,
    cpu_before: f64,
    start: Instant,
}

impl Run {
    /// Starts the clocks, with room for `count` latencies.
    pub fn start(count: usize) -> Self {
        Self {
            latency: Mutex::new(Vec::with_capacity(count)),
            cpu_before: proc_stat::process_cpu_seconds("self"),
            start: Instant::now(),
        }
    }

    /// Notes how long one publish took to be acknowledged, or fails with its error.
    pub fn record<E: Into<Error>>(&self, done: Option<Result<Duration, E>>) -> Result<(), Error> {
        if let Some(done) = done {
            let took = done.map_err(Into::into)?;
            if let Ok(mut l) = self.latency.lock() {
                l.push(took.as_secs_f64() * 1e6);
            }
        }
        Ok(())
    }

    /// The `ROW` line for `total` messages published since the start.
    pub fn row_line(&self, total: usize) -> String {
        let elapsed = self.start.elapsed();
        let cpu = proc_stat::process_cpu_seconds("self") - self.cpu_before;
        let mut l = self.latency.lock().map(|l| l.clone()).unwrap_or_default();
        l.sort_by(f64::total_cmp);
        let at = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        let total = total as f64;
        format!(
            "ROW {} {} {} {} 0 {}",
            total / elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
            peak_rss_kib(),
            cpu * 1e6 / total
        )
    }
}

/// Peak resident set of this process, from /proc.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
