//! Where a socket lives: `HOST:PORT`, `[V6]:PORT`, `unix:/path`, or `tls:HOST:PORT`.
//!
//! The server (`serve -l`, `serve -u`), the load generator and the client all name their sockets the
//! same way, so the parsing lives here once. A host name such as `localhost` is resolved when the
//! address is parsed (the first address the resolver returns is used), so everything after parsing
//! deals in plain `SocketAddr`s. A `tls:` address keeps the name as written too: a TLS client
//! checks the server's certificate against it (and sends it as SNI).
//!
//! Next: `net/listener.rs`, binding and accepting.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// A stream endpoint: a TCP address or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `HOST:PORT` or `[V6]:PORT`.
    Tcp(SocketAddr),
    /// `unix:/path/to/socket`.
    Unix(PathBuf),
    /// `tls:HOST:PORT`: TCP with TLS on top (`net/tls/` for the server, `clients/tls.rs` for
    /// the clients).
    Tls {
        /// Where to connect or listen.
        addr: SocketAddr,
        /// `HOST` as written: the name a client checks the certificate against.
        host: String,
    },
}

impl Address {
    /// The TCP address, if this is one (a `tls:` address is TCP underneath).
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(addr) | Address::Tls { addr, .. } => Some(*addr),
            Address::Unix(_) => None,
        }
    }

    /// Whether TLS is spoken on top (`tls:HOST:PORT`).
    pub fn is_tls(&self) -> bool {
        matches!(self, Address::Tls { .. })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tls { addr, .. } => write!(f, "tls:{addr}"),
        }
    }
}

impl FromStr for Address {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = text.strip_prefix("tls:") {
            let addr = parse_socket_addr(rest).map_err(|e| {
                e.replace("HOST:PORT or [V6]:PORT", "tls:HOST:PORT or tls:[V6]:PORT")
            })?;
            let host = match rest.rsplit_once(':') {
                Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
                None => rest,
            };
            return Ok(Address::Tls {
                addr,
                host: host.to_string(),
            });
        }
        match text.strip_prefix("unix:") {
            Some("") => Err("unix: needs a path, as in unix:/tmp/echoloop.sock".to_string()),
            Some(path) => Ok(Address::Unix(PathBuf::from(path))),
            None => parse_socket_addr(text).map(Address::Tcp).map_err(|e| {
                e.replace(
                    "HOST:PORT or [V6]:PORT",
                    "HOST:PORT, [V6]:PORT, unix:/path or tls:HOST:PORT",
                )
            }),
        }
    }
}

/// Parses `HOST:PORT` or `[V6]:PORT`, resolving a host name to its first address.
/// A Unix socket path is refused here (UDP and the metrics endpoint are IP only); a host name
/// that does not resolve is named.
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if text.starts_with("unix:") {
        return Err(format!(
            "'{text}': a Unix socket cannot be used here, only HOST:PORT"
        ));
    }
    if text.starts_with("tls:") {
        return Err(format!(
            "'{text}': TLS is for stream sockets (-l, or a client's address), not here"
        ));
    }
    let not_an_address = || format!("'{text}' is not HOST:PORT or [V6]:PORT");
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(not_an_address());
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(not_an_address());
    }
    match (host, port.parse::<u16>().unwrap_or(0)).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("'{host}' resolves to no address")),
        Err(e) => Err(format!("cannot resolve '{host}': {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ipv4_ipv6_unix_and_names() {
        assert_eq!(
            "127.0.0.1:7007".parse::<Address>().unwrap(),
            Address::Tcp("127.0.0.1:7007".parse().unwrap())
        );
        assert_eq!(
            "[::1]:0".parse::<Address>().unwrap(),
            Address::Tcp("[::1]:0".parse().unwrap())
        );
        assert_eq!(
            "unix:/tmp/x.sock".parse::<Address>().unwrap(),
            Address::Unix("/tmp/x.sock".into())
        );
        let local = "localhost:80".parse::<Address>().unwrap();
        assert!(local.tcp().unwrap().ip().is_loopback());
        assert_eq!(
            "tls:localhost:7443".parse::<Address>().unwrap(),
            Address::Tls {
                addr: "localhost:7443".parse::<Address>().unwrap().tcp().unwrap(),
                host: "localhost".into()
            }
        );
        let v6 = "tls:[::1]:0".parse::<Address>().unwrap();
        assert_eq!(
            v6,
            Address::Tls {
                addr: "[::1]:0".parse().unwrap(),
                host: "::1".into()
            }
        );
        assert_eq!(v6.to_string(), "tls:[::1]:0");
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for bad in [
            "",
            "7007",
            "127.0.0.1",
            "127.0.0.1:99999",
            ":80",
            "unix:",
            "[::1]",
            "tls:",
            "tls:unix:/x",
            "tls:7443",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad:?} was accepted");
        }
    }
}
