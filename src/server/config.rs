//! What a server is asked to do: a plain struct that tests build without the command line.
//!
//! `cli/serve.rs` turns `echoloop serve ...` into a [`ServeConfig`]; tests start from
//! [`ServeConfig::for_tests`] (loopback, port 0, no signal handling) and change a field or two.
//!
//! Next: `server/mod.rs`, which binds the sockets this config names and runs the reactors.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::StartError;
use crate::net::address::Address;
use crate::protocol::framing::FramingKind;
use crate::protocol::{FilesConfig, ProtocolFactory, ProtocolKind, Service};
use crate::server::sources::SourcesConfig;

/// Which protocol a server speaks: one of echoloop's own, or one of yours.
#[derive(Debug, Clone)]
pub enum ProtocolChoice {
    /// A service echoloop ships (`-p`).
    Builtin(ProtocolKind),
    /// A protocol of your own (library use; see `examples/suffix.rs`).
    Custom(ProtocolFactory),
}

impl ProtocolChoice {
    /// Its name, for logs: `echo`, or a custom protocol's own [`crate::Protocol::NAME`].
    pub fn name(&self) -> &'static str {
        match self {
            ProtocolChoice::Builtin(kind) => kind.name(),
            ProtocolChoice::Custom(factory) => factory.name(),
        }
    }

    /// The framing used when `--framing` is not given, known without building the protocol.
    pub fn default_framing(&self) -> FramingKind {
        match self {
            ProtocolChoice::Builtin(kind) => kind.default_framing(),
            ProtocolChoice::Custom(factory) => factory.default_framing(),
        }
    }

    /// Whether this is the built-in `kind`.
    pub fn is(&self, kind: ProtocolKind) -> bool {
        matches!(self, ProtocolChoice::Builtin(k) if *k == kind)
    }
}

impl From<ProtocolKind> for ProtocolChoice {
    fn from(kind: ProtocolKind) -> Self {
        ProtocolChoice::Builtin(kind)
    }
}

impl From<ProtocolFactory> for ProtocolChoice {
    fn from(factory: ProtocolFactory) -> Self {
        ProtocolChoice::Custom(factory)
    }
}

/// Everything `echoloop serve` can be told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Stream listeners: TCP addresses and Unix socket paths (`-l`).
    pub listen: Vec<Address>,
    /// UDP sockets (`-u`).
    pub udp: Vec<SocketAddr>,
    /// The service (`-p`), or a protocol of your own.
    pub protocol: ProtocolChoice,
    /// How frames are cut; `None`: the protocol's default.
    pub framing: Option<FramingKind>,
    /// Largest line or frame accepted, in bytes.
    pub max_frame: usize,
    /// Connections held at once (per worker); one more is refused with an `error:` line.
    pub max_connections: usize,
    /// Close a connection with no traffic for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Outbound queue high-water mark per client, in bytes.
    pub queue_limit: usize,
    /// A line sent to each new stream client before anything else.
    pub greeting: Option<Vec<u8>>,
    /// Independent reactors sharing the listening ports (SO_REUSEPORT).
    pub workers: usize,
    /// Set SO_REUSEPORT even with one worker, so that several echoloop *processes* can share the
    /// port (each with its own open-file limit). Always on with more than one worker.
    pub reuse_port: bool,
    /// How long a shutdown may spend flushing queues.
    pub shutdown_timeout: Duration,
    /// Listen backlog.
    pub backlog: i32,
    /// TCP_NODELAY on accepted sockets.
    pub nodelay: bool,
    /// TCP keepalive idle time on accepted sockets; `None`: off.
    pub keepalive: Option<Duration>,
    /// Log a line of counters this often; `None`: only on SIGUSR1.
    pub stats_interval: Option<Duration>,
    /// Install SIGINT/SIGTERM/SIGUSR1 handlers (the daemon does; in-process test servers do not).
    pub handle_signals: bool,
    /// Serve `GET /metrics` (Prometheus) on this TCP address (`--metrics`); `None`: off.
    pub metrics: Option<SocketAddr>,
    /// The folder and limits of `-p files` (`--dir`, `--max-file-bytes`, `--dir-quota`).
    pub files: Option<FilesConfig>,
    /// Most bytes all connections' buffers of one reactor may hold (`--max-memory`, per worker).
    pub max_memory: usize,
    /// Chat lines per second per untrusted member (`--chat-rate`, bursts of twice that);
    /// `None`: no flood control.
    pub chat_rate: Option<u32>,
    /// `SO_SNDBUF` for accepted stream sockets (`--sndbuf`); `None`: the kernel's default.
    pub sndbuf: Option<usize>,
    /// `SO_RCVBUF` for accepted stream sockets (`--rcvbuf`); `None`: the kernel's default.
    pub rcvbuf: Option<usize>,
    /// `SO_RCVBUF` asked for each UDP socket (`--udp-rcvbuf`, default 4 MiB); `None`: the
    /// kernel's default (~200 KiB, a few hundred small datagrams).
    pub udp_rcvbuf: Option<usize>,
    /// Who may talk to us and how much: `--trusted`, `--allow`, `--deny`, `--udp-rate-limit`,
    /// `--max-per-source`, `--accept-rate` (see `server/sources/`).
    pub sources: SourcesConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: vec![Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 7007)))],
            udp: Vec::new(),
            protocol: ProtocolKind::Echo.into(),
            framing: None,
            max_frame: 64 * 1024,
            max_connections: 10_000,
            idle_timeout: Some(Duration::from_secs(300)),
            queue_limit: 1024 * 1024,
            greeting: None,
            workers: 1,
            reuse_port: false,
            shutdown_timeout: Duration::from_secs(5),
            backlog: 1024,
            nodelay: true,
            keepalive: None,
            stats_interval: None,
            handle_signals: true,
            metrics: None,
            files: None,
            max_memory: 1 << 30,
            chat_rate: Some(20),
            sndbuf: None,
            rcvbuf: None,
            udp_rcvbuf: Some(4 << 20),
            sources: SourcesConfig::default(),
        }
    }
}

