//! Counting during a run: one [`Tally`] per reactor, so the hot path shares nothing.
//!
//! Every message that is *measured* (due inside the measurement window, see `pacing.rs`) ends in
//! exactly one of these counters, which is what makes the report add up:
//!
//! - `received`: its reply came, within `--timeout` of the send (right or wrong: a wrong one is
//!   also a mismatch, so mismatches never exceed replies received);
//! - `timeouts`: its reply came later than `--timeout`, or never (still owed when the run ended,
//!   or its connection died first);
//! - `lost` (UDP only): its datagram was never answered, which UDP allows.
//!
//! So for a finished run `sent = received + timeouts + lost`, and the summary shows all three.
//! Besides the totals, the tally keeps the current *interval* (`--interval`, one second by
//! default): its counts and its own latency histogram, handed to the caller's thread at each
//! interval's end for the results over time (`timeline.rs`) and the HdrHistogram log
//! (`hdr_log.rs`).
//!
//! Next: `mod.rs`, the reactor that drives many connections; then `limits.rs`.

use hdrhistogram::Histogram;

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
    /// The TLS handshake failed (a certificate refused, or the server broke it off).
    Tls,
}

/// Why an established connection ended before the run did, or what went wrong on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionError {
    /// `ECONNRESET`, `EPIPE`.
    Reset,
    /// The server closed it (end of stream).
    ClosedByServer,
    /// A length-framed reply the decoder could not cut: the rest of the stream is unreadable.
    BrokenFraming,
    /// Bytes or a reply when nothing was owed (not a reply to anything, so not a mismatch).
    Unexpected,
    /// Anything else.
    Other,
}

/// One interval's counts and latencies, as a reactor hands them over.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Which interval of the measurement window: 0, 1, ...
    pub index: u64,
    /// Start and end, in ns after the start of the measurement window.
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// Measured messages sent in it.
    pub sent: u64,
    /// Replies received in it.
    pub received: u64,
    /// Timeouts, lost datagrams, mismatches and connection errors counted in it.
    pub errors: u64,
    /// Latencies of the replies received in it, in ns.
    pub latency: Histogram<u64>,
}

impl Interval {
    /// An empty interval `index`, starting at `start_ns`.
    pub fn new(index: u64, start_ns: u64) -> Self {
        Interval {
            index,
            start_ns,
            end_ns: start_ns,
            sent: 0,
            received: 0,
            errors: 0,
            latency: new_histogram(),
        }
    }

    /// Adds another reactor's share of the same interval.
    pub fn add(&mut self, other: &Interval) {
        self.start_ns = self.start_ns.min(other.start_ns);
        self.end_ns = self.end_ns.max(other.end_ns);
        self.sent += other.sent;
        self.received += other.received;
        self.errors += other.errors;
        self.latency.add(&other.latency).expect("same bounds");
    }
}

/// One reactor's counters and histograms.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Measured messages sent (due inside the measurement window).
    pub sent: u64,
    /// Replies to measured messages, within `--timeout`.
    pub received: u64,
    /// Measured messages answered later than `--timeout`, or never.
    pub timeouts: u64,
    /// UDP: measured datagrams never answered.
    pub lost: u64,
    /// Payload bytes of the replies received (chargen: bytes checked).
    pub received_bytes: u64,
    /// Payload bytes of the messages sent.
    pub sent_bytes: u64,
    /// Every message sent, warmup included (the live line).
    pub sent_all: u64,
    /// Every reply, warmup included (the live line).
    pub received_all: u64,
    /// Measured replies that were not what was sent.
    pub mismatches: u64,
    /// What the first mismatch looked like.
    pub first_mismatch: Option<String>,
    /// Connections established.
    pub connections_ok: u64,
    /// Connections up when the run ended.
    pub connections_up: u64,
    /// Connection failures by [`ConnectFailure`].
    pub connect_failures: [u64; 6],
    /// TLS: handshakes done, and how long each took (ns), kept apart from message latency.
    pub handshake: Histogram<u64>,
    /// TLS: handshakes that resumed a session.
    pub resumed: u64,
    /// TLS: why the first failed handshake failed.
    pub first_tls_failure: Option<String>,
    /// Errors on established connections by [`ConnectionError`].
    pub errors: [u64; 5],
    /// Latency from the send time (closed loop), or from the intended send time (open loop).
    pub latency: Histogram<u64>,
    /// Open loop only: latency from the actual send time.
    pub uncorrected: Histogram<u64>,
    /// Length of the measurement window, in seconds.
    pub window_secs: f64,
    /// The run was cut short by SIGINT.
    pub interrupted: bool,
    /// The interval being counted.
    pub interval: Interval,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            sent: 0,
            received: 0,
            timeouts: 0,
            lost: 0,
            received_bytes: 0,
            sent_bytes: 0,
            sent_all: 0,
            received_all: 0,
            mismatches: 0,
            first_mismatch: None,
            connections_ok: 0,
            connections_up: 0,
            connect_failures: [0; 6],
            handshake: new_histogram(),
            resumed: 0,
            first_tls_failure: None,
            errors: [0; 5],
            latency: new_histogram(),
            uncorrected: new_histogram(),
            window_secs: 0.0,
            interrupted: false,
            interval: Interval::new(0, 0),
        }
    }
}

