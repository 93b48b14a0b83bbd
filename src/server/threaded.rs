//! The other design: one thread per connection, blocking sockets (`serve --model threaded`).
//!
//! This is Python's `socketserver.ThreadingTCPServer`: an acceptor thread blocks in `accept`, and
//! every connection gets a thread of its own that blocks in `read`, answers, blocks in `write`,
//! and reads again. It serves the same protocols with the same [`Decoder`],
//! [`Protocol`](crate::Protocol) and [`Replies`] as the reactor, so the two can be read and
//! measured side by side.
//!
//! **Where it is simpler.** Each thread's code is the protocol, top to bottom: no readiness, no
//! interest, no outbound queue, no `WouldBlock`. A short write cannot happen (`write_all` blocks
//! until the kernel took everything), and that blocking *is* the backpressure: a client that does
//! not read stops its own thread, and only its own. A refill (chargen, a download) is a plain
//! loop: `on_drained`, write, repeat, while the protocol asks for more. The idle timeout is the
//! socket's read timeout (`SO_RCVTIMEO`); no timer heap.
//!
//! **What it costs.** A thread per client: a stack (2 MiB of address space reserved, a few pages
//! touched), a kernel task, and a 64 KiB read buffer per connection instead of one per reactor.
//! A context switch per message: the kernel must wake the right thread for each readable socket,
//! where the reactor handles a whole batch of ready sockets in one `epoll_wait`. Compare the two
//! in `docs/BENCHMARKS.md` ("Reactor vs threaded") and the `Threads:` line of `/proc/PID/status`.
//!
//! **What it cannot do alone: share.** Each thread builds its own protocol value (from the same
//! [`ServeConfig`] the reactor builds its one value from), because protocol values are not `Send`
//! and one value serving every client (as in the reactor) would need a lock around every frame.
//! That is fine for echo, timestamp, daytime, discard and chargen, which keep nothing between
//! clients. Chat is refused: a room is state shared by all threads (a lock), and a line for
//! everyone needs a writer per client that other threads can hand bytes to (a queue and a thread,
//! or a lock around each socket, and a slow reader then blocks the sender). Files is refused too:
//! its busy set (one writer per name) and its quota are shared by all clients, and with a value
//! per thread two clients could write one file at once. The reactor does all that on one thread
//! with no lock; that is its job here. UDP (`-u`) and `--workers` belong to the reactor too.
//!
//! The per-source rules (`--allow`, `--deny`, `--trusted`, `--max-per-source`, `--accept-rate`,
//! `server/sources/`) apply here as in the reactor: the acceptor thread asks one shared
//! [`Sources`] (behind a mutex) about each new peer, and a client's thread gives its place back
//! when it leaves. The same refusals, the same lines, the same counters.
//!
//! The counters ([`Stats`]) are written by one thread in the reactor, with a plain load and store.
//! Here many threads write them, so every update takes one mutex ([`SharedStats`]): the first lock
//! this model needs, and the smallest example of what sharing costs.
//!
//! **Shutdown.** SIGINT/SIGTERM (or a [`ThreadedStop`]): the listeners are shut down (the blocked
//! `accept` returns, the acceptors end, the kernel refuses new connections), every client socket's
//! *read* side is shut down (its thread's blocked `read` returns 0, as if the client had sent FIN,
//! and the thread finishes what it owes), and the main thread waits for the client threads up to
//! `--shutdown-timeout`. Whoever is still there then (a chargen or echo client that stopped
//! reading, blocked in `write`) has both directions shut down, which fails the `write`.
//!
//! Next: `docs/GUIDE.md`, which walks from this design to the reactor; then `clients/load/`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, trace, warn};
use slab::Slab;

use crate::error::StartError;
use crate::net::address::Address;
use crate::net::listener::{self, BindOptions};
use crate::net::stream::Transport;
use crate::protocol::CloseReason;
use crate::protocol::framing::{Decoder, FramingKind};
use crate::protocol::{ClientId, ProtocolKind, Replies, Service, Session};
use crate::server::config::ServeConfig;
use crate::server::connection::LINGER;
use crate::server::services::ServicePlan;
use crate::server::sources::{Admission, Sources};
use crate::server::stats::{RefusalReason, Stats, StatsSnapshot};

