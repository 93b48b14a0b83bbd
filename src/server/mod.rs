//! From a config to running reactors: bind every socket, then run one reactor per worker.
//!
//! Binding happens up front, on the caller's thread, so that "address in use" is reported before
//! anything runs and the real port of a `:0` address is known at once (the `listening` lines, and
//! tests that connect to it). Each worker then gets its own copy of every socket, its own poller
//! and its own slab: with `--workers N`, the TCP and UDP sockets are bound N times with
//! `SO_REUSEPORT` (`SO_REUSEPORT_LB` on FreeBSD), and the kernel spreads new connections across
//! them (on Linux and FreeBSD; macOS lets them share the port but does not spread). Workers share
//! nothing on the hot path; each is the same single-threaded reactor, so everything said about one
//! holds for each. (A Unix socket cannot be bound twice; its one listening descriptor is duplicated instead.)
//!
//! [`RunningServer`] runs the whole thing on a background thread and stops and joins it when
//! dropped: that is what tests use.
//!
//! Each socket serves one service: the one its address names (`-l daytime@0.0.0.0:13`), or `-p`
//! (`services.rs` works out which, once, as a [`ServicePlan`] every worker gets a copy of). The
//! `listening` lines say which as a fourth word: `listening tcp 0.0.0.0:13 daytime`.
//!
//! Sockets inherited from systemd (socket activation, see `activation.rs`) join the ones bound
//! here; each serves the service its `FileDescriptorName=` names (mapped by the caller). They cannot be bound again per worker, so each worker gets a duplicate descriptor of the
//! same socket: the workers then share that socket's one accept queue (or receive queue), and the
//! kernel wakes whichever is waiting, rather than spreading clients evenly as `SO_REUSEPORT` does.
//! The `--metrics` listener is bound once, for worker 0, which reports every worker's counters;
//! bound to an address that is not loopback, it logs a warning that it has no authentication.
//!
//! Next: `server/reactor/mod.rs`, the loop itself.

pub mod config;
pub mod connection;
pub mod metrics;
pub mod rate;
pub mod reactor;
pub mod services;
pub mod signals;
pub mod sources;
pub mod stats;
pub mod threaded;
pub mod timers;
pub mod udp;
pub mod watchdog;

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::Poll;

use crate::error::StartError;
use crate::net::activation::InheritedSocket;
use crate::net::address::Address;
use crate::net::listener::{self, BindOptions, Listener};
use crate::net::notify;
use crate::net::tls::{ServerTls, TlsFiles};
use crate::server::config::{ServeConfig, ServiceAddress};
use crate::server::metrics::MetricsEndpoint;
use crate::server::reactor::{MAX_SOCKETS_PER_KIND, Reactor, ReactorSockets};
use crate::server::services::{ServicePlan, SocketKind};
use crate::server::signals::StopHandle;
use crate::server::stats::{ServerStats, StatsSnapshot};
use crate::server::watchdog::{Heartbeat, Ping, Watchdog, Watched};

/// Sockets bound and reactors ready to run.
pub struct Server {
    config: ServeConfig,
    workers: Vec<(Poll, ReactorSockets)>,
    stats: ServerStats,
    stop_requested: Arc<AtomicBool>,
    stop: StopHandle,
    listening: Vec<String>,
    tcp_addrs: Vec<SocketAddr>,
    udp_addrs: Vec<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    /// Each worker's heartbeat and waker, for systemd's watchdog (`watchdog.rs`).
    watched: Vec<Watched>,
    /// A watchdog asked for by [`Server::set_watchdog`]: its interval and its ping.
    watchdog: Option<(Duration, Ping)>,
}

impl Server {
    /// Binds every socket `config` names, once per worker.
    pub fn bind(config: &ServeConfig) -> Result<Server, StartError> {
        Server::bind_with(config, Vec::new())
    }

