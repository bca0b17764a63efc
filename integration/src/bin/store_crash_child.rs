//! Child process of the store crash test: `store_crash_child redb|sled PATH`.
//!
//! Opens the store, finds the last batch it holds, then commits the following batches forever,
//! printing `committed N` after each `commit` returns. The parent kills it with SIGKILL.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use integration::crash_batches::{batch, last_whole_batch, session};
use mooring_core::store::SessionStore;

async fn run(store: impl SessionStore) -> Result<(), String> {
    let key = session();
    let loaded = store.load(&key).await.map_err(|e| e.to_string())?;
    let mut next = last_whole_batch(&loaded)?.map_or(0, |n| n + 1);
    let mut out = std::io::stdout().lock();
    loop {
        store
            .commit(&key, batch(next))
            .await
            .map_err(|e| e.to_string())?;
        writeln!(out, "committed {next}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        next += 1;
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: store_crash_child redb|sled PATH");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match kind.as_str() {
            "redb" => {
                run(integration::open_when_free(|| {
                    mooring_store_redb::RedbStore::open(path.as_str())
                })
                .map_err(|e| e.to_string())?)
                .await
            }
            "sled" => {
                run(integration::open_when_free(|| {
                    mooring_store_sled::SledStore::open(path.as_str())
                })
                .map_err(|e| e.to_string())?)
                .await
            }
            other => Err(format!("unknown store {other:?}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store_crash_child: {e}");
            ExitCode::FAILURE
        }
    }
}
