//! `--hdr-log FILE`: the run as a standard HdrHistogram interval log, and reading one back.
//!
//! One machine cannot always make enough load, and percentiles cannot be averaged: the p99 of two
//! runs is not the mean of their p99s. What *can* be added up exactly is histograms. So each run
//! writes its latencies as HdrHistogram's *interval log*, the format of the Java
//! `HistogramLogWriter` (read by `HistogramLogProcessor` and the online plotters): a few header
//! lines, then one line per interval with its start (seconds after the log's base time), its
//! length, its max and the histogram itself, compressed and in base64:
//!
//! ```text
//! #[StartTime: 1796612345.123 (seconds since epoch)]
//! #[BaseTime: 1796612345.123 (seconds since epoch)]
//! #echoloop-interval {"sent":20012,"received":20012,"errors":0}
//! 0.013,1.000,412199.000,HISTFAAAAEx4nJNpmSz...
//! ...
//! #echoloop-counts {"sent":40021,"received":40021,"timeouts":0,...,"config":{...}}
//! ```
//!
//! Values are in nanoseconds (so `HistogramLogProcessor -outputValueUnitRatio 1000` shows µs). Lines
//! starting with `#` are comments to every reader of the format; ours carry what a histogram
//! cannot: each interval's counts, and at the end the run's counts and configuration
//! ([`RunCounts`]). `echoloop report` (`merge.rs`) reads several such logs and adds them up.
//!
//! Next: `plot.rs`, the picture.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

pub use super::report::RunCounts;
use super::tally::Interval;

/// The comment that carries one interval's counts, before its histogram line.
const INTERVAL_COMMENT: &str = "echoloop-interval ";
/// The comment that carries the run's counts and configuration, at the end.
const COUNTS_COMMENT: &str = "echoloop-counts ";

/// One interval's counts, as the comment before its histogram keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalCounts {
    /// Measured messages sent in it.
    pub sent: u64,
    /// Replies in it.
    pub received: u64,
    /// Errors of every kind counted in it.
    pub errors: u64,
}

/// An interval log being written.
pub struct HdrLog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    /// When the log was created: its StartTime and BaseTime.
    created: Instant,
    /// The measurement window's start, in seconds after `created`, once the first interval
    /// tells (intervals are timed from the window's start).
    window_offset: Option<f64>,
}

impl HdrLog {
    /// Creates (truncates) the file and writes the header now, before the run, so that a bad
    /// path fails early.
    pub fn create(path: &Path) -> io::Result<HdrLog> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        let now = SystemTime::now();
        IntervalLogWriterBuilder::new()
            .add_comment("echoloop load: latencies in nanoseconds")
            .with_start_time(now)
            .with_base_time(now)
            .begin_log_with(&mut out, &mut serializer)?;
        out.flush()?;
        Ok(HdrLog {
            out,
            serializer,
            created: Instant::now(),
            window_offset: None,
        })
    }

    /// Writes one whole interval: its counts as a comment, then its histogram.
    pub fn write_interval(&mut self, interval: &Interval) -> io::Result<()> {
        let secs = |ns: u64| ns as f64 / 1e9;
        // The first interval is handed over just after it ends: that fixes where the window
        // started on this log's clock.
        let offset = *self.window_offset.get_or_insert_with(|| {
            (self.created.elapsed().as_secs_f64() - secs(interval.end_ns)).max(0.0)
        });
        let counts = IntervalCounts {
            sent: interval.sent,
            received: interval.received,
            errors: interval.errors,
        };
        let mut writer =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        let json = serde_json::to_string(&counts).map_err(io::Error::other)?;
        writer.write_comment(&format!("{INTERVAL_COMMENT}{json}"))?;
        writer
            .write_histogram(
                &interval.latency,
                Duration::from_secs_f64(offset + secs(interval.start_ns)),
                Duration::from_nanos(interval.end_ns.saturating_sub(interval.start_ns)),
                None,
            )
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.out.flush()
    }

    /// Ends the log with the run's counts and configuration.
    pub fn finish(mut self, counts: &RunCounts) -> io::Result<()> {
        let json = serde_json::to_string(counts).map_err(io::Error::other)?;
        writeln!(self.out, "#{COUNTS_COMMENT}{json}")?;
        self.out.flush()
    }
}

