//! Where `load` and `report` write their results: the same five options for both commands.
//!
//! Next: `report.rs`.

use std::path::PathBuf;

use clap::Args;

/// The summary's form and the files written beside it (flattened into `load` and `report`).
#[derive(Debug, Args)]
pub struct ResultFiles {
    /// Print one JSON object on stdout instead of the summary
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON object to FILE (the summary still goes to stdout)
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Write the latency percentile distribution (HdrHistogram text, µs) to FILE
    #[arg(long, value_name = "FILE")]
    pub histogram: Option<PathBuf>,
    /// Write one row per interval to FILE: CSV, or JSON lines if FILE ends in .jsonl
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Draw throughput, p99 over time and the latency percentile curve into FILE.svg
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}
