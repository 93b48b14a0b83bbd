//! One client's life, without its socket: events in, decisions out.
//!
//! A connection's life is a small state machine. It is *sans-IO* (the idea of quinn-proto and
//! smoltcp): it never touches a socket. The reactor does the IO, tells the machine what happened
//! (bytes read, bytes written, the peer's FIN, a protocol's wish to close, a deadline), and asks
//! it what to do next: [`Connection::settle`] returns a [`Step`] (pause, resume, drop, send FIN,
//! close) and [`Connection::wanted`] the interest to hold. So every transition is tested here with
//! plain values, and a property test drives random event sequences through it. The state alone
//! decides the interest, so interest is never tracked separately from the state it follows:
//!
//! ```text
//!  accept ──► Arriving (PROXY header, TLS handshake: see below) ── deadline, failure ──► Closed
//!    │            │ arrived
//!    │◄───────────┘
//!    │       queue over the limit
//!    ▼      ─────────────────────►
//!  Open                              Paused
//!    │      ◄─────────────────────     │
//!    │       queue at half or below    │
//!    │                                 │  peer FIN (or TLS close_notify), protocol done
//!    │                                 │  (daytime, /quit), bad frame, idle timeout (Open),
//!    ├─────────────────────────────────┤  shutdown
//!    ▼                                 ▼
//!  Finishing(reason) ── queue written ──► Lingering ── peer FIN or linger deadline ──► Closed
//!    │                                    (our FIN sent,                                ▲
//!    │                                     input dropped)                               │
//!    └── queue written, and the peer had already sent FIN (PeerClosed) ──────────────────┤
//!                                                                                        │
//!  from any state: reset, IO error, dropped at the queue limit (chat), idle while not   │
//!  reading (Paused/Finishing), shutdown deadline: `abort` ──────────────────────────────┘
//! ```
//!
//! `Closed` only marks the connection: the reactor frees it at the end of the turn.
//!
//! A connection from a load balancer (`--proxy-protocol`) or on a TLS listener starts one step
//! earlier, in `Arriving`: read, never answered, until its PROXY header is whole and its TLS
//! handshake done (then `Open`, and only then does the protocol hear of it), or closed at its
//! deadline, at a malformed header, a failed handshake or the peer's FIN. Only the handshake's
//! own messages are queued for it there, and it takes no part in chat.
//!
//! *Lingering* is the graceful close that serious servers do: closing a socket that still has
//! unread input makes the kernel send RST, and an RST can destroy replies still in flight to the
//! peer. So once everything is written we send FIN, read and drop whatever the peer still sends
//! until its own FIN (or a short deadline), and only then close. A peer that closed first (the
//! usual case) skips this: it will send nothing more.
//!
//! A protocol that produces as its client reads (chargen, a download) asks for a *refill*: the
//! reactor calls it again once the queue is empty. A connection that still owes a refill is not
//! finished even when its queue is: a client that sent its request and then FIN (`nc -N`) still
//! gets the whole file.
//!
//! Next: `server/rate.rs`, the frame rate a connection may be held to.

use std::time::{Duration, Instant};

use mio::Interest;

use crate::net::outbound::OutboundQueue;
use crate::net::registration;
use crate::protocol::framing::Decoder;
use crate::protocol::{CloseReason, Session, SlowReader};
use crate::server::rate::TokenBucket;

/// Where a connection is in its life (see the module docs for the diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started yet: its PROXY header (`reactor/proxied.rs`) or its TLS handshake
    /// (`reactor/tls.rs`) is still to come, until `until`; the protocol has not been told of it.
    Arriving {
        /// When it is closed if it has not arrived.
        until: Instant,
    },
    /// Reading and writing as the protocol asks.
    Open,
    /// Its queue passed the limit: not reading until the queue drains to half of it.
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

/// The limits a connection's decisions follow: the same for every client of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `--queue-limit`: above it, reading pauses (or the client is dropped).
    pub queue_limit: usize,
    /// What the protocol wants done with a client over the limit.
    pub slow_reader: SlowReader,
    /// `--idle-timeout`; `None`: never.
    pub idle_timeout: Option<Duration>,
}

/// Why a connection that is open is not being answered: each is a reason to keep its input
/// waiting (in [`Connection::held`], and in the kernel) rather than hand it to the protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    /// The protocol asked ([`crate::protocol::Replies::pause_input`]): work off the loop is under way.
    pub protocol: bool,
    /// The reactor is over `--max-memory` and this client holds much of it.
    pub memory: bool,
    /// Over its frame rate (`--chat-rate`) until this time.
    pub rate_until: Option<Instant>,
}

