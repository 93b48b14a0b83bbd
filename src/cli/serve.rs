//! `echoloop serve`: the server's arguments, and the [`ServeConfig`] they describe.
//!
//! `-l` and `-u` take `[PROTOCOL@]ADDR`: several services in one process (see
//! `server/services.rs`). Flags that matter only to some services or sockets (`--dir`,
//! `--chat-rate`, `--udp-rate-limit`, ...) are recorded with what they need when given
//! ([`FlagNeed`]): one that no configured socket uses is a usage error, not silently ignored.
//! Those with a default are `Option`s here, so that "given" can be told from "defaulted".

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};
use ipnet::IpNet;

use super::units;
use crate::net::activation::{Inherited, InheritedSocket};
use crate::net::address::{Address, parse_socket_addr};
use crate::protocol::files::{
    DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILES, DEFAULT_PARTIAL_TTL, DEFAULT_RESERVATION_TIMEOUT,
};
use crate::protocol::framing::FramingKind;
use crate::protocol::{FilesConfig, ProtocolKind};
use crate::server::config::{
    FlagNeed, Need, ServeConfig, ServiceAddress, TlsConfig, protocol_named,
};
use crate::server::sources::SourcesConfig;
use crate::server::sources::balancers::{Balancer, ProxyProtocolConfig, parse_balancer};
use crate::server::sources::cidr::parse_cidr;
use crate::server::threaded::Model;

