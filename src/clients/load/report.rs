//! What a run found: counters and latency histograms, added up over reactors, shown as text or
//! JSON, and the verdict (exit code).
//!
//! Each reactor keeps a [`Tally`] of its own (no sharing on the hot path) and hands it back when it
//! ends; [`LoadReport::new`] adds them up into [`RunCounts`] (the numbers) and one latency
//! histogram. `echoloop report` builds the same report from several runs' logs
//! ([`LoadReport::from_counts`]), so both print the same summary and apply the same verdict.
//! Latencies go into [HdrHistogram]s, which keep every sample to 3 significant digits in fixed
//! memory, so p99.9 and max are exact enough however long the run. They are recorded in
//! nanoseconds and shown in microseconds. A run with no reply has no latency at all: `n/a`
//! (JSON `null`), never a zero that looks like a fast server.
//!
//! **The verdict.** A load generator that prints numbers and exits 0 whatever happened lets a
//! broken server pass a CI job. So the run *fails* (exit 1, with one line on stderr saying why)
//! if no reply came at all, or any message timed out, any reply was wrong, or any connection
//! failed or broke. UDP may lose datagrams: it fails only above `--max-loss`. `--hold` fails if
//! fewer connections than asked stayed up. A run stopped by SIGINT exits 130 whatever it found.
//!
//! `--histogram FILE` writes the percentile distribution in HdrHistogram's text layout (the one
//! wrk2 prints and the HdrHistogram plotter reads: value, percentile, total count, 1/(1-percentile)),
//! with values in microseconds.
//!
//! Next: `timeline.rs`, the results over time.
//!
//! [HdrHistogram]: https://hdrhistogram.github.io/HdrHistogram/

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::config::{LoadConfig, ReplyKind, Target};
use super::tally::Tally;
use super::timeline::TimelineRow;
use crate::protocol::framing::FramingKind;

/// Latency percentiles in microseconds, as asked by `--percentiles`; `None` when there was no
/// reply to measure. Serializes as `{"p50": .., "p99": .., "p999": .., "max": ..}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles {
    /// (percentile, value in µs), in the order asked.
    pub values: Vec<(f64, Option<f64>)>,
    /// The slowest reply.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Reads `percentiles` (e.g. 99.9) from a nanosecond histogram.
    pub fn of(histogram: &Histogram<u64>, percentiles: &[f64]) -> Self {
        let us = |ns: u64| (!histogram.is_empty()).then(|| (ns as f64 / 100.0).round() / 10.0);
        Percentiles {
            values: percentiles
                .iter()
                .map(|&p| (p, us(histogram.value_at_quantile(p / 100.0))))
                .collect(),
            max: us(histogram.max()),
        }
    }

    /// The value at percentile `p` (one of those asked), µs.
    pub fn at(&self, p: f64) -> Option<f64> {
        self.values
            .iter()
            .find(|(q, _)| (q - p).abs() < 1e-9)
            .and_then(|(_, v)| *v)
    }

    /// `p50`, `p999`, `p9999`: the JSON key of percentile `p`.
    pub fn key(p: f64) -> String {
        format!("p{}", format_percentile(p).replace('.', ""))
    }

    /// `p50 48.1  p99.9 97.3  max 412.2`, with `n/a` for no value.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (p, v) in &self.values {
            let _ = write!(out, "p{} {}  ", format_percentile(*p), show(*v));
        }
        let _ = write!(out, "max {}", show(self.max));
        out
    }
}

impl Serialize for Percentiles {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len() + 1))?;
        for (p, v) in &self.values {
            map.serialize_entry(&Percentiles::key(*p), v)?;
        }
        map.serialize_entry("max", &self.max)?;
        map.end()
    }
}

/// `99.9` as `99.9`, `50` as `50`.
fn format_percentile(p: f64) -> String {
    let text = format!("{p}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"))
}

/// Parses `--percentiles 50,90,99,99.9`.
pub fn parse_percentiles(text: &str) -> Result<Vec<f64>, String> {
    let mut list = Vec::new();
    for item in text.split(',').map(str::trim) {
        match item.parse::<f64>() {
            Ok(p) if p > 0.0 && p < 100.0 => list.push(p),
            _ => {
                return Err(format!(
                    "--percentiles: '{item}' is not a percentile between 0 and 100"
                ));
            }
        }
    }
    Ok(list)
}

/// Connection failures by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The TLS handshake failed (absent from logs written before TLS: 0).
    #[serde(default)]
    pub tls: u64,
}