impl Tally {
    /// Adds another reactor's tally: counts add, histograms add, the window is the longest.
    pub fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        self.received += other.received;
        self.timeouts += other.timeouts;
        self.lost += other.lost;
        self.received_bytes += other.received_bytes;
        self.sent_bytes += other.sent_bytes;
        self.mismatches += other.mismatches;
        self.first_mismatch = self.first_mismatch.take().or(other.first_mismatch);
        self.connections_ok += other.connections_ok;
        self.connections_up += other.connections_up;
        self.interrupted |= other.interrupted;
        self.handshake.add(&other.handshake).expect("same bounds");
        self.resumed += other.resumed;
        self.first_tls_failure = self.first_tls_failure.take().or(other.first_tls_failure);
        for (sum, n) in self.connect_failures.iter_mut().zip(other.connect_failures) {
            *sum += n;
        }
        for (sum, n) in self.errors.iter_mut().zip(other.errors) {
            *sum += n;
        }
        self.latency.add(&other.latency).expect("same bounds");
        self.uncorrected
            .add(&other.uncorrected)
            .expect("same bounds");
        self.window_secs = self.window_secs.max(other.window_secs);
    }

    /// Counts a failed connection.
    pub fn connect_failed(&mut self, why: ConnectFailure) {
        self.connect_failures[why as usize] += 1;
        self.interval.errors += 1;
    }

    /// Counts a TLS handshake done in `ns`, resumed or full.
    pub fn handshake(&mut self, ns: u64, resumed: bool) {
        self.handshake.saturating_record(ns.max(1));
        self.resumed += u64::from(resumed);
    }

    /// Counts a failed TLS handshake (a failed connection); the first one's reason is kept.
    pub fn handshake_failed(&mut self, why: impl FnOnce() -> String) {
        self.connect_failed(ConnectFailure::Tls);
        if self.first_tls_failure.is_none() {
            self.first_tls_failure = Some(crate::clients::tls::with_certificate_hint(why()));
        }
    }

    /// Counts an error on an established connection.
    pub fn error(&mut self, why: ConnectionError) {
        self.errors[why as usize] += 1;
        self.interval.errors += 1;
    }

    /// Counts a measured reply that is not what was sent; the first one is described.
    pub fn mismatch(&mut self, describe: impl FnOnce() -> String) {
        self.mismatches += 1;
        self.interval.errors += 1;
        if self.first_mismatch.is_none() {
            self.first_mismatch = Some(describe());
        }
    }

    /// Counts a message sent, `bytes` of payload.
    pub fn sent(&mut self, measured: bool, bytes: usize) {
        self.sent_all += 1;
        if measured {
            self.sent += 1;
            self.sent_bytes += bytes as u64;
            self.interval.sent += 1;
        }
    }

    /// Counts a reply in time, with its latencies in ns (`uncorrected`: open loop only).
    pub fn reply(
        &mut self,
        measured: bool,
        bytes: usize,
        latency_ns: u64,
        uncorrected: Option<u64>,
    ) {
        self.received_all += 1;
        if !measured {
            return;
        }
        self.received += 1;
        self.received_bytes += bytes as u64;
        self.interval.received += 1;
        self.latency.saturating_record(latency_ns.max(1));
        self.interval.latency.saturating_record(latency_ns.max(1));
        if let Some(ns) = uncorrected {
            self.uncorrected.saturating_record(ns.max(1));
        }
    }

    /// Counts `n` measured messages with no reply in time.
    pub fn timed_out(&mut self, n: u64) {
        self.timeouts += n;
        self.interval.errors += n;
    }

    /// Counts `n` measured datagrams never answered.
    pub fn lost(&mut self, n: u64) {
        self.lost += n;
        self.interval.errors += n;
    }

    /// Hands over the interval counted so far, ended at `end_ns`; the next one starts there.
    pub fn take_interval(&mut self, end_ns: u64) -> Interval {
        let next = Interval::new(self.interval.index + 1, end_ns);
        let mut done = std::mem::replace(&mut self.interval, next);
        done.end_ns = end_ns;
        done
    }
}
