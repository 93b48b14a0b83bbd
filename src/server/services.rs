//! Several services in one process, as inetd does: which service each socket serves.
//!
//! `echoloop serve -l echo@0.0.0.0:7 -l daytime@0.0.0.0:13 -u time@0.0.0.0:37` is one process
//! with one reactor (per worker) and three services. Each reactor builds one protocol value per
//! *distinct* service in use and keeps them in a list; a socket, and every connection accepted
//! on it, carries the index of its service in that list, so finding the protocol for an event is
//! an array index, never a lookup by name. State that belongs to a protocol value (chat's room,
//! the files service's busy set) is therefore per service and per reactor: a chat line never
//! reaches an echo client.
//!
//! [`ServicePlan`] is that list and the index of every socket, worked out once from the config
//! (and the names of the sockets systemd passed us, see `net/activation.rs`) in the order
//! `server/mod.rs` binds them. The rules that depend on the services in use are checked here
//! too ([`ServicePlan::validate`]): the files service takes no UDP and one worker, and a flag no
//! configured socket uses is an error.
//!
//! Next: `server/mod.rs`, which binds the sockets and starts the reactors.

use std::io;

use crate::error::StartError;
use crate::protocol::ProtocolKind;
use crate::server::config::{FlagNeed, Need, ProtocolChoice, ServeConfig};

/// Whether a socket carries a stream of bytes per client or datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A TCP or Unix stream listener.
    Stream,
    /// A UDP socket.
    Datagram,
}

/// The services a server runs and which one each socket serves.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// The distinct services in use, in order of first use: a service's index is its place here.
    choices: Vec<ProtocolChoice>,
    /// The service index of each stream listener, in the order they are bound.
    streams: Vec<usize>,
    /// The service index of each UDP socket, in the order they are bound.
    datagrams: Vec<usize>,
}

impl ServicePlan {
    /// The plan for `config` plus the `inherited` sockets (each one's service, `None` for `-p`,
    /// and kind), in `server/mod.rs`'s binding order: inherited sockets first, then `listen`,
    /// `listen_services`, then `udp`, `udp_services`.
    pub fn new(config: &ServeConfig, inherited: &[(Option<ProtocolKind>, SocketKind)]) -> Self {
        let mut plan = ServicePlan {
            choices: Vec::new(),
            streams: Vec::new(),
            datagrams: Vec::new(),
        };
        for (protocol, kind) in inherited {
            plan.add(config, *protocol, *kind);
        }
        for _ in &config.listen {
            plan.add(config, None, SocketKind::Stream);
        }
        for socket in &config.listen_services {
            plan.add(config, socket.protocol, SocketKind::Stream);
        }
        for _ in &config.udp {
            plan.add(config, None, SocketKind::Datagram);
        }
        for socket in &config.udp_services {
            plan.add(config, socket.protocol, SocketKind::Datagram);
        }
        plan
    }

    /// Gives the next socket of `kind` its service: the one it names, else `-p`.
    fn add(&mut self, config: &ServeConfig, protocol: Option<ProtocolKind>, kind: SocketKind) {
        let choice = match protocol {
            Some(kind) if !config.protocol.is(kind) => ProtocolChoice::Builtin(kind),
            _ => config.protocol.clone(),
        };
        let index = match self.choices.iter().position(|c| c.name() == choice.name()) {
            Some(index) => index,
            None => {
                self.choices.push(choice);
                self.choices.len() - 1
            }
        };
        match kind {
            SocketKind::Stream => self.streams.push(index),
            SocketKind::Datagram => self.datagrams.push(index),
        }
    }

    /// The services, in index order.
    pub fn choices(&self) -> &[ProtocolChoice] {
        &self.choices
    }

