//! Who may talk to us, and who is exempt from the per-source limits.
//!
//! Three lists of prefixes, each from the command line:
//!
//! - `--deny CIDR`: never served. A denied TCP connection is closed as soon as it is accepted,
//!   without a byte (a reason would tell a scanner that someone is listening); a denied datagram
//!   is dropped. `--deny` wins over everything else.
//! - `--allow CIDR`: if there is at least one, *only* sources it matches are served.
//! - `--trusted CIDR`: served without the per-source limits (the UDP rate limit, connections per
//!   source, new connections per second, chat flood control). By default loopback
//!   (`127.0.0.0/8`, `::1/128`): local load tests and benchmarks must not meet limits made for
//!   strangers. A trusted source is still subject to `--deny`, `--allow` and the loop guard.
//!
//! Unix-socket peers have no address: they are local, never refused here, and always trusted.
//! Every address is matched as one number (`cidr.rs`), so `::ffff:192.0.2.1` is `192.0.2.1` to
//! every list. (And `::/0` is every address, IPv4 ones included, as they map into IPv6.)
//!
//! With no `--allow` and no `--deny` (the default) the verdict costs one check of the trusted
//! list, two prefixes long: nothing measurable for a loopback datagram or accept.
//!
//! Next: `buckets.rs`, how fast a source may go.

use ipnet::IpNet;

use super::cidr::{Prefix, any_contains};

/// The default trusted prefixes: loopback, IPv4 and IPv6.
pub fn default_trusted() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("a valid prefix"),
        "::1/128".parse().expect("a valid prefix"),
    ]
}

/// What a source is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Served, exempt from the per-source limits.
    Trusted,
    /// Served within the per-source limits.
    Stranger,
    /// Not served at all (`--deny`, or outside every `--allow`).
    Refused,
}

/// The three lists, as prefixes over address bits.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    allow: Vec<Prefix>,
    deny: Vec<Prefix>,
    trusted: Vec<Prefix>,
}

impl AccessList {
    /// The lists `--allow`, `--deny` and `--trusted` gave.
    pub fn new(allow: &[IpNet], deny: &[IpNet], trusted: &[IpNet]) -> Self {
        let prefixes = |nets: &[IpNet]| nets.iter().map(|net| Prefix::from(*net)).collect();
        AccessList {
            allow: prefixes(allow),
            deny: prefixes(deny),
            trusted: prefixes(trusted),
        }
    }

    /// What the address `ip` (as `cidr::bits`) is to us: `--deny` first, then `--allow`, then
    /// `--trusted`.
    #[inline]
    pub fn standing(&self, ip: u128) -> Standing {
        if !self.deny.is_empty() || !self.allow.is_empty() {
            if any_contains(&self.deny, ip) {
                return Standing::Refused;
            }
            if !self.allow.is_empty() && !any_contains(&self.allow, ip) {
                return Standing::Refused;
            }
        }
        if any_contains(&self.trusted, ip) {
            Standing::Trusted
        } else {
            Standing::Stranger
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::sources::cidr::{bits, parse_cidr};
    use std::net::IpAddr;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|text| parse_cidr(text).unwrap()).collect()
    }

    fn ip(text: &str) -> u128 {
        bits(text.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn loopback_is_trusted_by_default_and_strangers_are_limited() {
        let list = AccessList::new(&[], &[], &default_trusted());
        assert_eq!(list.standing(ip("127.0.0.1")), Standing::Trusted);
        assert_eq!(list.standing(ip("127.9.9.9")), Standing::Trusted);
        assert_eq!(list.standing(ip("::1")), Standing::Trusted);
        assert_eq!(list.standing(ip("::ffff:127.0.0.1")), Standing::Trusted);
        assert_eq!(list.standing(ip("192.0.2.1")), Standing::Stranger);
    }

    #[test]
    fn deny_wins_over_allow_and_allow_excludes_the_rest() {
        let list = AccessList::new(
            &nets(&["192.0.2.0/24", "2001:db8::/32"]),
            &nets(&["192.0.2.66"]),
            &nets(&["192.0.2.10"]),
        );
        assert_eq!(list.standing(ip("192.0.2.1")), Standing::Stranger);
        assert_eq!(list.standing(ip("192.0.2.10")), Standing::Trusted);
        assert_eq!(list.standing(ip("192.0.2.66")), Standing::Refused);
        assert_eq!(list.standing(ip("::ffff:192.0.2.66")), Standing::Refused);
        assert_eq!(list.standing(ip("198.51.100.1")), Standing::Refused);
        assert_eq!(list.standing(ip("2001:db8::5")), Standing::Stranger);
        assert_eq!(
            list.standing(ip("127.0.0.1")),
            Standing::Refused,
            "not allowed"
        );
    }

    #[test]
    fn deny_alone_refuses_only_what_it_names() {
        let list = AccessList::new(&[], &nets(&["10.0.0.0/8"]), &[]);
        assert_eq!(list.standing(ip("10.1.2.3")), Standing::Refused);
        assert_eq!(list.standing(ip("127.0.0.1")), Standing::Stranger);
    }
}
