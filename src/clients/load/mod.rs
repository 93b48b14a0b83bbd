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
//!    With `-n N` the window ends once N measured messages have been sent (their replies are
//!    still waited for); with both `-d` and `-n`, whichever comes first.
//! 3. **Draining**: nothing new is sent; replies still owed are waited for, up to `--timeout`.
//!    What is still owed then is counted as timeouts (`tally.rs`): a run never forgets a message.
//!
//! A SIGINT (the caller sets [`Control::stop`]) ends the window at once and drains as above, so
//! the report still comes, marked `interrupted`.
//!
//! With `--reconnect-after N` each connection closes after N messages (their replies in) and
//! connects again while the traffic goes on: connects, and TLS handshakes, under load.
//!
//! With `--hold` nothing is sent at all: the connections are made and kept idle for `-d` seconds,
//! and the report says how many are still up (memory-per-connection tests).
//!
//! While the run goes on, each reactor hands every finished interval (`--interval`) to the
//! caller's thread, which adds the reactors' shares up (`timeline.rs`) and passes each whole
//! interval to the caller: the timeline file and the HdrHistogram log are written as the run goes.
//!
//! Reading order: `config.rs`, `message.rs` (what is sent, how replies are checked), `stamped.rs`
//! (a raw timestamp reply, in pieces), `pacing.rs`
//! (closed and open loop, coordinated omission), `connection.rs`, `tally.rs`, this file,
//! `limits.rs`, `report.rs`, `timeline.rs`, `hdr_log.rs`, `plot.rs`, `merge.rs`, `outputs.rs`,
//! `live.rs`; the
//! command line is `cli/load.rs` and `cli/report.rs`.
//!
//! Next: `config.rs`.
//!
//! ```
//! use echoloop::clients::load::{self, LoadConfig, Target};
//! use echoloop::{Address, Server, ServeConfig};
//!
//! let server = Server::bind(&ServeConfig::for_tests())?.spawn()?;
//! let mut config = LoadConfig::for_tests(Target::Stream(Address::Tcp(server.addr())));
//! config.duration = Some(std::time::Duration::from_millis(200));
//! let report = load::run(&config)?;
//! assert_eq!(report.mismatches, 0);
//! assert!(report.messages_received > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod connection;
mod hdr_log;
mod limits;
mod live;
mod merge;
mod message;
mod outputs;
mod pacing;
mod plot;
mod report;
mod stamped;
mod tally;
mod timeline;

pub use config::{DEFAULT_PERCENTILES, LoadConfig, ReplyKind, Target};
pub use hdr_log::{HdrLog, LoggedRun, read as read_hdr_log};
pub use limits::{local_port_range, parse_source_addrs, raise_open_file_limit};
pub use merge::{MergeError, merge_logs};
pub use message::{Message, Payloads};
pub use outputs::{OutputPaths, Outputs};
pub use pacing::{Pacing, Schedule};
pub use plot::write_plot;
pub use report::{
    ConfigSummary, ErrorCounts, FailureCounts, LoadReport, Percentiles, RunCounts,
    parse_percentiles, percentile_distribution,
};
pub use tally::Interval;
pub use timeline::{Timeline, TimelineRow};

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::net::alarm::{self, Alarm};
use connection::{Connection, Env, State};
use live::{Live, LiveLine};
use tally::Tally;
use timeline::IntervalMerger;

/// A connect not answered within this long is counted as timed out.
const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;
/// Connects in progress per reactor, at most (loopback backlogs overflow past a few thousand).
const MAX_CONNECTING: usize = 512;
/// Housekeeping (connect timeouts, UDP losses, the live counters) runs this often.
const TICK_NS: u64 = 100_000_000;
/// The reactor's read buffer.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// How late the kernel may wake a load reactor (its timer slack): `--rate` paces to this.
const TIMER_SLACK: Duration = Duration::from_micros(50);
/// The alarm's token: connections use their index, which never comes near it.
const ALARM: Token = Token(usize::MAX);

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

