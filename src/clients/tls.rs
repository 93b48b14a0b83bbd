//! TLS for the clients: whom to trust, and a non-blocking TLS stream for the two event-loop clients.
//!
//! `echoloop client`, `load`, `put` and `get` speak TLS to a `tls:HOST:PORT` address. What they
//! share lives here; how each one drives its connection stays in its own file.
//!
//! **Whom to trust.** A TLS client believes a server is who it claims only if the server's
//! certificate chains up to a *root* the client trusts, and names the host the client asked for.
//! `--tls-ca FILE` gives the roots (PEM: a private CA, such as the one in `tests/certs/`); without
//! it the system's roots are used (`rustls-native-certs` reads them: `/etc/ssl/certs` and the
//! like). The name checked is `HOST` as written in the address, which is also sent as SNI (the
//! TLS extension that tells a server with many names which certificate to show); an IP address
//! is checked against the certificate's IP addresses, and sent as no SNI at all, as the standard
//! asks. `--insecure` accepts any certificate, for self-signed test certificates: the server
//! still proves it holds the key of the certificate it showed (rustls checks the handshake's
//! signature), but anyone can make such a certificate, so nobody is authenticated, and a
//! warning says so once. [`TlsOptions`] is what the command line says; [`TlsOptions::client_config`]
//! turns it into one `rustls::ClientConfig`, shared by every connection of a run.
//!
//! **Resumption.** A full handshake costs the server a signature and the client a chain check.
//! A TLS 1.3 server sends tickets after the handshake; a client that keeps one may come back
//! with it and skip both (a *resumed* handshake, which `ClientConnection::handshake_kind` reports).
//! The tickets live in the `ClientConfig`'s session cache, so connections that share the config
//! share the cache. `load --tls-resume` keeps the cache on; otherwise resumption is disabled,
//! so that every handshake `load` measures is a full one.
//!
//! **TLS on a readiness loop.** rustls is *sans-IO*: a `ClientConnection` takes bytes from the
//! network (`read_tls`), decrypts them (`process_new_packets`), hands out plaintext (`reader`),
//! takes plaintext (`writer`) and gives back bytes for the network (`write_tls`). It never
//! touches a socket. [`TlsStream`] puts one on a non-blocking socket, for the two clients that
//! run on mio (`interactive.rs` and `load/connection.rs`), and looks like a socket to them:
//! `read` gives plaintext, `write` takes plaintext, `WouldBlock` means "wait for an event". The
//! trap it avoids is the one of edge-triggered polling: one read of the socket may carry many
//! TLS records, and rustls decrypts them all at once. Plaintext left in rustls raises no new
//! edge, so a loop that waits for the next `READABLE` before it asks again would hang. So
//! [`TlsStream::read`](std::io::Read::read) serves buffered plaintext first and says
//! `WouldBlock` only when rustls holds none *and* the socket is empty: a client that reads until
//! `WouldBlock`, as both do, never leaves plaintext behind. A short read says nothing here (a
//! plaintext read stops at a record's end, the socket may hold more), so a client must not take
//! it as "the socket is empty", as it may for a plain socket. On the writing side rustls takes
//! plaintext into a bounded buffer (64 KiB of records); what the kernel refuses of the records
//! waits in rustls, and [`TlsStream::wants_write`] is the one more reason to ask for `WRITABLE`.
//!
//! A build without the cargo feature `tls` still has every type here (the clients are written
//! once), but a `tls:` address is refused by [`TlsOptions::check`], and [`TlsStream`] is an
//! empty enum that cannot be made. The blocking clients (`put`, `get`) keep their own driving in
//! `transfer.rs`.
//!
//! Next: `clients/interactive.rs`, the interactive client.

use std::path::PathBuf;

use crate::net::address::Address;

/// What the command line says about TLS (`--tls-ca`, `--insecure`, `load --tls-resume`). Plain
/// data, in every build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the roots to trust; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (the handshake's signature is still checked).
    pub insecure: bool,
    /// Keep a session cache, so that later handshakes resume (`load --tls-resume`).
    pub resume: bool,
}

/// The line for a `tls:` address in a build without TLS.
pub const NO_TLS_BUILD: &str = "this echoloop was built without TLS (cargo feature `tls`)";

impl TlsOptions {
    /// Whether any TLS flag was given.
    fn any(&self) -> bool {
        self.ca.is_some() || self.insecure || self.resume
    }

    /// Checks the options against the address: TLS flags need a `tls:` address, and a `tls:`
    /// address needs a build with TLS. `Err` is the one line of a usage error (exit 2).
    pub fn check(&self, addr: &Address) -> Result<(), String> {
        if !addr.is_tls() {
            return match self.first_flag() {
                Some(flag) if self.any() => Err(format!("{flag} needs a tls:HOST:PORT address")),
                _ => Ok(()),
            };
        }
        if cfg!(feature = "tls") {
            Ok(())
        } else {
            Err(NO_TLS_BUILD.to_string())
        }
    }

