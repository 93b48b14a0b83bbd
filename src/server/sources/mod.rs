//! Who may talk to us, and how much: the rules a server needs on a public address.
//!
//! On loopback every peer is us. On a public address a peer may be anyone, and for UDP it may be
//! *anyone pretending to be anyone*: a datagram's source address is whatever its sender wrote. Four
//! ideas keep one peer from hurting the server, the other clients, or a third party:
//!
//! 1. **Never start a loop** (`guard.rs`). A datagram "from" our own socket, from a service port
//!    below 1024, or from a broadcast address is never answered: answering would start an
//!    endless ping-pong between two servers, or aim our replies at many hosts at once.
//! 2. **Never amplify much** (`buckets.rs`, and the reply cap in `server/udp.rs`). An attacker
//!    who forges a victim's address makes us send our replies to the victim. Each group of
//!    source addresses gets at most `--udp-rate-limit` replies a second (a token bucket per IPv4
//!    /24 or IPv6 /56, in a table of fixed size), and no reply is larger than four times its
//!    request plus 512 bytes.
//! 3. **Let in only whom you mean to** (`access.rs`): `--allow` and `--deny` lists, and a
//!    `--trusted` list (loopback by default) exempt from the per-source limits.
//! 4. **Share the slots** (`per_source.rs`, `buckets.rs` again): at most `--max-per-source`
//!    connections at once and `--accept-rate` new ones a second from one source (one IPv4
//!    address, one IPv6 /64), so that one host cannot take every `--max-connections` slot.
//! 5. **Know who is behind the balancer** (`balancers.rs`): a connection from a
//!    `--proxy-protocol` peer is judged only once its PROXY header is read, by the address the
//!    header carries; the rules above then apply to the real client.
//!
//! Addresses are compared as one number each (`cidr.rs`): `::ffff:192.0.2.1`, as a dual-stack
//! socket reports an IPv4 peer, is `192.0.2.1` to every rule. Each reactor owns one
//! [`Sources`] (`reactor/mod.rs`): the tables are per worker, like `--max-connections`, and no
//! lock is taken; the threaded model shares one behind a mutex. Every refusal is counted with a
//! reason (`stats.rs`): datagrams dropped as `loop`, `rate`, `acl` or `size`, connections refused
//! as `acl`, `rate` or `per-source`.
//!
//! The checks are ordered so that a trusted source (a loopback benchmark) pays for almost
//! nothing: for a datagram two port comparisons and one look at the trusted list; for a
//! connection, the look at the trusted list.
//!
//! Next: `cidr.rs`, addresses as the limits see them.

pub mod access;
pub mod balancers;
pub mod buckets;
pub mod cidr;
pub mod guard;
pub mod per_source;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ipnet::IpNet;

use crate::server::stats::{DropReason, RefusalReason};
use access::{AccessList, Standing};
use balancers::{Balancers, ProxyProtocolConfig};
use buckets::RateTable;
use cidr::{Grouping, bits};
use guard::ReflectionGuard;
use per_source::ConnectionCounts;

/// The per-source rules, as `echoloop serve` is given them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcesConfig {
    /// Sources exempt from the per-source limits (`--trusted`); default loopback.
    pub trusted: Vec<IpNet>,
    /// If not empty, only these sources are served (`--allow`).
    pub allow: Vec<IpNet>,
    /// Never served, whatever else says (`--deny`).
    pub deny: Vec<IpNet>,
    /// UDP replies a second per IPv4 /24 or IPv6 /56, burst as many; 0 = off.
    pub udp_rate_limit: u32,
    /// Stream connections at once per IPv4 address or IPv6 /64; 0 = off.
    pub max_per_source: u32,
    /// New stream connections a second per IPv4 address or IPv6 /64, burst twice as many;
    /// 0 = off.
    pub accept_rate: u32,
    /// The balancers whose connections start with a PROXY header (`--proxy-protocol`).
    pub proxy_protocol: ProxyProtocolConfig,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        SourcesConfig {
            trusted: access::default_trusted(),
            allow: Vec::new(),
            deny: Vec::new(),
            udp_rate_limit: 100,
            max_per_source: 256,
            accept_rate: 50,
            proxy_protocol: ProxyProtocolConfig::default(),
        }
    }
}

