//! A fault-injecting TCP proxy between a client and a broker: pass through, cut every
//! connection, refuse new ones, stall (a black hole), delay, add a link's latency, or deliver in
//! 1-byte fragments.
//!
//! It runs on its own threads so that any test (async or not) can use it; it stops when
//! dropped.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Pass,
    /// Close new connections as soon as they are accepted.
    Refuse,
    /// Hold every byte (both ways) until the mode changes: a black hole.
    Stall,
    /// Hold each chunk this long before forwarding it, and the chunks behind it too: a slow
    /// link that also limits throughput.
    Delay(Duration),
    /// Deliver each chunk this long after it was read, without holding the next ones back: a
    /// link's one-way latency (set it on both directions' traffic for a round trip of twice
    /// this).
    Latency(Duration),
    /// Forward one byte per write.
    Fragment,
    /// Forward what the client sends and drop what the server answers, on every connection
    /// while the mode lasts: requests arrive and take effect, their answers are lost.
    Deaf,
}

struct Shared {
    fault: Mutex<Fault>,
    streams: Mutex<Vec<TcpStream>>,
    /// Per open connection: set when it falls into a black hole for good.
    lost: Mutex<Vec<Arc<AtomicBool>>>,
    stopped: AtomicBool,
    /// Bytes the client sent while the server still held the connection open.
    to_server: AtomicU64,
    /// Bytes the client sent after the server had closed the connection: they reach nobody.
    after_server_closed: AtomicU64,
    /// When the proxy last read bytes from a client for an open server connection.
    last_to_server: Mutex<Option<Instant>>,
    connections: AtomicU64,
    /// Connections the server has not closed yet.
    open: AtomicU64,
}

impl Shared {
    fn fault(&self) -> Fault {
        *lock(&self.fault)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The proxy. Point the client at [`FaultProxy::url`].
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::Pass),
            streams: Mutex::new(Vec::new()),
            lost: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            to_server: AtomicU64::new(0),
            after_server_closed: AtomicU64::new(0),
            last_to_server: Mutex::new(None),
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
        });
        let accept_shared = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if accept_shared.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if accept_shared.fault() == Fault::Refuse {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                accept_shared.connections.fetch_add(1, Ordering::Relaxed);
                accept_shared.open.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let pair = (client.try_clone(), server.try_clone());
                let (Ok(client2), Ok(server2)) = pair else {
                    continue;
                };
                {
                    let mut streams = lock(&accept_shared.streams);
                    if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                        streams.push(a);
                        streams.push(b);
                    }
                }
                let lost = Arc::new(AtomicBool::new(false));
                lock(&accept_shared.lost).push(lost.clone());
                let up = Direction {
                    shared: accept_shared.clone(),
                    to_server: true,
                    server_closed: Arc::new(AtomicBool::new(false)),
                    lost,
                };
                let down = Direction {
                    to_server: false,
                    ..up.clone()
                };
                thread::spawn(move || pump(client, server2, &up));
                thread::spawn(move || pump(server, client2, &down));
            }
        });
        Ok(Self { port, shared })
    }

    /// The address to give the client.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Changes what happens to traffic from now on.
    pub fn set(&self, fault: Fault) {
        *lock(&self.shared.fault) = fault;
    }

    /// The port it listens on (127.0.0.1), for clients that take host and port apart.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections forwarded to the server so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Bytes the client sent towards the server so far, while the server held the connection
    /// open.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.to_server.load(Ordering::SeqCst)
    }

    /// When a client last sent bytes towards the server while it held the connection open
    /// (as the proxy read them): a broker's keep alive runs from the last packet it got.
    pub fn last_sent_to_server(&self) -> Option<Instant> {
        *lock(&self.shared.last_to_server)
    }

    /// Bytes the client wrote into connections the server had already closed (as a broker
    /// closes the old connection of a client identifier that connected again): the server
    /// never reads them.
    pub fn bytes_after_server_closed(&self) -> u64 {
        self.shared.after_server_closed.load(Ordering::SeqCst)
    }

    /// Connections the server has not closed yet (as far as the proxy has read).
    pub fn open_connections(&self) -> u64 {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// The connections open now fall into a black hole for good: every byte either way is
    /// dropped and nothing is closed, as when a firewall or NAT on the path forgets them.
    /// Connections made later pass (by the mode set).
    pub fn lose_open_connections(&self) {
        for lost in lock(&self.shared.lost).drain(..) {
            lost.store(true, Ordering::SeqCst);
        }
    }

    /// Closes every open connection at once (both directions), as a network cut does.
    pub fn cut(&self) {
        for stream in lock(&self.shared.streams).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so that it sees `stopped`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One direction of one proxied connection.
#[derive(Clone)]
struct Direction {
    shared: Arc<Shared>,
    to_server: bool,
    /// Set once the server's side ended (shared by both directions).
    server_closed: Arc<AtomicBool>,
    /// Set once the connection fell into a black hole (shared by both directions).
    lost: Arc<AtomicBool>,
}

/// Copies `from` to `to`, applying the current fault to each chunk. A reader thread (this one)
/// stamps each chunk with when it may be delivered; a writer thread delivers it then, so that
/// latency holds chunks in flight side by side.
fn pump(mut from: TcpStream, to: TcpStream, direction: &Direction) {
    let shared = &direction.shared;
    let (chunks, delivery) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer_shared = shared.clone();
    let writer = thread::spawn(move || deliver(to, &delivery, &writer_shared));
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(chunk) = buf.get(..n) else { break };
        if direction.lost.load(Ordering::SeqCst)
            || (!direction.to_server && shared.fault() == Fault::Deaf)
        {
            continue;
        }
        if direction.to_server {
            let counter = if direction.server_closed.load(Ordering::SeqCst) {
                &shared.after_server_closed
            } else {
                *lock(&shared.last_to_server) = Some(Instant::now());
                &shared.to_server
            };
            counter.fetch_add(n as u64, Ordering::SeqCst);
        }
        let mut due = Instant::now();
        loop {
            match shared.fault() {
                Fault::Stall if !shared.stopped.load(Ordering::SeqCst) => {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Fault::Delay(d) => thread::sleep(d),
                Fault::Latency(d) => due += d,
                _ => {}
            }
            break;
        }
        if chunks.send((due, chunk.to_vec())).is_err() {
            break;
        }
    }
    if !direction.to_server && !direction.server_closed.swap(true, Ordering::SeqCst) {
        shared.open.fetch_sub(1, Ordering::SeqCst);
    }
    drop(chunks);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
}

/// Writes each chunk to `to` once it is due; closes `to`'s write side when the reader stops.
fn deliver(mut to: TcpStream, chunks: &mpsc::Receiver<(Instant, Vec<u8>)>, shared: &Shared) {
    for (due, chunk) in chunks {
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        let written = if shared.fault() == Fault::Fragment {
            chunk.iter().try_for_each(|b| {
                to.write_all(std::slice::from_ref(b))
                    .and_then(|()| to.flush())
            })
        } else {
            to.write_all(&chunk)
        };
        if written.is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
