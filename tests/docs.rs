//! What the documents claim about the crate agrees with the crate: the feature lists of
//! README.md and of the crate's rustdoc (src/lib.rs) name every feature of Cargo.toml, and
//! only those, with the defaults Cargo.toml has.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

fn read(file: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
}

/// Feature name to whether it is a default, from Cargo.toml's `[features]`.
fn cargo_features() -> BTreeMap<String, bool> {
    let manifest = read("Cargo.toml");
    let section = manifest
        .split("\n[features]\n")
        .nth(1)
        .expect("a [features] section")
        .split("\n[")
        .next()
        .unwrap();
    let mut names = Vec::new();
    let mut defaults = Vec::new();
    for line in section.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.starts_with('#') || name.is_empty() {
            continue;
        }
        if name == "default" {
            defaults = value
                .trim()
                .trim_matches(['[', ']'])
                .split(',')
                .map(|d| d.trim().trim_matches('"').to_owned())
                .filter(|d| !d.is_empty())
                .collect();
        } else {
            names.push(name.to_owned());
        }
    }
    names
        .into_iter()
        .map(|n| {
            let default = defaults.contains(&n);
            (n, default)
        })
        .collect()
}

/// Feature name to default, from a Markdown table whose rows start `| \`name\` | yes/no |`
/// under the header `| Feature | Default | Gives |` (lines with `prefix` taken off first).
fn documented_features(text: &str, prefix: &str) -> BTreeMap<String, bool> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_prefix(prefix).unwrap_or(l).trim_start())
        .collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("| Feature | Default |"))
        .expect("a feature table");
    lines[start + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let default = match cells[2] {
                "yes" => true,
                "no" => false,
                other => panic!("{name}: default {other:?} is neither yes nor no"),
            };
            (name, default)
        })
        .collect()
}

#[test]
fn the_feature_lists_are_cargo_tomls() {
    let cargo = cargo_features();
    assert!(cargo.len() >= 8, "{cargo:?}");
    assert_eq!(
        documented_features(&read("README.md"), ""),
        cargo,
        "README.md's feature table"
    );
    assert_eq!(
        documented_features(&read("src/lib.rs"), "//!"),
        cargo,
        "the crate docs' feature table (src/lib.rs)"
    );
}
