//! `echoloop client ADDR`: an interactive client, built on the same event-loop idea as the server.
//!
//! A client that first reads a line from the keyboard and then waits for the answer cannot show a
//! chat message that arrives while you type: it is blocked in the wrong `read`. So this client
//! waits on both at once. One `mio::Poll` holds stdin (file descriptor 0, through `SourceFd`) and
//! the socket, both for `READABLE`; whichever is ready is served:
//!
//! - **Socket readable**: read until `WouldBlock` (the poller is edge-triggered, as in the server)
//!   and copy the bytes to stdout as they are, flushed at once.
//! - **Stdin readable**: read what is there and queue it for the server. Stdin is made
//!   non-blocking for this (and its flags are put back on exit). A regular file cannot be
//!   registered with epoll (`EPERM`): then stdin is simply treated as always readable.
//! - **Socket writable**: only registered while the kernel has refused some of our bytes. Those
//!   wait in an [`OutboundQueue`], exactly as the server's replies do.
//!
//! Over TLS (`tls:HOST:PORT`) the socket is a [`TlsStream`] (`clients/tls.rs`): the handshake is
//! part of connecting (a refused certificate is a failed connect, with rustls' reason), then
//! stdin goes through rustls' writer and what the server sends is decrypted before it is
//! printed. The edge-triggered trap is the one the module doc of `tls.rs` describes: a read of
//! the socket may leave plaintext in rustls, which no new event will announce. Reading until
//! `WouldBlock`, as this loop does anyway, empties rustls too; and once more right after the
//! handshake, which may have brought the server's first words along with its last flight.
//!
//! When stdin ends, a stream client sends FIN (`shutdown(Write)`; over TLS close_notify first)
//! and keeps printing until the server closes; if the server stays silent for 2 seconds it stops anyway. With `--udp` each stdin
//! line is one datagram (without its newline), each reply is printed on a line of its own, and the
//! client waits a second after the last one for late replies. The server closing is a normal end
//! ([`Ending::Done`]); Ctrl-C (SIGINT) or SIGTERM ends the loop cleanly ([`Ending::Interrupted`]);
//! a refused connection is a [`ClientError`] (`cli/exit.rs` gives each its exit code).
//!
//! Next: `clients/transfer.rs`, the file transfer clients.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::OFlags;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::clients::tls::{TlsOptions, TlsStream, Trust};
use crate::net::address::Address;
use crate::net::outbound::OutboundQueue;
use crate::net::registration::{Registration, interest};
use crate::net::stream::Stream;

const STDIN: Token = Token(0);
const SOCKET: Token = Token(1);
const SIGNALS: Token = Token(2);

/// Bytes read from stdin or the socket at a time (also the largest datagram we receive).
const BUFFER_BYTES: usize = 64 * 1024;
/// Stdin is not read while this much is still owed to the server: memory stays bounded.
const MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// After our input ends, how long a silent stream server is waited for.
const STREAM_GRACE: Duration = Duration::from_secs(2);
/// After the last datagram, how long late replies are waited for.
const DATAGRAM_GRACE: Duration = Duration::from_secs(1);
/// How long connecting to a TCP server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `echoloop client` is asked to do.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server.
    pub addr: Address,
    /// Send each stdin line as one UDP datagram (without its newline).
    pub udp: bool,
    /// `tls:` addresses: whom to trust (`--tls-ca`, `--insecure`).
    pub tls: TlsOptions,
}

/// Why the client could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {}", describe(.source))]
    Connect {
        /// Where we tried.
        addr: Address,
        /// What the kernel said.
        source: io::Error,
    },
    /// `--udp` with a Unix socket path.
    #[error("--udp needs HOST:PORT, not {0}")]
    UdpNeedsHostPort(Address),
    /// Flags that do not go together, or a `--tls-ca` file that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The connection failed after it was made.
    #[error("connection to {addr} failed: {}", describe(.source))]
    Lost {
        /// The server.
        addr: Address,
        /// What the kernel said.
        source: io::Error,
    },
    /// The poller, the signal handlers or the terminal could not be set up.
    #[error("{}", describe(.0))]
    Setup(#[from] io::Error),
}

/// How a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Input and output are done (or the server closed).
    Done,
    /// SIGINT or SIGTERM ended it (stdin's flags are restored all the same).
    Interrupted,
}