/// Bytes one connection thread reads at a time (the reactor's read buffer, but one per client).
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// After the drain deadline, how long to wait for threads whose sockets were shut down.
const LAST_WAIT: Duration = Duration::from_secs(1);

/// The two ways `serve` can run (`--model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Model {
    /// One thread, readiness events, non-blocking sockets (the reactor).
    #[default]
    Reactor,
    /// One blocking thread per connection, for comparison.
    Threaded,
}

/// The counters, written by many threads: each update holds one lock, so loads and stores of
/// [`Stats`]' single-writer counters never interleave and no count is lost.
#[derive(Debug, Default)]
pub struct SharedStats {
    stats: Stats,
    writer: Mutex<()>,
}

impl SharedStats {
    /// Updates the counters under the lock.
    fn update(&self, change: impl FnOnce(&Stats)) {
        let _only_writer = lock(&self.writer);
        change(&self.stats);
    }

    /// The values now (read without the lock: each counter is an atomic).
    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

/// A listening socket, blocking.
#[derive(Debug)]
enum BlockingListener {
    Tcp(TcpListener),
    /// The path is removed when the server stops.
    Unix(UnixListener, PathBuf),
}

impl BlockingListener {
    /// Which kind of stream its connections are.
    fn transport(&self) -> Transport {
        match self {
            BlockingListener::Tcp(_) => Transport::Tcp,
            BlockingListener::Unix(..) => Transport::Unix,
        }
    }
}

/// A connected socket, blocking.
#[derive(Debug)]
enum BlockingStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl BlockingStream {
    /// Which kind of socket it is: picks the counters it is counted in.
    fn transport(&self) -> Transport {
        match self {
            BlockingStream::Tcp(_) => Transport::Tcp,
            BlockingStream::Unix(_) => Transport::Unix,
        }
    }

    fn try_clone(&self) -> io::Result<BlockingStream> {
        Ok(match self {
            BlockingStream::Tcp(s) => BlockingStream::Tcp(s.try_clone()?),
            BlockingStream::Unix(s) => BlockingStream::Unix(s.try_clone()?),
        })
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            BlockingStream::Tcp(s) => s.shutdown(how),
            BlockingStream::Unix(s) => s.shutdown(how),
        }
    }

    /// Read and write timeouts: a blocked call gives up after `timeout` (`None`: never).
    fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            BlockingStream::Tcp(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
            BlockingStream::Unix(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
        }
    }

