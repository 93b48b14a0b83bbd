//! The docs name files by their paths, and this test keeps those names true: it reads README.md
//! and every docs/*.md, finds each repository path they mention (`src/...`, `tests/...`,
//! `scripts/...`, `examples/...`, `docs/...`, `fuzz/...`, with a file extension or a trailing
//! `/`), and fails listing every one that does not exist. It also fails on a merge-conflict
//! marker left in any tracked text file (`git ls-files`; without git, every file outside
//! `target/` and `.git/`), docs or not: a marker in code fails to compile, in a doc it is
//! published.
//!
//! And the README's table of `echoloop serve` options names every option clap defines for
//! `serve`, with its short letter, and no option clap does not know.
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

/// The files git tracks, or, where git is missing or this is no checkout (an unpacked crate),
/// every file of the tree but `target/` and `.git/`.
fn tracked_files() -> Vec<PathBuf> {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repository())
        .output();
    if let Ok(listed) = listed
        && listed.status.success()
    {
        return listed
            .stdout
            .split(|&b| b == 0)
            .filter(|path| !path.is_empty())
            .map(|path| repository().join(String::from_utf8_lossy(path).as_ref()))
            .collect();
    }
    let mut found = Vec::new();
    let mut folders = vec![repository().to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let (path, kind) = (entry.path(), entry.file_type().unwrap());
            if kind.is_dir() && !["target", ".git"].contains(&&*entry.file_name().to_string_lossy())
            {
                folders.push(path);
            } else if kind.is_file() {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn no_tracked_text_file_holds_a_conflict_marker() {
    let files = tracked_files();
    let mut markers = Vec::new();
    let mut text_files = 0;
    for file in &files {
        // Text is UTF-8 without NUL bytes; anything else (images, compressed logs) is skipped.
        let Ok(text) = String::from_utf8(std::fs::read(file).unwrap_or_default()) else {
            continue;
        };
        if text.contains('\0') {
            continue;
        }
        text_files += 1;
        for (number, line) in text.lines().enumerate() {
            if is_conflict_marker(line) {
                markers.push(format!("{}:{}: {line}", name(file), number + 1));
            }
        }
    }
    assert!(
        markers.is_empty(),
        "merge-conflict markers left in tracked files (resolve the conflict, then commit):\n{}",
        markers.join("\n")
    );
    // A checker that read nothing would pass everything.
    let names: Vec<String> = files.iter().map(|f| name(f)).collect();
    assert!(text_files > 100, "only {text_files} text files read");
    assert!(names.contains(&"src/lib.rs".to_string()) && names.contains(&"Cargo.toml".to_string()));
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

/// The options a row of the README's `echoloop serve` table names: each `--long` in its first
/// cell, with the `-s` written before it (`-l, --listen ADDR`), in the order of the rows.
fn table_options(readme: &str) -> Vec<(String, Option<char>)> {
    let table = readme
        .split("## `echoloop serve` options")
        .nth(1)
        .expect("README.md has a section `## \\`echoloop serve\\` options`");
    let mut options = Vec::new();
    for row in table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        let first_cell = row.split('|').nth(1).unwrap_or("");
        let mut short = None;
        for word in first_cell.split(|c: char| c.is_whitespace() || c == '`' || c == ',') {
            if let Some(long) = word.strip_prefix("--")
                && long.starts_with(|c: char| c.is_ascii_alphabetic())
            {
                options.push((long.to_string(), short.take()));
            } else if let Some(letter) = word.strip_prefix('-')
                && letter.len() == 1
            {
                short = letter.chars().next();
            }
        }
    }
    options
}

/// `echoloop serve`'s options as clap defines them: long name and short letter (`--help` aside).
fn serve_options() -> Vec<(String, Option<char>)> {
    use clap::CommandFactory;
    let command = echoloop::cli::Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("a serve subcommand");
    serve
        .get_arguments()
        .filter_map(|arg| Some((arg.get_long()?.to_string(), arg.get_short())))
        .filter(|(long, _)| long != "help")
        .collect()
}

/// The README documents `serve` in a table (the other commands in docs/LOAD.md, docs/PROTOCOLS.md
/// and their `--help`): the table must name every option clap knows, with its short letter,
/// and no option clap does not know.
#[test]
fn the_readme_table_lists_every_serve_option_and_no_other() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let table = table_options(&readme);
    let clap = serve_options();
    assert!(
        clap.len() > 30,
        "only {} serve options from clap",
        clap.len()
    );
    let mut problems = Vec::new();
    for (long, short) in &clap {
        match table.iter().find(|(name, _)| name == long) {
            None => problems.push(format!("--{long} is missing from the table")),
            Some((_, written)) if written != short => problems.push(format!(
                "--{long}: the table writes the short option {written:?}, clap has {short:?}"
            )),
            Some(_) => {}
        }
    }
    for (long, _) in &table {
        if !clap.iter().any(|(name, _)| name == long) {
            problems.push(format!(
                "--{long} is in the table but `echoloop serve` has no such option"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "README.md's `echoloop serve` table and `echoloop serve --help` disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_table_reader_sees_short_and_long_options() {
    let readme = "## `echoloop serve` options\n\n| Option | Default |\n|---|---|\n\
                  | `-l, --listen ADDR` | x |\n| `--sndbuf BYTES`, `--rcvbuf BYTES` | y |\n\
                  | `--trace` | off, see `--trusted` |\n\nAfter the table, `--not-a-row`.\n";
    let found = table_options(readme);
    let expected = [
        ("listen", Some('l')),
        ("sndbuf", None),
        ("rcvbuf", None),
        ("trace", None),
    ];
    assert_eq!(found, expected.map(|(l, s)| (l.to_string(), s)));
}