/// Runs the client until its input and the server's output are done, or a signal comes.
pub fn run(config: &ClientConfig) -> Result<Ending, ClientError> {
    let trust = config.tls.trust(&config.addr).map_err(ClientError::Usage)?;
    match (&config.addr, config.udp) {
        (Address::Tcp(addr), true) => run_datagrams(*addr),
        (addr, true) => Err(ClientError::UdpNeedsHostPort(addr.clone())),
        (addr, false) => run_stream(addr, &trust),
    }
}

/// An IO error as one lower-case phrase: `connection refused`, not `Connection refused (os
/// error 111)`.
pub(crate) fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    let phrase = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    crate::clients::tls::with_certificate_hint(phrase)
}

// ----- the terminal side ---------------------------------------------------------------------

/// What one read of stdin gave.
enum Input {
    Bytes(usize),
    /// Nothing now: wait for the next readiness event.
    Wait,
    End,
}

/// Stdin, non-blocking for as long as this lives, and whether it may have bytes for us.
struct Console {
    /// The flags stdin had, put back on drop (a shell sharing the terminal expects them).
    saved_flags: Option<OFlags>,
    /// Stdin is not pollable (a regular file, `/dev/null`): read it whenever there is room.
    always_ready: bool,
    /// The last event said readable and no read has said `WouldBlock` since.
    ready: bool,
    ended: bool,
}

impl Console {
    fn register(registry: &Registry) -> io::Result<Console> {
        let stdin = io::stdin();
        let saved_flags = rustix::fs::fcntl_getfl(&stdin).ok();
        if let Some(flags) = saved_flags
            && !flags.contains(OFlags::NONBLOCK)
        {
            // Should this fail, a read of stdin may hold up the loop until a line is typed: worse,
            // not broken.
            let _ = rustix::fs::fcntl_setfl(&stdin, flags | OFlags::NONBLOCK);
        }
        let mut console = Console {
            saved_flags,
            always_ready: false,
            ready: true, // bytes may be waiting already: they raise no new edge
            ended: false,
        };
        match registry.register(&mut SourceFd(&stdin.as_raw_fd()), STDIN, Interest::READABLE) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => console.always_ready = true,
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => console.ended = true, // no stdin
            Err(e) => return Err(e),
        }
        Ok(console)
    }

    /// Whether a read may give something now.
    fn has_input(&self) -> bool {
        !self.ended && (self.ready || self.always_ready)
    }

    /// One `read(2)` of descriptor 0 itself: std's `Stdin` would buffer, and block.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Input> {
        let stdin = io::stdin();
        loop {
            let e = match rustix::io::read(&stdin, &mut *buf) {
                Ok(0) => {
                    self.ended = true;
                    return Ok(Input::End);
                }
                Ok(n) => return Ok(Input::Bytes(n)),
                Err(errno) => io::Error::from(errno),
            };
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    self.ready = false;
                    return Ok(Input::Wait);
                }
                _ => return Err(e),
            }
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(flags) = self.saved_flags {
            let _ = rustix::fs::fcntl_setfl(io::stdin(), flags); // nothing more to do if it fails
        }
    }
}

/// Writes all of `bytes` to stdout, unbuffered. On a terminal, stdout is often the same open file
/// as stdin, so it is non-blocking too: a full terminal makes us wait for it with `poll(2)`.
fn write_stdout(mut bytes: &[u8]) -> io::Result<()> {
    let stdout = io::stdout(); // only for its descriptor: std's buffer is bypassed
    while !bytes.is_empty() {
        let e = match rustix::io::write(&stdout, bytes) {
            Ok(n) => {
                bytes = &bytes[n..];
                continue;
            }
            Err(errno) => io::Error::from(errno),
        };
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                // Until the terminal can take more; whatever poll says, the write is tried again.
                let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
                let _ = rustix::event::poll(&mut fds, None);
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

/// The poller with the signals registered: Ctrl-C ends the loop cleanly, so stdin's flags are
/// restored.
fn poll_with_signals() -> io::Result<(Poll, Signals)> {
    let poll = Poll::new()?;
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    Ok((poll, signals))
}

/// How long `poll` may sleep: not at all while stdin has bytes we can take, else until `deadline`.
fn timeout(may_read_stdin: bool, deadline: Option<Instant>) -> Option<Duration> {
    if may_read_stdin {
        return Some(Duration::ZERO);
    }
    deadline.map(|at| at.saturating_duration_since(Instant::now()))
}

// ----- TCP and Unix --------------------------------------------------------------------------

/// The connection: a plain stream, or TLS over TCP.
#[derive(Debug)]
enum Link {
    Plain(Stream),
    Tls(Box<TlsStream>),
}

impl Link {
    /// We will send no more: FIN (over TLS: close_notify first, FIN once it is out).
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.shutdown_write(),
            Link::Tls(s) => s.shutdown_write(),
        }
    }

    /// Bytes the kernel refused that wait below our queue (TLS records in rustls).
    fn owes_bytes(&self) -> bool {
        matches!(self, Link::Tls(s) if s.wants_write())
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(bytes),
            Link::Tls(s) => s.write(bytes),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write_vectored(bufs),
            Link::Tls(s) => s.write_vectored(bufs),
        }
    }

    /// Over TLS: writes the records rustls still holds.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(_) => Ok(()),
            Link::Tls(s) => s.flush_tls(),
        }
    }
}