impl std::fmt::Debug for HdrLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdrLog")
            .field("window_offset", &self.window_offset)
            .finish_non_exhaustive()
    }
}

/// One interval read back from a log.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    /// Start, in seconds since the epoch.
    pub start: f64,
    /// Length, in seconds.
    pub length: f64,
    /// Its counts, if the log is echoloop's.
    pub counts: Option<IntervalCounts>,
    /// Its latencies, ns.
    pub latency: Histogram<u64>,
}

/// A whole log read back.
#[derive(Debug, Clone)]
pub struct LoggedRun {
    /// The intervals, in the order written.
    pub intervals: Vec<LoggedInterval>,
    /// The run's counts and configuration (`None`: not written by `echoloop load`, or the run
    /// did not finish).
    pub counts: Option<RunCounts>,
}

/// Reads an interval log (ours, or any writer's: without our comments there are no counts).
pub fn read(text: &str) -> Result<LoggedRun, String> {
    let mut base = 0.0;
    let mut intervals = Vec::new();
    let mut deserializer = Deserializer::new();
    let mut pending_counts = None;
    let mut counts = None;
    // Our comments first: the iterator skips comments.
    let mut comment_counts = Vec::new();
    for line in text.lines() {
        if let Some(json) = line
            .strip_prefix('#')
            .and_then(|l| l.strip_prefix(INTERVAL_COMMENT))
        {
            comment_counts
                .push(serde_json::from_str::<IntervalCounts>(json).map_err(|e| e.to_string())?);
        } else if let Some(json) = line
            .strip_prefix('#')
            .and_then(|l| l.strip_prefix(COUNTS_COMMENT))
        {
            counts = Some(serde_json::from_str::<RunCounts>(json).map_err(|e| e.to_string())?);
        }
    }
    let mut comment_counts = comment_counts.into_iter();
    for entry in IntervalLogIterator::new(text.as_bytes()) {
        match entry.map_err(|e| match e {
            hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
                format!("not an HdrHistogram interval log (unreadable at byte {offset})")
            }
        })? {
            LogEntry::BaseTime(t) => base = t.as_secs_f64(),
            LogEntry::StartTime(t) if base == 0.0 => base = t.as_secs_f64(),
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(interval) => {
                let bytes = STANDARD
                    .decode(interval.encoded_histogram())
                    .map_err(|e| format!("an interval's histogram is not base64: {e}"))?;
                let latency: Histogram<u64> = deserializer
                    .deserialize(&mut io::Cursor::new(bytes))
                    .map_err(|e| format!("an interval's histogram cannot be read: {e:?}"))?;
                pending_counts = comment_counts.next().or(pending_counts.take());
                intervals.push(LoggedInterval {
                    start: base + interval.start_timestamp().as_secs_f64(),
                    length: interval.duration().as_secs_f64(),
                    counts: pending_counts.take(),
                    latency,
                });
            }
        }
    }
    Ok(LoggedRun { intervals, counts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_reads_back_what_was_written() {
        let path = std::env::temp_dir().join(format!("echoloop-hdr-{}.hlog", std::process::id()));
        let mut log = HdrLog::create(&path).unwrap();
        let mut interval = Interval::new(0, 0);
        interval.end_ns = 1_000_000_000;
        interval.sent = 3;
        interval.received = 3;
        for ns in [1_000, 20_000, 300_000] {
            interval.latency.record(ns).unwrap();
        }
        log.write_interval(&interval).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(text.starts_with("#echoloop load"), "{text}");
        let run = read(&text).unwrap();
        assert_eq!(run.intervals.len(), 1);
        let logged = &run.intervals[0];
        assert_eq!(logged.latency.len(), 3);
        assert_eq!(logged.latency.max(), interval.latency.max());
        assert_eq!(logged.counts.unwrap().received, 3);
        assert!((logged.length - 1.0).abs() < 1e-3);
        assert!(run.counts.is_none(), "no counts: the run never finished");
    }
}
