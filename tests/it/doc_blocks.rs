//! The shell examples (and Python clients) in README.md and docs/*.md are run, and must print
//! what they show.
//!
//! Every shell example (a ```` ```console ```` block, or `sh`, `bash`, `shell`, or an untagged
//! block with `$ ` lines) is either **run** (it must then be `console`) or **marked illustrative**
//! by an HTML comment on the line right before its fence, with a real reason:
//!
//! ```text
//! <!-- illustrative: needs systemd -->
//! ```
//!
//! `grep -rn 'illustrative:' README.md docs/` lists them. A shell block that is neither fails
//! [`every_shell_block_runs_or_is_marked_illustrative`]: nothing is skipped silently.
//!
//! # How a `console` block is run
//!
//! A block reads as a terminal transcript: `$ ` starts a command (it goes on over the next lines
//! while a quote is open or a line ends in `\`), and the lines under it are what it prints,
//! stdout and stderr together. The runner ([`session`]) follows it in one `bash`:
//!
//! - **A section is a session.** The blocks of one section (up to the next heading) share one
//!   shell in one fresh folder, so a server started in one block serves the next block's client,
//!   with prose in between. At the section's end every background job is killed (its process
//!   group, by id), also when a step failed. Each step is bounded ([`PATIENCE`]). Shell state
//!   carries from one command to the next as in a terminal: `h=...`, `cd`, `$!`, `$?`, `%1`.
//! - **The folder** has `target/debug/echoloop` and `target/release/echoloop` (both the binary
//!   under test, which is also first in `PATH` as `echoloop`), and links to the repository's
//!   `scripts/` and `docs/`. Anything else a block needs it makes itself (`mkdir served`).
//! - **`$ CMD &`** starts a background job. The lines under it are the first lines the job
//!   prints (the runner waits for as many as are shown); the rest of its output is shown only
//!   under the `kill` that ends it.
//! - **`$ kill %N`** (or `kill -9 %N`, `kill $!`): the lines under it are kill's own output,
//!   then everything the job printed from where the lines under its `&` stopped until it exited
//!   (the shutdown log lines).
//! - **Ports.** Servers listen on port 0. The port a `listening tcp 127.0.0.1:42221` line shows
//!   stands for the port the server got this time: the runner reads the real one from the same
//!   line and replaces the shown number with it, as a whole number, in every later command and
//!   output of the section. So a block reads like a pasted run (`nc -q1 127.0.0.1 42221`), and a
//!   reader can follow it by eye. Fixed ports (7007) are not run: they could be taken.
//! - **Programs.** A ```` ```python ```` block followed at once by a ```` ```text ```` block (a
//!   client and what it printed, as in docs/PROTOCOLS.md) is run with `python3` in the section's
//!   session, ports replaced, and must print the text. It can be marked illustrative the same way.
//! - **Matching** is snapbox's: `[..]` on a line matches any text (numbers that change from run
//!   to run: rates, latencies), a line `...` matches any lines. Times need no placeholder: log
//!   stamps (`2026-12-07T00:45:59Z`, `2026-12-07 00:45:59`, `20261207T004559Z` in a file name)
//!   and ctime times (`Wed Nov 25 04:30:04 2026`) match any time, on both sides. A listening
//!   line shows its fourth field, the service, as printed.
//! - Output that does not end in a newline (`printf hello | nc ...`) is shown as a line: a
//!   terminal would put the next prompt after it.
//! - A failure names the document, the block's line and the command's line, and shows the
//!   expected and the actual output (snapbox's diff). A failed step ends its section's session.
//!
//! The blocks need `nc` (OpenBSD netcat: `-q`, `-N`) and `python3`, so the running test is
//! `#[ignore = "needs ..."]` like the other tests that drive programs; scripts/test.sh installs
//! them and runs it.

mod markdown;
mod session;

use std::path::Path;
use std::sync::Mutex;

use snapbox::{Assert, Redactions, report::Palette};

