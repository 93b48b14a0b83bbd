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
//!   empty the interest is dropped again. Interest is derived from the connection's state, and the
//!   poller is told only when it changes: no `epoll_ctl` in the steady state.
//! - **Backpressure.** A client whose queue passes `--queue-limit` is not read until the queue
//!   drains below half of it (or, for chat, is dropped).
//! - **Late, single-place closing.** Handlers only *mark* a connection closed; slab slots are freed
//!   at the end of the turn, so an event later in the same batch never meets a reused slot.
//!
//! Tokens are laid out once, here, by [`Source`]: nobody else does arithmetic on tokens.
//!
//! Next: `connection.rs`, one client's state.

pub mod token;

pub use token::{MAX_SOCKETS_PER_KIND, Source};

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, trace, warn};
use mio::event::Event;
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;

use crate::net::activation;
use crate::net::alarm::Alarm;
use crate::net::listener::{AcceptOptions, Listener, ReserveFd, is_resource_exhaustion};
use crate::net::stream::Stream;
use crate::protocol::CloseReason;
use crate::protocol::framing::FramingKind;
use crate::protocol::{Action, ClientId, Protocol, Replies, SlowReader};
use crate::server::config::ServeConfig;
use crate::server::connection::{Connection, State, interest_label};
use crate::server::metrics::MetricsEndpoint;
use crate::server::outbound::Flushed;
use crate::server::signals::{SignalRequest, SignalSource};
use crate::server::stats::ServerStats;
use crate::server::stats::Stats;
use crate::server::timers::{TimerEntry, Timers};
use crate::server::udp::{DatagramEndpoint, Drained};

/// Bytes in the reactor-wide read buffer: big enough for any UDP datagram.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Most bytes one stream read takes. Smaller reads cost more system calls; bigger ones make a
/// peer wait longer for the first reply. Measured with one connection sending 16 × 4 KiB at a
/// time (docs/BENCHMARKS.md), 32 KiB answered 1.37× the messages of 64 KiB (median of 3
/// rounds): the client gets the first half of its replies, and sends more, while the server
/// reads the second half. At 50 and 1000 connections the two were within noise of each other.
const STREAM_READ_BYTES: usize = 32 * 1024;
/// Bytes one client may read, or be written, per turn before others get their chance.
const TURN_BUDGET_BYTES: usize = 256 * 1024;
/// How long to wait before accepting again when even the reserve descriptor could not help.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Whether the loop runs, drains, or is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Shutdown begun: listeners closed, queues flushing until `deadline`.
    Draining {
        deadline: Instant,
    },
}

/// What the sockets a reactor is given, ready to register.
pub struct ReactorSockets {
    /// Stream listeners.
    pub listeners: Vec<Listener>,
    /// UDP sockets.
    pub datagrams: Vec<mio::net::UdpSocket>,
    /// SIGINT/SIGTERM/SIGUSR1, already caught (daemons only; see [`Reactor::signals`]).
    pub signals: Option<SignalSource>,
    /// The `--metrics` endpoint (worker 0 only).
    pub metrics: Option<MetricsEndpoint>,
    /// Every worker's counters, for the `STATUS=` line to systemd (worker 0 only).
    pub all_stats: Option<ServerStats>,
}

/// Settings the reactor reads on the hot path, copied out of [`ServeConfig`].
#[derive(Debug, Clone)]
struct Limits {
    framing: FramingKind,
    max_frame: usize,
    max_connections: usize,
    queue_limit: usize,
    idle_timeout: Option<Duration>,
    shutdown_timeout: Duration,
    accept: AcceptOptions,
    greeting: Option<Vec<u8>>,
    stats_interval: Option<Duration>,
}

