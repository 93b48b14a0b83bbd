//! The event loop: wait for readiness, dispatch it, tidy up. One thread, no locks.
//!
//! This is the Python select server with `inputs`, `outputs` and `message_dict`, done with epoll
//! (through mio) and done right:
//!
//! - **Readiness, not completion.** `poll` says a socket *can* be read or written without blocking;
//!   we then do as much as the kernel allows. mio's epoll is *edge-triggered*: it reports a socket
//!   when its readiness changes, not while it lasts. So a readable socket is read until the kernel
//!   says `WouldBlock` (or a short read shows it has nothing more), else the rest would sit
//!   unnoticed; and a client that has more than its fair share this turn is put on the
//!   `still_ready` list and served again next turn without waiting for a new edge.
//! - **Write interest only for refused bytes.** Replies are written at once. Only what the kernel
//!   refuses is queued, and only then is the socket registered for `WRITABLE`; once the queue is
//!   empty the interest is dropped again. Interest is derived from the connection's state
//!   (`connection.rs`), and the poller is told only when it changes (`net/registration.rs`).
//! - **Backpressure.** A client whose queue passes `--queue-limit` is not read until the queue
//!   drains to half of it (or, for chat, is dropped).
//! - **Late, single-place closing.** Handlers only *mark* a connection closed; slab slots are freed
//!   at the end of the turn, so an event later in the same batch never meets a reused slot.
//! - **Several services, one loop.** A reactor may serve echo on one port and daytime on
//!   another (`server/services.rs`): it holds one protocol value per service in a list, and
//!   every listener, UDP socket and client knows the index of its own, so each event finds its
//!   protocol with an array index. A protocol's replies reach only its own clients: a chat
//!   broadcast skips the echo clients.
//! - **Strangers within limits.** The reactor owns a `Sources` (`server/sources/`): the access
//!   lists and per-source limits checked at accept, the loop guard and rate limit checked for
//!   every datagram. Trusted sources (loopback by default) pass with one prefix check.
//!
//! The loop itself is [`Reactor::run`], below. The work is in the files beside this one, by what
//! it is about: `token.rs` (what an event's token stands for), `accept.rs` (new connections),
//! `client.rs` (one client's reads, answers and writes), `tls.rs` (a client that speaks TLS),
//! `proxied.rs` (one behind a load balancer), `memory.rs` (the `--max-memory` cap),
//! `sockets.rs` (UDP, metrics), `tidy.rs`
//! (timers and closing, at the end of each turn), `shutdown.rs` (signals and the drain).
//!
//! **On mio's `poll(2)` backend** (`RUSTFLAGS='--cfg mio_unsupported_force_poll_poll'`, the build
//! the guide's "Why epoll" measures) two more things hold. mio emulates epoll's edges there: a
//! socket it has reported is not watched again for the same readiness until an IO call through
//! mio says `WouldBlock`, so reads go on to `WouldBlock` (`client.rs`, and the UDP batches in
//! `server/udp.rs`) and the alarm is `poll`'s timeout, not a timerfd (`net/alarm/`). And a [`Waker`]'s wake-up can be lost: every register,
//! re-register or deregister (and so every re-arming `WouldBlock`) wakes and clears the same
//! eventfd the waker writes to. So on that build the loop also looks, at the end of every turn,
//! at what a wake-up would have told it (`WAKES_MAY_BE_LOST`).
//!
//! Next: `token.rs`, then `accept.rs`.

mod accept;
mod client;
mod memory;
mod proxied;
mod shutdown;
mod sockets;
mod tidy;
mod tls;
pub mod token;

pub use token::{MAX_SOCKETS_PER_KIND, Source};

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use log::{info, trace};
use mio::event::Event;
use mio::{Events, Poll, Waker};
use slab::Slab;

use crate::net::alarm::Alarm;
use crate::net::listener::{AcceptOptions, Listener, ReserveFd};
use crate::net::memory::MemoryMeter;
use crate::net::tls::ServerTls;
use crate::protocol::framing::FramingKind;
use crate::protocol::{ClientId, ProtocolKind, Replies, Service};
use crate::server::config::{ProtocolChoice, ServeConfig};
use crate::server::connection::Policy;
use crate::server::metrics::MetricsEndpoint;
use crate::server::services::ServicePlan;
use crate::server::signals::SignalSource;
use crate::server::sources::Sources;
use crate::server::stats::{ServerStats, Stats};
use crate::server::timers::Timers;
use crate::server::udp::DatagramEndpoint;
use crate::server::watchdog::{Heartbeat, Watchdog};

