//! What a server is asked to do: a plain struct that tests build without the command line.
//!
//! `cli.rs` turns `echoloop serve ...` into a [`ServeConfig`]; tests start from
//! [`ServeConfig::for_tests`] (loopback, port 0, no signal handling) and change a field or two.
//!
//! Next: `server.rs`, which binds the sockets this config names and runs the reactors.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::net::address::Address;
use crate::protocol::framing::FramingKind;
use crate::protocol::{Files, FilesConfig, Protocol, ProtocolKind};

/// Makes a fresh protocol value for one reactor: how a protocol of your own is served.
///
/// A protocol lives on its reactor's thread and need not be `Send`, so with `--workers N` each
/// reactor builds its own from this shared factory. See `examples/suffix.rs`.
#[derive(Clone)]
pub struct ProtocolFactory(Arc<dyn Fn() -> Box<dyn Protocol> + Send + Sync>);

impl ProtocolFactory {
    /// A factory that calls `make` once per reactor.
    pub fn new(make: impl Fn() -> Box<dyn Protocol> + Send + Sync + 'static) -> Self {
        ProtocolFactory(Arc::new(make))
    }

    /// A new protocol value.
    pub fn build(&self) -> Box<dyn Protocol> {
        (self.0)()
    }
}

impl fmt::Debug for ProtocolFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProtocolFactory(..)")
    }
}

/// Everything `echoloop serve` can be told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Stream listeners: TCP addresses and Unix socket paths (`-l`).
    pub listen: Vec<Address>,
    /// UDP sockets (`-u`).
    pub udp: Vec<SocketAddr>,
    /// The service (`-p`).
    pub protocol: ProtocolKind,
    /// A protocol of your own, served instead of `protocol` when set (library use only).
    pub custom: Option<ProtocolFactory>,
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
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: vec![Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 7007)))],
            udp: Vec::new(),
            protocol: ProtocolKind::Echo,
            custom: None,
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

    /// A new value of the protocol to serve: the custom one if set, else `protocol`'s.
    pub fn build_protocol(&self) -> Box<dyn Protocol> {
        match (&self.custom, &self.files) {
            (Some(factory), _) => factory.build(),
            (None, Some(files)) if self.protocol == ProtocolKind::Files => {
                Box::new(Files::new(files))
            }
            (None, _) => self.protocol.build(),
        }
    }

    /// The framing in force: the one asked for, else the protocol's default.
    pub fn framing(&self) -> FramingKind {
        self.framing
            .unwrap_or_else(|| self.build_protocol().default_framing())
    }
}
