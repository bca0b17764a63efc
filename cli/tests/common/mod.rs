//! What every test of the `mooring` command needs: running it, and reading what it printed.

use std::process::{Command, Output};

/// Runs the `mooring` command with `args`.
pub fn mooring(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mooring"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("mooring {args:?} does not run: {e}"))
}

/// Printed bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