/// What the caller can do to a run while it goes on.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Set it (from a SIGINT handler) to end the run early: sending stops, replies in flight are
    /// waited for up to `--timeout`, and the report is marked `interrupted`.
    pub stop: Arc<AtomicBool>,
}

/// Runs the load described by `config` and reports what it found.
pub fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    run_with(config, &Control::default(), |_, _| {})
}

/// Runs the load, handing each finished interval (all reactors' shares added up) and its
/// timeline row to `on_interval` as the run goes on, on the caller's thread.
pub fn run_with(
    config: &LoadConfig,
    control: &Control,
    mut on_interval: impl FnMut(&Interval, &TimelineRow),
) -> Result<LoadReport, LoadError> {
    limits::check(config).map_err(LoadError::Limits)?;
    // One TLS config for the whole run: every reactor's connections share its session cache.
    #[cfg(feature = "tls")]
    let tls = match config.target.is_tls() {
        true => Some(config.tls.client_config().map_err(LoadError::Limits)?),
        false => None,
    };
    let reactors = config.reactors();
    let lives: Vec<Arc<Live>> = (0..reactors).map(|_| Arc::new(Live::default())).collect();
    let (intervals, handed_over) = mpsc::channel();
    let mut threads = Vec::new();
    let mut quota_given = 0;
    let mut connections_given = 0;
    for (r, live) in lives.iter().enumerate() {
        let config = config.clone();
        let live = Arc::clone(live);
        let ids: Vec<u32> = (r..config.connections)
            .step_by(reactors)
            .map(|i| i as u32)
            .collect();
        // `-n`: each reactor's share, in proportion to its connections, adding up to exactly N.
        connections_given += ids.len() as u64;
        let quota = config.messages.map(|n| {
            let upto = n * connections_given / config.connections.max(1) as u64;
            let share = upto - quota_given;
            quota_given = upto;
            share
        });
        let stop = Arc::clone(&control.stop);
        let intervals = intervals.clone();
        #[cfg(feature = "tls")]
        let tls = tls.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("echoloop-load-{r}"))
                .spawn(move || {
                    alarm::lower_timer_slack(TIMER_SLACK);
                    #[allow(unused_mut)] // mutated only with TLS
                    let mut reactor = ClientReactor::new(&config, ids, quota, live)?;
                    #[cfg(feature = "tls")]
                    {
                        reactor.env.tls = tls;
                    }
                    reactor.run(&stop, &intervals)
                })?,
        );
    }
    drop(intervals);
    let mut merger = IntervalMerger::new(reactors);
    let mut line = LiveLine::new(config);
    loop {
        match handed_over.recv_timeout(Duration::from_millis(50)) {
            Ok(interval) => merger.push(interval, &mut on_interval),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break, // every reactor has ended
        }
        line.tick(&lives);
    }
    line.finish();
    let mut tallies = Vec::new();
    for thread in threads {
        let tally = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a load reactor panicked")))?;
        tallies.push(tally);
    }
    merger.finish(&mut on_interval);
    Ok(LoadReport::new(config, tallies, merger.into_rows()))
}

/// Where a reactor is in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Traffic,
    Draining,
    Done,
}

/// Where finished intervals go: the caller's thread.
type IntervalSender = Sender<Interval>;

/// One client reactor: a poller and its share of the connections.
struct ClientReactor {
    config: LoadConfig,
    poll: Poll,
    alarm: Alarm,
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
    /// Whether the window ended at its configured end (not cut short by `-n` or SIGINT).
    ran_full_window: bool,
    /// When the current interval ends (ns on the reactor's clock).
    interval_end_ns: u64,
    next_tick_ns: u64,
    still_ready: Vec<usize>,
    live: Arc<Live>,
}