    fn peer_label(&self) -> String {
        match self {
            BlockingStream::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "tcp peer".to_string(), |a| a.to_string()),
            BlockingStream::Unix(_) => "unix peer".to_string(),
        }
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Tcp(s) => s.read(buf),
            BlockingStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Tcp(s) => s.write(buf),
            BlockingStream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the threads share: the config, the counters, the open clients (so shutdown can reach
/// their sockets) and the stop request.
struct Shared {
    config: ServeConfig,
    framing: FramingKind,
    greeting: Option<Vec<u8>>,
    stats: SharedStats,
    /// A clone of each open client's socket, by client number.
    clients: Mutex<Slab<BlockingStream>>,
    /// Who may connect, and how many per source (locked after `clients`, never before).
    sources: Mutex<Sources>,
    /// Signalled when a client leaves and when a stop is requested.
    changed: Condvar,
    stop: Mutex<StopState>,
    stop_changed: Condvar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopState {
    Serving,
    /// Stop accepting and drain.
    Draining,
    /// A second request: close everyone now.
    Now,
}

impl Shared {
    fn stopping(&self) -> bool {
        *lock(&self.stop) != StopState::Serving
    }
}

/// Stops a [`ThreadedServer`] from another thread: the first call drains, a second closes now.
#[derive(Clone)]
pub struct ThreadedStop(Arc<Shared>);

impl ThreadedStop {
    /// Requests the stop (as SIGTERM does).
    pub fn stop(&self) {
        let mut state = lock(&self.0.stop);
        *state = match *state {
            StopState::Serving => StopState::Draining,
            _ => StopState::Now,
        };
        self.0.stop_changed.notify_all();
        drop(state);
        // Wake the main thread if it is already waiting for clients to leave.
        let _clients = lock(&self.0.clients);
        self.0.changed.notify_all();
    }
}

/// Sockets bound for the threaded model, ready to run.
pub struct ThreadedServer {
    shared: Arc<Shared>,
    listeners: Vec<BlockingListener>,
    listening: Vec<String>,
    tcp_addrs: Vec<SocketAddr>,
}

impl ThreadedServer {
    /// Binds every stream socket `config` names, or says why this model cannot serve it.
    pub fn bind(config: &ServeConfig) -> Result<ThreadedServer, StartError> {
        let names_a_service = |protocol: Option<ProtocolKind>| protocol.is_some();
        if config
            .listen_services
            .iter()
            .any(|s| names_a_service(s.protocol))
            || config
                .udp_services
                .iter()
                .any(|s| names_a_service(s.protocol))
        {
            return Err(StartError::Config(
                "--model threaded serves one service, -p: PROTOCOL@ADDR (several services in one \
                 process) is the reactor's (leave out --model)"
                    .into(),
            ));
        }
        let plan = ServicePlan::new(config, &[]);
        plan.validate(config)?;
        plan.probe(config)?;
        if !config.sources.proxy_protocol.balancers.is_empty() {
            return Err(StartError::Config(
                "--model threaded does not read PROXY headers: --proxy-protocol is the \
                 reactor's (leave out --model)"
                    .into(),
            ));
        }
        if config.protocol.is(ProtocolKind::Chat) {
            return Err(StartError::Config(
                "--model threaded cannot serve chat: a room shared by all threads needs locks \
                 and a writer per client; that is the reactor's job (leave out --model)"
                    .into(),
            ));
        }
        if config.protocol.is(ProtocolKind::Files) {
            return Err(StartError::Config(
                "--model threaded cannot serve files: one writer per name and the quota are \
                 shared by all clients; that is the reactor's job (leave out --model)"
                    .into(),
            ));
        }
        if !config.udp.is_empty() {
            return Err(StartError::Config(
                "--model threaded serves stream sockets only: UDP (-u) is one socket for all \
                 clients, served by the reactor (leave out --model)"
                    .into(),
            ));
        }
        if config.workers > 1 {
            return Err(StartError::Config(
                "--model threaded has a thread per connection already: --workers is for the reactor"
                    .into(),
            ));
        }
        if config.listen.is_empty() {
            return Err(StartError::Config("nothing to listen on".into()));
        }
        let options = BindOptions {
            backlog: config.backlog,
            reuse_port: false,
        };
        let mut listeners = Vec::new();
        let mut listening = Vec::new();
        let mut tcp_addrs = Vec::new();
        for address in &config.listen {
            match address {
                Address::Tcp(addr) => {
                    let bound =
                        listener::bind_tcp(*addr, options).map_err(|source| StartError::Bind {
                            what: format!("tcp {addr}"),
                            source,
                        })?;
                    let std_listener = TcpListener::from(OwnedFd::from(bound));
                    std_listener.set_nonblocking(false)?;
                    let local = std_listener.local_addr()?;
                    listening.push(format!("tcp {local} {}", config.protocol.name()));
                    tcp_addrs.push(local);
                    listeners.push(BlockingListener::Tcp(std_listener));
                }
                Address::Tls { .. } => {
                    return Err(StartError::Config(
                        "--model threaded does not speak TLS: tls: listeners are served by the \
                         reactor (leave out --model)"
                            .into(),
                    ));
                }
                Address::Unix(path) => {
                    let bound = listener::bind_unix(path).map_err(|source| StartError::Bind {
                        what: format!("unix {}", path.display()),
                        source,
                    })?;
                    let std_listener = UnixListener::from(OwnedFd::from(bound));
                    std_listener.set_nonblocking(false)?;
                    listening.push(format!(
                        "unix {} {}",
                        path.display(),
                        config.protocol.name()
                    ));
                    listeners.push(BlockingListener::Unix(std_listener, path.clone()));
                }
            }
        }
        let framing = config.framing();
        let greeting = config.greeting.as_ref().map(|text| {
            let mut line = text.clone();
            line.push(b'\n');
            line
        });
        let shared = Arc::new(Shared {
            config: config.clone(),
            framing,
            greeting,
            stats: SharedStats::default(),
            clients: Mutex::new(Slab::new()),
            sources: Mutex::new(Sources::new(&config.sources, &[], Instant::now())),
            changed: Condvar::new(),
            stop: Mutex::new(StopState::Serving),
            stop_changed: Condvar::new(),
        });
        Ok(ThreadedServer {
            shared,
            listeners,
            listening,
            tcp_addrs,
        })
    }

    /// What each `listening` line says after `listening `: `tcp 127.0.0.1:40123`.
    pub fn listening(&self) -> &[String] {
        &self.listening
    }

    /// The TCP addresses bound, real ports included.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// A handle that stops the server from another thread.
    pub fn stop_handle(&self) -> ThreadedStop {
        ThreadedStop(Arc::clone(&self.shared))
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Serves until stopped (SIGINT/SIGTERM if `config.handle_signals`, or a [`ThreadedStop`]),
    /// then drains the clients up to `--shutdown-timeout`.
    pub fn run(self) -> io::Result<()> {
        let shared = self.shared;
        let stop = ThreadedStop(Arc::clone(&shared));
        let signals = if shared.config.handle_signals {
            Some(catch_signals(stop.clone())?)
        } else {
            None
        };
        info!(
            "serving {} on {} socket(s), one thread per connection",
            shared.config.protocol.name(),
            self.listening.len()
        );
        // Each acceptor blocks in `accept`; the main thread keeps a clone to wake it with.
        let mut wakers = Vec::new();
        let mut acceptors = Vec::new();
        for (i, listener) in self.listeners.into_iter().enumerate() {
            wakers.push(match &listener {
                BlockingListener::Tcp(l) => BlockingListener::Tcp(l.try_clone()?),
                BlockingListener::Unix(l, p) => BlockingListener::Unix(l.try_clone()?, p.clone()),
            });
            let shared = Arc::clone(&shared);
            acceptors.push(
                std::thread::Builder::new()
                    .name(format!("echoloop-accept-{i}"))
                    .spawn(move || accept_loop(listener, &shared))?,
            );
        }

        // Wait for the stop request.
        let mut state = lock(&shared.stop);
        while *state == StopState::Serving {
            state = shared
                .stop_changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(state);
        let timeout = shared.config.shutdown_timeout;
        let deadline = Instant::now() + timeout;
        info!(
            "shutting down: {} clients to drain (up to {timeout:?})",
            lock(&shared.clients).len()
        );

        // Stop accepting: shutting a listening socket down wakes the thread blocked in `accept`.
        for waker in &wakers {
            let _ = match waker {
                BlockingListener::Tcp(l) => socket2::SockRef::from(l).shutdown(Shutdown::Both),
                BlockingListener::Unix(l, _) => socket2::SockRef::from(l).shutdown(Shutdown::Both),
            };
        }
        for acceptor in acceptors {
            let _ = acceptor.join();
        }
        for waker in wakers {
            if let BlockingListener::Unix(_, path) = waker {
                let _ = std::fs::remove_file(path);
            }
        }

        // Every client's read side: its blocked `read` returns 0, and it finishes what it owes.
        let mut clients = lock(&shared.clients);
        for (_, stream) in clients.iter() {
            let _ = stream.shutdown(Shutdown::Read);
        }
        clients = wait_for_clients(&shared, clients, deadline, true);
        if !clients.is_empty() {
            warn!(
                "shutdown deadline: {} clients closed (their threads were still writing)",
                clients.len()
            );
            for (_, stream) in clients.iter() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            clients = wait_for_clients(&shared, clients, Instant::now() + LAST_WAIT, false);
        }
        drop(clients);
        if let Some(signals) = signals {
            signals.close();
        }
        info!("stopped");
        Ok(())
    }

    /// Runs the server on a background thread; it stops and joins when the result is dropped.
    pub fn spawn(self) -> io::Result<RunningThreaded> {
        let stop = self.stop_handle();
        let shared = Arc::clone(&self.shared);
        let tcp_addrs = self.tcp_addrs.clone();
        let thread = std::thread::Builder::new()
            .name("echoloop-threaded".into())
            .spawn(move || self.run())?;
        Ok(RunningThreaded {
            stop,
            shared,
            tcp_addrs,
            thread: Some(thread),
        })
    }
}

/// A threaded server on a background thread (tests). Dropping it stops it and waits.
pub struct RunningThreaded {
    stop: ThreadedStop,
    shared: Arc<Shared>,
    tcp_addrs: Vec<SocketAddr>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RunningThreaded {
    /// The first TCP address.
    pub fn addr(&self) -> SocketAddr {
        self.tcp_addrs[0]
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Begins the drain (as SIGTERM does) and waits for the server to finish.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        self.stop.stop();
        crate::server::join_server_thread(&mut self.thread)
    }
}

impl Drop for RunningThreaded {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// SIGINT/SIGTERM stop the server (a second one: at once); SIGUSR1 logs the counters; SIGHUP is
/// logged and otherwise ignored (no UDP here, so no loop guard to refresh), as the reactor does
/// not die of it either. A thread of its own waits for them: with blocking threads there is no
/// event loop to deliver them to.
fn catch_signals(stop: ThreadedStop) -> io::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGHUP])?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("echoloop-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGUSR1 {
                    info!("{}", stop.0.stats.snapshot().summary_line());
                } else if signal == SIGHUP {
                    info!("SIGHUP: nothing to reload in the threaded model");
                } else {
                    stop.stop();
                }
            }
        })?;
    Ok(handle)
}

/// Accepts until the listener is shut down; each connection gets a thread, or a refusal.
fn accept_loop(listener: BlockingListener, shared: &Arc<Shared>) {
    loop {
        let accepted = match &listener {
            BlockingListener::Tcp(l) => l.accept().map(|(stream, peer)| {
                let _ = stream.set_nodelay(shared.config.nodelay);
                if let Some(idle) = shared.config.keepalive {
                    let _ = socket2::SockRef::from(&stream)
                        .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle));
                }
                (BlockingStream::Tcp(stream), Some(peer.ip()))
            }),
            BlockingListener::Unix(l, _) => {
                l.accept().map(|(s, _)| (BlockingStream::Unix(s), None))
            }
        };
        if shared.stopping() {
            return; // woken by the shutdown of the listener (or a connection that came too late)
        }
        match accepted {
            Ok((stream, peer)) => admit(stream, peer, shared),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and friends: the connection stays in the backlog; do not spin on it.
                let transport = listener.transport();
                shared
                    .stats
                    .update(|s| s.stream(transport).accept_errors.add(1));
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Gives a new connection from `peer` (`None`: Unix) its thread, or refuses it: its source is
/// refused or over a per-source limit, or the server is full.
fn admit(stream: BlockingStream, peer: Option<IpAddr>, shared: &Arc<Shared>) {
    let transport = stream.transport();
    let mut clients = lock(&shared.clients);
    let id = clients.vacant_key();
    let admission = lock(&shared.sources).admit_stream(peer, id, Instant::now());
    if let Admission::Refuse(reason) = admission {
        drop(clients);
        shared
            .stats
            .update(|s| s.stream(transport).count_refusal(reason));
        debug!(
            "connection from {} refused: {}",
            stream.peer_label(),
            reason.as_str()
        );
        if let Some(line) = Sources::refusal_line(reason, peer) {
            say_and_close(stream, &line);
        }
        return;
    }
    if clients.len() >= shared.config.max_connections {
        lock(&shared.sources).closed(id);
        drop(clients);
        shared
            .stats
            .update(|s| s.stream(transport).count_refusal(RefusalReason::Full));
        refuse(stream, shared.config.max_connections);
        return;
    }
    let Ok(copy) = stream.try_clone() else {
        lock(&shared.sources).closed(id);
        return; // out of descriptors: dropping the stream closes it
    };
    let inserted = clients.insert(copy);
    debug_assert_eq!(inserted, id);
    drop(clients);
    shared.stats.update(|s| {
        s.stream(transport).connections_accepted.add(1);
        s.stream(transport).connections_open.add(1);
    });
    debug!("client {id} accepted from {}", stream.peer_label());
    let for_thread = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("echoloop-client-{id}"))
        .spawn(move || serve_client(id, stream, &for_thread));
    if let Err(e) = spawned {
        warn!("client {id}: cannot start a thread: {e}");
        leave(id, transport, CloseReason::IoError, shared);
    }
}

/// One over `--max-connections`: the same line as the reactor, a FIN, and a close.
fn refuse(stream: BlockingStream, max: usize) {
    say_and_close(stream, &format!("error: server full ({max} connections)\n"));
}

/// One line to a refused client, a FIN, and a close.
fn say_and_close(mut stream: BlockingStream, line: &str) {
    let _ = stream.write_all(line.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
    // Unread input would turn the close into an RST that can destroy the line: read it first,
    // but never wait long for it.
    let _ = stream.set_timeouts(Some(Duration::from_millis(100)));
    let _ = stream.read(&mut [0u8; 4096]);
}

/// A client has left: forget its socket, count it, wake the draining main thread.
fn leave(id: usize, transport: Transport, reason: CloseReason, shared: &Shared) {
    let mut clients = lock(&shared.clients);
    if clients.try_remove(id).is_some() {
        lock(&shared.sources).closed(id);
        shared
            .stats
            .update(|s| s.stream(transport).count_close(reason));
    }
    shared.changed.notify_all();
}

/// One connection, start to end, on its own thread.
fn serve_client(id: usize, mut stream: BlockingStream, shared: &Shared) {
    let started = Instant::now();
    let transport = stream.transport();
    // This thread's own protocol value: protocol values are not `Send`.
    let mut service = match shared.config.build_service() {
        Ok(service) => service,
        Err(e) => {
            warn!("client {id}: cannot start the protocol: {e}");
            leave(id, transport, CloseReason::IoError, shared);
            return;
        }
    };
    let mut thread = ClientThread {
        id,
        transport,
        shared,
        replies: Replies::new(shared.framing),
        bytes_in: 0,
        bytes_out: 0,
    };
    let (session, reason) = thread.run(&mut stream, service.as_mut());
    // Our side ends: FIN, then read what the peer still sends until its FIN (or LINGER), so
    // that the close cannot become an RST that destroys replies still in flight.
    if reason != CloseReason::PeerClosed && reason != CloseReason::Reset {
        let _ = stream.shutdown(Shutdown::Write);
        let _ = stream.set_timeouts(Some(LINGER));
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    }
    thread.replies.reset(shared.framing);
    service.disconnect(session, reason, &mut thread.replies);
    debug!(
        "client {id} closed: {reason} (in={} out={} age={:.1}s)",
        thread.bytes_in,
        thread.bytes_out,
        started.elapsed().as_secs_f64()
    );
    drop(stream);
    leave(id, transport, reason, shared);
}

/// One client's conversation: read, decode, answer, write, until it ends.
struct ClientThread<'a> {
    id: usize,
    /// The client's socket kind, for the counters.
    transport: Transport,
    shared: &'a Shared,
    replies: Replies,
    bytes_in: u64,
    bytes_out: u64,
}

impl ClientThread<'_> {
    /// The whole conversation; returns the session (for `on_disconnect`) and why it ended.
    fn run(
        &mut self,
        stream: &mut BlockingStream,
        service: &mut dyn Service,
    ) -> (Session, CloseReason) {
        let config = &self.shared.config;
        self.replies.reset(self.shared.framing);
        if let Some(greeting) = &self.shared.greeting {
            self.replies.send_raw(greeting);
        }
        let mut session = service.connect(ClientId(self.id), SystemTime::now(), &mut self.replies);
        // The idle timeout is the socket's own: a `read` (or `write`) blocked this long fails.
        let reason = if stream.set_timeouts(config.idle_timeout).is_err() {
            CloseReason::IoError
        } else {
            match self.deliver(stream, service, &mut session) {
                Some(reason) => reason,
                None => self.converse(stream, service, &mut session),
            }
        };
        (session, reason)
    }

