//! # echoloop: a single-threaded event-loop server, and how one really works
//!
//! echoloop serves echo, timestamp, chat and the other classic services over TCP, UDP and Unix
//! sockets from one thread, on readiness events from the kernel (epoll, through mio). It is a daemon
//! to run, a load generator to test servers with, and a textbook: the modules below are written to
//! be read in this order.
//!
//! 1. [`address`]: how sockets are named (`HOST:PORT`, `[V6]:PORT`, `unix:/path`).
//! 2. [`config`]: what a server is asked to do; [`cli`] turns the command line into it.
//! 3. [`server`]: binds the sockets, starts one reactor per worker.
//! 4. [`reactor`]: **the event loop**: wait, dispatch, tidy up. Start here if you read one file.
//! 5. [`connection`]: one client's state machine, and the interest derived from it.
//! 6. [`outbound`]: the bytes we owe a client (the select server's `message_dict`), short writes.
//! 7. [`framing`]: where one message ends and the next begins (raw, line, length).
//! 8. [`protocol`]: frames in, replies out: echo and friends, pure and tested with byte slices.
//! 9. [`udp`]: datagrams on the same loop.
//! 10. [`listener`] and [`stream`]: binding, accepting, running out of descriptors.
//! 11. [`timers`]: idle deadlines without scanning every connection; [`alarm`] wakes the loop for
//!     the earliest one.
//! 12. [`shutdown`]: signals as readable events, and the drain.
//! 13. [`stats`]: counters readable while the server runs.
//! 14. [`metrics`]: the counters for Prometheus, on the same loop (`--metrics`).
//! 15. [`activation`]: running under systemd: inherited sockets, readiness.
//! 16. [`load`]: the load generator, built like the server: a few client reactors, every reply checked.
//! 17. [`client`]: the interactive client, the same event loop seen from the other side.
//! 18. [`protocol::files`] and [`transfer`]: file transfer with resume, server and clients.
//! 19. [`threaded`]: the design the reactor replaces, one blocking thread per connection
//!     (`serve --model threaded`), serving the same protocols for side-by-side study.
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
pub use protocol::{ClientId, CloseReason, Protocol, ProtocolKind, Replies};
pub use server::config::{ProtocolFactory, ServeConfig};
pub use server::signals::StopHandle;
pub use server::stats::StatsSnapshot;
pub use server::{RunningServer, Server};
