//! What a load run is asked to do: a plain struct that tests build without the command line.
//!
//! `cli/load.rs` turns `echoloop load ...` into a [`LoadConfig`]; tests start from
//! [`LoadConfig::for_tests`] (one thread, two connections, half a second) and change a field or two.
//!
//! Next: `message.rs`, what each request carries and how a reply is checked.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::message::Payloads;
use crate::clients::tls::TlsOptions;
use crate::net::address::Address;
use crate::protocol::framing::FramingKind;

/// The percentiles reported unless `--percentiles` says otherwise.
pub const DEFAULT_PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

/// Where the load goes: a stream server (TCP or Unix) or a UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// TCP `HOST:PORT` / `[V6]:PORT`, or `unix:/path`.
    Stream(Address),
    /// `--udp HOST:PORT`: one datagram per message, one datagram back.
    Datagram(SocketAddr),
}

impl Target {
    /// Whether TLS is spoken on top (`tls:HOST:PORT`).
    pub fn is_tls(&self) -> bool {
        matches!(self, Target::Stream(address) if address.is_tls())
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReplyKind {
    /// The payload back, byte for byte.
    Echo,
    /// `[<ctime>] payload`: the tutorial timestamp server.
    Timestamp,
    /// Send only (RFC 863): nothing comes back; what counts is what the server accepts.
    Discard,
    /// Receive only (RFC 864): nothing is sent; every byte is checked against the pattern.
    Chargen,
}

impl ReplyKind {
    /// Whether a reply is expected for every message sent (echo, timestamp).
    pub fn answers_each_message(self) -> bool {
        matches!(self, ReplyKind::Echo | ReplyKind::Timestamp)
    }
}

/// Everything `echoloop load` can be told.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server.
    pub target: Target,
    /// Connections to open, over all threads (`-c`). With `--udp`: connected UDP sockets.
    pub connections: usize,
    /// How long traffic is measured (`-d`), after the connections are made and the warmup is over.
    /// `None`: no time limit (`-n` alone).
    pub duration: Option<Duration>,
    /// Stop after this many replies in total (`-n`); with a duration, whichever comes first.
    pub messages: Option<u64>,
    /// A reply later than this after its message was sent is a timeout, and replies still owed
    /// when sending stops are waited for this long (`--timeout`).
    pub timeout: Duration,
    /// UDP: the run fails above this share of lost datagrams, in percent (`--max-loss`).
    pub max_loss_percent: f64,
    /// Latency percentiles to report (`--percentiles`), e.g. `[50.0, 90.0, 99.0, 99.9]`.
    pub percentiles: Vec<f64>,
    /// Length of one row of the results over time (`--interval`).
    pub interval: Duration,
    /// Traffic before the measurement starts, not counted (`--warmup`).
    pub warmup: Duration,
    /// What each message carries (`-s`: generated payloads of that size; `--payload-file`).
    pub payloads: Payloads,
    /// Messages in flight per connection (`--pipeline`). Raw timestamp over a stream keeps one
    /// whatever this says (see [`LoadConfig::in_flight_limit`]).
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
    /// Close each connection after this many messages (replies in) and connect again
    /// (`--reconnect-after`); `None`: a connection lasts the run.
    pub reconnect_after: Option<u64>,
    /// `tls:` targets: whom to trust, and whether handshakes may resume (`--tls-ca`,
    /// `--insecure`, `--tls-resume`).
    pub tls: TlsOptions,
}

impl LoadConfig {
    /// Small and short, for tests: 2 connections on 1 thread for 0.5 s, 64-byte echo, raw framing,
    /// a 2 s timeout.
    pub fn for_tests(target: Target) -> Self {
        LoadConfig {
            target,
            connections: 2,
            duration: Some(Duration::from_millis(500)),
            messages: None,
            timeout: Duration::from_secs(2),
            max_loss_percent: 1.0,
            percentiles: DEFAULT_PERCENTILES.to_vec(),
            interval: Duration::from_secs(1),
            warmup: Duration::ZERO,
            payloads: Payloads::Generated { size: 64 },
            pipeline: 1,
            rate: None,
            connect_rate: None,
            threads: 1,
            framing: FramingKind::Raw,
            reply: ReplyKind::Echo,
            source_addrs: Vec::new(),
            hold: false,
            live: false,
            reconnect_after: None,
            tls: TlsOptions::default(),
        }
    }

    /// The number of reactors actually started: never more than there are connections.
    pub fn reactors(&self) -> usize {
        self.threads.clamp(1, self.connections.max(1))
    }

    /// Whether the target is a UDP server: one message per datagram, one datagram back.
    pub fn is_datagram(&self) -> bool {
        matches!(self.target, Target::Datagram(_))
    }

    /// Whether each message is answered by `[<ctime>] ` and the bytes as the server read them,
    /// with nothing that says where a reply ends: timestamp in raw framing over a stream.
    pub fn is_raw_timestamp(&self) -> bool {
        self.reply == ReplyKind::Timestamp
            && self.framing == FramingKind::Raw
            && matches!(self.target, Target::Stream(_))
    }

    /// Messages in flight per connection: `--pipeline`, except for raw timestamp, which keeps
    /// one (its replies can be told apart only by all coming before the next message is sent).
    /// The command line refuses `--pipeline` above 1 there rather than ignore it.
    pub fn in_flight_limit(&self) -> usize {
        if self.is_raw_timestamp() {
            1
        } else {
            self.pipeline.max(1)
        }
    }

    /// The generated payload size, or the longest given payload.
    pub fn size(&self) -> usize {
        self.payloads.max_size()
    }
}
