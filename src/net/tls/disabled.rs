//! TLS in a build without the `tls` feature: the same names, and no way to make one.
//!
//! [`ServerTls::load`] always fails, so a server with a `tls:` listener does not start, and no
//! [`TlsSession`] can exist: it is an empty enum, whose methods the compiler knows are never
//! called. The reactor's TLS code is compiled (and checked on every platform) all the same.

use std::io::{self, Write};
use std::path::Path;

use super::{Decrypted, TlsFile, TlsFiles, TlsSetupError};

/// The TLS setup of the `tls:` listeners: never made in this build.
#[derive(Debug, Clone)]
pub enum ServerTls {}

/// Why every load fails in this build.
pub const NOT_BUILT: &str = "this echoloop was built without TLS (the cargo feature `tls`)";

impl ServerTls {
    /// Fails: this build has no TLS.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsSetupError> {
        Err(TlsSetupError {
            file: TlsFile::Cert,
            path: files.cert,
            why: NOT_BUILT.to_string(),
        })
    }

    /// Never called: there is no `ServerTls` to call it on.
    pub fn reload(&mut self) -> Result<(), TlsSetupError> {
        match *self {}
    }

    /// Never called.
    pub fn cert_path(&self) -> &Path {
        match *self {}
    }

    /// Never called.
    pub fn session(&self) -> Result<TlsSession, io::Error> {
        match *self {}
    }
}

/// One client's TLS state: none can exist in this build.
#[derive(Debug)]
pub enum TlsSession {}

#[allow(clippy::unused_self)]
impl TlsSession {
    /// Never called.
    pub fn is_handshaking(&self) -> bool {
        match *self {}
    }

    /// Never called.
    pub fn decrypt(&mut self, _: &[u8], _: &mut [u8]) -> Result<Decrypted, io::Error> {
        match *self {}
    }

    /// Never called.
    pub fn encrypt(&mut self, _: &[u8]) -> io::Result<()> {
        match *self {}
    }

    /// Never called.
    pub fn wants_write(&self) -> bool {
        match *self {}
    }

    /// Never called.
    pub fn take_ciphertext(&mut self, _: &mut dyn Write) -> io::Result<usize> {
        match *self {}
    }

    /// Never called.
    pub fn close(&mut self) {
        match *self {}
    }

    /// Never called.
    pub fn is_closing(&self) -> bool {
        match *self {}
    }

    /// Never called.
    pub fn describe(&self) -> String {
        match *self {}
    }

    /// Never called.
    pub fn memory(&self) -> usize {
        match *self {}
    }
}
