//! `--metrics ADDR`: the counters as Prometheus scrapes them, served by the same reactor.
//!
//! Prometheus *pulls*: every few seconds it connects, sends `GET /metrics`, and reads a page of
//! plain text, one `name{labels} value` line per counter, each family introduced by `# HELP` and
//! `# TYPE` lines (the *text exposition format*). So the endpoint is one more listening socket on
//! the loop, with a tiny HTTP/1.1 server behind it, and no web framework: read the request until
//! its headers are complete (`httparse` says `Partial` until then), answer once with
//! `Connection: close`, close. It is not a web server: no keep-alive, no bodies, no other pages.
//!
//! - `GET` or `HEAD /metrics`: 200 with the page; other paths 404; other methods 405.
//! - A request `httparse` rejects: 400. Headers past [`MAX_REQUEST_BYTES`] (or too many): 431.
//! - At most a few scrapes at once ([`MAX_SCRAPES`]), each in a fixed slot. See *Full slots*
//!   below for who gives way when one more connects.
//! - After the answer we send FIN and read until the peer's FIN (*lingering close*): closing with
//!   unread bytes in the socket would send RST, and the peer could lose the answer to it.
//!
//! **Full slots.** Anyone who can reach the port can open connections to it and say nothing, or
//! open and close them as fast as they can. Evicting the *oldest* connection when the slots are
//! full let such a churn evict a real scrape between its connect and our reading of its request.
//! So when a connection arrives and every slot is taken:
//!
//! 1. Each newcomer is read at once: a scraper sends its request right after connecting, so the
//!    request is usually there already, and answered before anyone is evicted.
//! 2. The one to give way is a scrape already answered and only waiting for its peer's FIN (its
//!    answer is with the kernel, which delivers it after we close), else the *least recently
//!    active* one that has not sent a complete request: activity is being accepted or sending
//!    request bytes, so an idle holder goes before a newcomer, and a slowloris trickling bytes
//!    goes before one that just spoke.
//! 3. Before it is closed, it is read once more: its request may have arrived unseen (its
//!    readiness event later in the same batch). If it now holds a complete request, it is
//!    answered instead, and the next candidate is looked at.
//! 4. A scrape that sent a complete request and is being answered (the kernel has not taken
//!    the whole answer yet) is never evicted. If every slot holds one, the newcomer is closed.
//!
//! So a scrape is lost only if, between its connect and the moment its request reaches our
//! socket (microseconds on a LAN: it is sent right after the handshake), more than
//! [`MAX_SCRAPES`] other connections arrive. No timer is needed. There are 60 slots: with 12,
//! two threads opening connections as fast as they could on this 2-core machine beat a scrape's
//! request about one run in twenty (`a_scrape_is_answered_while_others_hold_and_churn_the_slots`).
//! (`TCP_DEFER_ACCEPT`, which hands over a connection only once its first bytes are in, was tried
//! and made it worse: the silent connections it keeps back fill the kernel's queue, and the
//! scrape's handshake then waits for retransmissions.)
//!
//! **No authentication.** The page tells anyone who can reach it how busy the server is. Bound to
//! an address that is not loopback, the endpoint says so at start, at warn level
//! ([`exposure_warning`]): keep it on loopback or behind a firewall.
//!
//! Scrapes are not clients: they are not counted in the stats they report. With `--workers N` the
//! endpoint lives on worker 0 and reports every worker's counters, added up ([`ServerStats`]).
//!
//! Every family but the memory ones carries a `service` label (`service="echo"`): a process may
//! serve several (`server/services.rs`), and each reactor counts each service apart. It is
//! there with one service too, so that a dashboard does not change when a second is added.
//! Sum over it (`sum without (service) (...)`) for the process's totals. The memory families
//! have no service: the cap and the buffers are the reactor's.
//!
//! Every family of client counters carries a `transport` label too: `tcp` and `unix` for stream clients, `udp` for
//! datagrams. The reactor keeps one set of stream counters per transport (`stats.rs`), picked by
//! the client's [`Transport`] with an array index: the split costs the hot path about 19
//! instructions per echoed message (docs/BENCHMARKS.md), no branch chain, no lookup. Both
//! stream series are always on the page, at 0 while nobody uses that transport: a series that
//! appeared only with the first Unix client would break dashboards and `rate()` over the gap.
//! Sum over the label (`sum without (transport) (...)`) for stream totals.
//!
//! Next: `server/threaded.rs`, the design the reactor replaces.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};

