//! The crash proof's gateway process (`gateway_child`), started with its settings and killed
//! with SIGKILL.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use integration::proxy_servers::ProxyServer;
use mooring::packet::ProtocolVersion;

/// The broker's `max_inflight_messages`, which is also its Receive Maximum: at most the number
/// of publishing tasks, so messages often wait for send quota, stored and bound to an
/// identifier but not sent, when the kill comes.
pub const BROKER_WINDOW: u16 = 4;
/// The gateway's own Receive Maximum: half the broker's window. mosquitto 2.0 restores at
/// most `max_inflight_messages` outgoing messages per client as in flight after a restart
/// and sends the rest as PUBLISH even when they were released, which no client can tell from
/// a new message (`tests/broker_quirks.rs`); after a reconnect it may have Receive Maximum
/// messages in flight on top of those it retransmitted, hence half.
const GATEWAY_RECEIVE_MAXIMUM: u16 = 2;

/// How the gateway's client is set up.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub protocol: ProtocolVersion,
    /// At most this many queued messages in memory (`None`: the default window).
    pub queue_window: Option<usize>,
    /// The broker's `max_inflight_messages` (its Receive Maximum).
    pub broker_window: u16,
    /// The gateway reaches the network through a SOCKS5 proxy (microsocks) that the
    /// environment names (`all_proxy`, read by `proxy_from_env`).
    pub through_proxy: bool,
    /// The gateway speaks MQTT over QUIC to the `mqttv5` broker, through a UDP relay whose
    /// side of the path moves to a new port at every cut (a NAT that rebinds).
    pub over_quic: bool,
    /// The gateway connects to mosquitto over TLS with a client certificate whose key stays
    /// in a SoftHSM2 token; mosquitto requires the certificate.
    pub key_in_token: bool,
    /// Every fifth kill also restarts the broker.
    pub broker_restarts: bool,
}

impl Variant {
    pub fn of(protocol: ProtocolVersion) -> Self {
        Self {
            protocol,
            queue_window: None,
            broker_window: BROKER_WINDOW,
            through_proxy: false,
            over_quic: false,
            key_in_token: false,
            broker_restarts: true,
        }
    }
}

pub struct Gateway {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub subscribed: Arc<AtomicBool>,
    pub published: Arc<AtomicBool>,
}

/// What the gateway is started with, besides its variant.
pub struct Launch<'a> {
    pub store: &'a str,
    pub dir: &'a Path,
    pub url: &'a str,
    pub qos: u8,
    pub tasks: u32,
    pub per_task: u64,
    /// What the path to the broker needs in the gateway's environment (a CA to trust, a
    /// token's configuration and key).
    pub env: &'a [(&'static str, OsString)],
}

pub fn spawn_gateway(
    launch: &Launch<'_>,
    variant: Variant,
    socks: Option<&ProxyServer>,
) -> Gateway {
    let Launch {
        store,
        dir,
        url,
        qos,
        tasks,
        per_task,
        env,
    } = *launch;
    let version = match variant.protocol {
        ProtocolVersion::V311 => "3.1.1",
        _ => "5",
    };
    let window = variant
        .queue_window
        .map(|w| w.to_string())
        .unwrap_or_default();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway_child"));
    // Only the proxy this test names, whatever the machine's environment says.
    for name in ["http_proxy", "https_proxy", "all_proxy", "no_proxy"] {
        command.env_remove(name).env_remove(name.to_uppercase());
    }
    if let Some(socks) = socks {
        command
            .env("all_proxy", socks.url("socks5h"))
            .env("GATEWAY_PROXY_FROM_ENV", "1");
    }
    command.envs(env.iter().map(|(name, value)| (name, value)));
    let mut child = command
        .env("MQTT_VERSION", version)
        .env("QUEUE_WINDOW", window)
        .arg(store)
        .arg(dir.join(format!("gateway.{store}")))
        .arg(url)
        .arg(dir.join("ledgers"))
        .arg(qos.to_string())
        .arg(tasks.to_string())
        .arg(per_task.to_string())
        .arg("2")
        .arg(
            GATEWAY_RECEIVE_MAXIMUM
                .min(variant.broker_window / 2)
                .max(1)
                .to_string(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gateway_child starts");
    let subscribed = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicBool::new(false));
    let stdout = child.stdout.take().unwrap();
    let (s, p) = (subscribed.clone(), published.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match line.as_str() {
                "SUBSCRIBED" => s.store(true, Ordering::SeqCst),
                "PUBLISHED" => p.store(true, Ordering::SeqCst),
                _ => {}
            }
        }
    });
    let stdin = child.stdin.take();
    Gateway {
        child,
        stdin,
        subscribed,
        published,
    }
}

impl Gateway {
    pub fn kill(self) {
        drop(self);
    }
}

/// SIGKILL, also when a failed assertion unwinds past it (no gateway outlives the test).
impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