    /// Checks the options against `addr` ([`TlsOptions::check`]) and, for a `tls:` address,
    /// builds the client config it connects with: every usage error before any connection.
    pub fn trust(&self, addr: &Address) -> Result<Trust, String> {
        self.check(addr)?;
        #[cfg(feature = "tls")]
        if addr.is_tls() {
            return self.client_config().map(Some);
        }
        Ok(None)
    }

    fn first_flag(&self) -> Option<&'static str> {
        if self.ca.is_some() {
            Some("--tls-ca")
        } else if self.insecure {
            Some("--insecure")
        } else if self.resume {
            Some("--tls-resume")
        } else {
            None
        }
    }
}

/// `why` a certificate was refused, with a hint when the reason is a classic mistake: a
/// self-signed certificate made by `openssl req -x509`, which marks it as a CA, and webpki will
/// not take a CA certificate as a server's own (`CaUsedAsEndEntity`).
pub fn with_certificate_hint(why: String) -> String {
    if why.contains("CaUsedAsEndEntity") {
        format!(
            "{why} (the server's certificate is a CA certificate, as `openssl req -x509` makes \
             them: make it with `-addext basicConstraints=critical,CA:FALSE`, or use --insecure)"
        )
    } else {
        why
    }
}

#[cfg(feature = "tls")]
/// The client config a `tls:` address connects with; `None` for other addresses.
pub type Trust = Option<std::sync::Arc<rustls::ClientConfig>>;
#[cfg(not(feature = "tls"))]
/// The client config a `tls:` address connects with: a build without TLS has none to hold.
pub type Trust = Option<std::convert::Infallible>;

#[cfg(feature = "tls")]
pub use with_tls::{TlsStream, server_name};

#[cfg(not(feature = "tls"))]
pub use without_tls::TlsStream;

#[cfg(feature = "tls")]
mod with_tls {
    use std::io::{self, Read, Write};
    use std::sync::{Arc, Once};

