//! The tree shows the architecture, and this test keeps it that way: it reads every `crate::`
//! and `super::` path in `src/`, resolves each to the file it names, and checks
//!
//! - the layers: `net` and `protocol` import nothing of the rest (nor each other), `server`
//!   imports `net` and `protocol`, `clients` import `net` and `protocol` but never `server`, and
//!   only `cli` (and `main.rs`) may import everything;
//! - no import cycle between files, where a folder's `mod.rs` and the files beside it count as
//!   one concept (a child uses its parent's types and the parent declares its children, as the
//!   reactor's `impl` blocks split over `accept.rs`, `client.rs`, ... do).
//!
//! docs/ARCHITECTURE.md ("What may import what") explains the rules; this is how they are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file, named by its module path (`server::reactor::client`; `server::reactor` for
/// its `mod.rs`).
type Module = String;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        parts.pop();
    }
    parts.join("::")
}

/// The longest known module that `path` (a `::`-separated path) starts with.
fn resolve(path: &[&str], modules: &BTreeSet<Module>) -> Option<Module> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|candidate| modules.contains(candidate))
}

/// The module paths a file names: `crate::a::b::C` and `super::x::Y`, outside comments.
fn references(module: &Module, text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let own: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    // `super` is the module's parent: `a` for `a/b.rs` and for `a/b/mod.rs` alike.
    let parent: Vec<&str> = own[..own.len().saturating_sub(1)].to_vec();
    // Unit tests sit at the bottom of a file, in a `mod tests` whose `super` is the file
    // itself: they are not the file's imports.
    let code_part = text.split("#[cfg(test)]").next().unwrap_or(text);
    for line in code_part.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // `my_crate::` or similar
                }
                let words: Vec<&str> = rest
                    .split("::")
                    .map(|word| {
                        word.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .next()
                            .unwrap_or("")
                    })
                    .take_while(|word| !word.is_empty())
                    .collect();
                let mut path: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                path.extend(words.iter().map(|s| s.to_string()));
                found.push(path);
                // `use super::{a, b}` / `use crate::x::{y, z}`: also each name in the braces.
                if let Some(open) = rest.find('{')
                    && rest[..open]
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
                    && let Some(close) = rest.find('}')
                {
                    let stem: Vec<String> = base
                        .iter()
                        .map(|s| s.to_string())
                        .chain(
                            rest[..open]
                                .split("::")
                                .filter(|w| !w.is_empty())
                                .map(String::from),
                        )
                        .collect();
                    for item in rest[open + 1..close].split(',') {
                        let first = item.trim().split("::").next().unwrap_or("").trim();
                        if !first.is_empty() && first != "self" {
                            let mut path = stem.clone();
                            path.extend(item.trim().split("::").map(|w| w.trim().to_string()));
                            found.push(path);
                        }
                    }
                }
            }
        }
    }
    found
}

/// `a::b` is `a`'s child, or `a` is `a::b`'s parent: one concept, see the module docs.
fn parent_and_child(a: &str, b: &str) -> bool {
    let is_child = |child: &str, parent: &str| {
        child
            .rsplit_once("::")
            .map_or(!child.is_empty() && parent.is_empty(), |(p, _)| p == parent)
    };
    is_child(a, b) || is_child(b, a)
}

/// The top folder of a module: `net`, `protocol`, `server`, `clients`, `cli`, or the crate root.
fn layer(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

/// What each layer may import besides itself.
fn may_import(from: &str, to: &str) -> bool {
    from == to
        || to == "error"
        || match from {
            "" | "cli" => true,
            "server" => matches!(to, "net" | "protocol"),
            "clients" => matches!(to, "net" | "protocol"),
            _ => false, // net, protocol, error: leaves
        }
}

fn import_graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    files.retain(|f| f.file_name().is_some_and(|n| n != "main.rs"));
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let edges: BTreeSet<Module> = references(&module, &text)
            .iter()
            .filter_map(|path| {
                let words: Vec<&str> = path.iter().map(String::as_str).collect();
                resolve(&words, &modules)
            })
            .filter(|target| *target != module)
            .collect();
        graph.insert(module, edges);
    }
    graph
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let graph = import_graph();
    assert!(graph.contains_key("server::reactor::client"), "{graph:?}");
    let mut wrong = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            if !may_import(layer(from), layer(to)) {
                wrong.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:#?}");
}

#[test]
fn no_two_files_import_each_other_even_through_others() {
    let graph = import_graph();
    // Depth-first search for a cycle, ignoring the edges between a mod.rs and its children.
    fn visit(
        node: &str,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if parent_and_child(node, next) {
                continue;
            }
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_what_it_checks() {
    // A checker that found no edges would pass everything: make sure it reads real imports.
    let graph = import_graph();
    let reactor_client = &graph["server::reactor::client"];
    assert!(
        reactor_client.contains("server::connection"),
        "{reactor_client:?}"
    );
    assert!(
        reactor_client.contains("net::registration"),
        "{reactor_client:?}"
    );
    assert!(graph["server::metrics"].contains("server::reactor::token"));
    assert!(graph["server::reactor::accept"].contains("server::reactor::client"));
    assert!(!may_import("protocol", "server") && !may_import("net", "protocol"));
    assert!(!may_import("clients", "server") && may_import("clients", "net"));
}