impl Holds {
    /// Whether anything holds the input back.
    pub fn any(&self) -> bool {
        self.protocol || self.memory || self.rate_until.is_some()
    }
}

/// What [`Connection::settle`] decided, for the reactor to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed that needs the reactor (beyond bringing interest in line).
    Steady,
    /// The queue passed the limit: reading stops.
    Paused,
    /// The queue drained to half the limit: reading goes on.
    Resumed,
    /// The queue passed the limit and the protocol drops slow readers: closed, queue discarded.
    Dropped,
    /// Everything owed is written: send FIN now; the connection lingers.
    SendFin,
    /// Closed: free it at the end of the turn.
    Close,
}

/// What a deadline found ([`Connection::expire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Something moved since: the real deadline is later (or there is none).
    NotYet(Option<Instant>),
    /// Open and idle: it is to finish (`IdleTimeout`), and the protocol may say why on the way
    /// out (`error: idle timeout`).
    Idle,
    /// Closed: a linger ran out, or a client that was not being read stayed silent.
    Closed,
    /// Its frame budget refilled: its held input may be answered again.
    Refilled,
}

/// One client of the reactor, without its socket.
#[derive(Debug)]
pub struct Connection {
    state: State,
    /// The last readiness event said the peer's FIN is in: read to end-of-stream even after a
    /// short read (a FIN that came with the data raises no new edge).
    peer_fin_seen: bool,
    /// The protocol asked to be called when the queue is next empty.
    refill: bool,
    /// Cuts what the client sends into frames; holds only an unfinished frame.
    pub decoder: Decoder,
    /// Bytes the kernel has not taken yet.
    pub outbound: OutboundQueue,
    /// The protocol's state for this client.
    pub session: Session,
    /// Last time bytes moved in either direction.
    last_active: Instant,
    /// When this connection was accepted.
    opened_at: Instant,
    /// Tells this connection apart from earlier ones that had the same slab slot (timer entries).
    pub serial: u64,
    /// The deadline of this connection's live entry in the timer heap, if it has one.
    pub timer_at: Option<Instant>,
    bytes_in: u64,
    bytes_out: u64,
    /// This client's share of the reactor's `queued_bytes` gauge, as last counted.
    pub queue_counted: usize,
    /// Input read from the socket but not yet given to the protocol: the rest of a read after
    /// answering stopped between frames (see [`Connection::may_answer`]). While it holds bytes
    /// the socket is not read, so it never holds more than one read.
    pub held: Vec<u8>,
    /// What keeps an open connection's input waiting, besides a full queue.
    pub holds: Holds,
    /// Its frame budget (`--chat-rate`), if its frames are rate-limited.
    pub frame_budget: Option<TokenBucket>,
    /// This client's share of the reactor's memory total (`--max-memory`), as last counted.
    pub memory_counted: usize,
    /// It is on the list of clients held back in the current memory episode.
    pub listed_in_memory_episode: bool,
}

impl Connection {
    /// A freshly accepted connection: open, nothing queued.
    pub fn new(decoder: Decoder, session: Session, now: Instant, serial: u64) -> Self {
        Connection {
            state: State::Open,
            peer_fin_seen: false,
            refill: false,
            decoder,
            outbound: OutboundQueue::new(),
            session,
            last_active: now,
            opened_at: now,
            serial,
            timer_at: None,
            bytes_in: 0,
            bytes_out: 0,
            queue_counted: 0,
            held: Vec::new(),
            holds: Holds::default(),
            frame_budget: None,
            memory_counted: 0,
            listed_in_memory_episode: false,
        }
    }

    /// A connection that must arrive (its PROXY header, its TLS handshake) by `until` before the
    /// protocol hears of it.
    pub fn arriving(mut self, until: Instant) -> Self {
        self.state = State::Arriving { until };
        self
    }

    /// Its PROXY header is read and its TLS handshake begins: it must be done by `until`. The
    /// header's timer entry is forgotten (skipped as stale when due) so that `sync` arms this one.
    pub fn arrive_by(&mut self, until: Instant) {
        if self.is_arriving() {
            self.state = State::Arriving { until };
            self.timer_at = None;
        }
    }

    /// Whether it has not arrived yet (its PROXY header or TLS handshake is still to come).
    pub fn is_arriving(&self) -> bool {
        matches!(self.state, State::Arriving { .. })
    }

    /// Whether it is finishing and the protocol has nothing more to say to it: no refill owed
    /// (the rest of a download), no work off the loop under way (an upload's `DONE` is still to
    /// come). What is queued is then the last of it: a FIN (or TLS `close_notify`) may follow.
    pub fn has_said_everything(&self) -> bool {
        matches!(self.state, State::Finishing(_)) && !self.owes_refill() && !self.holds.protocol
    }

