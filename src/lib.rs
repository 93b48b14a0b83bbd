//! # echoloop: a single-threaded event-loop server, and how one really works
//!
//! echoloop serves echo, timestamp, chat and the other classic services over TCP, UDP and Unix
//! sockets from one thread, on readiness events from the kernel (epoll, through mio). It is a daemon
//! to run, a load generator to test servers with, and a textbook: the modules below are written to
//! be read in this order.
//!
//! The tree shows the architecture; arrows point down this list, never up:
//!
//! - [`cli`]: clap types only; each command turns its arguments into a plain config.
//! - [`clients`]: the load generator, the interactive client, file transfer. They use [`net`]
//!   and [`protocol`] (its framing, the files protocol's words), never the server.
//! - [`server`]: binds sockets and runs reactors; `server::reactor` is the event loop.
//! - [`protocol`]: frames in, replies out; pure, no socket, no clock.
//! - [`net`]: sockets: naming, binding, accepting, registering interest, the loop's timer.
//!
//! ## Reading order
//!
//! Follow one request, from the loop outwards. Each module's doc ends with a `Next:` line that
//! takes you to the next one in this list.
//!
//! 1. [`server::config`], [`server::services`], then [`server`]: what a server is asked to do;
//!    which service each socket serves; binding, one reactor per worker.
//! 2. [`server::reactor`]: **the event loop**: wait, dispatch, tidy up. Start here if you read
//!    one file. Beside it: `token.rs` (what a token stands for), `accept.rs`, `client.rs` (read,
//!    answer frame by frame while there is room, flush), `tls.rs` (a TLS client: its handshake
//!    first, every decrypted byte taken at once), `proxied.rs` (a balancer's PROXY
//!    header before the protocol starts), `memory.rs` (the `--max-memory` cap),
//!    `sockets.rs` (UDP, metrics), `tidy.rs` (timers, closing), `shutdown.rs`.
//! 3. [`server::connection`]: one client's life as a sans-IO state machine, its held input, and
//!    the interest derived from it; [`server::rate`]: the frame rate (`--chat-rate`).
//! 4. [`net::memory`]: memory counted by capacity, shared bytes once; [`net::outbound`]: the
//!    bytes we owe a peer (the select server's `message_dict`), short writes;
//!    [`net::registration`]: interest from two facts, one `epoll_ctl` per change.
//! 5. [`protocol::framing`], then [`protocol`]: where one message ends; the `Protocol` trait,
//!    `Replies`, sessions; then the services from the simplest (echo) to files, and
//!    [`protocol::testing`], which drives any of them with byte slices.
//! 6. [`server::udp`]: datagrams on the same loop, [`net::datagrams`]: many per system call
//!    (`recvmmsg`/`sendmmsg`); [`server::sources`]: who may talk to us, and how much (access
//!    lists, the loop guard, per-source limits, the balancers that send PROXY headers).
//! 7. [`net::address`], [`net::listener`], [`net::stream`], [`net::activation`],
//!    [`net::notify`], [`net::tls`], [`net::proxy_header`]: naming, binding and accepting
//!    sockets, running out of descriptors, sockets from systemd and what we tell it, TLS
//!    sessions driven by the loop (rustls, sans-IO), the PROXY protocol's header.
//! 8. [`server::timers`] and [`net::alarm`]: deadlines without scanning, and the one timer the
//!    loop sleeps on.
//! 9. [`server::signals`], [`server::watchdog`], [`server::stats`], [`server::metrics`]:
//!    stopping, proving we are alive, counting, watching.
//! 10. [`server::threaded`]: the design the reactor replaces, one blocking thread per
//!     connection (`serve --model threaded`), for side-by-side study.
//! 11. [`clients::load`], [`clients::tls`], [`clients::interactive`], [`clients::transfer`]: the
//!     same loop from the other side.
//! 12. [`cli`], and `main.rs`: the command line and exit codes.
//!
//! ```
//! use std::io::{Read, Write};
//! use echoloop::{Server, ServeConfig};
//!
//! let server = Server::bind(&ServeConfig::for_tests())?.spawn()?; // 127.0.0.1:0, echo
//! let mut client = std::net::TcpStream::connect(server.addr())?;
//! client.write_all(b"hello")?;
//! let mut reply = [0u8; 5];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"hello");
//! drop(client);
//! server.stop()?; // the same drain as SIGTERM
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod cli;
pub mod clients;
pub mod error;
pub mod net;
pub mod protocol;
pub mod server;

pub use error::StartError;
pub use net::activation::InheritedSocket;
pub use net::address::Address;
pub use net::stream::Transport;
pub use protocol::framing::{Frame, FrameError, FramingKind};
pub use protocol::{ClientId, CloseReason, Protocol, ProtocolFactory, ProtocolKind, Replies};
pub use server::config::{ProtocolChoice, ServeConfig, TlsConfig};
pub use server::signals::StopHandle;
pub use server::stats::StatsSnapshot;
pub use server::{RunningServer, Server};