/// One single-threaded server: a poller, its sockets, its clients and its protocol.
pub struct Reactor {
    poll: Poll,
    limits: Limits,
    phase: Phase,
    listeners: Vec<Option<Listener>>,
    datagrams: Vec<Option<DatagramEndpoint>>,
    clients: Slab<Connection>,
    protocol: Box<dyn Protocol>,
    /// The protocol's [`Protocol::refills_when_drained`], asked once.
    refills: bool,
    replies: Replies,
    read_buffer: Box<[u8]>,
    timers: Timers,
    /// Wakes `poll` for the earliest deadline.
    alarm: Alarm,
    /// Clients that used up their per-turn budget: served again next turn.
    still_ready: Vec<usize>,
    /// UDP endpoints that used up their per-turn budget.
    datagrams_still_ready: Vec<usize>,
    /// Clients given shared bytes this turn: flushed once, at the end of the turn.
    to_flush: Vec<usize>,
    /// Clients marked closed: removed at the end of the turn.
    closing: Vec<usize>,
    /// Scratch list of a broadcast's recipients, kept for its memory.
    broadcast_targets: Vec<usize>,
    signals: Option<SignalSource>,
    metrics: Option<MetricsEndpoint>,
    all_stats: Option<ServerStats>,
    stop_requested: Arc<AtomicBool>,
    reserve_fd: ReserveFd,
    accept_retry_at: Option<Instant>,
    /// An "out of descriptors" episode is under way and has been logged.
    exhaustion_logged: bool,
    /// A "server full" episode is under way and has been logged.
    full_logged: bool,
    next_stats_at: Option<Instant>,
    next_serial: u64,
    /// The time, read once per turn.
    now: Instant,
    wall_now: SystemTime,
    stats: Arc<Stats>,
    name: String,
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

    /// A reactor serving `config`'s protocol on `sockets` with `poll` (which already has its
    /// waker). It begins its drain when woken with `stop_requested` set; it counts into `stats`.
    pub fn new(
        config: &ServeConfig,
        poll: Poll,
        sockets: ReactorSockets,
        stop_requested: Arc<AtomicBool>,
        stats: Arc<Stats>,
        name: String,
    ) -> io::Result<Reactor> {
        let signals = sockets.signals;
        let mut metrics = sockets.metrics;
        if let Some(endpoint) = &mut metrics {
            endpoint.register(poll.registry())?;
        }
        let mut listeners = Vec::new();
        for (i, mut listener) in sockets.listeners.into_iter().enumerate() {
            poll.registry().register(
                &mut listener,
                Source::Listener(i).token(),
                Interest::READABLE,
            )?;
            listeners.push(Some(listener));
        }
        let mut datagrams = Vec::new();
        for (i, mut socket) in sockets.datagrams.into_iter().enumerate() {
            poll.registry().register(
                &mut socket,
                Source::Datagram(i).token(),
                Interest::READABLE,
            )?;
            datagrams.push(Some(DatagramEndpoint::new(socket, config.queue_limit)));
        }
        let protocol = config.build_protocol();
        let framing = config.framing.unwrap_or_else(|| protocol.default_framing());
        let greeting = config.greeting.as_ref().map(|text| {
            let mut line = text.clone();
            line.push(b'\n');
            line
        });
        let alarm = Alarm::new(poll.registry(), Source::Alarm.token())?;
        let now = Instant::now();
        let reactor = Reactor {
            poll,
            limits: Limits {
                framing,
                max_frame: config.max_frame,
                max_connections: config.max_connections,
                queue_limit: config.queue_limit,
                idle_timeout: config.idle_timeout,
                shutdown_timeout: config.shutdown_timeout,
                accept: AcceptOptions {
                    nodelay: config.nodelay,
                    keepalive: config.keepalive,
                },
                greeting,
                stats_interval: config.stats_interval,
            },
            phase: Phase::Serving,
            listeners,
            datagrams,
            clients: Slab::new(),
            refills: protocol.refills_when_drained(),
            protocol,
            replies: Replies::new(framing),
            read_buffer: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
            timers: Timers::new(),
            alarm,
            still_ready: Vec::new(),
            datagrams_still_ready: Vec::new(),
            to_flush: Vec::new(),
            closing: Vec::new(),
            broadcast_targets: Vec::new(),
            signals,
            metrics,
            all_stats: sockets.all_stats,
            stop_requested,
            reserve_fd: ReserveFd::new(),
            accept_retry_at: None,
            exhaustion_logged: false,
            full_logged: false,
            next_stats_at: config.stats_interval.map(|every| now + every),
            next_serial: 0,
            now,
            wall_now: SystemTime::now(),
            stats,
            name,
        };
        Ok(reactor)
    }

