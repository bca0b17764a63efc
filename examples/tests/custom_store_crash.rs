//! The SIGKILL proof of the `custom_store` example's journal store, with the conformance
//! feature's crash harness: the example, started as `custom_store crash-child PATH`, commits
//! numbered batches until it is killed; every acknowledged batch must be there whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use mooring::conformance::crash::{self, Settings};
use mooring::store::SessionStore;

#[path = "../src/bin/custom_store/journal.rs"]
#[allow(dead_code)]
mod journal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_store_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::from_env(30);
    let report = crash::cycles(
        dir.path(),
        |path| {
            let mut child = Command::new(env!("CARGO_BIN_EXE_custom_store"));
            child.arg("crash-child").arg(path);
            child
        },
        |path| {
            // The example's store, opened as the example opens it.
            let store = journal::JournalStore::open(path.to_path_buf())?;
            Ok(Box::new(store) as Box<dyn SessionStore>)
        },
        settings,
    )
    .await;
    match report {
        Ok(report) => println!("journal store: {report}"),
        Err(e) => panic!("journal store: {e}"),
    }
}
