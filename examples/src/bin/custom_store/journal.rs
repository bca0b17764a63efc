//! The journal store of the `custom_store` example: a map in memory, rebuilt on open from a
//! journal file to which every commit is appended as one checksummed record and synced.
//! The example's tests include this file too (`examples/tests/custom_store_crash.rs`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use mooring::store::layout::KvWrite;
use mooring::store::{KvBackend, KvOpen, KvStore, StoreError, visit_map};

/// The map in memory, and the journal that rebuilds it.
pub struct JournalBackend {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    journal: Mutex<File>,
    /// Armed, the next commit fails (the conformance suite's failing disk).
    pub fail_next: AtomicBool,
}

/// The journal store: the session logic is `KvStore`'s.
pub type JournalStore = KvStore<JournalBackend>;

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
/// Returns how many bytes the whole records take.
fn replay(bytes: &[u8], map: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> usize {
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
    let mut whole = 0;
    loop {
        let before = rest.len();
        let Some(n) = len(&mut rest) else {
            return whole;
        };
        let (Some(body), Some(crc)) = (take(&mut rest, n), take(&mut rest, 4)) else {
            return whole;
        };
        if crc32(body).to_be_bytes() != crc {
            return whole;
        }
        // A record that checks out was written whole by `encode`.
        let mut b = body;
        while let Some(tag) = take(&mut b, 1) {
            let Some(key) = len(&mut b).and_then(|n| take(&mut b, n)) else {
                break;
            };
            if tag == [0] {
                let Some(value) = len(&mut b).and_then(|n| take(&mut b, n)) else {
                    break;
                };
                map.insert(key.to_vec(), value.to_vec());
            } else {
                map.remove(key);
            }
        }
        whole += before - rest.len();
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
        let whole = replay(&bytes, &mut map);
        // A torn tail goes: records appended after it would never be replayed.
        if whole < bytes.len() {
            journal.set_len(whole as u64).map_err(io)?;
            journal.sync_data().map_err(io)?;
        }
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
