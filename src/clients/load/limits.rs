//! Can this machine hold `-c` connections? Checked before the first one is opened.
//!
//! Two ceilings stop a load generator long before the server does:
//!
//! - **Open files.** Every connection is a file descriptor, and a process may hold at most
//!   `RLIMIT_NOFILE` of them (`ulimit -n`). The soft limit may be raised up to the hard limit by
//!   anyone, so we do that first; past the hard limit only root (limits.conf, systemd's
//!   `LimitNOFILE`) can help, or several `echoloop load` processes side by side.
//! - **Local ports.** A TCP connection is named by (source IP, source port, destination IP,
//!   destination port). Towards one server address, each source IP offers the ports of
//!   `/proc/sys/net/ipv4/ip_local_port_range` (32768–60999 by default: 28,232). More connections
//!   need more source addresses (`--source-addrs 127.0.0.1-127.0.0.16`: every 127.x address is
//!   loopback) or a wider range. When we bind a source address we set `IP_BIND_ADDRESS_NO_PORT`,
//!   so the port is chosen at `connect` time, per destination, rather than reserved at `bind`.
//!
//! Past either ceiling the run would end in a flood of `EMFILE` or `EADDRNOTAVAIL`: we say what to
//! raise instead, in one line, before starting.
//!
//! Next: `report.rs`.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use super::config::{LoadConfig, Target};

/// Descriptors a run needs besides its connections: stdio, pollers, wakers, a margin.
const FIXED_DESCRIPTORS: u64 = 64;

/// Raises the soft open-file limit to the hard one; returns (soft, hard) as they are now.
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok((limit.rlim_cur, limit.rlim_max))
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
    if let Ok((soft, hard)) = raise_open_file_limit()
        && needed > soft
    {
        let per_process = soft.saturating_sub(FIXED_DESCRIPTORS).max(1);
        return Err(format!(
            "-c {connections} needs about {needed} open files, but this process may open {soft} \
             (hard limit {hard}): raise it (ulimit -Hn / LimitNOFILE, as root) or run \
             {} echoloop load processes with -c {per_process} or fewer",
            connections.div_ceil(per_process)
        ));
    }
    let uses_ports = !matches!(config.target, Target::Stream(crate::Address::Unix(_)));
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
        let (soft, hard) = raise_open_file_limit().unwrap();
        assert_eq!(soft, hard);
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