impl Source for Link {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.register(registry, token, interests),
            Link::Tls(s) => s.as_mut().register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.reregister(registry, token, interests),
            Link::Tls(s) => s.as_mut().reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.deregister(registry),
            Link::Tls(s) => s.as_mut().deregister(registry),
        }
    }
}

fn connect_tcp(socket: &SocketAddr) -> io::Result<Stream> {
    let stream = std::net::TcpStream::connect_timeout(socket, CONNECT_TIMEOUT)?;
    let _ = stream.set_nodelay(true); // interactive: a line goes out when typed
    stream.set_nonblocking(true)?;
    Ok(Stream::Tcp(mio::net::TcpStream::from_std(stream)))
}

fn connect_stream(addr: &Address, trust: &Trust) -> Result<Link, ClientError> {
    let failed = |source| ClientError::Connect {
        addr: addr.clone(),
        source,
    };
    let link = match addr {
        Address::Tcp(socket) => Link::Plain(connect_tcp(socket).map_err(failed)?),
        Address::Unix(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path).map_err(failed)?;
            stream.set_nonblocking(true)?;
            Link::Plain(Stream::Unix(mio::net::UnixStream::from_std(stream)))
        }
        Address::Tls { addr: socket, host } => {
            let stream = connect_tcp(socket).map_err(failed)?;
            Link::Tls(Box::new(handshake(stream, host, trust).map_err(failed)?))
        }
    };
    Ok(link)
}

/// A TLS handshake with `host` over `stream`, waiting for the socket with `poll(2)`: it is
/// part of connecting, like the TCP connect before it, and has the same time limit. `Err`: the
/// handshake failed (a certificate refused: rustls' reason inside).
#[cfg(feature = "tls")]
fn handshake(stream: Stream, host: &str, trust: &Trust) -> io::Result<TlsStream> {
    let config = trust
        .clone()
        .ok_or_else(|| io::Error::other("a tls: address without a TLS config"))?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut tls = TlsStream::new(stream, config, host)?;
    tls.handshake()?;
    while tls.is_handshaking() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake took too long",
            ));
        };
        let flags = match tls.wants_write() {
            true => PollFlags::IN | PollFlags::OUT,
            false => PollFlags::IN,
        };
        let timeout = rustix::event::Timespec::try_from(left).ok();
        let waited = match tls.socket() {
            Stream::Tcp(s) => rustix::event::poll(&mut [PollFd::new(s, flags)], timeout.as_ref()),
            Stream::Unix(s) => rustix::event::poll(&mut [PollFd::new(s, flags)], timeout.as_ref()),
        };
        match waited {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return Err(errno.into()),
        }
        tls.handshake()?;
    }
    Ok(tls)
}

#[cfg(not(feature = "tls"))]
fn handshake(_: Stream, _: &str, _: &Trust) -> io::Result<TlsStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        crate::clients::tls::NO_TLS_BUILD,
    ))
}

