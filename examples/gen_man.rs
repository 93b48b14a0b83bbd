//! Writes the man pages and shell completions from the clap definitions in `src/cli/`.
//!
//! Run through `scripts/gen-man.sh` (which writes into `docs/`); `tests/it/manpage.rs` renders
//! the same files in memory with [`pages`] and fails when the committed ones are out of date.

use clap::CommandFactory;
use clap_complete::Shell;
use echoloop::cli::Cli;

/// Every generated file: its path under `docs/` and its contents.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let command = Cli::command();
    let mut files = Vec::new();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .expect("render echoloop.1");
    files.push(("echoloop.1".to_string(), page));
    // One page per subcommand, named as git and cargo name theirs: echoloop-serve(1).
    for sub in command.get_subcommands() {
        let name = format!("echoloop-{}", sub.get_name());
        let mut page = Vec::new();
        let invocation = format!("echoloop {}", sub.get_name());
        let sub = sub.clone().display_name(&name).bin_name(invocation);
        clap_mangen::Man::new(sub.version(env!("CARGO_PKG_VERSION")))
            .render(&mut page)
            .expect("render a subcommand's page");
        files.push((format!("{name}.1"), page));
    }
    for (shell, file) in [
        (Shell::Bash, "completions/echoloop.bash"),
        (Shell::Zsh, "completions/_echoloop"),
        (Shell::Fish, "completions/echoloop.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "echoloop", &mut script);
        files.push((file.to_string(), script));
    }
    files
}

#[allow(dead_code)] // tests/it/manpage.rs includes this file for `pages` alone
fn main() -> std::io::Result<()> {
    let docs = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs".to_string());
    for (path, contents) in pages() {
        let path = std::path::Path::new(&docs).join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, contents)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