impl FailureCounts {
    fn total(&self) -> u64 {
        self.refused + self.timed_out + self.emfile + self.eaddrnotavail + self.other + self.tls
    }
}

/// TLS runs: the handshakes, apart from the messages' latency (a handshake is not a reply).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandshakeSummary {
    /// Handshakes done.
    pub handshakes: u64,
    /// Of those, how many resumed a session (`--tls-resume`).
    pub resumed: u64,
    /// Handshakes that failed (also counted in `connections_failed_by_reason.tls`).
    pub failed: u64,
    /// Why the first failed handshake failed.
    pub first_failure: Option<String>,
    /// How long the handshakes took, from the end of the TCP connect, µs: p50, p99, max.
    pub handshake_us: Percentiles,
}

/// The percentiles shown for handshakes, whatever `--percentiles` says.
const HANDSHAKE_PERCENTILES: [f64; 2] = [50.0, 99.0];

/// Errors on established connections by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Reset by the peer.
    pub reset: u64,
    /// Closed by the server before the run ended.
    pub closed_by_server: u64,
    /// A length-framed reply that could not be cut: the rest of that stream was unreadable.
    pub broken_framing: u64,
    /// Bytes or replies when nothing was owed.
    pub unexpected: u64,
    /// Anything else.
    pub other: u64,
}

impl ErrorCounts {
    fn total(&self) -> u64 {
        self.reset + self.closed_by_server + self.broken_framing + self.unexpected + self.other
    }
}

/// The run's configuration, as the report states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// The server.
    pub target: String,
    /// `tcp`, `unix` or `udp`.
    pub transport: String,
    /// `-c`.
    pub connections: usize,
    /// `-d`; `null`: no time limit (`-n` alone).
    pub duration_secs: Option<f64>,
    /// `-n`.
    pub messages: Option<u64>,
    /// `--warmup`.
    pub warmup_secs: f64,
    /// `--timeout`.
    pub timeout_secs: f64,
    /// `-s`, or the mean size of the `--payload-file` payloads.
    pub size: f64,
    /// Messages in flight per connection: `--pipeline` (raw timestamp: always 1).
    pub pipeline: usize,
    /// `--rate`; `null`: closed loop.
    pub rate: Option<f64>,
    /// `--connect-rate`.
    pub connect_rate: Option<f64>,
    /// Reactors started.
    pub threads: usize,
    /// `--framing` (`datagram` with `--udp`).
    pub framing: String,
    /// `--protocol`.
    pub protocol: ReplyKind,
    /// `--source-addrs`, expanded.
    pub source_addrs: usize,
    /// `--hold`.
    pub hold: bool,
    /// `--reconnect-after` (absent from logs written before it: `null`).
    #[serde(default)]
    pub reconnect_after: Option<u64>,
    /// `closed` or `open`.
    pub pacing: String,
    /// `--max-loss` (UDP), percent.
    pub max_loss_percent: f64,
    /// `--percentiles`.
    pub percentiles: Vec<f64>,
}

impl ConfigSummary {
    /// What `config` says.
    pub fn of(config: &LoadConfig) -> Self {
        let transport = match &config.target {
            Target::Stream(crate::net::address::Address::Tcp(_)) => "tcp",
            Target::Stream(crate::net::address::Address::Unix(_)) => "unix",
            Target::Stream(crate::net::address::Address::Tls { .. }) => "tls",
            Target::Datagram(_) => "udp",
        };
        ConfigSummary {
            target: config.target.to_string(),
            transport: transport.into(),
            connections: config.connections,
            duration_secs: config.duration.map(|d| d.as_secs_f64()),
            messages: config.messages,
            warmup_secs: config.warmup.as_secs_f64(),
            timeout_secs: config.timeout.as_secs_f64(),
            size: config.payloads.mean_size(),
            pipeline: config.in_flight_limit(),
            rate: config.rate,
            connect_rate: config.connect_rate,
            threads: config.reactors(),
            framing: match (config.is_datagram(), config.framing) {
                (true, _) => "datagram",
                (false, FramingKind::Raw) => "raw",
                (false, FramingKind::Line) => "line",
                (false, FramingKind::Length) => "length",
            }
            .into(),
            protocol: config.reply,
            source_addrs: config.source_addrs.len(),
            hold: config.hold,
            reconnect_after: config.reconnect_after,
            pacing: if config.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .into(),
            max_loss_percent: config.max_loss_percent,
            percentiles: config.percentiles.clone(),
        }
    }
}

