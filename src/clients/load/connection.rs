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
//! its reads), so the stream is checked byte by byte against the payloads sent. Over UDP a datagram
//! may be lost: a reply that matches a later message than the oldest says the ones before it were
//! lost, and a message not answered within a second is given up (both counted as `lost`).
//!
//! Next: `mod.rs`, the reactor that drives many of these.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::{TcpStream, UdpSocket, UnixStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::config::{ReplyKind, Target};
use super::message::{Message, preview};
use super::pacing::Pacing;
use super::report::{ConnectFailure, ConnectionError, Tally};
use crate::net::address::Address;
use crate::net::registration::{Registration, interest};
use crate::net::stream::Stream;
use crate::protocol::framing::{self, Decoder, FramingKind};

/// Reads per readiness event before the connection yields to the others (mio is edge-triggered,
/// so a connection cut short is revisited by the reactor).
const READS_PER_TURN: usize = 4;

/// A UDP message not answered within this long is counted lost.
pub const DATAGRAM_TIMEOUT_NS: u64 = 1_000_000_000;

/// The socket: a stream, or a connected UDP socket.
#[derive(Debug)]
enum Socket2 {
    Stream(Stream),
    Datagram(UdpSocket),
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
    /// The clock now, in ns since the reactor started.
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
    /// Payload size.
    pub size: usize,
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
    /// Raw echo: payload bytes of the oldest message already received, and whether any was wrong.
    raw_offset: usize,
    raw_wrong: bool,
    /// Bytes the kernel refused, to write when the socket is writable.
    unsent: Vec<u8>,
    /// Open loop: messages due so far.
    due: u64,
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
            raw_wrong: false,
            unsent: Vec::new(),
            due: 0,
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

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
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
        let opened = match target {
            Target::Stream(Address::Tcp(addr)) => open_tcp(*addr, source).map(Socket2::Stream),
            Target::Stream(Address::Unix(path)) => {
                UnixStream::connect(path).map(|s| Socket2::Stream(Stream::Unix(s)))
            }
            Target::Datagram(addr) => open_udp(*addr, source).map(Socket2::Datagram),
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
                let limit = env.size + super::message::TIMESTAMP_PREFIX_LEN + 64;
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
        self.fill(env);
        self.update_interest(registry, token);
        still_ready
    }

    /// Sends what the pacing allows now (closed loop: up to the pipeline; open loop: what is due).
    pub fn on_due(&mut self, env: &mut Env, registry: &Registry, token: Token) {
        self.due += 1;
        if self.state == State::Up {
            self.fill(env);
            self.update_interest(registry, token);
        }
    }

    /// Gives up a connect that took too long.
    pub fn time_out_connect(&mut self, env: &mut Env, registry: &Registry) {
        self.drop_socket(registry);
        self.state = State::Closed;
        env.tally.connect_failed(ConnectFailure::TimedOut);
    }

    /// UDP: gives up messages in flight for longer than [`DATAGRAM_TIMEOUT_NS`].
    pub fn expire_datagrams(&mut self, env: &mut Env) {
        while let Some(oldest) = self.in_flight.front()
            && env.now_ns.saturating_sub(oldest.sent_ns) > DATAGRAM_TIMEOUT_NS
        {
            self.in_flight.pop_front();
            self.oldest_seq += 1;
            env.tally.error(ConnectionError::Lost);
        }
    }

    /// Closes the socket at the end of the run.
    pub fn close(&mut self, registry: &Registry) {
        self.drop_socket(registry);
        self.state = State::Closed;
    }

