//! The load balancers in front of us: peers whose connections start with a PROXY header.
//!
//! `--proxy-protocol CIDR` (repeatable) names them. A stream connection from one of them is not
//! judged at accept: its address is the balancer's, not the client's. The reactor reads the
//! header first (`net/proxy_header.rs`, `reactor/proxied.rs`), and only then are the access
//! lists and the per-source limits applied, to the address the header carries. A Unix socket
//! peer has no address to match, so `--proxy-protocol unix` names them all: every connection to
//! a Unix listener must then start with a header (a proxy on the same host, such as HAProxy with
//! `server s unix@/run/echoloop.sock send-proxy-v2`).
//!
//! The balancer itself is neither counted against a per-source limit nor matched against
//! `--allow`/`--deny` at accept: listing it here is trusting it to say who its clients are.
//! Its own connections (`LOCAL` headers: health checks) are judged by its socket address.
//!
//! Next: `guard.rs`, the datagrams we must never answer.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::cidr::{Prefix, any_contains, bits, parse_cidr};

/// How long a connection from a balancer may take to send its whole header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// One `--proxy-protocol` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancer {
    /// Peers in this network.
    Network(IpNet),
    /// Every peer of a Unix listener (`unix`).
    Unix,
}

/// Parses a `--proxy-protocol` value: a CIDR prefix (or one address), or `unix`.
pub fn parse_balancer(text: &str) -> Result<Balancer, String> {
    if text == "unix" {
        Ok(Balancer::Unix)
    } else {
        parse_cidr(text).map(Balancer::Network)
    }
}

/// Who must start with a PROXY header, as `echoloop serve` is given them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocolConfig {
    /// `--proxy-protocol` values; empty: nobody (the PROXY protocol is off).
    pub balancers: Vec<Balancer>,
    /// How long the header may take ([`HEADER_TIMEOUT`]; shorter in tests).
    pub header_timeout: Duration,
}

impl Default for ProxyProtocolConfig {
    fn default() -> Self {
        ProxyProtocolConfig {
            balancers: Vec::new(),
            header_timeout: HEADER_TIMEOUT,
        }
    }
}

/// The balancers, ready to match a peer.
#[derive(Debug, Default)]
pub struct Balancers {
    networks: Vec<Prefix>,
    unix: bool,
}

impl Balancers {
    /// The balancers `config` names.
    pub fn new(config: &ProxyProtocolConfig) -> Balancers {
        let mut balancers = Balancers::default();
        for balancer in &config.balancers {
            match balancer {
                Balancer::Network(net) => balancers.networks.push(Prefix::from(*net)),
                Balancer::Unix => balancers.unix = true,
            }
        }
        balancers
    }

    /// Whether a connection from `peer` (`None`: a Unix peer) must start with a PROXY header.
    #[inline]
    pub fn sends_header(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            None => self.unix,
            Some(ip) => !self.networks.is_empty() && any_contains(&self.networks, bits(ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancers(values: &[&str]) -> Balancers {
        Balancers::new(&ProxyProtocolConfig {
            balancers: values.iter().map(|v| parse_balancer(v).unwrap()).collect(),
            header_timeout: HEADER_TIMEOUT,
        })
    }

    #[test]
    fn a_network_names_its_peers_and_unix_names_unix_peers() {
        let some = balancers(&["10.0.0.0/8", "2001:db8::1"]);
        assert!(some.sends_header(Some("10.1.2.3".parse().unwrap())));
        assert!(some.sends_header(Some("::ffff:10.1.2.3".parse().unwrap())));
        assert!(some.sends_header(Some("2001:db8::1".parse().unwrap())));
        assert!(!some.sends_header(Some("192.0.2.1".parse().unwrap())));
        assert!(!some.sends_header(None));
        assert!(balancers(&["unix"]).sends_header(None));
        assert!(!balancers(&[]).sends_header(Some("10.1.2.3".parse().unwrap())));
        assert!(parse_balancer("nonsense").is_err());
    }
}
