//! Counters: what the server has done, readable from other threads while it runs.
//!
//! Each reactor owns one [`Stats`] and is the only one that writes to it, so a counter can be a
//! plain atomic that is loaded and stored (two ordinary moves on x86) instead of a locked
//! read-modify-write: see [`Counter::add`]. Tests, the `--stats-interval` log line and the metrics
//! endpoint read them with [`Stats::snapshot`]; with several workers the snapshots are added up.
//!
//! Stream counters come in one set per [`Transport`] (TCP, Unix), in an array indexed by the
//! transport: counting a read on a Unix client is `stats.stream(Transport::Unix)`, an array index,
//! where one shared set would be no cheaper. Datagram counters are UDP's alone. A snapshot keeps
//! both sets; readers that do not care about the transport ask for their sum
//! ([`StatsSnapshot::total`]).
//!
//! Refusals are counted with a reason: a dropped datagram as a [`DropReason`], a refused
//! connection as a [`RefusalReason`] (`server/sources/` decides most of them). The totals stay
//! beside the per-reason counts, so a reader that does not care why reads one number.
//!
//! Next: `server/metrics.rs`, the counters for Prometheus.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::net::stream::Transport;
use crate::protocol::CloseReason;

/// A counter written by one thread (its reactor) and read by any.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning reactor calls this, so load-then-store loses nothing.
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Subtracts `n` (for gauges such as open connections).
    pub fn sub(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(n),
            Ordering::Relaxed,
        );
    }

    /// Sets the value (for gauges).
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a datagram was dropped (the `reason` label of `echoloop_datagrams_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The reflection guard: from our own socket, a service port, or a broadcast address.
    Loop,
    /// Over `--udp-rate-limit` for its source.
    Rate,
    /// Refused by `--deny` or `--allow`.
    Acl,
    /// Over `--max-frame`, or its reply over the reply cap (4 × request + 512 bytes).
    Size,
    /// Its reply did not fit the UDP socket's queue of refused replies, or could not be sent.
    Queue,
}

impl DropReason {
    /// Every reason, in the order counters are kept.
    pub const ALL: [DropReason; 5] = [
        DropReason::Loop,
        DropReason::Rate,
        DropReason::Acl,
        DropReason::Size,
        DropReason::Queue,
    ];

    /// The label value: `loop`, `rate`, `acl`, `size`, `queue`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Loop => "loop",
            DropReason::Rate => "rate",
            DropReason::Acl => "acl",
            DropReason::Size => "size",
            DropReason::Queue => "queue",
        }
    }
}

/// Why a stream connection was refused (the `reason` label of
/// `echoloop_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// At `--max-connections`: `error: server full (N connections)`.
    Full,
    /// Refused by `--deny` or `--allow`: closed without a byte.
    Acl,
    /// Over `--accept-rate` for its source: closed without a byte.
    Rate,
    /// Over `--max-per-source`: `error: too many connections from <address>`.
    PerSource,
    /// The reactor is over `--max-memory`: `error: server busy`.
    Busy,
}

impl RefusalReason {
    /// Every reason, in the order counters are kept.
    pub const ALL: [RefusalReason; 5] = [
        RefusalReason::Full,
        RefusalReason::Acl,
        RefusalReason::Rate,
        RefusalReason::PerSource,
        RefusalReason::Busy,
    ];

    /// The label value: `full`, `acl`, `rate`, `per-source`, `busy`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Full => "full",
            RefusalReason::Acl => "acl",
            RefusalReason::Rate => "rate",
            RefusalReason::PerSource => "per-source",
            RefusalReason::Busy => "busy",
        }
    }
}

/// Why a PROXY protocol header was refused (the `reason` label of
/// `echoloop_proxy_headers_refused_total`; see `net/proxy_header.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRefusal {
    /// Not a PROXY header, a broken one, or one too long; or the peer left before it was whole.
    Malformed,
    /// No whole header within the deadline (5 s).
    Timeout,
    /// The carried address was refused: `--allow`/`--deny`, `--accept-rate` or
    /// `--max-per-source` (also counted among the connections refused, with that reason).
    Denied,
}

