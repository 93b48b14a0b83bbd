//! The docs name files by their paths, and this test keeps those names true: it reads README.md
//! and every docs/*.md, finds each repository path they mention (`src/...`, `tests/...`,
//! `scripts/...`, `examples/...`, `docs/...`, `fuzz/...`, with a file extension or a trailing
//! `/`), and fails listing every one that does not exist. It also fails on a merge-conflict
//! marker left in any of them.
//!
//! docs/BENCHMARKS*.md are records of past runs and name files as they were at the time (the
//! alarm's `src/alarm.rs` of commit 2c263a0): they are checked for conflict markers only.

use std::path::{Path, PathBuf};

/// Where a repository path starts.
const ROOTS: [&str; 6] = ["src/", "tests/", "scripts/", "examples/", "docs/", "fuzz/"];

pub(crate) fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, in a fixed order.
pub(crate) fn documents() -> Vec<PathBuf> {
    let mut found = vec![repository().join("README.md")];
    for entry in std::fs::read_dir(repository().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Records of past runs: their paths are history, not links (see the module docs).
fn is_record_of_past_runs(document: &Path) -> bool {
    document
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("BENCHMARKS"))
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./-".contains(c)
}

/// The repository paths `text` mentions, with their line numbers: a run of path characters that
/// starts with one of [`ROOTS`] (and is not the tail of a longer path or a URL), ending in a file
/// extension or a `/`. A sentence's full stop is not part of the path.
fn mentioned_paths(text: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for root in ROOTS {
            for (start, _) in line.match_indices(root) {
                if line[..start].chars().next_back().is_some_and(is_path_char) {
                    continue; // `/work/shared/docs/`, `https://example.com/src/...`
                }
                let rest = &line[start..];
                let end = rest.find(|c| !is_path_char(c)).unwrap_or(rest.len());
                let path = rest[..end].trim_end_matches('.');
                let last = path.rsplit('/').next().unwrap_or("");
                if path.ends_with('/') || last.contains('.') {
                    found.push((number + 1, path));
                }
            }
        }
    }
    found.sort();
    found
}

/// A line git leaves when a merge conflicts.
fn is_conflict_marker(line: &str) -> bool {
    line.starts_with("<<<<<<< ") || line.starts_with(">>>>>>> ") || line == "======="
}

pub(crate) fn name(document: &Path) -> String {
    document
        .strip_prefix(repository())
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn every_path_the_docs_mention_exists() {
    let mut checked = 0;
    let mut missing = Vec::new();
    for document in documents() {
        if is_record_of_past_runs(&document) {
            continue;
        }
        let text = std::fs::read_to_string(&document).unwrap();
        for (line, path) in mentioned_paths(&text) {
            checked += 1;
            if !repository().join(path).exists() {
                missing.push(format!("{}:{line}: {path}", name(&document)));
            }
        }
    }
    // A checker that found no paths would pass everything.
    assert!(checked > 100, "only {checked} paths found in the docs");
    assert!(
        missing.is_empty(),
        "paths in the docs that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_conflict_marker_is_left_in_the_docs() {
    let mut markers = Vec::new();
    for document in documents() {
        let text = std::fs::read_to_string(&document).unwrap();
        for (number, line) in text.lines().enumerate() {
            if is_conflict_marker(line) {
                markers.push(format!("{}:{}: {line}", name(&document), number + 1));
            }
        }
    }
    assert!(
        markers.is_empty(),
        "conflict markers in the docs:\n{}",
        markers.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_checks() {
    let text = "Read `src/lib.rs`, then src/net/ and [the guide](docs/GUIDE.md#9).\n\
                Not https://example.com/src/x.rs, nor tests/it; src/protocol/*.rs is a folder.";
    assert_eq!(
        mentioned_paths(text),
        [
            (1, "docs/GUIDE.md"),
            (1, "src/lib.rs"),
            (1, "src/net/"),
            (2, "src/protocol/"),
        ]
    );
    let names: Vec<String> = documents().iter().map(|d| name(d)).collect();
    assert!(names.contains(&"README.md".to_string()), "{names:?}");
    assert!(names.contains(&"docs/ARCHITECTURE.md".to_string()));
    let (record, guide) = (Path::new("docs/BENCHMARKS.md"), Path::new("docs/GUIDE.md"));
    assert!(is_record_of_past_runs(record) && !is_record_of_past_runs(guide));
    assert!(is_conflict_marker("<<<<<<< HEAD") && is_conflict_marker(">>>>>>> files"));
    assert!(is_conflict_marker("=======") && !is_conflict_marker("======= not a marker"));
}