    /// Binds every socket `config` names, once per worker, and serves the `inherited` sockets
    /// too (socket activation: [`crate::net::activation::inherited_sockets`]), each with the
    /// service it names (`None`: `-p`).
    pub fn bind_with(
        config: &ServeConfig,
        inherited: Vec<ServiceAddress<InheritedSocket>>,
    ) -> Result<Server, StartError> {
        let kinds: Vec<(Option<crate::protocol::ProtocolKind>, SocketKind)> = inherited
            .iter()
            .map(|s| {
                let kind = match s.address {
                    InheritedSocket::Udp(_) => SocketKind::Datagram,
                    _ => SocketKind::Stream,
                };
                (s.protocol, kind)
            })
            .collect();
        let plan = ServicePlan::new(config, &kinds);
        if !plan.has_stream() && !plan.has_udp() {
            return Err(StartError::Config("nothing to listen on".into()));
        }
        plan.validate(config)?;
        let tls = load_tls(config)?;
        plan.probe(config)?;
        if plan.stream_services().len() > MAX_SOCKETS_PER_KIND
            || plan.datagram_services().len() > MAX_SOCKETS_PER_KIND
        {
            return Err(StartError::Config(format!(
                "at most {MAX_SOCKETS_PER_KIND} listeners of each kind"
            )));
        }
        let workers = config.workers.max(1);
        let reuse_port = workers > 1 || config.reuse_port;
        let options = BindOptions {
            backlog: config.backlog,
            reuse_port,
        };
        let mut listening = Vec::new();
        let mut tcp_addrs = Vec::new();
        let mut udp_addrs = Vec::new();
        let mut per_worker: Vec<ReactorSockets> = (0..workers)
            .map(|_| ReactorSockets {
                listeners: Vec::new(),
                tls_listeners: Vec::new(),
                tls: tls.clone(),
                datagrams: Vec::new(),
                signals: None,
                metrics: None,
                all_stats: None,
                waker: None,
                heartbeat: Arc::new(Heartbeat::new()),
                watchdog: None,
                services: plan.clone(),
            })
            .collect();
        // Each `listening` line ends with the service's name, taken in binding order.
        let names = plan.names();
        let mut stream_names = plan.stream_services().iter().map(|&i| names[i]);
        let mut datagram_names = plan.datagram_services().iter().map(|&i| names[i]);

        for ServiceAddress {
            address: socket, ..
        } in &inherited
        {
            // mio needs non-blocking sockets; `inherited_sockets` made systemd's so, but a
            // library caller's may not be (the flag is shared by every copy).
            for sockets in per_worker.iter_mut() {
                match socket.try_clone()? {
                    InheritedSocket::Tcp(l) => {
                        l.set_nonblocking(true)?;
                        sockets
                            .listeners
                            .push(Listener::Tcp(mio::net::TcpListener::from_std(l)));
                        sockets.tls_listeners.push(false);
                    }
                    // The socket file belongs to the socket unit: never removed by us.
                    InheritedSocket::Unix(l, path) => {
                        l.set_nonblocking(true)?;
                        sockets.listeners.push(Listener::Unix(
                            mio::net::UnixListener::from_std(l),
                            path,
                            false,
                        ));
                        sockets.tls_listeners.push(false);
                    }
                    InheritedSocket::Udp(s) => {
                        s.set_nonblocking(true)?;
                        sockets.datagrams.push(mio::net::UdpSocket::from_std(s))
                    }
                }
            }
            let name = match socket {
                InheritedSocket::Tcp(l) => {
                    tcp_addrs.push(l.local_addr()?);
                    stream_names.next()
                }
                InheritedSocket::Udp(s) => {
                    udp_addrs.push(s.local_addr()?);
                    datagram_names.next()
                }
                InheritedSocket::Unix(..) => stream_names.next(),
            };
            listening.push(format!("{} {}", socket.describe(), name.unwrap_or("?")));
        }
        drop(inherited); // each worker holds its own duplicate

        let streams = config
            .listen
            .iter()
            .chain(config.listen_services.iter().map(|s| &s.address));
        for address in streams {
            let name = stream_names.next().unwrap_or("?");
            match address {
                Address::Tcp(asked) | Address::Tls { addr: asked, .. } => {
                    // The first bind settles the port (`:0` picks one); the others reuse it.
                    let mut addr = *asked;
                    for sockets in per_worker.iter_mut() {
                        let bound = listener::bind_tcp(addr, options).map_err(|source| {
                            StartError::Bind {
                                what: format!("tcp {addr}"),
                                source,
                            }
                        })?;
                        addr = bound.local_addr()?;
                        sockets.listeners.push(Listener::Tcp(bound));
                        sockets.tls_listeners.push(address.is_tls());
                    }
                    let kind = if address.is_tls() { "tls" } else { "tcp" };
                    listening.push(format!("{kind} {addr} {name}"));
                    tcp_addrs.push(addr);
                }
                Address::Unix(path) => {
                    let bound = listener::bind_unix(path).map_err(|source| StartError::Bind {
                        what: format!("unix {}", path.display()),
                        source,
                    })?;
                    let std_listener = StdUnixListener::from(std::os::fd::OwnedFd::from(bound));
                    for (i, sockets) in per_worker.iter_mut().enumerate() {
                        let copy = std_listener.try_clone()?;
                        copy.set_nonblocking(true)?;
                        sockets.listeners.push(Listener::Unix(
                            mio::net::UnixListener::from_std(copy),
                            path.clone(),
                            i == 0, // only one copy removes the file
                        ));
                        sockets.tls_listeners.push(false);
                    }
                    listening.push(format!("unix {} {name}", path.display()));
                }
            }
        }
        let datagrams = config
            .udp
            .iter()
            .chain(config.udp_services.iter().map(|s| &s.address));
        for asked in datagrams {
            let name = datagram_names.next().unwrap_or("?");
            let mut addr = *asked;
            for sockets in per_worker.iter_mut() {
                let bound =
                    listener::bind_udp(addr, reuse_port).map_err(|source| StartError::Bind {
                        what: format!("udp {addr}"),
                        source,
                    })?;
                addr = bound.local_addr()?;
                sockets.datagrams.push(bound);
            }
            listening.push(format!("udp {addr} {name}"));
            udp_addrs.push(addr);
        }

        let stats = ServerStats::new(names.clone(), workers);
        let mut metrics_addr = None;
        if let Some(asked) = config.metrics {
            let bound = listener::bind_tcp(
                asked,
                BindOptions {
                    backlog: 128,
                    reuse_port: false,
                },
            )
            .map_err(|source| StartError::Bind {
                what: format!("metrics {asked}"),
                source,
            })?;
            let endpoint = MetricsEndpoint::new(bound, stats.clone());
            let addr = endpoint.local_addr()?;
            if let Some(warning) = metrics::exposure_warning(addr) {
                warn!("{warning}");
            }
            listening.push(format!("metrics {addr}"));
            metrics_addr = Some(addr);
            per_worker[0].metrics = Some(endpoint);
        }
        per_worker[0].all_stats = Some(stats.clone());

        let stop_requested = Arc::new(AtomicBool::new(false));
        let mut wakers = Vec::new();
        let mut watched = Vec::new();
        let mut workers_ready = Vec::new();
        for mut sockets in per_worker {
            let poll = Poll::new()?;
            let waker = Reactor::waker(&poll)?;
            wakers.push(Arc::clone(&waker));
            watched.push(Watched {
                heartbeat: Arc::clone(&sockets.heartbeat),
                waker: Arc::clone(&waker),
            });
            sockets.waker = Some(waker);
            if config.handle_signals {
                sockets.signals = Some(Reactor::signals(&poll)?);
            }
            workers_ready.push((poll, sockets));
        }
        Ok(Server {
            config: config.clone(),
            stats,
            stop: StopHandle::new(Arc::clone(&stop_requested), wakers),
            stop_requested,
            workers: workers_ready,
            listening,
            tcp_addrs,
            udp_addrs,
            metrics_addr,
            watched,
            watchdog: None,
        })
    }