impl HeaderRefusal {
    /// Every reason, in the order counters are kept.
    pub const ALL: [HeaderRefusal; 3] = [
        HeaderRefusal::Malformed,
        HeaderRefusal::Timeout,
        HeaderRefusal::Denied,
    ];

    /// The label value: `malformed`, `timeout`, `denied`.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderRefusal::Malformed => "malformed",
            HeaderRefusal::Timeout => "timeout",
            HeaderRefusal::Denied => "denied",
        }
    }
}

/// Why a TLS handshake failed (the `reason` label of `echoloop_tls_handshakes_failed_total`;
/// see `reactor/tls.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The client broke the rules or was refused: not TLS, an unsupported version, a
    /// certificate `--tls-client-ca` refuses or none at all. An alert was sent.
    Error,
    /// Not done within `--tls-handshake-timeout`.
    Timeout,
    /// The connection ended before it was done: the client left (FIN or reset), or the
    /// server shut down.
    Closed,
}

impl TlsFailure {
    /// Every reason, in the order counters are kept.
    pub const ALL: [TlsFailure; 3] = [TlsFailure::Error, TlsFailure::Timeout, TlsFailure::Closed];

    /// The label value: `error`, `timeout`, `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::Error => "error",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
        }
    }
}

/// One reactor's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Stream counters, one set per transport (indexed as [`Transport::ALL`]): [`Stats::stream`].
    streams: [StreamStats; Transport::ALL.len()],
    /// Datagrams received.
    pub datagrams_received: Counter,
    /// Datagrams sent.
    pub datagrams_sent: Counter,
    /// Datagrams dropped, for any reason (count with [`Stats::drop_datagram`]).
    pub datagrams_dropped: Counter,
    /// Datagrams dropped, by reason (indexed as [`DropReason::ALL`]).
    pub datagrams_dropped_by: [Counter; DropReason::ALL.len()],
    /// Datagrams the kernel dropped before we saw them: a UDP socket's receive buffer was full
    /// (`SO_RXQ_OVFL`, Linux). Not in `datagrams_received` nor `datagrams_dropped`.
    pub udp_kernel_drops: Counter,
    /// Bytes the reactor's connection buffers hold now, as `--max-memory` counts them (gauge).
    pub memory_bytes: Counter,
    /// The most bytes the reactor's connection buffers ever held at once.
    pub memory_peak: Counter,
    /// Times the reactor went over `--max-memory`.
    pub memory_episodes: Counter,
}

impl Stats {
    /// Notes what the connection buffers hold now, keeping the peak.
    pub fn note_memory(&self, bytes: usize) {
        self.memory_bytes.set(bytes as u64);
        if bytes as u64 > self.memory_peak.get() {
            self.memory_peak.set(bytes as u64);
        }
    }
}

/// One stream transport's counters.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Connections open now (gauge).
    pub connections_open: Counter,
    /// Connections accepted since start.
    pub connections_accepted: Counter,
    /// Connections refused, for any reason (count with [`StreamStats::count_refusal`]).
    pub connections_refused: Counter,
    /// Connections refused, by reason (indexed as [`RefusalReason::ALL`]).
    pub refused_by: [Counter; RefusalReason::ALL.len()],
    /// Connections closed, by reason (indexed as [`CloseReason::ALL`]).
    pub closed: [Counter; CloseReason::ALL.len()],
    /// Bytes read from clients.
    pub bytes_received: Counter,
    /// Bytes written to clients.
    pub bytes_sent: Counter,
    /// Bytes waiting in outbound queues now (gauge).
    pub queued_bytes: Counter,
    /// The most bytes ever waiting in one client's queue.
    pub queued_bytes_peak: Counter,
    /// Times a client's reading was paused at the queue limit.
    pub readers_paused: Counter,
    /// Clients dropped at the queue limit.
    pub clients_dropped: Counter,
    /// Accept calls that failed (EMFILE, ENFILE, ENOBUFS, ...).
    pub accept_errors: Counter,
    /// PROXY protocol headers read whole and accepted (`--proxy-protocol`).
    pub proxy_headers_accepted: Counter,
    /// PROXY protocol headers refused, by reason (indexed as [`HeaderRefusal::ALL`]).
    pub proxy_headers_refused_by: [Counter; HeaderRefusal::ALL.len()],
    /// TLS handshakes done (`tls:` listeners).
    pub tls_handshakes: Counter,
    /// TLS handshakes failed, by reason (indexed as [`TlsFailure::ALL`]).
    pub tls_handshakes_failed_by: [Counter; TlsFailure::ALL.len()],
}