impl ClientReactor {
    fn new(
        config: &LoadConfig,
        ids: Vec<u32>,
        quota: Option<u64>,
        live: Arc<Live>,
    ) -> io::Result<Self> {
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
        let poll = Poll::new()?;
        let alarm = Alarm::new(poll.registry(), ALARM)?;
        let origin = Instant::now();
        Ok(ClientReactor {
            poll,
            alarm,
            connections,
            env: Env {
                origin,
                now_ns: 0,
                // Closed loop ramps up while connecting, when there is a warmup to hide it in;
                // otherwise every message sent is one the report counts.
                sending: !config.hold && config.rate.is_none() && !config.warmup.is_zero(),
                window_ns: (u64::MAX, u64::MAX),
                traffic_start_ns: 0,
                pacing,
                connections: count,
                payloads: config.payloads.clone(),
                timeout_ns: config.timeout.as_nanos() as u64,
                quota,
                pipeline: config.in_flight_limit(),
                framing: config.framing,
                reply: config.reply,
                read_buf: vec![0; READ_BUFFER_BYTES],
                scratch: Vec::new(),
                payload: Vec::new(),
                tally: Tally::default(),
                datagrams: None,
                target: config.target.clone(),
                reconnect_after: config.reconnect_after,
                #[cfg(feature = "tls")]
                tls: None,
            },
            phase: Phase::Connecting,
            origin,
            started: 0,
            connecting: 0,
            next_slot: 0,
            phase_end_ns: u64::MAX,
            ran_full_window: false,
            interval_end_ns: u64::MAX,
            next_tick_ns: TICK_NS,
            still_ready: Vec::new(),
            live,
            config: config.clone(),
        })
    }

