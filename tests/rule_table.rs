//! RULES.md has one row for each client rule of MQTT v5.0 (`tests/data/mqtt5-client-rules.txt`)
//! and RULES-311.md one for each of MQTT 3.1.1 (`tests/data/mqtt311-client-rules.txt`); every
//! test a row cites as proof exists in the workspace as a test, and each row's kind of proof is
//! backed by what its tests do: a sender row cites a test that builds a packet on the client's
//! side, a receiver row one that hands the client a packet.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Calls that build a packet on the client's side: the encoder (and the vectors' helpers that
/// drive it), the session's output and the requests that make it, the driver's bytes as a fake
/// broker reads them.
const SENDER: &[&str] = &[
    "both_ways(",
    "refused_encode(",
    ".encode(",
    "encoded(",
    "encoded_len(",
    "flush(",
    "poll_output(",
    "connect_packet(",
    "h.connack(",
    ".publish(",
    ".subscribe(",
    ".unsubscribe(",
    "peer.recv(",
    "try_recv(",
    "peer.connect(",
    ".accept(",
    ".suback(",
    "acks(&mut",
    "ws.next(",
];

/// Calls that hand the client a packet: the decoder (and the vectors' helpers that drive it),
/// the session's handling of what the server sent, a fake broker's bytes, a real broker's
/// messages as the application takes them.
const RECEIVER: &[&str] = &[
    "both_ways(",
    "decodes_to(",
    "malformed(",
    "refused(",
    "protocol_error(",
    ".decode(",
    "Reader::new(",
    "handle_",
    "peer.send(",
    "send_raw(",
    "ws.send(",
    "messages.recv(",
];

/// A function of the workspace: whether it is a test, its body, and its file.
struct Function {
    test: bool,
    body: String,
    file: PathBuf,
}

fn rust_files() -> Vec<PathBuf> {
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
    files
}

/// The text from the `{` at or after `from` to its matching `}` (braces in strings and
/// comments are rare enough in test bodies to ignore).
fn block(text: &str, from: usize) -> &str {
    let Some(open) = text.get(from..).and_then(|t| t.find('{')) else {
        return "";
    };
    let start = from + open;
    let mut depth = 0usize;
    for (at, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[start..=start + at];
                }
            }
            _ => {}
        }
    }
    &text[start..]
}

/// Whether the attributes right above `at` (the start of `fn`) make it a test.
fn is_test(text: &str, at: usize) -> bool {
    text[..at]
        .lines()
        .rev()
        .map(str::trim)
        .take_while(|l| {
            l.starts_with("#[")
                || l.starts_with("//")
                || l.starts_with("async")
                || l.starts_with("pub")
                || l.ends_with(")]")
        })
        .any(|l| l.starts_with("#[") && l.contains("test"))
}

/// Every function of the workspace's Rust sources, by name (a name may be defined more than
/// once).
fn functions() -> BTreeMap<String, Vec<Function>> {
    let mut found: BTreeMap<String, Vec<Function>> = BTreeMap::new();
    for file in rust_files() {
        let text = fs::read_to_string(&file).unwrap();
        let mut from = 0;
        while let Some(found_at) = text[from..].find("fn ") {
            let at = from + found_at;
            from = at + 3;
            let name: String = text[from..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                continue;
            }
            let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
            found.entry(name).or_default().push(Function {
                test: is_test(&text, line_start),
                body: block(&text, from).to_owned(),
                file: file.clone(),
            });
        }
    }
    found
}

/// What a test does, with the bodies of the functions it calls that are defined in its own
/// file (the vectors' and the fake broker's helpers), one level down.
fn reach(test: &Function, all: &BTreeMap<String, Vec<Function>>) -> String {
    let mut text = test.body.clone();
    let mut word = String::new();
    for c in test.body.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if c == '(' && !word.is_empty() {
            for helper in all.get(&word).into_iter().flatten() {
                if !helper.test && helper.file == test.file {
                    text.push_str(&helper.body);
                }
            }
        }
        word.clear();
    }
    text
}

