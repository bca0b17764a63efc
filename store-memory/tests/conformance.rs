//! The store conformance suite against MemoryStore.

// Test code: a broken expectation should stop the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mooring_core::conformance::{self, Damage, StoreFactory};
use mooring_core::store::{SessionKey, StoreError};
use mooring_store_memory::{MemoryBackend, MemoryStore};

struct Factory;

#[async_trait::async_trait]
impl StoreFactory for Factory {
    type Store = MemoryStore;
    type Location = MemoryBackend;

    async fn create(&self) -> Result<(MemoryStore, MemoryBackend), StoreError> {
        let backend = MemoryBackend::new();
        Ok((MemoryStore::new(backend.clone()), backend))
    }

    async fn reopen(&self, backend: &MemoryBackend) -> Result<MemoryStore, StoreError> {
        Ok(MemoryStore::new(backend.clone()))
    }

    async fn damage(
        &self,
        _backend: &MemoryBackend,
        _session: &SessionKey,
        _damage: Damage,
    ) -> Result<bool, StoreError> {
        // Records in memory are kept as they were given, not as bytes a crash could tear.
        Ok(false)
    }

    fn fail_next_commit(&self, store: &MemoryStore) -> bool {
        store.backend().fail_next_commit();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_conformance_suite() {
    let report = conformance::run(&Factory).await;
    assert_eq!(report.failures().count(), 0, "{report}");
    // Only the checks of damaged records are skipped: memory holds no bytes to damage.
    let skipped: Vec<&str> = report
        .results
        .iter()
        .filter(|r| matches!(r.outcome, conformance::Outcome::Skipped(_)))
        .map(|r| r.name)
        .collect();
    assert_eq!(
        skipped,
        [
            "a_flipped_bit_is_an_error",
            "a_truncated_record_is_an_error",
            "a_zero_filled_record_is_an_error"
        ],
        "{report}"
    );
}