    /// What each bound socket's `listening` line says after `listening `: `tcp 127.0.0.1:40123
    /// echo` (the service last).
    pub fn listening(&self) -> &[String] {
        &self.listening
    }

    /// The TCP addresses bound, real ports included.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The UDP addresses bound, real ports included.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// The `--metrics` address bound, real port included.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle that stops the server from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The workers' counters.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// Has worker 0 call `ping` every `interval / 2` while every worker turns (each has turned
    /// within `interval`): systemd's watchdog with another destination. A daemon needs none of
    /// this: [`Server::run`] pings systemd by itself when `WATCHDOG_USEC` asks for it.
    pub fn set_watchdog(&mut self, interval: Duration, ping: impl FnMut() + Send + 'static) {
        self.watchdog = Some((interval, Box::new(ping)));
    }

    /// Runs every worker until shutdown has drained: worker 0 on this thread, the others on
    /// threads of their own. Returns the first error a worker met.
    pub fn run(mut self) -> io::Result<()> {
        let count = self.workers.len();
        info!(
            "serving {} on {} socket(s) with {} worker(s)",
            self.stats.services().join(", "),
            self.listening.len(),
            count
        );
        // systemd's watchdog, for a daemon whose unit asks for it: checked on worker 0's loop.
        let systemd = || {
            let daemon = notify::watchdog_interval().filter(|_| self.config.handle_signals);
            daemon.map(|interval| (interval, Box::new(notify::notify_watchdog) as Ping))
        };
        if let Some((interval, ping)) = self.watchdog.take().or_else(systemd) {
            let watched = std::mem::take(&mut self.watched);
            self.workers[0].1.watchdog =
                Some(Watchdog::start(watched, interval, ping, Instant::now()));
        }
        let mut threads = Vec::new();
        let mut first = None;
        let per_worker = self.stats.workers().to_vec();
        for (i, ((poll, sockets), stats)) in self.workers.into_iter().zip(per_worker).enumerate() {
            let name = if count > 1 {
                format!("worker {i}: ")
            } else {
                String::new()
            };
            let config = self.config.clone();
            let stop_requested = Arc::clone(&self.stop_requested);
            let stop = self.stop.clone();
            let job = move || -> io::Result<()> {
                let result = Reactor::new(&config, poll, sockets, stop_requested, stats, name)
                    .and_then(|mut reactor| reactor.run());
                if let Err(e) = &result {
                    log::error!("a worker cannot go on: {e}");
                    stop.stop(); // the others drain and stop too
                }
                result
            };
            if i == 0 {
                first = Some(job);
            } else {
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("echoloop-worker-{i}"))
                        .spawn(job)?,
                );
            }
        }
        let mut result = first.map_or(Ok(()), |job| job());
        for thread in threads {
            let joined = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a worker panicked")));
            result = result.and(joined);
        }
        result
    }

    /// Runs the server on a background thread; it stops and joins when the result is dropped.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let stop = self.stop.clone();
        let stats = self.stats();
        let tcp_addrs = self.tcp_addrs.clone();
        let udp_addrs = self.udp_addrs.clone();
        let metrics_addr = self.metrics_addr;
        let thread = std::thread::Builder::new()
            .name("echoloop-server".into())
            .spawn(move || self.run())?;
        Ok(RunningServer {
            stop,
            stats,
            tcp_addrs,
            udp_addrs,
            metrics_addr,
            thread: Some(thread),
        })
    }
}

