//! `echoloop serve`: the server's arguments, and the [`ServeConfig`] they describe.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};
use ipnet::IpNet;

use super::{parse_address, units};
use crate::net::address::{Address, parse_socket_addr};
use crate::protocol::files::{DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILES};
use crate::protocol::framing::FramingKind;
use crate::protocol::{FilesConfig, ProtocolKind};
use crate::server::config::ServeConfig;
use crate::server::sources::SourcesConfig;
use crate::server::sources::cidr::parse_cidr;
use crate::server::threaded::Model;

/// `echoloop serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[allow(rustdoc::broken_intra_doc_links)] // `[V6]` is clap help text, not a link
    /// Stream listen address, repeatable: HOST:PORT, [V6]:PORT or unix:/path [default: 127.0.0.1:7007]
    #[arg(short, long = "listen", value_name = "ADDR", value_parser = parse_address)]
    pub listen: Vec<Address>,
    /// Also serve the protocol over UDP at ADDR, repeatable
    #[arg(short, long = "udp", value_name = "ADDR", value_parser = parse_socket_addr)]
    pub udp: Vec<SocketAddr>,
    /// The service
    #[arg(short, long, value_enum, default_value = "echo", value_name = "NAME")]
    pub protocol: ProtocolKind,
    /// How frames are cut [default: the protocol's: echo raw; timestamp, chat line]
    #[arg(long, value_enum, value_name = "F")]
    pub framing: Option<FramingKind>,
    /// Largest line or frame accepted (64K, 1M; a bare number is bytes)
    #[arg(long, default_value = "64K", value_name = "BYTES", value_parser = |t: &str| units::bytes_in(t, 1, u32::MAX as u64))]
    pub max_frame: u64,
    /// Connections held at once; one over it gets `error: server full` and is closed
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Close a connection with no traffic for this long (30s, 5m; a bare number is seconds); 0 = never
    #[arg(long, default_value = "300s", value_name = "DURATION", value_parser = units::duration)]
    pub idle_timeout: Duration,
    /// Per-client outbound queue limit: above it the client is not read until it drains (chat: dropped)
    #[arg(long, default_value = "1M", value_name = "BYTES", value_parser = |t: &str| units::bytes_in(t, 1, u64::MAX))]
    pub queue_limit: u64,
    /// A line sent to each new stream client on connect
    #[arg(long, value_name = "TEXT")]
    pub greeting: Option<String>,
    /// Single-threaded reactors sharing the port (SO_REUSEPORT; on macOS connections do not spread across them)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: u64,
    /// Set SO_REUSEPORT so that several echoloop processes can share the port (implied by --workers > 1)
    #[arg(long)]
    pub reuse_port: bool,
    /// On SIGINT/SIGTERM: stop accepting, flush queued output up to this long (500ms, 5s), exit 0
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = units::duration)]
    pub shutdown_timeout: Duration,
    /// Listen backlog
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub backlog: i32,
    /// TCP_NODELAY on accepted sockets
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub nodelay: bool,
    /// TCP keepalive idle time on accepted sockets (30s, 2m); 0 = off
    #[arg(long, default_value = "0", value_name = "DURATION", value_parser = units::duration)]
    pub keepalive: Duration,
    /// Log a line of counters this often (10s, 1m); 0 = off (SIGUSR1 logs one at any time)
    #[arg(long, default_value = "0", value_name = "DURATION", value_parser = units::duration)]
    pub stats_interval: Duration,
    /// Log every readiness event and every decision of the reactor (as RUST_LOG=echoloop=trace)
    #[arg(long)]
    pub trace: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (TCP, same reactor), e.g. 127.0.0.1:9707
    #[arg(long, value_name = "ADDR", value_parser = parse_socket_addr)]
    pub metrics: Option<SocketAddr>,
    /// -p files: the folder served (required; it must exist)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// -p files: largest file accepted (512M, 1G; a bare number is bytes)
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_BYTES, value_name = "BYTES", value_parser = units::bytes)]
    pub max_file_bytes: u64,
    /// -p files: content bytes the folder may hold, partial files included (10G); 0 = no quota
    #[arg(long, default_value = "0", value_name = "BYTES", value_parser = units::bytes)]
    pub dir_quota: u64,
    /// -p files: complete plus partial files the folder may hold
    #[arg(long, default_value_t = DEFAULT_MAX_FILES, value_name = "N")]
    pub max_files: u64,
    /// -p files: an upload's quota reservation ends after this long without a byte from it
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = units::positive_duration)]
    pub reservation_timeout: Duration,
    /// -p files: remove partial files untouched this long; 0 = keep them
    #[arg(long, default_value = "1d", value_name = "DURATION", value_parser = units::duration)]
    pub partial_ttl: Duration,
    /// Most bytes the connections' buffers may hold, per worker; over it the biggest holders are not read (chat: dropped) and new connections get `error: server busy`
    #[arg(long, default_value = "1G", value_name = "BYTES", value_parser = |t: &str| units::bytes_in(t, 1, u64::MAX))]
    pub max_memory: u64,
    /// -p chat: lines per second per member, in bursts of twice that; a member over it is not read until it may send again (trusted sources exempt); 0 = off
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub chat_rate: u32,
    /// SO_SNDBUF of accepted stream sockets, in bytes [default: the kernel's]
    #[arg(long, value_name = "BYTES", value_parser = |t: &str| units::bytes_in(t, 1, i32::MAX as u64))]
    pub sndbuf: Option<u64>,
    /// SO_RCVBUF of accepted stream sockets, in bytes [default: the kernel's]
    #[arg(long, value_name = "BYTES", value_parser = |t: &str| units::bytes_in(t, 1, i32::MAX as u64))]
    pub rcvbuf: Option<u64>,
    /// SO_RCVBUF asked for each UDP socket, in bytes (the kernel caps it at net.core.rmem_max, then doubles it; the log says what was granted). A bigger buffer rides out bursts instead of dropping them
    #[arg(long, default_value = "4M", value_name = "BYTES", value_parser = |t: &str| units::bytes_in(t, 1, i32::MAX as u64))]
    pub udp_rcvbuf: u64,
    /// How clients are served: one event-loop thread (reactor), or a blocking thread per connection (threaded)
    #[arg(long, value_enum, default_value = "reactor", value_name = "MODEL")]
    pub model: Model,
    /// Exempt from the per-source limits, repeatable; replaces the default 127.0.0.0/8 and ::1/128 (`none`: nobody)
    #[arg(long, value_name = "CIDR", value_parser = parse_trusted)]
    pub trusted: Vec<Option<IpNet>>,
    /// Serve only these sources, repeatable (default: everyone); --deny wins over it
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub allow: Vec<IpNet>,
    /// Never serve these sources, repeatable: TCP closed at accept without a byte, UDP dropped
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub deny: Vec<IpNet>,
    /// UDP replies per second per source /24 (IPv6 /56), burst as many; trusted exempt; 0 = off
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub udp_rate_limit: u32,
    /// Stream connections at once per source address (IPv6 /64), per worker; trusted exempt; 0 = off
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_per_source: u32,
    /// New stream connections per second per source address (IPv6 /64), burst 2 x N, per worker; trusted exempt; 0 = off
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub accept_rate: u32,
}

