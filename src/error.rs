//! Our error types. A client ending is not an error (see `CloseReason`); these are for the server
//! itself failing to start.

use std::io;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A socket could not be bound: address in use, permission denied, no such address.
    #[error("cannot bind {what}: {source}")]
    Bind {
        /// The socket, as the `listening` line would name it (`tcp 127.0.0.1:7007`).
        what: String,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The configuration asks for something that cannot be served.
    #[error("{0}")]
    Config(String),
    /// The poller or a worker thread could not be set up.
    #[error("cannot start: {0}")]
    Io(#[from] io::Error),
}
