//! One client: its stream, its decoder, the bytes we owe it, and where it is in its life.
//!
//! A connection's life is a small state machine. The state alone decides what we want the kernel
//! to tell us about it ([`Connection::wanted`]), so interest is never tracked separately from the
//! state it follows:
//!
//! ```text
//!  accept
//!    │       queue over the limit
//!    ▼      ─────────────────────►
//!  Open                              Paused
//!    │      ◄─────────────────────     │
//!    │       queue at half or below    │
//!    │                                 │  peer FIN, protocol done (daytime, /quit), bad frame,
//!    ├─────────────────────────────────┤  idle timeout (Open), shutdown
//!    ▼                                 ▼
//!  Finishing(reason) ── queue written ──► Lingering ── peer FIN or linger deadline ──► Closed
//!    │                                    (our FIN sent,                                ▲
//!    │                                     input dropped)                               │
//!    └── queue written, and the peer had already sent FIN (PeerClosed) ──────────────────┤
//!                                                                                        │
//!  from any state: reset, IO error, dropped at the queue limit (chat), idle while not   │
//!  reading (Paused/Finishing), shutdown deadline ───────────────────────────────────────┘
//! ```
//!
//! `Closed` only marks the connection: the reactor frees it at the end of the turn.
//!
//! *Lingering* is the graceful close that serious servers do: closing a socket that still has
//! unread input makes the kernel send RST, and an RST can destroy replies still in flight to the
//! peer. So once everything is written we send FIN, read and drop whatever the peer still sends
//! until its own FIN (or a short deadline), and only then close. A peer that closed first (the
//! usual case) skips this: it will send nothing more.
//!
//! Next: `outbound.rs`, the bytes a connection owes its client.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use mio::Interest;

use crate::net::stream::Stream;
use crate::protocol::CloseReason;
use crate::protocol::framing::{Decoder, FramingKind};
use crate::server::outbound::OutboundQueue;

/// Where a connection is in its life (see the module docs for the diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading and writing as the protocol asks.
    Open,
    /// Its queue passed the limit: not reading until the queue drains below half of it.
    Paused,
    /// Reads no more; once its queue is written it is closed (or lingers) with this reason.
    Finishing(CloseReason),
    /// Our FIN is sent; input is read and dropped until the peer's FIN or `until`.
    Lingering {
        /// Why it is closing.
        reason: CloseReason,
        /// When we stop waiting for the peer's FIN.
        until: Instant,
    },
    /// Done: the reactor closes it at the end of the turn.
    Closed(CloseReason),
}

/// How long a lingering close waits for the peer's FIN.
pub const LINGER: Duration = Duration::from_secs(2);

/// One client of the reactor.
#[derive(Debug)]
pub struct Connection {
    /// The socket.
    pub stream: Stream,
    /// Cuts what the client sends into frames; holds only an unfinished frame.
    pub decoder: Decoder,
    /// Bytes the kernel has not taken yet.
    pub outbound: OutboundQueue,
    state: State,
    /// The interest the poller holds for this socket now.
    pub registered: Interest,
    /// The last readiness event said the peer's FIN is in: read to end-of-stream even after a
    /// short read (a FIN that came with the data raises no new edge).
    pub peer_fin_seen: bool,
    /// Last time bytes moved in either direction.
    pub last_active: Instant,
    /// When this connection was accepted.
    pub opened_at: Instant,
    /// Tells this connection apart from earlier ones that had the same slab slot (timer entries).
    pub serial: u64,
    /// The deadline of this connection's live entry in the timer heap, if it has one.
    pub timer_at: Option<Instant>,
    /// Bytes read from the client.
    pub bytes_in: u64,
    /// Bytes written to the client.
    pub bytes_out: u64,
    /// This client's share of the reactor's `queued_bytes` gauge, as last counted.
    pub queue_counted: usize,
}

impl Connection {
    /// A freshly accepted connection, registered for `READABLE`.
    pub fn new(
        stream: Stream,
        framing: FramingKind,
        max_frame: usize,
        now: Instant,
        serial: u64,
    ) -> Self {
        Connection {
            stream,
            decoder: Decoder::new(framing, max_frame),
            outbound: OutboundQueue::new(),
            state: State::Open,
            registered: Interest::READABLE,
            peer_fin_seen: false,
            last_active: now,
            opened_at: now,
            serial,
            timer_at: None,
            bytes_in: 0,
            bytes_out: 0,
            queue_counted: 0,
        }
    }

