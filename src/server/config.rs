//! What a server is asked to do: a plain struct that tests build without the command line.
//!
//! `cli/serve.rs` turns `echoloop serve ...` into a [`ServeConfig`]; tests start from
//! [`ServeConfig::for_tests`] (loopback, port 0, no signal handling) and change a field or two.
//!
//! One process may serve several services, as inetd does: an address may name its own,
//! `daytime@0.0.0.0:13` ([`ServiceAddress`]); one without a name is served with `-p`. Which
//! service each socket gets, and the rules that follow from that, are `services.rs`.
//!
//! Next: `server/services.rs`, then `server/mod.rs`, which binds the sockets this config names
//! and runs the reactors.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::net::address::Address;
use crate::protocol::framing::FramingKind;
use crate::protocol::{FilesConfig, ProtocolFactory, ProtocolKind, Service};
use crate::server::sources::SourcesConfig;

/// Which protocol a server speaks: one of echoloop's own, or one of yours.
#[derive(Debug, Clone)]
pub enum ProtocolChoice {
    /// A service echoloop ships (`-p`).
    Builtin(ProtocolKind),
    /// A protocol of your own (library use; see `examples/suffix.rs`).
    Custom(ProtocolFactory),
}

impl ProtocolChoice {
    /// Its name, for logs: `echo`, or a custom protocol's own [`crate::Protocol::NAME`].
    pub fn name(&self) -> &'static str {
        match self {
            ProtocolChoice::Builtin(kind) => kind.name(),
            ProtocolChoice::Custom(factory) => factory.name(),
        }
    }

    /// The framing used when `--framing` is not given, known without building the protocol.
    pub fn default_framing(&self) -> FramingKind {
        match self {
            ProtocolChoice::Builtin(kind) => kind.default_framing(),
            ProtocolChoice::Custom(factory) => factory.default_framing(),
        }
    }

    /// Whether `--framing` changes anything for it (a protocol of your own: yes).
    pub fn takes_framing(&self) -> bool {
        match self {
            ProtocolChoice::Builtin(kind) => kind.takes_framing(),
            ProtocolChoice::Custom(_) => true,
        }
    }

    /// Whether this is the built-in `kind`.
    pub fn is(&self, kind: ProtocolKind) -> bool {
        matches!(self, ProtocolChoice::Builtin(k) if *k == kind)
    }

    /// A new value of this protocol, for one reactor (or one thread of the threaded model).
    /// Fails only if `files` cannot open its folder.
    pub(crate) fn build(&self, files: Option<&FilesConfig>) -> io::Result<Box<dyn Service>> {
        match self {
            ProtocolChoice::Builtin(kind) => kind.build(files),
            ProtocolChoice::Custom(factory) => Ok(factory.build()),
        }
    }
}

/// An address that may name the service it serves: `daytime@0.0.0.0:13`, `chat@unix:/run/chat.sock`,
/// `echo@[::1]:7`; without a name (`0.0.0.0:7`) it is served with `-p`.
///
/// `A` is what follows the `@`: an [`Address`] for `-l`, a [`SocketAddr`] for `-u`. The name is
/// recognised only when the text before the first `@` is a plain word (letters, digits, `-`,
/// `_`), so `unix:@abstract` is an address, not a prefix. (A later `tls:` marker goes after the
/// `@`, before the address: `chat@tls:0.0.0.0:6697`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddress<A> {
    /// The service named before `@`; `None`: the one `-p` names.
    pub protocol: Option<ProtocolKind>,
    /// Where to listen.
    pub address: A,
}

impl<A> ServiceAddress<A> {
    /// `address`, served with `-p`.
    pub fn plain(address: A) -> Self {
        ServiceAddress {
            protocol: None,
            address,
        }
    }

    /// `address`, served with `protocol`.
    pub fn serving(protocol: ProtocolKind, address: A) -> Self {
        ServiceAddress {
            protocol: Some(protocol),
            address,
        }
    }
}