/// A run's numbers without its histograms: what an HdrHistogram log carries in its comments, so
/// that `echoloop report` can add runs up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Measured messages sent.
    pub sent: u64,
    /// Replies within `--timeout`.
    pub received: u64,
    /// Messages answered late or never.
    pub timeouts: u64,
    /// UDP: datagrams never answered.
    pub lost: u64,
    /// Wrong replies.
    pub mismatches: u64,
    /// What the first one looked like.
    pub first_mismatch: Option<String>,
    /// Reply payload bytes.
    pub received_bytes: u64,
    /// Payload bytes sent.
    pub sent_bytes: u64,
    /// Connections established.
    pub connections_ok: u64,
    /// Connections that could not be made, by reason.
    pub connections_failed: FailureCounts,
    /// Connections up at the end.
    pub connections_up: u64,
    /// Errors on established connections, by reason.
    pub errors: ErrorCounts,
    /// Length of the measurement window, seconds.
    pub duration_secs: f64,
    /// Stopped by SIGINT.
    pub interrupted: bool,
    /// The configuration.
    pub config: ConfigSummary,
}

/// Everything a run found. Serializes to the `--json` object.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Measured messages sent (discard: taken by the kernel in full).
    pub messages_sent: u64,
    /// Replies to those within `--timeout` (chargen: lines received).
    pub messages_received: u64,
    /// Messages answered later than `--timeout`, or never (a closed run: sent − received).
    pub timeouts: u64,
    /// UDP: datagrams never answered.
    pub lost: u64,
    /// Replies per second of the window, over all connections (discard: messages sent).
    pub msgs_per_sec: f64,
    /// Payload MiB per second (received; discard: sent).
    pub mib_per_sec: f64,
    /// Replies that were not what was sent (a correct server makes none); never more than
    /// `messages_received`.
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
    /// Established connections that broke, and bytes nobody asked for.
    pub errors: u64,
    /// Those, by reason.
    pub errors_by_reason: ErrorCounts,
    /// Length of the measurement window.
    pub duration_secs: f64,
    /// Stopped early by SIGINT.
    pub interrupted: bool,
    /// Latency percentiles of the replies within `--timeout` (open loop: from the intended send
    /// time); `null` without replies.
    pub latency_us: Percentiles,
    /// Open loop only: from the actual send time, as a closed-loop tool would measure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_uncorrected_us: Option<Percentiles>,
    /// TLS runs only: the handshakes (not in reports added up from logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<HandshakeSummary>,
    /// Why the run failed (exit 1), if it did.
    pub failure: Option<String>,
    /// The run's configuration.
    pub config: ConfigSummary,
    /// The latency histogram behind `latency_us`, in nanoseconds.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
    /// The results over time, one row per interval.
    #[serde(skip)]
    pub timeline: Vec<TimelineRow>,
    /// The numbers, as the HdrHistogram log keeps them.
    #[serde(skip)]
    pub counts: RunCounts,
}

impl LoadReport {
    /// Adds up the reactors' tallies.
    pub fn new(config: &LoadConfig, tallies: Vec<Tally>, timeline: Vec<TimelineRow>) -> Self {
        let mut total = Tally::default();
        for tally in tallies {
            total.add(tally);
        }
        let [refused, timed_out, emfile, eaddrnotavail, other, tls] = total.connect_failures;
        let [
            reset,
            closed_by_server,
            broken_framing,
            unexpected,
            other_errors,
        ] = total.errors;
        let counts = RunCounts {
            sent: total.sent,
            received: total.received,
            timeouts: total.timeouts,
            lost: total.lost,
            mismatches: total.mismatches,
            first_mismatch: total.first_mismatch,
            received_bytes: total.received_bytes,
            sent_bytes: total.sent_bytes,
            connections_ok: total.connections_ok,
            connections_failed: FailureCounts {
                refused,
                timed_out,
                emfile,
                eaddrnotavail,
                other,
                tls,
            },
            connections_up: total.connections_up,
            errors: ErrorCounts {
                reset,
                closed_by_server,
                broken_framing,
                unexpected,
                other: other_errors,
            },
            duration_secs: total.window_secs,
            interrupted: total.interrupted,
            config: ConfigSummary::of(config),
        };
        let uncorrected = config.rate.is_some().then_some(total.uncorrected);
        let handshakes = config.target.is_tls().then(|| HandshakeSummary {
            handshakes: total.handshake.len(),
            resumed: total.resumed,
            failed: tls,
            first_failure: total.first_tls_failure.clone(),
            handshake_us: Percentiles::of(&total.handshake, &HANDSHAKE_PERCENTILES),
        });
        let mut report = Self::from_counts(counts, total.latency, uncorrected, None, timeline);
        report.tls = handshakes;
        report
    }

