//! What the driver tests share: an in-process fake broker whose every byte the test reads and
//! writes, builders, and a store the test controls (its commits held, its lease set).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use mooring::client::{AsyncStream, Backoff, Client, ClientEvent, Events, Messages, ServerUrl};
use mooring::packet::{
    Codec, ConnAck, Connect, Decoded, Packet, Publish, QoS, ReasonCode, SubAck, Subscribe,
};
use mooring::store::{
    Batch, MemoryStore, QueueWindow, QueuedPublish, SessionKey, SessionStore, StoreError,
    StoredSession,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::timeout;

pub const WAIT: Duration = Duration::from_secs(5);
pub const URL: &str = "mqtt://fake:1883";

/// The broker's end of one connection.
pub struct Peer {
    pub stream: DuplexStream,
    pub buf: BytesMut,
    pub codec: Codec,
}

impl Peer {
    pub async fn recv(&mut self) -> Packet {
        match timeout(WAIT, self.try_recv()).await {
            Ok(Some(packet)) => packet,
            Ok(None) => panic!("the client closed the connection"),
            Err(_) => panic!("no packet from the client within {WAIT:?}"),
        }
    }

    /// The next packet, or `None` when the client closed the stream.
    pub async fn try_recv(&mut self) -> Option<Packet> {
        loop {
            match self
                .codec
                .decode(&mut self.buf)
                .expect("the client sent a valid packet")
            {
                Decoded::Packet(p) => return Some(p),
                Decoded::Incomplete { .. } => {
                    if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                        return None;
                    }
                }
            }
        }
    }

    /// Nothing arrives for `within`.
    pub async fn silent(&mut self, within: Duration) {
        if let Ok(p) = timeout(within, self.try_recv()).await {
            panic!("expected silence, got {p:?}");
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        self.codec.encode(&packet, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn connect(&mut self) -> Connect {
        match self.recv().await {
            Packet::Connect(c) => *c,
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    /// Reads CONNECT and accepts it.
    pub async fn accept(&mut self, session_present: bool) -> Connect {
        let connect = self.connect().await;
        self.send(Packet::ConnAck(Box::new(ConnAck::new(session_present))))
            .await;
        connect
    }

    /// Reads SUBSCRIBE and answers with `codes`.
    pub async fn suback(&mut self, codes: Vec<ReasonCode>) -> Subscribe {
        let sub = match self.recv().await {
            Packet::Subscribe(s) => s,
            other => panic!("expected SUBSCRIBE, got {other:?}"),
        };
        self.send(Packet::SubAck(SubAck {
            packet_id: sub.packet_id,
            properties: Default::default(),
            reason_codes: codes,
        }))
        .await;
        sub
    }

    pub async fn publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Waits until the client closes the stream.
    pub async fn closed(&mut self) {
        let rest = timeout(WAIT, async {
            let mut seen = Vec::new();
            while let Some(p) = self.try_recv().await {
                seen.push(p);
            }
            seen
        })
        .await
        .expect("the client did not close the connection");
        assert!(rest.is_empty(), "packets before close: {rest:?}");
    }
}

/// Hands the broker's end of every connection the client opens to the test; refuses while
/// `refuse` is above zero.
#[derive(Clone)]
pub struct Fake {
    pub tx: mpsc::UnboundedSender<(String, DuplexStream)>,
    pub refuse: Arc<AtomicU32>,
    pub refuse_host: Arc<std::sync::Mutex<Option<String>>>,
    /// Bytes each direction of a connection holds before the writer waits.
    pub pipe: usize,
}

pub struct Broker {
    pub rx: mpsc::UnboundedReceiver<(String, DuplexStream)>,
    pub fake: Fake,
}

impl Broker {
    pub fn new() -> Self {
        Self::with_pipe(1 << 20)
    }

    /// Connections that hold `pipe` bytes each way: a client that writes more waits for the
    /// test to read.
    pub fn with_pipe(pipe: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            rx,
            fake: Fake {
                tx,
                refuse: Arc::new(AtomicU32::new(0)),
                refuse_host: Arc::default(),
                pipe,
            },
        }
    }

    pub fn connector(&self) -> impl Fn(ServerUrl) -> futures_ready::Ready + Send + Sync + 'static {
        let fake = self.fake.clone();
        move |url: ServerUrl| {
            let refused_host = fake.refuse_host.lock().unwrap().clone();
            if refused_host.as_deref() == Some(url.host()) {
                return futures_ready::Ready(Some(Err(io::ErrorKind::ConnectionRefused.into())));
            }
            if fake
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return futures_ready::Ready(Some(Err(io::ErrorKind::ConnectionRefused.into())));
            }
            let (client, server) = tokio::io::duplex(fake.pipe);
            let _ = fake.tx.send((url.host().to_owned(), server));
            futures_ready::Ready(Some(Ok(Box::new(client) as Box<dyn AsyncStream>)))
        }
    }

    pub async fn next(&mut self) -> Peer {
        self.next_from().await.1
    }

    /// The next connection, waiting up to `within` (for tests on paused time with long
    /// delays).
    pub async fn next_within(&mut self, within: Duration) -> Peer {
        let (_, stream) = timeout(within, self.rx.recv())
            .await
            .expect("the client did not connect in time")
            .expect("connector dropped");
        Peer {
            stream,
            buf: BytesMut::new(),
            codec: Codec::default(),
        }
    }

    pub async fn next_from(&mut self) -> (String, Peer) {
        let (host, stream) = timeout(WAIT, self.rx.recv())
            .await
            .expect("the client did not connect in time")
            .expect("connector dropped");
        (
            host,
            Peer {
                stream,
                buf: BytesMut::new(),
                codec: Codec::default(),
            },
        )
    }
}

/// A ready future without pulling in the futures crate.
pub mod futures_ready {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use mooring::client::AsyncStream;

    pub struct Ready(pub Option<std::io::Result<Box<dyn AsyncStream>>>);

    impl Future for Ready {
        type Output = std::io::Result<Box<dyn AsyncStream>>;
        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Ready(self.0.take().expect("polled once"))
        }
    }
}

pub fn fast_backoff() -> Backoff {
    Backoff::default()
        .with_initial(Duration::from_millis(5))
        .with_factor(2.0)
        .with_maximum(Duration::from_millis(20))
}

pub fn builder(broker: &Broker, store: MemoryStore) -> mooring::client::ClientBuilder {
    Client::builder()
        .server(URL)
        .client_id("gw")
        .store(store)
        .connector(broker.connector())
        .reconnect(fast_backoff())
}

/// A PUBLISH from the server on topic `in`.
pub fn inbound(qos: QoS, packet_id: u16, body: impl Into<String>) -> Packet {
    let mut p = Publish::new("in", body.into());
    p.qos = qos;
    p.packet_id = packet_id;
    Packet::Publish(p)
}

pub async fn connected(
    broker: &mut Broker,
    b: mooring::client::ClientBuilder,
) -> (Client, Messages, Peer) {
    connected_by(broker, b, ConnAck::new(false)).await
}

/// Connects, answering CONNECT with `connack`.
pub async fn connected_by(
    broker: &mut Broker,
    b: mooring::client::ClientBuilder,
    connack: ConnAck,
) -> (Client, Messages, Peer) {
    let connecting = tokio::spawn(b.connect());
    let mut peer = broker.next().await;
    peer.connect().await;
    peer.send(Packet::ConnAck(Box::new(connack))).await;
    let (client, messages) = timeout(WAIT, connecting).await.unwrap().unwrap().unwrap();
    (client, messages, peer)
}

pub async fn connected_with(broker: &mut Broker, store: &MemoryStore) -> (Client, Messages, Peer) {
    let b = builder(broker, store.clone());
    connected(broker, b).await
}

pub async fn connected_default(broker: &mut Broker) -> (Client, Messages, Peer) {
    let b = builder(broker, MemoryStore::default());
    connected(broker, b).await
}

/// A client on `inner` whose commits wait for permits of the returned gate (the first, for
/// CONNACK's metadata, given), connected to `broker`: the gated store, the gate, the client,
/// its messages and the server's end.
pub async fn connected_gated(
    broker: &mut Broker,
    inner: &MemoryStore,
) -> (Arc<ControlledStore>, Arc<Semaphore>, Client, Messages, Peer) {
    let gate = Arc::new(Semaphore::new(0));
    let store = Arc::new(ControlledStore::gated(inner.clone(), &gate));
    let b = builder(broker, MemoryStore::default()).store_arc(store.clone());
    let connecting = tokio::spawn(b.connect());
    let mut peer = broker.next().await;
    peer.accept(false).await;
    gate.add_permits(1);
    let (client, messages) = connecting.await.unwrap().unwrap();
    (store, gate, client, messages, peer)
}

/// The kind, packet identifier and reason code of the next `n` acks the broker reads.
pub async fn acks(peer: &mut Peer, n: usize) -> Vec<(&'static str, u16, ReasonCode)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(match peer.recv().await {
            Packet::PubAck(a) => ("PUBACK", a.packet_id, a.reason_code),
            Packet::PubRec(a) => ("PUBREC", a.packet_id, a.reason_code),
            other => panic!("expected an ack, got {other:?}"),
        });
    }
    out
}