    /// The protocol was told of it and gave it `session`: at accept, or once it has arrived
    /// (its PROXY header read and its client admitted, its TLS handshake done; then it opens,
    /// its idle time counted from `now`).
    pub fn start_session(&mut self, session: Session, now: Instant) {
        self.session = session;
        if self.is_arriving() {
            self.state = State::Open;
            self.last_active = now;
            // The arrival deadline may be later than the idle one that now applies: forget
            // its timer entry (it is skipped as stale when due) so that `sync` arms the new one.
            self.timer_at = None;
        }
    }

    // ----- what it is ------------------------------------------------------------------------

    /// Where it is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the socket should be read now: for new frames (open, nothing holding its input
    /// back, nothing held from the last read) or for input to drop (lingering).
    pub fn is_reading(&self) -> bool {
        match self.state {
            State::Open => self.held.is_empty() && !self.holds.any(),
            State::Lingering { .. } | State::Arriving { .. } => true,
            _ => false,
        }
    }

    /// Whether the protocol may be given another frame now: open (its queue under the limit:
    /// over it the state is `Paused`) and nothing holds its input back. The reactor asks this
    /// *between frames*, so a read full of requests stops as soon as one of them fills the queue.
    #[inline]
    pub fn may_answer(&self) -> bool {
        self.state == State::Open && !self.holds.any()
    }

    /// Whether the frame budget (`--chat-rate`) allows another frame now; if not, when it
    /// will. A connection without a budget always may.
    #[inline]
    pub fn frame_allowance(&mut self, now: Instant) -> Result<(), Instant> {
        match &mut self.frame_budget {
            None => Ok(()),
            Some(budget) => budget.check(now),
        }
    }

    /// A frame was given to the protocol: it costs one token of the frame budget, if any.
    #[inline]
    pub fn spend_frame_token(&mut self) {
        if let Some(budget) = &mut self.frame_budget {
            budget.spend();
        }
    }

    /// Memory this connection holds in its own buffers, for the per-reactor total: its queue
    /// (bytes shared with other queues are counted once, elsewhere), its held input, its
    /// unfinished frame.
    pub fn memory(&self) -> usize {
        self.outbound.owned_memory() + self.held.capacity() + self.decoder.buffered_capacity()
    }

    /// Whether its input is answered (not lingering: what comes then is dropped).
    pub fn is_answering(&self) -> bool {
        self.state == State::Open
    }

    /// Whether it is marked for closing at the end of the turn.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Whether bytes for it from other clients (a chat line) are still queued.
    pub fn accepts_shared(&self) -> bool {
        matches!(self.state, State::Open | State::Paused)
    }