use log::{debug, trace};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry};

use crate::net::registration::{self, Registration};
use crate::net::stream::Transport;
use crate::protocol::CloseReason;
use crate::server::reactor::token::{METRICS_SOURCES, Source};
use crate::server::stats::ServerStats;
use crate::server::stats::{
    DropReason, HeaderRefusal, RefusalReason, StatsSnapshot, StreamSnapshot, TlsFailure,
};

/// Largest request head we read; past it the answer is 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Most headers a request may have; past it the answer is 431 too.
const MAX_HEADERS: usize = 32;
/// Scrapes served at once: every metrics token but the listener's.
pub const MAX_SCRAPES: usize = METRICS_SOURCES - 1;

/// The metrics listener and the scrapes in progress.
pub struct MetricsEndpoint {
    listener: TcpListener,
    scrapes: Vec<Option<Scrape>>,
    stats: ServerStats,
    /// Counts accepts and reads: a scrape's `last_active` is the count at its latest activity.
    ticks: u64,
}

/// One scrape connection.
struct Scrape {
    stream: TcpStream,
    registration: Registration,
    /// When it was accepted or last sent request bytes (in [`MetricsEndpoint`] ticks): among
    /// scrapes without a complete request, the smallest gives way first.
    last_active: u64,
    state: ScrapeState,
}

/// Where a scrape is: reading its request, writing its answer, or waiting for the peer's FIN.
enum ScrapeState {
    Reading(Vec<u8>),
    Writing { response: Vec<u8>, written: usize },
    Lingering,
}

/// What a scrape asks of the endpoint after being driven.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Wait,
    Close,
}

impl MetricsEndpoint {
    /// An endpoint on a bound, non-blocking listener, reporting `stats`.
    pub fn new(listener: TcpListener, stats: ServerStats) -> Self {
        MetricsEndpoint {
            listener,
            scrapes: (0..MAX_SCRAPES).map(|_| None).collect(),
            stats,
            ticks: 0,
        }
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Registers the listener under [`Source::Metrics`]`(0)`.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(
            &mut self.listener,
            Source::Metrics(0).token(),
            Interest::READABLE,
        )
    }

    /// Readiness on [`Source::Metrics`]`(n)`: the listener (`0`) or scrape slot `n - 1`.
    pub fn on_event(&mut self, n: usize, registry: &Registry) {
        if n == 0 {
            self.drain_accepts(registry);
            return;
        }
        let slot = n - 1;
        let Some(Some(scrape)) = self.scrapes.get_mut(slot) else {
            return; // closed earlier: events are hints
        };
        self.ticks += 1;
        let token = Source::Metrics(n).token();
        let next = match scrape.drive(&self.stats, self.ticks) {
            Next::Wait => scrape.sync(registry, token),
            Next::Close => Next::Close,
        };
        if next == Next::Close {
            trace!("metrics scrape {slot} closed");
            self.scrapes[slot] = None; // dropping the stream closes it; epoll forgets it
        }
    }

