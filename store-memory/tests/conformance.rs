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
        backend: &MemoryBackend,
        session: &SessionKey,
        damage: Damage,
    ) -> Result<bool, StoreError> {
        conformance::damage_kv_record(backend, session, damage)
    }

    fn fail_next_commit(&self, store: &MemoryStore) -> bool {
        store.backend().fail_next_commit();
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_conformance_suite() {
    let report = conformance::run(&Factory).await;
    assert!(report.passed_all(), "{report}");
}
