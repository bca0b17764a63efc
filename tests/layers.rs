//! The client's files keep a direction (ARCHITECTURE.md, "The client's layers"): the types the
//! application and the driver share at the bottom, transports and policies beside them, the
//! driver above, `Client` and the builder on top. This test reads the imports between the
//! modules of `src/client/` and fails on a circle, and on any module but the top ones taking
//! a name from `client/mod.rs` (`Client` and the re-exports), which would hide a circle
//! behind it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The modules that may use what `client/mod.rs` defines or re-exports: those above it.
const ABOVE_THE_CLIENT: [&str; 2] = ["launch", "forward"];

/// A file of `src/client/`, tests left out: the client module it belongs to (a folder is one
/// module), whether its `super::` is `client/mod.rs` (a file directly in `client/`, or a
/// folder's `mod.rs`) rather than its own module, and its text.
struct File {
    module: String,
    super_is_client: bool,
    text: String,
}

fn files() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/client");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(&root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if relative.ends_with("tests.rs") || relative.contains("/tests/") {
                continue;
            }
            let first = relative.split('/').next().unwrap().trim_end_matches(".rs");
            let module = if relative == "mod.rs" { "mod" } else { first };
            let text = fs::read_to_string(&path).unwrap();
            // The unit tests at the end of a file import what they like.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            files.push(File {
                module: module.to_owned(),
                super_is_client: !relative.contains('/') || relative.ends_with("/mod.rs"),
                text: code.to_owned(),
            });
        }
    }
    files
}

/// The client modules `file` imports (`mod` for a name taken from `client/mod.rs` itself),
/// not counting comments.
fn imports(file: &File, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let client_prefixes: &[&str] = if file.super_is_client {
        &["crate::client::", "super::"]
    } else {
        &["crate::client::", "super::super::"]
    };
    let mut found = BTreeSet::new();
    // The closing line of a module nested in the file, while inside one: its `super::` is
    // the file's own module.
    let mut nested: Option<String> = None;
    for line in file.text.lines() {
        let code = line.trim_start();
        if let Some(end) = &nested {
            if line == end {
                nested = None;
            }
            continue;
        }
        let declares = code
            .split("mod ")
            .next()
            .is_some_and(|head| ["", "pub ", "pub(crate) ", "pub(super) "].contains(&head));
        if declares && code.contains("mod ") && code.ends_with('{') {
            nested = Some(format!("{}}}", &line[..line.len() - code.len()]));
            continue;
        }
        if code.starts_with("//") {
            continue;
        }
        for prefix in client_prefixes {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                // `super::super::` read from `super::` is not the client: skip it.
                let before = &rest[..at];
                let after = &rest[at + prefix.len()..];
                rest = after;
                if before.ends_with("super::") || after.starts_with("super::") {
                    continue;
                }
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let module = if modules.contains(&name) {
                    name
                } else {
                    "mod".to_owned()
                };
                if module != file.module {
                    found.insert(module);
                }
            }
        }
    }
    found
}

#[test]
fn the_client_modules_import_downward_only_without_circles() {
    let files = files();
    let names: BTreeSet<String> = files.iter().map(|f| f.module.clone()).collect();
    let mut graph: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        graph
            .entry(file.module.as_str())
            .or_default()
            .extend(imports(file, &names));
    }
    let through_the_root: Vec<&&str> = graph
        .iter()
        .filter(|(name, uses)| {
            uses.contains("mod") && !ABOVE_THE_CLIENT.contains(name) && **name != "mod"
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        through_the_root.is_empty(),
        "modules taking names from client/mod.rs (import them from where they are defined): \
         {through_the_root:?}"
    );
    // Peel off modules that import nothing left; what remains holds a circle.
    let mut left: BTreeMap<&str, BTreeSet<String>> = graph.clone();
    loop {
        let free: Vec<&str> = left
            .iter()
            .filter(|(_, uses)| uses.iter().all(|u| !left.contains_key(u.as_str())))
            .map(|(name, _)| *name)
            .collect();
        if free.is_empty() {
            break;
        }
        for name in free {
            left.remove(name);
        }
    }
    assert!(
        left.is_empty(),
        "client modules that import each other in a circle: {left:#?}"
    );
}

/// Structs of the driver whose fields other files may read: plain data that one concern
/// hands to another, and what starting a client hands the driver.
const DRIVER_DATA: [&str; 2] = ["SessionLostCounts", "Parts"];

/// Every concern of the driver keeps its state behind its methods (ARCHITECTURE.md, "Inside
/// the driver"): no struct of `src/client/driver/` but `Driver` itself, which the concerns
/// meet in, and the plain data of [`DRIVER_DATA`] opens a field to the other files.
#[test]
fn no_driver_file_reaches_into_another_concerns_state() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/client/driver");
    let mut open = Vec::new();
    for entry in fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let mut current: Option<String> = None;
        for line in code.lines() {
            let trimmed = line.trim_start();
            if !line.starts_with(' ') {
                current = trimmed
                    .split_once("struct ")
                    .filter(|(before, _)| !before.contains("//"))
                    .map(|(_, rest)| {
                        rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                            .unwrap_or("")
                            .to_owned()
                    });
                continue;
            }
            let Some(name) = &current else { continue };
            let field = trimmed.starts_with("pub(super) ") || trimmed.starts_with("pub(crate) ");
            let is_field = trimmed
                .split_once(':')
                .is_some_and(|(head, _)| !head.contains('(') || head.starts_with("pub("));
            if field
                && is_field
                && !trimmed.contains(" fn ")
                && !DRIVER_DATA.contains(&name.as_str())
            {
                open.push(format!(
                    "{}: {name}: {trimmed}",
                    path.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(
        open.is_empty(),
        "driver state open to other files (keep it behind methods):\n{}",
        open.join("\n")
    );
}
