//! The reflection guard: datagrams we must never answer, whoever sent them.
//!
//! UDP has no handshake, so a datagram's source address is whatever the sender wrote. Forge a
//! datagram "from" an echo server "to" another (or to itself) and each answers the other for
//! ever: the echo↔chargen loop of CERT CA-1996-01, a core pinned and the link full. So before any
//! protocol sees a datagram, the guard drops it (and `stats.rs` counts it as `loop`) when its
//! source is:
//!
//! - **one of our own UDP sockets.** A socket bound to a wildcard address (`0.0.0.0`, `[::]`)
//!   answers from every address of the host, so for it every local address counts: those of the
//!   interfaces (read with `getifaddrs` at start, and again on SIGHUP when addresses change), and
//!   all of loopback (`127.0.0.0/8` reaches us whatever is configured).
//! - **port 0 or below 1024.** The classic services (echo 7, daytime 13, chargen 19, time 37,
//!   DNS, NTP, ...) live there; no client sends from there, so a datagram that says it does is
//!   aimed at another service's loop.
//! - **not one host.** A broadcast (`255.255.255.255` or an interface's directed broadcast), a
//!   multicast, or the unspecified address (`0.0.0.0`: Linux delivers a reply to it locally).
//!
//! The common case costs a few integer comparisons: the source port is at least 1024, the
//! address (one `u128`, `cidr.rs`) is not a broadcast or multicast one, the port is not one of
//! our own. Only a datagram from one of our own ports is looked up in the address list.
//!
//! What remains (`docs/OPERATIONS.md`): two echoloop instances on *trusted* addresses can still
//! be set looping by someone who can forge a loopback source, which on Linux is only root on the
//! same host; between hosts, the rate limit bounds any loop to its rate.
//!
//! Next: `net/address.rs`, how sockets are named.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::cidr::{bits, is_v4};

/// Below this, source ports belong to services, never to clients.
pub const FIRST_CLIENT_PORT: u16 = 1024;

/// Why a datagram is never answered (all counted as `loop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reflection {
    /// From port 0 or a port below 1024.
    ServicePort,
    /// From a broadcast, multicast or unspecified address.
    NotOneHost,
    /// From one of our own UDP sockets.
    OwnSocket,
}

/// One of our UDP sockets, as the guard compares sources with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OwnSocket {
    /// Its address as `cidr::bits`; meaningless when `wildcard`.
    ip: u128,
    port: u16,
    /// Bound to `0.0.0.0` or `[::]`: every local address is its address.
    wildcard: bool,
}

/// Our own UDP sockets and the host's addresses, all as `cidr::bits`.
#[derive(Debug, Clone, Default)]
pub struct ReflectionGuard {
    own: Vec<OwnSocket>,
    /// The host's interface addresses, sorted.
    local: Vec<u128>,
    /// The interfaces' directed broadcast addresses.
    broadcasts: Vec<Ipv4Addr>,
}

impl ReflectionGuard {
    /// A guard for the UDP sockets bound at `own`, with the host's addresses read now.
    pub fn new(own: &[SocketAddr]) -> ReflectionGuard {
        let mut guard = ReflectionGuard {
            own: own
                .iter()
                .map(|addr| OwnSocket {
                    ip: bits(addr.ip()),
                    port: addr.port(),
                    wildcard: addr.ip().is_unspecified(),
                })
                .collect(),
            local: Vec::new(),
            broadcasts: Vec::new(),
        };
        if let Err(e) = guard.read_local_addresses() {
            log::warn!(
                "cannot read the host's addresses ({e}): the loop guard knows loopback only"
            );
        }
        guard
    }

    /// Reads the host's interface addresses again (at start, and on SIGHUP); returns how many.
    pub fn read_local_addresses(&mut self) -> io::Result<usize> {
        let interfaces = if_addrs::get_if_addrs()?;
        let mut local = Vec::new();
        let mut broadcasts = Vec::new();
        for interface in interfaces {
            local.push(interface.ip());
            if let if_addrs::IfAddr::V4(v4) = &interface.addr
                && let Some(broadcast) = v4.broadcast
            {
                broadcasts.push(broadcast);
            }
        }
        self.set_local_addresses(&local, &broadcasts);
        Ok(self.local.len())
    }

    /// Sets the host's addresses and directed broadcast addresses (tests give their own).
    pub fn set_local_addresses(&mut self, local: &[IpAddr], broadcasts: &[Ipv4Addr]) {
        self.local = local.iter().map(|ip| bits(*ip)).collect();
        self.local.sort_unstable();
        self.local.dedup();
        self.broadcasts = broadcasts.to_vec();
    }