    /// The report for `counts` and latency histograms (ns). `msgs_per_sec`: the throughput when
    /// the caller knows it better than received ÷ duration (several merged runs); `None` to
    /// compute it.
    pub fn from_counts(
        counts: RunCounts,
        histogram: Histogram<u64>,
        uncorrected: Option<Histogram<u64>>,
        msgs_per_sec: Option<f64>,
        timeline: Vec<TimelineRow>,
    ) -> Self {
        let c = &counts;
        let secs = c.duration_secs.max(1e-9);
        let one_way_send = c.config.protocol == ReplyKind::Discard;
        let (messages, bytes) = if one_way_send {
            (c.sent, c.sent_bytes)
        } else {
            (c.received, c.received_bytes)
        };
        let percentiles = &c.config.percentiles;
        let mut report = LoadReport {
            messages_sent: c.sent,
            messages_received: c.received,
            timeouts: c.timeouts,
            lost: c.lost,
            msgs_per_sec: round1(msgs_per_sec.unwrap_or(messages as f64 / secs)),
            mib_per_sec: round3(bytes as f64 / secs / (1024.0 * 1024.0)),
            mismatches: c.mismatches,
            first_mismatch: c.first_mismatch.clone(),
            connections_ok: c.connections_ok,
            connections_failed: c.connections_failed.total(),
            connections_failed_by_reason: c.connections_failed,
            connections_up: c.connections_up,
            errors: c.errors.total(),
            errors_by_reason: c.errors,
            duration_secs: round3(c.duration_secs),
            interrupted: c.interrupted,
            latency_us: Percentiles::of(&histogram, percentiles),
            latency_uncorrected_us: uncorrected
                .as_ref()
                .map(|h| Percentiles::of(h, percentiles)),
            tls: None,
            failure: None,
            config: c.config.clone(),
            histogram,
            timeline,
            counts,
        };
        report.failure = report.verdict();
        report
    }