pub async fn stored(store: &MemoryStore) -> StoredSession {
    store.load(&SessionKey::new(URL, "gw")).await.unwrap()
}

pub async fn next_event(events: &mut Events, want: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
    timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("events closed");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event did not come")
}

/// A memory store the test controls: commits wait for a permit from `gate` (if any), which
/// shows what the client does while one is slow; [`SessionStore::owned_until`] answers the
/// lease the test sets; once `fenced` is set, ownership checks and commits fail as after
/// another process took the session over.
#[derive(Default)]
pub struct ControlledStore {
    pub inner: MemoryStore,
    pub gate: Option<Arc<Semaphore>>,
    pub commits: AtomicUsize,
    pub lease: std::sync::Mutex<Option<Instant>>,
    pub fenced: AtomicBool,
    /// Every batch committed, in order, with its session.
    pub batches: std::sync::Mutex<Vec<(SessionKey, Batch)>>,
    /// Every commit of several sessions at once, in order.
    pub joint: std::sync::Mutex<Vec<Vec<(SessionKey, Batch)>>>,
    /// Every session resumed (read), in order.
    pub resumed: std::sync::Mutex<Vec<SessionKey>>,
    /// Set once the store is dropped (released), `release_delay` after the drop began: a
    /// store that takes its time to let go, as one joining its thread does.
    pub released: Arc<AtomicBool>,
    pub release_delay: Duration,
    /// Once set, a commit panics (a store with a bug).
    pub panics: AtomicBool,
}