impl ServeConfig {
    /// The defaults, but on `127.0.0.1:0` and without signal handlers: for in-process servers.
    pub fn for_tests() -> Self {
        ServeConfig {
            listen: vec![Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)))],
            handle_signals: false,
            ..ServeConfig::default()
        }
    }

    /// The framing in force: the one asked for, else the protocol's default.
    pub fn framing(&self) -> FramingKind {
        self.framing
            .unwrap_or_else(|| self.protocol.default_framing())
    }

    /// Checks that the settings fit together; every error here is a usage error (exit 2). Only
    /// `-p files` has rules of its own: a folder (`--dir`), stream sockets only, no greeting (it
    /// would break the tutorial client), its own framing, one worker (its busy set and quota are
    /// per reactor). Whether the folder opens is checked when the server binds.
    pub fn validate(&self) -> Result<(), StartError> {
        if !self.protocol.is(ProtocolKind::Files) {
            return Ok(());
        }
        let refuse = |what: &str| Err(StartError::Config(format!("-p files: {what}")));
        if !self.udp.is_empty() {
            return refuse("serves TCP and Unix sockets only, not UDP (-u)");
        }
        if self.framing.is_some() {
            return refuse("has its own framing (no --framing)");
        }
        if self.greeting.is_some() {
            return refuse("takes no --greeting (it would break the tutorial client)");
        }
        if self.workers > 1 {
            return refuse("runs on one worker (its busy set and quota are per reactor)");
        }
        if self.files.is_none() {
            return refuse("needs --dir DIR");
        }
        Ok(())
    }

    /// Builds the protocol once and drops it, so that what it needs from the system (the files
    /// service's folder) fails now, before the `listening` lines, and not in a worker after
    /// them. A custom protocol's factory is not called: it is yours, and counted in tests.
    pub(crate) fn probe_service(&self) -> io::Result<()> {
        match &self.protocol {
            ProtocolChoice::Builtin(kind) => kind.build(self.files.as_ref()).map(drop),
            ProtocolChoice::Custom(_) => Ok(()),
        }
    }

    /// A new value of the protocol to serve, for one reactor (or one thread of the threaded
    /// model). Fails only if `-p files` cannot open its folder.
    pub(crate) fn build_service(&self) -> io::Result<Box<dyn Service>> {
        match &self.protocol {
            ProtocolChoice::Builtin(kind) => kind.build(self.files.as_ref()),
            ProtocolChoice::Custom(factory) => Ok(factory.build()),
        }
    }
}