/// The built-in protocol called `name`, if there is one.
pub fn protocol_named(name: &str) -> Option<ProtocolKind> {
    ProtocolKind::ALL
        .into_iter()
        .find(|kind| kind.name() == name)
}

impl<A> FromStr for ServiceAddress<A>
where
    A: FromStr,
    A::Err: fmt::Display,
{
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        ServiceAddress::parse_with(text, |rest| rest.parse::<A>().map_err(|e| e.to_string()))
    }
}

impl<A> ServiceAddress<A> {
    /// Parses `[PROTOCOL@]ADDR`, the address with `address` (`-u` resolves host names).
    pub fn parse_with(
        text: &str,
        address: impl FnOnce(&str) -> Result<A, String>,
    ) -> Result<Self, String> {
        let is_word = |word: &str| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let (protocol, rest) = match text.split_once('@') {
            Some(("", _)) => {
                return Err(format!(
                    "'{text}' names no protocol before '@' (as in echo@{})",
                    &text[1..]
                ));
            }
            Some((name, rest)) if is_word(name) => match protocol_named(name) {
                Some(kind) => (Some(kind), rest),
                None => {
                    let names: Vec<&str> = ProtocolKind::ALL.iter().map(|k| k.name()).collect();
                    return Err(format!(
                        "unknown protocol '{name}' in '{text}' (possible values: {})",
                        names.join(", ")
                    ));
                }
            },
            _ => (None, text),
        };
        Ok(ServiceAddress {
            protocol,
            address: address(rest)?,
        })
    }
}

impl<A: fmt::Display> fmt::Display for ServiceAddress<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Some(kind) => write!(f, "{}@{}", kind.name(), self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

/// What a flag given on the command line needs in order to be of use. A flag whose need no
/// configured socket meets is a usage error (`ServicePlan::validate` in `services.rs`), not
/// silently ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A socket serving this service (`--dir` needs `files`, `--chat-rate` needs `chat`).
    Service(ProtocolKind),
    /// A UDP socket (`--udp-rate-limit`).
    Udp,
    /// A stream socket (`--sndbuf`, `--rcvbuf`, `--keepalive`).
    Stream,
    /// A stream socket of a service that is not `files`: `--greeting` (it would break the
    /// tutorial upload client).
    StreamNotFiles,
    /// A stream socket of a service that reads messages: `--framing` (not daytime, time or
    /// chargen, which never read one, nor files, which has its own).
    StreamFramed,
    /// A TLS listener (`-l tls:ADDR`): the `--tls-*` flags.
    Tls,
}

/// A flag given on the command line, and what it needs ([`Need`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagNeed {
    /// The flag as typed: `--dir`.
    pub flag: &'static str,
    /// What must be configured for it to be of use.
    pub need: Need,
}

impl From<ProtocolKind> for ProtocolChoice {
    fn from(kind: ProtocolKind) -> Self {
        ProtocolChoice::Builtin(kind)
    }
}

impl From<ProtocolFactory> for ProtocolChoice {
    fn from(factory: ProtocolFactory) -> Self {
        ProtocolChoice::Custom(factory)
    }
}