/// `echoloop serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[allow(rustdoc::broken_intra_doc_links)] // `[V6]` is clap help text, not a link
    /// Stream listen address, repeatable: HOST:PORT, [V6]:PORT or unix:/path; PROTOCOL@ADDR serves PROTOCOL there instead of -p [default: 127.0.0.1:7007]
    #[arg(short, long = "listen", value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Vec<ServiceAddress<Address>>,
    /// Also serve over UDP at ADDR, repeatable; PROTOCOL@ADDR serves PROTOCOL there instead of -p
    #[arg(short, long = "udp", value_name = "ADDR", value_parser = parse_udp)]
    pub udp: Vec<ServiceAddress<SocketAddr>>,
    /// The service, for every address without a PROTOCOL@ prefix
    #[arg(short, long, value_enum, default_value = "echo", value_name = "NAME")]
    pub protocol: ProtocolKind,
    /// How frames are cut [default: line for chat; raw for the others, one frame per read as the tutorial servers (timestamp: line to pipeline)]
    #[arg(long, value_enum, value_name = "F")]
    pub framing: Option<FramingKind>,
    /// Largest line or frame accepted (64K, 1M; a bare number is bytes)
    #[arg(long, default_value = "64K", value_name = "BYTES", allow_hyphen_values = true, value_parser = |t: &str| units::bytes_in(t, 1, u32::MAX as u64))]
    pub max_frame: u64,
    /// Connections held at once; one over it gets `error: server full` and is closed
    #[arg(long, default_value_t = 10_000, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 1u64..))]
    pub max_connections: u64,
    /// Close a connection with no traffic for this long (30s, 5m; a bare number is seconds); 0 = never
    #[arg(long, default_value = "300s", value_name = "DURATION", allow_hyphen_values = true, value_parser = units::duration)]
    pub idle_timeout: Duration,
    /// Per-client outbound queue limit: above it the client is not read until it drains (chat: dropped)
    #[arg(long, default_value = "1M", value_name = "BYTES", allow_hyphen_values = true, value_parser = |t: &str| units::bytes_in(t, 1, u64::MAX))]
    pub queue_limit: u64,
    /// A line sent to each new stream client on connect
    #[arg(long, value_name = "TEXT")]
    pub greeting: Option<String>,
    /// Single-threaded reactors sharing the port (SO_REUSEPORT; on macOS connections do not spread across them)
    #[arg(long, default_value_t = 1, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 1u64..=256))]
    pub workers: u64,
    /// Set SO_REUSEPORT so that several echoloop processes can share the port (implied by --workers > 1)
    #[arg(long)]
    pub reuse_port: bool,
    /// On SIGINT/SIGTERM: stop accepting, flush queued output up to this long (500ms, 5s), exit 0
    #[arg(long, default_value = "5s", value_name = "DURATION", allow_hyphen_values = true, value_parser = units::duration)]
    pub shutdown_timeout: Duration,
    /// Listen backlog
    #[arg(long, default_value_t = 1024, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 1i32..))]
    pub backlog: i32,
    /// TCP_NODELAY on accepted sockets
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub nodelay: bool,
    /// TCP keepalive idle time on accepted sockets (30s, 2m); 0 = off
    #[arg(long, default_value = "0", value_name = "DURATION", allow_hyphen_values = true, value_parser = units::duration)]
    pub keepalive: Duration,
    /// Log a line of counters this often (10s, 1m); 0 = off (SIGUSR1 logs one at any time)
    #[arg(long, default_value = "0", value_name = "DURATION", allow_hyphen_values = true, value_parser = units::duration)]
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
    /// -p files: largest file accepted (512M, 1G; a bare number is bytes) [default: 1G]
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true, value_parser = units::bytes)]
    pub max_file_bytes: Option<u64>,
    /// -p files: content bytes the folder may hold, partial files included (10G); 0 = no quota [default: 0]
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true, value_parser = units::bytes)]
    pub dir_quota: Option<u64>,
    /// -p files: complete plus partial files the folder may hold [default: 100000]
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 0u64..))]
    pub max_files: Option<u64>,
    /// -p files: an upload's quota reservation ends after this long without a byte from it [default: 60s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = units::positive_duration)]
    pub reservation_timeout: Option<Duration>,
    /// -p files: remove partial files untouched this long; 0 = keep them [default: 1d]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = units::duration)]
    pub partial_ttl: Option<Duration>,
    /// Most bytes the connections' buffers may hold, per worker; over it the biggest holders are not read (chat: dropped) and new connections get `error: server busy`
    #[arg(long, default_value = "1G", value_name = "BYTES", allow_hyphen_values = true, value_parser = |t: &str| units::bytes_in(t, 1, u64::MAX))]
    pub max_memory: u64,
    /// -p chat: lines per second per member, in bursts of twice that; a member over it is not read until it may send again (trusted sources exempt); 0 = off [default: 20]
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 0u32..))]
    pub chat_rate: Option<u32>,
    /// SO_SNDBUF of accepted stream sockets, in bytes [default: the kernel's]
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true, value_parser = |t: &str| units::bytes_in(t, 1, i32::MAX as u64))]
    pub sndbuf: Option<u64>,
    /// SO_RCVBUF of accepted stream sockets, in bytes [default: the kernel's]
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true, value_parser = |t: &str| units::bytes_in(t, 1, i32::MAX as u64))]
    pub rcvbuf: Option<u64>,
    /// Receive buffer of each UDP socket, at least this many bytes: a bigger buffer rides out bursts instead of dropping them. The kernel caps it at net.core.rmem_max (a warning says so); one already bigger (systemd's ReceiveBuffer=) is kept [default: 4M]
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true, value_parser = |t: &str| units::bytes_in(t, 1, i32::MAX as u64))]
    pub udp_rcvbuf: Option<u64>,
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
    /// UDP replies per second per source /24 (IPv6 /56), burst as many; trusted exempt; 0 = off [default: 100]
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 0u32..))]
    pub udp_rate_limit: Option<u32>,
    /// Stream connections at once per source address (IPv6 /64), per worker; trusted exempt; 0 = off
    #[arg(long, default_value_t = 256, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 0u32..))]
    pub max_per_source: u32,
    /// New stream connections per second per source address (IPv6 /64), burst 2 x N, per worker; trusted exempt; 0 = off
    #[arg(long, default_value_t = 50, value_name = "N", allow_hyphen_values = true, value_parser = |t: &str| units::count_in(t, 0u32..))]
    pub accept_rate: u32,
    /// Stream peers that speak the PROXY protocol (a load balancer), repeatable: CIDR, or `unix` for every Unix-socket peer; their connections must start with a v1 or v2 header within 5 s, whose address then counts as the client's
    #[arg(long, value_name = "CIDR", value_parser = parse_balancer)]
    pub proxy_protocol: Vec<Balancer>,
    /// The certificate chain of the tls: listeners, PEM (the server's certificate first); read again on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, PEM (PKCS#8, PKCS#1 or SEC1); read again on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require TLS clients to show a certificate signed by a CA in this PEM file
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Close a TLS client whose handshake is not done in this long [default: 10s]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = units::positive_duration)]
    pub tls_handshake_timeout: Option<Duration>,
}

