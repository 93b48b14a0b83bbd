//! `echoloop load`: a load generator built like the server it tests.
//!
//! A load generator must never be the bottleneck, and the cheapest way to hold thousands of
//! connections is the server's own: a few single-threaded reactors (one per `--threads`), each
//! waiting on epoll for all of its connections, never a thread per connection. Connections are
//! dealt out round robin: connection `i` belongs to reactor `i mod threads`. Each reactor runs the
//! same loop as `server/reactor/mod.rs`: wait for readiness, dispatch, tidy up.
//!
//! A run has phases, per reactor:
//!
//! 1. **Connecting**: connects are started (all at once, or `--connect-rate` per second) and each
//!    ends as established, refused, or timed out after 5 s. In closed loop, established connections
//!    already send (a ramp): nothing is measured yet.
//! 2. **Traffic**: the first `--warmup` seconds are not measured; the next `-d` seconds are. A
//!    message is measured if it was due inside that window (see `pacing.rs`).
//! 3. **Draining**: nothing new is sent; replies still owed are waited for, up to a second.
//!
//! With `--hold` nothing is sent at all: the connections are made and kept idle for `-d` seconds,
//! and the report says how many are still up (memory-per-connection tests).
//!
//! Reading order: `config.rs`, `message.rs` (what is sent, how replies are checked), `pacing.rs`
//! (closed and open loop, coordinated omission), `connection.rs`, this file, `limits.rs`,
//! `report.rs`, `live.rs`; the command line is `cli/load.rs`.
//!
//! Next: `config.rs`.
//!
//! ```
//! use echoloop::clients::load::{self, LoadConfig, Target};
//! use echoloop::{Address, Server, ServeConfig};
//!
//! let server = Server::bind(&ServeConfig::for_tests())?.spawn()?;
//! let mut config = LoadConfig::for_tests(Target::Stream(Address::Tcp(server.addr())));
//! config.duration = std::time::Duration::from_millis(200);
//! let report = load::run(&config)?;
//! assert_eq!(report.mismatches, 0);
//! assert!(report.messages_received > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod connection;
mod limits;
mod live;
mod message;
mod pacing;
mod report;

pub use config::{LoadConfig, ReplyKind, Target};
pub use limits::{local_port_range, parse_source_addrs, raise_open_file_limit};
pub use message::Message;
pub use pacing::{Pacing, Schedule};
pub use report::{ConfigSummary, ErrorCounts, FailureCounts, LoadReport, Percentiles};

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use connection::{Connection, Env, State};
use live::Live;
use report::Tally;

/// A connect not answered within this long is counted as timed out.
const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;
/// Replies still owed when the window ends are waited for this long.
const DRAIN_NS: u64 = 1_000_000_000;
/// Connects in progress per reactor, at most (loopback backlogs overflow past a few thousand).
const MAX_CONNECTING: usize = 512;
/// Housekeeping (connect timeouts, UDP losses, the live counters) runs this often.
const TICK_NS: u64 = 100_000_000;
/// The reactor's read buffer.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The machine cannot support the run as asked (open files, local ports): a usage problem.
    #[error("{0}")]
    Limits(String),
    /// A poller or thread could not be created.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Runs the load described by `config` and reports what it found.
pub fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    limits::check(config).map_err(LoadError::Limits)?;
    let reactors = config.reactors();
    let lives: Vec<Arc<Live>> = (0..reactors).map(|_| Arc::new(Live::default())).collect();
    let mut threads = Vec::new();
    for (r, live) in lives.iter().enumerate() {
        let config = config.clone();
        let live = Arc::clone(live);
        let ids: Vec<u32> = (r..config.connections)
            .step_by(reactors)
            .map(|i| i as u32)
            .collect();
        threads.push(
            std::thread::Builder::new()
                .name(format!("echoloop-load-{r}"))
                .spawn(move || {
                    let result = ClientReactor::new(&config, ids, Arc::clone(&live))
                        .and_then(ClientReactor::run);
                    live.finish();
                    result
                })?,
        );
    }
    live::watch(config, &lives);
    let mut tallies = Vec::new();
    for thread in threads {
        let tally = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a load reactor panicked")))?;
        tallies.push(tally);
    }
    Ok(LoadReport::new(config, tallies))
}

