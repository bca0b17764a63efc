//! KvStore's own rules: the store's thread, reads a commit does without.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use super::*;
use crate::store::{SessionMeta, StoreOp};

/// A blocking backend that notes the thread each write ran on, and counts its reads.
#[derive(Default)]
struct Noting {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    threads: Mutex<Vec<String>>,
    reads: std::sync::atomic::AtomicUsize,
}

impl Noting {
    fn read(&self) {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl KvBackend for Noting {
    const NAME: &'static str = "noting";
    const BLOCKING: bool = true;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read();
        Ok(self.map.lock().unwrap().get(key).cloned())
    }

    fn visit_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.read();
        visit_map(&self.map.lock().unwrap(), start, end, visit);
        Ok(())
    }

    fn last_key_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read();
        let map = self.map.lock().unwrap();
        Ok(map
            .range(start.to_vec()..end.to_vec())
            .next_back()
            .map(|(k, _)| k.clone()))
    }

    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        self.threads.lock().unwrap().push(name);
        let mut map = self.map.lock().unwrap();
        for write in writes {
            match write {
                KvWrite::Put(k, v) => map.insert(k.clone(), v.clone()),
                KvWrite::Delete(k) => map.remove(k),
            };
        }
        Ok(())
    }
}

/// The smallest executor there is: poll, park until woken, poll again. No runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn a_blocking_backend_runs_on_the_stores_thread_under_any_executor() {
    let store = KvStore::new(Noting::default());
    let key = SessionKey::new("mqtt://a:1883", "c");
    let mut batch = Batch::new();
    batch.push(StoreOp::SetMeta(SessionMeta {
        session_expiry_interval: 60,
        ..SessionMeta::default()
    }));
    block_on(store.commit(&key, batch)).unwrap();
    let loaded = block_on(store.load(&key)).unwrap();
    assert_eq!(loaded.meta.map(|m| m.session_expiry_interval), Some(60));
    assert_eq!(block_on(store.sessions()).unwrap(), vec![key]);
    let threads = store.backend().threads.lock().unwrap().clone();
    assert_eq!(threads, vec!["mooring-store-noting".to_owned()]);
}

#[test]
fn dropping_the_last_clone_joins_the_thread_and_releases_the_backend() {
    let store = KvStore::new(Noting::default());
    let shared = Arc::downgrade(&store.shared);
    let clone = store.clone();
    drop(store);
    assert!(shared.upgrade().is_some(), "a clone still holds it");
    drop(clone);
    // The thread has been joined, so nothing holds the backend any more.
    assert!(shared.upgrade().is_none());
}

fn queued(n: u64) -> StoreOp {
    StoreOp::PushQueue {
        seq: n,
        message: crate::store::QueuedPublish {
            qos: crate::packet::QoS::AtLeastOnce,
            packet: bytes::Bytes::from(vec![0x30; 10 + n as usize]),
            expires_at_ms: None,
            accepted_at_ms: None,
        },
    }
}

/// The engine's steady state, a message removed from the queue's head and one pushed at
/// its tail, is one write and no read (a read is a round trip on PostgreSQL); the totals
/// stay exact.
#[test]
fn a_commit_to_a_resumed_queue_reads_nothing_before_it_writes() {
    let store = KvStore::new(Noting::default());
    let key = SessionKey::new("mqtt://a:1883", "c");
    let pushes: Batch = (1..=3).map(queued).collect();
    block_on(store.commit(&key, pushes)).unwrap();
    block_on(store.resume(&key, QueueWindow::ALL)).unwrap();
    let before = store.backend().reads();
    let turn: Batch = vec![StoreOp::RemoveQueue { seq: 1 }, queued(4)].into();
    block_on(store.commit(&key, turn)).unwrap();
    let turn: Batch = vec![StoreOp::RemoveQueue { seq: 2 }, queued(5)].into();
    block_on(store.commit(&key, turn)).unwrap();
    assert_eq!(store.backend().reads(), before, "a commit read the backend");
    let summary = block_on(store.resume(&key, QueueWindow::ALL))
        .unwrap()
        .queue_summary;
    assert_eq!((summary.messages, summary.bytes), (3, 13 + 14 + 15));
    assert_eq!(summary.last_seq, Some(5));
}

/// A blocking backend whose writes take a while and are counted: commits that arrive while
/// one is written wait together.
#[derive(Default)]
struct Slow {
    inner: Noting,
    writes: std::sync::atomic::AtomicUsize,
}

impl KvBackend for Slow {
    const NAME: &'static str = "slow";
    const BLOCKING: bool = true;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn visit_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.visit_range(start, end, visit)
    }

    fn last_key_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.last_key_in(start, end)
    }

    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.inner.apply(writes)
    }
}

/// Many clients on one store: their commits share writes (one `fdatasync` for many), and each
/// commit is there whole when it returns.
#[test]
fn commits_of_many_sessions_waiting_together_share_writes() {
    let store = KvStore::new(Slow::default());
    let sessions = 40;
    let threads: Vec<_> = (0..sessions)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let key = SessionKey::new("mqtt://a:1883", format!("device-{i}"));
                let batch: Batch = vec![queued(1), StoreOp::PutInbound { packet_id: 7 }].into();
                block_on(store.commit(&key, batch))
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
    let writes = store
        .backend()
        .writes
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        writes < sessions / 4,
        "{writes} writes for {sessions} commits"
    );
    assert_eq!(store.writes(), writes as u64);
    for i in 0..sessions {
        let key = SessionKey::new("mqtt://a:1883", format!("device-{i}"));
        let session = block_on(store.load(&key)).unwrap();
        assert_eq!(session.queue.len(), 1, "{key}");
        assert_eq!(session.inbound, vec![7], "{key}");
        assert_eq!(session.queue_summary.messages, 1, "{key}");
    }
}

/// A group whose write cannot be prepared, because one session's queue record is damaged,
/// is applied commit by commit: the damaged session's commit fails, the others succeed.
#[test]
fn one_sessions_damaged_record_fails_its_commit_alone_in_a_group() {
    let store = KvStore::new(Noting::default());
    let damaged = SessionKey::new("mqtt://a:1883", "damaged");
    let healthy = SessionKey::new("mqtt://a:1883", "healthy");
    block_on(store.commit(&damaged, vec![queued(1)].into())).unwrap();
    block_on(store.commit(&healthy, vec![queued(1)].into())).unwrap();
    // The record torn under the store, and the queue's shape forgotten (as after a reopen),
    // so that removing the message must read its length.
    store
        .backend()
        .map
        .lock()
        .unwrap()
        .insert(layout::queue_key(&damaged, 1), vec![0xFF; 3]);
    store.shared.shapes().remove(&damaged);
    let group = vec![
        (
            damaged.clone(),
            vec![StoreOp::RemoveQueue { seq: 1 }].into(),
        ),
        (
            healthy.clone(),
            vec![StoreOp::RemoveQueue { seq: 1 }].into(),
        ),
    ];
    let results = store.shared.commit_group(&group);
    assert!(
        results[0].is_err(),
        "the damaged session's commit succeeded"
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
    assert!(block_on(store.load(&healthy)).unwrap().queue.is_empty());
    // Nothing is poisoned: the healthy session writes on.
    block_on(store.commit(&healthy, vec![queued(2)].into())).unwrap();
}
