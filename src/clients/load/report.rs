//! What a run found: counters and latency histograms, merged over reactors, shown as text or JSON.
//!
//! Each reactor keeps a [`Tally`] of its own (no sharing on the hot path) and hands it back when it
//! ends; [`LoadReport::new`] adds them up. Latencies go into [HdrHistogram]s, which keep every
//! sample to 3 significant digits in fixed memory, so p99.9 and max are exact enough however long
//! the run. They are recorded in nanoseconds and shown in microseconds.
//!
//! `--histogram FILE` writes the percentile distribution in HdrHistogram's text layout (the one
//! wrk2 prints and the HdrHistogram plotter reads: value, percentile, total count, 1/(1-percentile)),
//! with values in microseconds.
//!
//! Next: `live.rs`, the line drawn once a second while the run goes on.
//!
//! [HdrHistogram]: https://hdrhistogram.github.io/HdrHistogram/

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::config::{LoadConfig, ReplyKind, Target};
use crate::protocol::framing::FramingKind;

/// Longest latency recorded: an hour, in nanoseconds. Longer ones are recorded as an hour.
const LATENCY_MAX_NS: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds")
}

/// Why a connection could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// `ECONNREFUSED` (or no Unix socket file): nothing listening.
    Refused,
    /// No answer within the connect timeout (or `ETIMEDOUT`).
    TimedOut,
    /// `EMFILE`/`ENFILE`: out of file descriptors.
    TooManyOpenFiles,
    /// `EADDRNOTAVAIL`/`EADDRINUSE`: out of local ports.
    PortsExhausted,
    /// Anything else.
    Other,
}

/// Why an established connection ended before the run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionError {
    /// `ECONNRESET`, `EPIPE`.
    Reset,
    /// The server closed it (end of stream).
    ClosedByServer,
    /// UDP: a datagram never answered, or a frame the decoder could not cut.
    Lost,
    /// Anything else.
    Other,
}

/// One reactor's counters and histograms.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Measured messages sent (inside the measurement window).
    pub sent: u64,
    /// Replies to measured messages.
    pub received: u64,
    /// Every message sent, warmup included (the live line).
    pub sent_all: u64,
    /// Every reply, warmup included (the live line).
    pub received_all: u64,
    /// Replies that were not what was sent, at any time of the run.
    pub mismatches: u64,
    /// What the first mismatch looked like.
    pub first_mismatch: Option<String>,
    /// Connections established.
    pub connections_ok: u64,
    /// Connections up when the run ended.
    pub connections_up: u64,
    /// Connection failures by [`ConnectFailure`].
    pub connect_failures: [u64; 5],
    /// Errors on established connections by [`ConnectionError`].
    pub errors: [u64; 4],
    /// Latency from the send time (closed loop), or from the intended send time (open loop).
    pub latency: Histogram<u64>,
    /// Open loop only: latency from the actual send time.
    pub uncorrected: Histogram<u64>,
    /// Length of the measurement window, in seconds.
    pub window_secs: f64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            sent: 0,
            received: 0,
            sent_all: 0,
            received_all: 0,
            mismatches: 0,
            first_mismatch: None,
            connections_ok: 0,
            connections_up: 0,
            connect_failures: [0; 5],
            errors: [0; 4],
            latency: new_histogram(),
            uncorrected: new_histogram(),
            window_secs: 0.0,
        }
    }
}

impl Tally {
    /// Counts a failed connection.
    pub fn connect_failed(&mut self, why: ConnectFailure) {
        self.connect_failures[why as usize] += 1;
    }

    /// Counts an error on an established connection.
    pub fn error(&mut self, why: ConnectionError) {
        self.errors[why as usize] += 1;
    }