/// Where a reactor is in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Traffic,
    Draining,
    Done,
}

/// One client reactor: a poller and its share of the connections.
struct ClientReactor {
    config: LoadConfig,
    poll: Poll,
    connections: Vec<Connection>,
    env: Env,
    phase: Phase,
    origin: Instant,
    /// Connections started so far (they start in order).
    started: usize,
    /// Connects in progress.
    connecting: usize,
    /// Open loop: the next slot of the schedule.
    next_slot: u64,
    /// End of the measurement window, then of the drain.
    phase_end_ns: u64,
    next_tick_ns: u64,
    still_ready: Vec<usize>,
    live: Arc<Live>,
}

impl ClientReactor {
    fn new(config: &LoadConfig, ids: Vec<u32>, live: Arc<Live>) -> io::Result<Self> {
        let count = ids.len();
        let connections = ids
            .into_iter()
            .enumerate()
            .map(|(index, id)| Connection::new(id, index))
            .collect();
        let pacing = Pacing::new(config.rate.map(|rate| {
            // This reactor's share of the total rate.
            rate * count as f64 / config.connections.max(1) as f64
        }));
        Ok(ClientReactor {
            poll: Poll::new()?,
            connections,
            env: Env {
                now_ns: 0,
                // Closed loop ramps up while connecting; open loop waits for its schedule.
                sending: !config.hold && config.rate.is_none(),
                window_ns: (u64::MAX, u64::MAX),
                traffic_start_ns: 0,
                pacing,
                connections: count,
                size: config.size,
                pipeline: config.pipeline.max(1),
                framing: config.framing,
                reply: config.reply,
                read_buf: vec![0; READ_BUFFER_BYTES],
                scratch: Vec::new(),
                payload: Vec::new(),
                tally: Tally::default(),
            },
            phase: Phase::Connecting,
            origin: Instant::now(),
            started: 0,
            connecting: 0,
            next_slot: 0,
            phase_end_ns: u64::MAX,
            next_tick_ns: TICK_NS,
            still_ready: Vec::new(),
            live,
            config: config.clone(),
        })
    }

    /// Runs the phases to the end. Each turn: start connects, wait, dispatch, then tidy up.
    fn run(mut self) -> io::Result<Tally> {
        let mut events = Events::with_capacity(1024);
        while self.phase != Phase::Done {
            self.start_connections();
            let timeout = self.next_timeout();
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => result?,
            }
            self.env.now_ns = self.now_ns();
            for event in events.iter() {
                log::trace!(
                    "load {:?} r={} w={}",
                    event.token(),
                    event.is_readable(),
                    event.is_writable()
                );
                self.drive(event.token().0);
            }
            self.revisit_still_ready();
            self.release_due();
            self.tick();
            self.advance_phase();
        }
        self.finish();
        Ok(self.env.tally)
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn drive(&mut self, index: usize) {
        let Some(connection) = self.connections.get_mut(index) else {
            return;
        };
        let was_connecting = matches!(connection.state(), State::Connecting(_));
        let registry = self.poll.registry();
        if connection.on_event(&mut self.env, registry, Token(index)) {
            self.still_ready.push(index);
        }
        if was_connecting && !matches!(connection.state(), State::Connecting(_)) {
            self.connecting -= 1;
        }
    }

    /// Connections that stopped at their read budget get another turn.
    fn revisit_still_ready(&mut self) {
        for index in std::mem::take(&mut self.still_ready) {
            self.drive(index);
        }
    }

    /// Starts the connects that the ramp and the in-progress cap allow.
    fn start_connections(&mut self) {
        let total = self.connections.len();
        if self.started == total {
            return;
        }
        let now = self.now_ns();
        self.env.now_ns = now;
        let allowed = match self.config.connect_rate {
            Some(rate) => {
                let share = rate / self.config.reactors() as f64;
                ((now as f64 / 1e9 * share) as usize + 1).min(total)
            }
            None => total,
        };
        let sources = &self.config.source_addrs;
        while self.started < allowed && self.connecting < MAX_CONNECTING {
            let index = self.started;
            let id = self.connections[index].id() as usize;
            let source = (!sources.is_empty()).then(|| sources[id % sources.len()]);
            let registry = self.poll.registry();
            self.connections[index].start(
                &self.config.target,
                source,
                &mut self.env,
                registry,
                Token(index),
            );
            if matches!(self.connections[index].state(), State::Connecting(_)) {
                self.connecting += 1;
            }
            self.started += 1;
        }
    }