impl Stats {
    /// The counters of stream clients on `transport`: an array index, cheap enough for every read.
    #[inline]
    pub fn stream(&self, transport: Transport) -> &StreamStats {
        &self.streams[transport as usize]
    }

    /// Counts `bytes` read from a stream client on `transport`.
    #[inline]
    pub fn received(&self, transport: Transport, bytes: usize) {
        self.stream(transport).bytes_received.add(bytes as u64);
    }

    /// Counts `bytes` written to a stream client on `transport`.
    #[inline]
    pub fn sent(&self, transport: Transport, bytes: usize) {
        self.stream(transport).bytes_sent.add(bytes as u64);
    }

    /// Counts one datagram dropped for `reason`.
    pub fn drop_datagram(&self, reason: DropReason) {
        self.datagrams_dropped.add(1);
        self.datagrams_dropped_by[reason as usize].add(1);
    }

    /// The values now, as plain numbers.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            streams: std::array::from_fn(|i| self.streams[i].snapshot()),
            datagrams_received: self.datagrams_received.get(),
            datagrams_sent: self.datagrams_sent.get(),
            datagrams_dropped: self.datagrams_dropped.get(),
            datagrams_dropped_by: std::array::from_fn(|i| self.datagrams_dropped_by[i].get()),
            udp_kernel_drops: self.udp_kernel_drops.get(),
            memory_bytes: self.memory_bytes.get(),
            memory_peak: self.memory_peak.get(),
            memory_episodes: self.memory_episodes.get(),
        }
    }
}

impl StreamStats {
    /// Counts one close.
    pub fn count_close(&self, reason: CloseReason) {
        let index = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in ALL");
        // Open first: another thread that sees the close counted (the threaded model's
        // counters are read while its threads write them) sees it no longer open too.
        self.connections_open.sub(1);
        self.closed[index].add(1);
    }

    /// Counts one connection refused for `reason`.
    pub fn count_refusal(&self, reason: RefusalReason) {
        self.connections_refused.add(1);
        self.refused_by[reason as usize].add(1);
    }

    /// Counts one PROXY protocol header refused for `reason`.
    pub fn count_header_refusal(&self, reason: HeaderRefusal) {
        self.proxy_headers_refused_by[reason as usize].add(1);
    }

    /// Counts one TLS handshake failed for `reason`.
    pub fn count_tls_failure(&self, reason: TlsFailure) {
        self.tls_handshakes_failed_by[reason as usize].add(1);
    }

    /// Notes a client's queue length, keeping the peak.
    pub fn note_queue_len(&self, len: usize) {
        if len as u64 > self.queued_bytes_peak.get() {
            self.queued_bytes_peak.set(len as u64);
        }
    }

    /// The values now, as plain numbers.
    pub fn snapshot(&self) -> StreamSnapshot {
        StreamSnapshot {
            connections_open: self.connections_open.get(),
            connections_accepted: self.connections_accepted.get(),
            connections_refused: self.connections_refused.get(),
            refused_by: std::array::from_fn(|i| self.refused_by[i].get()),
            closed: std::array::from_fn(|i| self.closed[i].get()),
            bytes_received: self.bytes_received.get(),
            bytes_sent: self.bytes_sent.get(),
            queued_bytes: self.queued_bytes.get(),
            queued_bytes_peak: self.queued_bytes_peak.get(),
            readers_paused: self.readers_paused.get(),
            clients_dropped: self.clients_dropped.get(),
            accept_errors: self.accept_errors.get(),
            proxy_headers_accepted: self.proxy_headers_accepted.get(),
            proxy_headers_refused_by: std::array::from_fn(|i| {
                self.proxy_headers_refused_by[i].get()
            }),
            tls_handshakes: self.tls_handshakes.get(),
            tls_handshakes_failed_by: std::array::from_fn(|i| {
                self.tls_handshakes_failed_by[i].get()
            }),
        }
    }
}

