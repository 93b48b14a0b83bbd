//! Addresses as the limits see them: one canonical form, prefixes as plain numbers.
//!
//! A dual-stack socket (`[::]:PORT`) receives IPv4 peers as IPv4-mapped IPv6 addresses
//! (`::ffff:203.0.113.9`). A rule written `203.0.113.0/24` must match them, and a rule written
//! `::ffff:203.0.113.0/120` means `203.0.113.0/24` ([`parse_cidr`] makes it so).
//!
//! On the hot path an address is one `u128`, [`bits`]: an IPv6 address as it is, an IPv4 address
//! in its mapped form (`::ffff:a.b.c.d`), which is exactly how a dual-stack socket reports it, so
//! both spellings of one IPv4 peer are the same number with no conversion. A rule is a
//! [`Prefix`], a network and a mask over those bits: matching is one AND and one compare, the same
//! for both families (an IPv4 `/24` is a mask of 96 + 24 bits).
//!
//! A limit counts per *group* of addresses, not per address: one host on IPv6 usually has a whole
//! /64 to pick addresses from, and an IPv4 attacker often a /24. A [`SourceKey`] is a group as a
//! single `u128`: the address's bits with its host bits cleared. An IPv4 group keeps the mapped
//! form's `ffff` in bits 32..48; an IPv6 group of /64 or shorter has its low 64 bits zero, so the
//! two families never share a key. Keys are cheap to hash and compare, and the tables that count
//! by them (`buckets.rs`, `per_source.rs`) stay small.
//!
//! Next: `access.rs`, who may talk to us at all.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// An address as one number: IPv6 as it is, IPv4 in its mapped form (`::ffff:a.b.c.d`).
#[inline]
pub fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => 0xffff_u128 << 32 | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Whether `bits` is an IPv4 address (in its mapped form).
#[inline]
pub fn is_v4(bits: u128) -> bool {
    bits >> 32 == 0xffff
}

/// A rule's network as a mask and a network over [`bits`]: `bits & mask == network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    network: u128,
    mask: u128,
}

impl Prefix {
    /// Whether the address `bits` is in this prefix.
    #[inline]
    pub fn contains(self, bits: u128) -> bool {
        bits & self.mask == self.network
    }
}

impl From<IpNet> for Prefix {
    fn from(net: IpNet) -> Prefix {
        let net = canonical_net(net.trunc());
        let mask = match net {
            IpNet::V4(v4) => mask128(96 + v4.prefix_len()),
            IpNet::V6(v6) => mask128(v6.prefix_len()),
        };
        Prefix {
            network: bits(net.network()) & mask,
            mask,
        }
    }
}

/// Whether any of `prefixes` holds the address `bits`.
#[inline]
pub fn any_contains(prefixes: &[Prefix], bits: u128) -> bool {
    prefixes.iter().any(|prefix| prefix.contains(bits))
}

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

    /// The group the address `bits` belongs to.
    #[inline]
    pub fn key(self, bits: u128) -> SourceKey {
        if is_v4(bits) {
            SourceKey(bits & mask128(96 + self.v4_bits.min(32)))
        } else {
            SourceKey(bits & mask128(self.v6_bits))
        }
    }
}

/// The top `len` bits set.
#[inline]
fn mask128(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
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
    fn both_spellings_of_an_ipv4_address_are_one_number_and_prefixes_match_them() {
        assert_eq!(bits(ip("192.0.2.7")), bits(ip("::ffff:192.0.2.7")));
        assert!(is_v4(bits(ip("::ffff:192.0.2.7"))));
        assert!(!is_v4(bits(ip("2001:db8::1"))));
        let v4 = Prefix::from(parse_cidr("192.0.2.0/24").unwrap());
        assert!(v4.contains(bits(ip("192.0.2.200"))));
        assert!(v4.contains(bits(ip("::ffff:192.0.2.200"))));
        assert!(!v4.contains(bits(ip("192.0.3.1"))));
        let all_v4 = Prefix::from(parse_cidr("0.0.0.0/0").unwrap());
        assert!(all_v4.contains(bits(ip("203.0.113.1"))));
        assert!(
            !all_v4.contains(bits(ip("2001:db8::1"))),
            "IPv4 rules match IPv4 only"
        );
        let all_v6 = Prefix::from(parse_cidr("::/0").unwrap());
        assert!(all_v6.contains(bits(ip("2001:db8::1"))));
        let v6 = Prefix::from(parse_cidr("2001:db8::/32").unwrap());
        assert!(v6.contains(bits(ip("2001:db8:ffff::1"))));
        assert!(!v6.contains(bits(ip("2001:db9::1"))));
        let one = Prefix::from(parse_cidr("::1").unwrap());
        assert!(one.contains(bits(ip("::1"))) && !one.contains(bits(ip("::2"))));
    }

    #[test]
    fn groups_share_a_key_and_families_never_do() {
        let ip = |text: &str| bits(ip(text));
        let site = Grouping::SITE;
        assert_eq!(site.key(ip("192.0.2.1")), site.key(ip("192.0.2.200")));
        assert_ne!(site.key(ip("192.0.2.1")), site.key(ip("192.0.3.1")));
        assert_eq!(
            site.key(ip("2001:db8:0:ab::1")),
            site.key(ip("2001:db8:0:ff::2"))
        );
        let host = Grouping::HOST;
        assert_eq!(host.key(ip("192.0.2.1")), host.key(ip("::ffff:192.0.2.1")));
        assert_ne!(host.key(ip("192.0.2.1")), host.key(ip("192.0.2.2")));
        assert_eq!(
            host.key(ip("2001:db8::1")),
            host.key(ip("2001:db8::ffff:1"))
        );
        // The IPv4 group 0.0.0.0/24 and the IPv6 group ::/56 differ.
        assert_ne!(site.key(ip("0.0.0.1")), site.key(ip("::1")));
    }
}
