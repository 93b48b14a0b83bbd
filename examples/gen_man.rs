//! Writes the man pages and shell completions from the clap definitions in `src/cli/`.
//!
//! Run through `scripts/gen-man.sh` (which writes into `docs/`); `tests/it/manpage.rs` renders
//! the same files in memory with [`pages`] and fails when the committed ones are out of date.

use clap::CommandFactory;
use clap_complete::Shell;
use echoloop::cli::Cli;

/// Every generated file: its path under `docs/` and its contents.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    // `echoloop help` exists, but it is not a page of its own.
    let command = Cli::command().disable_help_subcommand(true);
    let mut files = Vec::new();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .expect("render echoloop.1");
    page.extend_from_slice(hand_written("").as_bytes());
    files.push(("echoloop.1".to_string(), page));
    // One page per subcommand, named as git and cargo name theirs: echoloop-serve(1). Only the
    // top command takes --version.
    for sub in command.get_subcommands() {
        let name = format!("echoloop-{}", sub.get_name());
        let mut page = Vec::new();
        let invocation = format!("echoloop {}", sub.get_name());
        let sub = sub.clone().display_name(&name).bin_name(invocation);
        clap_mangen::Man::new(sub.clone())
            .render(&mut page)
            .expect("render a subcommand's page");
        page.extend_from_slice(hand_written(sub.get_name()).as_bytes());
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

/// The sections clap cannot know, in roff, for the page of `command` (`""`: the top page):
/// EXIT STATUS, ENVIRONMENT, EXAMPLES, SEE ALSO.
fn hand_written(command: &str) -> String {
    let mut roff = String::new();
    roff.push_str(".SH \"EXIT STATUS\"\n");
    // The rule is the same for every command (src/cli/exit.rs): 1 the world failed, 2 the
    // command line was wrong (a file it names included), 130 SIGINT.
    let status: &[(&str, &str)] = match command {
        "serve" => &[
            (
                "0",
                "the server stopped on SIGINT or SIGTERM after its drain (a stop asked for is not a failure)",
            ),
            (
                "1",
                "it could not run: an address in use or not ours, out of descriptors, an error while serving",
            ),
            (
                "2",
                "a bad argument, settings that do not fit together, a flag no configured service uses, or a --dir that is missing or not a folder",
            ),
        ],
        "load" => &[
            (
                "0",
                "every message was answered, correctly and within \\-\\-timeout (UDP: loss within \\-\\-max\\-loss)",
            ),
            (
                "1",
                "no reply at all, or timeouts, mismatches or failed connections; stderr says which; or a result file that could not be written at the end",
            ),
            (
                "2",
                "a bad argument, a \\-\\-payload\\-file that cannot be read, or an output file that cannot be created (before any connection)",
            ),
            (
                "130",
                "interrupted by SIGINT: the report is printed, marked interrupted (a second SIGINT exits at once)",
            ),
        ],
        "report" => &[
            ("0", "every run in the logs was clean"),
            ("1", "a run had timeouts, mismatches or failed connections"),
            (
                "2",
                "a bad argument, a log that cannot be read or parsed, or an output file that cannot be created",
            ),
            ("130", "interrupted by SIGINT"),
        ],
        "client" => &[
            (
                "0",
                "the input ended and the server said all it had, or the server closed",
            ),
            (
                "1",
                "the server could not be reached, or the connection failed",
            ),
            ("2", "a bad argument (\\-\\-udp with a unix: address)"),
            ("130", "interrupted by SIGINT or SIGTERM"),
        ],
        "put" | "get" => &[
            (
                "0",
                "the whole file is stored (fetched) and its sha256 matches the server's",
            ),
            (
                "1",
                "the server unreachable or the connection cut after \\-\\-retries attempts, its \\fBerror:\\fR line, a sha256 mismatch, a local disk error",
            ),
            (
                "2",
                "a bad argument or name, a FILE that cannot be read (missing, a directory), an output that cannot be written",
            ),
            (
                "130",
                "interrupted by SIGINT: run the same command again to resume",
            ),
        ],
        _ => &[
            ("0", "success"),
            (
                "1",
                "a failure at run time: the command line was right, the world was not (an address in use, a server unreachable or refusing, a full disk, a load run that failed)",
            ),
            (
                "2",
                "bad input on the command line: one line on stderr names the argument; a file named on the command line that cannot be opened, created or parsed counts too",
            ),
            (
                "130",
                "interrupted by SIGINT (every command but \\fBserve\\fR, which drains and exits 0)",
            ),
        ],
    };
    for (code, meaning) in status {
        roff.push_str(&format!(".TP\n{code}\n{meaning}\n"));
    }
    roff.push_str(".SH ENVIRONMENT\n.TP\nRUST_LOG\nLog level and filter (env_logger), e.g. \\fBinfo\\fR or \\fBecholoop=debug\\fR.\n");
    if command == "serve" || command.is_empty() {
        for (name, meaning) in [
            (
                "LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES",
                "Sockets passed by systemd socket activation (LISTEN_PID must name this process).",
            ),
            (
                "NOTIFY_SOCKET",
                "Where READY=1, STATUS= and STOPPING=1 are sent (a path, or @name for an abstract socket).",
            ),
            (
                "WATCHDOG_USEC, WATCHDOG_PID",
                "systemd's watchdog: WATCHDOG=1 is sent every half interval while every reactor turns.",
            ),
        ] {
            roff.push_str(&format!(".TP\n{name}\n{meaning}\n"));
        }
    }
    roff.push_str(".SH EXAMPLES\n");
    let examples: &[(&str, &str)] = match command {
        "serve" => &[
            (
                "echoloop serve \\-p timestamp \\-l 127.0.0.1:7007",
                "The tutorial timestamp server.",
            ),
            (
                "echoloop serve \\-p chat \\-l 0.0.0.0:6667 \\-\\-max\\-memory 256M \\-\\-idle\\-timeout 5m",
                "A chat room on a public address.",
            ),
            (
                "echoloop serve \\-p files \\-\\-dir /srv/drop \\-\\-dir\\-quota 10G",
                "Uploads and downloads with resume.",
            ),
        ],
        "load" => &[
            (
                "echoloop load 127.0.0.1:7007 \\-c 50 \\-d 30s",
                "50 connections for 30 seconds, closed loop.",
            ),
            (
                "echoloop load 127.0.0.1:7007 \\-\\-rate 2000 \\-c 1 \\-\\-plot run.svg",
                "Paced at 2000 messages a second, with a picture.",
            ),
        ],
        "report" => &[(
            "echoloop report a.hlog b.hlog",
            "Add up two runs made with \\-\\-hdr\\-log.",
        )],
        "client" => &[(
            "echoloop client 127.0.0.1:7007",
            "Type lines; see what the server sends.",
        )],
        "put" => &[(
            "echoloop put 127.0.0.1:7007 photo.jpg",
            "Upload, resuming an interrupted upload.",
        )],
        "get" => &[(
            "echoloop get 127.0.0.1:7007 photo.jpg",
            "Download, continuing a partial local file.",
        )],
        _ => &[
            (
                "echoloop serve \\-p echo",
                "An echo server on 127.0.0.1:7007.",
            ),
            (
                "echoloop load 127.0.0.1:7007 \\-c 50 \\-d 10s",
                "Load it, and check every reply.",
            ),
        ],
    };
    for (line, what) in examples {
        roff.push_str(&format!(".TP\n\\fB{line}\\fR\n{what}\n"));
    }
    roff.push_str(".SH \"SEE ALSO\"\n");
    let pages: Vec<String> = ["", "serve", "load", "report", "client", "put", "get"]
        .iter()
        .filter(|other| **other != command)
        .map(|other| {
            if other.is_empty() {
                "\\fBecholoop\\fR(1)".to_string()
            } else {
                format!("\\fBecholoop\\-{other}\\fR(1)")
            }
        })
        .collect();
    roff.push_str(&pages.join(", "));
    roff.push_str(
        ", \\fBsystemd.socket\\fR(5), and the guides in the project\\(aqs docs/ folder.\n",
    );
    roff
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
