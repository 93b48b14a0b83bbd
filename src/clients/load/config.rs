//! What a load run is asked to do: a plain struct that tests build without the command line.
//!
//! `cli/load.rs` turns `echoloop load ...` into a [`LoadConfig`]; tests start from
//! [`LoadConfig::for_tests`] (one thread, two connections, half a second) and change a field or two.
//!
//! Next: `message.rs`, what each request carries and how a reply is checked.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use crate::net::address::Address;
use crate::protocol::framing::FramingKind;

/// Where the load goes: a stream server (TCP or Unix) or a UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// TCP `HOST:PORT` / `[V6]:PORT`, or `unix:/path`.
    Stream(Address),
    /// `--udp HOST:PORT`: one datagram per message, one datagram back.
    Datagram(SocketAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Stream(address) => write!(f, "{address}"),
            Target::Datagram(addr) => write!(f, "udp {addr}"),
        }
    }
}

/// What a correct reply looks like (`--protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReplyKind {
    /// The payload back, byte for byte.
    Echo,
    /// `[<ctime>] payload`: the tutorial timestamp server.
    Timestamp,
}

/// Everything `echoloop load` can be told.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server.
    pub target: Target,
    /// Connections to open, over all threads (`-c`). With `--udp`: connected UDP sockets.
    pub connections: usize,
    /// How long traffic is measured (`-d`), after the connections are made and the warmup is over.
    pub duration: Duration,
    /// Traffic before the measurement starts, not counted (`--warmup`).
    pub warmup: Duration,
    /// Payload bytes per message (`-s`), framing not included.
    pub size: usize,
    /// Messages in flight per connection (`--pipeline`).
    pub pipeline: usize,
    /// Total messages per second over all connections (`--rate`): open loop. `None`: closed loop.
    pub rate: Option<f64>,
    /// New connections per second over all threads (`--connect-rate`). `None`: as fast as they go.
    pub connect_rate: Option<f64>,
    /// Independent client reactors, one thread each (`--threads`).
    pub threads: usize,
    /// How requests are framed and replies cut (`--framing`). Unused with `--udp`.
    pub framing: FramingKind,
    /// What a correct reply looks like (`--protocol`).
    pub reply: ReplyKind,
    /// Local addresses to spread connections over (`--source-addrs`); empty: the kernel picks.
    pub source_addrs: Vec<IpAddr>,
    /// Open the connections and keep them idle (`--hold`): no messages at all.
    pub hold: bool,
    /// Draw the live line on stderr (only ever on a terminal).
    pub live: bool,
}

impl LoadConfig {
    /// Small and short, for tests: 2 connections on 1 thread for 0.5 s, 64-byte echo, raw framing.
    pub fn for_tests(target: Target) -> Self {
        LoadConfig {
            target,
            connections: 2,
            duration: Duration::from_millis(500),
            warmup: Duration::ZERO,
            size: 64,
            pipeline: 1,
            rate: None,
            connect_rate: None,
            threads: 1,
            framing: FramingKind::Raw,
            reply: ReplyKind::Echo,
            source_addrs: Vec::new(),
            hold: false,
            live: false,
        }
    }

    /// The number of reactors actually started: never more than there are connections.
    pub fn reactors(&self) -> usize {
        self.threads.clamp(1, self.connections.max(1))
    }

    /// Whether replies are cut by a [`crate::protocol::framing::Decoder`] (line, length) rather than checked as
    /// a byte stream (raw echo) or one per datagram (UDP).
    pub fn is_datagram(&self) -> bool {
        matches!(self.target, Target::Datagram(_))
    }
}