/// One stream transport's counter values at one moment (see [`StreamStats`] for each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StreamSnapshot {
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    /// Indexed as [`RefusalReason::ALL`]: read with [`StreamSnapshot::refused_for`].
    pub refused_by: [u64; RefusalReason::ALL.len()],
    pub closed: [u64; CloseReason::ALL.len()],
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub queued_bytes: u64,
    pub queued_bytes_peak: u64,
    pub readers_paused: u64,
    pub clients_dropped: u64,
    pub accept_errors: u64,
    pub proxy_headers_accepted: u64,
    /// Indexed as [`HeaderRefusal::ALL`]: read with [`StreamSnapshot::headers_refused_for`].
    pub proxy_headers_refused_by: [u64; HeaderRefusal::ALL.len()],
    /// TLS handshakes done.
    pub tls_handshakes: u64,
    /// Indexed as [`TlsFailure::ALL`]: read with [`StreamSnapshot::handshakes_failed_for`].
    pub tls_handshakes_failed_by: [u64; TlsFailure::ALL.len()],
}

impl StreamSnapshot {
    /// Connections closed for `reason`.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        let index = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.closed[index]
    }

    /// Connections refused for `reason`.
    pub fn refused_for(&self, reason: RefusalReason) -> u64 {
        self.refused_by[reason as usize]
    }

    /// PROXY protocol headers refused for `reason`.
    pub fn headers_refused_for(&self, reason: HeaderRefusal) -> u64 {
        self.proxy_headers_refused_by[reason as usize]
    }

    /// TLS handshakes failed for `reason`.
    pub fn handshakes_failed_for(&self, reason: TlsFailure) -> u64 {
        self.tls_handshakes_failed_by[reason as usize]
    }

    /// Adds another set (another transport, or another reactor): gauges and totals add, peaks
    /// take the larger.
    pub fn merge(&mut self, other: &StreamSnapshot) {
        self.connections_open += other.connections_open;
        self.connections_accepted += other.connections_accepted;
        self.connections_refused += other.connections_refused;
        for (mine, theirs) in self.refused_by.iter_mut().zip(other.refused_by) {
            *mine += theirs;
        }
        for (mine, theirs) in self.closed.iter_mut().zip(other.closed) {
            *mine += theirs;
        }
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
        self.queued_bytes += other.queued_bytes;
        self.queued_bytes_peak = self.queued_bytes_peak.max(other.queued_bytes_peak);
        self.readers_paused += other.readers_paused;
        self.clients_dropped += other.clients_dropped;
        self.accept_errors += other.accept_errors;
        self.proxy_headers_accepted += other.proxy_headers_accepted;
        for (mine, theirs) in self
            .proxy_headers_refused_by
            .iter_mut()
            .zip(other.proxy_headers_refused_by)
        {
            *mine += theirs;
        }
        self.tls_handshakes += other.tls_handshakes;
        for (mine, theirs) in self
            .tls_handshakes_failed_by
            .iter_mut()
            .zip(other.tls_handshakes_failed_by)
        {
            *mine += theirs;
        }
    }
}

/// Counter values at one moment (see [`Stats`] for what each means).
///
/// Stream counters are kept per transport: [`stream`](StatsSnapshot::stream) gives one
/// transport's, [`total`](StatsSnapshot::total) TCP and Unix added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub datagrams_received: u64,
    pub datagrams_sent: u64,
    pub datagrams_dropped: u64,
    /// Indexed as [`DropReason::ALL`]: read with [`StatsSnapshot::dropped_for`].
    pub datagrams_dropped_by: [u64; DropReason::ALL.len()],
    pub udp_kernel_drops: u64,
    pub memory_bytes: u64,
    pub memory_peak: u64,
    pub memory_episodes: u64,
    /// Per transport, indexed as [`Transport::ALL`]: read with [`StatsSnapshot::stream`].
    streams: [StreamSnapshot; Transport::ALL.len()],
}