/// Everything `echoloop serve` can be told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Stream listeners served with `protocol`: TCP addresses and Unix socket paths (`-l ADDR`).
    pub listen: Vec<Address>,
    /// UDP sockets served with `protocol` (`-u ADDR`).
    pub udp: Vec<SocketAddr>,
    /// Stream listeners that may name their service (`-l PROTOCOL@ADDR`; `None`: `protocol`),
    /// bound after `listen`. The command line puts every `-l` here once one names a service, so
    /// that they are bound in the order given.
    pub listen_services: Vec<ServiceAddress<Address>>,
    /// UDP sockets that may name their service (`-u PROTOCOL@ADDR`), bound after `udp`; as
    /// `listen_services`.
    pub udp_services: Vec<ServiceAddress<SocketAddr>>,
    /// The service (`-p`), or a protocol of your own: for every socket that names none.
    pub protocol: ProtocolChoice,
    /// How frames are cut; `None`: the protocol's default.
    pub framing: Option<FramingKind>,
    /// Largest line or frame accepted, in bytes.
    pub max_frame: usize,
    /// Connections held at once (per worker); one more is refused with an `error:` line.
    pub max_connections: usize,
    /// Close a connection with no traffic for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Outbound queue high-water mark per client, in bytes.
    pub queue_limit: usize,
    /// A line sent to each new stream client before anything else.
    pub greeting: Option<Vec<u8>>,
    /// Independent reactors sharing the listening ports (SO_REUSEPORT).
    pub workers: usize,
    /// Set SO_REUSEPORT even with one worker, so that several echoloop *processes* can share the
    /// port (each with its own open-file limit). Always on with more than one worker.
    pub reuse_port: bool,
    /// How long a shutdown may spend flushing queues.
    pub shutdown_timeout: Duration,
    /// Listen backlog.
    pub backlog: i32,
    /// TCP_NODELAY on accepted sockets.
    pub nodelay: bool,
    /// TCP keepalive idle time on accepted sockets; `None`: off.
    pub keepalive: Option<Duration>,
    /// Log a line of counters this often; `None`: only on SIGUSR1.
    pub stats_interval: Option<Duration>,
    /// Install SIGINT/SIGTERM/SIGUSR1 handlers (the daemon does; in-process test servers do not).
    pub handle_signals: bool,
    /// Serve `GET /metrics` (Prometheus) on this TCP address (`--metrics`); `None`: off.
    pub metrics: Option<SocketAddr>,
    /// The folder and limits of `-p files` (`--dir`, `--max-file-bytes`, `--dir-quota`).
    pub files: Option<FilesConfig>,
    /// Most bytes all connections' buffers of one reactor may hold (`--max-memory`, per worker).
    pub max_memory: usize,
    /// Chat lines per second per untrusted member (`--chat-rate`, bursts of twice that);
    /// `None`: no flood control.
    pub chat_rate: Option<u32>,
    /// `SO_SNDBUF` for accepted stream sockets (`--sndbuf`); `None`: the kernel's default.
    pub sndbuf: Option<usize>,
    /// `SO_RCVBUF` for accepted stream sockets (`--rcvbuf`); `None`: the kernel's default.
    pub rcvbuf: Option<usize>,
    /// `SO_RCVBUF` asked for each UDP socket (`--udp-rcvbuf`, default 4 MiB); `None`: the
    /// kernel's default (~200 KiB, a few hundred small datagrams).
    pub udp_rcvbuf: Option<usize>,
    /// Who may talk to us and how much: `--trusted`, `--allow`, `--deny`, `--udp-rate-limit`,
    /// `--max-per-source`, `--accept-rate` (see `server/sources/`).
    pub sources: SourcesConfig,
    /// The certificate and key of the `tls:` listeners, and how their clients are held to
    /// them (`--tls-cert`, `--tls-key`, `--tls-client-ca`, `--tls-handshake-timeout`).
    pub tls: TlsConfig,
    /// Flags given on the command line and what each needs; one that no socket uses is an
    /// error (`ServicePlan::validate`). Empty for a config built in code.
    pub flag_needs: Vec<FlagNeed>,
}

/// What the `tls:` listeners need (see `net/tls/`): files are read at start and again on
/// SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain, PEM: the server's certificate first (`--tls-cert`).
    pub cert: Option<PathBuf>,
    /// Its private key, PEM: PKCS#8, PKCS#1 or SEC1 (`--tls-key`).
    pub key: Option<PathBuf>,
    /// Clients must show a certificate signed by one of these CAs, PEM (`--tls-client-ca`);
    /// `None`: no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// A client whose handshake is not done by then is closed (`--tls-handshake-timeout`).
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            client_ca: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: vec![Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 7007)))],
            udp: Vec::new(),
            listen_services: Vec::new(),
            udp_services: Vec::new(),
            protocol: ProtocolKind::Echo.into(),
            framing: None,
            max_frame: 64 * 1024,
            max_connections: 10_000,
            idle_timeout: Some(Duration::from_secs(300)),
            queue_limit: 1024 * 1024,
            greeting: None,
            workers: 1,
            reuse_port: false,
            shutdown_timeout: Duration::from_secs(5),
            backlog: 1024,
            nodelay: true,
            keepalive: None,
            stats_interval: None,
            handle_signals: true,
            metrics: None,
            files: None,
            max_memory: 1 << 30,
            chat_rate: Some(20),
            sndbuf: None,
            rcvbuf: None,
            udp_rcvbuf: Some(4 << 20),
            sources: SourcesConfig::default(),
            tls: TlsConfig::default(),
            flag_needs: Vec::new(),
        }
    }
}