    /// The reason it is closing, once it is closing.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Finishing(reason) | State::Closed(reason) => Some(reason),
            State::Lingering { reason, .. } => Some(reason),
            State::Arriving { .. } | State::Open | State::Paused => None,
        }
    }

    /// What we want the kernel to tell us, derived from the state alone. `None`: closed.
    #[inline]
    pub fn wanted(&self) -> Option<Interest> {
        if self.is_closed() {
            return None;
        }
        registration::interest(self.is_reading(), !self.outbound.is_empty())
    }

    /// Whether the peer's FIN was reported with the last event.
    pub fn peer_fin_seen(&self) -> bool {
        self.peer_fin_seen
    }

    /// Bytes read from the client and written to it so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.bytes_in, self.bytes_out)
    }

    /// When this connection was accepted.
    pub fn opened_at(&self) -> Instant {
        self.opened_at
    }

    // ----- events ----------------------------------------------------------------------------

    /// `bytes` were read from the client.
    pub fn on_read(&mut self, bytes: usize, now: Instant) {
        self.bytes_in += bytes as u64;
        self.last_active = now;
    }

    /// `bytes` reached the kernel.
    pub fn on_written(&mut self, bytes: usize, now: Instant) {
        if bytes > 0 {
            self.bytes_out += bytes as u64;
            self.last_active = now;
        }
    }

    /// A readiness event said the peer's FIN is in.
    pub fn on_peer_fin(&mut self) {
        self.peer_fin_seen = true;
    }

    /// The peer's input has ended (a read returned 0), and the protocol has heard of it.
    pub fn on_end_of_input(&mut self) {
        match self.state {
            State::Lingering { reason, .. } => self.state = State::Closed(reason),
            _ => self.finish(CloseReason::PeerClosed),
        }
    }

    /// The protocol asked to be called once the queue is empty.
    pub fn ask_refill(&mut self) {
        self.refill = true;
    }

    /// Drops a pending refill request: at the peer's FIN (the protocol asks again from
    /// `on_end_of_input` if it still owes a body), or after a refill that produced nothing.
    pub fn cancel_refill(&mut self) {
        self.refill = false;
    }

    /// Whether a refill is owed and may be made now: the queue is empty and the client can
    /// still be sent to (open, or half-closed by the peer). Taking it clears the request.
    pub fn take_refill(&mut self) -> bool {
        let due = self.owes_refill() && self.outbound.is_empty();
        if due {
            self.refill = false;
        }
        due
    }

    /// Whether the protocol still has more to say once the queue is empty.
    #[inline]
    pub fn owes_refill(&self) -> bool {
        self.refill
            && matches!(
                self.state,
                State::Open | State::Finishing(CloseReason::PeerClosed)
            )
    }

    /// Read no more; close with `reason` once the queue is written. No effect if already ending.
    pub fn finish(&mut self, reason: CloseReason) {
        if let State::Arriving { .. } = self.state {
            self.state = State::Closed(reason); // nothing was said to it: nothing to finish
            return;
        }
        if matches!(self.state, State::Open | State::Paused) {
            self.state = State::Finishing(reason);
            self.held = Vec::new(); // input not answered yet never will be
        }
    }

    /// Closes now: whatever is queued is dropped (returns how many bytes). A connection already
    /// closed keeps its first reason.
    pub fn abort(&mut self, reason: CloseReason) -> usize {
        let dropped = self.outbound.discard();
        self.held = Vec::new();
        if !self.is_closed() {
            self.state = State::Closed(reason);
        }
        dropped
    }

    /// Our FIN could not be sent (the socket is already broken): close with the reason it had.
    pub fn on_fin_failed(&mut self) {
        let reason = self.close_reason().unwrap_or(CloseReason::IoError);
        self.abort(reason);
    }

    /// After any change: applies the queue limit and moves a finished connection on.
    /// `linger_cap` bounds a linger that starts now (the shutdown deadline, when draining).
    #[inline]
    pub fn settle(&mut self, policy: &Policy, now: Instant, linger_cap: Option<Instant>) -> Step {
        let queued = self.outbound.footprint();
        match self.state {
            State::Closed(_) => Step::Close,
            // A client that would hold up everyone (chat) is dropped whatever it was doing,
            // even finishing: its queue could otherwise take as long as it likes to drain.
            _ if queued > policy.queue_limit && policy.slow_reader == SlowReader::Drop => {
                self.abort(CloseReason::QueueLimit);
                Step::Dropped
            }
            State::Open if queued > policy.queue_limit => {
                self.state = State::Paused;
                Step::Paused
            }
            State::Paused if queued <= policy.queue_limit / 2 => {
                self.state = State::Open;
                Step::Resumed
            }
            // Not while the protocol's work off the loop is under way: its answer (an upload's
            // `DONE`) is still to come, within the shutdown or linger deadline.
            State::Finishing(reason) if queued == 0 && self.has_said_everything() => {
                if reason == CloseReason::PeerClosed {
                    // The peer sent FIN first and has everything: no FIN dance needed.
                    self.state = State::Closed(reason);
                    return Step::Close;
                }
                let until = linger_cap.map_or(now + LINGER, |cap| cap.min(now + LINGER));
                self.state = State::Lingering { reason, until };
                Step::SendFin
            }
            _ => Step::Steady,
        }
    }

    /// When this connection next needs attention from the timers, if ever: the end of a linger,
    /// of a rate hold, or of its idle time.
    pub fn deadline(&self, policy: &Policy) -> Option<Instant> {
        match self.state {
            State::Lingering { until, .. } | State::Arriving { until } => Some(until),
            State::Closed(_) => None,
            _ => {
                let idle = policy.idle_timeout.map(|idle| self.last_active + idle);
                match (idle, self.holds.rate_until) {
                    (Some(idle), Some(rate)) => Some(idle.min(rate)),
                    (idle, rate) => idle.or(rate),
                }
            }
        }
    }

    /// A timer came due at `now`: lift a rate hold that ended, or expire the connection if its
    /// real deadline has passed.
    pub fn expire(&mut self, policy: &Policy, now: Instant) -> Expiry {
        if self.holds.rate_until.is_some_and(|until| until <= now) {
            self.holds.rate_until = None;
            return Expiry::Refilled;
        }
        match self.deadline(policy) {
            Some(due) if due > now => Expiry::NotYet(Some(due)),
            None => Expiry::NotYet(None),
            Some(_) => match self.state {
                State::Lingering { reason, .. } => {
                    self.state = State::Closed(reason);
                    Expiry::Closed
                }
                State::Open => Expiry::Idle,
                // Paused or finishing, and still nothing moved: the client stopped reading.
                _ => {
                    self.abort(CloseReason::IdleTimeout);
                    Expiry::Closed
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::framing::FramingKind;
    use proptest::prelude::*;

    const LIMIT: usize = 100;

    fn policy(slow_reader: SlowReader) -> Policy {
        Policy {
            queue_limit: LIMIT,
            slow_reader,
            idle_timeout: Some(Duration::from_secs(10)),
        }
    }

    fn open(now: Instant) -> Connection {
        Connection::new(Decoder::new(FramingKind::Raw, 64), Session::none(), now, 0)
    }

    fn queue(conn: &mut Connection, bytes: usize) {
        conn.outbound.push_copy(&vec![b'x'; bytes]);
    }

    /// Takes up to `room` bytes off the front of the queue, as a kernel with that much room would.
    fn write(conn: &mut Connection, room: usize, now: Instant) {
        let mut kernel = Room(room);
        let (_, written) = conn.outbound.flush_into(&mut kernel).unwrap();
        conn.on_written(written, now);
    }

    /// A socket with room for `.0` more bytes, then `WouldBlock`.
    struct Room(usize);

    impl std::io::Write for Room {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_open_connection_reads_and_writes_only_refused_bytes() {
        let now = Instant::now();
        let mut conn = open(now);
        assert_eq!(conn.wanted(), Some(Interest::READABLE));
        queue(&mut conn, 10);
        assert_eq!(conn.wanted(), Some(Interest::READABLE | Interest::WRITABLE));
        write(&mut conn, 10, now);
        assert_eq!(conn.wanted(), Some(Interest::READABLE));
        assert_eq!(conn.bytes(), (0, 10));
    }

    #[test]
    fn over_the_limit_reading_pauses_until_half_is_drained() {
        let now = Instant::now();
        let policy = policy(SlowReader::PauseReading);
        let mut conn = open(now);
        queue(&mut conn, LIMIT + 1);
        assert_eq!(conn.settle(&policy, now, None), Step::Paused);
        assert_eq!(conn.state(), State::Paused);
        assert_eq!(
            conn.wanted(),
            Some(Interest::WRITABLE),
            "not read while paused"
        );
        assert_eq!(
            conn.settle(&policy, now, None),
            Step::Steady,
            "counted once"
        );
        // The limit counts memory, not bytes: a chunk partly written still holds its buffer.
        write(&mut conn, LIMIT, now);
        assert_eq!(conn.outbound.len(), 1);
        assert!(conn.outbound.footprint() > LIMIT / 2);
        assert_eq!(conn.settle(&policy, now, None), Step::Steady);
        write(&mut conn, 1, now);
        assert_eq!(conn.settle(&policy, now, None), Step::Resumed);
        assert_eq!(conn.state(), State::Open);
    }

    #[test]
    fn the_limit_counts_what_small_pieces_really_cost() {
        let now = Instant::now();
        let policy = policy(SlowReader::Drop);
        let mut conn = open(now);
        let meter = crate::net::memory::MemoryMeter::new();
        let line = crate::net::memory::SharedBytes::new(std::rc::Rc::from(&b"[a] x\n"[..]), &meter);
        // Six bytes each: fifteen are 90 payload bytes, but far more memory.
        for _ in 0..15 {
            conn.outbound.push_shared(&line);
        }
        assert_eq!(conn.outbound.len(), 90);
        assert_eq!(conn.settle(&policy, now, None), Step::Dropped);
    }

    #[test]
    fn over_the_limit_a_chat_member_is_dropped() {
        let now = Instant::now();
        let mut conn = open(now);
        queue(&mut conn, LIMIT + 1);
        assert_eq!(
            conn.settle(&policy(SlowReader::Drop), now, None),
            Step::Dropped
        );
        assert_eq!(conn.state(), State::Closed(CloseReason::QueueLimit));
        assert!(conn.outbound.is_empty(), "the queue is dropped with it");
        assert_eq!(conn.wanted(), None);
    }

    #[test]
    fn a_chat_member_over_the_limit_is_dropped_even_while_finishing() {
        let now = Instant::now();
        let mut conn = open(now);
        queue(&mut conn, LIMIT + 1);
        conn.finish(CloseReason::Finished); // `/who` then `/quit` in one read
        assert_eq!(
            conn.settle(&policy(SlowReader::Drop), now, None),
            Step::Dropped
        );
        assert_eq!(conn.state(), State::Closed(CloseReason::QueueLimit));
        // A pausing protocol lets a finishing client's queue drain instead.
        let mut echo = open(now);
        queue(&mut echo, LIMIT + 1);
        echo.finish(CloseReason::Finished);
        let pause = policy(SlowReader::PauseReading);
        assert_eq!(echo.settle(&pause, now, None), Step::Steady);
        assert_eq!(echo.state(), State::Finishing(CloseReason::Finished));
    }

    #[test]
    fn finishing_waits_for_the_protocols_work_off_the_loop() {
        let now = Instant::now();
        let policy = policy(SlowReader::PauseReading);
        let mut conn = open(now);
        conn.holds.protocol = true; // an upload's fsync under way
        conn.finish(CloseReason::Shutdown);
        assert_eq!(conn.settle(&policy, now, None), Step::Steady, "no FIN yet");
        queue(&mut conn, 5); // its `DONE`
        conn.holds.protocol = false;
        write(&mut conn, 5, now);
        assert_eq!(conn.settle(&policy, now, None), Step::SendFin);
    }

    #[test]
    fn finishing_sends_fin_once_the_queue_is_written_then_lingers() {
        let now = Instant::now();
        let policy = policy(SlowReader::PauseReading);
        let mut conn = open(now);
        queue(&mut conn, 5);
        conn.finish(CloseReason::Finished);
        assert_eq!(conn.wanted(), Some(Interest::WRITABLE), "no more reading");
        assert_eq!(
            conn.settle(&policy, now, None),
            Step::Steady,
            "bytes still owed"
        );
        write(&mut conn, 5, now);
        assert_eq!(conn.settle(&policy, now, None), Step::SendFin);
        let until = now + LINGER;
        assert_eq!(
            conn.state(),
            State::Lingering {
                reason: CloseReason::Finished,
                until
            }
        );
        assert_eq!(
            conn.wanted(),
            Some(Interest::READABLE),
            "input is read and dropped"
        );
        assert!(!conn.is_answering());
        conn.on_end_of_input();
        assert_eq!(conn.state(), State::Closed(CloseReason::Finished));
        assert_eq!(conn.settle(&policy, now, None), Step::Close);
    }

    #[test]
    fn a_linger_started_while_draining_ends_by_the_shutdown_deadline() {
        let now = Instant::now();
        let mut conn = open(now);
        conn.finish(CloseReason::Shutdown);
        let cap = now + Duration::from_millis(300);
        let policy = policy(SlowReader::PauseReading);
        assert_eq!(conn.settle(&policy, now, Some(cap)), Step::SendFin);
        assert_eq!(conn.deadline(&policy), Some(cap));
    }

    #[test]
    fn a_peer_that_closed_first_is_closed_without_a_linger() {
        let now = Instant::now();
        let mut conn = open(now);
        conn.on_end_of_input();
        assert_eq!(conn.state(), State::Finishing(CloseReason::PeerClosed));
        assert_eq!(
            conn.settle(&policy(SlowReader::PauseReading), now, None),
            Step::Close
        );
        assert_eq!(conn.state(), State::Closed(CloseReason::PeerClosed));
    }

    #[test]
    fn a_refill_owed_keeps_a_half_closed_connection_alive() {
        let now = Instant::now();
        let policy = policy(SlowReader::PauseReading);
        let mut conn = open(now);
        conn.ask_refill();
        conn.cancel_refill(); // the peer's FIN drops the request ...
        conn.ask_refill(); // ... which the protocol makes again: it still owes a body
        conn.on_end_of_input();
        assert_eq!(
            conn.settle(&policy, now, None),
            Step::Steady,
            "not finished yet"
        );
        assert!(conn.take_refill(), "a half-closed client is still sent to");
        assert!(!conn.take_refill(), "one request, one call");
        assert_eq!(conn.settle(&policy, now, None), Step::Close);
    }

    #[test]
    fn a_refill_waits_for_an_empty_queue_and_an_open_connection() {
        let now = Instant::now();
        let mut conn = open(now);
        conn.ask_refill();
        queue(&mut conn, 1);
        assert!(!conn.take_refill(), "the queue is not empty");
        write(&mut conn, 1, now);
        conn.finish(CloseReason::Shutdown);
        assert!(
            !conn.take_refill(),
            "a connection closing for another reason gets no more"
        );
    }

    #[test]
    fn abort_drops_the_queue_and_the_first_close_reason_wins() {
        let now = Instant::now();
        let mut conn = open(now);
        queue(&mut conn, 7);
        assert_eq!(conn.abort(CloseReason::Reset), 7);
        assert_eq!(conn.abort(CloseReason::IoError), 0);
        assert_eq!(conn.state(), State::Closed(CloseReason::Reset));
        conn.finish(CloseReason::Finished);
        conn.on_end_of_input();
        assert_eq!(
            conn.state(),
            State::Closed(CloseReason::Reset),
            "closed is final"
        );
    }

    #[test]
    fn a_failed_fin_closes_with_the_reason_it_was_closing_for() {
        let now = Instant::now();
        let mut conn = open(now);
        conn.finish(CloseReason::Finished);
        conn.settle(&policy(SlowReader::PauseReading), now, None);
        conn.on_fin_failed();
        assert_eq!(conn.state(), State::Closed(CloseReason::Finished));
    }

    #[test]
    fn a_connection_awaiting_its_header_reads_and_is_closed_at_its_deadline() {
        let start = Instant::now();
        let policy = policy(SlowReader::PauseReading);
        let until = start + Duration::from_secs(5);
        let mut conn = open(start).arriving(until);
        assert!(conn.is_reading() && !conn.may_answer() && !conn.accepts_shared());
        assert_eq!(conn.wanted(), Some(Interest::READABLE));
        assert_eq!(conn.deadline(&policy), Some(until));
        conn.on_read(10, start + Duration::from_secs(1)); // bytes do not move the deadline
        assert_eq!(conn.expire(&policy, until), Expiry::Closed);
        assert_eq!(conn.state(), State::Closed(CloseReason::IdleTimeout));

        let mut fin = open(start).arriving(until);
        fin.on_end_of_input(); // gone before its header: closed at once, nothing to linger for
        assert_eq!(fin.state(), State::Closed(CloseReason::PeerClosed));

        let mut read = open(start).arriving(until);
        read.start_session(Session::none(), start);
        assert_eq!(read.state(), State::Open);
        assert_eq!(
            read.deadline(&policy),
            policy.idle_timeout.map(|idle| start + idle)
        );
    }

    #[test]
    fn deadlines_follow_activity_and_expire_by_state() {
        let start = Instant::now();
        let policy = policy(SlowReader::PauseReading);
        let idle = policy.idle_timeout.unwrap();
        let mut conn = open(start);
        assert_eq!(conn.deadline(&policy), Some(start + idle));
        let later = start + Duration::from_secs(3);
        conn.on_read(4, later);
        assert_eq!(
            conn.expire(&policy, start + idle),
            Expiry::NotYet(Some(later + idle))
        );
        assert_eq!(conn.expire(&policy, later + idle), Expiry::Idle);
        assert_eq!(
            conn.state(),
            State::Open,
            "the reactor lets the protocol speak first"
        );

        let mut paused = open(start);
        queue(&mut paused, LIMIT + 1);
        paused.settle(&policy, start, None);
        assert_eq!(paused.expire(&policy, start + idle), Expiry::Closed);
        assert_eq!(paused.state(), State::Closed(CloseReason::IdleTimeout));
        assert!(paused.outbound.is_empty());

        let mut lingering = open(start);
        lingering.finish(CloseReason::Finished);
        lingering.settle(&policy, start, None);
        assert_eq!(lingering.expire(&policy, start + LINGER), Expiry::Closed);
        assert_eq!(lingering.state(), State::Closed(CloseReason::Finished));

        let never = Policy {
            idle_timeout: None,
            ..policy
        };
        assert_eq!(open(start).expire(&never, later), Expiry::NotYet(None));
    }

    /// One thing that can happen to a connection, as the reactor would let it happen.
    #[derive(Debug, Clone)]
    enum Event {
        /// The socket is readable: a read of `n` bytes whose replies are `replies` bytes, all
        /// refused by the kernel (the worst case for the queue).
        Read {
            n: usize,
            replies: usize,
        },
        /// The socket is writable and the kernel takes up to this many bytes.
        Writable(usize),
        /// Bytes from another client (a chat line) arrive for this one. Only chat sends to
        /// others, and chat drops slow readers: with a pausing protocol nothing would bound
        /// them (the memory cap of the public-address work is what will).
        Shared(usize),
        EndOfInput,
        Finish,
        AskRefill,
        Refill(usize),
        Abort,
        Deadline(u64),
        FinFails,
        /// Answering stopped between frames: this many bytes of the read are held back.
        HoldRest(usize),
        /// The held bytes are answered (the reactor does so only while it may answer).
        AnswerHeld,
        /// The protocol pauses, or resumes, the client's input (work off the loop).
        ProtocolPause,
        ProtocolResume,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => (1usize..64, 0usize..80).prop_map(|(n, replies)| Event::Read { n, replies }),
            3 => (0usize..200).prop_map(Event::Writable),
            1 => (1usize..60).prop_map(Event::Shared),
            1 => Just(Event::EndOfInput),
            1 => Just(Event::Finish),
            1 => Just(Event::AskRefill),
            1 => (0usize..60).prop_map(Event::Refill),
            1 => Just(Event::Abort),
            1 => (0u64..20).prop_map(Event::Deadline),
            1 => Just(Event::FinFails),
            1 => (1usize..64).prop_map(Event::HoldRest),
            1 => Just(Event::AnswerHeld),
            1 => Just(Event::ProtocolPause),
            1 => Just(Event::ProtocolResume),
        ]
    }

    /// The most one read's replies may add (the generator's bound on `replies`).
    const MOST_REPLIES_PER_READ: usize = 80;

    proptest! {
        /// Whatever happens, in any order: no WRITABLE interest with an empty queue, no read
        /// while paused or while input is held back, held input dropped once the connection
        /// ends, closed is final, and the queue never holds more than the limit plus the
        /// replies to one read (the limit is applied after every read).
        #[test]
        fn random_events_keep_the_invariants(
            events in proptest::collection::vec(event(), 1..80),
            drop_slow in any::<bool>(),
        ) {
            let start = Instant::now();
            let policy = policy(if drop_slow { SlowReader::Drop } else { SlowReader::PauseReading });
            let mut conn = open(start);
            let mut now = start;
            let mut was_closed = false;
            for event in events {
                let wanted = conn.wanted();
                match event {
                    Event::Read { n, replies } => {
                        // The reactor reads only while it holds READABLE and the state reads.
                        if wanted.is_some_and(|i| i.is_readable()) && conn.is_reading() {
                            conn.on_read(n, now);
                            if conn.is_answering() {
                                queue(&mut conn, replies);
                            }
                        }
                    }
                    Event::Writable(room) => {
                        if wanted.is_some_and(|i| i.is_writable()) {
                            write(&mut conn, room, now);
                        }
                    }
                    Event::Shared(bytes) => {
                        if drop_slow && conn.accepts_shared() {
                            queue(&mut conn, bytes);
                        }
                    }
                    Event::EndOfInput => {
                        if conn.is_reading() {
                            conn.cancel_refill();
                            conn.on_end_of_input();
                        }
                    }
                    Event::Finish => conn.finish(CloseReason::Finished),
                    Event::AskRefill => {
                        if !conn.is_closed() {
                            conn.ask_refill();
                        }
                    }
                    Event::Refill(bytes) => {
                        if conn.take_refill() {
                            queue(&mut conn, bytes);
                        }
                    }
                    Event::Abort => {
                        conn.abort(CloseReason::Reset);
                    }
                    Event::Deadline(secs) => {
                        now += Duration::from_secs(secs);
                        if conn.expire(&policy, now) == Expiry::Idle {
                            conn.finish(CloseReason::IdleTimeout);
                        }
                    }
                    Event::FinFails => {
                        if matches!(conn.state(), State::Lingering { .. }) {
                            conn.on_fin_failed();
                        }
                    }
                    Event::HoldRest(n) => {
                        if conn.is_answering() && conn.held.is_empty() {
                            conn.held.extend(std::iter::repeat_n(b'x', n));
                        }
                    }
                    Event::AnswerHeld => {
                        if conn.may_answer() {
                            conn.held.clear();
                        }
                    }
                    Event::ProtocolPause => {
                        if conn.is_answering() {
                            conn.holds.protocol = true;
                        }
                    }
                    Event::ProtocolResume => conn.holds.protocol = false,
                }
                conn.settle(&policy, now, None);

                let wanted = conn.wanted();
                prop_assert!(
                    !(wanted.is_some_and(|i| i.is_writable()) && conn.outbound.is_empty()),
                    "WRITABLE with an empty queue in {:?}", conn.state()
                );
                if conn.state() == State::Paused {
                    prop_assert!(!wanted.is_some_and(|i| i.is_readable()), "read while paused");
                }
                if conn.state() == State::Open && (conn.holds.any() || !conn.held.is_empty()) {
                    prop_assert!(
                        !wanted.is_some_and(|i| i.is_readable()),
                        "read while input is held back"
                    );
                }
                if !conn.is_answering() {
                    prop_assert!(conn.held.is_empty() || conn.state() == State::Paused,
                        "held input outlives answering in {:?}", conn.state());
                }
                if was_closed {
                    prop_assert!(conn.is_closed(), "closed is final");
                    prop_assert_eq!(wanted, None);
                }
                was_closed = conn.is_closed();
                // A refill starts from an empty queue; reads are what the limit paces.
                prop_assert!(
                    conn.outbound.len() <= LIMIT + MOST_REPLIES_PER_READ,
                    "{} bytes queued", conn.outbound.len()
                );
            }
        }
    }
}