    /// Accepts until `WouldBlock`. Each newcomer is read at once (its request is usually there
    /// already), then takes a free slot or one made by [`MetricsEndpoint::make_room`].
    fn drain_accepts(&mut self, registry: &Registry) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _peer)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("metrics accept failed: {e}");
                    return;
                }
            };
            self.ticks += 1;
            let mut scrape = Scrape {
                stream,
                registration: Registration::new(),
                last_active: self.ticks,
                state: ScrapeState::Reading(Vec::new()),
            };
            if scrape.drive(&self.stats, self.ticks) == Next::Close {
                continue; // answered and gone already, or gone without a word
            }
            let Some(slot) = self.make_room(registry) else {
                debug!("metrics: every slot is answering a scrape; closing a newcomer");
                continue;
            };
            if scrape.sync(registry, Source::Metrics(slot + 1).token()) == Next::Close {
                continue;
            }
            trace!("metrics scrape {slot} accepted");
            self.scrapes[slot] = Some(scrape);
        }
    }

    /// A free slot, made if need be by closing the scrape that gives way (see the module docs:
    /// an answered one, else the least recently active without a complete request, after one
    /// last read). `None` when every slot is answering a scrape.
    fn make_room(&mut self, registry: &Registry) -> Option<usize> {
        // Each turn frees a slot, returns, or moves one scrape to answering (no longer a
        // candidate): the loop ends within a turn per slot.
        for _ in 0..=MAX_SCRAPES {
            if let Some(free) = self.scrapes.iter().position(Option::is_none) {
                return Some(free);
            }
            let slot = self.eviction_candidate()?;
            self.ticks += 1;
            let token = Source::Metrics(slot + 1).token();
            let scrape = self.scrapes[slot].as_mut()?;
            // One last read: its request (or its FIN) may be waiting, its event not handled yet.
            let next = match scrape.drive(&self.stats, self.ticks) {
                Next::Wait if scrape.is_answering() => scrape.sync(registry, token),
                Next::Wait => {
                    debug!("metrics: slots full; closing scrape {slot}, idle without a request");
                    self.scrapes[slot] = None;
                    return Some(slot);
                }
                Next::Close => Next::Close,
            };
            if next == Next::Close {
                self.scrapes[slot] = None;
            }
        }
        None
    }

    /// The slot whose scrape gives way first: an answered one waiting for FIN, else the least
    /// recently active one still reading its request; never one being answered.
    fn eviction_candidate(&self) -> Option<usize> {
        self.scrapes
            .iter()
            .enumerate()
            .filter_map(|(slot, scrape)| {
                let scrape = scrape.as_ref()?;
                let rank = match scrape.state {
                    ScrapeState::Lingering => 0,
                    ScrapeState::Reading(_) => 1,
                    ScrapeState::Writing { .. } => return None,
                };
                Some(((rank, scrape.last_active), slot))
            })
            .min()
            .map(|(_, slot)| slot)
    }
}

/// The warning logged when `--metrics` is bound to `addr`, if it is not a loopback address:
/// the endpoint has no authentication, so whoever can reach it reads the counters.
pub fn exposure_warning(addr: SocketAddr) -> Option<String> {
    let ip: IpAddr = addr.ip().to_canonical(); // `::ffff:127.0.0.1` is loopback too
    (!ip.is_loopback()).then(|| {
        format!(
            "metrics {addr} is not a loopback address and has no authentication: anyone who \
             can reach it reads the counters (bind it to 127.0.0.1, or firewall the port)"
        )
    })
}

impl Scrape {
    /// What to ask the poller for: readable while reading the request or waiting for the peer's
    /// FIN, writable only while the kernel has refused part of the answer.
    fn wanted(&self) -> Option<Interest> {
        let writing = matches!(self.state, ScrapeState::Writing { .. });
        registration::interest(!writing, writing)
    }

    /// Brings the poller's interest in line with the scrape's state.
    fn sync(&mut self, registry: &Registry, token: mio::Token) -> Next {
        let wanted = self.wanted();
        match self
            .registration
            .update(registry, &mut self.stream, token, wanted)
        {
            Ok(()) => Next::Wait,
            Err(e) => {
                debug!("metrics scrape cannot be registered: {e}");
                Next::Close
            }
        }
    }

    /// Whether it sent a complete request and part of the answer still waits for the kernel.
    fn is_answering(&self) -> bool {
        matches!(self.state, ScrapeState::Writing { .. })
    }