use client::{Client, Readiness};

/// Bytes in the reactor-wide read buffer, for stream clients (UDP sockets read into batches of
/// their own: `server/udp.rs`).
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Whether the poller may lose a [`Waker`]'s wake-up: only mio's `poll(2)` backend does.
///
/// There the waker and mio's own bookkeeping share one eventfd: a wake-up writes to it, and so
/// does every change to the set of watched descriptors (to interrupt a `poll` running in another
/// thread), which then reads it empty again. A stop request or a finished fsync that lands while
/// this thread changes a registration is read away with mio's own note, and `poll` would sleep
/// through it. Both leave a trace outside the eventfd (the stop flag, the protocol's list of
/// finished work), so on that build the loop reads them at the end of every turn, after its last
/// change of registration: a wake-up that comes later finds the eventfd as it left it.
const WAKES_MAY_BE_LOST: bool = cfg!(mio_unsupported_force_poll_poll);

/// What the sockets a reactor is given, ready to register.
pub struct ReactorSockets {
    /// Stream listeners.
    pub listeners: Vec<Listener>,
    /// Whether each listener (in the same order) speaks TLS (`-l tls:ADDR`).
    pub tls_listeners: Vec<bool>,
    /// The certificate and key of the TLS listeners, if there are any.
    pub tls: Option<ServerTls>,
    /// UDP sockets.
    pub datagrams: Vec<mio::net::UdpSocket>,
    /// SIGINT/SIGTERM/SIGUSR1, already caught (daemons only; see [`Reactor::signals`]).
    pub signals: Option<SignalSource>,
    /// The `--metrics` endpoint (worker 0 only).
    pub metrics: Option<MetricsEndpoint>,
    /// Every worker's counters, for the `STATUS=` line to systemd (worker 0 only).
    pub all_stats: Option<ServerStats>,
    /// The waker registered with this reactor's poll ([`Reactor::waker`]): the protocol gets
    /// a clone for its work off the loop ([`crate::Protocol::attach_waker`]).
    pub waker: Option<Arc<Waker>>,
    /// Stamped at every turn of the loop, for systemd's watchdog (`server/watchdog.rs`).
    pub heartbeat: Arc<Heartbeat>,
    /// systemd's watchdog, checked on this loop (worker 0 only, and only if the unit asks).
    pub watchdog: Option<Watchdog>,
    /// The services, and which one each listener and UDP socket (in the order above) serves.
    pub services: ServicePlan,
}

/// One single-threaded server: a poller, its sockets, its clients and its protocol.
pub struct Reactor {
    poll: Poll,
    settings: Settings,
    phase: Phase,
    /// Everything registered that is not a client: listeners, UDP, metrics, signals.
    sockets: Sockets,
    clients: Clients,
    /// The protocols, and what answering with them needs.
    speech: Speech,
    clock: Clock,
    /// Accepting when the process runs out of descriptors or the reactor is full.
    accepting: Accepting,
    /// What the connections' buffers hold, against `--max-memory`.
    memory: Memory,
    /// Who may talk to us and how much: access lists, loop guard, per-source limits.
    sources: Sources,
    /// Counters, and the name logs give this reactor.
    report: Report,
    /// The certificate and key of the `tls:` listeners (read again on SIGHUP), if any.
    tls: Option<ServerTls>,
}

/// Settings read on the hot path, copied out of [`ServeConfig`] once.
#[derive(Debug, Clone)]
struct Settings {
    max_frame: usize,
    max_connections: usize,
    /// `--queue-limit` (each service's [`Policy`] has it too).
    queue_limit: usize,
    shutdown_timeout: Duration,
    accept: AcceptOptions,
    stats_interval: Option<Duration>,
    /// `--tls-handshake-timeout`.
    tls_handshake_timeout: Duration,
}

/// Whether the loop serves or drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Shutdown begun: listeners closed, queues flushing until `deadline`.
    Draining {
        deadline: Instant,
    },
}

/// The sockets that are not clients, each in its token's place.
struct Sockets {
    listeners: Vec<Option<Listener>>,
    /// The service index of each listener.
    listener_service: Vec<usize>,
    /// Whether each listener speaks TLS.
    listener_tls: Vec<bool>,
    datagrams: Vec<Option<DatagramEndpoint>>,
    /// The service index of each UDP endpoint.
    datagram_service: Vec<usize>,
    /// UDP endpoints that used up their per-turn budget: served again next turn.
    datagrams_still_ready: Vec<usize>,
    metrics: Option<MetricsEndpoint>,
    signals: Option<SignalSource>,
    /// Set by a [`crate::StopHandle`] before it wakes us.
    stop_requested: Arc<AtomicBool>,
}