impl StatsSnapshot {
    /// The stream counters of one transport.
    pub fn stream(&self, transport: Transport) -> &StreamSnapshot {
        &self.streams[transport as usize]
    }

    /// Datagrams dropped for `reason`.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.datagrams_dropped_by[reason as usize]
    }

    /// Connections closed for `reason`, on any transport.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.total().closed_for(reason)
    }

    /// Adds another reactor's snapshot (workers): gauges and totals add, peaks take the larger.
    pub fn merge(&mut self, other: &StatsSnapshot) {
        for (mine, theirs) in self.streams.iter_mut().zip(&other.streams) {
            mine.merge(theirs);
        }
        self.datagrams_received += other.datagrams_received;
        self.datagrams_sent += other.datagrams_sent;
        self.datagrams_dropped += other.datagrams_dropped;
        self.udp_kernel_drops += other.udp_kernel_drops;
        self.memory_bytes += other.memory_bytes;
        self.memory_peak = self.memory_peak.max(other.memory_peak);
        self.memory_episodes += other.memory_episodes;
        for (mine, theirs) in self
            .datagrams_dropped_by
            .iter_mut()
            .zip(other.datagrams_dropped_by)
        {
            *mine += theirs;
        }
    }

    /// Every transport's stream counters added up (TCP and Unix), computed when asked: the
    /// snapshot stores only the per-transport values.
    pub fn total(&self) -> StreamSnapshot {
        let mut total = StreamSnapshot::default();
        for one in &self.streams {
            total.merge(one);
        }
        total
    }

    /// The one-line summary the `--stats-interval` log and SIGUSR1 print.
    pub fn summary_line(&self) -> String {
        let total = self.total();
        let closed: Vec<String> = CloseReason::ALL
            .iter()
            .zip(total.closed)
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect();
        let refused = by_reason(
            RefusalReason::ALL.iter().map(|r| r.as_str()),
            &total.refused_by,
        );
        let datagrams_dropped = by_reason(
            DropReason::ALL.iter().map(|r| r.as_str()),
            &self.datagrams_dropped_by,
        );
        // The kernel's drops (a full receive buffer), only once there are some.
        let kernel_dropped = match self.udp_kernel_drops {
            0 => String::new(),
            n => format!(" kernel_dropped={n}"),
        };
        let mut line = format!(
            "stats: open={} accepted={} refused={}{refused} closed[{}] in={}B out={}B queued={}B peak={}B paused={} dropped={} accept_errors={} memory={}B over_memory={} datagrams in={} out={} dropped={}{datagrams_dropped}{kernel_dropped}",
            total.connections_open,
            total.connections_accepted,
            total.connections_refused,
            closed.join(" "),
            total.bytes_received,
            total.bytes_sent,
            total.queued_bytes,
            total.queued_bytes_peak,
            total.readers_paused,
            total.clients_dropped,
            total.accept_errors,
            self.memory_bytes,
            self.memory_episodes,
            self.datagrams_received,
            self.datagrams_sent,
            self.datagrams_dropped,
        );
        // Only where `--proxy-protocol` is in use: the others' lines stay as they were.
        let headers_refused: u64 = total.proxy_headers_refused_by.iter().sum();
        if total.proxy_headers_accepted + headers_refused > 0 {
            let reasons = by_reason(
                HeaderRefusal::ALL.iter().map(|r| r.as_str()),
                &total.proxy_headers_refused_by,
            );
            line.push_str(&format!(
                " proxy_headers accepted={} refused={headers_refused}{reasons}",
                total.proxy_headers_accepted
            ));
        }
        // Only where TLS is served, likewise.
        let handshakes_failed: u64 = total.tls_handshakes_failed_by.iter().sum();
        if total.tls_handshakes + handshakes_failed > 0 {
            let reasons = by_reason(
                TlsFailure::ALL.iter().map(|r| r.as_str()),
                &total.tls_handshakes_failed_by,
            );
            line.push_str(&format!(
                " tls_handshakes done={} failed={handshakes_failed}{reasons}",
                total.tls_handshakes
            ));
        }
        line
    }
}

