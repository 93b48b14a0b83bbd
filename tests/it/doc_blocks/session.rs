//! One shell for one section of a document: its commands, its background jobs, the ports its
//! servers got, and the cleanup that nothing escapes.
//!
//! The commands run in one `bash` (so `h=...`, `cd` and `$!` carry from one command to the
//! next, as in a terminal) with job control on (`set -m`): each background job gets a process
//! group of its own, which is how `kill %1` reaches a whole pipeline and how the runner kills
//! whatever is left. Each command's stdout and stderr go, merged as on a terminal, to a file of
//! its own; bash's own stdout carries only the runner's markers (`__done 7`, `__job 12345`).
//!
//! Everything is bounded by [`PATIENCE`]: a command that does not finish, a background job that
//! does not print the lines shown under it, a killed job that does not exit. When the session is
//! dropped (at the end of the section, or on a failure) every job's process group, every
//! process group the shell started and the shell itself get SIGKILL, by their ids.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::common::PATIENCE;

use super::markdown::{Step, background};

/// A background job: its process group, and how much of its output has been shown.
struct Job {
    leader: i32,
    output: PathBuf,
    shown: usize,
}

pub struct Session {
    shell: Child,
    input: ChildStdin,
    replies: Receiver<String>,
    /// Where the commands' outputs go (beside the working folder, not in it).
    files: PathBuf,
    jobs: Vec<Job>,
    /// Each port a document's `listening` line shows, and the port the server really got.
    ports: Vec<(String, String)>,
    commands: usize,
}

impl Session {
    /// A shell in `work`, with `bin` first in `PATH`; the runner's files go to `files`.
    pub fn start(work: &Path, bin: &Path, files: &Path) -> Session {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path)),
        )
        .unwrap();
        let mut shell = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(work)
            .env("PATH", path)
            .env("LC_ALL", "C")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start bash");
        let mut input = shell.stdin.take().unwrap();
        let stdout = shell.stdout.take().unwrap();
        let (sender, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        input.write_all(b"set -m\n").unwrap();
        Session {
            shell,
            input,
            replies,
            files: files.to_path_buf(),
            jobs: Vec::new(),
            ports: Vec::new(),
            commands: 0,
        }
    }

    /// Runs one step and returns what it printed: for a background job, its first lines (as
    /// many as the step shows); for `kill`, its own output and then the rest of what each job it
    /// names printed until it exited; otherwise the command's output.
    pub fn run(&mut self, step: &Step) -> Result<String, String> {
        let command = self.localize(&step.command);
        let (code, in_background) = if step.literal {
            (command.as_str(), false)
        } else {
            background(&command)
        };
        self.commands += 1;
        let output = self.files.join(format!("{}.out", self.commands));
        let redirect = format!("< /dev/null > '{}' 2>&1", output.display());
        if in_background {
            // Not in braces: as in a terminal, `$!` is then the program itself (the pipeline's
            // last), not a subshell around it.
            let reply = self.send(&format!("{code} {redirect} &\necho \"__job $!\""))?;
            let leader = reply.parse().map_err(|_| format!("bash said {reply:?}"))?;
            let lines = step.expected.lines().count();
            let shown = wait_for_lines(&output, lines, leader);
            self.learn_ports(&step.expected, &shown);
            self.jobs.push(Job {
                leader,
                output,
                shown: shown.len(),
            });
            return Ok(shown);
        }
        let targets = if code.starts_with("kill ") {
            self.jobs_named(code)?
        } else {
            Vec::new()
        };
        // `$?` must survive our `echo` for the next command (`echo $?`).
        self.send(&format!(
            "{{ {code}\n}} {redirect}\n__status=$?; echo __done; (exit $__status)"
        ))?;
        let mut printed = read_lossy(&output);
        for leader in targets {
            let deadline = Instant::now() + PATIENCE;
            while group_is_alive(leader) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if group_is_alive(leader) {
                return Err(format!(
                    "job {leader} was still running {PATIENCE:?} after kill"
                ));
            }
            let job = self.jobs.iter_mut().find(|j| j.leader == leader).unwrap();
            let all = read_lossy(&job.output);
            printed.push_str(&all[job.shown.min(all.len())..]);
            job.shown = all.len();
        }
        Ok(printed)
    }

    /// `text` with each port a document's `listening` line showed replaced by the real one.
    pub fn localize(&self, text: &str) -> String {
        self.ports
            .iter()
            .fold(text.to_string(), |text, (shown, real)| {
                replace_number(&text, shown, real)
            })
    }

    /// Pairs the `listening` lines shown with those printed, port by port.
    fn learn_ports(&mut self, expected: &str, printed: &str) {
        for (shown, real) in expected.lines().zip(printed.lines()) {
            if let (Some(shown), Some(real)) = (listening_port(shown), listening_port(real)) {
                self.ports.retain(|(known, _)| known != shown);
                self.ports.push((shown.to_string(), real.to_string()));
            }
        }
    }

    /// The process groups of the jobs a `kill` command names (`%N`, `$!`), as bash knows them.
    fn jobs_named(&mut self, code: &str) -> Result<Vec<i32>, String> {
        let mut leaders = Vec::new();
        for word in code.split_whitespace().skip(1) {
            let question = if word.starts_with('%') {
                format!("jobs -p {word} 2>/dev/null")
            } else if word == "$!" {
                "echo $!".to_string()
            } else {
                continue;
            };
            let reply = self.send(&format!("{question}\necho __done"))?;
            let leader: i32 = reply
                .trim()
                .parse()
                .map_err(|_| format!("bash has no job {word}"))?;
            if self.jobs.iter().any(|job| job.leader == leader) {
                leaders.push(leader);
            }
        }
        Ok(leaders)
    }

    /// Writes `script` (a line of ours must end it, `echo "__job ..."` or `echo __done`) and
    /// returns what bash printed before `__done`, or the job's id.
    fn send(&mut self, script: &str) -> Result<String, String> {
        writeln!(self.input, "{script}").map_err(|e| format!("bash is gone: {e}"))?;
        let deadline = Instant::now() + PATIENCE;
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(line) if line == "__done" => return Ok(said.join("\n")),
                Ok(line) => match line.strip_prefix("__job ") {
                    Some(id) => return Ok(id.to_string()),
                    None => said.push(line),
                },
                Err(_) => return Err(format!("no end after {PATIENCE:?}")),
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let own = unsafe { libc::getpgrp() };
        let mut groups: Vec<i32> = self.jobs.iter().map(|job| job.leader).collect();
        groups.extend(
            processes()
                .filter(|p| p.parent == self.shell.id() as i32)
                .map(|p| p.group),
        );
        for group in groups {
            if group > 1 && group != own {
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// The first `lines` lines the job writes to `output`: waits for them while its process group
/// lives, up to [`PATIENCE`], and returns what there is.
fn wait_for_lines(output: &Path, lines: usize, leader: i32) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = read_lossy(output);
        let ends: Vec<usize> = text.match_indices('\n').map(|(at, _)| at + 1).collect();
        if lines == 0 {
            return String::new();
        }
        if ends.len() >= lines {
            return text[..ends[lines - 1]].to_string();
        }
        if !group_is_alive(leader) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The port of a `listening KIND HOST:PORT ...` line (any text after the digits is ignored).
fn listening_port(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    (words.next()? == "listening").then_some(())?;
    let (_, after) = words.nth(1)?.rsplit_once(':')?;
    let digits = after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len());
    (digits > 0).then(|| &after[..digits])
}

/// `text` with every whole number `from` (not part of a longer run of digits) made `to`.
fn replace_number(text: &str, from: &str, to: &str) -> String {
    let mut result = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + from.len()..].chars().next();
        let whole = !before.is_some_and(|c| c.is_ascii_digit())
            && !after.is_some_and(|c| c.is_ascii_digit());
        result.push_str(&rest[..at]);
        result.push_str(if whole { to } else { from });
        rest = &rest[at + from.len()..];
    }
    result.push_str(rest);
    result
}