/// What to do with a new stream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serve it; `trusted` says whether its source is exempt from the per-source limits.
    Admit {
        /// Trusted source, or a Unix peer.
        trusted: bool,
    },
    /// Refuse it: closed without a byte (`acl`, `rate`), or after one `error:` line
    /// (`per-source`, see [`Sources::refusal_line`]).
    Refuse(RefusalReason),
}

/// One reactor's rules and tables: the access lists, the loop guard, the rate tables, and the
/// connections counted per source.
#[derive(Debug)]
pub struct Sources {
    access: AccessList,
    guard: ReflectionGuard,
    /// Replies per source group (`--udp-rate-limit`); `None`: off.
    udp_rate: Option<RateTable>,
    /// New connections per source (`--accept-rate`); `None`: off.
    accept_rate: Option<RateTable>,
    connections: ConnectionCounts,
    /// 0: off.
    max_per_source: u32,
    /// Peers that speak the PROXY protocol (`--proxy-protocol`).
    balancers: Balancers,
    /// How long their header may take.
    header_timeout: std::time::Duration,
}

impl Sources {
    /// The rules of `config`, guarding the UDP sockets bound at `own_udp`, with the rate
    /// tables' clocks starting at `now`. Reads the host's addresses.
    pub fn new(config: &SourcesConfig, own_udp: &[SocketAddr], now: Instant) -> Sources {
        let table = |rate: u32, burst: u32| (rate > 0).then(|| RateTable::new(rate, burst, now));
        Sources {
            access: AccessList::new(&config.allow, &config.deny, &config.trusted),
            guard: ReflectionGuard::new(own_udp),
            // Only a reactor with UDP sockets needs the reply table.
            udp_rate: if own_udp.is_empty() {
                None
            } else {
                table(config.udp_rate_limit, config.udp_rate_limit)
            },
            accept_rate: table(config.accept_rate, config.accept_rate.saturating_mul(2)),
            connections: ConnectionCounts::default(),
            max_per_source: config.max_per_source,
            balancers: Balancers::new(&config.proxy_protocol),
            header_timeout: config.proxy_protocol.header_timeout,
        }
    }

    /// Whether a new stream connection from `peer` (`None`: a Unix peer) comes from a
    /// balancer, and is to be judged only once its PROXY header says who it is for.
    #[inline]
    pub fn sends_header(&self, peer: Option<IpAddr>) -> bool {
        self.balancers.sends_header(peer)
    }

    /// How long a balancer's connection may take to send its header.
    pub fn header_timeout(&self) -> std::time::Duration {
        self.header_timeout
    }

    /// Whether a datagram from `from` may be answered at `now`: the loop guard, the access
    /// lists, then (for strangers) the rate limit, which takes a token.
    #[inline]
    pub fn judge_datagram(&mut self, from: SocketAddr, now: Instant) -> Result<(), DropReason> {
        if self.guard.check(from).is_err() {
            return Err(DropReason::Loop);
        }
        let ip = bits(from.ip());
        match self.access.standing(ip) {
            Standing::Trusted => Ok(()),
            Standing::Refused => Err(DropReason::Acl),
            Standing::Stranger => {
                let key = Grouping::SITE.key(ip);
                let within = self.udp_rate.as_mut().is_none_or(|t| t.take(key, now));
                if within {
                    Ok(())
                } else {
                    Err(DropReason::Rate)
                }
            }
        }
    }

    /// Whether a new stream connection from `peer` (`None`: a Unix peer, always admitted and
    /// trusted) may take client slot `slot` at `now`. An admitted stranger is counted against
    /// its source until [`Sources::closed`] is called for `slot`.
    pub fn admit_stream(&mut self, peer: Option<IpAddr>, slot: usize, now: Instant) -> Admission {
        let Some(ip) = peer.map(bits) else {
            return Admission::Admit { trusted: true };
        };
        match self.access.standing(ip) {
            Standing::Trusted => return Admission::Admit { trusted: true },
            Standing::Refused => return Admission::Refuse(RefusalReason::Acl),
            Standing::Stranger => {}
        }
        let key = Grouping::HOST.key(ip);
        if let Some(table) = &mut self.accept_rate
            && !table.take(key, now)
        {
            return Admission::Refuse(RefusalReason::Rate);
        }
        if self.max_per_source > 0 && !self.connections.try_open(slot, key, self.max_per_source) {
            return Admission::Refuse(RefusalReason::PerSource);
        }
        Admission::Admit { trusted: false }
    }