/// `[acl=1 rate=2]`: the non-zero counts by reason, or nothing if all are zero.
fn by_reason<'a>(names: impl Iterator<Item = &'a str>, counts: &[u64]) -> String {
    let parts: Vec<String> = names
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("[{}]", parts.join(" "))
    }
}

/// Every worker's counters, read together: one [`Stats`] per service per worker.
///
/// Each reactor counts each of its services apart (the `service` label of the metrics): a
/// client's counters are `stats[client.service]`, an index. The reactor-wide memory counters
/// have no service; a reactor keeps them in its first service's [`Stats`].
#[derive(Debug, Clone)]
pub struct ServerStats {
    /// The services' names, in index order.
    services: Vec<&'static str>,
    /// Per worker, one set per service (in index order).
    workers: Vec<Vec<Arc<Stats>>>,
}

impl ServerStats {
    /// Zeroed counters for `workers` reactors serving `services`.
    pub fn new(services: Vec<&'static str>, workers: usize) -> Self {
        let workers = (0..workers)
            .map(|_| {
                services
                    .iter()
                    .map(|_| Arc::new(Stats::default()))
                    .collect()
            })
            .collect();
        ServerStats { services, workers }
    }

    /// The services' names, in index order.
    pub fn services(&self) -> &[&'static str] {
        &self.services
    }

    /// Each worker's counters, one set per service.
    pub fn workers(&self) -> &[Vec<Arc<Stats>>] {
        &self.workers
    }

    /// The counters of all workers and services, added up.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut total = StatsSnapshot::default();
        for stats in self.workers.iter().flatten() {
            total.merge(&stats.snapshot());
        }
        total
    }

    /// The counters of each worker (its services added up), in worker order.
    pub fn per_worker(&self) -> Vec<StatsSnapshot> {
        self.workers.iter().map(|services| sum(services)).collect()
    }

    /// The counters of each service (every worker's added up), in index order, with its name.
    pub fn per_service(&self) -> Vec<(&'static str, StatsSnapshot)> {
        self.services
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut total = StatsSnapshot::default();
                for worker in &self.workers {
                    total.merge(&worker[i].snapshot());
                }
                (*name, total)
            })
            .collect()
    }
}

/// Several sets of counters added up.
pub fn sum(stats: &[Arc<Stats>]) -> StatsSnapshot {
    let mut total = StatsSnapshot::default();
    for one in stats {
        total.merge(&one.snapshot());
    }
    total
}