    /// Counts a reply that is not what was sent; the first one is described.
    pub fn mismatch(&mut self, describe: impl FnOnce() -> String) {
        self.mismatches += 1;
        if self.first_mismatch.is_none() {
            self.first_mismatch = Some(describe());
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The slowest reply.
    pub max: f64,
}

impl Percentiles {
    /// Reads a nanosecond histogram.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        Percentiles {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
        }
    }
}

/// Connection failures by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FailureCounts {
    /// Nothing listening.
    pub refused: u64,
    /// No answer in time.
    pub timed_out: u64,
    /// Out of file descriptors.
    pub emfile: u64,
    /// Out of local ports.
    pub eaddrnotavail: u64,
    /// Anything else.
    pub other: u64,
}

/// Errors on established connections by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Reset by the peer.
    pub reset: u64,
    /// Closed by the server before the run ended.
    pub closed_by_server: u64,
    /// Datagrams never answered; frames that could not be cut.
    pub lost: u64,
    /// Anything else.
    pub other: u64,
}

/// The run's configuration, as the report states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigSummary {
    /// The server.
    pub target: String,
    /// `tcp`, `unix` or `udp`.
    pub transport: &'static str,
    /// `-c`.
    pub connections: usize,
    /// `-d`.
    pub duration_secs: f64,
    /// `--warmup`.
    pub warmup_secs: f64,
    /// `-s`.
    pub size: usize,
    /// `--pipeline`.
    pub pipeline: usize,
    /// `--rate`; `null`: closed loop.
    pub rate: Option<f64>,
    /// `--connect-rate`.
    pub connect_rate: Option<f64>,
    /// Reactors started.
    pub threads: usize,
    /// `--framing` (`datagram` with `--udp`).
    pub framing: &'static str,
    /// `--protocol`.
    pub protocol: ReplyKind,
    /// `--source-addrs`, expanded.
    pub source_addrs: usize,
    /// `--hold`.
    pub hold: bool,
    /// `closed` or `open`.
    pub pacing: &'static str,
}

impl ConfigSummary {
    fn of(config: &LoadConfig) -> Self {
        let transport = match &config.target {
            Target::Stream(crate::net::address::Address::Tcp(_)) => "tcp",
            Target::Stream(crate::net::address::Address::Unix(_)) => "unix",
            Target::Datagram(_) => "udp",
        };
        ConfigSummary {
            target: config.target.to_string(),
            transport,
            connections: config.connections,
            duration_secs: config.duration.as_secs_f64(),
            warmup_secs: config.warmup.as_secs_f64(),
            size: config.size,
            pipeline: config.pipeline,
            rate: config.rate,
            connect_rate: config.connect_rate,
            threads: config.reactors(),
            framing: match (config.is_datagram(), config.framing) {
                (true, _) => "datagram",
                (false, FramingKind::Raw) => "raw",
                (false, FramingKind::Line) => "line",
                (false, FramingKind::Length) => "length",
            },
            protocol: config.reply,
            source_addrs: config.source_addrs.len(),
            hold: config.hold,
            pacing: if config.rate.is_some() {
                "open"
            } else {
                "closed"
            },
        }
    }
}

/// Everything a run found. Serializes to the `--json` object.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Messages sent inside the measurement window.
    pub messages_sent: u64,
    /// Replies to those.
    pub messages_received: u64,
    /// Replies per second of the window, over all connections.
    pub msgs_per_sec: f64,
    /// Reply payload MiB per second.
    pub mib_per_sec: f64,
    /// Replies that were not what was sent (a correct server makes none).
    pub mismatches: u64,
    /// What the first mismatch looked like.
    pub first_mismatch: Option<String>,
    /// Connections established.
    pub connections_ok: u64,
    /// Connections that could not be made.
    pub connections_failed: u64,
    /// Those, by reason.
    pub connections_failed_by_reason: FailureCounts,
    /// Connections still up when the run ended (`--hold`: the number held).
    pub connections_up: u64,
    /// Established connections that ended early, and UDP messages lost.
    pub errors: u64,
    /// Those, by reason.
    pub errors_by_reason: ErrorCounts,
    /// Length of the measurement window.
    pub duration_secs: f64,
    /// Latency percentiles (open loop: from the intended send time).
    pub latency_us: Percentiles,
    /// Open loop only: from the actual send time, as a closed-loop tool would measure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_uncorrected_us: Option<Percentiles>,
    /// The run's configuration.
    pub config: ConfigSummary,
    /// The latency histogram behind `latency_us`, in nanoseconds.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

