//! The demo (`bash scripts/demo`) end to end, on 300 messages: it must reach a clean verdict.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn the_demo_reaches_a_clean_verdict() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .arg("300")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the demo failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("300 sent, 300 received, 0 lost, 0 duplicated"),
        "{text}"
    );
    assert!(text.contains("kill -9"), "{text}");
}
