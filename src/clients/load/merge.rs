//! `echoloop report FILE...`: several runs' HdrHistogram logs added up into one report.
//!
//! When one machine cannot make enough load, several `echoloop load` processes (on one machine or
//! many) each write `--hdr-log`, and this adds them up as if one generator had done it all:
//!
//! - **Latency**: every interval histogram of every log is added into one histogram, and the
//!   percentiles are read from that sum. Exact to the histogram's 3 digits, unlike averaging
//!   percentiles, which has no meaning (the mean of two p99s is not the p99 of anything).
//! - **Counts** (sent, received, timeouts, mismatches, errors, connections) are summed, from the
//!   counts each log carries at its end.
//! - **Throughput** is taken over the time the runs *overlap* (from the latest start to the
//!   earliest end, by the logs' own clocks: keep the machines' clocks in sync with NTP): the
//!   replies of every interval inside that span, divided by its length. Runs that do not
//!   overlap at all are summed run by run instead.
//! - **Over time**: intervals are put in buckets of the first log's interval length, from the
//!   earliest start, and added up, for the timeline and the plot.
//!
//! The result is a [`LoadReport`], printed and judged exactly as `load` does (exit 1 on any
//! timeout, mismatch or failed connection in any run).
//!
//! Next: `outputs.rs`, the files a run writes.

use std::path::{Path, PathBuf};

use super::config::ReplyKind;
use super::hdr_log::{self, LoggedRun};
use super::report::{LoadReport, RunCounts};
use super::tally::{Interval, new_histogram};
use super::timeline::TimelineRow;

/// Why the logs could not be added up.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not an interval log.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A log has no run counts: not written by `echoloop load`, or its run never finished.
    #[error("{}: no echoloop run counts at the end (not written by `echoloop load --hdr-log`, or the run did not finish)", path.display())]
    NoCounts {
        /// The file.
        path: PathBuf,
    },
    /// No file given.
    #[error("no log given")]
    Empty,
}

/// Reads the logs at `paths` and adds them up.
pub fn merge_logs(paths: &[impl AsRef<Path>]) -> Result<LoadReport, MergeError> {
    let mut runs = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| MergeError::Read {
            path: path.into(),
            source,
        })?;
        let run = hdr_log::read(&text).map_err(|message| MergeError::Parse {
            path: path.into(),
            message,
        })?;
        let Some(counts) = run.counts.clone() else {
            return Err(MergeError::NoCounts { path: path.into() });
        };
        runs.push((run, counts));
    }
    merge(runs)
}

/// Adds up runs read back from their logs.
fn merge(runs: Vec<(LoggedRun, RunCounts)>) -> Result<LoadReport, MergeError> {
    let Some((_, first)) = runs.first() else {
        return Err(MergeError::Empty);
    };
    let mut total = first.clone();
    for (_, counts) in &runs[1..] {
        add_counts(&mut total, counts);
    }
    let mut histogram = new_histogram();
    for (run, _) in &runs {
        for interval in &run.intervals {
            histogram.add(&interval.latency).expect("same bounds");
        }
    }
    let one_way_send = total.config.protocol == ReplyKind::Discard;
    let count = |i: &hdr_log::LoggedInterval| match (i.counts, one_way_send) {
        (Some(c), true) => c.sent,
        (Some(c), false) => c.received,
        (None, _) => i.latency.len(),
    };
    let spans: Vec<(f64, f64)> = runs
        .iter()
        .filter(|(run, _)| !run.intervals.is_empty())
        .map(|(run, _)| {
            let start = run
                .intervals
                .iter()
                .map(|i| i.start)
                .fold(f64::MAX, f64::min);
            let end = run
                .intervals
                .iter()
                .map(|i| i.start + i.length)
                .fold(f64::MIN, f64::max);
            (start, end)
        })
        .collect();
    let overlap_start = spans.iter().map(|s| s.0).fold(f64::MIN, f64::max);
    let overlap_end = spans.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    let msgs_per_sec = if spans.len() == runs.len() && overlap_end > overlap_start {
        let length = overlap_end - overlap_start;
        let mut inside = 0.0;
        for (run, _) in &runs {
            for interval in &run.intervals {
                let from = interval.start.max(overlap_start);
                let to = (interval.start + interval.length).min(overlap_end);
                if to > from && interval.length > 0.0 {
                    inside += count(interval) as f64 * (to - from) / interval.length;
                }
            }
        }
        total.duration_secs = length;
        inside / length
    } else {
        runs.iter()
            .map(|(_, c)| {
                let n = if one_way_send { c.sent } else { c.received };
                n as f64 / c.duration_secs.max(1e-9)
            })
            .sum()
    };
    let timeline = merged_timeline(&runs);
    Ok(LoadReport::from_counts(
        total,
        histogram,
        None,
        Some(msgs_per_sec),
        timeline,
    ))
}

