//! A PostgreSQL server per test: `initdb` into a temporary directory, `postgres` on a free port
//! of 127.0.0.1, stopped by its process id when dropped. PostgreSQL refuses to run as root: a
//! root test runs it as the `postgres` user that Debian's package creates, which then owns the
//! directory.

use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::mosquitto::free_port;

/// A running (or stopped) PostgreSQL.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Whom the server runs as, when the test runs as root.
    run_as: Option<(u32, u32)>,
    /// With TLS: the test PKI (the server's certificate names `localhost` and 127.0.0.1).
    pki: Option<crate::pki::Pki>,
}

/// The directory of PostgreSQL's server programs: `MOORING_PG_BIN`, else the newest
/// `/usr/lib/postgresql/N/bin` (Debian's), else the `PATH`.
fn server_bin() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MOORING_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((n, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("postgres").exists()));
    found.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no PostgreSQL server found; install it: bash scripts/install-postgres.sh",
        )
    })
}

/// The uid and gid of `user`, from /etc/passwd.
fn user_ids(user: &str) -> io::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if let [name, _, uid, gid, ..] = fields.as_slice()
            && *name == user
        {
            let parse = |s: &str| {
                s.parse::<u32>()
                    .map_err(|e| io::Error::other(format!("/etc/passwd: {e}")))
            };
            return Ok((parse(uid)?, parse(gid)?));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no user {user:?} to run PostgreSQL as (root may not)"),
    ))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

impl Postgres {
    /// Creates a database cluster in a new temporary directory and starts its server.
    pub fn start() -> io::Result<Self> {
        Self::start_with(false)
    }

    /// Like [`Postgres::start`], with TLS on (`ssl = on`), required of every TCP connection
    /// (`hostssl` in `pg_hba.conf`), and a PKI made for the test ([`Postgres::pki`]).
    pub fn start_with_tls() -> io::Result<Self> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> io::Result<Self> {
        let bin = server_bin()?;
        let dir = tempfile::tempdir()?;
        let pki = if tls {
            let pki = crate::pki::Pki::generate(dir.path(), "postgres")?;
            // PostgreSQL refuses a key others may read.
            std::fs::set_permissions(
                &pki.server_key,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )?;
            Some(pki)
        } else {
            None
        };
        let run_as = if running_as_root() {
            let ids = user_ids("postgres")?;
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", ids.0, ids.1))
                .arg(dir.path())
                .status()?;
            if !status.success() {
                return Err(io::Error::other("chown of the data directory failed"));
            }
            Some(ids)
        } else {
            None
        };
        let mut server = Self {
            child: None,
            port: free_port()?,
            bin,
            dir,
            run_as,
            pki,
        };
        run_tool(
            server.command("initdb").arg("-D").arg(server.data()).args([
                "-U",
                "mooring",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            "initdb",
        )?;
        if server.pki.is_some() {
            // TCP only with TLS: a connection that is not encrypted is refused.
            let hba = server.data().join("pg_hba.conf");
            let text = std::fs::read_to_string(&hba)?.replace("\nhost ", "\nhostssl ");
            std::fs::write(&hba, text)?;
        }
        server.restart()?;
        Ok(server)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The connection string for the `postgres` database, as the superuser `mooring`.
    pub fn connection(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=mooring dbname=postgres connect_timeout=5",
            self.port
        )
    }

    /// Creates the database `name` and returns its connection string.
    pub fn create_database(&self, name: &str) -> io::Result<String> {
        run_tool(
            Command::new(self.bin.join("createdb"))
                .args(self.as_test_user())
                .arg(name),
            &format!("createdb {name}"),
        )?;
        Ok(self
            .connection()
            .replace("dbname=postgres", &format!("dbname={name}")))
    }

    /// Runs `sql` in the database `dbname` with psql, as the test's own user (not through any
    /// store): for fixtures and for changing what a test must not reach through the API.
    /// Returns what psql printed, unaligned, one row per line.
    pub fn sql(&self, dbname: &str, sql: &str) -> io::Result<String> {
        let output = Command::new(self.bin.join("psql"))
            .args(self.as_test_user())
            .args(["-d", dbname, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "psql failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A client tool's arguments to reach this server as the test's user.
    fn as_test_user(&self) -> [String; 6] {
        [
            "-h".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
            "-U".to_owned(),
            "mooring".to_owned(),
        ]
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// (Re)starts the server on the same port and data, and waits until it takes queries.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("postgres.log"))?;
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "max_connections=40", "-c", "shared_buffers=16MB"])
            .args(self.pki.iter().flat_map(|pki| {
                [
                    "-c".to_owned(),
                    "ssl=on".to_owned(),
                    "-c".to_owned(),
                    format!("ssl_cert_file={}", pki.server_cert.display()),
                    "-c".to_owned(),
                    format!("ssl_key_file={}", pki.server_key.display()),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let ready = || {
            Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|status| status.success())
        };
        let waits = (Duration::from_secs(30), Duration::from_millis(50));
        crate::await_ready(&mut child, "postgres", waits, ready, || self.log())?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server with a fast shutdown (SIGINT: open transactions are rolled back,
    /// committed ones are on disk) and waits for it.
    pub fn stop(&mut self) {
        self.signal_and_wait("-INT", Duration::from_secs(20));
    }

    /// Kills the server with SIGKILL; the next start recovers from its write-ahead log.
    pub fn kill(&mut self) {
        self.signal_and_wait("-KILL", Duration::from_secs(5));
        // Its backends notice the postmaster gone and exit; the next start waits for that.
        std::thread::sleep(Duration::from_millis(200));
    }

    fn signal_and_wait(&mut self, signal: &str, within: Duration) {
        if let Some(mut child) = self.child.take() {
            crate::signal_and_wait(&mut child, signal, within);
        }
    }

    /// The test PKI, when TLS is on.
    pub fn pki(&self) -> Option<&crate::pki::Pki> {
        self.pki.as_ref()
    }

    /// The data directory, for tests that look inside.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs one of PostgreSQL's tools to its end; a failure carries what it wrote to stderr.
fn run_tool(command: &mut Command, what: &str) -> io::Result<()> {
    let output = command.stdin(Stdio::null()).output()?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    )))
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
