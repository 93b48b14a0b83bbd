//! The command line: `echoloop serve | load | report | client | put | get`, parsed with clap.
//!
//! Only this folder knows clap. Each command's arguments turn into a plain config struct
//! (`ServeConfig`, `LoadConfig`, `ClientConfig`, `PutConfig`, `GetConfig`), which is all the rest
//! of the library takes, so tests and embedders never need clap. Bad input ends the program with
//! one line on stderr naming the argument, and exit code 2.
//!
//! One file per command: `serve.rs`, `load.rs`, `report.rs`, `client.rs`, `transfer.rs`; `units.rs`
//! parses the durations (`500ms`, `30s`), sizes (`64K`, `1M`) and counts that all of them take, and
//! `results.rs` holds the result options `load` and `report` share. `usage_error.rs` turns clap's
//! errors into one line; `exit.rs` gives every command the same exit codes.
//!
//! Next: `usage_error.rs` and `exit.rs`, then `main.rs`. That is the tour.

mod client;
pub mod exit;
mod load;
mod report;
mod results;
mod serve;
mod transfer;
pub mod units;
pub mod usage_error;

pub use client::ClientArgs;
pub use load::LoadArgs;
pub use report::ReportArgs;
pub use serve::{ServeArgs, inherited_services};
pub use transfer::{GetArgs, PutArgs};

use clap::{Parser, Subcommand};

use crate::net::address::Address;

/// echoloop: a single-threaded event-loop server (echo, timestamp, chat, ...), its load
/// generator and its client.
// No bare `about`: it would take Cargo.toml's `description` (written for crates.io) over this line.
#[derive(Debug, Parser)]
#[command(name = "echoloop", version, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Generate load against a server and check every reply.
    Load(LoadArgs),
    /// Add up the HdrHistogram logs of several `load --hdr-log` runs into one report.
    Report(ReportArgs),
    /// Talk to a server: stdin lines go out, what the server sends is printed as it arrives.
    Client(ClientArgs),
    /// Upload FILE to a `-p files` server, resuming where an interrupted upload stopped.
    Put(PutArgs),
    /// Download NAME from a `-p files` server, continuing a partial local file.
    Get(GetArgs),
}

/// An address as `-l` and the clients take it: `HOST:PORT`, `[V6]:PORT` or `unix:/path`.
fn parse_address(text: &str) -> Result<Address, String> {
    text.parse()
}
