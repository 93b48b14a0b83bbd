//! The committed man pages and completions are what the clap definitions generate today.

#[path = "../../examples/gen_man.rs"]
mod gen_man;

#[test]
fn the_man_pages_and_completions_are_current() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut stale = Vec::new();
    let generated = gen_man::pages();
    for (path, contents) in &generated {
        if std::fs::read(docs.join(path)).ok().as_ref() != Some(contents) {
            stale.push(path.clone());
        }
    }
    // A page for a subcommand that no longer exists is stale too.
    for entry in std::fs::read_dir(&docs).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".1") && !generated.iter().any(|(path, _)| *path == name) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "docs/{} out of date: run scripts/gen-man.sh",
        stale.join(", docs/")
    );
}