    /// Why the run failed, in one line; `None` if it did not.
    fn verdict(&self) -> Option<String> {
        let c = &self.config;
        if c.hold {
            let asked = c.connections as u64;
            return (self.connections_up < asked).then(|| {
                format!(
                    "only {} of {asked} connections were up at the end",
                    self.connections_up
                )
            });
        }
        if self.connections_ok == 0 {
            return Some(format!(
                "no connection could be made ({} failed)",
                self.connections_failed
            ));
        }
        let mut why = Vec::new();
        match c.protocol {
            ReplyKind::Discard if self.messages_sent == 0 => {
                why.push("no message was taken by the server".to_string());
            }
            ReplyKind::Discard => {}
            ReplyKind::Chargen if self.messages_received == 0 => {
                why.push("no whole line of the pattern arrived".to_string());
            }
            // A raw timestamp run against a line-framed server waits for a newline that never
            // comes: the one mismatch of settings worth naming.
            ReplyKind::Timestamp if self.messages_received == 0 && c.framing == "raw" => {
                why.push(format!(
                    "no reply arrived ({} messages sent; a server with --framing line needs \
                     --framing line here too)",
                    self.messages_sent
                ));
            }
            _ if self.messages_received == 0 => why.push(format!(
                "no reply arrived ({} messages sent)",
                self.messages_sent
            )),
            _ => {}
        }
        if self.timeouts > 0 {
            why.push(format!(
                "{} of {} messages got no reply within {} s",
                self.timeouts, self.messages_sent, c.timeout_secs
            ));
        }
        if self.lost > 0 && c.transport == "udp" {
            let percent = 100.0 * self.lost as f64 / self.messages_sent.max(1) as f64;
            if percent > c.max_loss_percent {
                why.push(format!(
                    "{:.2}% of datagrams lost ({} of {}), above --max-loss {}%",
                    percent, self.lost, self.messages_sent, c.max_loss_percent
                ));
            }
        }
        if self.mismatches > 0 {
            why.push(format!("{} wrong replies", self.mismatches));
        }
        if self.connections_failed > 0 {
            why.push(format!("{} connections failed", self.connections_failed));
        }
        if self.errors > 0 {
            why.push(format!("{} connection errors", self.errors));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// 130 if interrupted by SIGINT; 1 if the run failed (see [`LoadReport::failure`]); else 0.
    pub fn exit_code(&self) -> u8 {
        if self.interrupted {
            130
        } else {
            u8::from(self.failure.is_some())
        }
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
        let length = match (c.duration_secs, c.messages) {
            (Some(d), Some(n)) => format!("{d:.1} s or {n} messages"),
            (Some(d), None) => format!("{d:.1} s"),
            (None, Some(n)) => format!("{n} messages"),
            (None, None) => "no limit".into(),
        };
        let protocol = match c.protocol {
            ReplyKind::Echo => "echo",
            ReplyKind::Timestamp => "timestamp",
            ReplyKind::Discard => "discard",
            ReplyKind::Chargen => "chargen",
        };
        let _ = writeln!(
            out,
            "echoloop load: {} ({}), {} connections on {} threads, {length}, {}-byte {protocol} ({}), pipeline {}, {pacing}{}{}{}",
            c.target,
            c.transport,
            c.connections,
            c.threads,
            c.size,
            c.framing,
            c.pipeline,
            if c.hold { ", hold" } else { "" },
            match c.reconnect_after {
                Some(n) => format!(", reconnect after {n}"),
                None => String::new(),
            },
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            },
        );
        let tls_failed = match &self.tls {
            Some(_) => format!(", TLS {}", f.tls),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "connections: {} ok, {} failed (refused {}, timed out {}, EMFILE {}, EADDRNOTAVAIL {}, other {}{tls_failed}), {} up at the end",
            self.connections_ok,
            self.connections_failed,
            f.refused,
            f.timed_out,
            f.emfile,
            f.eaddrnotavail,
            f.other,
            self.connections_up
        );
        if let Some(tls) = &self.tls {
            let _ = write!(
                out,
                "handshakes:  {} ({} resumed, {} failed), µs: {}",
                tls.handshakes,
                tls.resumed,
                tls.failed,
                tls.handshake_us.to_text()
            );
            if let Some(first) = &tls.first_failure {
                let _ = write!(out, " (first failure: {first})");
            }
            let _ = writeln!(out);
        }
        if !c.hold {
            self.write_messages(&mut out);
        }
        let _ = write!(out, "mismatches:  {}", self.mismatches);
        if let Some(first) = &self.first_mismatch {
            let _ = write!(out, " (first: {first})");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "errors:      {} (reset {}, closed by server {}, broken framing {}, unexpected bytes {}, other {})",
            self.errors, e.reset, e.closed_by_server, e.broken_framing, e.unexpected, e.other
        );
        if self.interrupted {
            let _ = writeln!(
                out,
                "interrupted: by SIGINT, after {:.3} s",
                self.duration_secs
            );
        }
        if let Some(why) = &self.failure {
            let _ = writeln!(out, "failed:      {why}");
        }
        out
    }

    fn write_messages(&self, out: &mut String) {
        let c = &self.config;
        match c.protocol {
            ReplyKind::Discard => {
                let _ = writeln!(
                    out,
                    "messages:    {} sent (taken by the server in full) in {:.3} s: {:.1} msgs/s, {:.3} MiB/s",
                    self.messages_sent, self.duration_secs, self.msgs_per_sec, self.mib_per_sec
                );
                return;
            }
            ReplyKind::Chargen => {
                let _ = writeln!(
                    out,
                    "received:    {} lines ({} bytes, every one checked) in {:.3} s: {:.1} lines/s, {:.3} MiB/s",
                    self.messages_received,
                    self.counts.received_bytes,
                    self.duration_secs,
                    self.msgs_per_sec,
                    self.mib_per_sec
                );
                return;
            }
            ReplyKind::Echo | ReplyKind::Timestamp => {}
        }
        let unanswered = if c.transport == "udp" {
            format!("{} lost", self.lost)
        } else {
            format!("{} timeouts", self.timeouts)
        };
        let _ = writeln!(
            out,
            "messages:    {} sent, {} received, {unanswered} in {:.3} s: {:.1} msgs/s, {:.3} MiB/s",
            self.messages_sent,
            self.messages_received,
            self.duration_secs,
            self.msgs_per_sec,
            self.mib_per_sec
        );
        let label = if c.rate.is_some() {
            "latency µs (from intended send time)"
        } else {
            "latency µs"
        };
        let _ = writeln!(
            out,
            "{label}, replies within {} s: {}",
            c.timeout_secs,
            self.latency_us.to_text()
        );
        if let Some(raw) = &self.latency_uncorrected_us {
            let _ = writeln!(
                out,
                "latency µs (from actual send time, uncorrected): {}",
                raw.to_text()
            );
        }
    }

    /// The `--json` object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The latency distribution in HdrHistogram's percentile text layout, values in µs.
    pub fn percentile_distribution(&self) -> String {
        percentile_distribution(&self.histogram)
    }
}

/// A nanosecond histogram in HdrHistogram's percentile text layout (wrk2's `--latency`, what
/// `HistogramLogProcessor` and the online plotter read), values in µs.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let us = |ns: u64| ns as f64 / 1000.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
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
    // As HdrHistogram's own footer: the bucket count, and the sub-bucket count of the layout
    // (2 × 10^digits rounded up to a power of two), not the number of distinct values recorded.
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for `sigfig` significant digits: the smallest power of two
/// at or above 2 × 10^sigfig (2048 for 3 digits).
fn sub_bucket_count(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
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
    use crate::clients::load::tally::{ConnectFailure, new_histogram};
    use std::time::Duration;

    fn config() -> LoadConfig {
        let mut config = LoadConfig::for_tests(Target::Datagram("127.0.0.1:9".parse().unwrap()));
        config.target = Target::Stream("127.0.0.1:9".parse().unwrap());
        config.duration = Some(Duration::from_secs(1));
        config
    }

    #[test]
    fn tallies_add_up_and_percentiles_are_in_microseconds() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        for tally in [&mut a, &mut b] {
            tally.window_secs = 1.0;
            tally.connections_ok = 1;
            for i in 1..=100 {
                tally.sent(true, 64);
                tally.reply(true, 64, i * 1000, None); // 1..100 µs
            }
        }
        b.connect_failed(ConnectFailure::Refused);
        b.mismatch(|| "first".into());
        b.mismatch(|| "second".into());
        let report = LoadReport::new(&config(), vec![a, b], Vec::new());
        assert_eq!(report.messages_received, 200);
        assert_eq!(report.msgs_per_sec, 200.0);
        assert_eq!(report.connections_failed, 1);
        assert_eq!(report.connections_failed_by_reason.refused, 1);
        assert_eq!(report.mismatches, 2);
        assert_eq!(report.first_mismatch.as_deref(), Some("first"));
        let p50 = report.latency_us.at(50.0).unwrap();
        assert!((p50 - 50.0).abs() < 0.1, "{:?}", report.latency_us);
        assert!((report.latency_us.max.unwrap() - 100.0).abs() < 0.1);
        assert_eq!(report.exit_code(), 1);
        assert!(report.to_text().contains("mismatches:  2 (first: first)"));
        let distribution = report.percentile_distribution();
        assert!(distribution.contains("Percentile"));
        assert!(distribution.contains("Total count    =          200"));
    }