/// Sums `more` into `total`; the configuration keeps the first run's, with connections, threads
/// and rates added up.
fn add_counts(total: &mut RunCounts, more: &RunCounts) {
    total.sent += more.sent;
    total.received += more.received;
    total.timeouts += more.timeouts;
    total.lost += more.lost;
    total.mismatches += more.mismatches;
    if total.first_mismatch.is_none() {
        total.first_mismatch = more.first_mismatch.clone();
    }
    total.received_bytes += more.received_bytes;
    total.sent_bytes += more.sent_bytes;
    total.connections_ok += more.connections_ok;
    total.connections_up += more.connections_up;
    let (f, m) = (&mut total.connections_failed, &more.connections_failed);
    f.refused += m.refused;
    f.timed_out += m.timed_out;
    f.emfile += m.emfile;
    f.eaddrnotavail += m.eaddrnotavail;
    f.other += m.other;
    f.tls += m.tls;
    let (e, m) = (&mut total.errors, &more.errors);
    e.reset += m.reset;
    e.closed_by_server += m.closed_by_server;
    e.broken_framing += m.broken_framing;
    e.unexpected += m.unexpected;
    e.other += m.other;
    total.duration_secs = total.duration_secs.max(more.duration_secs);
    total.interrupted |= more.interrupted;
    let (c, m) = (&mut total.config, &more.config);
    c.connections += m.connections;
    c.threads += m.threads;
    c.rate = c.rate.zip(m.rate).map(|(a, b)| a + b);
    c.messages = c.messages.zip(m.messages).map(|(a, b)| a + b);
    if c.target != m.target {
        c.target = format!("{} (and others)", c.target);
    }
}

/// The runs' intervals in buckets of the first interval's length, from the earliest start.
fn merged_timeline(runs: &[(LoggedRun, RunCounts)]) -> Vec<TimelineRow> {
    let all: Vec<&hdr_log::LoggedInterval> =
        runs.iter().flat_map(|(run, _)| &run.intervals).collect();
    let Some(step) = all.first().map(|i| i.length).filter(|l| *l > 0.0) else {
        return Vec::new();
    };
    let origin = all.iter().map(|i| i.start).fold(f64::MAX, f64::min);
    let mut buckets: Vec<Interval> = Vec::new();
    for logged in all {
        let k = ((logged.start - origin) / step + 0.5).floor().max(0.0) as usize;
        while buckets.len() <= k {
            let n = buckets.len() as u64;
            let mut bucket = Interval::new(n, (n as f64 * step * 1e9) as u64);
            bucket.end_ns = ((n + 1) as f64 * step * 1e9) as u64;
            buckets.push(bucket);
        }
        let bucket = &mut buckets[k];
        if let Some(c) = logged.counts {
            bucket.sent += c.sent;
            bucket.received += c.received;
            bucket.errors += c.errors;
        } else {
            bucket.received += logged.latency.len();
        }
        bucket.latency.add(&logged.latency).expect("same bounds");
    }
    buckets.iter().map(TimelineRow::of).collect()
}