/// A `--trusted` value: a prefix, or `none` (an empty list).
fn parse_trusted(text: &str) -> Result<Option<IpNet>, String> {
    if text == "none" {
        Ok(None)
    } else {
        parse_cidr(text).map(Some)
    }
}

/// A duration, where 0 means "off".
fn duration_or_off(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}

impl ServeArgs {
    /// The config these arguments describe.
    pub fn into_config(self) -> ServeConfig {
        let defaults = ServeConfig::default();
        let files = self.dir.map(|dir| FilesConfig {
            dir,
            max_file_bytes: self.max_file_bytes,
            dir_quota: self.dir_quota,
            max_files: self.max_files,
            reservation_timeout: self.reservation_timeout,
            partial_ttl: duration_or_off(self.partial_ttl),
        });
        ServeConfig {
            listen: if self.listen.is_empty() && self.udp.is_empty() {
                defaults.listen
            } else {
                self.listen
            },
            udp: self.udp,
            protocol: self.protocol.into(),
            framing: self.framing,
            max_frame: self.max_frame as usize,
            max_connections: self.max_connections as usize,
            idle_timeout: duration_or_off(self.idle_timeout),
            queue_limit: self.queue_limit as usize,
            greeting: self.greeting.map(String::into_bytes),
            workers: self.workers as usize,
            reuse_port: self.reuse_port,
            shutdown_timeout: self.shutdown_timeout,
            backlog: self.backlog,
            nodelay: self.nodelay,
            keepalive: duration_or_off(self.keepalive),
            stats_interval: duration_or_off(self.stats_interval),
            handle_signals: true,
            metrics: self.metrics,
            files,
            max_memory: self.max_memory as usize,
            chat_rate: (self.chat_rate > 0).then_some(self.chat_rate),
            sndbuf: self.sndbuf.map(|bytes| bytes as usize),
            rcvbuf: self.rcvbuf.map(|bytes| bytes as usize),
            udp_rcvbuf: Some(self.udp_rcvbuf as usize),
            sources: SourcesConfig {
                // Given at least once, --trusted replaces the default list.
                trusted: if self.trusted.is_empty() {
                    defaults.sources.trusted
                } else {
                    self.trusted.into_iter().flatten().collect()
                },
                allow: self.allow,
                deny: self.deny,
                udp_rate_limit: self.udp_rate_limit,
                max_per_source: self.max_per_source,
                accept_rate: self.accept_rate,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults_match_the_contract() {
        let Command::Serve(args) = Cli::try_parse_from(["echoloop", "serve"]).unwrap().command
        else {
            panic!("not serve");
        };
        let config = args.into_config();
        assert_eq!(config.listen, vec!["127.0.0.1:7007".parse().unwrap()]);
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.queue_limit, 1 << 20);
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(300)));
        assert!(config.nodelay);
        assert_eq!(config.keepalive, None);
        assert_eq!(config.sources, SourcesConfig::default());
        assert_eq!(config.sources.udp_rate_limit, 100);
        assert_eq!(config.sources.max_per_source, 256);
        assert_eq!(config.sources.accept_rate, 50);
    }