    /// This reactor's counters, readable from other threads.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Runs until shutdown has drained. Each turn: wait for readiness, dispatch, then tidy up.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.now = Instant::now();
        while !self.is_finished() {
            let timeout = self.wait_time()?; // until an event (the alarm is one), or zero
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.now = Instant::now(); // the alarm, if set again, counts from the real now
                    continue;
                }
                result => result?,
            }
            self.now = Instant::now();
            self.wall_now = SystemTime::now();
            for event in events.iter() {
                trace!(
                    "event token={} ({}) {}",
                    event.token().0,
                    Source::from(event.token()),
                    describe(event)
                );
                match Source::from(event.token()) {
                    Source::Listener(i) => self.drain_accepts(i),
                    Source::Datagram(i) => self.drain_datagrams(i, event.is_writable()),
                    Source::Signals => self.on_signals(),
                    Source::Waker => self.on_wake(),
                    Source::Alarm => self.alarm.rang(), // `run_timers` below does what is due
                    Source::Metrics(n) => {
                        if let Some(endpoint) = &mut self.metrics {
                            endpoint.on_event(n, self.poll.registry());
                        }
                    }
                    Source::Client(id) => self.drive_client(id, Readiness::from(event)),
                }
            }
            self.revisit_still_ready(); // clients that used up their per-turn budget
            self.run_timers();
            self.tidy(); // flush shared bytes, free closed slots: never in the middle of a batch
        }
        info!("{}stopped", self.name);
        Ok(())
    }

    fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. }) && self.clients.is_empty()
    }

    /// How long `poll` may sleep: not at all if work is waiting; else what the alarm, set for the
    /// next deadline, says (until an event on Linux, where a timerfd is one: see `net/alarm/`).
    /// `self.now` was read by `run_timers` near the end of the last turn (only `tidy` ran since),
    /// so the clock is not asked again; a stale `now` can only make the alarm ring a little late.
    fn wait_time(&mut self) -> io::Result<Option<Duration>> {
        if !self.still_ready.is_empty() || !self.datagrams_still_ready.is_empty() {
            return Ok(Some(Duration::ZERO));
        }
        // Fails only for arguments the kernel rejects, which `Alarm::set` never builds.
        self.alarm.set(self.next_deadline(), self.now)
    }

    /// The earliest moment something is due: a connection's timer, the end of the drain, an
    /// accept retry, the periodic stats line.
    fn next_deadline(&self) -> Option<Instant> {
        let drain_deadline = match self.phase {
            Phase::Draining { deadline } => Some(deadline),
            Phase::Serving => None,
        };
        [
            self.timers.next_due(),
            drain_deadline,
            self.accept_retry_at,
            self.next_stats_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- accepting -------------------------------------------------------------------------

    /// Accepts until `WouldBlock`.
    fn drain_accepts(&mut self, index: usize) {
        loop {
            let Some(Some(listener)) = self.listeners.get(index) else {
                return;
            };
            match listener.accept(self.limits.accept) {
                Ok(stream) => {
                    self.exhaustion_logged = false;
                    self.admit(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_exhaustion(&e) => {
                    self.stats.stream(listener.transport()).accept_errors.add(1);
                    if !self.exhaustion_logged {
                        warn!(
                            "{}accept failed: {e}; shedding new connections until descriptors free up",
                            self.name
                        );
                        self.exhaustion_logged = true;
                    }
                    if !self.reserve_fd.shed_one(listener) {
                        // Even the reserve could not help: try again shortly, without spinning.
                        self.accept_retry_at = Some(self.now + ACCEPT_RETRY);
                        return;
                    }
                }
                Err(e) => {
                    // ECONNABORTED and the like: that one connection is gone, the next may be fine.
                    self.stats.stream(listener.transport()).accept_errors.add(1);
                    debug!("{}accept failed: {e}", self.name);
                }
            }
        }
    }

    /// Takes a new connection in, or refuses it when the reactor is full.
    fn admit(&mut self, mut stream: Stream) {
        if self.clients.len() >= self.limits.max_connections {
            self.refuse(stream);
            return;
        }
        self.full_logged = false;
        let entry = self.clients.vacant_entry();
        let id = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Source::Client(id).token(),
            Interest::READABLE,
        ) {
            warn!("{}cannot register a new connection: {e}", self.name);
            return;
        }
        if log::log_enabled!(log::Level::Debug) {
            debug!("client {id} accepted from {}", stream.peer_label());
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let counters = self.stats.stream(stream.transport());
        counters.connections_accepted.add(1);
        counters.connections_open.add(1);
        entry.insert(Connection::new(
            stream,
            self.limits.framing,
            self.limits.max_frame,
            self.now,
            serial,
        ));

        let conn = &mut self.clients[id];
        if let Some(greeting) = &self.limits.greeting
            && let Err(e) = conn.send(greeting, self.now)
        {
            conn.mark_closed(CloseReason::from_error(&e));
        }
        self.replies.reset(self.limits.framing);
        self.protocol
            .on_connect(ClientId(id), self.wall_now, &mut self.replies);
        self.deliver(id);
        if self.refills {
            self.flush_client(id); // chargen makes more as soon as the kernel takes the first batch
        }
        self.sync(id);
    }

    /// One over `--max-connections`: a one-line explanation, then close.
    fn refuse(&mut self, stream: Stream) {
        self.stats
            .stream(stream.transport())
            .connections_refused
            .add(1);
        if !self.full_logged {
            warn!(
                "{}refusing connections: server full ({} connections)",
                self.name, self.limits.max_connections
            );
            self.full_logged = true;
        }
        let line = format!(
            "error: server full ({} connections)\n",
            self.limits.max_connections
        );
        let mut stream = stream;
        let _ = io::Write::write(&mut stream, line.as_bytes()); // best effort: it has room
        let _ = stream.shutdown_write();
        // Closing a socket with unread input sends RST, which can destroy the line above: drop
        // what the client already sent (one read; a refused client gets no more care than that).
        let _ = stream.read(&mut self.read_buffer);
    }

    // ----- one client's readiness --------------------------------------------------------------

    /// Does what a client's readiness allows: write what it is owed, read what it sent.
    fn drive_client(&mut self, id: usize, readiness: Readiness) {
        let Some(conn) = self.clients.get_mut(id) else {
            return; // closed and freed earlier: events are hints
        };
        if conn.is_closed() {
            return; // marked earlier in this batch
        }
        if readiness.read_closed {
            conn.peer_fin_seen = true;
        }
        if readiness.writable && !conn.outbound.is_empty() {
            self.flush_client(id);
        }
        if readiness.readable {
            self.drain_reads(id);
        }
        // No second write here for a non-empty queue: if it is not empty, the kernel has just
        // refused bytes, and trying again now would only be told `WouldBlock`.
        if self.refills && self.clients[id].outbound.is_empty() {
            self.flush_client(id); // chargen: the client read everything, make more
        }
        self.sync(id);
    }

    /// Reads until `WouldBlock`, a short read, end of input, or the per-turn budget.
    fn drain_reads(&mut self, id: usize) {
        let mut budget = TURN_BUDGET_BYTES;
        loop {
            let conn = &mut self.clients[id];
            if !conn.is_reading() {
                return;
            }
            let buffer = &mut self.read_buffer[..STREAM_READ_BYTES];
            let n = match conn.stream.read(buffer) {
                Ok(0) => {
                    trace!("client {id} read 0 bytes (end of input)");
                    self.on_end_of_input(id);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    trace!("client {id} read WouldBlock");
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("client {id} read failed: {e}");
                    conn.outbound.discard();
                    conn.mark_closed(CloseReason::from_error(&e));
                    return;
                }
            };
            trace!("client {id} read {n} bytes");
            conn.note_read(n, self.now);
            self.stats.received(conn.stream.transport(), n);
            let lingering = matches!(conn.state(), State::Lingering { .. });
            let short_read = n < STREAM_READ_BYTES && !conn.peer_fin_seen;
            if !lingering {
                self.answer(id, n);
            }
            // A short read means the kernel had no more: epoll(7) lets us stop here and save the
            // read that would only say `WouldBlock`. New bytes will raise a new edge. (`sync`,
            // which follows every `drain_reads`, applies the queue limit.)
            if short_read {
                trace!("client {id} short read: stop until the next edge");
                return;
            }
            // Before reading more: checked after every full read, so a flooding client holds at
            // most the limit plus the replies to one read.
            self.apply_queue_limit(id);
            budget = budget.saturating_sub(n);
            if budget == 0 {
                trace!("client {id} read budget used: served again next turn");
                self.still_ready.push(id);
                return;
            }
        }
    }

    /// Cuts the bytes just read into frames, lets the protocol answer, and delivers the answers.
    fn answer(&mut self, id: usize, len: usize) {
        let conn = &mut self.clients[id];
        self.replies.reset(conn.decoder.kind());
        let mut input = &self.read_buffer[..len];
        self.replies.answering(input); // echoed slices of it are written from here, not copied
        let mut broken = false;
        while !self.replies.closes_sender() {
            match conn.decoder.next_frame(&mut input) {
                Ok(Some(frame)) => {
                    self.protocol
                        .on_frame(ClientId(id), frame, self.wall_now, &mut self.replies)
                }
                Ok(None) => break,
                Err(error) => {
                    debug!("client {id} sent a bad frame: {error}");
                    self.protocol
                        .on_frame_error(ClientId(id), &error, &mut self.replies);
                    if conn.decoder.kind() == FramingKind::Length {
                        broken = true; // the stream cannot be trusted past a bad length prefix
                        break;
                    }
                }
            }
        }
        self.deliver(id);
        if broken {
            self.clients[id].finish(CloseReason::FrameError);
        }
    }

    /// The peer sent FIN: its last unfinished line is still a frame; then finish.
    fn on_end_of_input(&mut self, id: usize) {
        let conn = &mut self.clients[id];
        if conn.state() == State::Open {
            self.replies.reset(conn.decoder.kind());
            if let Some(frame) = conn.decoder.finish() {
                self.protocol
                    .on_frame(ClientId(id), frame, self.wall_now, &mut self.replies);
            }
            self.protocol
                .on_end_of_input(ClientId(id), &mut self.replies);
            self.deliver(id);
        }
        self.clients[id].on_end_of_input();
    }

    /// Carries out what the protocol recorded in `self.replies` on behalf of client `id`.
    fn deliver(&mut self, id: usize) {
        let conn = &mut self.clients[id];
        // The answer is the echoed run of the read buffer (if any), then the copied bytes.
        let echoed = match self.replies.echoed_input() {
            Some(run) => &self.read_buffer[run],
            None => &[][..],
        };
        for reply in [echoed, self.replies.to_sender()] {
            if reply.is_empty() {
                continue;
            }
            let queued_before = conn.outbound.len();
            match conn.send(reply, self.now) {
                Ok(written) => {
                    self.stats.sent(conn.stream.transport(), written);
                    trace_send(id, written, reply.len(), queued_before);
                }
                Err(e) => {
                    debug!("client {id} write failed: {e}");
                    conn.outbound.discard();
                    conn.mark_closed(CloseReason::from_error(&e));
                    break;
                }
            }
        }
        if self.replies.closes_sender() {
            conn.finish(CloseReason::Finished);
        }
        self.deliver_to_others();
    }

    /// Queues shared bytes for another client; it is flushed once, at the end of the turn.
    fn queue_shared(&mut self, target: usize, bytes: &std::rc::Rc<[u8]>) {
        let Some(conn) = self.clients.get_mut(target) else {
            return;
        };
        if !matches!(conn.state(), State::Open | State::Paused) {
            return;
        }
        if conn.outbound.is_empty() {
            self.to_flush.push(target);
        }
        conn.outbound.push_shared(std::rc::Rc::clone(bytes));
        if conn.outbound.len() > self.limits.queue_limit {
            // Over the limit only because this turn piled it up? Offer it to the kernel before
            // `sync` judges: the limit is for bytes a slow reader refuses, not for a burst.
            self.flush_client(target);
        }
        self.sync(target);
    }

    /// Writes a client's queue; while it empties and the client is open, asks a refilling
    /// protocol for more (chargen), up to the per-turn budget.
    fn flush_client(&mut self, id: usize) {
        let mut budget = TURN_BUDGET_BYTES;
        loop {
            let conn = &mut self.clients[id];
            if conn.is_closed() {
                return;
            }
            let before = conn.outbound.len();
            if before > 0 {
                match conn.outbound.flush_into(&mut conn.stream) {
                    Ok((flushed, written)) => {
                        conn.note_written(written, self.now);
                        self.stats.sent(conn.stream.transport(), written);
                        if flushed == Flushed::Blocked {
                            trace!("client {id} write {written} of {before} (short)");
                            return;
                        }
                        trace!("client {id} write {written} of {before}");
                        budget = budget.saturating_sub(written);
                    }
                    Err(e) => {
                        debug!("client {id} write failed: {e}");
                        conn.outbound.discard();
                        conn.mark_closed(CloseReason::from_error(&e));
                        return;
                    }
                }
            }
            // The queue is empty. A client that half-closed may still be owed a body (a file
            // download): keep refilling while the protocol has more.
            let open_for_output = matches!(
                conn.state(),
                State::Open | State::Finishing(CloseReason::PeerClosed)
            );
            if !self.refills || !open_for_output {
                return;
            }
            self.replies.reset(conn.decoder.kind());
            self.protocol.on_drained(ClientId(id), &mut self.replies);
            if self.replies.to_sender().is_empty() && !self.replies.closes_sender() {
                return;
            }
            conn.outbound.push_copy(self.replies.to_sender());
            if self.replies.closes_sender() {
                conn.finish(CloseReason::Finished);
            }
            // Out of budget: the new batch waits in the queue (so a half-closed client is not
            // mistaken for a finished one) and is written next turn.
            if budget == 0 {
                self.still_ready.push(id);
                return;
            }
        }
    }

    /// Counts a client's queue and applies `--queue-limit`: above it, pause reading (or drop the
    /// client, for chat); at or below half of it, read again.
    fn apply_queue_limit(&mut self, id: usize) {
        let conn = &mut self.clients[id];
        let queued = conn.outbound.len();
        let counters = self.stats.stream(conn.stream.transport());
        if queued != conn.queue_counted {
            counters.note_queue_len(queued);
            counters.queued_bytes.add(queued as u64);
            counters.queued_bytes.sub(conn.queue_counted as u64);
            conn.queue_counted = queued;
        }
        if queued > self.limits.queue_limit && !conn.is_closed() {
            match self.protocol.slow_reader() {
                SlowReader::Drop => {
                    warn!(
                        "client {id} dropped: queue limit ({queued} bytes queued, limit {})",
                        self.limits.queue_limit
                    );
                    conn.outbound.discard();
                    conn.mark_closed(CloseReason::QueueLimit);
                    counters.clients_dropped.add(1);
                }
                SlowReader::PauseReading if conn.state() == State::Open => {
                    trace!("client {id} paused: {queued} bytes queued");
                    conn.pause();
                    counters.readers_paused.add(1);
                }
                SlowReader::PauseReading => {}
            }
        } else if queued <= self.limits.queue_limit / 2 && conn.state() == State::Paused {
            trace!("client {id} resumed: {queued} bytes queued");
            conn.resume();
        }
    }

    /// After any change to a client: enforce the queue limit, move a finished client on, and
    /// bring the poller's interest and the timers in line with the client's state.
    fn sync(&mut self, id: usize) {
        if !self.clients.contains(id) {
            return;
        }
        self.apply_queue_limit(id);
        let conn = &mut self.clients[id];
        let linger_cap = match self.phase {
            Phase::Draining { deadline } => Some(deadline),
            Phase::Serving => None,
        };
        conn.finish_if_flushed(self.now, linger_cap);
        if conn.is_closed() {
            self.closing.push(id);
            return;
        }
        if let Some(wanted) = conn.wanted()
            && wanted != conn.registered
        {
            trace!(
                "interest client={id} {} -> {}",
                interest_label(Some(conn.registered)),
                interest_label(Some(wanted))
            );
            match self.poll.registry().reregister(
                &mut conn.stream,
                Source::Client(id).token(),
                wanted,
            ) {
                Ok(()) => conn.registered = wanted,
                Err(e) => {
                    warn!("client {id} cannot change interest: {e}");
                    conn.mark_closed(CloseReason::IoError);
                    self.closing.push(id);
                    return;
                }
            }
        }
        // A scheduled entry can only be too late once the deadline moves *earlier*: activity
        // moves it later (the entry is then re-checked when due), lingering moves it earlier.
        let may_be_earlier =
            conn.timer_at.is_none() || matches!(conn.state(), State::Lingering { .. });
        if may_be_earlier
            && let Some(due) = conn.deadline(self.limits.idle_timeout)
            && conn.timer_at.is_none_or(|at| due < at)
        {
            conn.timer_at = Some(due);
            self.timers.schedule(TimerEntry {
                due,
                slot: id,
                serial: conn.serial,
            });
        }
    }

    // ----- the end of a turn -------------------------------------------------------------------

    /// Serves again the clients and sockets that stopped at their per-turn budget.
    fn revisit_still_ready(&mut self) {
        for id in std::mem::take(&mut self.still_ready) {
            self.drive_client(id, Readiness::ALL);
        }
        for index in std::mem::take(&mut self.datagrams_still_ready) {
            self.drain_datagrams(index, false);
        }
    }

    /// Expires idle and lingering connections, retries accepting, logs periodic stats, and ends
    /// a drain that ran out of time.
    fn run_timers(&mut self) {
        let now = Instant::now();
        self.now = now;
        while let Some(entry) = self.timers.pop_due(now) {
            self.on_timer(entry);
        }
        if self.accept_retry_at.is_some_and(|at| at <= now) {
            self.accept_retry_at = None;
            for index in 0..self.listeners.len() {
                self.drain_accepts(index);
            }
        }
        if let Some(at) = self.next_stats_at
            && at <= now
        {
            self.log_stats();
            self.next_stats_at = self.limits.stats_interval.map(|every| now + every);
        }
        if let Phase::Draining { deadline } = self.phase
            && deadline <= now
        {
            self.abandon_remaining();
        }
    }

    /// A timer entry came due: expire its connection, or schedule it again if it was active.
    fn on_timer(&mut self, entry: TimerEntry) {
        let Some(conn) = self.clients.get_mut(entry.slot) else {
            return;
        };
        if conn.serial != entry.serial || conn.timer_at != Some(entry.due) {
            return; // stale: the connection left, or a newer entry replaced this one
        }
        conn.timer_at = None;
        let id = entry.slot;
        match conn.deadline(self.limits.idle_timeout) {
            Some(due) if due > self.now => {} // active since: `sync` schedules the new deadline
            Some(_) => match conn.state() {
                State::Lingering { reason, .. } => conn.mark_closed(reason),
                State::Open if self.limits.framing == FramingKind::Line => {
                    debug!("client {id} idle: closing");
                    if let Ok(written) = conn.send(b"error: idle timeout\n", self.now) {
                        self.stats.sent(conn.stream.transport(), written);
                    }
                    conn.finish(CloseReason::IdleTimeout);
                }
                State::Open => conn.finish(CloseReason::IdleTimeout),
                // Paused or finishing, and still nothing moved: the client stopped reading.
                _ => {
                    conn.outbound.discard();
                    conn.mark_closed(CloseReason::IdleTimeout);
                }
            },
            None => {}
        }
        self.sync(id);
    }

    /// Flushes the clients given shared bytes this turn, then closes the marked ones (whose
    /// goodbyes may give others more bytes, and so on until nothing is left to do).
    fn tidy(&mut self) {
        while !self.to_flush.is_empty() || !self.closing.is_empty() {
            for id in std::mem::take(&mut self.to_flush) {
                if self.clients.contains(id) {
                    self.flush_client(id);
                    self.sync(id);
                }
            }
            while let Some(id) = self.closing.pop() {
                self.close(id);
            }
        }
    }

    /// Frees a closed client's slot and socket, counts it, and tells the protocol.
    fn close(&mut self, id: usize) {
        if !self.clients.get(id).is_some_and(Connection::is_closed) {
            return; // already closed (marked twice)
        }
        let conn = self.clients.remove(id);
        let reason = conn.close_reason().unwrap_or(CloseReason::IoError);
        let counters = self.stats.stream(conn.stream.transport());
        counters.count_close(reason);
        counters.queued_bytes.sub(conn.queue_counted as u64);
        debug!(
            "client {id} closed: {reason} (in={} out={} unsent={} age={:.1}s)",
            conn.bytes_in,
            conn.bytes_out,
            conn.outbound.len(),
            conn.opened_at.elapsed().as_secs_f64()
        );
        drop(conn); // closes the socket; epoll forgets it
        self.compact_timers();
        self.replies.reset(self.limits.framing);
        self.protocol
            .on_disconnect(ClientId(id), reason, &mut self.replies);
        self.deliver_to_others();
    }

    /// Drops timer entries left behind by closed connections once they outnumber the live ones,
    /// so that heavy churn cannot grow the heap (amortized: one pass per many closes).
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.clients.len() + 1024 {
            return;
        }
        let clients = &self.clients;
        self.timers.retain(|entry| {
            clients
                .get(entry.slot)
                .is_some_and(|c| c.serial == entry.serial && c.timer_at == Some(entry.due))
        });
    }

    /// Carries out the actions recorded for clients other than the sender.
    #[inline]
    fn deliver_to_others(&mut self) {
        if !self.replies.others().is_empty() {
            self.deliver_actions();
        }
    }

    fn deliver_actions(&mut self) {
        let others = self.replies.take_others();
        for action in &others {
            match action {
                Action::SendTo(target, bytes) => self.queue_shared(target.0, bytes),
                Action::Broadcast { except, bytes } => {
                    // Recipients are listed first (queueing needs `&mut self`), into a list
                    // kept between broadcasts so that a chat line allocates nothing here.
                    let mut targets = std::mem::take(&mut self.broadcast_targets);
                    targets.clear();
                    targets.extend(
                        self.clients
                            .iter()
                            .map(|(key, _)| key)
                            .filter(|key| Some(ClientId(*key)) != *except),
                    );
                    for &target in &targets {
                        self.queue_shared(target, bytes);
                    }
                    self.broadcast_targets = targets;
                }
            }
        }
        self.replies.return_others(others);
    }

    // ----- UDP, signals, shutdown --------------------------------------------------------------

    fn drain_datagrams(&mut self, index: usize, writable: bool) {
        let Some(Some(endpoint)) = self.datagrams.get_mut(index) else {
            return;
        };
        if writable {
            endpoint.flush(&self.stats);
        }
        match endpoint.drain_datagrams(
            self.protocol.as_mut(),
            &mut self.read_buffer,
            self.limits.max_frame,
            self.wall_now,
            &self.stats,
        ) {
            Ok(Drained::Empty) => {}
            Ok(Drained::Budget) => self.datagrams_still_ready.push(index),
            Err(e) => warn!("{}udp receive failed: {e}", self.name),
        }
        let wanted = endpoint.wanted();
        if wanted != endpoint.registered {
            match self.poll.registry().reregister(
                &mut endpoint.socket,
                Source::Datagram(index).token(),
                wanted,
            ) {
                Ok(()) => endpoint.registered = wanted,
                Err(e) => warn!("{}udp socket cannot change interest: {e}", self.name),
            }
        }
    }

    fn on_signals(&mut self) {
        let requests = match &mut self.signals {
            Some(signals) => signals.pending(),
            None => return,
        };
        for request in requests {
            match request {
                SignalRequest::LogStats => self.log_stats(),
                SignalRequest::Stop => self.begin_shutdown(),
            }
        }
    }

    fn on_wake(&mut self) {
        if self.stop_requested.load(Ordering::SeqCst) {
            self.begin_shutdown();
        }
    }

    fn log_stats(&self) {
        info!("{}{}", self.name, self.stats.snapshot().summary_line());
        if let Some(all) = &self.all_stats {
            activation::notify_status(&all.snapshot().summary_line());
        }
    }

    /// Stops accepting at once, then lets every client finish: flush, FIN, close. A second
    /// request while draining gives up on the drain.
    fn begin_shutdown(&mut self) {
        if let Phase::Draining { .. } = self.phase {
            info!("{}second stop request: closing now", self.name);
            self.abandon_remaining();
            return;
        }
        let deadline = self.now + self.limits.shutdown_timeout;
        self.phase = Phase::Draining { deadline };
        activation::notify_stopping();
        info!(
            "{}shutting down: {} clients to drain (up to {:?})",
            self.name,
            self.clients.len(),
            self.limits.shutdown_timeout
        );
        // Dropping a listener closes it: new connection attempts are refused by the kernel.
        // (An inherited socket stays open in systemd, which queues them for the next start.)
        self.listeners.iter_mut().for_each(|l| *l = None);
        self.datagrams.iter_mut().for_each(|d| *d = None);
        self.metrics = None;
        let ids: Vec<usize> = self.clients.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.clients[id].finish(CloseReason::Shutdown);
            self.sync(id);
        }
    }

    /// The drain deadline has passed: close everyone still here, saying what was left unsent.
    fn abandon_remaining(&mut self) {
        let mut unsent = 0;
        let mut clients = 0;
        let ids: Vec<usize> = self.clients.iter().map(|(id, _)| id).collect();
        for id in ids {
            let conn = &mut self.clients[id];
            unsent += conn.outbound.discard();
            clients += 1;
            conn.mark_closed(conn.close_reason().unwrap_or(CloseReason::Shutdown));
            self.closing.push(id);
        }
        if unsent > 0 {
            warn!(
                "{}shutdown deadline: {clients} clients closed with {unsent} bytes unsent",
                self.name
            );
        }
        self.phase = Phase::Draining { deadline: self.now };
    }
}

/// The readiness a client event reports, as the handlers use it.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    readable: bool,
    writable: bool,
    read_closed: bool,
}