use crate::common::PATIENCE;
use crate::docs::{documents, name};

use markdown::{Block, sections, steps};
use session::Session;

/// A failure of the marking rule: the document, the block's line and what is wrong.
fn unmarked(document: &str, block: &Block) -> Option<String> {
    let at = format!("{document}:{}", block.line);
    match (&block.illustrative, block.language.as_str()) {
        (Some(reason), _) if reason.is_empty() => {
            Some(format!("{at}: `illustrative:` needs a reason"))
        }
        (Some(_), _) => None,
        (None, "python") => None, // a program with its output: run
        (None, "console") => match steps(block).first() {
            None => Some(format!("{at}: a console block without a `$ ` command")),
            Some(first) if !block.body[0].starts_with('$') => Some(format!(
                "{at}: output before the first command (line {})",
                first.line
            )),
            Some(_) => None,
        },
        (None, language) => Some(format!(
            "{at}: a shell block (```{language}) that is neither run nor marked: make it \
             ```console (it is then run) or put `<!-- illustrative: REASON -->` before it"
        )),
    }
}

#[test]
fn every_shell_block_runs_or_is_marked_illustrative() {
    let (mut run, mut illustrative, mut problems) = (0, Vec::new(), Vec::new());
    for document in documents() {
        let text = std::fs::read_to_string(&document).unwrap();
        for section in sections(&text) {
            for block in &section.blocks {
                problems.extend(unmarked(&name(&document), block));
                match &block.illustrative {
                    Some(reason) => illustrative.push(reason.clone()),
                    None => run += 1,
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "shell blocks in the docs:\n{}",
        problems.join("\n")
    );
    // A checker that found no blocks would pass everything.
    assert!(
        run > 20 && !illustrative.is_empty(),
        "{run} blocks to run, {} illustrative",
        illustrative.len()
    );
}

/// Log stamps and ctime times: they match any time, on both sides.
fn times() -> Redactions {
    let mut times = Redactions::new();
    let stamp = regex::Regex::new(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?").unwrap();
    let ctime = regex::Regex::new(
        r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d \d{4}",
    )
    .unwrap();
    let compact = regex::Regex::new(r"\d{8}T\d{6}Z").unwrap(); // in file names
    times.insert("[TIME]", stamp).unwrap();
    times.insert("[STAMP]", compact).unwrap();
    times.insert("[CTIME]", ctime).unwrap();
    times
}

/// Runs the `console` blocks of one section in one session; the first failure ends it.
fn run_section(document: &str, heading: usize, blocks: &[&Block]) -> Result<usize, String> {
    let folder = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "doc_blocks-{}-{}-{heading}",
        std::process::id(),
        document.replace('/', "-")
    ));
    let (work, files) = (folder.join("work"), folder.join("runner"));
    let _ = std::fs::remove_dir_all(&folder);
    let bin = work.join("target/debug");
    for dir in [&bin, &work.join("target/release"), &files] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let echoloop = env!("CARGO_BIN_EXE_echoloop");
    for link in ["target/debug/echoloop", "target/release/echoloop"] {
        std::os::unix::fs::symlink(echoloop, work.join(link)).unwrap();
    }
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
    for shared in ["scripts", "docs"] {
        std::os::unix::fs::symlink(repository.join(shared), work.join(shared)).unwrap();
    }
    let session = Session::start(&work, &bin, &files);
    let result = run_steps(session, document, blocks);
    let _ = std::fs::remove_dir_all(&folder);
    result
}

/// The steps of `blocks`, in order, in `session`; it is dropped (its jobs killed) on return.
fn run_steps(mut session: Session, document: &str, blocks: &[&Block]) -> Result<usize, String> {
    // Backslashes are bytes here (`\r`, chargen's `[\]`), not Windows path separators.
    let assert = Assert::new()
        .palette(Palette::plain())
        .normalize_paths(false);
    let mut run = 0;
    for block in blocks {
        for step in steps(block) {
            let at = format!(
                "{document}:{}: the block of line {}, `$ {}`",
                step.line,
                block.line,
                step.command.lines().next().unwrap_or("")
            );
            let actual = session.run(&step).map_err(|e| format!("{at}: {e}"))?;
            let expected = times().redact(&session.localize(&step.expected));
            let mut actual = times().redact(&actual);
            if !actual.is_empty() && !actual.ends_with('\n') {
                actual.push('\n'); // where a terminal would show the next prompt
            }
            assert
                .try_eq(Some(&at), actual.into(), expected.into())
                .map_err(|e| format!("{at}:\n{e}"))?;
            run += 1;
        }
    }
    Ok(run)
}

#[test]
#[ignore = "needs nc (netcat-openbsd) and python3"]
fn the_console_blocks_print_what_they_show() {
    crate::common::tool("nc", "netcat-openbsd");
    crate::common::tool("python3", "python3");
    let failures = Mutex::new(Vec::new());
    let steps_run = Mutex::new(0);
    std::thread::scope(|scope| {
        for document in documents() {
            let (failures, steps_run) = (&failures, &steps_run);
            scope.spawn(move || {
                let text = std::fs::read_to_string(&document).unwrap();
                let document = name(&document);
                for section in sections(&text) {
                    let blocks: Vec<&Block> = section
                        .blocks
                        .iter()
                        .filter(|b| {
                            b.illustrative.is_none()
                                && (b.language == "console" || b.output.is_some())
                        })
                        .collect();
                    if blocks.is_empty() {
                        continue;
                    }
                    match run_section(&document, section.line, &blocks) {
                        Ok(run) => *steps_run.lock().unwrap() += run,
                        Err(failure) => failures.lock().unwrap().push(failure),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} section(s) of the docs print something else than they show (each step waits up to {PATIENCE:?}):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let steps_run = steps_run.into_inner().unwrap();
    assert!(steps_run > 50, "only {steps_run} commands run");
}

#[test]
fn a_session_maps_ports_and_shows_a_killed_servers_last_lines() {
    let text = "# A\n\n```console\n$ echoloop serve -l 127.0.0.1:0 &\n\
                listening tcp 127.0.0.1:40000[..]\n```\n\nProse between blocks.\n\n```console\n\
                $ echo port 40000, not 400001\nport 40000, not 400001\n$ kill %1\n\
                [2026-12-07T04:05:11Z INFO  echoloop::server] serving echo on 1 socket(s) with 1 worker(s)\n\
                [2026-12-07T04:05:11Z INFO  echoloop::server::reactor::shutdown] shutting down: [..]\n\
                [2026-12-07T04:05:11Z INFO  echoloop::server::reactor] stopped\n```\n";
    let sections = sections(text);
    let blocks: Vec<&Block> = sections[0].blocks.iter().collect();
    assert_eq!(run_section("session.md", 1, &blocks), Ok(3));
}

#[test]
fn a_wrong_output_fails_with_its_line_and_the_jobs_are_killed() {
    let pid_file = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("doc_blocks-{}-leader", std::process::id()));
    let text = format!(
        "# A\n\n```console\n$ sleep 300 &\n$ echo $! > {}\n$ printf 'a\\nb\\n'\na\n[..]\n\
         $ echo wrong\nright\n```\n",
        pid_file.display()
    );
    let sections = sections(&text);
    let blocks: Vec<&Block> = sections[0].blocks.iter().collect();
    let failure = run_section("wrong.md", 1, &blocks).unwrap_err();
    assert!(
        failure.starts_with("wrong.md:9: the block of line 3, `$ echo wrong`")
            && failure.contains("right")
            && failure.contains("wrong"),
        "{failure}"
    );
    let leader: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::remove_file(&pid_file);
    assert!(
        !session::group_is_alive(leader),
        "job {leader} outlived its session"
    );
}
