//! Why a connection ended.
//!
//! Every connection ends exactly once, for one reason. The reason is logged, counted (the
//! `echoloop_connections_closed_total{reason=...}` metric), and told to the protocol, which may
//! pass it on (chat's `* alice left (idle-timeout)`). A client ending is never a server error:
//! it gets a `CloseReason`, not an `Err` that could stop the loop.
//!
//! Next: `echo.rs`, the simplest protocol.

use std::fmt;
use std::io;

/// Why a connection ended: logged once, counted, and told to the protocol (chat's leave line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The peer closed its side and got everything it was owed.
    PeerClosed,
    /// The peer reset the connection (ECONNRESET, EPIPE).
    Reset,
    /// No bytes in either direction for `--idle-timeout`.
    IdleTimeout,
    /// The peer broke the framing (a length prefix over `--max-frame`, a TLS record that does
    /// not decrypt, a failed TLS handshake).
    FrameError,
    /// The client read too slowly and its queue passed `--queue-limit` (chat drops it).
    QueueLimit,
    /// The reactor was over `--max-memory` and this client held much of it (chat drops such
    /// members, slowest first; other protocols stop reading them instead).
    MemoryLimit,
    /// The protocol ended the session (daytime after its line, chat's `/quit`).
    Finished,
    /// The server is shutting down.
    Shutdown,
    /// Another read or write error.
    IoError,
}

impl CloseReason {
    /// Every reason, for counters and metrics.
    pub const ALL: [CloseReason; 9] = [
        CloseReason::PeerClosed,
        CloseReason::Reset,
        CloseReason::IdleTimeout,
        CloseReason::FrameError,
        CloseReason::QueueLimit,
        CloseReason::MemoryLimit,
        CloseReason::Finished,
        CloseReason::Shutdown,
        CloseReason::IoError,
    ];

    /// A short name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer-closed",
            CloseReason::Reset => "reset",
            CloseReason::IdleTimeout => "idle-timeout",
            CloseReason::FrameError => "frame-error",
            CloseReason::QueueLimit => "queue-limit",
            CloseReason::MemoryLimit => "memory-limit",
            CloseReason::Finished => "finished",
            CloseReason::Shutdown => "shutdown",
            CloseReason::IoError => "io-error",
        }
    }

    /// The reason an IO error gives.
    pub fn from_error(error: &io::Error) -> CloseReason {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => CloseReason::Reset,
            _ => CloseReason::IoError,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
