//! One client connection of the load generator: its socket, what it has in flight, and the checks.
//!
//! A connection keeps only what it needs to check the replies still owed to it: a sequence number
//! (its next message), the send times of the messages in flight (at most `--pipeline`), for raw echo
//! how far into the oldest message's payload the stream has come, and for line and length framing a
//! [`Decoder`] that holds at most one unfinished reply. The bytes themselves are never stored: a
//! [`Message`] can be rebuilt from (connection, sequence number). Reading goes into the reactor's one
//! buffer; requests are built in the reactor's scratch buffer and written to the socket at once. Only
//! bytes the kernel refuses stay here (`unsent`), and only then is the socket registered for
//! `WRITABLE` (a connect in progress also waits for `WRITABLE`: that is how its end is reported).
//!
//! Replies are checked in order: TCP and Unix streams keep order, so the next reply belongs to the
//! oldest message in flight. In raw framing replies may be cut anywhere (the server answers each of
//! its reads), so the stream is checked byte by byte against the payloads sent. Raw timestamp puts
//! a stamp before each piece the server read, with one message in flight: [`StampedReply`]
//! (`stamped.rs`) follows its reply across reads. Over UDP a datagram
//! may be lost, or come late: a reply is matched by the sequence number its payload carries. A
//! reply to a later message than the oldest says the ones before it were lost, a message not
//! answered within `--timeout` is given up (both counted as `lost`), and a reply to a message
//! already given up is dropped: it was counted once, as lost, and it does not take the place of
//! the reply the oldest message still waits for.
//!
//! A reply is first decided in time or late (a late one is a timeout, or lost), and only a reply
//! counted as received can be a mismatch: so mismatches never exceed replies received. In raw
//! framing the first wrong byte is remembered and counted when the message's last byte arrives.
//!
//! Over TLS (`tls:HOST:PORT`) the socket is a [`TlsStream`] (`clients/tls.rs`), which reads and
//! writes plaintext like a socket. The connection stays *connecting* until its handshake is done
//! (the connect timeout covers both); how long the handshake took, and whether it resumed a
//! session, go to the tally, apart from the messages' latencies. A handshake that fails is a
//! failed connection (`tls`), never a quiet one. Two things differ from a plain stream: a short
//! read no longer says the socket is empty (a read of plaintext stops at the end of a TLS
//! record), so reads go on to `WouldBlock`; and records rustls holds for the kernel are one more
//! reason to wait for `WRITABLE`.
//!
//! With `--reconnect-after N` a connection sends N messages, waits for their replies, closes
//! and connects again (churn: connects and handshakes under load, and over TLS with
//! `--tls-resume`, resumed ones). Its sequence numbers go on across sockets, so every message
//! still has one place in the stream of the connection.
//!
//! Next: `tally.rs`, where every message ends up counted.

mod datagram;

