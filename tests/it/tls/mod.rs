//! TLS listeners (`-l tls:ADDR`), by the server's promises: echo byte-exact through TLS, the
//! handshake first and counted however it ends, close_notify as the end of input, the limits on
//! ciphertext, the PROXY header in front, the certificate files at start and at SIGHUP.
//!
//! - [`client`]: the tests' TLS client, rustls driven a turn at a time over a non-blocking socket.
//! - [`echo`]: 1 MiB byte-exact (rustls over TLS 1.3 and 1.2, Python's `ssl`), 100 concurrent
//!   sessions, a key update, a resumed session.
//! - [`edge`]: the edge-trigger trap, many records in one segment.
//! - [`closing`]: close_notify both ways, a FIN without it, a broken record, an `error:` line.
//! - [`end_of_input`]: what a client that ended its input is still owed (a download, an
//!   upload's `DONE`, lines held back before its close_notify).
//! - [`handshakes`]: garbage, the deadline, client certificates, `openssl s_client` (1.3, 1.2,
//!   1.1 refused), refusals without cleartext, the counters on the metrics page.
//! - [`services`]: chat (and a member that never reads), files, daytime and the greeting after
//!   the handshake.
//! - [`limits`]: `--queue-limit` and `--max-memory` with clients that do not read; handshakes in
//!   progress counted.
//! - [`proxied`]: a PROXY v2 header before the handshake (HAProxy's TLS passthrough).
//! - [`binary`]: the `echoloop` binary: mixed listeners, bad files (exit 2), SIGHUP rotation in
//!   every worker, sessions that resume across it.
//!
//! The certificates are the committed ones of `tests/certs/` (see `make.sh` there): the server's
//! chain is signed by `ca.pem`, `client.pem` by `client-ca.pem`, `stranger.pem` by a CA nobody
//! trusts.

mod binary;
mod client;
mod closing;
mod echo;
mod edge;
mod end_of_input;
mod handshakes;
mod limits;
mod proxied;
mod services;

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};

use echoloop::server::stats::TlsFailure;
use echoloop::{ServeConfig, StatsSnapshot};

use crate::common::{self, PATIENCE, TestServer};
use client::TlsClient;

/// A file of `tests/certs/`.
fn cert_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/certs")
        .join(name)
}

/// The certificates of a PEM file, in order.
fn certificates(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|cert| cert.expect("a PEM certificate"))
        .collect()
}

/// An in-process echo server with one TLS listener and the test certificate, changed by
/// `adjust`. `server.addr()` is its TCP address.
fn tls_server(adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
    common::serve(|cfg| {
        cfg.listen = vec!["tls:127.0.0.1:0".parse().unwrap()];
        cfg.tls.cert = Some(cert_path("server.pem"));
        cfg.tls.key = Some(cert_path("server.key"));
        adjust(cfg);
    })
}

/// Handshakes completed.
fn handshakes(stats: &StatsSnapshot) -> u64 {
    stats.total().tls_handshakes
}

/// Handshakes failed for `reason`.
fn failed(stats: &StatsSnapshot, reason: TlsFailure) -> u64 {
    stats.total().handshakes_failed_for(reason)
}

/// Handshakes failed for any reason.
fn failed_in_all(stats: &StatsSnapshot) -> u64 {
    TlsFailure::ALL.iter().map(|r| failed(stats, *r)).sum()
}

/// A client config trusting the test CA, offering `versions`, showing the client certificate
/// `identity` (`"client"`, `"stranger"`) or none.
fn client_config(
    versions: &[&'static SupportedProtocolVersion],
    identity: Option<&str>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(&cert_path("ca.pem")) {
        roots.add(cert).unwrap();
    }
    // The process's default provider: ring, the one the crate's features enable.
    let builder =
        ClientConfig::builder_with_protocol_versions(versions).with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let chain = certificates(&cert_path(&format!("{name}.pem")));
            let key = PrivateKeyDer::from_pem_file(cert_path(&format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

/// TLS 1.3 or 1.2, no client certificate.
fn any_version() -> Arc<ClientConfig> {
    client_config(rustls::ALL_VERSIONS, None)
}

/// Whether a client that tried to handshake and send `ping` was served: `Ok` with the echo,
/// else how it ended. In TLS 1.3 the client finishes before the server has judged its
/// certificate, so a refusal may only show on the first read.
fn try_ping(client: &mut TlsClient) -> Result<Vec<u8>, String> {
    client.handshake()?;
    client.echo(b"ping")
}

/// Waits for `child` (killed after [`PATIENCE`]) and collects its output.
fn wait_with_output_bounded(child: std::process::Child) -> std::process::Output {
    let pid = child.id();
    let (done, waited) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let output = child.wait_with_output().unwrap();
        done.send(()).unwrap();
        output
    });
    if waited.recv_timeout(PATIENCE).is_err() {
        // SAFETY: kill(2) on our own child, not yet reaped (its waiter still waits).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let output = waiter.join().unwrap();
        panic!(
            "the child did not finish; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    waiter.join().unwrap()
}

/// The ClientHello a client of [`any_version`] sends first.
fn client_hello() -> Vec<u8> {
    let mut conn = ClientConnection::new(any_version(), "localhost".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}