    /// Each service's name, in index order (the `service` label of the counters).
    pub fn names(&self) -> Vec<&'static str> {
        self.choices.iter().map(ProtocolChoice::name).collect()
    }

    /// The service index of stream listener `i` (in binding order).
    pub fn stream_service(&self, i: usize) -> usize {
        self.streams[i]
    }

    /// The service index of UDP socket `i` (in binding order).
    pub fn datagram_service(&self, i: usize) -> usize {
        self.datagrams[i]
    }

    /// The service indexes of the stream listeners, in binding order.
    pub fn stream_services(&self) -> &[usize] {
        &self.streams
    }

    /// The service indexes of the UDP sockets, in binding order.
    pub fn datagram_services(&self) -> &[usize] {
        &self.datagrams
    }

    /// Whether some socket serves the built-in `kind`.
    pub fn serves(&self, kind: ProtocolKind) -> bool {
        self.choices.iter().any(|c| c.is(kind))
    }

    /// Whether some UDP socket serves the built-in `kind`.
    pub fn serves_udp(&self, kind: ProtocolKind) -> bool {
        self.datagrams.iter().any(|&i| self.choices[i].is(kind))
    }

    /// Whether there is a UDP socket.
    pub fn has_udp(&self) -> bool {
        !self.datagrams.is_empty()
    }

    /// Whether there is a stream listener.
    pub fn has_stream(&self) -> bool {
        !self.streams.is_empty()
    }

    /// Checks that `config`'s settings fit together, given which service each socket serves;
    /// every error here is a usage error (exit 2).
    ///
    /// The files service has rules of its own, which apply to its sockets only: a folder
    /// (`--dir`), stream sockets only, one worker (its busy set and quota are per reactor); it
    /// gets neither `--greeting` (it would break the tutorial client) nor `--framing` (it has its
    /// own), which go to the other services. Then every flag given must be of use to some socket
    /// ([`FlagNeed`]). Whether the folder opens is checked when the server binds.
    pub fn validate(&self, config: &ServeConfig) -> Result<(), StartError> {
        let plan = self;
        if plan.serves(ProtocolKind::Files) {
            let refuse = |what: &str| Err(StartError::Config(format!("files: {what}")));
            if plan.serves_udp(ProtocolKind::Files) {
                return refuse("serves TCP and Unix sockets only, not UDP (-u)");
            }
            if config.workers > 1 {
                return refuse("runs on one worker (its busy set and quota are per reactor)");
            }
            if config.files.is_none() {
                return refuse("needs --dir DIR");
            }
            if config.framing.is_some() && !plan.has_stream_not_files() {
                return refuse("has its own framing (no --framing)");
            }
            if config.greeting.is_some() && !plan.has_stream_not_files() {
                return refuse("takes no --greeting (it would break the tutorial client)");
            }
        }
        if config.has_tls_listener() && (config.tls.cert.is_none() || config.tls.key.is_none()) {
            return Err(StartError::Config(
                "tls: listeners need --tls-cert FILE and --tls-key FILE".into(),
            ));
        }
        for FlagNeed { flag, need } in &config.flag_needs {
            let met = match need {
                Need::Service(kind) => plan.serves(*kind),
                Need::Udp => plan.has_udp(),
                Need::Stream => plan.has_stream(),
                Need::StreamNotFiles => plan.has_stream_not_files(),
                Need::StreamFramed => plan.has_stream_framed(),
                Need::Tls => config.has_tls_listener(),
            };
            if !met {
                let why = match need {
                    // `-p` names the service of the addresses without a prefix: with none
                    // such, it serves nothing.
                    Need::Service(kind) if config.protocol.is(*kind) => format!(
                        "every address names its own service, so -p {} serves none of them",
                        kind.name()
                    ),
                    Need::Service(kind) => format!(
                        "no {0} service is configured (-p {0}, or -l {0}@ADDR)",
                        kind.name()
                    ),
                    Need::Udp => "no UDP socket is configured (-u ADDR)".to_string(),
                    Need::Stream => "no stream socket is configured (-l ADDR)".to_string(),
                    Need::StreamNotFiles => {
                        "no stream socket of a service other than files is configured".to_string()
                    }
                    Need::StreamFramed => "no stream socket of a service that reads messages \
                                           (daytime, time and chargen read none; files frames \
                                           its own)"
                        .to_string(),
                    Need::Tls => "no TLS listener is configured (-l tls:ADDR)".to_string(),
                };
                return Err(StartError::Config(format!("{flag} is of no use: {why}")));
            }
        }
        Ok(())
    }

    /// Builds each built-in service once and drops it, so that what it needs from the
    /// system (the files service's folder) fails now, before the `listening` lines, and not in a
    /// worker after them. A custom protocol's factory is not called: it is yours, and counted
    /// in tests. A folder named on the command line that is missing, not a folder or not ours
    /// to read is the command line's mistake ([`StartError::Config`], exit 2); anything else
    /// (out of descriptors, a thread that cannot start) is the system's ([`StartError::Io`]).
    pub(crate) fn probe(&self, config: &ServeConfig) -> Result<(), StartError> {
        for choice in self.choices() {
            if let ProtocolChoice::Builtin(kind) = choice {
                kind.build(config.files.as_ref())
                    .map(drop)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::NotFound
                        | io::ErrorKind::NotADirectory
                        | io::ErrorKind::PermissionDenied
                        | io::ErrorKind::InvalidInput => StartError::Config(e.to_string()),
                        _ => StartError::Io(e),
                    })?;
            }
        }
        Ok(())
    }

    /// Whether some stream listener serves a service that `--framing` changes.
    pub fn has_stream_framed(&self) -> bool {
        self.streams
            .iter()
            .any(|&i| self.choices[i].takes_framing())
    }

    /// Whether some stream listener serves a service other than `files`.
    pub fn has_stream_not_files(&self) -> bool {
        self.streams
            .iter()
            .any(|&i| !self.choices[i].is(ProtocolKind::Files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::ServiceAddress;

    #[test]
    fn each_distinct_service_is_built_once_and_sockets_share_it() {
        let mut config = ServeConfig::for_tests(); // one plain listener: -p echo
        config.listen_services = vec![
            ServiceAddress::serving(ProtocolKind::Daytime, "127.0.0.1:0".parse().unwrap()),
            ServiceAddress::serving(ProtocolKind::Echo, "127.0.0.1:0".parse().unwrap()),
        ];
        config.udp_services = vec![ServiceAddress::serving(
            ProtocolKind::Time,
            "127.0.0.1:0".parse().unwrap(),
        )];
        let plan = ServicePlan::new(&config, &[(Some(ProtocolKind::Chat), SocketKind::Stream)]);
        assert_eq!(plan.names(), ["chat", "echo", "daytime", "time"]);
        assert_eq!(plan.stream_services(), [0, 1, 2, 1]); // echo@ is -p's echo
        assert_eq!(plan.datagram_services(), [3]);
        assert!(plan.serves_udp(ProtocolKind::Time));
        assert!(!plan.serves_udp(ProtocolKind::Echo));
        assert!(plan.has_stream_not_files());
    }
}
