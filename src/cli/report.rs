//! `echoloop report FILE...`: several `load --hdr-log` logs added up into one report.
//!
//! The logs may come from several processes on one machine or from many machines (see
//! docs/LOAD.md); `clients/load/merge.rs` says how they are added up. The output options are
//! `load`'s: the same summary (or `--json`), `--json-out`, `--histogram`, `--timeline`, `--plot`,
//! and the same exit codes (1 if any run failed, 2 for bad input or an unreadable log).
//!
//! Next: `client.rs`.

use std::path::PathBuf;

use clap::Args;

use super::results::ResultFiles;

use crate::clients::load::OutputPaths;

/// `echoloop report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// HdrHistogram interval logs written by `echoloop load --hdr-log`
    #[arg(value_name = "FILE", required = true)]
    pub logs: Vec<PathBuf>,
    /// The summary's form and the files written beside it (merged)
    #[command(flatten)]
    pub results: ResultFiles,
}

impl ReportArgs {
    /// The files to write, besides the summary.
    pub fn output_paths(&self) -> OutputPaths {
        OutputPaths {
            json_out: self.results.json_out.clone(),
            histogram: self.results.histogram.clone(),
            timeline: self.results.timeline.clone(),
            plot: self.results.plot.clone(),
            hdr_log: None,
        }
    }
}
