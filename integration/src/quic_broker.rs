//! A QUIC broker per test that this project did not write: the `mqttv5` broker of the
//! mqttv5-cli crate (`scripts/install-mqttv5.sh`), listening for MQTT over QUIC and over TCP on
//! ephemeral 127.0.0.1 ports, with a PKI made for the test and a directory of its own; always
//! killed when dropped.

use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::mosquitto::free_port;
use crate::pki::Pki;

/// The version the tests were written against (`scripts/install-mqttv5.sh` installs it).
pub const VERSION: &str = "0.29.10";

/// Where the `mqttv5` command is: `MQTTV5_BIN`, cargo's bin directory, else the PATH.
pub fn program() -> PathBuf {
    if let Some(path) = std::env::var_os("MQTTV5_BIN") {
        return path.into();
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    cargo_home
        .map(|home| home.join("bin").join("mqttv5"))
        .filter(|path| path.exists())
        .unwrap_or_else(|| "mqttv5".into())
}

/// A free UDP port on 127.0.0.1.
pub fn free_udp_port() -> io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running (or stopped) `mqttv5` broker.
#[derive(Debug)]
pub struct QuicBroker {
    child: Option<Child>,
    tcp_port: u16,
    tls_port: u16,
    quic_port: u16,
    pki: Pki,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl QuicBroker {
    /// Starts a broker that delivers on the client's stream (`control-only`) to anonymous
    /// clients, its sessions kept in its directory across restarts.
    pub fn start() -> io::Result<Self> {
        Self::with_args(&[
            "--quic-delivery-strategy",
            "control-only",
            "--allow-anonymous",
            "true",
        ])
    }

    /// Starts a broker with these arguments besides its listeners, PKI and directory.
    pub fn with_args(extra: &[&str]) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = Pki::generate(dir.path(), "mqttv5")?;
        let mut broker = Self {
            child: None,
            tcp_port: free_port()?,
            tls_port: free_port()?,
            quic_port: free_udp_port()?,
            pki,
            dir,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        broker.restart()?;
        Ok(broker)
    }

    /// `quic://localhost:PORT` (the certificate names `localhost` and 127.0.0.1).
    pub fn quic_url(&self) -> String {
        format!("quic://localhost:{}", self.quic_port)
    }

    /// The QUIC port (UDP).
    pub fn quic_port(&self) -> u16 {
        self.quic_port
    }

    /// `mqtt://127.0.0.1:PORT`: the same broker over TCP.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.tcp_port)
    }

    /// The test PKI: the CA to trust, and the server's certificate.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// What the broker printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the broker again on the same ports (killing it first if it runs).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let log = std::fs::File::create(self.dir.path().join("broker.log"))?;
        let mut child = Command::new(program())
            .arg("broker")
            .args(["--host", &format!("127.0.0.1:{}", self.tcp_port)])
            .args(["--tls-host", &format!("127.0.0.1:{}", self.tls_port)])
            .args(["--quic-host", &format!("127.0.0.1:{}", self.quic_port)])
            .arg("--tls-cert")
            .arg(&self.pki.server_cert)
            .arg("--tls-key")
            .arg(&self.pki.server_key)
            .args(["--non-interactive", "--no-sys-topics"])
            .arg("--storage-dir")
            .arg(self.dir.path().join("storage"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start mqttv5 ({e}): run scripts/install-mqttv5.sh"),
                )
            })?;
        let tcp = SocketAddr::from(([127, 0, 0, 1], self.tcp_port));
        let banner = format!("QUIC: 127.0.0.1:{}", self.quic_port);
        // The QUIC endpoint is bound before the TCP listener accepts: the banner line names
        // it once both are up.
        let ready = || {
            Ok(TcpStream::connect_timeout(&tcp, Duration::from_millis(100))
                .is_ok_and(|s| s.local_addr().is_ok_and(|local| local != tcp))
                && self.log().contains(&banner))
        };
        let waits = (Duration::from_secs(10), Duration::from_millis(20));
        crate::await_ready(&mut child, "mqttv5", waits, ready, || self.log())?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops it with SIGTERM and waits (SIGKILL after `within`).
    pub fn stop(&mut self, within: Duration) {
        if let Some(mut child) = self.child.take() {
            crate::signal_and_wait(&mut child, "-TERM", within);
        }
    }

    /// Kills it with SIGKILL and waits.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for QuicBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
