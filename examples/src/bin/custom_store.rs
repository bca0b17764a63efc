//! A store of your own: a journal file (every commit appended as one checksummed record and
//! fsync'd, replayed on open), given the whole session logic by `KvStore`, proved correct by
//! the conformance suite, then used by a client.
//!
//! `MQTT_URL=mqtt://127.0.0.1:1883 cargo run -p examples --bin custom_store`
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mooring::conformance::{self, Damage, StoreFactory};
use mooring::store::layout::KvWrite;
use mooring::store::{KvBackend, KvOpen, KvStore, SessionKey, StoreError, visit_map};
use mooring::{Client, QoS};

/// The map in memory, and the journal that rebuilds it.
struct JournalBackend {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    journal: Mutex<File>,
    fail_next: AtomicBool,
}

type JournalStore = KvStore<JournalBackend>;

const NAME: &str = "journal store";

fn io(e: std::io::Error) -> StoreError {
    StoreError::backend(NAME, e)
}

/// A record: length (u32 BE) | writes | CRC-32 of the writes. A write: tag (0 put, 1 delete),
/// key length (u32 BE), key, and for a put value length (u32 BE) and value.
fn encode(writes: &[KvWrite]) -> Vec<u8> {
    let mut body = Vec::new();
    let field = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    for write in writes {
        match write {
            KvWrite::Put(k, v) => {
                body.push(0);
                field(&mut body, k);
                field(&mut body, v);
            }
            KvWrite::Delete(k) => {
                body.push(1);
                field(&mut body, k);
            }
        }
    }
    let mut record = (body.len() as u32).to_be_bytes().to_vec();
    record.extend_from_slice(&body);
    record.extend_from_slice(&crc32(&body).to_be_bytes());
    record
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Replays whole records; a torn or damaged tail (a crash mid-append) ends the replay.
fn replay(bytes: &[u8], map: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (b.get(..n)?, b.get(n..)?);
        *b = tail;
        Some(head)
    }
    fn len(b: &mut &[u8]) -> Option<usize> {
        let raw: [u8; 4] = take(b, 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(raw) as usize)
    }
    let mut rest = bytes;
    while let Some(n) = len(&mut rest) {
        let (Some(body), Some(crc)) = (take(&mut rest, n), take(&mut rest, 4)) else {
            return;
        };
        if crc32(body).to_be_bytes() != crc {
            return;
        }
        let mut b = body;
        while let Some(tag) = take(&mut b, 1) {
            let Some(key) = len(&mut b).and_then(|n| take(&mut b, n)) else {
                return;
            };
            if tag == [0] {
                let Some(value) = len(&mut b).and_then(|n| take(&mut b, n)) else {
                    return;
                };
                map.insert(key.to_vec(), value.to_vec());
            } else {
                map.remove(key);
            }
        }
    }
}

impl KvOpen for JournalBackend {
    type Options = PathBuf;

    fn open(path: PathBuf) -> Result<Self, StoreError> {
        let mut journal = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        journal.read_to_end(&mut bytes).map_err(io)?;
        let mut map = BTreeMap::new();
        replay(&bytes, &mut map);
        Ok(Self {
            map: Mutex::new(map),
            journal: Mutex::new(journal),
            fail_next: AtomicBool::new(false),
        })
    }
}

impl KvBackend for JournalBackend {
    const NAME: &'static str = NAME;
    const BLOCKING: bool = true;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.lock().map_err(|_| poisoned())?.get(key).cloned())
    }

    fn visit_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let map = self.map.lock().map_err(|_| poisoned())?;
        visit_map(&map, start, end, visit);
        Ok(())
    }

    fn last_key_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self.map.lock().map_err(|_| poisoned())?;
        Ok(map
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .next_back()
            .map(|(k, _)| k.clone()))
    }

    fn apply(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(io(std::io::Error::other("injected failure")));
        }
        // Durable first, visible after.
        let mut journal = self.journal.lock().map_err(|_| poisoned())?;
        journal.write_all(&encode(writes)).map_err(io)?;
        journal.sync_data().map_err(io)?;
        let mut map = self.map.lock().map_err(|_| poisoned())?;
        replay(&encode(writes), &mut map);
        Ok(())
    }
}

fn poisoned() -> StoreError {
    StoreError::backend(
        NAME,
        std::io::Error::other("a thread panicked holding the store"),
    )
}

/// How the conformance suite makes, reopens and damages journal stores.
struct Factory(tempfile::TempDir, std::sync::atomic::AtomicU32);

#[async_trait::async_trait]
impl StoreFactory for Factory {
    type Store = JournalStore;
    type Location = PathBuf;

    async fn create(&self) -> Result<(JournalStore, PathBuf), StoreError> {
        let n = self.1.fetch_add(1, Ordering::SeqCst);
        let path = self.0.path().join(format!("store-{n}.journal"));
        Ok((JournalStore::open(path.clone())?, path))
    }

    async fn reopen(&self, path: &PathBuf) -> Result<JournalStore, StoreError> {
        JournalStore::open(path.clone())
    }

    async fn damage(
        &self,
        path: &PathBuf,
        session: &SessionKey,
        damage: Damage,
    ) -> Result<bool, StoreError> {
        // Damage the record through a backend of its own, as a bad disk would under the file.
        let backend = JournalBackend::open(path.clone())?;
        conformance::damage_kv_record(&backend, session, damage)
    }

    fn fail_next_commit(&self, store: &JournalStore) -> bool {
        store.backend().fail_next.store(true, Ordering::SeqCst);
        true
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let report = conformance::run(&Factory(tempfile::tempdir()?, Default::default())).await;
    println!("{report}");
    if !report.passed_all() {
        return Err("the journal store fails the conformance suite".into());
    }

    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let dir = tempfile::tempdir()?;
    let store = Arc::new(JournalStore::open(dir.path().join("client.journal"))?);
    let (client, _messages) = Client::builder()
        .protocol(examples::mqtt_version()?)
        .server(url)
        .client_id("mooring-custom-store")
        .store_arc(store)
        .connect()
        .await?;
    let reason = client
        .publish("custom/store", "kept in a journal", QoS::ExactlyOnce)
        .await?
        .await?;
    println!("published through the journal store: {reason:?}");
    client.disconnect().await?;
    Ok(())
}
