//! Tokens: how the poller names what became ready, laid out once, here.
//!
//! mio hands back a [`Token`] (a number) with each event; we chose the numbers when we registered
//! the sockets. The layout is fixed: the signal pipe, the stop waker and the alarm first, then the
//! metrics endpoint, then listeners, then UDP sockets, and from [`CLIENT_BASE`] on, clients by
//! their slab slot. [`Source`] turns a token back into what it stands for. Nobody else does
//! arithmetic on tokens.
//!
//! Next: `accept.rs`, new connections.

use mio::Token;

/// What a token stands for. The layout: fixed tokens (signals, waker, alarm), then the metrics
/// endpoint, then listeners, then UDP, then clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The signal pipe.
    Signals,
    /// The waker of a [`crate::StopHandle`].
    Waker,
    /// The alarm, set for the earliest deadline (see `net/alarm/`).
    Alarm,
    /// The `--metrics` endpoint: `0` its listener, `n` its scrape slot `n - 1` (see `metrics.rs`).
    Metrics(usize),
    /// Listener number `n`.
    Listener(usize),
    /// UDP endpoint number `n`.
    Datagram(usize),
    /// The client in slab slot `n`.
    Client(usize),
}

const METRICS_BASE: usize = 3;
const LISTENER_BASE: usize = 64;
/// Tokens for the metrics endpoint: its listener and its scrapes.
pub const METRICS_SOURCES: usize = LISTENER_BASE - METRICS_BASE;
const DATAGRAM_BASE: usize = 512;
/// The first client token: client `n` is `CLIENT_BASE + n`.
pub const CLIENT_BASE: usize = 1024;
/// Most listeners (or UDP sockets) one reactor can hold.
pub const MAX_SOCKETS_PER_KIND: usize = DATAGRAM_BASE - LISTENER_BASE;

impl From<Token> for Source {
    fn from(token: Token) -> Source {
        match token.0 {
            0 => Source::Signals,
            1 => Source::Waker,
            2 => Source::Alarm,
            n if n >= CLIENT_BASE => Source::Client(n - CLIENT_BASE),
            n if n >= DATAGRAM_BASE => Source::Datagram(n - DATAGRAM_BASE),
            n if (METRICS_BASE..LISTENER_BASE).contains(&n) => Source::Metrics(n - METRICS_BASE),
            n => Source::Listener(n - LISTENER_BASE),
        }
    }
}

impl Source {
    /// The token that stands for this source.
    pub fn token(self) -> Token {
        Token(match self {
            Source::Signals => 0,
            Source::Waker => 1,
            Source::Alarm => 2,
            Source::Metrics(n) => METRICS_BASE + n,
            Source::Listener(n) => LISTENER_BASE + n,
            Source::Datagram(n) => DATAGRAM_BASE + n,
            Source::Client(n) => CLIENT_BASE + n,
        })
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Signals => write!(f, "signals"),
            Source::Waker => write!(f, "waker"),
            Source::Alarm => write!(f, "alarm"),
            Source::Metrics(n) => write!(f, "metrics {n}"),
            Source::Listener(n) => write!(f, "listener {n}"),
            Source::Datagram(n) => write!(f, "udp {n}"),
            Source::Client(n) => write!(f, "client {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_survives_the_round_trip_through_its_token() {
        let last_metrics = METRICS_SOURCES - 1;
        let last_kind = MAX_SOCKETS_PER_KIND - 1;
        let sources = [
            Source::Signals,
            Source::Waker,
            Source::Alarm,
            Source::Metrics(0),
            Source::Metrics(last_metrics),
            Source::Listener(0),
            Source::Listener(last_kind),
            Source::Datagram(0),
            Source::Datagram(last_kind),
            Source::Client(0),
            Source::Client(1_000_000),
        ];
        for source in sources {
            assert_eq!(Source::from(source.token()), source, "{source}");
        }
        // The kinds follow one another in this order, and no token stands for two sources.
        let tokens: Vec<usize> = sources.iter().map(|s| s.token().0).collect();
        assert_eq!(&tokens[..10], &[0, 1, 2, 3, 63, 64, 511, 512, 959, 1024]);
    }
}