impl LoadReport {
    /// Adds up the reactors' tallies.
    pub fn new(config: &LoadConfig, tallies: Vec<Tally>) -> Self {
        let mut total = Tally::default();
        for tally in tallies {
            total.sent += tally.sent;
            total.received += tally.received;
            total.mismatches += tally.mismatches;
            total.first_mismatch = total.first_mismatch.or(tally.first_mismatch);
            total.connections_ok += tally.connections_ok;
            total.connections_up += tally.connections_up;
            for (sum, n) in total
                .connect_failures
                .iter_mut()
                .zip(tally.connect_failures)
            {
                *sum += n;
            }
            for (sum, n) in total.errors.iter_mut().zip(tally.errors) {
                *sum += n;
            }
            total.latency.add(&tally.latency).expect("same bounds");
            total
                .uncorrected
                .add(&tally.uncorrected)
                .expect("same bounds");
            total.window_secs = total.window_secs.max(tally.window_secs);
        }
        let secs = total.window_secs.max(1e-9);
        let [refused, timed_out, emfile, eaddrnotavail, other] = total.connect_failures;
        let [reset, closed_by_server, lost, other_errors] = total.errors;
        LoadReport {
            messages_sent: total.sent,
            messages_received: total.received,
            msgs_per_sec: round1(total.received as f64 / secs),
            mib_per_sec: round3(
                total.received as f64 * config.size as f64 / secs / (1024.0 * 1024.0),
            ),
            mismatches: total.mismatches,
            first_mismatch: total.first_mismatch,
            connections_ok: total.connections_ok,
            connections_failed: total.connect_failures.iter().sum(),
            connections_failed_by_reason: FailureCounts {
                refused,
                timed_out,
                emfile,
                eaddrnotavail,
                other,
            },
            connections_up: total.connections_up,
            errors: total.errors.iter().sum(),
            errors_by_reason: ErrorCounts {
                reset,
                closed_by_server,
                lost,
                other: other_errors,
            },
            duration_secs: round3(total.window_secs),
            latency_us: Percentiles::of(&total.latency),
            latency_uncorrected_us: config
                .rate
                .is_some()
                .then(|| Percentiles::of(&total.uncorrected)),
            config: ConfigSummary::of(config),
            histogram: total.latency,
        }
    }