    /// Client `slot` closed: its source may open another connection.
    #[inline]
    pub fn closed(&mut self, slot: usize) {
        self.connections.close(slot);
    }

    /// Reads the host's addresses again (SIGHUP); returns how many there are.
    pub fn read_local_addresses(&mut self) -> io::Result<usize> {
        self.guard.read_local_addresses()
    }

    /// The error line a refusal for `reason` sends before closing, if it sends one.
    pub fn refusal_line(reason: RefusalReason, peer: Option<IpAddr>) -> Option<String> {
        match (reason, peer) {
            (RefusalReason::PerSource, Some(ip)) => Some(format!(
                "error: too many connections from {}\n",
                ip.to_canonical()
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn stranger_rules() -> SourcesConfig {
        SourcesConfig {
            trusted: Vec::new(),
            ..SourcesConfig::default()
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_stranger_gets_max_per_source_connections_and_unix_peers_are_trusted() {
        let config = SourcesConfig {
            max_per_source: 2,
            ..stranger_rules()
        };
        let now = Instant::now();
        let mut sources = Sources::new(&config, &[], now);
        let admit = Admission::Admit { trusted: false };
        assert_eq!(sources.admit_stream(ip("192.0.2.1"), 0, now), admit);
        assert_eq!(sources.admit_stream(ip("::ffff:192.0.2.1"), 1, now), admit);
        assert_eq!(
            sources.admit_stream(ip("192.0.2.1"), 2, now),
            Admission::Refuse(RefusalReason::PerSource)
        );
        sources.closed(0);
        assert_eq!(sources.admit_stream(ip("192.0.2.1"), 0, now), admit);
        assert_eq!(
            sources.admit_stream(None, 3, now),
            Admission::Admit { trusted: true }
        );
        assert_eq!(
            Sources::refusal_line(RefusalReason::PerSource, ip("::ffff:192.0.2.1")).unwrap(),
            "error: too many connections from 192.0.2.1\n"
        );
    }

    #[test]
    fn new_connections_are_limited_to_twice_the_rate_at_once() {
        let config = SourcesConfig {
            accept_rate: 3,
            max_per_source: 0,
            ..stranger_rules()
        };
        let now = Instant::now();
        let mut sources = Sources::new(&config, &[], now);
        let admitted = (0..20)
            .filter(|slot| {
                sources.admit_stream(ip("2001:db8::1"), *slot, now)
                    == Admission::Admit { trusted: false }
            })
            .count();
        assert_eq!(admitted, 6);
        // Another address in the same /64 is the same source.
        assert_eq!(
            sources.admit_stream(ip("2001:db8::2"), 20, now),
            Admission::Refuse(RefusalReason::Rate)
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(
            sources.admit_stream(ip("2001:db8::2"), 21, later),
            Admission::Admit { trusted: false }
        );
    }

    #[test]
    fn datagrams_meet_the_guard_then_the_lists_then_the_rate() {
        let own: SocketAddr = "127.0.0.1:7007".parse().unwrap();
        let config = SourcesConfig {
            udp_rate_limit: 2,
            deny: vec!["198.51.100.0/24".parse().unwrap()],
            ..SourcesConfig::default()
        };
        let now = Instant::now();
        let mut sources = Sources::new(&config, &[own], now);
        let from = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert_eq!(sources.judge_datagram(own, now), Err(DropReason::Loop));
        assert_eq!(
            sources.judge_datagram(from("127.0.0.1:53"), now),
            Err(DropReason::Loop)
        );
        assert_eq!(
            sources.judge_datagram(from("198.51.100.7:4000"), now),
            Err(DropReason::Acl)
        );
        for _ in 0..10 {
            assert_eq!(sources.judge_datagram(from("127.0.0.1:4000"), now), Ok(()));
        }
        assert_eq!(sources.judge_datagram(from("192.0.2.1:4000"), now), Ok(()));
        assert_eq!(sources.judge_datagram(from("192.0.2.9:4000"), now), Ok(()));
        assert_eq!(
            sources.judge_datagram(from("192.0.2.1:4001"), now),
            Err(DropReason::Rate),
            "one /24, one bucket"
        );
    }
}