    #[test]
    fn the_histogram_footer_names_the_layout_not_the_values() {
        let mut h = new_histogram();
        h.record(1000).unwrap();
        h.record(2000).unwrap();
        let text = percentile_distribution(&h);
        let footer = text.lines().last().unwrap();
        assert!(footer.contains("SubBuckets     =         2048"), "{footer}");
        assert!(
            footer.contains(&format!("Buckets = {:>12}", h.buckets())),
            "{footer}"
        );
    }

    #[test]
    fn no_reply_means_no_latency_and_a_failure() {
        let mut tally = Tally {
            connections_ok: 1,
            window_secs: 1.0,
            ..Tally::default()
        };
        tally.sent(true, 64);
        tally.timed_out(1);
        let report = LoadReport::new(&config(), vec![tally], Vec::new());
        assert_eq!(report.latency_us.at(99.0), None);
        assert_eq!(report.latency_us.max, None);
        assert!(report.to_text().contains("p50 n/a"), "{}", report.to_text());
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert!(json["latency_us"]["p50"].is_null());
        assert!(json["latency_us"]["p999"].is_null());
        assert_eq!(report.exit_code(), 1);
        let why = report.failure.unwrap();
        assert!(
            why.contains("no reply arrived") && why.contains("1 of 1 messages"),
            "{why}"
        );
    }

    #[test]
    fn percentile_keys_follow_the_json_style() {
        assert_eq!(Percentiles::key(50.0), "p50");
        assert_eq!(Percentiles::key(99.9), "p999");
        assert_eq!(Percentiles::key(99.99), "p9999");
        assert_eq!(parse_percentiles("50, 99.99").unwrap(), vec![50.0, 99.99]);
        for bad in ["", "0", "100", "x", "50,,99"] {
            assert!(parse_percentiles(bad).is_err(), "{bad:?}");
        }
    }
}