impl Drop for ControlledStore {
    fn drop(&mut self) {
        std::thread::sleep(self.release_delay);
        self.released.store(true, Ordering::SeqCst);
    }
}

impl ControlledStore {
    /// Commits to `inner` once `gate` gives a permit.
    pub fn gated(inner: MemoryStore, gate: &Arc<Semaphore>) -> Self {
        let mut store = Self::default();
        store.inner = inner;
        store.gate = Some(gate.clone());
        store
    }

    /// A store whose drop takes `delay` and then sets `released`.
    pub fn releasing_slowly(released: &Arc<AtomicBool>, delay: Duration) -> Self {
        let mut store = Self::default();
        store.released = released.clone();
        store.release_delay = delay;
        store
    }

    /// This process owns every session until `until`, as far as the store vouches.
    pub fn lease_until(&self, until: Instant) {
        *self.lease.lock().unwrap() = Some(until);
    }

    fn unless_fenced(&self, key: &SessionKey) -> Result<(), StoreError> {
        if self.fenced.load(Ordering::SeqCst) {
            return Err(StoreError::Fenced {
                session: key.to_string(),
                holder: "the standby".to_owned(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for ControlledStore {
    async fn resume(
        &self,
        key: &SessionKey,
        head: QueueWindow,
    ) -> Result<StoredSession, StoreError> {
        self.resumed.lock().unwrap().push(key.clone());
        self.inner.resume(key, head).await
    }
    async fn read_queue(
        &self,
        key: &SessionKey,
        from: u64,
        window: QueueWindow,
    ) -> Result<Vec<(u64, QueuedPublish)>, StoreError> {
        self.inner.read_queue(key, from, window).await
    }
    async fn commit(&self, key: &SessionKey, batch: Batch) -> Result<(), StoreError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panics.load(Ordering::SeqCst), "a store with a bug");
        self.unless_fenced(key)?;
        self.batches
            .lock()
            .unwrap()
            .push((key.clone(), batch.clone()));
        self.inner.commit(key, batch).await
    }
    async fn clear(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.inner.clear(key).await
    }
    async fn commit_sessions(&self, batches: Vec<(SessionKey, Batch)>) -> Result<(), StoreError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        for (key, _) in &batches {
            self.unless_fenced(key)?;
        }
        self.joint.lock().unwrap().push(batches.clone());
        self.inner.commit_sessions(batches).await
    }
    fn storage_id(&self) -> Option<usize> {
        self.inner.storage_id()
    }
    async fn sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
        self.inner.sessions().await
    }
    async fn sessions_of(&self, client_id: &str) -> Result<Vec<SessionKey>, StoreError> {
        self.inner.sessions_of(client_id).await
    }
    async fn purge_expired(&self, now_ms: u64) -> Result<Vec<SessionKey>, StoreError> {
        self.inner.purge_expired(now_ms).await
    }
    async fn check_owner(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.unless_fenced(key)
    }
    fn owned_until(&self, _key: &SessionKey) -> Option<Instant> {
        *self.lease.lock().unwrap()
    }
}