fn run_stream(addr: &Address, trust: &Trust) -> Result<Ending, ClientError> {
    let mut stream = connect_stream(addr, trust)?;
    let lost = |source| ClientError::Lost {
        addr: addr.clone(),
        source,
    };
    let (poll, _signals) = poll_with_signals()?;
    let mut poll = poll;
    let mut registration = Registration::new();
    registration.update(poll.registry(), &mut stream, SOCKET, interest(true, false))?;
    let mut console = Console::register(poll.registry())?;
    let mut outbound = OutboundQueue::new();
    let mut buf = vec![0u8; BUFFER_BYTES];
    let mut events = Events::with_capacity(16);
    // Set once our FIN is out: when to stop waiting for a server that says nothing more.
    let mut quiet_deadline: Option<Instant> = None;
    // The handshake may have left the server's first words in rustls: no event will say so.
    if let Received::Closed = drain_stream(&mut stream, &mut buf).map_err(lost)? {
        return Ok(Ending::Done);
    }
    loop {
        let may_read_stdin = console.has_input() && outbound.len() < MAX_QUEUED_BYTES;
        match poll.poll(&mut events, timeout(may_read_stdin, quiet_deadline)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        }
        for event in events.iter() {
            match event.token() {
                SIGNALS => return Ok(Ending::Interrupted),
                STDIN => console.ready = true,
                _ => {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        match drain_stream(&mut stream, &mut buf).map_err(lost)? {
                            Received::Closed => return Ok(Ending::Done),
                            Received::Some if quiet_deadline.is_some() => {
                                quiet_deadline = Some(Instant::now() + STREAM_GRACE);
                            }
                            Received::Some | Received::Nothing => {}
                        }
                    }
                }
            }
        }
        // One read of stdin per turn, so a large piped file cannot starve the socket.
        if console.has_input() && outbound.len() < MAX_QUEUED_BYTES {
            match console.read(&mut buf)? {
                Input::Bytes(n) => outbound.push_copy(&buf[..n]),
                Input::Wait | Input::End => {}
            }
        }
        outbound.flush_into(&mut stream).map_err(lost)?;
        stream.flush().map_err(lost)?; // TLS records rustls holds, even with our queue empty
        // Everything sent, records rustls still holds included: then FIN (after close_notify).
        let all_out = outbound.is_empty() && !stream.owes_bytes();
        if console.ended && all_out && quiet_deadline.is_none() {
            stream.shutdown_write().map_err(lost)?;
            quiet_deadline = Some(Instant::now() + STREAM_GRACE);
        }
        if quiet_deadline.is_some_and(|at| at <= Instant::now()) && !stream.owes_bytes() {
            return Ok(Ending::Done); // the server keeps the connection open: stop waiting
        }
        // Writable only while the kernel has refused some of our bytes, as in the server.
        let wanted = interest(true, !outbound.is_empty() || stream.owes_bytes());
        registration.update(poll.registry(), &mut stream, SOCKET, wanted)?;
    }
}

/// What a drain of the socket found.
enum Received {
    Nothing,
    Some,
    /// The server closed its side.
    Closed,
}

/// Reads the socket until `WouldBlock`, copying everything to stdout. Over TLS `WouldBlock`
/// comes only once rustls holds no plaintext either.
fn drain_stream(stream: &mut Link, buf: &mut [u8]) -> io::Result<Received> {
    let mut received = Received::Nothing;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(Received::Closed),
            Ok(n) => {
                if write_stdout(&buf[..n]).is_err() {
                    return Ok(Received::Closed); // nobody reads our output (`| head`): done
                }
                received = Received::Some;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(received),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // TLS: the server closed without close_notify; what came before is printed, and
            // the user is told that it may not be all (a cut connection looks just like this).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                eprintln!(
                    "echoloop: warning: the server closed without a TLS close_notify: its last \
                     reply may be cut short"
                );
                return Ok(Received::Closed);
            }
            Err(e) => return Err(e),
        }
    }
}

// ----- UDP -----------------------------------------------------------------------------------

fn connect_datagrams(addr: SocketAddr) -> Result<UdpSocket, ClientError> {
    let failed = |source| ClientError::Connect {
        addr: Address::Tcp(addr),
        source,
    };
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(local).map_err(failed)?;
    socket.connect(addr).map_err(failed)?; // replies from anyone else are not ours
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket))
}

