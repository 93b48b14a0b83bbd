//! Listening sockets: binding them, and accepting from them.
//!
//! Binding goes through `socket2` because the standard library cannot set options *before*
//! `bind`: `SO_REUSEADDR` (restart at once while old connections sit in TIME_WAIT, as the tutorials
//! teach), `SO_REUSEPORT` (several reactors, each with its own listener on one port: the kernel
//! spreads connections among them), `IPV6_V6ONLY` (so `[::]:7007` and `0.0.0.0:7007` can both be
//! bound), and our own backlog (std always asks for 128, which drops SYNs when thousands of clients
//! connect at once).
//!
//! Sharing a port is where the systems differ. Linux's `SO_REUSEPORT` balances: each new
//! connection (or datagram flow) goes to one of the sockets, chosen by a hash of its addresses. On
//! FreeBSD `SO_REUSEPORT` only lets the sockets bind, and the balancing option is `SO_REUSEPORT_LB`
//! (up to 256 sockets per address and port, as many as `--workers` allows): we set that one. macOS
//! has only the old BSD `SO_REUSEPORT`: several sockets bind, but the kernel hands every connection
//! to one of them (the last bound), so extra workers there sit idle.
//!
//! A Unix socket is a file: binding fails if the path exists. A file left behind by a process that
//! died is *stale* (nobody accepts on it) and is replaced; one that a live server still accepts on
//! is not touched, and we fail with "address in use" as TCP would.
//!
//! Accepting is edge-triggered like everything else: the reactor accepts until `WouldBlock`. When
//! the process is out of file descriptors (EMFILE), the pending connection cannot be accepted and
//! the listener would stay ready forever: a busy loop. [`ReserveFd`] is the classic cure: keep one
//! descriptor in reserve, and when accept fails for lack of descriptors, free it, accept the
//! connection, close it at once (the client sees a clean close instead of a hang), and take the
//! reserve back.
//!
//! Next: `stream.rs`.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mio::event::Source;
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Socket, TcpKeepalive, Type};

use crate::net::stream::{Stream, Transport};

/// Options for a TCP listening socket.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    /// `listen()` backlog.
    pub backlog: i32,
    /// Set `SO_REUSEPORT` (several workers share the port; `SO_REUSEPORT_LB` on FreeBSD).
    pub reuse_port: bool,
}

/// Binds a non-blocking TCP listener.
pub fn bind_tcp(addr: SocketAddr, options: BindOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_reuse_address(true)?;
    if options.reuse_port {
        share_port(&socket)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(options.backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Binds a non-blocking UDP socket.
pub fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<mio::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        share_port(&socket)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// Lets other sockets bind the same address and port, the kernel spreading connections among them
/// where it can (see the module docs): `SO_REUSEPORT_LB` on FreeBSD, `SO_REUSEPORT` elsewhere.
fn share_port(socket: &Socket) -> io::Result<()> {
    #[cfg(target_os = "freebsd")]
    return socket.set_reuse_port_lb(true);
    #[cfg(not(target_os = "freebsd"))]
    return socket.set_reuse_port(true);
}

/// Binds a Unix stream listener at `path`, replacing a stale socket file but never a live one.
pub fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && is_stale_socket(path) => {
            log::info!("removing stale socket file {}", path.display());
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        result => result,
    }
}

/// A socket file nobody accepts on: connecting to it is refused.
fn is_stale_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    is_socket
        && matches!(StdUnixStream::connect(path), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
}

/// Options applied to each accepted TCP connection.
#[derive(Debug, Clone, Copy)]
pub struct AcceptOptions {
    /// TCP_NODELAY: send small replies at once instead of waiting to coalesce them (Nagle).
    pub nodelay: bool,
    /// TCP keepalive idle time; `None`: off.
    pub keepalive: Option<Duration>,
    /// `SO_SNDBUF`, in bytes (the kernel doubles it and caps it at `net.core.wmem_max`); `None`:
    /// the kernel's default, which grows on its own up to `net.ipv4.tcp_wmem`'s maximum.
    pub sndbuf: Option<usize>,
    /// `SO_RCVBUF`, likewise (`net.core.rmem_max`, `net.ipv4.tcp_rmem`). Set after accept it
    /// can shrink the buffer; the TCP window scale was already agreed with the listener's size.
    pub rcvbuf: Option<usize>,
}

impl AcceptOptions {
    /// Sets the kernel buffer sizes asked for on an accepted socket (best effort).
    fn size_buffers(&self, socket: socket2::SockRef<'_>) {
        if let Some(bytes) = self.sndbuf {
            let _ = socket.set_send_buffer_size(bytes);
        }
        if let Some(bytes) = self.rcvbuf {
            let _ = socket.set_recv_buffer_size(bytes);
        }
    }
}

/// A listening socket of either kind.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix, at this path; if the flag is set (one copy per socket file), the file is removed
    /// when the listener is dropped.
    Unix(UnixListener, PathBuf, bool),
}

impl Listener {
    /// Accepts one connection. `WouldBlock` when none is pending.
    pub fn accept(&self, options: AcceptOptions) -> io::Result<Stream> {
        self.accept_from(options).map(|(stream, _)| stream)
    }

    /// Accepts one connection, with the peer's IP address as `accept` reported it (no extra
    /// system call); `None` for a Unix peer, which has none.
    pub fn accept_from(&self, options: AcceptOptions) -> io::Result<(Stream, Option<IpAddr>)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                // Options are best effort: a connection that cannot take them is still served.
                let _ = stream.set_nodelay(options.nodelay);
                if let Some(idle) = options.keepalive {
                    let _ = socket2::SockRef::from(&stream)
                        .set_tcp_keepalive(&TcpKeepalive::new().with_time(idle));
                }
                options.size_buffers(socket2::SockRef::from(&stream));
                Ok((Stream::Tcp(stream), Some(peer.ip())))
            }
            Listener::Unix(listener, ..) => {
                let (stream, _peer) = listener.accept()?;
                options.size_buffers(socket2::SockRef::from(&stream));
                Ok((Stream::Unix(stream), None))
            }
        }
    }

    /// Which kind of stream its connections are (accept errors are counted by it).
    pub fn transport(&self) -> Transport {
        match self {
            Listener::Tcp(_) => Transport::Tcp,
            Listener::Unix(..) => Transport::Unix,
        }
    }

    /// The `listening ...` line's words: `tcp 127.0.0.1:40123` or `unix /tmp/x.sock`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("tcp {addr}"),
                Err(_) => "tcp ?".to_string(),
            },
            Listener::Unix(_, path, _) => format!("unix {}", path.display()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path, true) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Source for Listener {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(registry, token, interest),
            Listener::Unix(l, ..) => l.register(registry, token, interest),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(registry, token, interest),
            Listener::Unix(l, ..) => l.reregister(registry, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(registry),
            Listener::Unix(l, ..) => l.deregister(registry),
        }
    }
}

