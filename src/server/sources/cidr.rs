//! Addresses as the limits see them: one canonical form, prefixes as plain numbers.
//!
//! A dual-stack socket (`[::]:PORT`) receives IPv4 peers as IPv4-mapped IPv6 addresses
//! (`::ffff:203.0.113.9`). A rule written `203.0.113.0/24` must match them, so every address is
//! made canonical first ([`canonical`]: a mapped address becomes the IPv4 address it carries), and
//! so is every rule ([`parse_cidr`]: `::ffff:203.0.113.0/120` becomes `203.0.113.0/24`).
//!
//! A limit counts per *group* of addresses, not per address: one host on IPv6 usually has a whole
//! /64 to pick addresses from, and an IPv4 attacker often a /24. A [`SourceKey`] is a group as a
//! single `u128`: the address with its host bits cleared. IPv4 groups are kept in their mapped form
//! (`::ffff:a.b.c.0`), whose bits 32..48 are all ones; an IPv6 group of /64 or shorter has its low
//! 64 bits zero, so the two families never share a key. Keys are cheap to hash and compare, and
//! the tables that count by them (`buckets.rs`, `per_source.rs`) stay small.
//!
//! Next: `access.rs`, who may talk to us at all.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// A group of source addresses (an IPv4 /24 or /32, an IPv6 /56 or /64) as one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SourceKey(pub u128);

/// How wide a group is, per family: a prefix length for IPv4 and one for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping {
    /// Prefix length of an IPv4 group (0..=32).
    pub v4_bits: u8,
    /// Prefix length of an IPv6 group (0..=64).
    pub v6_bits: u8,
}

impl Grouping {
    /// One IPv4 address, one IPv6 /64: a "source" for connection limits (one host).
    pub const HOST: Grouping = Grouping {
        v4_bits: 32,
        v6_bits: 64,
    };
    /// An IPv4 /24, an IPv6 /56: a "source" for the UDP rate limit (one site), as DNS RRL does.
    pub const SITE: Grouping = Grouping {
        v4_bits: 24,
        v6_bits: 56,
    };

    /// The group `ip` (already canonical) belongs to.
    pub fn key(self, ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4) & mask32(self.v4_bits);
                SourceKey(0xffff_u128 << 32 | u128::from(bits))
            }
            IpAddr::V6(v6) => SourceKey(u128::from(v6) & mask128(self.v6_bits)),
        }
    }
}

fn mask32(bits: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(bits.min(32)))
        .unwrap_or(0)
}

fn mask128(bits: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(bits.min(128)))
        .unwrap_or(0)
}

/// The address as every rule matches it: an IPv4-mapped IPv6 address becomes its IPv4 address.
#[inline]
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A rule from the command line: `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one host).
/// A rule on IPv4-mapped addresses (`::ffff:10.0.0.0/104`) becomes the IPv4 rule it means.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(format!(
                    "`{text}` is not an address or prefix (e.g. 192.0.2.0/24, 2001:db8::/32)"
                ));
            }
        },
    };
    Ok(canonical_net(net.trunc()))
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// Whether any of `nets` holds `ip` (canonical).
#[inline]
pub fn any_contains(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_mapped_address_is_its_ipv4_address() {
        assert_eq!(canonical(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn rules_parse_bare_addresses_and_mapped_prefixes() {
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(
            parse_cidr("192.0.2.7/24").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            parse_cidr("::ffff:10.1.0.0/112").unwrap().to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("localhost").is_err());
    }

    #[test]
    fn groups_share_a_key_and_families_never_do() {
        let site = Grouping::SITE;
        assert_eq!(site.key(ip("192.0.2.1")), site.key(ip("192.0.2.200")));
        assert_ne!(site.key(ip("192.0.2.1")), site.key(ip("192.0.3.1")));
        assert_eq!(
            site.key(ip("2001:db8:0:ab::1")),
            site.key(ip("2001:db8:0:ff::2"))
        );
        let host = Grouping::HOST;
        assert_ne!(host.key(ip("192.0.2.1")), host.key(ip("192.0.2.2")));
        assert_eq!(
            host.key(ip("2001:db8::1")),
            host.key(ip("2001:db8::ffff:1"))
        );
        // The IPv4 group 0.0.0.0/24 and the IPv6 group ::/56 differ.
        assert_ne!(site.key(ip("0.0.0.1")), site.key(ip("::1")));
    }
}
