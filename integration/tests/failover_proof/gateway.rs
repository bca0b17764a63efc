//! One gateway process of the proof, what it says, the ways it reaches the broker and the
//! database, and what a round does to it.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use integration::proxy::FaultProxy;

/// Publishing tasks per gateway.
pub const TASKS: u32 = 2;

/// What a gateway process said on its standard output.
#[derive(Default)]
pub struct Said {
    pub active: AtomicBool,
    pub subscribed: AtomicBool,
    pub published: AtomicBool,
    pub fenced: AtomicBool,
    pub stepped: AtomicBool,
}

pub struct Gateway {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub said: Arc<Said>,
    /// Its own way to the broker, counting what it sends; the proof can hold it back.
    pub proxy: FaultProxy,
    /// Its own way to PostgreSQL, for partitions and black holes.
    pub db: FaultProxy,
}

/// What a round does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// SIGKILL to the active gateway.
    Kill,
    /// SIGSTOP to the active gateway until the standby took over and connected (the broker
    /// closed the frozen one's connection), then SIGCONT: it must find itself fenced.
    Freeze,
    /// SIGSTOP past the lease and the keep alive, SIGCONT once the standby owns the session
    /// but before it connected: the broker still holds the woken one's connection open, and
    /// the woken one has a PINGREQ due.
    WokenBeforeBrokerClosed,
    /// SIGSTOP for a quarter of the lease, then SIGCONT: no takeover, it goes on.
    ShortFreeze,
    /// Its connections to PostgreSQL reset and new ones refused until the standby took over.
    DatabaseReset,
    /// Its connections to PostgreSQL fall into a black hole (nothing answers, nothing
    /// closes), new ones refused, until the standby took over.
    DatabaseBlackHole,
    /// PostgreSQL itself restarted (every gateway of every pair loses its connections), and
    /// one owner's way to it returns only later: its standby takes over; the others may or
    /// may not, as the leases ran.
    DatabaseRestart,
    /// The active gateway's lease clock jumps three leases ahead (a host woken from suspend,
    /// as its boot clock sees it): it holds its writes until the database confirms it again;
    /// no takeover.
    ClockStep,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Freeze,
        FaultKind::WokenBeforeBrokerClosed,
        FaultKind::ShortFreeze,
        FaultKind::DatabaseReset,
        FaultKind::DatabaseBlackHole,
        FaultKind::DatabaseRestart,
        FaultKind::ClockStep,
    ];
}

/// What every gateway of the proof shares.
pub struct Setup {
    pub broker: SocketAddr,
    pub database: SocketAddr,
    pub per_task: u64,
    pub lease_ms: u64,
}

impl Setup {
    /// The gateways' keep alive: two leases, so that a gateway frozen past its lease and
    /// woken past its keep alive has a PINGREQ due, while the broker (which waits one and a
    /// half keep alives) still holds its connection open: the PINGREQ must not go out.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(2 * self.lease_ms)
    }
}

/// Who a gateway is: its pair's client identifier, topics and ledgers.
pub struct Identity {
    pub client_id: String,
    pub topics: String,
    pub ledgers: PathBuf,
}

impl Setup {
    pub fn spawn(&self, who: &Identity, auto_ack: bool) -> Gateway {
        let proxy = FaultProxy::start(self.broker).unwrap();
        let db = FaultProxy::start(self.database).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway_child"))
            .env("GATEWAY_LEASE_MS", self.lease_ms.to_string())
            .env("GATEWAY_CLUSTER", "proof")
            .env("GATEWAY_CLIENT_ID", &who.client_id)
            .env("GATEWAY_TOPICS", &who.topics)
            .env(
                "GATEWAY_KEEP_ALIVE_MS",
                self.keep_alive().as_millis().to_string(),
            )
            .env("GATEWAY_AUTO_ACK", if auto_ack { "1" } else { "0" })
            .arg("postgres")
            .arg(format!(
                "host=127.0.0.1 port={} user=mooring dbname=postgres connect_timeout=2",
                db.port()
            ))
            .arg(proxy.url())
            .arg(&who.ledgers)
            .arg("2")
            .arg(TASKS.to_string())
            .arg(self.per_task.to_string())
            .arg("2")
            .arg("10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gateway_child starts");
        let said = Arc::new(Said::default());
        let stdout = child.stdout.take().unwrap();
        let s = said.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let flag = match line.as_str() {
                    "ACTIVE" => &s.active,
                    "SUBSCRIBED" => &s.subscribed,
                    "PUBLISHED" => &s.published,
                    "STEPPED" => &s.stepped,
                    l if l.starts_with("FENCED") => &s.fenced,
                    _ => continue,
                };
                flag.store(true, Ordering::SeqCst);
            }
        });
        let stdin = child.stdin.take();
        Gateway {
            child,
            stdin,
            said,
            proxy,
            db,
        }
    }
}

pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
}

impl Gateway {
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Moves its lease clock `ms` ahead.
    pub fn step_clock(&mut self, ms: u64) {
        let stdin = self.stdin.as_mut().expect("its standard input is open");
        writeln!(stdin, "STEP {ms}").unwrap();
        stdin.flush().unwrap();
    }
}

/// SIGKILL (after SIGCONT, for a frozen one), also when a failed assertion unwinds past it.
impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}