    use mio::event::Source;
    use mio::{Interest, Registry, Token};
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::{ClientConnection, Resumption};
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore};

    use super::TlsOptions;
    use crate::net::stream::Stream;

    impl TlsOptions {
        /// The `ClientConfig` these options describe: roots (or `--insecure`), TLS 1.2 and 1.3,
        /// resumption on or off. Built once per run and shared (an `Arc`), so that connections
        /// share its session cache. `Err`: one line naming the CA file and what is wrong with it
        /// (a usage error).
        pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
            // The server's choice of crypto (ring, X25519 first: see there). The first group is
            // the key share a client sends, and a server that supports it takes it without
            // another round trip.
            let provider = crate::net::tls::crypto_provider();
            let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| format!("TLS setup: {e}"))?;
            let mut config = if self.insecure {
                warn_insecure_once();
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                        algorithms: provider.signature_verification_algorithms,
                    }))
                    .with_no_client_auth()
            } else {
                builder
                    .with_root_certificates(self.roots()?)
                    .with_no_client_auth()
            };
            if !self.resume {
                config.resumption = Resumption::disabled();
            }
            Ok(Arc::new(config))
        }

        /// The roots to trust: `--tls-ca`'s certificates, or the system's.
        fn roots(&self) -> Result<RootCertStore, String> {
            let mut roots = RootCertStore::empty();
            if let Some(path) = &self.ca {
                let bad = |why: String| format!("--tls-ca {}: {why}", path.display());
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| bad(describe_pem_error(&e)))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(describe_pem_error(&e)))?;
                if certs.is_empty() {
                    return Err(bad("no PEM certificate in it".into()));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| bad(e.to_string()))?;
                }
                return Ok(roots);
            }
            let found = rustls_native_certs::load_native_certs();
            // Unreadable entries are skipped, as browsers do; only an empty store is worth a word.
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                log::warn!(
                    "no system root certificates found: every server will be refused (use --tls-ca FILE)"
                );
            }
            Ok(roots)
        }
    }

    /// `--tls-ca`'s file could not be read or parsed, in one phrase.
    fn describe_pem_error(e: &rustls::pki_types::pem::Error) -> String {
        match e {
            // `No such file or directory (os error 2)` as `no such file or directory`.
            rustls::pki_types::pem::Error::Io(io) => {
                let text = io.to_string();
                let text = text.split(" (os error").next().unwrap_or_default();
                text.to_lowercase()
            }
            other => format!("not a PEM file ({other:?})"),
        }
    }

    /// The name the server's certificate must carry: `HOST` as written (an IP address is checked
    /// as one).
    pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
        ServerName::try_from(host.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a host name TLS can check"),
            )
        })
    }

    fn warn_insecure_once() {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            eprintln!(
                "echoloop: warning: --insecure: the server's certificate is not checked, so the \
                 server is not authenticated"
            );
        });
    }

    /// `--insecure`: every certificate is accepted, but the handshake's signature is still
    /// checked with the key of the certificate shown (so the server holds that key).
    #[derive(Debug)]
    struct AnyCertificate {
        algorithms: WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    }

    /// A `ClientConnection` on a non-blocking stream socket, read and written like the socket
    /// itself (see the module doc for what `read`, `write` and `WouldBlock` mean here).
    #[derive(Debug)]
    pub struct TlsStream {
        tls: ClientConnection,
        socket: Stream,
        /// Our close_notify is queued: send FIN once rustls has no more bytes for the kernel.
        fin_pending: bool,
    }

    impl TlsStream {
        /// Starts a client handshake with `host` over `socket` (connected, or connecting: the
        /// ClientHello waits in rustls until [`TlsStream::handshake`] is first called).
        pub fn new(socket: Stream, config: Arc<ClientConfig>, host: &str) -> io::Result<TlsStream> {
            let tls =
                ClientConnection::new(config, server_name(host)?).map_err(io::Error::other)?;
            Ok(TlsStream {
                tls,
                socket,
                fin_pending: false,
            })
        }

        /// The socket underneath (for `take_error`, `peer_addr`).
        pub fn socket(&self) -> &Stream {
            &self.socket
        }

        /// Whether the handshake is still going on.
        pub fn is_handshaking(&self) -> bool {
            self.tls.is_handshaking()
        }

        /// Whether the handshake resumed an earlier session (from a ticket in the cache).
        pub fn is_resumed(&self) -> bool {
            self.tls.handshake_kind() == Some(HandshakeKind::Resumed)
        }

        /// Moves the handshake on as far as the socket allows: sends what rustls has, reads and
        /// processes what came, until the kernel says `WouldBlock` or the handshake is done.
        /// `Err`: the handshake failed (a certificate refused: rustls' error inside
        /// `InvalidData`), or the server closed or reset the connection during it.
        pub fn handshake(&mut self) -> io::Result<()> {
            self.flush_tls()?;
            while self.tls.is_handshaking() {
                match self.tls.read_tls(&mut self.socket) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection during the TLS handshake",
                        ));
                    }
                    Ok(_) => self.process()?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.flush_tls()
        }

        /// Whether rustls holds bytes for the kernel (records the kernel refused): the one more
        /// reason to wait for `WRITABLE`.
        pub fn wants_write(&self) -> bool {
            self.tls.wants_write()
        }

        /// Writes what rustls has for the kernel until it has nothing more or the kernel refuses
        /// (then `Ok`: the rest waits for `WRITABLE`). Sends a pending FIN once all is out.
        pub fn flush_tls(&mut self) -> io::Result<()> {
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.socket) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.fin_pending {
                self.fin_pending = false;
                self.socket.shutdown_write()?;
            }
            Ok(())
        }

        /// We will write no more: close_notify (TLS's own end of data, which tells a clean end
        /// from a cut connection), then FIN once it is out. Replies can still be read.
        pub fn shutdown_write(&mut self) -> io::Result<()> {
            self.tls.send_close_notify();
            self.fin_pending = true;
            self.flush_tls()
        }

        /// Decrypts what `read_tls` took; sends at once what rustls answers (the handshake's
        /// next flight, an alert). A TLS error is sent to the server as an alert, if the kernel
        /// takes it, and returned as `InvalidData` with rustls' error inside.
        fn process(&mut self) -> io::Result<()> {
            if let Err(e) = self.tls.process_new_packets() {
                let _ = self.tls.write_tls(&mut self.socket); // the alert, best effort
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            self.flush_tls()
        }
    }

    impl Read for TlsStream {
        /// Plaintext: what rustls holds first, else what the socket brings. `Ok(0)`: the server
        /// ended cleanly (close_notify). `UnexpectedEof`: it closed without one. `WouldBlock`:
        /// rustls holds nothing and the socket is empty.
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            loop {
                match self.tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // Nothing decrypted waits: take more records. At end of stream rustls notes it,
                // and the next `reader().read` says which end it was.
                match self.tls.read_tls(&mut self.socket) {
                    Ok(0) => {}
                    Ok(_) => self.process()?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    impl Write for TlsStream {
        /// Takes what fits of `bytes` into rustls (which encrypts it) and writes what the kernel
        /// takes. `WouldBlock`: rustls' buffer is full of records the kernel refused.
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.flush_tls()?;
            let taken = self.tls.writer().write(bytes)?;
            self.flush_tls()?;
            if taken == 0 && !bytes.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(taken)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.flush_tls()
        }
    }

    impl Source for TlsStream {
        fn register(
            &mut self,
            registry: &Registry,
            token: Token,
            interests: Interest,
        ) -> io::Result<()> {
            self.socket.register(registry, token, interests)
        }

        fn reregister(
            &mut self,
            registry: &Registry,
            token: Token,
            interests: Interest,
        ) -> io::Result<()> {
            self.socket.reregister(registry, token, interests)
        }

        fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
            self.socket.deregister(registry)
        }
    }

    /// rustls' error inside an IO error from [`TlsStream`] (or from `complete_io`), if it is
    /// one: a certificate refused, a handshake the server got wrong.
    pub fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
        e.get_ref()?.downcast_ref::<rustls::Error>()
    }
}