    /// 0 clean; 1 if any reply was wrong or no connection could be made.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.mismatches > 0 || self.connections_ok == 0)
    }

    /// The summary for people.
    pub fn to_text(&self) -> String {
        let c = &self.config;
        let f = &self.connections_failed_by_reason;
        let e = &self.errors_by_reason;
        let mut out = String::new();
        let pacing = match c.rate {
            Some(rate) => format!("open loop at {rate} msgs/s"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "echoloop load: {} ({}), {} connections on {} threads, {:.1} s, {}-byte {} ({}), pipeline {}, {pacing}{}",
            c.target,
            c.transport,
            c.connections,
            c.threads,
            c.duration_secs,
            c.size,
            match c.protocol {
                ReplyKind::Echo => "echo",
                ReplyKind::Timestamp => "timestamp",
            },
            c.framing,
            c.pipeline,
            if c.hold { ", hold" } else { "" },
        );
        let _ = writeln!(
            out,
            "connections: {} ok, {} failed (refused {}, timed out {}, EMFILE {}, EADDRNOTAVAIL {}, other {}), {} up at the end",
            self.connections_ok,
            self.connections_failed,
            f.refused,
            f.timed_out,
            f.emfile,
            f.eaddrnotavail,
            f.other,
            self.connections_up
        );
        if !c.hold {
            let _ = writeln!(
                out,
                "messages:    {} sent, {} received in {:.3} s: {:.1} msgs/s, {:.3} MiB/s",
                self.messages_sent,
                self.messages_received,
                self.duration_secs,
                self.msgs_per_sec,
                self.mib_per_sec
            );
            let line = |p: &Percentiles| {
                format!(
                    "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
                    p.p50, p.p90, p.p99, p.p999, p.max
                )
            };
            let label = if c.rate.is_some() {
                "latency µs (from intended send time):"
            } else {
                "latency µs:"
            };
            let _ = writeln!(out, "{label} {}", line(&self.latency_us));
            if let Some(raw) = &self.latency_uncorrected_us {
                let _ = writeln!(
                    out,
                    "latency µs (from actual send time, uncorrected): {}",
                    line(raw)
                );
            }
        }
        let _ = write!(out, "mismatches:  {}", self.mismatches);
        if let Some(first) = &self.first_mismatch {
            let _ = write!(out, " (first: {first})");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "errors:      {} (reset {}, closed by server {}, lost {}, other {})",
            self.errors, e.reset, e.closed_by_server, e.lost, e.other
        );
        out
    }

    /// The `--json` object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The latency distribution in HdrHistogram's percentile text layout, values in µs.
    pub fn percentile_distribution(&self) -> String {
        let h = &self.histogram;
        let us = |ns: u64| ns as f64 / 1000.0;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let inverse = if q < 1.0 {
                format!("{:>14.2}", 1.0 / (1.0 - q))
            } else {
                format!("{:>14}", "inf")
            };
            let _ = writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10} {inverse}",
                us(v.value_iterated_to()),
                q,
                h.count_between(0, v.value_iterated_to())
            );
        }
        let _ = writeln!(
            out,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
            h.mean() / 1000.0,
            h.stdev() / 1000.0
        );
        let _ = writeln!(
            out,
            "#[Max     = {:>12.3}, Total count    = {:>12}]",
            us(h.max()),
            h.len()
        );
        let _ = writeln!(
            out,
            "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
            h.buckets(),
            h.distinct_values()
        );
        out
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tallies_add_up_and_percentiles_are_in_microseconds() {
        let mut config = LoadConfig::for_tests(Target::Datagram("127.0.0.1:9".parse().unwrap()));
        config.duration = Duration::from_secs(1);
        let mut a = Tally::default();
        let mut b = Tally::default();
        for tally in [&mut a, &mut b] {
            tally.sent = 100;
            tally.received = 100;
            tally.window_secs = 1.0;
            tally.connections_ok = 1;
            for i in 1..=100 {
                tally.latency.record(i * 1000).unwrap(); // 1..100 µs
            }
        }
        b.connect_failed(ConnectFailure::Refused);
        b.mismatch(|| "first".into());
        b.mismatch(|| "second".into());
        let report = LoadReport::new(&config, vec![a, b]);
        assert_eq!(report.messages_received, 200);
        assert_eq!(report.msgs_per_sec, 200.0);
        assert_eq!(report.connections_failed, 1);
        assert_eq!(report.connections_failed_by_reason.refused, 1);
        assert_eq!(report.mismatches, 2);
        assert_eq!(report.first_mismatch.as_deref(), Some("first"));
        assert!(
            (report.latency_us.p50 - 50.0).abs() < 0.1,
            "{:?}",
            report.latency_us
        );
        assert!((report.latency_us.max - 100.0).abs() < 0.1);
        assert_eq!(report.exit_code(), 1);
        assert!(report.to_text().contains("mismatches:  2 (first: first)"));
        let distribution = report.percentile_distribution();
        assert!(distribution.contains("Percentile"));
        assert!(distribution.contains("Total count    =          200"));
    }
}