    fn sources_of(args: &[&str]) -> SourcesConfig {
        let line = ["echoloop", "serve"].iter().chain(args).copied();
        let Command::Serve(args) = Cli::try_parse_from(line).unwrap().command else {
            panic!("not serve");
        };
        args.into_config().sources
    }

    #[test]
    fn trusted_replaces_the_default_and_none_empties_it() {
        let names = |sources: SourcesConfig| -> Vec<String> {
            sources.trusted.iter().map(|n| n.to_string()).collect()
        };
        assert_eq!(names(sources_of(&[])), ["127.0.0.0/8", "::1/128"]);
        assert_eq!(
            names(sources_of(&["--trusted", "10.0.0.0/8"])),
            ["10.0.0.0/8"]
        );
        assert!(names(sources_of(&["--trusted", "none"])).is_empty());
        let lists = sources_of(&[
            "--allow",
            "192.0.2.0/24",
            "--allow",
            "::ffff:198.51.100.0/120",
            "--deny",
            "192.0.2.66",
        ]);
        assert_eq!(lists.allow.len(), 2);
        assert_eq!(lists.allow[1].to_string(), "198.51.100.0/24");
        assert_eq!(lists.deny[0].to_string(), "192.0.2.66/32");
    }

    #[test]
    fn a_bad_prefix_is_a_usage_error() {
        for bad in [
            ["--allow", "10.0.0.0/40"],
            ["--deny", "example.org"],
            ["--trusted", "nobody"],
        ] {
            let line = ["echoloop", "serve"].iter().chain(&bad).copied();
            let error = Cli::try_parse_from(line).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn durations_and_sizes_take_units() {
        let Command::Serve(args) = Cli::try_parse_from([
            "echoloop",
            "serve",
            "--idle-timeout",
            "90s",
            "--shutdown-timeout",
            "500ms",
            "--keepalive",
            "2m",
            "--stats-interval",
            "0",
            "--max-frame",
            "1M",
            "--queue-limit",
            "64K",
            "--dir-quota",
            "2G",
        ])
        .unwrap()
        .command
        else {
            panic!("not serve");
        };
        let dir_quota = args.dir_quota;
        let config = args.into_config();
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(config.shutdown_timeout, Duration::from_millis(500));
        assert_eq!(config.keepalive, Some(Duration::from_secs(120)));
        assert_eq!(config.stats_interval, None);
        assert_eq!(config.max_frame, 1 << 20);
        assert_eq!(config.queue_limit, 64 << 10);
        assert_eq!(dir_quota, 2 << 30);
        for bad in [
            ["--idle-timeout", "-1"],
            ["--max-frame", "0"],
            ["--queue-limit", "1.5K"],
        ] {
            let args = ["echoloop", "serve", bad[0], bad[1]];
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_files_defaults_are_the_libraries_and_units_are_taken() {
        use crate::protocol::files::{DEFAULT_PARTIAL_TTL, DEFAULT_RESERVATION_TIMEOUT};
        let parse = |extra: &[&str]| {
            let args = [
                &["echoloop", "serve", "-p", "files", "--dir", "/tmp"],
                extra,
            ]
            .concat();
            let Command::Serve(args) = Cli::try_parse_from(args).unwrap().command else {
                panic!("not serve");
            };
            args.into_config()
        };
        let files = parse(&[]).files.unwrap();
        assert_eq!(files.reservation_timeout, DEFAULT_RESERVATION_TIMEOUT);
        assert_eq!(files.partial_ttl, Some(DEFAULT_PARTIAL_TTL));
        let config = parse(&[
            "--partial-ttl",
            "0",
            "--max-memory",
            "64M",
            "--sndbuf",
            "32K",
        ]);
        assert_eq!(config.files.unwrap().partial_ttl, None);
        assert_eq!(config.max_memory, 64 << 20);
        assert_eq!(config.sndbuf, Some(32 << 10));
    }

    #[test]
    fn udp_sockets_ask_for_4m_of_receive_buffer_unless_told() {
        let parse = |extra: &[&str]| {
            let args = [&["echoloop", "serve"], extra].concat();
            let Command::Serve(args) = Cli::try_parse_from(args).unwrap().command else {
                panic!("not serve");
            };
            args.into_config()
        };
        assert_eq!(parse(&[]).udp_rcvbuf, Some(4 << 20));
        assert_eq!(parse(&["--udp-rcvbuf", "256K"]).udp_rcvbuf, Some(256 << 10));
    }

    #[test]
    fn udp_alone_does_not_bind_the_default_tcp_port() {
        let Command::Serve(args) = Cli::try_parse_from(["echoloop", "serve", "-u", "127.0.0.1:0"])
            .unwrap()
            .command
        else {
            panic!("not serve");
        };
        assert!(args.into_config().listen.is_empty());
    }
}