    fn finish_connect(&mut self, env: &mut Env) {
        let Some(Socket2::Stream(stream)) = &self.socket else {
            return;
        };
        let result = match stream {
            Stream::Tcp(s) => s.take_error().and_then(|e| match e {
                Some(e) => Err(e),
                None => s.peer_addr().map(drop),
            }),
            Stream::Unix(s) => s.take_error().and_then(|e| match e {
                Some(e) => Err(e),
                None => s.peer_addr().map(drop),
            }),
        };
        match result {
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

    fn become_up(&mut self, env: &mut Env) {
        self.state = State::Up;
        env.tally.connections_ok += 1;
        self.fill(env);
    }

    /// Reads until the kernel has nothing more or the budget is spent; checks every reply.
    fn drain_reads(&mut self, env: &mut Env) -> bool {
        let mut buf = std::mem::take(&mut env.read_buf);
        let mut still_ready = false;
        for round in 0..READS_PER_TURN {
            let result = match &mut self.socket {
                Some(Socket2::Stream(s)) => s.read(&mut buf),
                Some(Socket2::Datagram(s)) => s.recv(&mut buf),
                None => break,
            };
            match result {
                Ok(0) if !matches!(self.socket, Some(Socket2::Datagram(_))) => {
                    self.end(env, ConnectionError::ClosedByServer);
                    break;
                }
                Ok(n) => {
                    self.on_bytes(&buf[..n], env);
                    // A stream read that did not fill the buffer emptied the socket: no need
                    // to ask again for `WouldBlock`. Datagrams come one per read.
                    let datagram = matches!(self.socket, Some(Socket2::Datagram(_)));
                    if !datagram && n < buf.len() {
                        break;
                    }
                    still_ready = round + 1 == READS_PER_TURN;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
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
        if matches!(self.socket, Some(Socket2::Datagram(_))) {
            self.on_datagram(bytes, env);
        } else if let Some(mut decoder) = self.decoder.take() {
            let mut input = bytes;
            loop {
                match decoder.next_frame(&mut input) {
                    Ok(Some(frame)) => self.on_reply(frame.payload, env),
                    Ok(None) => break,
                    Err(e) => {
                        let id = self.id;
                        env.tally.mismatch(|| {
                            format!("connection {id}: a reply broke the framing: {e}")
                        });
                        if env.framing == FramingKind::Length {
                            self.end(env, ConnectionError::Lost); // the stream is lost
                            return;
                        }
                    }
                }
            }
            self.decoder = Some(decoder);
        } else {
            self.on_raw_stream(bytes, env);
        }
    }

    /// Raw echo: the stream must be the payloads sent, in order, however it is cut.
    fn on_raw_stream(&mut self, mut bytes: &[u8], env: &mut Env) {
        while !bytes.is_empty() {
            if self.in_flight.is_empty() {
                let id = self.id;
                env.tally.mismatch(|| {
                    format!(
                        "connection {id}: bytes with nothing in flight: {}",
                        preview(bytes)
                    )
                });
                return;
            }
            let message = Message::new(self.id, self.oldest_seq, env.size);
            let take = (env.size - self.raw_offset).min(bytes.len());
            let (piece, rest) = bytes.split_at(take);
            if !self.raw_wrong && !message.matches_at(self.raw_offset, piece) {
                self.raw_wrong = true;
                let (id, seq, at) = (self.id, self.oldest_seq, self.raw_offset);
                env.tally.mismatch(|| {
                    format!(
                        "connection {id} message {seq}: at byte {at} expected {} got {}",
                        preview(&message.to_text().as_bytes()[at..at + take]),
                        preview(piece)
                    )
                });
            }
            self.raw_offset += take;
            bytes = rest;
            if self.raw_offset == env.size {
                self.raw_offset = 0;
                self.raw_wrong = false;
                self.answered(env);
            }
        }
    }

    /// One whole reply (a frame): it answers the oldest message in flight.
    fn on_reply(&mut self, reply: &[u8], env: &mut Env) {
        if self.in_flight.is_empty() {
            let id = self.id;
            env.tally.mismatch(|| {
                format!(
                    "connection {id}: reply with nothing in flight: {}",
                    preview(reply)
                )
            });
            return;
        }
        let message = Message::new(self.id, self.oldest_seq, env.size);
        if !is_correct(env.reply, &message, reply) {
            self.count_mismatch(&message, reply, env);
        }
        self.answered(env);
    }

    /// UDP: the reply should answer the oldest message; if it answers a later one, those before
    /// it were lost.
    fn on_datagram(&mut self, reply: &[u8], env: &mut Env) {
        let oldest = Message::new(self.id, self.oldest_seq, env.size);
        if self.in_flight.is_empty() {
            return self.count_mismatch(&oldest, reply, env);
        }
        if !is_correct(env.reply, &oldest, reply) {
            let later = (1..self.in_flight.len() as u64).find(|&k| {
                let message = Message::new(self.id, self.oldest_seq + k, env.size);
                is_correct(env.reply, &message, reply)
            });
            match later {
                Some(k) => {
                    for _ in 0..k {
                        self.in_flight.pop_front();
                        self.oldest_seq += 1;
                        env.tally.error(ConnectionError::Lost);
                    }
                }
                None => self.count_mismatch(&oldest, reply, env),
            }
        }
        self.answered(env);
    }

    fn count_mismatch(&self, expected: &Message, got: &[u8], env: &mut Env) {
        let (id, seq) = (self.id, self.oldest_seq);
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

    /// The oldest message in flight has its reply: record its latency, free its place.
    fn answered(&mut self, env: &mut Env) {
        let Some(done) = self.in_flight.pop_front() else {
            return;
        };
        self.oldest_seq += 1;
        let tally = &mut env.tally;
        tally.received_all += 1;
        if done.measured {
            tally.received += 1;
            let now = env.now_ns;
            tally
                .latency
                .saturating_record(now.saturating_sub(done.due_ns).max(1));
            if matches!(env.pacing, Pacing::Open(_)) {
                tally
                    .uncorrected
                    .saturating_record(now.saturating_sub(done.sent_ns).max(1));
            }
        }
    }

    /// Sends messages while the pipeline has room and the pacing allows.
    fn fill(&mut self, env: &mut Env) {
        if self.state != State::Up || !env.sending {
            return;
        }
        env.scratch.clear();
        let datagram = matches!(self.socket, Some(Socket2::Datagram(_)));
        while self.in_flight.len() < env.pipeline {
            let due_ns = match env.pacing {
                Pacing::Closed => env.now_ns,
                Pacing::Open(schedule) => {
                    if self.due <= self.next_seq {
                        break;
                    }
                    env.traffic_start_ns
                        + schedule.message_due_at_ns(self.index, env.connections, self.next_seq)
                }
            };
            let message = Message::new(self.id, self.next_seq, env.size);
            if datagram {
                env.payload.clear();
                message.write_payload(&mut env.payload);
                if !self.send_datagram(env) {
                    break;
                }
            } else if env.framing == FramingKind::Raw {
                message.write_payload(&mut env.scratch); // raw framing adds nothing: no copy
            } else {
                env.payload.clear();
                message.write_payload(&mut env.payload);
                framing::encode(env.framing, &[&env.payload], &mut env.scratch);
            }
            let measured = (env.window_ns.0..env.window_ns.1).contains(&due_ns);
            self.in_flight.push_back(InFlight {
                sent_ns: env.now_ns,
                due_ns,
                measured,
            });
            self.next_seq += 1;
            env.tally.sent_all += 1;
            env.tally.sent += u64::from(measured);
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

    /// Sends `env.payload` as one datagram; `false` if the kernel refused it for now.
    fn send_datagram(&mut self, env: &mut Env) -> bool {
        let Some(Socket2::Datagram(socket)) = &self.socket else {
            return false;
        };
        match socket.send(&env.payload) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => {
                self.end(env, classify_error(&e));
                false
            }
        }
    }

    /// Writes what the kernel takes of `bytes` now; returns how much that was.
    fn write_some(&mut self, bytes: &[u8], env: &mut Env) -> usize {
        let mut written = 0;
        while written < bytes.len() {
            let Some(Socket2::Stream(stream)) = &mut self.socket else {
                return bytes.len();
            };
            match stream.write(&bytes[written..]) {
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
        if self.unsent.is_empty() {
            return;
        }
        let unsent = std::mem::take(&mut self.unsent);
        let written = self.write_some(&unsent, env);
        self.unsent = unsent;
        self.unsent.drain(..written);
    }

    /// An established connection ended early.
    fn end(&mut self, env: &mut Env, why: ConnectionError) {
        if self.state == State::Up {
            log::debug!("connection {} ended: {why:?}", self.id);
            env.tally.error(why);
        }
        self.socket = None; // closing the descriptor removes it from epoll
        self.registration.forget();
        self.state = State::Closed;
        self.in_flight.clear();
        self.unsent = Vec::new();
    }

    /// What to wait for: the end of a connect (reported as writable, or readable with an
    /// error); replies; room for refused bytes, only while some wait.
    fn wanted(&self) -> Option<Interest> {
        match self.state {
            State::Connecting(_) => interest(true, true),
            State::Up => interest(true, !self.unsent.is_empty()),
            State::Waiting | State::Closed => None,
        }
    }

    /// One `epoll_ctl` per change of mind.
    fn update_interest(&mut self, registry: &Registry, token: Token) {
        let wanted = self.wanted();
        let result = match &mut self.socket {
            Some(Socket2::Stream(s)) => self.registration.update(registry, s, token, wanted),
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
            Some(Socket2::Datagram(s)) => self.registration.update(registry, s, Token(0), None),
            None => Ok(()),
        };
        let _ = result; // the socket is closed next, which forgets it in any case
        self.socket = None;
        self.registration.forget();
    }
}

fn is_correct(kind: ReplyKind, message: &Message, reply: &[u8]) -> bool {
    match kind {
        ReplyKind::Echo => message.is_echo(reply),
        ReplyKind::Timestamp => message.is_timestamped(reply),
    }
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

/// A UDP socket connected to `addr`, so it receives only the server's datagrams.
fn open_udp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
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
        _ => ConnectionError::Other,
    }
}