impl Readiness {
    /// Assume everything: for clients revisited without an event.
    const ALL: Readiness = Readiness {
        readable: true,
        writable: true,
        read_closed: false,
    };
}

impl From<&Event> for Readiness {
    fn from(event: &Event) -> Readiness {
        Readiness {
            // An error or hang-up is reported as readable: the read returns it.
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable() || event.is_write_closed() || event.is_error(),
            read_closed: event.is_read_closed(),
        }
    }
}

/// Traces one reply handed to [`Connection::send`]: written at once, cut short, or queued behind
/// bytes already waiting.
fn trace_send(id: usize, written: usize, len: usize, queued_before: usize) {
    if queued_before > 0 {
        trace!("client {id} queued {len} bytes behind {queued_before}");
    } else if written < len {
        trace!(
            "client {id} write {written} of {len} (short): {} queued",
            len - written
        );
    } else {
        trace!("client {id} write {written} of {len}");
    }
}

/// An event's flags as the trace writes them.
fn describe(event: &Event) -> String {
    let mut flags = Vec::new();
    if event.is_readable() {
        flags.push("readable");
    }
    if event.is_writable() {
        flags.push("writable");
    }
    if event.is_read_closed() {
        flags.push("read-closed");
    }
    if event.is_write_closed() {
        flags.push("write-closed");
    }
    if event.is_error() {
        flags.push("error");
    }
    flags.join(" ")
}
