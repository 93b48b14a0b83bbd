//! Results over time: one row per `--interval`, written to `--timeline FILE` as the run goes.
//!
//! A summary hides *when* things happened: a server that stalled for two seconds in the middle of
//! a minute has the same p99 as one that was slow throughout. So each reactor cuts its counts
//! into intervals of the measurement window (one second by default, `tally.rs`) and hands each
//! finished one to the caller's thread. There the [`IntervalMerger`] waits until every reactor
//! has handed over interval *k*, adds the shares up (histograms are added exactly, not their
//! percentiles averaged) and turns the sum into a [`TimelineRow`]:
//!
//! ```text
//! elapsed_s,sent,received,errors,msgs_per_sec,p50_us,p99_us,max_us
//! 1.000,20012,20012,0,20012.0,48.1,97.3,412.2
//! ```
//!
//! `elapsed_s` is where the interval ends, in seconds after the start of the measurement window;
//! the last row may be shorter than the others. An interval without replies has empty latency
//! cells (JSON: `null`). A file ending in `.jsonl` gets one JSON object per line instead.
//!
//! Next: `hdr_log.rs`, the same intervals as an HdrHistogram log.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tally::Interval;

/// One interval of the results over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineRow {
    /// End of the interval, in seconds after the start of the measurement window.
    pub elapsed_s: f64,
    /// Measured messages sent in it.
    pub sent: u64,
    /// Replies received in it.
    pub received: u64,
    /// Timeouts, lost datagrams, mismatches and connection errors counted in it.
    pub errors: u64,
    /// Replies per second of the interval.
    pub msgs_per_sec: f64,
    /// Median latency of its replies, µs.
    pub p50_us: Option<f64>,
    /// 99th percentile, µs.
    pub p99_us: Option<f64>,
    /// Slowest reply, µs.
    pub max_us: Option<f64>,
}

impl TimelineRow {
    /// The row for a whole (all reactors added) interval.
    pub fn of(interval: &Interval) -> Self {
        let secs = (interval.end_ns.saturating_sub(interval.start_ns) as f64 / 1e9).max(1e-9);
        let h = &interval.latency;
        let us = |ns: u64| (!h.is_empty()).then(|| (ns as f64 / 100.0).round() / 10.0);
        TimelineRow {
            elapsed_s: (interval.end_ns as f64 / 1e6).round() / 1e3,
            sent: interval.sent,
            received: interval.received,
            errors: interval.errors,
            msgs_per_sec: (interval.received as f64 / secs * 10.0).round() / 10.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            max_us: us(h.max()),
        }
    }
}

/// Adds the reactors' shares of each interval up, and passes on whole intervals in order.
#[derive(Debug)]
pub struct IntervalMerger {
    reactors: usize,
    /// Intervals handed over but not yet whole: (interval, how many reactors gave their share).
    pending: Vec<(Interval, usize)>,
    /// The next interval to pass on.
    next: u64,
    rows: Vec<TimelineRow>,
}

impl IntervalMerger {
    /// A merger for `reactors` reactors.
    pub fn new(reactors: usize) -> Self {
        IntervalMerger {
            reactors,
            pending: Vec::new(),
            next: 0,
            rows: Vec::new(),
        }
    }

    /// A reactor handed over `interval` (each hands over every interval, in order); passes on
    /// every interval now whole. A reactor that ended early holds the rest back until [`finish`].
    ///
    /// [`finish`]: IntervalMerger::finish
    pub fn push(
        &mut self,
        interval: Interval,
        on_interval: &mut impl FnMut(&Interval, &TimelineRow),
    ) {
        let index = (interval.index - self.next.min(interval.index)) as usize;
        while self.pending.len() <= index {
            let k = self.next + self.pending.len() as u64;
            self.pending.push((Interval::new(k, interval.start_ns), 0));
        }
        let (sum, shares) = &mut self.pending[index];
        if *shares == 0 {
            *sum = interval.clone();
        } else {
            sum.add(&interval);
        }
        *shares += 1;
        self.pass_on_whole(on_interval);
    }

    fn pass_on_whole(&mut self, on_interval: &mut impl FnMut(&Interval, &TimelineRow)) {
        while let Some((_, shares)) = self.pending.first()
            && *shares >= self.reactors
        {
            let (interval, _) = self.pending.remove(0);
            self.emit(interval, on_interval);
        }
    }

    fn emit(&mut self, interval: Interval, on_interval: &mut impl FnMut(&Interval, &TimelineRow)) {
        let row = TimelineRow::of(&interval);
        on_interval(&interval, &row);
        self.rows.push(row);
        self.next = interval.index + 1;
    }

    /// Every reactor has ended: passes on what is left, in order.
    pub fn finish(&mut self, on_interval: &mut impl FnMut(&Interval, &TimelineRow)) {
        for (interval, shares) in std::mem::take(&mut self.pending) {
            if shares > 0 {
                self.emit(interval, on_interval);
            }
        }
    }

    /// The rows passed on, in order.
    pub fn into_rows(self) -> Vec<TimelineRow> {
        self.rows
    }
}

/// `--timeline FILE`: CSV with a header, or JSON lines if the name ends in `.jsonl`.
#[derive(Debug)]
pub struct Timeline {
    out: BufWriter<File>,
    json_lines: bool,
}

impl Timeline {
    /// Creates (truncates) the file now, before the run, so that a bad path fails early.
    pub fn create(path: &Path) -> io::Result<Timeline> {
        let out = BufWriter::new(File::create(path)?);
        let json_lines = path.extension().is_some_and(|e| e == "jsonl");
        let mut timeline = Timeline { out, json_lines };
        if !json_lines {
            writeln!(
                timeline.out,
                "elapsed_s,sent,received,errors,msgs_per_sec,p50_us,p99_us,max_us"
            )?;
        }
        Ok(timeline)
    }

    /// Writes one row (and flushes it: the file follows the run).
    pub fn write(&mut self, row: &TimelineRow) -> io::Result<()> {
        if self.json_lines {
            serde_json::to_writer(&mut self.out, row)?;
            writeln!(self.out)?;
        } else {
            let cell = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
            writeln!(
                self.out,
                "{:.3},{},{},{},{:.1},{},{},{}",
                row.elapsed_s,
                row.sent,
                row.received,
                row.errors,
                row.msgs_per_sec,
                cell(row.p50_us),
                cell(row.p99_us),
                cell(row.max_us)
            )?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(index: u64, received: u64) -> Interval {
        let mut i = Interval::new(index, index * 1_000_000_000);
        i.end_ns = (index + 1) * 1_000_000_000;
        i.received = received;
        i.sent = received;
        for _ in 0..received {
            i.latency.record(50_000).unwrap();
        }
        i
    }

    #[test]
    fn shares_are_added_and_passed_on_in_order_once_whole() {
        let mut merger = IntervalMerger::new(2);
        let mut seen = Vec::new();
        let mut on = |i: &Interval, r: &TimelineRow| seen.push((i.index, r.received));
        merger.push(interval(0, 10), &mut on);
        merger.push(interval(1, 5), &mut on);
        assert!(
            merger.rows.is_empty(),
            "interval 0 waits for the other reactor"
        );
        merger.push(interval(0, 7), &mut on);
        merger.push(interval(1, 1), &mut on);
        merger.finish(&mut on);
        assert_eq!(seen, vec![(0, 17), (1, 6)]);
        let rows = merger.into_rows();
        assert_eq!(rows[0].p50_us, Some(50.0));
        assert_eq!(rows[1].elapsed_s, 2.0);
        assert_eq!(TimelineRow::of(&interval(3, 0)).p99_us, None);
    }
}