    /// Whether a datagram from `from` must not be answered, and why.
    #[inline]
    pub fn check(&self, from: SocketAddr) -> Result<(), Reflection> {
        let port = from.port();
        if port < FIRST_CLIENT_PORT {
            return Err(Reflection::ServicePort);
        }
        let one_host = match from.ip() {
            IpAddr::V4(v4) => self.is_one_host_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.is_one_host_v4(v4),
                None => !(v6.is_unspecified() || v6.is_multicast()),
            },
        };
        if !one_host {
            return Err(Reflection::NotOneHost);
        }
        // Usually one socket with one port: the address is looked at only if the port is ours.
        if self
            .own
            .iter()
            .any(|own| own.port == port && self.is_own(*own, bits(from.ip())))
        {
            return Err(Reflection::OwnSocket);
        }
        Ok(())
    }

    /// Whether `v4` can be the address of one host: not unspecified, not a broadcast (limited or
    /// directed), not multicast.
    #[inline]
    fn is_one_host_v4(&self, v4: Ipv4Addr) -> bool {
        !(v4.is_unspecified()
            || v4.is_broadcast()
            || v4.is_multicast()
            || (!self.broadcasts.is_empty() && self.broadcasts.contains(&v4)))
    }

    /// Whether `ip` is an address of our socket `own`.
    fn is_own(&self, own: OwnSocket, ip: u128) -> bool {
        if own.wildcard {
            is_loopback(ip) || self.local.binary_search(&ip).is_ok()
        } else {
            own.ip == ip
        }
    }
}

/// Whether `ip` is loopback: all of `127.0.0.0/8` reaches this host, whatever is configured.
fn is_loopback(ip: u128) -> bool {
    if is_v4(ip) {
        (ip as u32) >> 24 == 127
    } else {
        ip == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn guard(own: &[&str]) -> ReflectionGuard {
        let own: Vec<SocketAddr> = own.iter().map(|a| addr(a)).collect();
        let mut guard = ReflectionGuard::new(&own);
        guard.set_local_addresses(
            &[
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
            &["192.0.2.255".parse().unwrap()],
        );
        guard
    }

    #[test]
    fn service_ports_and_non_hosts_are_never_answered() {
        let guard = guard(&["127.0.0.1:7007"]);
        for from in [
            "192.0.2.1:0",
            "192.0.2.1:7",
            "192.0.2.1:19",
            "192.0.2.1:1023",
        ] {
            assert_eq!(
                guard.check(addr(from)),
                Err(Reflection::ServicePort),
                "{from}"
            );
        }
        for from in [
            "255.255.255.255:5000",
            "224.0.0.1:5000",
            "0.0.0.0:5000",
            "192.0.2.255:5000",
            "[ff02::1]:5000",
            "[::]:5000",
            "[::ffff:224.0.0.1]:5000",
        ] {
            assert_eq!(
                guard.check(addr(from)),
                Err(Reflection::NotOneHost),
                "{from}"
            );
        }
        assert_eq!(guard.check(addr("192.0.2.1:1024")), Ok(()));
    }

    #[test]
    fn our_own_socket_is_never_answered() {
        let guard = guard(&["127.0.0.1:7007"]);
        assert_eq!(
            guard.check(addr("127.0.0.1:7007")),
            Err(Reflection::OwnSocket)
        );
        assert_eq!(
            guard.check(addr("[::ffff:127.0.0.1]:7007")),
            Err(Reflection::OwnSocket)
        );
        assert_eq!(
            guard.check(addr("127.0.0.2:7007")),
            Ok(()),
            "not bound there"
        );
        assert_eq!(guard.check(addr("127.0.0.1:7008")), Ok(()));
    }

    #[test]
    fn a_wildcard_socket_is_every_local_address() {
        let guard = guard(&["0.0.0.0:7007", "[::]:9000"]);
        for from in [
            "192.0.2.10:7007",
            "127.0.0.5:7007",
            "[2001:db8::10]:9000",
            "[::ffff:192.0.2.10]:9000",
            "[::1]:9000",
        ] {
            assert_eq!(
                guard.check(addr(from)),
                Err(Reflection::OwnSocket),
                "{from}"
            );
        }
        assert_eq!(guard.check(addr("192.0.2.11:7007")), Ok(()), "not ours");
    }
}
