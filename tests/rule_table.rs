//! RULES.md has one row for each client rule of MQTT v5.0 (`tests/data/mqtt5-client-rules.txt`),
//! and every test a row cites as proof exists in the workspace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `fn` name in the workspace's Rust sources.
fn functions() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() && name != "target" && !name.starts_with('.') {
                walk(&path, out);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(root(), &mut files);
    let mut names = BTreeSet::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for rest in text.split("fn ").skip(1) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

#[test]
fn every_listed_rule_has_one_row_and_every_cited_test_exists() {
    let list: Vec<String> = fs::read_to_string(root().join("tests/data/mqtt5-client-rules.txt"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("MQTT-"))
        .map(str::to_owned)
        .collect();
    assert_eq!(list.len(), 133, "the list holds the 133 client rules");
    let table = fs::read_to_string(root().join("RULES.md")).unwrap();
    let mut rows: BTreeMap<String, usize> = BTreeMap::new();
    let mut cited = BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| MQTT-")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (id, proof) = (cells[1], cells[cells.len() - 2]);
        *rows.entry(id.to_owned()).or_default() += 1;
        let tests: Vec<&str> = proof.split('`').skip(1).step_by(2).collect();
        assert!(!tests.is_empty(), "{id}: the row cites no test");
        cited.extend(tests.into_iter().map(|t| (id.to_owned(), t.to_owned())));
    }
    let missing: Vec<&String> = list.iter().filter(|id| !rows.contains_key(*id)).collect();
    assert!(missing.is_empty(), "rules without a row: {missing:?}");
    let twice: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "rules with more than one row: {twice:?}");
    let extra: Vec<_> = rows.keys().filter(|id| !list.contains(id)).collect();
    assert!(
        extra.is_empty(),
        "rows for identifiers not on the list: {extra:?}"
    );
    let functions = functions();
    let unknown: Vec<_> = cited
        .iter()
        .filter(|(_, test)| !functions.contains(test))
        .collect();
    assert!(
        unknown.is_empty(),
        "cited tests that do not exist: {unknown:?}"
    );
}