/// A row of RULES.md: identifier, kinds, the whole line, the cited tests.
struct Row {
    id: String,
    kinds: Vec<String>,
    line: String,
    tests: Vec<String>,
}

/// The two tables: the file, the list of identifiers it covers, and how many the list holds.
const TABLES: [(&str, &str, usize); 2] = [
    ("RULES.md", "tests/data/mqtt5-client-rules.txt", 133),
    ("RULES-311.md", "tests/data/mqtt311-client-rules.txt", 81),
];

fn rows(table: &str) -> Vec<Row> {
    let table = fs::read_to_string(root().join(table)).unwrap();
    table
        .lines()
        .filter(|l| l.starts_with("| MQTT-"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let proof = cells[cells.len() - 2];
            Row {
                id: cells[1].to_owned(),
                kinds: cells[2].split(',').map(|k| k.trim().to_owned()).collect(),
                line: line.to_owned(),
                tests: proof
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn every_listed_rule_has_one_row_and_every_cited_test_exists() {
    let functions = functions();
    for (table, list, count) in TABLES {
        one_row_per_rule_and_tests_that_exist(table, list, count, &functions);
    }
}

fn one_row_per_rule_and_tests_that_exist(
    table: &str,
    list: &str,
    count: usize,
    functions: &BTreeMap<String, Vec<Function>>,
) {
    let list: Vec<String> = fs::read_to_string(root().join(list))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("MQTT-"))
        .filter_map(|l| l.split('\t').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        list.len(),
        count,
        "{table}: the list holds {count} client rules"
    );
    let rows = rows(table);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        *counts.entry(row.id.as_str()).or_default() += 1;
        assert!(
            !row.tests.is_empty(),
            "{table}, {}: the row cites no test",
            row.id
        );
    }
    let missing: Vec<&String> = list
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{table}: rules without a row: {missing:?}"
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{table}: rules with more than one row: {twice:?}"
    );
    let extra: Vec<_> = counts
        .keys()
        .filter(|id| !list.iter().any(|l| l == *id))
        .collect();
    assert!(
        extra.is_empty(),
        "{table}: rows for identifiers not on the list: {extra:?}"
    );
    let not_tests: BTreeSet<(&str, &str)> = rows
        .iter()
        .flat_map(|row| row.tests.iter().map(move |t| (row.id.as_str(), t.as_str())))
        .filter(|(_, t)| !functions.get(*t).is_some_and(|f| f.iter().any(|f| f.test)))
        .collect();
    assert!(
        not_tests.is_empty(),
        "{table}: cited tests that do not exist as tests: {not_tests:?}"
    );
}

#[test]
fn each_rows_kind_of_proof_is_backed_by_what_its_tests_do() {
    const KINDS: [&str; 4] = ["sender", "receiver", "construction", "deviation"];
    let functions = functions();
    let mut wrong = Vec::new();
    for row in TABLES.iter().flat_map(|(table, _, _)| {
        rows(table).into_iter().map(move |mut row| {
            row.id = format!("{table}, {}", row.id);
            row
        })
    }) {
        if row.kinds.is_empty() || row.kinds.iter().any(|k| !KINDS.contains(&k.as_str())) {
            wrong.push(format!(
                "{}: kinds {:?}, not of {KINDS:?}",
                row.id, row.kinds
            ));
            continue;
        }
        let does = |calls: &[&str]| {
            row.tests.iter().any(|name| {
                functions.get(name).into_iter().flatten().any(|f| {
                    let text = reach(f, &functions);
                    f.test && calls.iter().any(|call| text.contains(call))
                })
            })
        };
        let has = |kind: &str| row.kinds.iter().any(|k| k == kind);
        if (has("sender") || has("construction")) && !does(SENDER) {
            wrong.push(format!(
                "{}: a sender rule, but no cited test builds a packet on the client's side",
                row.id
            ));
        }
        if has("receiver") && !does(RECEIVER) {
            wrong.push(format!(
                "{}: a receiver rule, but no cited test hands the client a packet",
                row.id
            ));
        }
        if has("deviation") && !row.line.contains("Declared deviation") {
            wrong.push(format!(
                "{}: a deviation, but the row does not declare it",
                row.id
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