    /// Where it is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether input is wanted: new frames (open) or input to drop (lingering).
    pub fn is_reading(&self) -> bool {
        matches!(self.state, State::Open | State::Lingering { .. })
    }

    /// Whether it is marked for closing at the end of the turn.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// What we want the kernel to tell us, derived from the state. `None`: nothing (closed).
    pub fn wanted(&self) -> Option<Interest> {
        let write = !self.outbound.is_empty(); // only bytes the kernel already refused
        match (self.is_reading(), write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// When this connection next needs attention from the timers, if ever.
    pub fn deadline(&self, idle_timeout: Option<Duration>) -> Option<Instant> {
        match self.state {
            State::Lingering { until, .. } => Some(until),
            State::Closed(_) => None,
            _ => idle_timeout.map(|idle| self.last_active + idle),
        }
    }

    /// Sends `bytes`: straight to the kernel while nothing is queued (the usual case, no copy
    /// kept), into the queue otherwise. What the kernel refuses is queued, in order. Returns how
    /// many bytes reached the kernel now.
    pub fn send(&mut self, bytes: &[u8], now: Instant) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        if !self.outbound.is_empty() {
            self.outbound.push_copy(bytes);
            return Ok(0);
        }
        let written = loop {
            match self.stream.write(bytes) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.note_written(written, now);
        if written < bytes.len() {
            self.outbound.push_copy(&bytes[written..]);
        }
        Ok(written)
    }

    /// Records bytes that reached the kernel.
    pub fn note_written(&mut self, bytes: usize, now: Instant) {
        if bytes > 0 {
            self.bytes_out += bytes as u64;
            self.last_active = now;
        }
    }

    /// Records bytes read from the peer.
    pub fn note_read(&mut self, bytes: usize, now: Instant) {
        self.bytes_in += bytes as u64;
        self.last_active = now;
    }

    /// Queue over the limit: stop reading (backpressure).
    pub fn pause(&mut self) {
        if self.state == State::Open {
            self.state = State::Paused;
        }
    }

    /// Queue drained below half the limit: read again.
    pub fn resume(&mut self) {
        if self.state == State::Paused {
            self.state = State::Open;
        }
    }

    /// Read no more; close with `reason` once the queue is written. No effect if already ending.
    pub fn finish(&mut self, reason: CloseReason) {
        if matches!(self.state, State::Open | State::Paused) {
            self.state = State::Finishing(reason);
        }
    }

    /// Called once the queue is empty: a finishing connection closes, or sends FIN and lingers.
    pub fn finish_if_flushed(&mut self, now: Instant, linger_cap: Option<Instant>) {
        let State::Finishing(reason) = self.state else {
            return;
        };
        if !self.outbound.is_empty() {
            return;
        }
        if reason == CloseReason::PeerClosed || self.stream.shutdown_write().is_err() {
            self.state = State::Closed(reason);
            return;
        }
        let until = linger_cap.map_or(now + LINGER, |cap| cap.min(now + LINGER));
        self.state = State::Lingering { reason, until };
    }

    /// The peer's input has ended (a read returned 0).
    pub fn on_end_of_input(&mut self) {
        match self.state {
            State::Lingering { reason, .. } => self.state = State::Closed(reason),
            _ => self.finish(CloseReason::PeerClosed),
        }
    }

    /// Marks the connection for closing at the end of the turn (first reason wins).
    pub fn mark_closed(&mut self, reason: CloseReason) {
        if !self.is_closed() {
            self.state = State::Closed(reason);
        }
    }

    /// The reason it is closing, once it is closing.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Finishing(reason) | State::Closed(reason) => Some(reason),
            State::Lingering { reason, .. } => Some(reason),
            State::Open | State::Paused => None,
        }
    }
}

/// Interest as the trace writes it: `-`, `R`, `W`, `RW`.
pub fn interest_label(interest: Option<Interest>) -> &'static str {
    match interest {
        None => "-",
        Some(i) if i.is_readable() && i.is_writable() => "RW",
        Some(i) if i.is_readable() => "R",
        Some(_) => "W",
    }
}
