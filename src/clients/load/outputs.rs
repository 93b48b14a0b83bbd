//! The files a run writes besides its summary: `--json-out`, `--histogram`, `--timeline`,
//! `--plot`, `--hdr-log`.
//!
//! A path that cannot be written must not cost the user a ten-minute run: every file is created
//! by [`Outputs::create`] *before* the first connection, and a bad one is a one-line error (exit
//! 2). The timeline and the HdrHistogram log are then written as the run goes, interval by
//! interval ([`Outputs::write_interval`]), so they survive even a run that is killed; the others
//! when the report is ready ([`Outputs::finish`]). `echoloop report` writes the same files from
//! merged logs.
//!
//! Next: `live.rs`, the line drawn while the run goes on.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::hdr_log::HdrLog;
use super::plot::write_plot;
use super::report::LoadReport;
use super::tally::Interval;
use super::timeline::{Timeline, TimelineRow};

/// Where to write what; `None`: not asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputPaths {
    /// `--json-out`: the JSON report, next to the summary on stdout.
    pub json_out: Option<PathBuf>,
    /// `--histogram`: the percentile distribution, HdrHistogram's text layout.
    pub histogram: Option<PathBuf>,
    /// `--timeline`: one row per interval, CSV or JSON lines (`.jsonl`).
    pub timeline: Option<PathBuf>,
    /// `--plot`: the SVG picture.
    pub plot: Option<PathBuf>,
    /// `--hdr-log`: the HdrHistogram interval log.
    pub hdr_log: Option<PathBuf>,
}

/// The output files, created and open.
#[derive(Debug)]
pub struct Outputs {
    json_out: Option<(PathBuf, File)>,
    histogram: Option<(PathBuf, File)>,
    timeline: Option<(PathBuf, Timeline)>,
    plot: Option<PathBuf>,
    hdr_log: Option<(PathBuf, HdrLog)>,
}

fn cannot(path: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot write {}: {e}", path.display())
}

fn create(path: &Option<PathBuf>) -> Result<Option<(PathBuf, File)>, String> {
    path.as_ref()
        .map(|p| {
            File::create(p)
                .map(|f| (p.clone(), f))
                .map_err(|e| cannot(p, e))
        })
        .transpose()
}

impl Outputs {
    /// Creates every file asked for; `Err` is the line to show (exit 2).
    pub fn create(paths: &OutputPaths) -> Result<Outputs, String> {
        let plot = create(&paths.plot)?.map(|(p, _)| p);
        Ok(Outputs {
            json_out: create(&paths.json_out)?,
            histogram: create(&paths.histogram)?,
            timeline: paths
                .timeline
                .as_ref()
                .map(|p| {
                    Timeline::create(p)
                        .map(|t| (p.clone(), t))
                        .map_err(|e| cannot(p, e))
                })
                .transpose()?,
            plot,
            hdr_log: paths
                .hdr_log
                .as_ref()
                .map(|p| {
                    HdrLog::create(p)
                        .map(|l| (p.clone(), l))
                        .map_err(|e| cannot(p, e))
                })
                .transpose()?,
        })
    }

    /// One whole interval: a timeline row and a histogram in the log.
    pub fn write_interval(&mut self, interval: &Interval, row: &TimelineRow) -> Result<(), String> {
        self.write_row(row)?;
        if let Some((path, log)) = &mut self.hdr_log {
            log.write_interval(interval).map_err(|e| cannot(path, e))?;
        }
        Ok(())
    }

    /// One timeline row.
    pub fn write_row(&mut self, row: &TimelineRow) -> Result<(), String> {
        if let Some((path, timeline)) = &mut self.timeline {
            timeline.write(row).map_err(|e| cannot(path, e))?;
        }
        Ok(())
    }

    /// The report is ready: writes the files that need all of it.
    pub fn finish(self, report: &LoadReport) -> Result<(), String> {
        if let Some((path, mut file)) = self.json_out {
            writeln!(file, "{}", report.to_json()).map_err(|e| cannot(&path, e))?;
        }
        if let Some((path, mut file)) = self.histogram {
            file.write_all(report.percentile_distribution().as_bytes())
                .map_err(|e| cannot(&path, e))?;
        }
        if let Some((path, log)) = self.hdr_log {
            log.finish(&report.counts).map_err(|e| cannot(&path, e))?;
        }
        if let Some(path) = self.plot {
            let title = format!(
                "echoloop load: {} ({} connections, {})",
                report.config.target, report.config.connections, report.config.pacing
            );
            write_plot(&path, &title, &report.timeline, &report.histogram)?;
        }
        Ok(())
    }
}