pub use datagram::DatagramBatches;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::{TcpStream, UdpSocket, UnixStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::config::{ReplyKind, Target};
use super::message::{Message, Payloads, TIMESTAMP_PREFIX_LEN, preview};
use super::pacing::Pacing;
use super::stamped::{StampedReply, Verdict};
use super::tally::{ConnectFailure, ConnectionError, Tally};
use crate::clients::tls::TlsStream;
use crate::net::address::Address;
use crate::net::registration::{Registration, interest};
use crate::net::stream::Stream;
use crate::protocol::framing::{self, Decoder, FramingKind};

/// Reads per readiness event before the connection yields to the others (mio is edge-triggered,
/// so a connection cut short is revisited by the reactor).
const READS_PER_TURN: usize = 4;

/// Chargen (RFC 864): lines of 72 characters from a ring of the 95 printable ASCII characters,
/// line `k` starting at character `k mod 95`, each ended by `\r\n`. The standard's pattern, as
/// `protocol/chargen.rs` sends it.
const RING_LEN: usize = 95;
const LINE_CHARS: usize = 72;
const LINE_BYTES: usize = LINE_CHARS + 2;

/// Discard: bytes written per readiness event before the connection yields to the others.
const DISCARD_BYTES_PER_TURN: usize = 256 * 1024;
/// Discard: messages are written in batches of about this many bytes (there are no replies to
/// wait for, so `--pipeline` does not apply).
const DISCARD_WRITE_BYTES: usize = 16 * 1024;

/// The socket: a stream, TLS over TCP, or a connected UDP socket.
#[derive(Debug)]
enum Socket2 {
    Stream(Stream),
    Tls(Box<TlsStream>),
    Datagram(UdpSocket),
}

impl Socket2 {
    /// Reads a stream (plaintext, over TLS); `None` for a datagram socket.
    fn read_stream(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        match self {
            Socket2::Stream(s) => Some(s.read(buf)),
            Socket2::Tls(s) => Some(s.read(buf)),
            Socket2::Datagram(_) => None,
        }
    }

    /// Writes to a stream (plaintext, over TLS); `None` for a datagram socket.
    fn write_stream(&mut self, bytes: &[u8]) -> Option<io::Result<usize>> {
        match self {
            Socket2::Stream(s) => Some(s.write(bytes)),
            Socket2::Tls(s) => Some(s.write(bytes)),
            Socket2::Datagram(_) => None,
        }
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not yet started.
    Waiting,
    /// `connect` issued at this time (ns); waiting for the kernel's answer.
    Connecting(u64),
    /// Established: traffic flows.
    Up,
    /// Failed or ended; its socket is closed.
    Closed,
}

/// Times of one message in flight, in ns on the reactor's clock.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    sent_ns: u64,
    /// When it was due: the send time in closed loop, the scheduled time in open loop.
    due_ns: u64,
    /// Sent inside the measurement window.
    measured: bool,
}

/// What the reactor shares with its connections during one turn.
#[derive(Debug)]
pub struct Env {
    /// When the reactor started: the clock's zero.
    pub origin: std::time::Instant,
    /// The clock now, in ns since the reactor started (read once per turn).
    pub now_ns: u64,
    /// Whether new messages may be sent.
    pub sending: bool,
    /// Messages due in `[start, end)` are measured.
    pub window_ns: (u64, u64),
    /// When open-loop traffic started.
    pub traffic_start_ns: u64,
    /// Closed or open loop.
    pub pacing: Pacing,
    /// Connections in this reactor (open loop: round robin).
    pub connections: usize,
    /// What the messages carry.
    pub payloads: Payloads,
    /// A reply later than this after its send is a timeout (UDP: the datagram is lost).
    pub timeout_ns: u64,
    /// `-n`: measured messages this reactor may still send; `None`: no limit.
    pub quota: Option<u64>,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// How requests are framed.
    pub framing: FramingKind,
    /// What a correct reply is.
    pub reply: ReplyKind,
    /// The reactor's one read buffer.
    pub read_buf: Vec<u8>,
    /// Requests are framed here before they are written.
    pub scratch: Vec<u8>,
    /// One payload is built here before it is framed.
    pub payload: Vec<u8>,
    /// The counters.
    pub tally: Tally,
    /// UDP: the reactor's batches for `recvmmsg`/`sendmmsg`, made at the first use.
    pub datagrams: Option<Box<DatagramBatches>>,
    /// Where connections go (reconnects start again here).
    pub target: Target,
    /// `--reconnect-after`: messages per socket, after which it closes and connects again.
    pub reconnect_after: Option<u64>,
    /// TLS: the run's one client config (shared, so that its session cache is).
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    /// Global number, written into every payload.
    id: u32,
    /// Position in the reactor (open-loop round robin).
    index: usize,
    socket: Option<Socket2>,
    state: State,
    decoder: Option<Decoder>,
    /// Sequence number of the next message.
    next_seq: u64,
    /// Sequence number of the oldest message in flight.
    oldest_seq: u64,
    in_flight: VecDeque<InFlight>,
    /// Raw echo: payload bytes of the oldest message already received.
    raw_offset: usize,
    /// Raw timestamp: how far the reply to the message in flight has come.
    stamped: StampedReply,
    /// Raw echo: a byte of the oldest message was wrong. It holds the description of the first
    /// wrong piece while the tally has no first mismatch yet (else it is empty); counted as a
    /// mismatch once the message is complete and received in time.
    raw_wrong: Option<String>,
    /// Bytes the kernel refused, to write when the socket is writable.
    unsent: Vec<u8>,
    /// Discard: where each message queued but not yet written ends, in bytes queued since the
    /// start, whether it is measured, and its payload size. Written in full, it counts as sent.
    discard_ends: VecDeque<(u64, bool, usize)>,
    /// Discard: bytes queued and bytes written since the start.
    queued_bytes: u64,
    written_bytes: u64,
    /// Chargen: bytes of the pattern received so far (the next one's place in the pattern).
    chargen_offset: u64,
    /// Chargen: the line being received already differed from the pattern.
    chargen_wrong: bool,
    /// Open loop: messages due so far.
    due: u64,
    /// TLS: when the TCP connect ended and the handshake began (ns); `None` before.
    handshake_since_ns: Option<u64>,
    /// Bytes have come from the server on this socket since it was opened.
    heard_from_server: bool,
    /// The local address it connects from (`--source-addrs`), for reconnects.
    source: Option<IpAddr>,
    /// Messages sent on the current socket (`--reconnect-after`).
    sent_on_socket: u64,
    registration: Registration,
}

impl Connection {
    /// Connection `id` (global), at `index` in its reactor; not started yet.
    pub fn new(id: u32, index: usize) -> Self {
        Connection {
            id,
            index,
            socket: None,
            state: State::Waiting,
            decoder: None,
            next_seq: 0,
            oldest_seq: 0,
            in_flight: VecDeque::new(),
            raw_offset: 0,
            stamped: StampedReply::new(),
            raw_wrong: None,
            unsent: Vec::new(),
            discard_ends: VecDeque::new(),
            queued_bytes: 0,
            written_bytes: 0,
            chargen_offset: 0,
            chargen_wrong: false,
            due: 0,
            handshake_since_ns: None,
            heard_from_server: false,
            source: None,
            sent_on_socket: 0,
            registration: Registration::new(),
        }
    }

    /// Its global number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether something is still owed: replies to messages in flight, or (discard) bytes the
    /// kernel has not taken yet.
    pub fn owes(&self) -> bool {
        self.state == State::Up && (!self.in_flight.is_empty() || !self.discard_ends.is_empty())
    }

    /// Starts connecting to `target` (from `source`, if given). Connected UDP sockets are up at once.
    pub fn start(
        &mut self,
        target: &Target,
        source: Option<IpAddr>,
        env: &mut Env,
        registry: &Registry,
        token: Token,
    ) {
        self.source = source;
        let opened = match target {
            Target::Stream(Address::Tcp(addr)) => open_tcp(*addr, source).map(Socket2::Stream),
            Target::Stream(Address::Unix(path)) => {
                UnixStream::connect(path).map(|s| Socket2::Stream(Stream::Unix(s)))
            }
            Target::Stream(Address::Tls { addr, host }) => {
                open_tls(*addr, host, source, env).map(|s| Socket2::Tls(Box::new(s)))
            }
            Target::Datagram(addr) => datagram::open_udp(*addr, source).map(Socket2::Datagram),
        };
        let socket = match opened {
            Ok(socket) => socket,
            Err(e) => {
                log::debug!("connection {} failed: {e}", self.id);
                self.state = State::Closed;
                env.tally.connect_failed(classify_connect_error(&e));
                return;
            }
        };
        let datagram = matches!(socket, Socket2::Datagram(_));
        self.socket = Some(socket);
        if datagram {
            self.become_up(env);
        } else {
            self.state = State::Connecting(env.now_ns);
            if matches!(target, Target::Stream(_)) && env.framing != FramingKind::Raw {
                let limit = env.payloads.max_size() + TIMESTAMP_PREFIX_LEN + 64;
                self.decoder = Some(Decoder::new(env.framing, limit));
            }
        }
        self.update_interest(registry, token);
    }

    /// A readiness event: finishes a connect, reads replies, writes refused bytes, sends more.
    /// Returns `true` if it stopped at its read budget and should be visited again.
    pub fn on_event(&mut self, env: &mut Env, registry: &Registry, token: Token) -> bool {
        if let State::Connecting(_) = self.state {
            self.finish_connect(env);
        }
        if self.state != State::Up {
            self.update_interest(registry, token);
            return false;
        }
        self.flush(env);
        let still_ready = self.drain_reads(env);
        let more_to_write = self.fill(env);
        if self.is_used_up(env) {
            self.reconnect(env, registry, token);
            return false;
        }
        self.update_interest(registry, token);
        still_ready || more_to_write
    }

    /// `--reconnect-after`: this socket has carried its messages and has every reply, and the
    /// run still sends: time for a new one.
    fn is_used_up(&self, env: &Env) -> bool {
        self.state == State::Up
            && env.sending
            && env.quota != Some(0)
            && env
                .reconnect_after
                .is_some_and(|n| self.sent_on_socket >= n)
            && self.in_flight.is_empty()
            && self.unsent.is_empty()
    }

    /// Closes the socket (over TLS with close_notify) and connects again, as a new client would.
    fn reconnect(&mut self, env: &mut Env, registry: &Registry, token: Token) {
        self.drop_socket(registry);
        self.state = State::Waiting;
        self.handshake_since_ns = None;
        self.heard_from_server = false;
        self.sent_on_socket = 0;
        self.decoder = None; // `start` makes a new one: nothing of the old stream is owed
        let target = env.target.clone();
        self.start(&target, self.source, env, registry, token);
    }

    /// Sends what the pacing allows now (closed loop: up to the pipeline; open loop: what is due).
    pub fn on_due(&mut self, env: &mut Env, registry: &Registry, token: Token) {
        self.due += 1;
        if self.state == State::Up {
            self.fill(env);
            self.update_interest(registry, token);
        }
    }

    /// Sending is allowed again (traffic starts): sends what the pacing allows now. Returns
    /// `true` if it stopped at its budget with more to send (discard): visit it again.
    pub fn resume(&mut self, env: &mut Env, registry: &Registry, token: Token) -> bool {
        if self.state != State::Up {
            return false;
        }
        let more = self.fill(env);
        self.update_interest(registry, token);
        more
    }

    /// Gives up a connect that took too long.
    pub fn time_out_connect(&mut self, env: &mut Env, registry: &Registry) {
        self.drop_socket(registry);
        self.state = State::Closed;
        env.tally.connect_failed(ConnectFailure::TimedOut);
    }

    /// Whether it can make no progress: its pipeline is full and the oldest message has waited
    /// longer than the timeout (the server stopped answering it).
    /// (Never over UDP: there the oldest is given up as lost, which frees its place.)
    pub fn is_stuck(&self, env: &Env) -> bool {
        !matches!(self.socket, Some(Socket2::Datagram(_)))
            && self.in_flight.len() >= env.pipeline
            && self
                .in_flight
                .front()
                .is_some_and(|m| env.now_ns.saturating_sub(m.sent_ns) > env.timeout_ns)
    }

    /// The run is over: whatever is still owed is counted (timeouts; UDP: lost), and the socket
    /// is closed.
    pub fn close(&mut self, env: &mut Env, registry: &Registry) {
        self.give_up_owed(env);
        self.drop_socket(registry);
        self.state = State::Closed;
    }

    /// Messages in flight will never be answered now: timeouts (UDP: lost).
    fn give_up_owed(&mut self, env: &mut Env) {
        let owed = self.in_flight.iter().filter(|m| m.measured).count() as u64;
        if matches!(self.socket, Some(Socket2::Datagram(_))) {
            env.tally.lost(owed);
        } else {
            env.tally.timed_out(owed);
        }
        self.oldest_seq += self.in_flight.len() as u64;
        self.in_flight.clear();
        self.stamped = StampedReply::new(); // what came of an unfinished reply answers nothing now
    }

    fn finish_connect(&mut self, env: &mut Env) {
        if self.handshake_since_ns.is_some() {
            return self.continue_handshake(env);
        }
        let result = match &self.socket {
            Some(Socket2::Stream(stream)) => connect_result(stream),
            Some(Socket2::Tls(tls)) => connect_result(tls.socket()),
            Some(Socket2::Datagram(_)) | None => return,
        };
        match result {
            Ok(()) if matches!(self.socket, Some(Socket2::Tls(_))) => {
                // Read now, not at the turn's start: the time this connection waited behind
                // others in the turn is not its handshake's.
                self.handshake_since_ns = Some(env.origin.elapsed().as_nanos() as u64);
                self.continue_handshake(env);
            }
            Ok(()) => self.become_up(env),
            // A wakeup before the handshake is done: keep waiting.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => {
                log::debug!("connection {} failed: {e}", self.id);
                self.socket = None; // closing the descriptor removes it from epoll
                self.registration.forget();
                self.state = State::Closed;
                env.tally.connect_failed(classify_connect_error(&e));
            }
        }
    }

    /// TLS: moves the handshake on; once done, counts it and the connection is up. A failed
    /// handshake is a failed connection (`tls`), the first one's reason kept for the report.
    fn continue_handshake(&mut self, env: &mut Env) {
        let (Some(Socket2::Tls(tls)), Some(since)) = (&mut self.socket, self.handshake_since_ns)
        else {
            return;
        };
        match tls.handshake() {
            Ok(()) if tls.is_handshaking() => {}
            Ok(()) => {
                let resumed = tls.is_resumed();
                // Read now too: the client's own last step (checking the chain, its Finished)
                // is part of the handshake.
                let done = env.origin.elapsed().as_nanos() as u64;
                env.tally.handshake(done.saturating_sub(since), resumed);
                self.become_up(env);
            }
            Err(e) => {
                log::debug!("connection {}: TLS handshake failed: {e}", self.id);
                self.socket = None; // closing the descriptor removes it from epoll
                self.registration.forget();
                self.state = State::Closed;
                env.tally
                    .handshake_failed(|| crate::clients::interactive::describe(&e));
            }
        }
    }

    /// TLS 1.3: the server refused the handshake after our side of it was done (its answer to
    /// our certificate, or to its absence, comes with our first read). A failed handshake, not
    /// an error on an established connection: the connection is taken back from the ones
    /// established (the handshake's time stays among the times).
    fn refused_after_handshake(&mut self, env: &mut Env, e: &io::Error) {
        log::debug!("connection {}: TLS handshake refused: {e}", self.id);
        if self.state == State::Up {
            env.tally.connections_ok = env.tally.connections_ok.saturating_sub(1);
            self.state = State::Closed; // so that `end` counts no error
        }
        env.tally
            .handshake_failed(|| crate::clients::interactive::describe(e));
        self.end(env, ConnectionError::Other);
    }

    fn become_up(&mut self, env: &mut Env) {
        self.state = State::Up;
        env.tally.connections_ok += 1;
        self.fill(env);
    }

    /// Reads until the kernel has nothing more or the budget is spent; checks every reply.
    fn drain_reads(&mut self, env: &mut Env) -> bool {
        if matches!(self.socket, Some(Socket2::Datagram(_))) {
            return self.drain_datagrams(env);
        }
        let mut buf = std::mem::take(&mut env.read_buf);
        let mut still_ready = false;
        // Over TLS a short read of plaintext says nothing of the socket: read to `WouldBlock`.
        let tls = matches!(self.socket, Some(Socket2::Tls(_)));
        for round in 0..READS_PER_TURN {
            let Some(result) = self.socket.as_mut().and_then(|s| s.read_stream(&mut buf)) else {
                break;
            };
            match result {
                Ok(0) => {
                    self.end(env, ConnectionError::ClosedByServer);
                    break;
                }
                Ok(n) => {
                    self.heard_from_server = true;
                    self.on_bytes(&buf[..n], env);
                    // A stream read that did not fill the buffer emptied the socket: no need
                    // to ask again for `WouldBlock`.
                    if n < buf.len() && !tls {
                        break;
                    }
                    still_ready = round + 1 == READS_PER_TURN;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if !self.heard_from_server && crate::clients::tls::is_alert(&e) => {
                    self.refused_after_handshake(env, &e);
                    break;
                }
                Err(e) => {
                    self.end(env, classify_error(&e));
                    break;
                }
            }
        }
        env.read_buf = buf;
        still_ready && self.state == State::Up
    }

    /// Bytes (or one datagram) from the server.
    fn on_bytes(&mut self, bytes: &[u8], env: &mut Env) {
        if env.reply == ReplyKind::Chargen {
            self.on_chargen(bytes, env);
        } else if env.reply == ReplyKind::Discard {
            env.tally.error(ConnectionError::Unexpected);
        } else if matches!(self.socket, Some(Socket2::Datagram(_))) {
            self.on_datagram(bytes, env);
        } else if let Some(mut decoder) = self.decoder.take() {
            let mut input = bytes;
            loop {
                match decoder.next_frame(&mut input) {
                    Ok(Some(frame)) => self.on_reply(frame.payload, env),
                    Ok(None) => break,
                    Err(e) => {
                        if env.framing == FramingKind::Length {
                            log::debug!("connection {}: a reply broke the framing: {e}", self.id);
                            self.end(env, ConnectionError::BrokenFraming); // the stream is lost
                            return;
                        }
                        // A line too long: it is still one (wrong) reply, to the oldest message.
                        let id = self.id;
                        if self.answered(env, 0) {
                            env.tally.mismatch(|| {
                                format!("connection {id}: a reply broke the framing: {e}")
                            });
                        }
                    }
                }
            }
            self.decoder = Some(decoder);
        } else if env.reply == ReplyKind::Timestamp {
            self.on_stamped_stream(bytes, env);
        } else {
            self.on_raw_stream(bytes, env);
        }
    }

    /// Raw timestamp: the reply to the one message in flight, in stamped pieces (`stamped.rs`).
    /// A wrong reply's length cannot be known: the rest of the read that showed it wrong is taken
    /// to be part of it.
    fn on_stamped_stream(&mut self, read: &[u8], env: &mut Env) {
        let payloads = env.payloads.clone();
        let mut bytes = read;
        while !bytes.is_empty() {
            if self.in_flight.is_empty() {
                return self.unexpected(bytes, env);
            }
            let (seq, message) = (self.oldest_seq, payloads.message(self.id, self.oldest_seq));
            match self.stamped.feed(&message, &mut bytes) {
                Verdict::Unfinished => return,
                Verdict::Right { pieces } => {
                    if pieces > 1 {
                        log::trace!("connection {}: reply {seq} in {pieces} pieces", self.id);
                    }
                    self.answered(env, message.size());
                }
                Verdict::Wrong => {
                    if self.answered(env, message.size()) {
                        self.count_mismatch(seq, &message, read, env);
                    }
                    return;
                }
            }
        }
    }

    /// Bytes came with no message in flight to account for them: a server that talks unasked.
    fn unexpected(&self, bytes: &[u8], env: &mut Env) {
        log::debug!(
            "connection {}: bytes with nothing in flight: {}",
            self.id,
            preview(bytes)
        );
        env.tally.error(ConnectionError::Unexpected);
    }

    /// Raw echo: the stream must be the payloads sent, in order, however it is cut.
    fn on_raw_stream(&mut self, mut bytes: &[u8], env: &mut Env) {
        let payloads = env.payloads.clone();
        while !bytes.is_empty() {
            let Some(oldest) = self.in_flight.front() else {
                return self.unexpected(bytes, env);
            };
            let measured = oldest.measured;
            let message = payloads.message(self.id, self.oldest_seq);
            let size = message.size();
            let take = (size - self.raw_offset).min(bytes.len());
            let (piece, rest) = bytes.split_at(take);
            if self.raw_wrong.is_none() && !message.matches_at(self.raw_offset, piece) {
                let (id, seq, at) = (self.id, self.oldest_seq, self.raw_offset);
                let described = measured && env.tally.first_mismatch.is_none();
                self.raw_wrong = Some(if described {
                    format!(
                        "connection {id} message {seq}: at byte {at} expected {} got {}",
                        preview(&message.to_text().as_bytes()[at..at + take]),
                        preview(piece)
                    )
                } else {
                    String::new()
                });
            }
            self.raw_offset += take;
            bytes = rest;
            if self.raw_offset == size {
                self.raw_offset = 0;
                let wrong = self.raw_wrong.take();
                if self.answered(env, size)
                    && let Some(description) = wrong
                {
                    env.tally.mismatch(|| description);
                }
            }
        }
    }

    /// Chargen: every byte must continue the RFC 864 pattern; each whole line counts as one
    /// reply (measured if it arrived inside the window), and a wrong line as one mismatch.
    fn on_chargen(&mut self, bytes: &[u8], env: &mut Env) {
        let measured = (env.window_ns.0..env.window_ns.1).contains(&env.now_ns);
        for &byte in bytes {
            let line = self.chargen_offset / LINE_BYTES as u64;
            let column = (self.chargen_offset % LINE_BYTES as u64) as usize;
            let expected = match column {
                c if c < LINE_CHARS => b' ' + ((line as usize + c) % RING_LEN) as u8,
                c if c == LINE_CHARS => b'\r',
                _ => b'\n',
            };
            self.chargen_wrong |= byte != expected;
            self.chargen_offset += 1;
            if column + 1 == LINE_BYTES {
                env.tally.reply(measured, LINE_BYTES, 0, None);
                if measured && self.chargen_wrong {
                    let id = self.id;
                    env.tally.mismatch(|| {
                        format!("connection {id}: chargen line {line} is not the pattern")
                    });
                }
                self.chargen_wrong = false;
            }
        }
    }

    /// One whole reply (a frame): it answers the oldest message in flight.
    fn on_reply(&mut self, reply: &[u8], env: &mut Env) {
        if self.in_flight.is_empty() {
            log::debug!(
                "connection {}: reply with nothing in flight: {}",
                self.id,
                preview(reply)
            );
            env.tally.error(ConnectionError::Unexpected);
            return;
        }
        let payloads = env.payloads.clone();
        let (seq, message) = (self.oldest_seq, payloads.message(self.id, self.oldest_seq));
        let correct = is_correct(env.reply, &message, reply);
        if self.answered(env, message.size()) && !correct {
            self.count_mismatch(seq, &message, reply, env);
        }
    }

    /// Counts a wrong reply to message `seq`, one that counted as received.
    fn count_mismatch(&self, seq: u64, expected: &Message, got: &[u8], env: &mut Env) {
        let id = self.id;
        let kind = env.reply;
        env.tally.mismatch(|| {
            format!(
                "connection {id} message {seq}: expected {}{} got {}",
                if kind == ReplyKind::Timestamp {
                    "[<ctime>] "
                } else {
                    ""
                },
                preview(expected.to_text().as_bytes()),
                preview(got)
            )
        });
    }

    /// The oldest message in flight has its reply (`bytes` of payload): record its latency, free
    /// its place. A reply later than the timeout is counted as a timeout (UDP: lost), not as
    /// received. Returns whether it counted as a measured reply received: only such a reply can
    /// be counted a mismatch.
    fn answered(&mut self, env: &mut Env, bytes: usize) -> bool {
        let Some(done) = self.in_flight.pop_front() else {
            return false;
        };
        self.oldest_seq += 1;
        let now = env.now_ns;
        if now.saturating_sub(done.sent_ns) > env.timeout_ns {
            if matches!(self.socket, Some(Socket2::Datagram(_))) {
                env.tally.lost(u64::from(done.measured));
            } else {
                env.tally.timed_out(u64::from(done.measured));
            }
            return false;
        }
        let uncorrected =
            matches!(env.pacing, Pacing::Open(_)).then(|| now.saturating_sub(done.sent_ns));
        env.tally.reply(
            done.measured,
            bytes,
            now.saturating_sub(done.due_ns),
            uncorrected,
        );
        done.measured
    }

    /// When the next message (`self.next_seq`) is due, or `None` if it is not due yet (open loop).
    fn next_due_ns(&self, env: &Env) -> Option<u64> {
        match env.pacing {
            Pacing::Closed => Some(env.now_ns),
            Pacing::Open(_) if self.due <= self.next_seq => None,
            Pacing::Open(schedule) => Some(
                env.traffic_start_ns
                    + schedule.message_due_at_ns(self.index, env.connections, self.next_seq),
            ),
        }
    }

    /// Whether a message due at `due_ns` is measured, and whether `-n` still allows it (taking
    /// its place in the quota if so).
    fn admit(env: &mut Env, due_ns: u64) -> Option<bool> {
        let measured = (env.window_ns.0..env.window_ns.1).contains(&due_ns);
        if measured && let Some(left) = &mut env.quota {
            if *left == 0 {
                return None;
            }
            *left -= 1;
        }
        Some(measured)
    }

    /// Sends what the pacing and the pipeline allow. Returns `true` if it stopped at its
    /// per-turn budget with more to send (discard) and should be visited again.
    fn fill(&mut self, env: &mut Env) -> bool {
        if self.state != State::Up || !env.sending {
            return false;
        }
        match env.reply {
            ReplyKind::Chargen => false,
            ReplyKind::Discard => self.fill_discard(env),
            ReplyKind::Echo | ReplyKind::Timestamp
                if matches!(self.socket, Some(Socket2::Datagram(_))) =>
            {
                self.fill_datagrams(env);
                false
            }
            ReplyKind::Echo | ReplyKind::Timestamp => {
                self.fill_requests(env);
                false
            }
        }
    }

    /// Discard: queues messages while the kernel takes them all, up to a budget per turn. There
    /// are no replies, so there is nothing in flight: a message counts as sent once the kernel
    /// has taken its last byte.
    fn fill_discard(&mut self, env: &mut Env) -> bool {
        let payloads = env.payloads.clone();
        let mut budget = DISCARD_BYTES_PER_TURN;
        while self.unsent.is_empty() && budget > 0 && self.state == State::Up {
            env.scratch.clear();
            // As many whole messages as fit in one write of about DISCARD_WRITE_BYTES.
            while env.scratch.len() < DISCARD_WRITE_BYTES {
                let Some(due_ns) = self.next_due_ns(env) else {
                    break;
                };
                let Some(measured) = Self::admit(env, due_ns) else {
                    break;
                };
                let message = payloads.message(self.id, self.next_seq);
                env.payload.clear();
                message.write_payload(&mut env.payload);
                let before = env.scratch.len();
                framing::encode(env.framing, &[&env.payload], &mut env.scratch);
                self.queued_bytes += (env.scratch.len() - before) as u64;
                self.discard_ends
                    .push_back((self.queued_bytes, measured, message.size()));
                self.next_seq += 1;
            }
            if env.scratch.is_empty() {
                return false;
            }
            let scratch = std::mem::take(&mut env.scratch);
            let written = self.write_some(&scratch, env);
            self.unsent.extend_from_slice(&scratch[written..]);
            budget = budget.saturating_sub(scratch.len());
            env.scratch = scratch;
        }
        budget == 0 && self.unsent.is_empty()
    }

    /// Discard: `n` more bytes were written; messages now written in full count as sent.
    fn discard_written(&mut self, n: usize, env: &mut Env) {
        self.written_bytes += n as u64;
        while let Some(&(end, measured, size)) = self.discard_ends.front()
            && end <= self.written_bytes
        {
            self.discard_ends.pop_front();
            env.tally.sent(measured, size);
        }
    }

    /// Echo and timestamp: sends requests while the pipeline has room and the pacing allows.
    fn fill_requests(&mut self, env: &mut Env) {
        let payloads = env.payloads.clone();
        env.scratch.clear();
        let per_socket = env.reconnect_after.unwrap_or(u64::MAX);
        while self.in_flight.len() < env.pipeline && self.sent_on_socket < per_socket {
            let Some(due_ns) = self.next_due_ns(env) else {
                break;
            };
            let Some(measured) = Self::admit(env, due_ns) else {
                break;
            };
            let message = payloads.message(self.id, self.next_seq);
            if env.framing == FramingKind::Raw {
                message.write_payload(&mut env.scratch); // raw framing adds nothing: no copy
            } else {
                env.payload.clear();
                message.write_payload(&mut env.payload);
                framing::encode(env.framing, &[&env.payload], &mut env.scratch);
            }
            self.in_flight.push_back(InFlight {
                sent_ns: env.now_ns,
                due_ns,
                measured,
            });
            self.next_seq += 1;
            self.sent_on_socket += 1;
            env.tally.sent(measured, message.size());
        }
        if !env.scratch.is_empty() {
            if self.unsent.is_empty() {
                let scratch = std::mem::take(&mut env.scratch);
                let written = self.write_some(&scratch, env);
                self.unsent.extend_from_slice(&scratch[written..]);
                env.scratch = scratch;
            } else {
                self.unsent.extend_from_slice(&env.scratch);
            }
        }
    }

    /// Writes what the kernel takes of `bytes` now; returns how much that was.
    fn write_some(&mut self, bytes: &[u8], env: &mut Env) -> usize {
        let written = self.write_to_kernel(bytes, env);
        if env.reply == ReplyKind::Discard && self.state == State::Up {
            self.discard_written(written, env);
        }
        written
    }

    fn write_to_kernel(&mut self, bytes: &[u8], env: &mut Env) -> usize {
        let mut written = 0;
        while written < bytes.len() {
            let Some(result) = self
                .socket
                .as_mut()
                .and_then(|s| s.write_stream(&bytes[written..]))
            else {
                return bytes.len();
            };
            match result {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.end(env, classify_error(&e));
                    return bytes.len();
                }
            }
        }
        written
    }

    /// Writes bytes the kernel refused before.
    fn flush(&mut self, env: &mut Env) {
        if let Some(Socket2::Tls(tls)) = &mut self.socket
            && let Err(e) = tls.flush_tls()
        {
            return self.end(env, classify_error(&e));
        }
        if self.unsent.is_empty() {
            return;
        }
        let unsent = std::mem::take(&mut self.unsent);
        let written = self.write_some(&unsent, env);
        self.unsent = unsent;
        self.unsent.drain(..written);
    }

    /// An established connection ended early.
    /// Its messages in flight will never be answered: they count as timeouts.
    fn end(&mut self, env: &mut Env, why: ConnectionError) {
        if self.state == State::Up {
            log::debug!("connection {} ended: {why:?}", self.id);
            env.tally.error(why);
        }
        self.give_up_owed(env);
        self.socket = None; // closing the descriptor removes it from epoll
        self.registration.forget();
        self.state = State::Closed;
        self.unsent = Vec::new();
        self.discard_ends.clear();
    }

    /// What to wait for: the end of a connect (reported as writable, or readable with an
    /// error); replies; room for refused bytes, only while some wait.
    fn wanted(&self) -> Option<Interest> {
        let tls_owes = matches!(&self.socket, Some(Socket2::Tls(tls)) if tls.wants_write());
        match self.state {
            // The handshake: replies, and room for what rustls holds for the kernel.
            State::Connecting(_) if self.handshake_since_ns.is_some() => interest(true, tls_owes),
            State::Connecting(_) => interest(true, true),
            State::Up => interest(true, !self.unsent.is_empty() || tls_owes),
            State::Waiting | State::Closed => None,
        }
    }

    /// One `epoll_ctl` per change of mind.
    fn update_interest(&mut self, registry: &Registry, token: Token) {
        let wanted = self.wanted();
        let result = match &mut self.socket {
            Some(Socket2::Stream(s)) => self.registration.update(registry, s, token, wanted),
            Some(Socket2::Tls(s)) => self
                .registration
                .update(registry, s.as_mut(), token, wanted),
            Some(Socket2::Datagram(s)) => self.registration.update(registry, s, token, wanted),
            None => {
                self.registration.forget();
                Ok(())
            }
        };
        if let Err(e) = result {
            log::warn!("connection {}: cannot register: {e}", self.id);
        }
    }

    fn drop_socket(&mut self, registry: &Registry) {
        let result = match &mut self.socket {
            Some(Socket2::Stream(s)) => self.registration.update(registry, s, Token(0), None),
            Some(Socket2::Tls(s)) => {
                // The end of our data, said the TLS way (best effort: the socket closes next).
                let _ = s.shutdown_write();
                self.registration
                    .update(registry, s.as_mut(), Token(0), None)
            }
            Some(Socket2::Datagram(s)) => self.registration.update(registry, s, Token(0), None),
            None => Ok(()),
        };
        let _ = result; // the socket is closed next, which forgets it in any case
        self.socket = None;
        self.registration.forget();
    }
}

