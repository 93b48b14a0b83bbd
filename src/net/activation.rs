//! Running under systemd: sockets it hands us (socket activation), and what we tell it (readiness).
//!
//! **Socket activation.** inetd's idea, kept by systemd: the service manager binds the sockets a
//! `.socket` unit names (port 7 for echo, say, which only root may bind), waits for the first
//! client, then starts us with those sockets already open as descriptors 3, 4, ... It says so in
//! the environment: `LISTEN_PID` (the process they are meant for: a variable inherited by a child
//! is not an invitation), `LISTEN_FDS` (how many) and `LISTEN_FDNAMES` (their names: a unit's
//! `FileDescriptorName=`, else the socket unit's own name, such as `echoloop.socket`).
//! The `sd-notify` crate reads that protocol; we only ask each descriptor what it is (stream or
//! datagram, inet or Unix, listening or connected) and serve it like a socket we bound ourselves.
//! Each comes with its name ([`Inherited`]); what a name means is not this layer's business
//! (the command line maps a protocol's name to that service: `FileDescriptorName=daytime`).
//!
//! Only `Accept=no` is served: one echoloop process, one reactor, every client. `Accept=yes` is
//! inetd's *process per connection* (systemd starts one process per client and hands it a
//! connected socket): the very model an event loop replaces, and the reason it does not scale. A
//! connected stream socket is refused here with a line that says so.
//!
//! **Readiness.** With `Type=notify`, systemd considers the service started only when it says
//! `READY=1` on the datagram socket named by `NOTIFY_SOCKET`; we say it once every socket is bound.
//! `STOPPING=1` when the drain begins, a `STATUS=` line (shown by `systemctl status`) with the
//! counters every `--stats-interval`, and `WATCHDOG=1` pings if the unit asks for them. That half
//! is `notify.rs` (re-exported here); without `NOTIFY_SOCKET` each of these does nothing.
//!
//! **Other systems.** Both halves are only environment variables and a Unix datagram socket, so
//! this file builds everywhere (macOS and FreeBSD included) and, without systemd to set the
//! variables, does nothing there. Asking "listening or connected?" is the one portable wrinkle:
//! see `is_listening` below.
//!
//! Next: `notify.rs`, what we tell the service manager.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use log::{debug, info};
use socket2::{Socket, Type};

use crate::error::StartError;

pub use super::notify::{notify_ready, notify_status, notify_stopping};

/// A socket handed to us by the service manager, and the name it gave it.
#[derive(Debug)]
pub struct Inherited {
    /// Its `LISTEN_FDNAMES` entry: the unit's `FileDescriptorName=`, else the socket unit's
    /// name (`echoloop.socket`), else `unknown`.
    pub name: String,
    /// The socket.
    pub socket: InheritedSocket,
}

/// A socket handed to us by the service manager, sorted by what it turned out to be.
#[derive(Debug)]
pub enum InheritedSocket {
    /// A listening TCP socket.
    Tcp(std::net::TcpListener),
    /// A listening Unix stream socket, at this path (or `@name`, abstract). We never remove the
    /// file: it belongs to the socket unit, which outlives us.
    Unix(std::os::unix::net::UnixListener, PathBuf),
    /// A UDP socket.
    Udp(std::net::UdpSocket),
}

impl InheritedSocket {
    /// A copy sharing the same open socket (`dup`): each worker gets one, and they all take
    /// connections from the one accept queue the service manager made.
    pub fn try_clone(&self) -> io::Result<InheritedSocket> {
        Ok(match self {
            InheritedSocket::Tcp(l) => InheritedSocket::Tcp(l.try_clone()?),
            InheritedSocket::Unix(l, path) => InheritedSocket::Unix(l.try_clone()?, path.clone()),
            InheritedSocket::Udp(s) => InheritedSocket::Udp(s.try_clone()?),
        })
    }

    /// The `listening ...` line's words, as for a socket we bound: `tcp 127.0.0.1:7`.
    pub fn describe(&self) -> String {
        match self {
            InheritedSocket::Tcp(l) => format!("tcp {}", display_addr(l.local_addr())),
            InheritedSocket::Unix(_, path) => format!("unix {}", path.display()),
            InheritedSocket::Udp(s) => format!("udp {}", display_addr(s.local_addr())),
        }
    }
}

fn display_addr(addr: io::Result<std::net::SocketAddr>) -> String {
    addr.map_or_else(|_| "?".to_string(), |a| a.to_string())
}

