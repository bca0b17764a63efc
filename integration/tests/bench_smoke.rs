//! The end-to-end benchmark in its smoke mode (tiny counts): it must run to the end and print
//! every table. No rate is checked (BENCHMARKS.md holds the real runs); counts that say a row worked are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

fn run_bench(args: &[&str]) -> String {
    // The windows table draws its chart: into a directory of the test's, not the source tree.
    let charts = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .env("MOORING_BENCH_SVG", charts.path().join("bench-windows.svg"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn the_window_tables_run_every_row() {
    let text = run_bench(&["windows", "320", "1"]);
    // 64 B: 3 windows × 2 QoS; 4 KiB: 2 windows; 20 ms round trip: 2 QoS.
    let rows = |first: &str| text.lines().filter(|l| l.starts_with(first)).count();
    assert_eq!(
        rows("| 20 | ") + rows("| 100 | ") + rows("| 0 (65,535) | "),
        8,
        "{text}"
    );
    assert!(
        text.contains("| 1 | 1000 | ") && text.contains("| 2 | 500 | "),
        "{text}"
    );
    assert!(text.contains("MB/s"), "{text}");
}

#[test]
fn the_receiving_table_runs_every_row() {
    let text = run_bench(&["receive", "200", "1"]);
    for row in [
        "| 0 | automatic |",
        "| 1 | automatic |",
        "| 1 | manual |",
        "| 2 | automatic |",
        "| 2 | manual |",
    ] {
        assert!(text.contains(row), "{row} missing:\n{text}");
    }
}

#[test]
fn the_sessions_table_runs_every_row() {
    let text = run_bench(&["sessions", "50", "500"]);
    for row in [
        "| connect one after another, total |",
        "| memory per idle connected client",
        "| one QoS 1 publish from each client, all at once |",
        "| store writes for those publishes |",
        "| restart after SIGKILL: all 50 resumed and connected, at most 500 connects/s |",
    ] {
        assert!(text.contains(row), "{row} missing:\n{text}");
    }
}

#[test]
fn the_tls_reconnection_row_runs_and_resumes_every_session() {
    let text = run_bench(&["tls", "5"]);
    // reconnections | p50 | p99 | client CPU | broker CPU | handshakes | resumed
    let row = text
        .lines()
        .find(|l| l.starts_with("| 5 |"))
        .unwrap_or_else(|| panic!("no row for 5 reconnections:\n{text}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells.get(6..8), Some(&["5", "5"][..]), "{row}");
}

/// `bench quic` builds an emulated link (a network namespace and TUN devices), which needs
/// root: CI runs as root and must run it; elsewhere, without root, it says so and returns.
#[test]
fn the_quic_table_runs_tcp_and_quic_over_the_emulated_link() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run bench quic: it needs root for its network namespace"
        );
        eprintln!("skipped: bench quic needs root (a network namespace and TUN devices)");
        return;
    }
    let text = run_bench(&["quic", "40", "1"]);
    for row in [
        "| TCP | 0 % |",
        "| QUIC | 0 % |",
        "| TCP | 1 % |",
        "| QUIC | 1 % |",
    ] {
        assert!(text.contains(row), "{row} missing:\n{text}");
    }
}

#[test]
fn the_backlog_tables_run_every_row() {
    let text = run_bench(&["backlog", "2000", "1000", "200", "3"]);
    let row = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start}\n{text}"))
            .split(" | ")
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for class in ["| class 1 | 1000 |", "| class 0 (no classes) | 1000 |"] {
        let cells = row(class);
        assert!(
            cells[4].parse::<u32>().unwrap() > 0,
            "no alarm arrived: {cells:?}"
        );
    }
    // Latest-value: one queued value per topic; every value kept: all of them.
    assert_eq!(row("| latest-value |")[2], "200", "{text}");
    assert_eq!(row("| every value kept |")[2], "600", "{text}");
}