fn run_datagrams(addr: SocketAddr) -> Result<Ending, ClientError> {
    let mut socket = connect_datagrams(addr)?;
    let lost = |source| ClientError::Lost {
        addr: Address::Tcp(addr),
        source,
    };
    let (mut poll, _signals) = poll_with_signals()?;
    let mut registration = Registration::new();
    registration.update(poll.registry(), &mut socket, SOCKET, interest(true, false))?;
    let mut console = Console::register(poll.registry())?;
    let mut lines = LineSplitter::default();
    let mut buf = vec![0u8; BUFFER_BYTES];
    let mut events = Events::with_capacity(16);
    let mut quiet_deadline: Option<Instant> = None;
    loop {
        let may_read_stdin = console.has_input() && lines.queued_bytes < MAX_QUEUED_BYTES;
        match poll.poll(&mut events, timeout(may_read_stdin, quiet_deadline)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        }
        for event in events.iter() {
            match event.token() {
                SIGNALS => return Ok(Ending::Interrupted),
                STDIN => console.ready = true,
                _ => {
                    if drain_datagrams(&socket, &mut buf).map_err(lost)? && quiet_deadline.is_some()
                    {
                        quiet_deadline = Some(Instant::now() + DATAGRAM_GRACE);
                    }
                }
            }
        }
        if may_read_stdin {
            match console.read(&mut buf)? {
                Input::Bytes(n) => lines.push(&buf[..n]),
                Input::End => lines.finish(),
                Input::Wait => {}
            }
        }
        lines.send_into(&socket).map_err(lost)?;
        if console.ended && lines.pending.is_empty() && quiet_deadline.is_none() {
            quiet_deadline = Some(Instant::now() + DATAGRAM_GRACE);
        }
        if quiet_deadline.is_some_and(|at| at <= Instant::now()) {
            return Ok(Ending::Done);
        }
        let wanted = interest(true, !lines.pending.is_empty());
        registration.update(poll.registry(), &mut socket, SOCKET, wanted)?;
    }
}

/// Receives until `WouldBlock`, printing each datagram on a line of its own. Returns whether
/// anything came.
fn drain_datagrams(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<bool> {
    let mut received = false;
    loop {
        match socket.recv(buf) {
            Ok(n) => {
                received = true;
                let datagram = &buf[..n];
                let mut printed = write_stdout(datagram);
                if !datagram.ends_with(b"\n") {
                    printed = printed.and_then(|()| write_stdout(b"\n"));
                }
                if printed.is_err() {
                    return Ok(received); // nobody reads our output; the deadline ends us
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(received),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // An ICMP "port unreachable" for an earlier datagram shows up here.
            Err(e) => return Err(e),
        }
    }
}

/// Cuts stdin into lines; each line (without `\n` or `\r\n`) becomes one datagram.
#[derive(Debug, Default)]
struct LineSplitter {
    partial: Vec<u8>,
    pending: VecDeque<Vec<u8>>,
    queued_bytes: usize,
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(at) = memchr::memchr(b'\n', bytes) {
            self.partial.extend_from_slice(&bytes[..at]);
            self.complete();
            bytes = &bytes[at + 1..];
        }
        self.partial.extend_from_slice(bytes);
    }

    /// End of input: a last line without `\n` is still a datagram.
    fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.complete();
        }
    }

    fn complete(&mut self) {
        let mut line = std::mem::take(&mut self.partial);
        if line.ends_with(b"\r") {
            line.pop();
        }
        self.queued_bytes += line.len();
        self.pending.push_back(line);
    }

    /// Sends pending datagrams until the kernel refuses one.
    fn send_into(&mut self, socket: &UdpSocket) -> io::Result<()> {
        while let Some(datagram) = self.pending.front() {
            match socket.send(datagram) {
                Ok(_) => {
                    self.queued_bytes -= datagram.len();
                    self.pending.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_one_lower_case_phrase() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(describe(&refused), "connection refused");
        let error = ClientError::Connect {
            addr: "127.0.0.1:7".parse().unwrap(),
            source: refused,
        };
        assert_eq!(
            error.to_string(),
            "cannot connect to 127.0.0.1:7: connection refused"
        );
    }

    #[test]
    fn stdin_lines_become_datagrams_without_their_newlines() {
        let mut lines = LineSplitter::default();
        lines.push(b"one\r\ntw");
        lines.push(b"o\n\nthree");
        lines.finish();
        let datagrams: Vec<&[u8]> = lines.pending.iter().map(Vec::as_slice).collect();
        assert_eq!(datagrams, [&b"one"[..], b"two", b"", b"three"]);
        assert_eq!(lines.queued_bytes, 11);
    }
}
