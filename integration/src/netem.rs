//! An emulated network link for benchmarks, where the kernel has no `netem`: a client runs in
//! a network namespace of its own whose only way out is a TUN device; this process reads each
//! IP packet from it, holds it for the link's one-way delay, drops a share at random, and
//! writes it into a second TUN device in the host's namespace (and the answers back the same
//! way). TCP and UDP (QUIC) cross the same link, end to end: each protocol's own loss
//! recovery sees the whole round trip, as on a real path.
//!
//! The host side is `10.201.N.1`; what arrives there is forwarded to 127.0.0.1 (an iptables
//! DNAT rule and `route_localnet` on that device only), so the servers keep listening on
//! 127.0.0.1 alone. Needs root, `ip`, `iptables` and `/dev/net/tun`; everything is undone
//! when the link is dropped.

use std::io;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use crate::udp_relay::PathShape;

fn run(program: &str, args: &[&str]) -> io::Result<()> {
    let output = Command::new(program).args(args).output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// The emulated link; its namespace, devices and rules are removed when it is dropped.
pub struct EmulatedLink {
    namespace: String,
    subnet: u8,
    dnat: Vec<String>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    carriers: Vec<thread::JoinHandle<()>>,
}

/// Writes the packets of `queue` when they are due (the delay is the same for all: in order).
fn deliver(queue: Receiver<(Instant, Vec<u8>)>, device: Arc<tun::Device>) {
    for (due, packet) in queue {
        thread::sleep(due.saturating_duration_since(Instant::now()));
        // A device not up yet refuses (EIO): the packet is lost, as on a link still down.
        let _ = device.send(&packet);
    }
}

/// Reads packets from `from` and queues them for `to` with the link's delay, dropping some.
fn carry(
    from: Arc<tun::Device>,
    to: Arc<tun::Device>,
    shape: PathShape,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
) {
    let (queue, due) = channel();
    let delivering = thread::spawn(move || deliver(due, to));
    carry_into(&from, &queue, shape, &stop, &dropped);
    // The devices close once both threads let go of them (the link's names are free again).
    drop(queue);
    let _ = delivering.join();
}

fn carry_into(
    from: &tun::Device,
    queue: &std::sync::mpsc::Sender<(Instant, Vec<u8>)>,
    shape: PathShape,
    stop: &AtomicBool,
    dropped: &AtomicU64,
) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok(n) = from.recv_timeout(&mut buf, Duration::from_millis(50)) else {
            continue;
        };
        if n == 0 {
            continue;
        }
        if shape.loss > 0.0 && fastrand::f64() < shape.loss {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let packet = buf.get(..n).unwrap_or_default().to_vec();
        if queue.send((Instant::now() + shape.delay, packet)).is_err() {
            return;
        }
    }
}

fn device(name: &str) -> io::Result<Arc<tun::Device>> {
    let mut config = tun::Configuration::default();
    config.tun_name(name);
    tun::create(&config)
        .map(Arc::new)
        .map_err(|e| io::Error::other(format!("TUN device {name}: {e}")))
}

/// Removes what links of processes that no longer run left behind (a bench killed before it
/// could clean up): their namespaces and their forwarding rules.
fn sweep_stale() {
    let dead = |pid: &str| !std::path::Path::new("/proc").join(pid).exists();
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if let Some(pid) = name
                .strip_prefix("mooring-link-")
                .and_then(|rest| rest.split('-').next())
                && dead(pid)
            {
                let _ = run("ip", &["netns", "del", name]);
            }
        }
    }
    if let Ok(out) = Command::new("iptables")
        .args(["-t", "nat", "-S", "PREROUTING"])
        .output()
    {
        for rule in String::from_utf8_lossy(&out.stdout).lines() {
            let words: Vec<&str> = rule.split_whitespace().collect();
            let stale = words
                .iter()
                .filter_map(|w| w.strip_prefix("mls"))
                .filter_map(|rest| rest.split('x').next())
                .any(&dead);
            if let (true, Some(("-A", spec))) = (stale, words.split_first().map(|(a, r)| (*a, r))) {
                let mut delete = vec!["-t", "nat", "-D"];
                delete.extend_from_slice(spec);
                let _ = run("iptables", &delete);
            }
        }
    }
}

impl EmulatedLink {
    /// Builds the namespace and the link, with `shape` each way.
    pub fn start(shape: PathShape) -> io::Result<Self> {
        sweep_stale();
        static LINKS: AtomicU64 = AtomicU64::new(0);
        let id = std::process::id();
        let n = LINKS.fetch_add(1, Ordering::Relaxed) % 100;
        let subnet = ((u64::from(id) + n) % 200 + 20) as u8;
        let namespace = format!("mooring-link-{id}-{n}");
        let (client_device, host_device) = (format!("mlc{id}x{n}"), format!("mls{id}x{n}"));
        let client = device(&client_device)?;
        let host = device(&host_device)?;
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut link = Self {
            namespace: namespace.clone(),
            subnet,
            dnat: Vec::new(),
            stop: stop.clone(),
            dropped: dropped.clone(),
            carriers: Vec::new(),
        };
        let (client_address, host_address) =
            (format!("10.201.{subnet}.2"), format!("10.201.{subnet}.1"));
        run("ip", &["netns", "add", &namespace])?;
        run("ip", &["link", "set", &client_device, "netns", &namespace])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", namespace.as_str()];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&[
            "addr",
            "add",
            &client_address,
            "peer",
            &host_address,
            "dev",
            &client_device,
        ])?;
        inside(&["link", "set", &client_device, "up"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &host_address,
                "peer",
                &client_address,
                "dev",
                &host_device,
            ],
        )?;
        run("ip", &["link", "set", &host_device, "up"])?;
        run(
            "sysctl",
            &[
                "-qw",
                &format!("net.ipv4.conf.{host_device}.route_localnet=1"),
            ],
        )?;
        let rule: Vec<String> = [
            "PREROUTING",
            "-i",
            &host_device,
            "-d",
            &host_address,
            "-j",
            "DNAT",
            "--to-destination",
            "127.0.0.1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut add = vec!["-t", "nat", "-A"];
        add.extend(rule.iter().map(String::as_str));
        run("iptables", &add)?;
        link.dnat = rule;
        for (from, to) in [(client.clone(), host.clone()), (host, client)] {
            let (stop, dropped) = (stop.clone(), dropped.clone());
            link.carriers
                .push(thread::spawn(move || carry(from, to, shape, stop, dropped)));
        }
        Ok(link)
    }

    /// The address the client reaches the host's 127.0.0.1 by.
    pub fn host_address(&self) -> String {
        format!("10.201.{}.1", self.subnet)
    }

    /// A command that runs `program` inside the client's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    /// Packets dropped so far, both ways.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for EmulatedLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for carrier in self.carriers.drain(..) {
            let _ = carrier.join();
        }
        if !self.dnat.is_empty() {
            let mut delete = vec!["-t", "nat", "-D"];
            delete.extend(self.dnat.iter().map(String::as_str));
            let _ = run("iptables", &delete);
        }
        let _ = run("ip", &["netns", "del", &self.namespace]);
    }
}