/// A process as /proc shows it.
struct Process {
    parent: i32,
    group: i32,
    zombie: bool,
}

fn processes() -> impl Iterator<Item = Process> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (command) state ppid pgrp ...`: the command may hold spaces and parentheses.
            let (_, after) = stat.rsplit_once(')')?;
            let mut fields = after.split_whitespace();
            let state = fields.next()?;
            Some(Process {
                zombie: state == "Z" || state == "X",
                parent: fields.next()?.parse().ok()?,
                group: fields.next()?.parse().ok()?,
            })
        })
}

/// Whether a process of the group still runs (zombies whose parent is gone do not count).
pub fn group_is_alive(leader: i32) -> bool {
    processes().any(|p| p.group == leader && !p.zombie)
}

#[test]
fn ports_are_read_from_listening_lines_and_replaced_as_whole_numbers() {
    assert_eq!(
        listening_port("listening tcp 127.0.0.1:42221"),
        Some("42221")
    );
    assert_eq!(listening_port("listening udp [::1]:5 echo"), Some("5"));
    assert_eq!(
        listening_port("listening tcp 127.0.0.1:42221[..]"),
        Some("42221")
    );
    assert_eq!(listening_port("listening unix /tmp/x.sock"), None);
    assert_eq!(listening_port("hello 127.0.0.1:80"), None);
    assert_eq!(
        replace_number("nc 127.0.0.1 42221; echo 142221 422210 42221", "42221", "5"),
        "nc 127.0.0.1 5; echo 142221 422210 5"
    );
}
