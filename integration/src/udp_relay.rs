//! A UDP relay between one client and a server, for QUIC: it delays datagrams, drops a share
//! of them at random (true loss: QUIC's own recovery repairs it), and can move its side of
//! the path to a new port, as a NAT that rebinds does (the server then sees the client's
//! connection arrive from a new address).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How the relay treats datagrams, each way.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathShape {
    /// Added to every datagram, each way (half the round trip).
    pub delay: Duration,
    /// The share of datagrams dropped, each way (0.01 = 1 %).
    pub loss: f64,
}

struct Shared {
    client: Mutex<Option<SocketAddr>>,
    upstream: Mutex<Arc<UdpSocket>>,
    shape: Mutex<PathShape>,
    stop: AtomicBool,
    dropped: AtomicU64,
    rebinds: AtomicU64,
}

/// A running relay; stopped when dropped.
pub struct UdpRelay {
    port: u16,
    server: SocketAddr,
    shared: Arc<Shared>,
}

fn upstream_socket(server: SocketAddr) -> io::Result<Arc<UdpSocket>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    Ok(Arc::new(socket))
}

/// A datagram to send when due, on a socket, to an address (`None`: the connected peer).
type Due = (Instant, Vec<u8>, Arc<UdpSocket>, Option<SocketAddr>);

/// Sends what `queue` holds when it is due, in order (the delay is the same for all).
fn sender(queue: Receiver<Due>) {
    for (due, datagram, socket, to) in queue {
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let _ = match to {
            Some(to) => socket.send_to(&datagram, to),
            None => socket.send(&datagram),
        };
    }
}

impl UdpRelay {
    /// Relays datagrams sent to [`UdpRelay::port`] to `server`, and the answers back.
    pub fn start(server: SocketAddr, shape: PathShape) -> io::Result<Self> {
        let downstream = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
        downstream.set_read_timeout(Some(Duration::from_millis(5)))?;
        let port = downstream.local_addr()?.port();
        let shared = Arc::new(Shared {
            client: Mutex::new(None),
            upstream: Mutex::new(upstream_socket(server)?),
            shape: Mutex::new(shape),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            rebinds: AtomicU64::new(0),
        });
        let (to_server, to_server_queue) = channel();
        let (to_client, to_client_queue) = channel();
        thread::spawn(move || sender(to_server_queue));
        thread::spawn(move || sender(to_client_queue));
        let schedule = |shared: &Shared,
                        queue: &Sender<Due>,
                        datagram: &[u8],
                        socket: Arc<UdpSocket>,
                        to: Option<SocketAddr>| {
            let shape = *shared.shape.lock().unwrap_or_else(|e| e.into_inner());
            if shape.loss > 0.0 && fastrand::f64() < shape.loss {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let _ = queue.send((Instant::now() + shape.delay, datagram.to_vec(), socket, to));
        };
        {
            let (shared, downstream) = (shared.clone(), downstream.clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !shared.stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = downstream.recv_from(&mut buf) else {
                        continue;
                    };
                    *shared.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
                    let upstream = shared
                        .upstream
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    schedule(
                        &shared,
                        &to_server,
                        buf.get(..n).unwrap_or_default(),
                        upstream,
                        None,
                    );
                }
            });
        }
        {
            let shared = shared.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !shared.stop.load(Ordering::Relaxed) {
                    // The socket of the moment: after a rebind, the new one.
                    let upstream = shared
                        .upstream
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    let Ok(n) = upstream.recv(&mut buf) else {
                        continue;
                    };
                    let client = *shared.client.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(client) = client {
                        schedule(
                            &shared,
                            &to_client,
                            buf.get(..n).unwrap_or_default(),
                            downstream.clone(),
                            Some(client),
                        );
                    }
                }
            });
        }
        Ok(Self {
            port,
            server,
            shared,
        })
    }

    /// The port clients send to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Moves the relay's side of the path to a new port: what the server sends to the old
    /// one is lost from now on, as behind a NAT that rebound.
    pub fn rebind(&self) -> io::Result<()> {
        let fresh = upstream_socket(self.server)?;
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = fresh;
        self.shared.rebinds.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The port the server sees the client's datagrams come from now.
    pub fn outward_port(&self) -> u16 {
        self.shared
            .upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .local_addr()
            .map_or(0, |a| a.port())
    }

    /// Changes the delay and loss from now on.
    pub fn set_shape(&self, shape: PathShape) {
        *self.shared.shape.lock().unwrap_or_else(|e| e.into_inner()) = shape;
    }

    /// Datagrams dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