impl ServeConfig {
    /// The defaults, but on `127.0.0.1:0` and without signal handlers: for in-process servers.
    pub fn for_tests() -> Self {
        ServeConfig {
            listen: vec![Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)))],
            handle_signals: false,
            ..ServeConfig::default()
        }
    }

    /// Whether some stream listener speaks TLS (`-l tls:ADDR`).
    pub fn has_tls_listener(&self) -> bool {
        self.listen
            .iter()
            .chain(self.listen_services.iter().map(|s| &s.address))
            .any(Address::is_tls)
    }

    /// The framing in force for `-p`: the one asked for, else the protocol's default.
    pub fn framing(&self) -> FramingKind {
        self.framing
            .unwrap_or_else(|| self.protocol.default_framing())
    }

    /// A new value of the `-p` protocol, for one thread of the threaded model. Fails only if
    /// `-p files` cannot open its folder.
    pub(crate) fn build_service(&self) -> io::Result<Box<dyn Service>> {
        self.protocol.build(self.files.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn stream(text: &str) -> Result<ServiceAddress<Address>, String> {
        text.parse()
    }

    #[test]
    fn a_prefix_names_the_service() {
        assert_eq!(
            stream("echo@0.0.0.0:7").unwrap(),
            ServiceAddress::serving(ProtocolKind::Echo, "0.0.0.0:7".parse().unwrap())
        );
        assert_eq!(
            stream("echo@[::1]:7").unwrap(),
            ServiceAddress::serving(ProtocolKind::Echo, "[::1]:7".parse().unwrap())
        );
        assert_eq!(
            stream("chat@unix:/run/chat.sock").unwrap(),
            ServiceAddress::serving(ProtocolKind::Chat, Address::Unix("/run/chat.sock".into()))
        );
        let udp: ServiceAddress<SocketAddr> = "time@127.0.0.1:37".parse().unwrap();
        assert_eq!(udp.protocol, Some(ProtocolKind::Time));
        assert_eq!(udp.address, SocketAddr::from(([127, 0, 0, 1], 37)));
    }

    #[test]
    fn no_prefix_means_dash_p() {
        assert_eq!(
            stream("127.0.0.1:7").unwrap(),
            ServiceAddress::plain("127.0.0.1:7".parse().unwrap())
        );
        // An `@` that follows something other than a plain word belongs to the address.
        assert_eq!(
            stream("unix:@abstract").unwrap(),
            ServiceAddress::plain(Address::Unix(PathBuf::from("@abstract")))
        );
        assert_eq!(
            stream("unix:/tmp/a@b").unwrap(),
            ServiceAddress::plain(Address::Unix(PathBuf::from("/tmp/a@b")))
        );
    }

    #[test]
    fn an_unknown_prefix_is_named_with_the_valid_ones() {
        let error = stream("nosuch@127.0.0.1:0").unwrap_err();
        assert!(error.contains("'nosuch'"), "{error}");
        assert!(error.contains("echo, timestamp, daytime, time"), "{error}");
        assert!(stream("echo@").is_err());
        assert!(stream("echo@nonsense").is_err());
        assert!(
            "echo@unix:/x"
                .parse::<ServiceAddress<SocketAddr>>()
                .is_err()
        );
    }

    #[test]
    fn it_prints_as_it_is_parsed() {
        for text in ["daytime@0.0.0.0:13", "[::1]:7", "chat@unix:/run/chat.sock"] {
            assert_eq!(stream(text).unwrap().to_string(), text);
        }
    }
}