/// The clients, and the lists a turn keeps about them (slots only: the slab owns the clients).
struct Clients {
    slab: Slab<Client>,
    /// Clients that used up their per-turn budget: served again next turn.
    still_ready: Vec<usize>,
    /// Clients given shared bytes this turn: flushed once, at the end of the turn.
    to_flush: Vec<usize>,
    /// Clients marked closed: removed at the end of the turn.
    closing: Vec<usize>,
    /// Scratch list of a broadcast's recipients, kept for its memory.
    broadcast_targets: Vec<usize>,
    /// The serial number the next connection gets (see `timers.rs`).
    next_serial: u64,
}

/// The protocols and their scratch space: one protocol value per service, one scratch space
/// per reactor, reused for every client.
struct Speech {
    /// The services, by index (a client's `service`).
    services: Vec<Served>,
    replies: Replies,
    read_buffer: Box<[u8]>,
    /// Ciphertext read from TLS clients, before it is decrypted into `read_buffer` (`tls.rs`).
    tls_input: Box<[u8]>,
    /// Scratch list of the clients whose work off the loop is done, kept for its memory.
    woken: Vec<ClientId>,
}

/// One service of the reactor: its protocol value and the settings that depend on it.
struct Served {
    /// Its name, for the stats line: `echo`.
    name: &'static str,
    service: Box<dyn Service>,
    framing: FramingKind,
    /// What its connections' decisions follow: queue limit, slow readers, idle timeout.
    policy: Policy,
    /// Frames per second for each untrusted client, if the protocol limits them (`--chat-rate`).
    frame_rate: Option<u32>,
    /// The `--greeting` line, `\n` included (never for the files service).
    greeting: Option<Vec<u8>>,
}

/// The time, read once per turn, and what is due when.
struct Clock {
    now: Instant,
    /// Wall-clock time for protocols (timestamp, daytime), read with `now`.
    wall_now: SystemTime,
    timers: Timers,
    /// Wakes `poll` for the earliest deadline.
    alarm: Alarm,
    next_stats_at: Option<Instant>,
    /// Checks every worker's heartbeat and pings systemd (worker 0 only, if at all).
    watchdog: Option<Watchdog>,
}

/// Accepting under pressure.
struct Accepting {
    reserve_fd: ReserveFd,
    /// Out of descriptors and even the reserve could not help: accept again at this time.
    retry_at: Option<Instant>,
    /// An "out of descriptors" episode is under way and has been logged.
    exhaustion_logged: bool,
    /// A "server full" episode is under way and has been logged.
    full_logged: bool,
}

/// The memory cap (`--max-memory`): what every connection's buffers hold, and an episode over it.
struct Memory {
    /// Bytes held by all connections' queues, held input and unfinished frames; shared bytes once.
    meter: MemoryMeter,
    /// `--max-memory`.
    cap: usize,
    /// Over the cap: an episode is under way (logged once, counted once). It ends when the total
    /// is back under nine tenths of the cap.
    over: bool,
    /// Clients held back for memory in this episode, released together when it ends.
    held: Vec<usize>,
}

/// Counters and the name logs give this reactor.
struct Report {
    /// One set per service, by index. The reactor's memory counters are kept in the first.
    stats: Vec<Arc<Stats>>,
    /// Every worker's counters (worker 0 only), for systemd's `STATUS=` line.
    all_stats: Option<ServerStats>,
    /// `worker 3: ` with several workers, empty with one.
    name: String,
    /// When the loop last turned, for the watchdog.
    heartbeat: Arc<Heartbeat>,
}