    /// Runs the phases to the end. Each turn: start connects, wait, dispatch, then tidy up.
    fn run(mut self, stop: &AtomicBool, intervals: &IntervalSender) -> io::Result<Tally> {
        let mut events = Events::with_capacity(1024);
        while self.phase != Phase::Done {
            self.start_connections();
            let timeout = self.next_timeout()?;
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
                if event.token() == ALARM {
                    self.alarm.rang();
                } else {
                    self.drive(event.token().0);
                }
            }
            self.revisit_still_ready();
            self.release_due();
            self.tick();
            if stop.load(Ordering::Relaxed) {
                self.interrupt();
            }
            self.advance_phase();
            self.hand_over_intervals(intervals);
        }
        self.finish();
        self.hand_over_last_interval(intervals);
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
        // Connected, failed, or (`--reconnect-after`) connecting again.
        match (
            was_connecting,
            matches!(connection.state(), State::Connecting(_)),
        ) {
            (true, false) => self.connecting -= 1,
            (false, true) => self.connecting += 1,
            _ => {}
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

    /// How long poll may sleep: until the next due message, connect, phase end, interval end or
    /// tick. The alarm keeps the deadline to the microsecond (see `net/alarm`).
    fn next_timeout(&mut self) -> io::Result<Option<Duration>> {
        if !self.still_ready.is_empty() {
            return Ok(Some(Duration::ZERO));
        }
        let now = self.now_ns();
        let mut wake = self
            .next_tick_ns
            .min(self.phase_end_ns)
            .min(self.interval_end_ns);
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
        let deadline = self.origin + Duration::from_nanos(wake);
        self.alarm
            .set_precise(Some(deadline), self.origin + Duration::from_nanos(now))
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
        for (index, connection) in self.connections.iter_mut().enumerate() {
            match connection.state() {
                State::Connecting(since) if now.saturating_sub(since) > CONNECT_TIMEOUT_NS => {
                    connection.time_out_connect(&mut self.env, registry);
                    self.connecting -= 1;
                }
                State::Up if datagram => {
                    connection.expire_datagrams(&mut self.env, registry, Token(index));
                }
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

    /// SIGINT: the window ends now; what is in flight is waited for as after a normal end.
    fn interrupt(&mut self) {
        if self.env.tally.interrupted {
            return;
        }
        self.env.tally.interrupted = true;
        let now = self.env.now_ns;
        match self.phase {
            Phase::Connecting => {
                self.env.window_ns = (now, now);
                self.end_window(now);
            }
            Phase::Traffic => self.end_window(now),
            Phase::Draining | Phase::Done => {}
        }
    }

    /// Sending stops at `now`; replies still owed are waited for up to `--timeout`.
    fn end_window(&mut self, now: u64) {
        let (start, configured_end) = self.env.window_ns;
        self.ran_full_window = now >= configured_end;
        let end = now.min(configured_end).max(start);
        self.env.window_ns.1 = end;
        self.env.tally.window_secs = (end - start) as f64 / 1e9;
        if self.ran_full_window
            && let Some(duration) = self.config.duration
        {
            self.env.tally.window_secs = duration.as_secs_f64(); // exactly what was asked
        }
        self.env.sending = false;
        self.phase_end_ns = now + self.env.timeout_ns;
        self.phase = Phase::Draining;
    }

    /// Moves on when a phase is over.
    fn advance_phase(&mut self) {
        let now = self.env.now_ns;
        match self.phase {
            Phase::Connecting if self.started == self.connections.len() && self.connecting == 0 => {
                let config = &self.config;
                let start = now + config.warmup.as_nanos() as u64;
                let end = match config.duration {
                    Some(duration) => start.saturating_add(duration.as_nanos() as u64),
                    None => u64::MAX,
                };
                self.env.traffic_start_ns = now;
                self.env.window_ns = (start, end);
                self.env.sending = !config.hold;
                self.phase_end_ns = end;
                self.interval_end_ns = start.saturating_add(config.interval.as_nanos() as u64);
                self.env.tally.interval = tally::Interval::new(0, 0);
                self.phase = Phase::Traffic;
                // Every connection may send now (closed loop): without a ramp, none did yet.
                for index in 0..self.connections.len() {
                    let registry = self.poll.registry();
                    if self.connections[index].resume(&mut self.env, registry, Token(index)) {
                        self.still_ready.push(index);
                    }
                }
            }
            Phase::Traffic if now >= self.phase_end_ns => self.end_window(now),
            // `-n`: every message of this reactor's share is sent.
            Phase::Traffic if self.env.quota == Some(0) => self.end_window(now),
            Phase::Traffic if self.connections.iter().all(|c| c.state() == State::Closed) => {
                self.end_window(now); // nothing left to send on
            }
            // `-n` alone has no time limit: a run whose every connection waits past the timeout
            // for a server that stopped answering would never end. It ends; the owed are timeouts.
            Phase::Traffic
                if self.config.duration.is_none()
                    && self.connections.iter().all(|c| {
                        c.state() == State::Closed
                            || (c.state() == State::Up && c.is_stuck(&self.env))
                    }) =>
            {
                self.end_window(now);
            }
            Phase::Draining
                if now >= self.phase_end_ns || !self.connections.iter().any(Connection::owes) =>
            {
                if self.config.messages.is_some() && !self.ran_full_window {
                    // `-n`: the window lasted until the last reply came.
                    let start = self.env.window_ns.0;
                    self.env.tally.window_secs = now.saturating_sub(start) as f64 / 1e9;
                }
                self.phase = Phase::Done;
            }
            _ => {}
        }
    }

    /// Hands over every interval that has ended, except the last one of the window, which also
    /// takes the replies that come while draining (handed over at the very end).
    fn hand_over_intervals(&mut self, intervals: &IntervalSender) {
        let now = self.env.now_ns;
        let (start, end) = self.env.window_ns;
        let step = self.config.interval.as_nanos().max(1) as u64;
        while now >= self.interval_end_ns && self.interval_end_ns < end && self.phase != Phase::Done
        {
            let done = self.env.tally.take_interval(self.interval_end_ns - start);
            let _ = intervals.send(done);
            self.interval_end_ns = self.interval_end_ns.saturating_add(step);
        }
    }

    fn hand_over_last_interval(&mut self, intervals: &IntervalSender) {
        let (start, end) = self.env.window_ns;
        if start == u64::MAX {
            return; // never got past connecting: there is no window
        }
        let done = self
            .env
            .tally
            .take_interval(end.min(self.env.now_ns).saturating_sub(start));
        let _ = intervals.send(done);
    }

    /// Counts who is still up, gives up what is still owed, closes everything, publishes the
    /// last counters.
    fn finish(&mut self) {
        self.env.tally.connections_up = self.up();
        let registry = self.poll.registry();
        for connection in &mut self.connections {
            connection.close(&mut self.env, registry);
        }
        let up = self.env.tally.connections_up;
        self.live.publish(&self.env.tally, up);
    }
}
