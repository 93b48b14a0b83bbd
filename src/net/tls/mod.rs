//! TLS for stream clients, as the reactor drives it: certificates in, bytes through.
//!
//! rustls is *sans-IO*, like the connection state machine (`server/connection.rs`): it never
//! touches a socket. The reactor reads ciphertext from the kernel and hands it over; rustls
//! decrypts it and holds the plaintext until it is taken; what the reactor wants to send goes in
//! as plaintext and comes out as records to write. So TLS fits the loop as a filter between the
//! socket and the protocol, and every rule of the loop (edge-triggered reads, the queue limit,
//! `--max-memory`) stays the reactor's, not a library's:
//!
//! - [`ServerTls`] (`server_config.rs`): the certificate chain, the key and the optional client
//!   CA, read from PEM files at start (a bad file is named, and the server does not start) and
//!   again on SIGHUP (a bad file then keeps the old ones).
//! - [`TlsSession`] (`session.rs`): one client's TLS state: [`TlsSession::decrypt`] takes what
//!   one socket read brought and gives back *all* the plaintext it holds, so nothing decrypted
//!   is ever left where no readiness event would announce it (the trap of TLS on an
//!   edge-triggered loop: docs/GUIDE.md); [`TlsSession::encrypt`] turns replies into records.
//!
//! TLS is the cargo feature `tls` (on by default: rustls with the ring provider, which compiles
//! C). Without it, `disabled.rs` stands in with the same names, so the reactor is written once
//! and a build without the feature refuses `tls:` listeners when it starts.
//!
//! Next: `session.rs` and `server_config.rs` beside this file; then back to
//! `server/reactor/proxied.rs`, a client behind a load balancer.

#[cfg(feature = "tls")]
mod server_config;
#[cfg(feature = "tls")]
mod session;

#[cfg(not(feature = "tls"))]
mod disabled;

#[cfg(not(feature = "tls"))]
pub use disabled::{ServerTls, TlsSession};
#[cfg(feature = "tls")]
pub use server_config::ServerTls;
#[cfg(feature = "tls")]
pub use session::TlsSession;

use std::fmt;
use std::path::PathBuf;

/// The crypto rustls uses here, for the server and the clients alike: *ring*'s, with X25519
/// preferred for the key exchange.
///
/// *ring* builds quickly and links statically (musl builds work), which is why it was chosen
/// over aws-lc-rs. rustls 0.23.48 marks it deprecated because it offers no post-quantum key
/// exchange (X25519MLKEM768), which aws-lc-rs does: X25519, P-256 and P-384 are offered.
///
/// rustls' *ring* provider lists P-384 first, and a client sends its key share for the group it
/// lists first, so two rustls peers with the defaults agree on P-384, which *ring* computes in
/// portable C. X25519 is what OpenSSL, browsers and Python offer first, and costs a ninth:
/// 1.4 M against 12.2 M server instructions per handshake (callgrind, 50 handshakes from
/// Python's `ssl`, offering X25519, then P-384 alone).
#[cfg(feature = "tls")]
#[allow(deprecated)]
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    std::sync::Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        ..rustls::crypto::ring::default_provider()
    })
}

/// Which file a TLS setup error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The certificate chain (`--tls-cert`).
    Cert,
    /// Its private key (`--tls-key`).
    Key,
    /// The CAs client certificates must be signed by (`--tls-client-ca`).
    ClientCa,
}

impl TlsFile {
    /// The flag that names this file.
    pub fn flag(self) -> &'static str {
        match self {
            TlsFile::Cert => "--tls-cert",
            TlsFile::Key => "--tls-key",
            TlsFile::ClientCa => "--tls-client-ca",
        }
    }
}

/// Why the TLS setup could not be made from its files: the file, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSetupError {
    /// Which file.
    pub file: TlsFile,
    /// Its path, as given.
    pub path: PathBuf,
    /// What is wrong, in a few words.
    pub why: String,
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.file.flag(),
            self.path.display(),
            self.why
        )
    }
}

impl std::error::Error for TlsSetupError {}

/// Where each TLS file is: what [`ServerTls::load`] reads, and reads again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// The client CAs, PEM; `None`: clients are not asked for a certificate.
    pub client_ca: Option<PathBuf>,
}

/// What one socket read's worth of ciphertext gave ([`TlsSession::decrypt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decrypted {
    /// Plaintext bytes written to the front of the output buffer.
    pub plaintext: usize,
    /// The peer sent `close_notify`: its input is over (what follows is ignored).
    pub closed: bool,
}
