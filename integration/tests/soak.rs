//! The soak's short form, for CI: one minute of `src/bin/soak.rs` (two cuts, one broker
//! restart, six samples) must pass its whole verdict. `scripts/soak.sh MINUTES` runs a long one.

use std::process::Command;

#[test]
fn a_one_minute_soak_passes_its_verdict() {
    let out = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(["1", "redb"])
        .output()
        .expect("the soak runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the soak failed its verdict");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS ")).count(),
        8,
        "every verdict line passed"
    );
}