/// A `-l` value: `[PROTOCOL@]ADDR`.
fn parse_listen(text: &str) -> Result<ServiceAddress<Address>, String> {
    text.parse()
}

/// A `-u` value: `[PROTOCOL@]HOST:PORT`, the host name resolved.
fn parse_udp(text: &str) -> Result<ServiceAddress<SocketAddr>, String> {
    ServiceAddress::parse_with(text, parse_socket_addr)
}

/// The sockets systemd passed us, each with the service its name selects: a protocol's name
/// (`FileDescriptorName=daytime`) selects that protocol; any other name (systemd's default is
/// the socket unit's name, `echoloop.socket`) means `-p`.
pub fn inherited_services(inherited: Vec<Inherited>) -> Vec<ServiceAddress<InheritedSocket>> {
    inherited
        .into_iter()
        .map(|Inherited { name, socket }| ServiceAddress {
            protocol: protocol_named(&name),
            address: socket,
        })
        .collect()
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
    /// The flags given that only some services or sockets use, each with what it needs.
    ///
    /// Decided flag by flag: the files flags need a files service, `--chat-rate` a chat
    /// service, `--udp-rate-limit` a UDP socket, `--greeting` and `--framing` a stream socket of
    /// a service other than files, `--sndbuf`, `--rcvbuf`, `--keepalive` and `--proxy-protocol`
    /// a stream socket, the `--tls-*` flags a `tls:` listener.
    /// The rest apply to every socket (`--max-frame`, the access lists, ...), or have a default
    /// that cannot be told from a choice (`--nodelay`, `--max-connections`, `--idle-timeout`,
    /// `--queue-limit`, `--max-per-source`, `--accept-rate`: stream settings left at their
    /// defaults by a UDP-only server), and are not checked.
    pub fn flag_needs(&self) -> Vec<FlagNeed> {
        let files = Need::Service(ProtocolKind::Files);
        let given = [
            ("--dir", self.dir.is_some(), files),
            ("--max-file-bytes", self.max_file_bytes.is_some(), files),
            ("--dir-quota", self.dir_quota.is_some(), files),
            ("--max-files", self.max_files.is_some(), files),
            (
                "--reservation-timeout",
                self.reservation_timeout.is_some(),
                files,
            ),
            ("--partial-ttl", self.partial_ttl.is_some(), files),
            (
                "--chat-rate",
                self.chat_rate.is_some(),
                Need::Service(ProtocolKind::Chat),
            ),
            ("--udp-rate-limit", self.udp_rate_limit.is_some(), Need::Udp),
            ("--udp-rcvbuf", self.udp_rcvbuf.is_some(), Need::Udp),
            ("--greeting", self.greeting.is_some(), Need::StreamNotFiles),
            ("--framing", self.framing.is_some(), Need::StreamFramed),
            ("--sndbuf", self.sndbuf.is_some(), Need::Stream),
            ("--rcvbuf", self.rcvbuf.is_some(), Need::Stream),
            ("--keepalive", !self.keepalive.is_zero(), Need::Stream),
            (
                "--proxy-protocol",
                !self.proxy_protocol.is_empty(),
                Need::Stream,
            ),
            ("--tls-cert", self.tls_cert.is_some(), Need::Tls),
            ("--tls-key", self.tls_key.is_some(), Need::Tls),
            ("--tls-client-ca", self.tls_client_ca.is_some(), Need::Tls),
            (
                "--tls-handshake-timeout",
                self.tls_handshake_timeout.is_some(),
                Need::Tls,
            ),
        ];
        given
            .into_iter()
            .filter(|(_, given, _)| *given)
            .map(|(flag, _, need)| FlagNeed { flag, need })
            .collect()
    }

    /// The config these arguments describe.
    pub fn into_config(self) -> ServeConfig {
        let defaults = ServeConfig::default();
        let flag_needs = self.flag_needs();
        let files = self.dir.map(|dir| FilesConfig {
            dir,
            max_file_bytes: self.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
            dir_quota: self.dir_quota.unwrap_or(0),
            max_files: self.max_files.unwrap_or(DEFAULT_MAX_FILES),
            reservation_timeout: self
                .reservation_timeout
                .unwrap_or(DEFAULT_RESERVATION_TIMEOUT),
            partial_ttl: self
                .partial_ttl
                .map_or(Some(DEFAULT_PARTIAL_TTL), duration_or_off),
        });
        // Addresses without a prefix are served with -p; the others name their own service.
        // Once one does, they all go to the `_services` lists, so that sockets are bound (and
        // their `listening` lines printed) in command-line order, streams then UDP.
        let (plain_listen, listen_services) = if names_a_service(&self.listen) {
            (Vec::new(), self.listen)
        } else {
            (self.listen, Vec::new())
        };
        let (plain_udp, udp_services) = if names_a_service(&self.udp) {
            (Vec::new(), self.udp)
        } else {
            (self.udp, Vec::new())
        };
        let nothing_given = listen_services.is_empty()
            && udp_services.is_empty()
            && plain_listen.is_empty()
            && plain_udp.is_empty();
        ServeConfig {
            listen: if nothing_given {
                defaults.listen
            } else {
                plain_listen.into_iter().map(|s| s.address).collect()
            },
            udp: plain_udp.into_iter().map(|s| s.address).collect(),
            listen_services,
            udp_services,
            flag_needs,
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
            chat_rate: match self.chat_rate {
                Some(0) => None,
                Some(rate) => Some(rate),
                None => defaults.chat_rate,
            },
            sndbuf: self.sndbuf.map(|bytes| bytes as usize),
            rcvbuf: self.rcvbuf.map(|bytes| bytes as usize),
            udp_rcvbuf: self
                .udp_rcvbuf
                .map(|bytes| bytes as usize)
                .or(defaults.udp_rcvbuf),
            sources: SourcesConfig {
                // Given at least once, --trusted replaces the default list.
                trusted: if self.trusted.is_empty() {
                    defaults.sources.trusted
                } else {
                    self.trusted.into_iter().flatten().collect()
                },
                allow: self.allow,
                deny: self.deny,
                udp_rate_limit: self
                    .udp_rate_limit
                    .unwrap_or(defaults.sources.udp_rate_limit),
                max_per_source: self.max_per_source,
                accept_rate: self.accept_rate,
                proxy_protocol: ProxyProtocolConfig {
                    balancers: self.proxy_protocol,
                    ..defaults.sources.proxy_protocol
                },
            },
            tls: TlsConfig {
                cert: self.tls_cert,
                key: self.tls_key,
                client_ca: self.tls_client_ca,
                handshake_timeout: self
                    .tls_handshake_timeout
                    .unwrap_or(defaults.tls.handshake_timeout),
            },
        }
    }
}

/// Whether some address of `list` names its service (`PROTOCOL@ADDR`).
fn names_a_service<A>(list: &[ServiceAddress<A>]) -> bool {
    list.iter().any(|s| s.protocol.is_some())
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
        let dir_quota = args.dir_quota.unwrap();
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
