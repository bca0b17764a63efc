//! Real proxies for the tests, from the distribution's packages (`scripts/install-proxies.sh`):
//! tinyproxy (HTTP CONNECT, Basic authentication) and microsocks (SOCKS5, user name and
//! password). Each runs as a child process on a free port of 127.0.0.1 with its own
//! directory, and is killed when dropped. A missing program is an error, never a skip.

use std::io;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::mosquitto::free_port;

/// Which proxy program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProgram {
    /// tinyproxy: `http://` (CONNECT).
    Tinyproxy,
    /// microsocks: `socks5://` and `socks5h://`.
    Microsocks,
}

/// A proxy process.
pub struct ProxyServer {
    program: ProxyProgram,
    credentials: Option<(String, String)>,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ProxyServer {
    /// Starts `program` on a free port, wanting `credentials` when given.
    pub fn start(program: ProxyProgram, credentials: Option<(&str, &str)>) -> io::Result<Self> {
        let mut server = Self {
            program,
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            port: free_port()?,
            dir: tempfile::tempdir()?,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address for [`mooring::client::Proxy::parse`], without credentials: `http://`
    /// for tinyproxy, `scheme` (`socks5` or `socks5h`) for microsocks.
    pub fn url(&self, scheme: &str) -> String {
        match self.program {
            ProxyProgram::Tinyproxy => format!("http://127.0.0.1:{}", self.port),
            ProxyProgram::Microsocks => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the process with SIGKILL: every tunnel through it drops at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("output.log"))?;
        let mut command = match self.program {
            ProxyProgram::Tinyproxy => {
                let config = self.tinyproxy_config()?;
                let mut c = Command::new(crate::program("tinyproxy"));
                c.arg("-d").arg("-c").arg(config);
                c
            }
            ProxyProgram::Microsocks => {
                let mut c = Command::new(crate::program("microsocks"));
                c.args(["-i", "127.0.0.1", "-p", &self.port.to_string()]);
                if let Some((user, password)) = &self.credentials {
                    c.args(["-u", user, "-P", password]);
                }
                c
            }
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{:?} does not start ({e}): run scripts/install-proxies.sh",
                        self.program
                    ),
                )
            })?;
        let ready = || Ok(TcpStream::connect(("127.0.0.1", self.port)).is_ok());
        let name = format!("{:?}", self.program);
        let waits = (Duration::from_secs(10), Duration::from_millis(20));
        crate::await_ready(&mut child, &name, waits, ready, || self.log())?;
        self.child = Some(child);
        Ok(())
    }

    /// What it logged.
    pub fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        read("output.log") + &read("tinyproxy.log")
    }

    /// Tunnels it opened to a server so far (as its log says).
    pub fn tunnels(&self) -> usize {
        let log = self.log();
        match self.program {
            ProxyProgram::Tinyproxy => log.matches("Established connection to host").count(),
            // microsocks logs "client[fd] ip: connected to host:port".
            ProxyProgram::Microsocks => log.matches("connected to").count(),
        }
    }

    fn tinyproxy_config(&self) -> io::Result<std::path::PathBuf> {
        let dir = self.dir.path();
        let mut text = format!(
            "Port {}\nListen 127.0.0.1\nTimeout 600\nLogFile \"{}\"\nLogLevel Connect\n\
             PidFile \"{}\"\nMaxClients 100\nAllow 127.0.0.1\n",
            self.port,
            dir.join("tinyproxy.log").display(),
            dir.join("tinyproxy.pid").display(),
        );
        // Without ConnectPort lines, CONNECT may reach any port (MQTT's among them).
        if let Some((user, password)) = &self.credentials {
            text.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let path = dir.join("tinyproxy.conf");
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.kill();
    }
}
