//! The end-to-end benchmark in its smoke mode (tiny counts): it must run to the end and print
//! every table. No number is checked; BENCHMARKS.md holds the real runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_benchmark_runs_every_row() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("smoke")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("| rumqttc msg/s |").count(), 1, "{text}");
    // 12 workloads (QoS × payload × tasks) × 3 stores.
    let rows = text
        .lines()
        .filter(|l| l.contains(" B | ") && !l.contains("forwarding"))
        .count();
    assert_eq!(rows, 36, "{text}");
    assert!(
        text.contains("| redb |") && text.contains("all retransmitted"),
        "{text}"
    );
}