/// Whether an accept error means "out of descriptors or kernel memory" (shed the connection).
pub fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// One descriptor held in reserve, so that a connection can still be accepted (and closed) when
/// the process has run out of descriptors.
#[derive(Debug)]
pub struct ReserveFd(Option<File>);

impl ReserveFd {
    /// Takes the reserve descriptor (`/dev/null`).
    pub fn new() -> Self {
        ReserveFd(File::open("/dev/null").ok())
    }

    /// Frees the reserve, accepts one pending connection and closes it, takes the reserve back.
    /// Returns whether a connection was shed.
    pub fn shed_one(&mut self, listener: &Listener) -> bool {
        self.0 = None;
        let shed = listener
            .accept(AcceptOptions {
                nodelay: false,
                keepalive: None,
                sndbuf: None,
                rcvbuf: None,
            })
            .is_ok();
        self.0 = File::open("/dev/null").ok();
        shed
    }
}

impl Default for ReserveFd {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A socket path of its own under the temp dir.
    fn socket_path() -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::env::temp_dir().join(format!(
            "echoloop-listener-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn options() -> BindOptions {
        BindOptions {
            backlog: 16,
            reuse_port: false,
        }
    }

    const NO_OPTIONS: AcceptOptions = AcceptOptions {
        nodelay: true,
        keepalive: None,
        sndbuf: None,
        rcvbuf: None,
    };

    #[test]
    fn an_empty_listener_says_would_block_and_a_pending_connection_is_accepted() {
        let listener = Listener::Tcp(bind_tcp("127.0.0.1:0".parse().unwrap(), options()).unwrap());
        let Listener::Tcp(inner) = &listener else {
            unreachable!()
        };
        let addr = inner.local_addr().unwrap();
        let error = listener.accept(NO_OPTIONS).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        // The handshake completes in the kernel; accept may still race it by a moment.
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match listener.accept(NO_OPTIONS) {
                Ok(stream) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < give_up, "never accepted");
                    std::thread::yield_now();
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert_eq!(stream.transport(), Transport::Tcp);
        assert!(listener.describe().starts_with("tcp 127.0.0.1:"));
    }

    #[test]
    fn a_stale_unix_socket_file_is_replaced_and_a_live_one_is_not() {
        let path = socket_path();
        // A listener that went away without removing its file leaves a stale socket.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = bind_unix(&path).expect("the stale file is replaced");
        let error = bind_unix(&path).unwrap_err();
        assert_eq!(
            error.kind(),
            io::ErrorKind::AddrInUse,
            "a live one is never taken"
        );
        // The one copy that owns the file removes it when dropped.
        drop(Listener::Unix(live, path.clone(), true));
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_never_removed() {
        let path = socket_path();
        std::fs::write(&path, b"precious").unwrap();
        let error = bind_unix(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_reserve_descriptor_sheds_one_pending_connection_with_a_clean_close() {
        let listener = Listener::Tcp(bind_tcp("127.0.0.1:0".parse().unwrap(), options()).unwrap());
        let Listener::Tcp(inner) = &listener else {
            unreachable!()
        };
        let mut client = std::net::TcpStream::connect(inner.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reserve = ReserveFd::new();
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while !reserve.shed_one(&listener) {
            assert!(std::time::Instant::now() < give_up, "never shed");
            std::thread::yield_now();
        }
        let mut buf = [0u8; 1];
        assert_eq!(
            client.read(&mut buf).unwrap(),
            0,
            "closed, not left hanging"
        );
        assert!(reserve.0.is_some(), "the reserve is taken back");
    }

    #[test]
    fn running_out_of_descriptors_or_memory_is_told_apart_from_other_errors() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ECONNABORTED, libc::EINTR, libc::EAGAIN] {
            assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
                errno
            )));
        }
    }
}