/// A server running on a background thread (tests, examples). Dropping it stops it and waits.
#[derive(Debug)]
pub struct RunningServer {
    stop: StopHandle,
    stats: ServerStats,
    tcp_addrs: Vec<SocketAddr>,
    udp_addrs: Vec<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// The first TCP address (most tests have one).
    pub fn addr(&self) -> SocketAddr {
        self.tcp_addrs[0]
    }

    /// The TCP addresses bound.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// The UDP addresses bound.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// The `--metrics` address, if one was asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The counters now, every worker's added up.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The counters now, one snapshot per worker.
    pub fn worker_stats(&self) -> Vec<StatsSnapshot> {
        self.stats.per_worker()
    }

    /// A handle to begin the drain without waiting for it.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Begins the drain (as SIGTERM does) and waits for the server to finish.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        self.stop.stop();
        join_server_thread(&mut self.thread)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Waits for a background server thread (once; later calls return `Ok`), turning a panic into
/// an error. Shared by [`RunningServer`] and the threaded model's handle.
pub(crate) fn join_server_thread(
    thread: &mut Option<JoinHandle<io::Result<()>>>,
) -> io::Result<()> {
    match thread.take() {
        Some(thread) => thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the server thread panicked"))),
        None => Ok(()),
    }
}

/// The certificate and key of the `tls:` listeners, read now so that a bad file stops the
/// start (exit 2, the file named) before any `listening` line; `None` without such listeners.
fn load_tls(config: &ServeConfig) -> Result<Option<ServerTls>, StartError> {
    if !config.has_tls_listener() {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        return Err(StartError::Config(
            "tls: listeners need --tls-cert FILE and --tls-key FILE".into(),
        ));
    };
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: config.tls.client_ca.clone(),
    };
    ServerTls::load(files)
        .map(Some)
        .map_err(|e| StartError::Config(e.to_string()))
}