    /// How long poll may sleep: until the next due message, connect, phase end or tick.
    fn next_timeout(&self) -> Option<Duration> {
        if !self.still_ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = self.now_ns();
        let mut wake = self.next_tick_ns.min(self.phase_end_ns);
        if let (Pacing::Open(schedule), Phase::Traffic) = (self.env.pacing, self.phase) {
            wake = wake.min(self.env.traffic_start_ns + schedule.due_at_ns(self.next_slot));
        }
        if self.started < self.connections.len() && self.connecting < MAX_CONNECTING {
            let next_connect = match self.config.connect_rate {
                Some(rate) => {
                    let share = rate / self.config.reactors() as f64;
                    (self.started as f64 / share * 1e9) as u64
                }
                None => now,
            };
            wake = wake.min(next_connect);
        }
        Some(Duration::from_nanos(wake.saturating_sub(now)))
    }

    /// Open loop: hands every slot now due to its connection.
    fn release_due(&mut self) {
        let Pacing::Open(schedule) = self.env.pacing else {
            return;
        };
        if self.phase != Phase::Traffic || self.connections.is_empty() {
            return;
        }
        let n = self.connections.len() as u64;
        let elapsed = self.env.now_ns.saturating_sub(self.env.traffic_start_ns);
        while schedule.due_at_ns(self.next_slot) <= elapsed {
            let index = (self.next_slot % n) as usize;
            let registry = self.poll.registry();
            self.connections[index].on_due(&mut self.env, registry, Token(index));
            self.next_slot += 1;
        }
    }

    /// Every [`TICK_NS`]: connect timeouts, lost datagrams, the live counters.
    fn tick(&mut self) {
        let now = self.env.now_ns;
        if now < self.next_tick_ns {
            return;
        }
        self.next_tick_ns = now + TICK_NS;
        let registry = self.poll.registry();
        let datagram = self.config.is_datagram();
        for connection in &mut self.connections {
            match connection.state() {
                State::Connecting(since) if now.saturating_sub(since) > CONNECT_TIMEOUT_NS => {
                    connection.time_out_connect(&mut self.env, registry);
                    self.connecting -= 1;
                }
                State::Up if datagram => connection.expire_datagrams(&mut self.env),
                _ => {}
            }
        }
        let up = self.up();
        self.live.publish(&self.env.tally, up);
    }

    fn up(&self) -> u64 {
        self.connections
            .iter()
            .filter(|c| c.state() == State::Up)
            .count() as u64
    }

    /// Moves on when a phase is over.
    fn advance_phase(&mut self) {
        let now = self.env.now_ns;
        match self.phase {
            Phase::Connecting if self.started == self.connections.len() && self.connecting == 0 => {
                let config = &self.config;
                let start = now + config.warmup.as_nanos() as u64;
                let end = start + config.duration.as_nanos() as u64;
                self.env.traffic_start_ns = now;
                self.env.window_ns = (start, end);
                self.env.sending = !config.hold;
                self.phase_end_ns = end;
                self.phase = Phase::Traffic;
                self.env.tally.window_secs = config.duration.as_secs_f64();
            }
            Phase::Traffic if now >= self.phase_end_ns => {
                self.env.sending = false;
                self.phase_end_ns = now + DRAIN_NS;
                self.phase = Phase::Draining;
            }
            Phase::Draining
                if now >= self.phase_end_ns
                    || self.connections.iter().all(|c| c.in_flight() == 0) =>
            {
                self.phase = Phase::Done;
            }
            _ => {}
        }
    }

    /// Counts who is still up, closes everything, publishes the last counters.
    fn finish(&mut self) {
        self.env.tally.connections_up = self.up();
        let up = self.env.tally.connections_up;
        self.live.publish(&self.env.tally, up);
        let registry = self.poll.registry();
        for connection in &mut self.connections {
            connection.close(registry);
        }
    }
}