/// The payload a reply carries: a timestamp reply's after its `[<ctime>] ` prefix.
fn payload_of(kind: ReplyKind, reply: &[u8]) -> &[u8] {
    match kind {
        ReplyKind::Timestamp => reply.get(TIMESTAMP_PREFIX_LEN..).unwrap_or_default(),
        ReplyKind::Echo | ReplyKind::Discard | ReplyKind::Chargen => reply,
    }
}

fn is_correct(kind: ReplyKind, message: &Message, reply: &[u8]) -> bool {
    match kind {
        ReplyKind::Timestamp => message.is_timestamped(reply),
        ReplyKind::Echo | ReplyKind::Discard | ReplyKind::Chargen => message.is_echo(reply),
    }
}

/// Whether a non-blocking connect has ended well (`NotConnected`: not yet).
fn connect_result(stream: &Stream) -> io::Result<()> {
    match stream {
        Stream::Tcp(s) => s.take_error().and_then(|e| match e {
            Some(e) => Err(e),
            None => s.peer_addr().map(drop),
        }),
        Stream::Unix(s) => s.take_error().and_then(|e| match e {
            Some(e) => Err(e),
            None => s.peer_addr().map(drop),
        }),
    }
}

/// A non-blocking TCP connect with a TLS client on top; its ClientHello goes out once the
/// connect has ended.
#[cfg(feature = "tls")]
fn open_tls(
    addr: SocketAddr,
    host: &str,
    source: Option<IpAddr>,
    env: &Env,
) -> io::Result<TlsStream> {
    let config = env
        .tls
        .clone()
        .ok_or_else(|| io::Error::other("a tls: target without a TLS config"))?;
    TlsStream::new(open_tcp(addr, source)?, config, host)
}