impl Reactor {
    /// The waker that interrupts `poll`'s wait: made before the reactor, so that a
    /// [`crate::StopHandle`] can exist before the reactor's thread starts.
    pub fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker::new(
            poll.registry(),
            Source::Waker.token(),
        )?))
    }

    /// Catches SIGINT, SIGTERM and SIGUSR1 from now on, announced to `poll`. Done before the
    /// `listening` lines are printed, so that a signal sent as soon as they appear is not fatal.
    pub fn signals(poll: &Poll) -> io::Result<SignalSource> {
        SignalSource::register(poll.registry(), Source::Signals.token())
    }

    /// A reactor serving `sockets` (each with the service `sockets.services` gives it) with
    /// `poll` (which already has its waker). It begins its drain when woken with
    /// `stop_requested` set; it counts into `stats`, one set per service.
    pub fn new(
        config: &ServeConfig,
        poll: Poll,
        sockets: ReactorSockets,
        stop_requested: Arc<AtomicBool>,
        stats: Vec<Arc<Stats>>,
        name: String,
    ) -> io::Result<Reactor> {
        let mut services = Vec::new();
        for choice in sockets.services.choices() {
            let service = choice.build(config.files.as_ref())?;
            services.push(Served::build(config, choice, service));
        }
        if let Some(waker) = &sockets.waker {
            for served in &mut services {
                served.service.attach_waker(Arc::clone(waker));
            }
        }
        let now = Instant::now();
        let settings = Settings {
            max_frame: config.max_frame,
            max_connections: config.max_connections,
            queue_limit: config.queue_limit,
            shutdown_timeout: config.shutdown_timeout,
            accept: AcceptOptions {
                nodelay: config.nodelay,
                keepalive: config.keepalive,
                sndbuf: config.sndbuf,
                rcvbuf: config.rcvbuf,
            },
            stats_interval: config.stats_interval,
            tls_handshake_timeout: config.tls.handshake_timeout,
        };
        let ReactorSockets {
            listeners,
            tls_listeners,
            tls,
            datagrams,
            signals,
            metrics,
            all_stats,
            waker: _,
            heartbeat,
            watchdog,
            services: plan,
        } = sockets;
        let own_udp: Vec<std::net::SocketAddr> = datagrams
            .iter()
            .filter_map(|socket| socket.local_addr().ok())
            .collect();
        let sources = Sources::new(&config.sources, &own_udp, now);
        let mut sockets = Sockets::register(
            poll.registry(),
            listeners,
            datagrams,
            metrics,
            signals,
            config.queue_limit,
            config.udp_rcvbuf,
            stop_requested,
        )?;
        sockets.listener_service = plan.stream_services().to_vec();
        sockets.listener_tls = tls_listeners;
        sockets.datagram_service = plan.datagram_services().to_vec();
        let alarm = Alarm::new(poll.registry(), Source::Alarm.token())?;
        Ok(Reactor {
            poll,
            phase: Phase::Serving,
            sockets,
            clients: Clients {
                slab: Slab::new(),
                still_ready: Vec::new(),
                to_flush: Vec::new(),
                closing: Vec::new(),
                broadcast_targets: Vec::new(),
                next_serial: 0,
            },
            speech: Speech {
                replies: Replies::new(services.first().map_or(FramingKind::Raw, |s| s.framing)),
                services,
                read_buffer: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
                tls_input: if tls.is_some() {
                    vec![0; client::TLS_READ_BYTES].into_boxed_slice()
                } else {
                    Box::default()
                },
                woken: Vec::new(),
            },
            clock: Clock {
                now,
                wall_now: SystemTime::now(),
                timers: Timers::new(),
                alarm,
                next_stats_at: config.stats_interval.map(|every| now + every),
                watchdog,
            },
            accepting: Accepting {
                reserve_fd: ReserveFd::new(),
                retry_at: None,
                exhaustion_logged: false,
                full_logged: false,
            },
            memory: Memory {
                meter: MemoryMeter::new(),
                cap: config.max_memory,
                over: false,
                held: Vec::new(),
            },
            sources,
            report: Report {
                stats,
                all_stats,
                name,
                heartbeat,
            },
            settings,
            tls,
        })
    }

    /// This reactor's counters, one set per service, readable from other threads.
    pub fn stats(&self) -> Vec<Arc<Stats>> {
        self.report.stats.clone()
    }

    /// Runs until shutdown has drained. Each turn: wait for readiness, dispatch, then tidy up.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.clock.now = Instant::now();
        if WAKES_MAY_BE_LOST {
            self.answer_lost_wakes(); // registering our sockets may have read one away
        }
        while !self.is_finished() {
            let timeout = self.wait_time()?; // until an event (the alarm is one), or zero
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.clock.now = Instant::now(); // the alarm, if set again, counts from now
                    continue;
                }
                result => result?,
            }
            self.clock.now = Instant::now();
            self.clock.wall_now = SystemTime::now();
            self.report.heartbeat.beat(self.clock.now); // alive, for the watchdog
            for event in events.iter() {
                self.dispatch(event);
            }
            self.revisit_still_ready(); // clients that used up their per-turn budget
            self.run_timers();
            self.tidy(); // flush shared bytes, free closed slots: never in the middle of a batch
            self.end_memory_episode_if_under();
            if WAKES_MAY_BE_LOST {
                self.answer_lost_wakes(); // mio on poll(2) only
            }
        }
        info!("{}stopped", self.report.name);
        Ok(())
    }

    /// Hands one event to whatever its token stands for.
    fn dispatch(&mut self, event: &Event) {
        let source = Source::from(event.token());
        trace!(
            "event token={} ({source}) {}",
            event.token().0,
            describe(event)
        );
        match source {
            Source::Listener(i) => self.drain_accepts(i),
            Source::Datagram(i) => self.drain_datagrams(i, event.is_writable()),
            Source::Signals => self.on_signals(),
            Source::Waker => {
                self.on_stop_request();
                self.resume_woken_clients();
            }
            Source::Alarm => self.clock.alarm.rang(), // `run_timers` does what is due
            Source::Metrics(n) => self.on_metrics(n),
            Source::Client(id) => self.drive_client(id, Readiness::from(event)),
        }
    }

    /// Does what the waker's event would have done, in case mio lost it ([`WAKES_MAY_BE_LOST`]):
    /// a stop request begins the drain (once: while draining, a second request is the waker's
    /// to report), and clients whose work off the loop is done are resumed.
    fn answer_lost_wakes(&mut self) {
        if self.phase == Phase::Serving {
            self.on_stop_request();
        }
        self.resume_woken_clients();
    }

    fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. }) && self.clients.slab.is_empty()
    }

    /// How long `poll` may sleep: not at all if work is waiting; else until an event, with the
    /// alarm set for the next deadline (see `net/alarm/` for why not `poll`'s own timeout where
    /// a timerfd exists). `now` was read by `run_timers` near the end of the last turn (only
    /// `tidy` ran since): a stale `now` can only make the alarm ring a little late, never early.
    fn wait_time(&mut self) -> io::Result<Option<Duration>> {
        if !self.clients.still_ready.is_empty() || !self.sockets.datagrams_still_ready.is_empty() {
            return Ok(Some(Duration::ZERO));
        }
        // Fails only for arguments the kernel rejects, which `Alarm::set` never builds.
        self.clock.alarm.set(self.next_deadline(), self.clock.now)
    }

    /// The earliest moment something is due: a connection's timer, the end of the drain, an
    /// accept retry, the periodic stats line, the watchdog's check.
    fn next_deadline(&self) -> Option<Instant> {
        let drain_deadline = match self.phase {
            Phase::Draining { deadline } => Some(deadline),
            Phase::Serving => None,
        };
        [
            self.clock.timers.next_due(),
            drain_deadline,
            self.accepting.retry_at,
            self.clock.next_stats_at,
            self.clock.watchdog.as_ref().map(Watchdog::next_check),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Served {
    /// A service of the reactor, with the settings of `config` that apply to it: `--framing`
    /// unless it has its own framing (files), `--greeting` unless it is files, `--chat-rate` if
    /// it limits frames.
    fn build(config: &ServeConfig, choice: &ProtocolChoice, service: Box<dyn Service>) -> Served {
        let own_framing = choice.is(ProtocolKind::Files);
        let framing = match config.framing {
            Some(framing) if !own_framing => framing,
            _ => service.default_framing(),
        };
        Served {
            name: choice.name(),
            framing,
            policy: Policy {
                queue_limit: config.queue_limit,
                slow_reader: service.slow_reader(),
                idle_timeout: config.idle_timeout,
            },
            frame_rate: config.chat_rate.filter(|_| service.limits_frame_rate()),
            greeting: config
                .greeting
                .as_ref()
                .filter(|_| !own_framing)
                .map(|text| [&text[..], b"\n"].concat()),
            service,
        }
    }
}

/// An event's flags as the trace writes them.
fn describe(event: &Event) -> String {
    let flags = [
        (event.is_readable(), "readable"),
        (event.is_writable(), "writable"),
        (event.is_read_closed(), "read-closed"),
        (event.is_write_closed(), "write-closed"),
        (event.is_error(), "error"),
    ];
    let names: Vec<&str> = flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| *name)
        .collect();
    names.join(" ")
}