/// The sockets systemd passed to this process, if `LISTEN_PID` names it; none otherwise.
///
/// The variables are left in place (removing them is unsafe once threads exist, and echoloop
/// starts no child that could mistake them for its own: `LISTEN_PID` would not match anyway).
pub fn inherited_sockets() -> Result<Vec<Inherited>, StartError> {
    let bad = |e: io::Error| {
        StartError::Config(format!("socket activation: bad LISTEN_* variables: {e}"))
    };
    // Not for us (no `LISTEN_PID`, or another process's): nothing to take. Asked first because
    // sd-notify 0.5's `listen_fds_with_names` fails when `LISTEN_FDNAMES` is set but the sockets
    // are not ours, which is exactly the variable a child inherits from a socket-activated parent.
    if sd_notify::listen_fds().map_err(bad)?.len() == 0 {
        return Ok(Vec::new());
    }
    let fds = sd_notify::listen_fds_with_names().map_err(bad)?;
    let mut sockets = Vec::new();
    for (fd, name) in fds {
        let socket = classify(fd).map_err(|e| {
            StartError::Config(format!("socket activation: descriptor {fd} ({name}): {e}"))
        })?;
        info!("inherited descriptor {fd} ({name}): {}", socket.describe());
        sockets.push(Inherited { name, socket });
    }
    Ok(sockets)
}

/// Asks descriptor `fd` what kind of socket it is, and takes ownership of it.
fn classify(fd: RawFd) -> io::Result<InheritedSocket> {
    // SAFETY: `LISTEN_PID` named this process, so systemd opened `fd` for us, and nothing else
    // in echoloop owns descriptors 3.. at start-up; we take each one exactly once.
    let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let kind = socket.r#type()?;
    let local = socket.local_addr()?;
    socket.set_nonblocking(true)?;
    let not_served = |what: &str| io::Error::new(io::ErrorKind::Unsupported, what.to_string());
    if kind == Type::STREAM {
        if !is_listening(&socket)? {
            return Err(not_served(
                "a connected socket (Accept=yes?): echoloop serves every client from one \
                 process, use Accept=no",
            ));
        }
        if local.as_socket().is_some() {
            return Ok(InheritedSocket::Tcp(socket.into()));
        }
        if local.is_unix() {
            let path = match local.as_pathname() {
                Some(path) => path.to_path_buf(),
                None => match local.as_abstract_namespace() {
                    Some(name) => PathBuf::from(format!("@{}", String::from_utf8_lossy(name))),
                    None => PathBuf::from("(unnamed)"),
                },
            };
            return Ok(InheritedSocket::Unix(socket.into(), path));
        }
    } else if kind == Type::DGRAM && local.as_socket().is_some() {
        return Ok(InheritedSocket::Udp(socket.into()));
    }
    debug!(
        "descriptor {fd}: type {kind:?}, family {:?}",
        local.family()
    );
    Err(not_served(
        "not a TCP or Unix stream listener nor a UDP socket",
    ))
}

/// Whether a stream socket is listening (systemd's `Accept=no`) rather than connected (`Accept=yes`).
///
/// POSIX has an option for the question, `SO_ACCEPTCONN`, and most kernels answer it. Apple's
/// headers declare it but its kernel does not answer it (`ENOPROTOOPT`): there we ask whether the
/// socket has a peer instead.
fn is_listening(socket: &Socket) -> io::Result<bool> {
    #[cfg(not(target_vendor = "apple"))]
    return Ok(rustix::net::sockopt::socket_acceptconn(socket)?);
    #[cfg(target_vendor = "apple")]
    return has_no_peer(socket);
}

/// A listening socket has no peer (`getpeername` says `ENOTCONN`), a connected one has. A stream
/// socket that is neither, merely bound, would pass for listening; a service manager never hands
/// one over. Compiled everywhere, so that Linux tests check it agrees with `SO_ACCEPTCONN`.
#[cfg_attr(not(target_vendor = "apple"), allow(dead_code))]
fn has_no_peer(socket: &Socket) -> io::Result<bool> {
    match socket.peer_addr() {
        Ok(_) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_listener_is_listening_and_a_connection_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let listener = Socket::from(listener);
        assert!(is_listening(&listener).unwrap());
        assert!(
            has_no_peer(&listener).unwrap(),
            "the answer on Apple systems"
        );
        for connected in [Socket::from(client), Socket::from(accepted)] {
            assert!(!is_listening(&connected).unwrap());
            assert!(!has_no_peer(&connected).unwrap());
        }
    }

    #[test]
    fn unix_stream_sockets_answer_the_same() {
        let path = std::env::temp_dir().join(format!("echoloop-activation-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let listener = Socket::from(listener);
        let client = Socket::from(client);
        assert!(is_listening(&listener).unwrap() && has_no_peer(&listener).unwrap());
        assert!(!is_listening(&client).unwrap() && !has_no_peer(&client).unwrap());
    }
}