    /// Reads, answers and writes until the conversation ends; returns why.
    fn converse(
        &mut self,
        stream: &mut BlockingStream,
        service: &mut dyn Service,
        session: &mut Session,
    ) -> CloseReason {
        let id = self.id;
        let mut decoder = Decoder::new(self.shared.framing, self.shared.config.max_frame);
        let mut buffer = vec![0u8; READ_BUFFER_BYTES];
        loop {
            let n = match stream.read(&mut buffer) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return self.idle(stream, service, session),
                Err(e) => {
                    debug!("client {id} read failed: {e}");
                    return CloseReason::from_error(&e);
                }
            };
            trace!("client {id} read {n} bytes");
            self.bytes_in += n as u64;
            let transport = self.transport;
            self.shared.stats.update(|s| s.received(transport, n));
            self.replies.reset(self.shared.framing);
            let now = SystemTime::now();
            if n == 0 {
                // The peer's FIN (or our own shutdown of the read side, when stopping): its last
                // unfinished line is still a frame; answer it, and we are done.
                if let Some(frame) = decoder.finish() {
                    service.frame(session, frame, now, &mut self.replies);
                }
                service.end_of_input(session, &mut self.replies);
                return match self.deliver(stream, service, session) {
                    Some(reason) => reason,
                    None if self.shared.stopping() => CloseReason::Shutdown,
                    None => CloseReason::PeerClosed,
                };
            }
            let mut input = &buffer[..n];
            let mut broken = false;
            while !self.replies.closes_sender() {
                match decoder.next_frame(&mut input) {
                    Ok(Some(frame)) => service.frame(session, frame, now, &mut self.replies),
                    Ok(None) => break,
                    Err(error) => {
                        debug!("client {id} sent a bad frame: {error}");
                        service.frame_error(session, &error, &mut self.replies);
                        if decoder.kind() == FramingKind::Length {
                            broken = true;
                            break;
                        }
                    }
                }
            }
            if let Some(reason) = self.deliver(stream, service, session) {
                return reason;
            }
            if broken {
                return CloseReason::FrameError;
            }
        }
    }

    /// Writes the sender's replies, then, while the protocol asks for a refill (chargen, a
    /// download), makes more and writes it: the blocking `write` is the backpressure, and the
    /// stop request is checked between batches. `Some(reason)` if the conversation ends here.
    fn deliver(
        &mut self,
        stream: &mut BlockingStream,
        service: &mut dyn Service,
        session: &mut Session,
    ) -> Option<CloseReason> {
        loop {
            // Actions for other clients (`send_to`, `broadcast`) have nobody to go to: each
            // thread knows only its own client. That is why chat is refused.
            // (Taken out for the write, which counts into `self`; an empty `Replies` owns nothing.)
            let replies = std::mem::replace(&mut self.replies, Replies::new(self.shared.framing));
            let written = self.write(stream, replies.to_sender());
            self.replies = replies;
            if let Err(e) = written {
                return Some(if is_timeout(&e) {
                    CloseReason::IdleTimeout // the client stopped reading for a whole idle timeout
                } else {
                    CloseReason::from_error(&e)
                });
            }
            if self.replies.closes_sender() {
                return Some(CloseReason::Finished);
            }
            if !self.replies.asks_refill() {
                return None;
            }
            if self.shared.stopping() {
                return Some(CloseReason::Shutdown);
            }
            self.replies.reset(self.shared.framing);
            service.drained(session, &mut self.replies);
            if self.replies.to_sender().is_empty() && self.replies.asks_refill() {
                // As in the reactor: a refill that makes nothing asks no more (it would spin).
                let closes = self.replies.closes_sender();
                self.replies.reset(self.shared.framing);
                if closes {
                    self.replies.close();
                }
            }
        }
    }

    /// Blocks until the kernel has taken all of `bytes`: no short writes, no queue.
    fn write(&mut self, stream: &mut BlockingStream, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let result = stream.write_all(bytes);
        // `write_all` does not say how much went out before an error; count all or nothing.
        if result.is_ok() {
            trace!("client {} write {} bytes (blocking)", self.id, bytes.len());
            self.bytes_out += bytes.len() as u64;
            let transport = self.transport;
            self.shared.stats.update(|s| s.sent(transport, bytes.len()));
        }
        result
    }

    /// The read timed out: the protocol may say why (line protocols do), then the session ends.
    fn idle(
        &mut self,
        stream: &mut BlockingStream,
        service: &mut dyn Service,
        session: &mut Session,
    ) -> CloseReason {
        debug!("client {} idle: closing", self.id);
        self.replies.reset(self.shared.framing);
        service.idle_timeout(session, &mut self.replies);
        let _ = self.deliver(stream, service, session);
        CloseReason::IdleTimeout
    }
}

/// A blocking call that gave up at its timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO` say `EAGAIN`).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Waits, holding `clients` between wake-ups, until every client thread has left or `deadline`
/// has passed; with `second_stop_ends_it`, a second stop request ends the wait too.
fn wait_for_clients<'a>(
    shared: &'a Shared,
    mut clients: MutexGuard<'a, Slab<BlockingStream>>,
    deadline: Instant,
    second_stop_ends_it: bool,
) -> MutexGuard<'a, Slab<BlockingStream>> {
    while !clients.is_empty() {
        if second_stop_ends_it && *lock(&shared.stop) == StopState::Now {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        clients = shared
            .changed
            .wait_timeout(clients, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    clients
}

/// Locks, even if a thread panicked while holding the lock (the data is counters and sockets).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