#[cfg(not(feature = "tls"))]
fn open_tls(_: SocketAddr, _: &str, _: Option<IpAddr>, _: &Env) -> io::Result<TlsStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        crate::clients::tls::NO_TLS_BUILD,
    ))
}

/// A non-blocking TCP connect, from `source` if given, with `TCP_NODELAY`.
fn open_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Stream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        bind_without_port(&socket, ip)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(Stream::Tcp(TcpStream::from_std(socket.into())))
}

/// Binds the source address only: with `IP_BIND_ADDRESS_NO_PORT` (Linux) the port is picked at
/// connect time, for this destination, so each source address offers the whole port range per
/// server. Other systems have no such option: the port is then picked at bind time, before the
/// destination is known, so each source address offers the port range once across all servers.
fn bind_without_port(socket: &Socket, ip: IpAddr) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    defer_port_to_connect(socket);
    socket.bind(&SocketAddr::new(ip, 0).into())
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`. Neither rustix nor socket2 offers it, hence the raw call. A
/// failure (a kernel older than 4.2) is harmless: the port is then picked at bind time, as on
/// other systems.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn defer_port_to_connect(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: `socket` is an open socket for as long as this borrow lasts; the value pointer and
    // length describe `on`, a live `c_int`, which is what this option reads. No memory is written.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Why a connect failed, from its error.
pub fn classify_connect_error(e: &io::Error) -> ConnectFailure {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) | Some(libc::ENOENT) => ConnectFailure::Refused,
        Some(libc::ETIMEDOUT) => ConnectFailure::TimedOut,
        Some(libc::EMFILE) | Some(libc::ENFILE) => ConnectFailure::TooManyOpenFiles,
        Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => ConnectFailure::PortsExhausted,
        _ => ConnectFailure::Other,
    }
}

fn classify_error(e: &io::Error) -> ConnectionError {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ConnectionError::Reset,
        io::ErrorKind::ConnectionRefused => ConnectionError::ClosedByServer,
        // TLS: the server closed without close_notify (a clean close reads as end of stream).
        io::ErrorKind::UnexpectedEof => ConnectionError::ClosedByServer,
        _ => ConnectionError::Other,
    }
}
