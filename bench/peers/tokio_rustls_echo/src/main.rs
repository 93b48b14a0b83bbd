//! The idiomatic tokio-rustls echo server, echoloop's TLS reference peer (scripts/bench-tls.sh).
//!
//! The tokio echo of `tokio_echo/` with a TLS layer, written the way the tokio-rustls examples
//! write it: one `TlsAcceptor` made from the certificate chain and key, a task per connection
//! that first awaits the handshake and then `read`s into its own 16 KiB buffer and `write_all`s
//! what it read, until the client closes (or sends `close_notify`). The `current_thread`
//! runtime, the fair match for one echoloop reactor; rustls with the ring provider, TLS 1.2 and
//! 1.3, no client certificates, rustls' default in-memory session cache and tickets.
//!
//! usage:  tokio_rustls_echo PORT CERT KEY        (0 picks a free port; 127.0.0.1, backlog 4096)
//! stdout: listening tls 127.0.0.1:PORT           stop: SIGTERM

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

const BUFFER_BYTES: usize = 16 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port), [_, cert, key]) = (args.first().and_then(|p| p.parse().ok()), &args[..])
    else {
        eprintln!("usage: tokio_rustls_echo PORT CERT KEY");
        return ExitCode::from(2);
    };
    let acceptor = match acceptor(cert, key) {
        Ok(acceptor) => acceptor,
        Err(e) => {
            eprintln!("tokio_rustls_echo: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build();
    match runtime.and_then(|runtime| runtime.block_on(serve(port, acceptor))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_rustls_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The server side of TLS: the certificate chain (leaf first) and its key, both PEM.
fn acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
    // ring, as echoloop (rustls deprecates it in 0.23.48 for lacking post-quantum key exchange).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{cert}: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(port: u16, acceptor: TlsAcceptor) -> io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    let listener: TcpListener = socket.listen(4096)?;
    println!("listening tls {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(echo(acceptor.clone(), stream));
            }
            // Out of descriptors and the like: the connection waits in the backlog; try again
            // shortly rather than spin.
            Err(e) => {
                eprintln!("tokio_rustls_echo: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection: the handshake, then echo until the client closes. A failed handshake (a
/// client that is not TLS, an unknown CA) ends only this task.
async fn echo(acceptor: TlsAcceptor, stream: TcpStream) {
    let Ok(mut stream) = acceptor.accept(stream).await else {
        return;
    };
    let mut buf = vec![0u8; BUFFER_BYTES];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    // Answer the client's close_notify with ours, as a TLS server should.
    let _ = stream.shutdown().await;
}
