//! Can this machine hold `-c` connections? Checked before the first one is opened.
//!
//! Two ceilings stop a load generator long before the server does:
//!
//! - **Open files.** Every connection is a file descriptor, and a process may hold at most
//!   `RLIMIT_NOFILE` of them (`ulimit -n`). The soft limit may be raised up to the hard limit by
//!   anyone, so we do that first; past the hard limit only root (limits.conf, systemd's
//!   `LimitNOFILE`) can help, or several `echoloop load` processes side by side. (macOS says its
//!   hard limit is "unlimited" but refuses a soft limit above `OPEN_MAX`, 10240: we stop there.)
//! - **Local ports.** A TCP connection is named by (source IP, source port, destination IP,
//!   destination port). Towards one server address, each source IP offers the ports of
//!   `/proc/sys/net/ipv4/ip_local_port_range` (32768–60999 by default: 28,232). More connections
//!   need more source addresses (`--source-addrs 127.0.0.1-127.0.0.16`: every 127.x address is
//!   loopback) or a wider range. When we bind a source address we set `IP_BIND_ADDRESS_NO_PORT`,
//!   so the port is chosen at `connect` time, per destination, rather than reserved at `bind`.
//!   Systems without `/proc` (macOS, FreeBSD) do not tell us their range this way, and the port
//!   check is skipped there.
//!
//! Past either ceiling the run would end in a flood of `EMFILE` or `EADDRNOTAVAIL`: we say what to
//! raise instead, in one line, before starting.
//!
//! Next: `report.rs`.

use std::net::{IpAddr, Ipv4Addr};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::config::{LoadConfig, Target};

/// Descriptors a run needs besides its connections: stdio, pollers, wakers, a margin.
const FIXED_DESCRIPTORS: u64 = 64;

/// Raises the soft open-file limit to the hard one (or as near as the system allows); returns
/// (soft, hard) as they are now, `u64::MAX` standing for "unlimited".
pub fn raise_open_file_limit() -> (u64, u64) {
    let limit = getrlimit(Resource::Nofile); // `None`: unlimited
    let (soft, hard) = (limit.current, limit.maximum);
    let ceiling = soft_limit_ceiling(hard);
    if finite(soft) < finite(ceiling) {
        let raised = Rlimit {
            current: ceiling,
            maximum: hard,
        };
        // A refusal leaves the limit where it was: the check below then reports it.
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return (finite(ceiling), finite(hard));
        }
    }
    (finite(soft), finite(hard))
}

/// The highest soft open-file limit to ask for, given the hard one (`None`: unlimited).
fn soft_limit_ceiling(hard: Option<u64>) -> Option<u64> {
    // Apple's setrlimit(2) refuses more than `OPEN_MAX` (<sys/syslimits.h>) for RLIMIT_NOFILE,
    // whatever the hard limit says, and its man page says to ask for min(OPEN_MAX, hard).
    #[cfg(target_vendor = "apple")]
    return Some(finite(hard).min(10_240));
    #[cfg(not(target_vendor = "apple"))]
    return hard;
}

fn finite(limit: Option<u64>) -> u64 {
    limit.unwrap_or(u64::MAX)
}

/// The local port range, `(low, high)` inclusive, if the kernel tells.
pub fn local_port_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut numbers = text.split_whitespace().map(|n| n.parse::<u32>().ok());
    Some((numbers.next()??, numbers.next()??))
}

/// Checks both ceilings for `config` (raising the soft open-file limit on the way); `Err` is the
/// one line to show the user.
pub fn check(config: &LoadConfig) -> Result<(), String> {
    let connections = config.connections as u64;
    let needed = connections + FIXED_DESCRIPTORS;
    let (soft, hard) = raise_open_file_limit();
    if needed > soft {
        let per_process = soft.saturating_sub(FIXED_DESCRIPTORS).max(1);
        return Err(format!(
            "-c {connections} needs about {needed} open files, but this process may open {soft} \
             (hard limit {hard}): raise it (ulimit -Hn / LimitNOFILE, as root) or run \
             {} echoloop load processes with -c {per_process} or fewer",
            connections.div_ceil(per_process)
        ));
    }
    let uses_ports = !matches!(
        config.target,
        Target::Stream(crate::net::address::Address::Unix(_))
    );
    if uses_ports && let Some((low, high)) = local_port_range() {
        let per_address = u64::from(high.saturating_sub(low) + 1);
        let addresses = config.source_addrs.len().max(1) as u64;
        if connections > per_address * addresses {
            return Err(format!(
                "-c {connections} needs {connections} local ports, but ip_local_port_range \
                 {low}-{high} gives {per_address} per source address × {addresses}: use \
                 --source-addrs 127.0.0.1-127.0.0.{} or widen net.ipv4.ip_local_port_range",
                connections.div_ceil(per_address).min(254)
            ));
        }
    }
    Ok(())
}

/// Parses `--source-addrs`: addresses and IPv4 ranges, comma-separated
/// (`127.0.0.1-127.0.0.16,127.0.1.1`).
pub fn parse_source_addrs(text: &str) -> Result<Vec<IpAddr>, String> {
    const MAX: u32 = 65_536;
    let mut addrs = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once('-') {
            None => addrs.push(
                item.parse::<IpAddr>()
                    .map_err(|_| format!("--source-addrs: '{item}' is not an IP address"))?,
            ),
            Some((first, last)) => {
                let parse = |s: &str| {
                    s.trim().parse::<Ipv4Addr>().map_err(|_| {
                        format!("--source-addrs: '{item}' is not an IPv4 range A.B.C.D-A.B.C.E")
                    })
                };
                let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
                if last < first || last - first >= MAX {
                    return Err(format!(
                        "--source-addrs: '{item}' must run upwards, {MAX} addresses at most"
                    ));
                }
                addrs.extend((first..=last).map(|a| IpAddr::V4(Ipv4Addr::from(a))));
            }
        }
    }
    if addrs.is_empty() {
        return Err("--source-addrs: no address given".into());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addrs_take_lists_and_ranges() {
        let addrs = parse_source_addrs("127.0.0.1-127.0.0.16").unwrap();
        assert_eq!(addrs.len(), 16);
        assert_eq!(addrs[15], "127.0.0.16".parse::<IpAddr>().unwrap());
        let addrs = parse_source_addrs("127.0.0.1,::1").unwrap();
        assert_eq!(addrs.len(), 2);
        for bad in ["", "127.0.0.9-127.0.0.1", "x", "127.0.0.1-::1"] {
            assert!(parse_source_addrs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = raise_open_file_limit();
        let hard = (hard != u64::MAX).then_some(hard);
        assert_eq!(soft, finite(soft_limit_ceiling(hard)));
    }

    #[test]
    fn too_many_connections_for_one_source_address_is_refused_with_advice() {
        let Some((low, high)) = local_port_range() else {
            return;
        };
        let mut config = LoadConfig::for_tests(Target::Datagram("127.0.0.1:9".parse().unwrap()));
        config.connections = (high - low + 2) as usize;
        // The open-file check may speak first on a machine with a low limit; either way: refused.
        let message = check(&config).unwrap_err();
        assert!(message.starts_with("-c "), "{message}");
    }
}