    /// Does all that readiness allows: read the request, write the answer, wait for FIN. Request
    /// bytes make it active at `tick`.
    fn drive(&mut self, stats: &ServerStats, tick: u64) -> Next {
        let mut chunk = [0u8; 4096];
        loop {
            match &mut self.state {
                ScrapeState::Reading(request) => match self.stream.read(&mut chunk) {
                    Ok(0) => return Next::Close, // gone before asking: nothing to answer
                    Ok(n) => {
                        self.last_active = tick;
                        request.extend_from_slice(&chunk[..n]);
                        if let Some(response) = answer(request, || stats.per_service()) {
                            self.state = ScrapeState::Writing {
                                response,
                                written: 0,
                            };
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Next::Close,
                },
                ScrapeState::Writing { response, written } => {
                    match self.stream.write(&response[*written..]) {
                        Ok(n) => {
                            *written += n;
                            if *written == response.len() {
                                let _ = self.stream.shutdown(Shutdown::Write);
                                self.state = ScrapeState::Lingering;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Next::Close,
                    }
                }
                ScrapeState::Lingering => match self.stream.read(&mut chunk) {
                    Ok(0) => return Next::Close,
                    Ok(_) => {} // the rest of an oversized request: read and forgotten
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Next::Close,
                },
            }
        }
    }
}

/// The answer to the request bytes read so far, or `None` while its head is incomplete.
/// Pure: the counters (each service's, with its name) are read only when a page is asked for.
pub fn answer(
    request: &[u8],
    snapshot: impl FnOnce() -> Vec<(&'static str, StatsSnapshot)>,
) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(request) {
        Ok(httparse::Status::Partial) if request.len() > MAX_REQUEST_BYTES => {
            Some(plain(431, "Request Header Fields Too Large", ""))
        }
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => {
            Some(plain(431, "Request Header Fields Too Large", ""))
        }
        Err(_) => Some(plain(400, "Bad Request", "")),
        Ok(httparse::Status::Complete(head)) if head > MAX_REQUEST_BYTES => {
            Some(plain(431, "Request Header Fields Too Large", ""))
        }
        Ok(httparse::Status::Complete(_)) => {
            let method = parsed.method.unwrap_or("");
            let path = parsed.path.unwrap_or("");
            let path = path.split_once('?').map_or(path, |(path, _query)| path);
            let head_only = method == "HEAD";
            Some(match (method, path) {
                ("GET" | "HEAD", "/metrics") => {
                    let body = exposition(&snapshot());
                    response(200, "OK", CONTENT_TYPE, "", &body, head_only)
                }
                ("GET" | "HEAD", _) => plain(404, "Not Found", ""),
                _ => plain(405, "Method Not Allowed", "Allow: GET, HEAD\r\n"),
            })
        }
    }
}

/// The text exposition format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A short plain-text error answer: the status line again as the body.
fn plain(code: u16, reason: &str, extra_headers: &str) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    response(
        code,
        reason,
        "text/plain; charset=utf-8",
        extra_headers,
        &body,
        false,
    )
}

/// One HTTP/1.1 response that closes the connection; `head_only` leaves the body out (HEAD).
fn response(
    code: u16,
    reason: &str,
    content_type: &str,
    extra_headers: &str,
    body: &str,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

/// A counter family read from one transport's stream counters: name, type, help, value.
type StreamFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StreamSnapshot) -> u64,
);

/// A counter family read from a service's datagram counters: name, help, value.
type DatagramFamily = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

/// The stream families before `echoloop_connections_refused_total` (which has a reason label).
const STREAM_FAMILIES_BEFORE_REFUSED: [StreamFamily; 2] = [
    (
        "echoloop_connections_open",
        "gauge",
        "Stream connections open now.",
        |t| t.connections_open,
    ),
    (
        "echoloop_connections_accepted_total",
        "counter",
        "Stream connections accepted.",
        |t| t.connections_accepted,
    ),
];

/// The stream families after it.
const STREAM_FAMILIES_AFTER_CLOSED: [StreamFamily; 7] = [
    (
        "echoloop_bytes_received_total",
        "counter",
        "Bytes read from stream clients.",
        |t| t.bytes_received,
    ),
    (
        "echoloop_bytes_sent_total",
        "counter",
        "Bytes written to stream clients.",
        |t| t.bytes_sent,
    ),
    (
        "echoloop_queued_bytes",
        "gauge",
        "Bytes waiting in outbound queues now.",
        |t| t.queued_bytes,
    ),
    (
        "echoloop_queue_peak_bytes",
        "gauge",
        "Most bytes ever waiting in one client's outbound queue.",
        |t| t.queued_bytes_peak,
    ),
    (
        "echoloop_readers_paused_total",
        "counter",
        "Times a client was not read because its queue passed --queue-limit.",
        |t| t.readers_paused,
    ),
    (
        "echoloop_clients_dropped_total",
        "counter",
        "Clients dropped because their queue passed --queue-limit (chat).",
        |t| t.clients_dropped,
    ),
    (
        "echoloop_accept_errors_total",
        "counter",
        "Accept calls that failed (EMFILE, ENFILE, ECONNABORTED, ...).",
        |t| t.accept_errors,
    ),
];

/// The counters as Prometheus reads them, each service's apart (see `services`): a `# HELP`
/// and a `# TYPE` line per family.
pub fn exposition(services: &[(&str, StatsSnapshot)]) -> String {
    let mut page = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(page, "# HELP {name} {help}");
        let _ = writeln!(page, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(page, "{name} {value}");
            } else {
                let _ = writeln!(page, "{name}{{{labels}}} {value}");
            }
        }
    };
    // One sample per service and stream transport, each always written (0 if unused): a series
    // that appears only once a Unix client connects would leave gaps in dashboards and `rate()`.
    let streams = |value: fn(&StreamSnapshot) -> u64| -> Vec<(String, u64)> {
        services
            .iter()
            .flat_map(|(service, s)| {
                Transport::ALL
                    .iter()
                    .map(move |t| (stream_labels(service, *t), value(s.stream(*t))))
            })
            .collect()
    };
    for (name, kind, help, value) in STREAM_FAMILIES_BEFORE_REFUSED {
        family(name, kind, help, &streams(value));
    }
    let mut refused: Vec<(String, u64)> = Vec::new();
    let mut closed: Vec<(String, u64)> = Vec::new();
    for (service, s) in services {
        for t in Transport::ALL {
            for reason in RefusalReason::ALL {
                refused.push((
                    format!(
                        "{},reason=\"{}\"",
                        stream_labels(service, t),
                        reason.as_str()
                    ),
                    s.stream(t).refused_for(reason),
                ));
            }
            for reason in CloseReason::ALL {
                closed.push((
                    format!(
                        "{},reason=\"{}\"",
                        stream_labels(service, t),
                        reason.as_str()
                    ),
                    s.stream(t).closed_for(reason),
                ));
            }
        }
    }
    family(
        "echoloop_connections_refused_total",
        "counter",
        "Stream connections refused, by reason: full (--max-connections), acl (--allow/--deny), \
         rate (--accept-rate), per-source (--max-per-source).",
        &refused,
    );
    family(
        "echoloop_connections_closed_total",
        "counter",
        "Stream connections closed, by reason.",
        &closed,
    );
    for (name, kind, help, value) in STREAM_FAMILIES_AFTER_CLOSED {
        family(name, kind, help, &streams(value));
    }
    family(
        "echoloop_proxy_headers_accepted_total",
        "counter",
        "PROXY protocol headers accepted (--proxy-protocol).",
        &streams(|t| t.proxy_headers_accepted),
    );
    let headers_refused: Vec<(String, u64)> = services
        .iter()
        .flat_map(|(service, s)| {
            Transport::ALL.iter().flat_map(move |t| {
                HeaderRefusal::ALL.iter().map(move |reason| {
                    (
                        format!(
                            "{},reason=\"{}\"",
                            stream_labels(service, *t),
                            reason.as_str()
                        ),
                        s.stream(*t).headers_refused_for(*reason),
                    )
                })
            })
        })
        .collect();
    family(
        "echoloop_proxy_headers_refused_total",
        "counter",
        "PROXY protocol headers refused, by reason: malformed, timeout (none within 5 s), \
         denied (the carried address refused by --allow/--deny or a per-source limit).",
        &headers_refused,
    );
    family(
        "echoloop_tls_handshakes_total",
        "counter",
        "TLS handshakes done (tls: listeners).",
        &streams(|t| t.tls_handshakes),
    );
    let handshakes_failed: Vec<(String, u64)> = services
        .iter()
        .flat_map(|(service, s)| {
            Transport::ALL.iter().flat_map(move |t| {
                TlsFailure::ALL.iter().map(move |reason| {
                    (
                        format!(
                            "{},reason=\"{}\"",
                            stream_labels(service, *t),
                            reason.as_str()
                        ),
                        s.stream(*t).handshakes_failed_for(*reason),
                    )
                })
            })
        })
        .collect();
    family(
        "echoloop_tls_handshakes_failed_total",
        "counter",
        "TLS handshakes failed, by reason: error (not TLS, refused, a client certificate \
         missing or refused; an alert was sent; closed as frame-error), timeout \
         (--tls-handshake-timeout; closed as idle-timeout), closed (the client left first, or \
         the server shut down).",
        &handshakes_failed,
    );
    let udp: [DatagramFamily; 2] = [
        (
            "echoloop_datagrams_received_total",
            "Datagrams received.",
            |s| s.datagrams_received,
        ),
        ("echoloop_datagrams_sent_total", "Datagrams sent.", |s| {
            s.datagrams_sent
        }),
    ];
    for (name, help, value) in udp {
        let samples: Vec<(String, u64)> = services
            .iter()
            .map(|(service, s)| (udp_labels(service), value(s)))
            .collect();
        family(name, "counter", help, &samples);
    }
    let dropped: Vec<(String, u64)> = services
        .iter()
        .flat_map(|(service, s)| {
            DropReason::ALL.iter().map(move |reason| {
                (
                    format!("{},reason=\"{}\"", udp_labels(service), reason.as_str()),
                    s.dropped_for(*reason),
                )
            })
        })
        .collect();
    family(
        "echoloop_datagrams_dropped_total",
        "counter",
        "Datagrams dropped, by reason: loop (reflection guard), rate (--udp-rate-limit), \
         acl (--allow/--deny), size (--max-frame, or a reply over 4 x request + 512 bytes), \
         queue (the reply did not fit the socket's queue).",
        &dropped,
    );
    let kernel_drops: Vec<(String, u64)> = services
        .iter()
        .map(|(service, s)| (udp_labels(service), s.udp_kernel_drops))
        .collect();
    family(
        "echoloop_udp_kernel_drops_total",
        "counter",
        "Datagrams the kernel dropped before the server read them: a UDP socket's receive \
         buffer was full (SO_RXQ_OVFL; Linux). Raise --udp-rcvbuf (and net.core.rmem_max).",
        &kernel_drops,
    );
    // The reactor's, not a service's: added up over the services (only one holds them).
    let mut all = StatsSnapshot::default();
    for (_, s) in services {
        all.merge(s);
    }
    let memory = [
        (
            "echoloop_memory_bytes",
            "gauge",
            "Bytes the connections' buffers hold now, as --max-memory counts them.",
            all.memory_bytes,
        ),
        (
            "echoloop_memory_peak_bytes",
            "gauge",
            "Most bytes the connections' buffers ever held at once (per worker, the largest).",
            all.memory_peak,
        ),
        (
            "echoloop_memory_episodes_total",
            "counter",
            "Times a reactor went over --max-memory.",
            all.memory_episodes,
        ),
    ];
    for (name, kind, help, value) in memory {
        family(name, kind, help, &[(String::new(), value)]);
    }
    page
}

