//! How a command ends: one rule for the exit code of every command, and the one line that says why.
//!
//! A script that runs `echoloop` must tell its own mistake from the world's, whatever the command:
//!
//! - **0**: done.
//! - **1**: a runtime failure. The command line was fine, the world was not: an address in use, a
//!   server that cannot be reached or answers `error: ...`, a full disk, a `load` run that found
//!   timeouts or wrong replies.
//! - **2**: bad input on the command line: an argument clap refuses (see `usage_error.rs`), a
//!   combination we refuse (`--udp` with `unix:`), or a file named on the command line that cannot
//!   be opened, created or parsed (`put`'s FILE, a directory given as FILE, `get -o`, the output
//!   files of `load` and `report`, `report`'s logs, `--payload-file`). Fixing the command fixes it.
//! - **130**: stopped by SIGINT (Ctrl-C), as a shell reports it: `load` prints its report first,
//!   `client` stops cleanly (stdin's flags restored), `put`, `get` and `report` stop at once (an
//!   interrupted transfer resumes when run again). `serve` is the exception: SIGINT and SIGTERM ask
//!   it to drain and stop, and a server that stopped as asked exits 0.
//!
//! Each command returns `Result<(), CliError>`. The library's error types know nothing of exit
//! codes; they are sorted here, each by one `match` over all its variants, so a new variant cannot
//! be added without deciding whether it is the user's mistake or the world's.
//!
//! Next: `main.rs`, which runs the commands and exits.

use std::io;

use crate::StartError;
use crate::clients::interactive::ClientError;
use crate::clients::load::{LoadError, MergeError};
use crate::clients::transfer::TransferError;

/// Why a command did not end with 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Bad input on the command line, including a file it names (exit 2).
    Usage(String),
    /// The command line was fine; the run failed (exit 1).
    Runtime(String),
    /// Stopped by SIGINT (exit 130), with what there is to say (`load`: what the report covers).
    Interrupted(Option<String>),
}

impl CliError {
    /// The process's exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
            CliError::Interrupted(_) => 130,
        }
    }

    /// The line for stderr (without `echoloop: `), if there is one.
    pub fn message(&self) -> Option<&str> {
        match self {
            CliError::Usage(line) | CliError::Runtime(line) => Some(line),
            CliError::Interrupted(line) => line.as_deref(),
        }
    }
}

impl From<StartError> for CliError {
    fn from(e: StartError) -> CliError {
        match e {
            StartError::Config(_) => CliError::Usage(e.to_string()),
            StartError::Bind { .. } | StartError::Io(_) => CliError::Runtime(e.to_string()),
        }
    }
}

impl From<LoadError> for CliError {
    fn from(e: LoadError) -> CliError {
        match e {
            // More connections than this machine allows: the command asks too much.
            LoadError::Limits(_) => CliError::Usage(e.to_string()),
            LoadError::Io(_) => CliError::Runtime(e.to_string()),
        }
    }
}

impl From<MergeError> for CliError {
    /// Every log is named on the command line: one that cannot be read or parsed is bad input.
    fn from(e: MergeError) -> CliError {
        match e {
            MergeError::Read { .. }
            | MergeError::Parse { .. }
            | MergeError::NoCounts { .. }
            | MergeError::Empty => CliError::Usage(e.to_string()),
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::UdpNeedsHostPort(_) | ClientError::Usage(_) => {
                CliError::Usage(e.to_string())
            }
            ClientError::Connect { .. } | ClientError::Lost { .. } | ClientError::Setup(_) => {
                CliError::Runtime(e.to_string())
            }
        }
    }
}

impl From<TransferError> for CliError {
    fn from(e: TransferError) -> CliError {
        match e {
            TransferError::Usage(_) => CliError::Usage(e.to_string()),
            TransferError::Server(_)
            | TransferError::Mismatch { .. }
            | TransferError::Local(_)
            | TransferError::Tls(_)
            | TransferError::GaveUp { .. } => CliError::Runtime(e.to_string()),
        }
    }
}

/// From now on SIGINT ends the process at once with exit code 130, after writing `line` (and a
/// newline) to stderr. For the commands that have nothing to tidy up: `put` and `get` write
/// straight to the file or the socket (an interrupted transfer resumes when run again), and
/// `report` writes its files only at the end.
pub fn exit_130_on_sigint(line: &'static str) -> Result<(), CliError> {
    use std::io::IsTerminal;
    // A progress bar may hold the terminal's line: start a fresh one.
    let fresh_line = if io::stderr().is_terminal() { "\n" } else { "" };
    let text = format!("{fresh_line}echoloop: {line}\n").into_bytes();
    let action = move || {
        let _ = rustix::io::write(io::stderr(), &text);
        signal_hook::low_level::exit(130);
    };
    // SAFETY: the action runs inside a signal handler, so it may only call async-signal-safe
    // functions: it calls write(2) on a buffer made before (no allocation, no lock) and _exit(2).
    match unsafe { signal_hook::low_level::register(signal_hook::consts::SIGINT, action) } {
        Ok(_) => Ok(()),
        Err(e) => Err(CliError::Runtime(format!("cannot handle SIGINT: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_exit_code() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Runtime("x".into()).exit_code(), 1);
        assert_eq!(CliError::Interrupted(None).exit_code(), 130);
        assert_eq!(CliError::Interrupted(None).message(), None);
    }

    #[test]
    fn the_user_s_mistakes_are_usage_errors_and_the_world_s_are_runtime_ones() {
        let udp_unix = ClientError::UdpNeedsHostPort("unix:/x".parse().unwrap());
        assert!(matches!(CliError::from(udp_unix), CliError::Usage(_)));
        let refused = ClientError::Connect {
            addr: "127.0.0.1:7".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(matches!(CliError::from(refused), CliError::Runtime(_)));
        let config = StartError::Config("nothing to listen on".into());
        assert_eq!(
            CliError::from(config),
            CliError::Usage("nothing to listen on".into())
        );
        let server = TransferError::Server("exists".into());
        assert_eq!(
            CliError::from(server),
            CliError::Runtime("server: error: exists".into())
        );
        assert!(matches!(
            CliError::from(MergeError::Empty),
            CliError::Usage(_)
        ));
    }
}
