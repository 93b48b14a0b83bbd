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

use crate::clients::load::OutputPaths;

/// `echoloop report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// HdrHistogram interval logs written by `echoloop load --hdr-log`
    #[arg(value_name = "FILE", required = true)]
    pub logs: Vec<PathBuf>,
    /// Print one JSON object on stdout instead of the summary
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON object to FILE
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Write the merged latency percentile distribution (HdrHistogram text, µs) to FILE
    #[arg(long, value_name = "FILE")]
    pub histogram: Option<PathBuf>,
    /// Write the merged results over time to FILE: CSV, or JSON lines if FILE ends in .jsonl
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Draw the merged runs into FILE.svg
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

impl ReportArgs {
    /// The files to write, besides the summary.
    pub fn output_paths(&self) -> OutputPaths {
        OutputPaths {
            json_out: self.json_out.clone(),
            histogram: self.histogram.clone(),
            timeline: self.timeline.clone(),
            plot: self.plot.clone(),
            hdr_log: None,
        }
    }
}