#[cfg(feature = "tls")]
pub use with_tls::tls_error;

/// Whether `e` is an alert the server sent (`received fatal alert: ...`): it refused us.
pub fn is_alert(e: &std::io::Error) -> bool {
    #[cfg(feature = "tls")]
    {
        tls_error(e).is_some_and(|tls| matches!(tls, rustls::Error::AlertReceived(_)))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = e;
        false
    }
}

#[cfg(not(feature = "tls"))]
mod without_tls {
    //! Without TLS: [`TlsStream`] has no value, so every `match` arm that would hold one
    //! compiles, and none can run.
    use std::io::{self, Read, Write};

    use mio::event::Source;
    use mio::{Interest, Registry, Token};

    use crate::net::stream::Stream;

    /// A TLS stream, which a build without TLS cannot make (an empty enum).
    #[derive(Debug)]
    pub enum TlsStream {}

    #[allow(missing_docs)]
    impl TlsStream {
        pub fn socket(&self) -> &Stream {
            match *self {}
        }
        pub fn is_handshaking(&self) -> bool {
            match *self {}
        }
        pub fn is_resumed(&self) -> bool {
            match *self {}
        }
        pub fn handshake(&mut self) -> io::Result<()> {
            match *self {}
        }
        pub fn wants_write(&self) -> bool {
            match *self {}
        }
        pub fn flush_tls(&mut self) -> io::Result<()> {
            match *self {}
        }
        pub fn shutdown_write(&mut self) -> io::Result<()> {
            match *self {}
        }
    }

    impl Read for TlsStream {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            match *self {}
        }
    }

    impl Write for TlsStream {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            match *self {}
        }
        fn flush(&mut self) -> io::Result<()> {
            match *self {}
        }
    }

    impl Source for TlsStream {
        fn register(&mut self, _: &Registry, _: Token, _: Interest) -> io::Result<()> {
            match *self {}
        }
        fn reregister(&mut self, _: &Registry, _: Token, _: Interest) -> io::Result<()> {
            match *self {}
        }
        fn deregister(&mut self, _: &Registry) -> io::Result<()> {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_flags_need_a_tls_address() {
        let plain: Address = "127.0.0.1:7".parse().unwrap();
        let tls: Address = "tls:127.0.0.1:7".parse().unwrap();
        assert_eq!(TlsOptions::default().check(&plain), Ok(()));
        let ca = TlsOptions {
            ca: Some("ca.pem".into()),
            ..TlsOptions::default()
        };
        assert_eq!(
            ca.check(&plain),
            Err("--tls-ca needs a tls:HOST:PORT address".into())
        );
        let insecure = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        assert_eq!(
            insecure.check(&plain),
            Err("--insecure needs a tls:HOST:PORT address".into())
        );
        let expected = if cfg!(feature = "tls") {
            Ok(())
        } else {
            Err(NO_TLS_BUILD.to_string())
        };
        assert_eq!(ca.check(&tls), expected);
    }

    #[cfg(feature = "tls")]
    #[test]
    fn a_ca_file_that_is_missing_or_not_pem_is_one_line_naming_it() {
        let missing = TlsOptions {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let why = missing.client_config().unwrap_err();
        assert!(
            why.starts_with("--tls-ca /nonexistent/ca.pem: no such file"),
            "{why}"
        );
        let not_pem = TlsOptions {
            ca: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").into()),
            ..TlsOptions::default()
        };
        let why = not_pem.client_config().unwrap_err();
        assert!(why.contains("Cargo.toml: no PEM certificate"), "{why}");
        let good = TlsOptions {
            ca: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/certs/ca.pem").into()),
            ..TlsOptions::default()
        };
        assert!(good.client_config().is_ok());
        assert!(!why.contains('\n'));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn the_name_checked_is_the_host_as_written() {
        use rustls::pki_types::ServerName;
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("::1").unwrap(),
            ServerName::IpAddress(_)
        ));
    }
}
