//! An independent subscriber that is not Mooring: mosquitto's own `mosquitto_sub`, keeping
//! every message it prints (`topic payload`) as a line, in arrival order.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A `mosquitto_sub` process with a persistent session, collecting what arrives.
pub struct MosquittoSub {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl MosquittoSub {
    /// Subscribes to each of `filters` at QoS 2 on the broker at 127.0.0.1:`port`, as
    /// `client_id` with a session that outlives a dropped connection, and returns once it
    /// receives what it subscribed to: a message published to `probe` (which one of `filters`
    /// must match) by `mosquitto_pub` arrived.
    pub fn subscribe(
        port: u16,
        client_id: &str,
        filters: &[&str],
        probe: &str,
    ) -> io::Result<Self> {
        let mut command = Command::new("mosquitto_sub");
        command
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-i", client_id, "-c", "-q", "2", "-v"]);
        for filter in filters {
            command.args(["-t", filter]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("mosquitto_sub: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("mosquitto_sub has no standard output"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let lines = lines.clone();
            move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            }
        });
        let sub = Self { child, lines };
        // Its subscription is in place once a probe published after it arrives.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let status = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-q", "1", "-t", probe, "-m", "probe"])
                .status()?;
            if !status.success() {
                return Err(io::Error::other(format!(
                    "mosquitto_pub exited with {status}"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
            if sub.lines().iter().any(|l| l.starts_with(probe)) {
                return Ok(sub);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "mosquitto_sub received no probe within 20 s",
        ))
    }

    /// Every line so far (`topic payload`), probes included.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether every line of `expected` has arrived.
    pub fn include(&self, expected: &HashSet<String>) -> bool {
        crate::arrivals::includes_all(
            &self.lines.lock().unwrap_or_else(PoisonError::into_inner),
            expected,
        )
    }
}

/// Stops it (its lines stay with whoever took them).
impl Drop for MosquittoSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
