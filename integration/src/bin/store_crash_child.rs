//! Child process of the store crash test: `store_crash_child redb|sled|sqlite PATH`.
//!
//! Opens the store and hands it to the conformance suite's crash child
//! (`mooring_core::conformance::crash::run_child`), which commits numbered batches until the
//! parent kills it with SIGKILL.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use mooring_core::conformance::crash;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: store_crash_child redb|sled|sqlite PATH");
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
        let store = integration::open_embedded_store(kind, std::path::Path::new(path))
            .map_err(|e| e.to_string())?;
        crash::run_child(&*store).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store_crash_child: {e}");
            ExitCode::FAILURE
        }
    }
}