/// The `--stats-interval` line for several services: the totals, then each service's
/// connections, bytes and datagrams, `service[echo: open=1 accepted=3 in=10B out=10B datagrams
/// in=0 out=0]`.
pub fn summary_by_service(services: &[(&str, StatsSnapshot)]) -> String {
    let mut total = StatsSnapshot::default();
    for (_, one) in services {
        total.merge(one);
    }
    let parts: Vec<String> = services
        .iter()
        .map(|(name, s)| {
            let t = s.total();
            format!(
                "{name}: open={} accepted={} in={}B out={}B datagrams in={} out={} dropped={}",
                t.connections_open,
                t.connections_accepted,
                t.bytes_received,
                t.bytes_sent,
                s.datagrams_received,
                s.datagrams_sent,
                s.datagrams_dropped
            )
        })
        .collect();
    format!("{} service[{}]", total.summary_line(), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_udp_drops_join_the_line_once_there_are_some_and_add_up_over_workers() {
        let stats = Stats::default();
        assert!(!stats.snapshot().summary_line().contains("kernel_dropped"));
        stats.udp_kernel_drops.add(3);
        let mut s = stats.snapshot();
        s.merge(&stats.snapshot());
        assert_eq!(s.udp_kernel_drops, 6);
        let line = s.summary_line();
        assert!(line.ends_with(" dropped=0 kernel_dropped=6"), "{line}");
    }

    #[test]
    fn refusals_and_drops_are_counted_by_reason_and_in_total() {
        let stats = Stats::default();
        stats.drop_datagram(DropReason::Loop);
        stats.drop_datagram(DropReason::Rate);
        stats.drop_datagram(DropReason::Rate);
        let tcp = stats.stream(Transport::Tcp);
        tcp.count_refusal(RefusalReason::Acl);
        stats
            .stream(Transport::Unix)
            .count_refusal(RefusalReason::Full);
        let mut s = stats.snapshot();
        s.merge(&stats.snapshot());
        assert_eq!(s.datagrams_dropped, 6);
        assert_eq!(s.dropped_for(DropReason::Rate), 4);
        assert_eq!(s.total().connections_refused, 4);
        assert_eq!(s.total().refused_for(RefusalReason::Acl), 2);
        let line = s.summary_line();
        assert!(line.contains(" refused=4[full=2 acl=2] "), "{line}");
        assert!(line.ends_with(" dropped=6[loop=2 rate=4]"), "{line}");
        let quiet = Stats::default().snapshot().summary_line();
        assert!(
            quiet.contains(" refused=0 ") && quiet.ends_with(" dropped=0"),
            "{quiet}"
        );
    }

    #[test]
    fn transports_are_counted_apart_and_added_up() {
        let stats = Stats::default();
        let tcp = stats.stream(Transport::Tcp);
        let unix = stats.stream(Transport::Unix);
        tcp.connections_open.add(2);
        tcp.count_close(CloseReason::PeerClosed);
        unix.connections_open.add(1);
        tcp.bytes_received.add(100);
        unix.bytes_received.add(7);
        tcp.note_queue_len(10);
        unix.note_queue_len(30);

        let s = stats.snapshot();
        assert_eq!(s.stream(Transport::Tcp).bytes_received, 100);
        assert_eq!(s.stream(Transport::Unix).bytes_received, 7);
        assert_eq!(s.total().bytes_received, 107);
        assert_eq!(s.total().connections_open, 2);
        assert_eq!(
            s.stream(Transport::Tcp).closed_for(CloseReason::PeerClosed),
            1
        );
        assert_eq!(s.closed_for(CloseReason::PeerClosed), 1);
        assert_eq!(
            s.total().queued_bytes_peak,
            30,
            "a peak is the larger, not a sum"
        );

        let mut workers = s;
        workers.merge(&s);
        assert_eq!(workers.stream(Transport::Unix).bytes_received, 14);
        assert_eq!(workers.total().bytes_received, 214);
        assert_eq!(workers.total().queued_bytes_peak, 30);
    }

    #[test]
    fn services_are_counted_apart_and_added_up_per_worker() {
        let stats = ServerStats::new(vec!["echo", "daytime"], 2);
        stats.workers()[0][0].received(Transport::Tcp, 5);
        stats.workers()[1][0].received(Transport::Tcp, 7);
        stats.workers()[1][1].sent(Transport::Tcp, 26);
        stats.workers()[1][1].datagrams_sent.add(1);
        let per_service = stats.per_service();
        assert_eq!(per_service[0].0, "echo");
        assert_eq!(per_service[0].1.total().bytes_received, 12);
        assert_eq!(per_service[1].1.total().bytes_sent, 26);
        let per_worker = stats.per_worker();
        assert_eq!(per_worker[1].total().bytes_received, 7);
        assert_eq!(per_worker[1].total().bytes_sent, 26);
        assert_eq!(stats.snapshot().total().bytes_received, 12);
        let line = summary_by_service(&per_service);
        assert!(line.starts_with("stats: "), "{line}");
        assert!(
            line.ends_with(
                " service[echo: open=0 accepted=0 in=12B out=0B datagrams in=0 out=0 dropped=0, \
                 daytime: open=0 accepted=0 in=0B out=26B datagrams in=0 out=1 dropped=0]"
            ),
            "{line}"
        );
    }
}
