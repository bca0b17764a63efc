//! A mosquitto broker per test: its own config, directory and ephemeral port on 127.0.0.1;
//! stopped, killed and restarted on the same port at will; always killed when dropped.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How to configure the broker.
#[derive(Debug, Clone, Default)]
pub struct MosquittoConfig {
    /// Keep sessions and retained messages across restarts (in the test's directory).
    pub persistence: bool,
    /// `max_inflight_messages`: the Receive Maximum mosquitto announces.
    pub max_inflight_messages: Option<u16>,
    /// `max_packet_size`: the Maximum Packet Size mosquitto announces.
    pub max_packet_size: Option<u32>,
    /// Also listen for MQTT over WebSocket.
    pub websockets: bool,
    /// Also listen for MQTT over TLS with a PKI made for the test ([`Mosquitto::pki`]).
    pub tls: bool,
    /// With `tls`: refuse clients without a certificate signed by the test CA.
    pub require_client_certificate: bool,
    /// Only these users (name, password) may connect; anonymous clients are refused.
    pub users: Vec<(String, String)>,
    /// Extra lines appended to the config.
    pub extra: Vec<String>,
    /// Log errors and warnings only, not every packet (a long soak would log gigabytes).
    pub quiet_log: bool,
}

/// A running (or stopped) mosquitto.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    port: u16,
    ws_port: Option<u16>,
    tls_port: Option<u16>,
    pki: Option<crate::pki::Pki>,
    dir: tempfile::TempDir,
    config_path: PathBuf,
}

/// A free TCP port on 127.0.0.1 (the OS picks it; it is free when this returns).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Mosquitto {
    /// Starts a broker with default settings (anonymous, no persistence).
    pub fn start() -> io::Result<Self> {
        Self::with_config(&MosquittoConfig::default())
    }

    /// Starts a broker with `config`.
    pub fn with_config(config: &MosquittoConfig) -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let ws_port = if config.websockets {
            Some(free_port()?)
        } else {
            None
        };
        let tls_port = if config.tls { Some(free_port()?) } else { None };
        let pki = if config.tls {
            Some(crate::pki::Pki::generate(dir.path(), "mosquitto")?)
        } else {
            None
        };
        let mut text = String::new();
        // Run as the invoking user even as root: the test's directory is ours.
        text.push_str("user root\nper_listener_settings false\n");
        if config.users.is_empty() {
            text.push_str("allow_anonymous true\n");
        } else {
            let passwords = dir.path().join("passwords");
            std::fs::write(&passwords, "")?;
            for (user, password) in &config.users {
                let status = Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg(&passwords)
                    .arg(user)
                    .arg(password)
                    .stdout(Stdio::null())
                    .status()?;
                if !status.success() {
                    return Err(io::Error::other("mosquitto_passwd failed"));
                }
            }
            text.push_str(&format!(
                "allow_anonymous false\npassword_file {}\n",
                passwords.display()
            ));
        }
        text.push_str(&format!("listener {port} 127.0.0.1\n"));
        if let Some(ws) = ws_port {
            text.push_str(&format!("listener {ws} 127.0.0.1\nprotocol websockets\n"));
        }
        if let (Some(tls), Some(pki)) = (tls_port, &pki) {
            text.push_str(&format!(
                "listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                pki.ca.display(),
                pki.server_cert.display(),
                pki.server_key.display(),
                config.require_client_certificate
            ));
        }
        if config.persistence {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.path().display()
            ));
        } else {
            text.push_str("persistence false\n");
        }
        if let Some(n) = config.max_inflight_messages {
            text.push_str(&format!("max_inflight_messages {n}\n"));
        }
        if let Some(n) = config.max_packet_size {
            text.push_str(&format!("max_packet_size {n}\n"));
        }
        text.push_str(&format!(
            "log_dest file {}/mosquitto.log\n",
            dir.path().display()
        ));
        text.push_str(if config.quiet_log {
            "log_type error\nlog_type warning\n"
        } else {
            "log_type all\n"
        });
        for line in &config.extra {
            text.push_str(line);
            text.push('\n');
        }
        let config_path = dir.path().join("mosquitto.conf");
        std::fs::File::create(&config_path)?.write_all(text.as_bytes())?;
        let mut broker = Self {
            child: None,
            port,
            ws_port,
            tls_port,
            pki,
            dir,
            config_path,
        };
        broker.restart()?;
        Ok(broker)
    }

    /// The `mqtt://127.0.0.1:port` address.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The `ws://127.0.0.1:port/mqtt` address, if WebSockets are on.
    pub fn ws_url(&self) -> Option<String> {
        self.ws_port.map(|p| format!("ws://127.0.0.1:{p}/mqtt"))
    }

    /// The `mqtts://localhost:port` address, if TLS is on.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("mqtts://localhost:{p}"))
    }

    /// The test PKI, if TLS is on.
    pub fn pki(&self) -> Option<&crate::pki::Pki> {
        self.pki.as_ref()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's own directory (config, log, persistence).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// (Re)starts the broker on the same ports and waits until it accepts connections.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let mut child = Command::new(crate::program("mosquitto"))
            .arg("-c")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot start mosquitto ({e}); install it: apt-get install -y mosquitto"
                    ),
                )
            })?;
        let listening = |port: u16| {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            // A connect to a free local port in the ephemeral range can connect to itself
            // (TCP simultaneous open): that is not the broker.
            TcpStream::connect_timeout(&addr, Duration::from_millis(100))
                .is_ok_and(|s| s.local_addr().is_ok_and(|local| local != addr))
        };
        let ready = || {
            Ok(listening(self.port)
                && self.ws_port.is_none_or(listening)
                && self.tls_port.is_none_or(listening))
        };
        let waits = (Duration::from_secs(10), Duration::from_millis(20));
        crate::await_ready(&mut child, "mosquitto", waits, ready, || self.log())?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops it with SIGTERM (it saves persistence) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::signal_and_wait(&mut child, "-TERM", Duration::from_secs(5));
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

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