/// `service="echo",transport="tcp"`.
fn stream_labels(service: &str, transport: Transport) -> String {
    format!("service=\"{service}\",{}", transport_label(transport))
}

/// `service="echo",transport="udp"`.
fn udp_labels(service: &str) -> String {
    format!("service=\"{service}\",transport=\"udp\"")
}

/// `transport="tcp"` or `transport="unix"`.
fn transport_label(transport: Transport) -> String {
    format!("transport=\"{transport}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::stats::Stats;

    fn status(response: &[u8]) -> &str {
        let text = std::str::from_utf8(response).unwrap();
        text.split("\r\n").next().unwrap()
    }

    fn answer_to(request: &[u8]) -> Option<Vec<u8>> {
        answer(request, || vec![("echo", StatsSnapshot::default())])
    }

    #[test]
    fn a_scrape_gets_the_page() {
        let reply = answer_to(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(status(&reply), "HTTP/1.1 200 OK");
        let text = String::from_utf8(reply).unwrap();
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains(
            "echoloop_connections_accepted_total{service=\"echo\",transport=\"tcp\"} 0\n"
        ));
        assert!(text.contains(
            "echoloop_connections_accepted_total{service=\"echo\",transport=\"unix\"} 0\n"
        ));
        assert!(!text.contains("transport=\"stream\""));
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        assert_eq!(answer_to(b"GET /metrics HTTP/1.1\r\nHost:"), None);
        assert_eq!(answer_to(b""), None);
    }

    #[test]
    fn head_has_no_body_but_the_same_length() {
        let get = answer_to(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let head = answer_to(b"HEAD /metrics HTTP/1.0\r\n\r\n").unwrap();
        let text = String::from_utf8(head).unwrap();
        assert!(text.ends_with("\r\n\r\n"));
        let get = String::from_utf8(get).unwrap();
        assert!(get.starts_with(&text));
    }

    #[test]
    fn errors_are_answered_by_status() {
        assert_eq!(
            status(&answer_to(b"GET /metrics HTTP/1.1\r\nbad header\r\n\r\n").unwrap()),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status(&answer_to(b"\x00\x01\x02 nonsense\r\n\r\n").unwrap()),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status(&answer_to(b"GET / HTTP/1.1\r\n\r\n").unwrap()),
            "HTTP/1.1 404 Not Found"
        );
        let post = answer_to(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed");
        assert!(
            String::from_utf8(post)
                .unwrap()
                .contains("Allow: GET, HEAD\r\n")
        );
    }

    #[test]
    fn an_oversized_head_gets_431() {
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        request.resize(MAX_REQUEST_BYTES + 1, b'a');
        assert_eq!(
            status(&answer_to(&request).unwrap()),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            status(&answer_to(&many).unwrap()),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn tcp_and_unix_are_separate_series() {
        let stats = Stats::default();
        stats.stream(Transport::Tcp).bytes_sent.add(5);
        stats.stream(Transport::Unix).bytes_sent.add(7);
        stats.stream(Transport::Unix).connections_open.add(1);
        stats
            .stream(Transport::Unix)
            .count_close(CloseReason::Reset);
        let page = exposition(&[("echo", stats.snapshot())]);
        let labels = "service=\"echo\",transport";
        assert!(page.contains(&format!(
            "echoloop_bytes_sent_total{{{labels}=\"tcp\"}} 5\n"
        )));
        assert!(page.contains(&format!(
            "echoloop_bytes_sent_total{{{labels}=\"unix\"}} 7\n"
        )));
        assert!(page.contains(&format!(
            "echoloop_connections_closed_total{{{labels}=\"unix\",reason=\"reset\"}} 1\n"
        )));
        assert!(page.contains(&format!(
            "echoloop_connections_closed_total{{{labels}=\"tcp\",reason=\"reset\"}} 0\n"
        )));
        assert!(page.contains(&format!(
            "echoloop_datagrams_sent_total{{{labels}=\"udp\"}} 0\n"
        )));
    }

    #[test]
    fn each_service_is_a_series_of_its_own_and_memory_is_the_reactors() {
        let echo = Stats::default();
        echo.stream(Transport::Tcp).bytes_sent.add(5);
        echo.note_memory(100);
        let daytime = Stats::default();
        daytime.stream(Transport::Tcp).connections_accepted.add(2);
        daytime.datagrams_sent.add(3);
        let page = exposition(&[("echo", echo.snapshot()), ("daytime", daytime.snapshot())]);
        for line in [
            "echoloop_bytes_sent_total{service=\"echo\",transport=\"tcp\"} 5\n",
            "echoloop_bytes_sent_total{service=\"daytime\",transport=\"tcp\"} 0\n",
            "echoloop_connections_accepted_total{service=\"daytime\",transport=\"tcp\"} 2\n",
            "echoloop_connections_accepted_total{service=\"echo\",transport=\"tcp\"} 0\n",
            "echoloop_datagrams_sent_total{service=\"daytime\",transport=\"udp\"} 3\n",
            "echoloop_memory_bytes 100\n",
        ] {
            assert!(page.contains(line), "{line}");
        }
    }

    #[test]
    fn the_kernels_udp_drops_are_a_family_of_their_own() {
        let stats = Stats::default();
        stats.udp_kernel_drops.add(7);
        let page = exposition(&[("echo", stats.snapshot())]);
        assert!(page.contains("# TYPE echoloop_udp_kernel_drops_total counter\n"));
        assert!(
            page.contains(
                "echoloop_udp_kernel_drops_total{service=\"echo\",transport=\"udp\"} 7\n"
            )
        );
    }

    #[test]
    fn only_a_non_loopback_address_is_warned_about() {
        for quiet in [
            "127.0.0.1:9100",
            "127.8.9.10:1",
            "[::1]:9100",
            "[::ffff:127.0.0.1]:9100",
        ] {
            assert_eq!(exposure_warning(quiet.parse().unwrap()), None, "{quiet}");
        }
        for exposed in [
            "0.0.0.0:9100",
            "192.0.2.7:9100",
            "[::]:9100",
            "[2001:db8::1]:80",
        ] {
            let warning = exposure_warning(exposed.parse().unwrap()).expect(exposed);
            assert!(warning.contains("no authentication"), "{warning}");
        }
    }

    #[test]
    fn every_family_has_help_and_type() {
        let page = exposition(&[("echo", StatsSnapshot::default())]);
        let helps = page.lines().filter(|l| l.starts_with("# HELP ")).count();
        let types = page.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(helps, types);
        // 17, the kernel's UDP drops, PROXY headers accepted and refused, TLS handshakes done
        // and failed
        assert_eq!(helps, 22);
        for line in page.lines().filter(|l| l.starts_with("# TYPE ")) {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(
                words[3] == "counter",
                words[2].ends_with("_total"),
                "{line}"
            );
        }
    }
}
