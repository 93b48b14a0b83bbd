//! TLS listeners (`-l tls:ADDR`): echo byte-exact through a TLS session, many sessions at once,
//! close_notify as the end of input, handshakes that fail or never finish (each counted, only
//! that connection closed), client certificates, chat and daytime over TLS, the edge-trigger trap,
//! `openssl s_client` and Python's `ssl`, bad certificate files at start and at SIGHUP, a TLS
//! client that never reads, and a PROXY v2 header in front of the handshake.
//!
//! The client is rustls' sans-IO [`ClientConnection`] over a non-blocking socket, driven by
//! [`TlsClient`] one turn at a time: the test decides exactly which bytes go out in which write
//! (half a ClientHello, 500 records in one segment, a PROXY header glued to the ClientHello).
//! The certificates are the committed ones of `tests/certs/` (see `make.sh` there).

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore};
use rustls::{SupportedProtocolVersion, version};

use echoloop::server::sources::balancers::parse_balancer;
use echoloop::server::stats::{HeaderRefusal, RefusalReason, TlsFailure};
use echoloop::{CloseReason, ProtocolKind, ServeConfig, StatsSnapshot};

use crate::common::{
    self, Daemon, PATIENCE, TestServer, pseudo_random_bytes, read_to_end, run_echoloop,
    wait_for_stats,
};

// ---------------------------------------------------------------------------------------------
// Certificates, servers and counters

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

// ---------------------------------------------------------------------------------------------
// The client

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

/// A TLS client over a non-blocking socket, driven a turn at a time ([`TlsClient::turn`]) until
/// what the test waits for has happened, or the connection ended, or [`PATIENCE`] ran out.
struct TlsClient {
    conn: ClientConnection,
    sock: TcpStream,
    /// Plaintext rustls has not taken yet.
    outgoing: Vec<u8>,
    /// Plaintext received that the test has not taken yet.
    incoming: Vec<u8>,
    /// Send close_notify once `outgoing` is empty.
    closing: bool,
    close_sent: bool,
    /// The server's close_notify has come.
    close_notify: bool,
    /// The server's FIN (or a reset) has come.
    eof: bool,
    /// Bytes that came after the server's close_notify (there should be none).
    after_close_notify: usize,
    /// A write failed (the server is gone): nothing more is sent.
    write_failed: bool,
    /// Why TLS failed: an alert from the server, bytes that were not TLS.
    error: Option<String>,
}

impl TlsClient {
    /// Connects and sends the ClientHello.
    fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsClient {
        TlsClient::connect_after(addr, config, &[])
    }

    /// Connects and sends `preamble` and the ClientHello in one write (as HAProxy forwards a
    /// PROXY header and the client's first bytes).
    fn connect_after(addr: SocketAddr, config: Arc<ClientConfig>, preamble: &[u8]) -> TlsClient {
        let mut conn =
            ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut first = preamble.to_vec();
        while conn.wants_write() {
            conn.write_tls(&mut first).unwrap();
        }
        let mut sock = TcpStream::connect(addr).expect("connect to the TLS listener");
        sock.set_nodelay(true).unwrap();
        sock.set_write_timeout(Some(PATIENCE)).unwrap();
        sock.write_all(&first).expect("send the ClientHello");
        TlsClient::over(sock, conn)
    }

    /// The session `conn` over `sock`, whose ClientHello is sent already.
    fn over(sock: TcpStream, conn: ClientConnection) -> TlsClient {
        sock.set_nonblocking(true).unwrap();
        TlsClient {
            conn,
            sock,
            outgoing: Vec::new(),
            incoming: Vec::new(),
            closing: false,
            close_sent: false,
            close_notify: false,
            eof: false,
            after_close_notify: 0,
            write_failed: false,
            error: None,
        }
    }

    /// Whether nothing more can come.
    fn ended(&self) -> bool {
        self.eof || self.error.is_some()
    }

    /// How it stands, for failure messages.
    fn state(&self) -> String {
        format!(
            "handshaking={} outgoing={} incoming={} close_notify={} eof={} error={:?}",
            self.conn.is_handshaking(),
            self.outgoing.len(),
            self.incoming.len(),
            self.close_notify,
            self.eof,
            self.error
        )
    }

    /// One turn: plaintext to rustls, records to the socket, records from it, plaintext out.
    /// Whether anything moved.
    fn turn(&mut self) -> bool {
        let mut moved = false;
        if !self.outgoing.is_empty() {
            // rustls takes up to its buffer limit (64 KiB) and says how much it took.
            let n = self.conn.writer().write(&self.outgoing).unwrap();
            self.outgoing.drain(..n);
            moved |= n > 0;
        }
        if self.closing && !self.close_sent && self.outgoing.is_empty() {
            self.conn.send_close_notify();
            self.close_sent = true;
        }
        while self.conn.wants_write() && !self.write_failed {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => moved = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.write_failed = true, // EPIPE, ECONNRESET: the server is gone
            }
        }
        if self.close_notify {
            // rustls reads nothing after close_notify: the FIN is read from the socket.
            let mut buf = [0u8; 4096];
            match self.sock.read(&mut buf) {
                Ok(0) => (self.eof, moved) = (true, true),
                Ok(n) => (self.after_close_notify, moved) = (self.after_close_notify + n, true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => (self.eof, moved) = (true, true),
            }
        } else if !self.eof && self.error.is_none() {
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => (self.eof, moved) = (true, true),
                Ok(_) => {
                    moved = true;
                    if let Err(e) = self.conn.process_new_packets() {
                        self.error = Some(e.to_string());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => panic!("reading TLS: {e}; {}", self.state()),
            }
        }
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => {
                    self.close_notify = true;
                    break;
                }
                Ok(n) => {
                    self.incoming.extend_from_slice(&buf[..n]);
                    moved = true;
                }
                Err(_) => break, // WouldBlock, or EOF without close_notify (self.eof says so)
            }
        }
        moved
    }

    /// Turns until `done` holds (`Ok`), or the connection ends first (`Err`: how it ended).
    /// Panics after [`PATIENCE`].
    fn drive_until(&mut self, what: &str, done: impl Fn(&TlsClient) -> bool) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if done(self) {
                return Ok(());
            }
            if self.ended() {
                return Err(self.state());
            }
            if !self.turn() {
                assert!(
                    start.elapsed() < PATIENCE,
                    "waited for {what}: {}",
                    self.state()
                );
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Finishes the handshake: ours done and our last message (Finished) sent.
    fn handshake(&mut self) -> Result<(), String> {
        self.drive_until("the handshake", |c| {
            !c.conn.is_handshaking() && !c.conn.wants_write()
        })
    }

    /// Queues `bytes` to be sent.
    fn send(&mut self, bytes: &[u8]) {
        self.outgoing.extend_from_slice(bytes);
    }

    /// Turns until everything queued is on the socket.
    fn flush(&mut self) -> Result<(), String> {
        self.drive_until("the bytes sent", |c| {
            c.outgoing.is_empty() && !c.conn.wants_write()
        })
    }

    /// The next `len` bytes received.
    fn receive(&mut self, len: usize) -> Result<Vec<u8>, String> {
        self.drive_until("the bytes", |c| c.incoming.len() >= len)?;
        Ok(self.incoming.drain(..len).collect())
    }

    /// Sends `bytes` and returns as many received.
    fn echo(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.send(bytes);
        self.receive(bytes.len())
    }

    /// The next line received, without its `\n`.
    fn read_line(&mut self) -> Result<String, String> {
        self.drive_until("a line", |c| c.incoming.contains(&b'\n'))?;
        let end = self.incoming.iter().position(|b| *b == b'\n').unwrap();
        let line: Vec<u8> = self.incoming.drain(..=end).collect();
        Ok(String::from_utf8_lossy(&line[..end]).into_owned())
    }

    /// Sends close_notify after what is queued, then reads until the server's FIN; returns
    /// everything received (the caller checks `close_notify` and `error`).
    fn close_and_read_to_end(&mut self) -> Vec<u8> {
        self.closing = true;
        let _ = self.drive_until("the server's FIN", |c| c.eof);
        std::mem::take(&mut self.incoming)
    }

    /// The certificate the server showed (its leaf).
    fn server_certificate(&self) -> Vec<u8> {
        self.conn.peer_certificates().expect("a server certificate")[0].to_vec()
    }
}

/// Whether a client that tried to handshake and send `ping` was served: `Ok` with the echo,
/// else how it ended. In TLS 1.3 the client finishes before the server has judged its
/// certificate, so a refusal may only show on the first read.
fn try_ping(client: &mut TlsClient) -> Result<Vec<u8>, String> {
    client.handshake()?;
    client.echo(b"ping")
}

// ---------------------------------------------------------------------------------------------
// Echo

#[test]
fn a_mebibyte_comes_back_byte_exact_over_tls_1_3_and_1_2() {
    let server = tls_server(|_| {});
    for (version, expected, seed) in [
        (&version::TLS13, ProtocolVersion::TLSv1_3, 13),
        (&version::TLS12, ProtocolVersion::TLSv1_2, 12),
    ] {
        let mut client = TlsClient::connect(server.addr(), client_config(&[version], None));
        client.handshake().expect("the handshake");
        assert_eq!(client.conn.protocol_version(), Some(expected));
        // Every byte value, in records of every size rustls makes: all of it sent at once.
        let payload = pseudo_random_bytes(1 << 20, seed);
        let echoed = client.echo(&payload).expect("the echo");
        assert!(echoed == payload, "the echo changed ({expected:?})");
    }
    let stats = wait_for_stats(&server, "two handshakes", |s| handshakes(s) == 2);
    assert_eq!(failed_in_all(&stats), 0);
}

#[test]
#[ignore = "needs python3"]
fn a_mebibyte_comes_back_byte_exact_to_python_ssl() {
    let server = tls_server(|_| {});
    // Python reads the payload from stdin, echoes it through TLS 16 KiB at a time, prints what
    // came back, then closes with close_notify (`unwrap`, which waits for the server's) and
    // expects the server's FIN and nothing else.
    let script = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
data = sys.stdin.buffer.read()
ctx = ssl.create_default_context(cafile=ca)
tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                      server_hostname="localhost")
out = sys.stdout.buffer
for start in range(0, len(data), 16384):
    chunk = data[start:start + 16384]
    tls.sendall(chunk)
    got = 0
    while got < len(chunk):
        piece = tls.recv(len(chunk) - got)
        if not piece:
            sys.exit("EOF after %d bytes" % (start + got))
        out.write(piece)
        got += len(piece)
plain = tls.unwrap()
rest = plain.recv(1)
if rest:
    sys.exit("bytes after close_notify: %r" % rest)
out.flush()
"#;
    let payload = pseudo_random_bytes(1 << 20, 7);
    let mut child = Command::new(common::tool("python3", "python3"))
        .args([
            "-c",
            script,
            &server.addr().port().to_string(),
            cert_path("ca.pem").to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut stdin = child.stdin.take().unwrap();
    let sent = payload.clone();
    let writer = thread::spawn(move || stdin.write_all(&sent).unwrap()); // dropped: EOF
    let output = wait_with_output_bounded(child);
    writer.join().unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout.len(), payload.len());
    assert!(output.stdout == payload, "the echo changed");
    wait_for_stats(&server, "python's close counted", |s| {
        s.total().closed_for(CloseReason::PeerClosed) == 1
    });
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

#[test]
fn a_hundred_concurrent_tls_clients_each_get_their_own_stream() {
    const CLIENTS: usize = 100;
    let server = tls_server(|_| {});
    let all_connected = Arc::new(Barrier::new(CLIENTS));
    let addr = server.addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let all_connected = all_connected.clone();
            thread::spawn(move || {
                let mut client = TlsClient::connect(addr, any_version());
                client.handshake().expect("the handshake");
                all_connected.wait();
                for round in 0..4 {
                    let payload = pseudo_random_bytes(16 * 1024, (i * 10 + round) as u64);
                    let echoed = client.echo(&payload).expect("the echo");
                    assert!(echoed == payload, "client {i} got another stream");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let stats = wait_for_stats(&server, "every handshake counted", |s| {
        handshakes(s) == CLIENTS as u64
    });
    assert_eq!(failed_in_all(&stats), 0);
}

#[test]
fn close_notify_ends_the_input_and_everything_comes_back_before_the_servers() {
    let server = tls_server(|_| {});
    let mut client = TlsClient::connect(server.addr(), any_version());
    client.handshake().expect("the handshake");
    // Sent and closed before reading a byte: the server has 256 KiB to echo after our close.
    let payload = pseudo_random_bytes(256 * 1024, 3);
    client.send(&payload);
    let echoed = client.close_and_read_to_end();
    assert_eq!(client.error, None);
    assert_eq!(echoed.len(), payload.len(), "{}", client.state());
    assert!(echoed == payload, "the echo changed");
    assert!(
        client.close_notify,
        "no close_notify from the server before its FIN"
    );
    assert_eq!(client.after_close_notify, 0, "bytes after the close_notify");
    wait_for_stats(&server, "the close counted", |s| {
        s.total().closed_for(CloseReason::PeerClosed) == 1
    });
}

// ---------------------------------------------------------------------------------------------
// The edge-trigger trap

/// Many small records in one segment: once the socket is read to `WouldBlock`, the plaintext of
/// all of them sits in the TLS session and no new readiness edge will come. A server that waited
/// for one would answer some lines and hang.
#[test]
fn many_small_records_in_one_segment_are_all_answered() {
    let server = tls_server(|_| {});
    for version in [&version::TLS13, &version::TLS12] {
        for records in [500, 5000] {
            let mut client = TlsClient::connect(server.addr(), client_config(&[version], None));
            // Our side of the handshake done but (in TLS 1.3) our Finished not sent yet: it
            // goes in the same write as the records.
            client
                .drive_until("our side of the handshake", |c| {
                    c.conn.wants_write() || !c.conn.is_handshaking()
                })
                .expect("the handshake");
            if client.conn.is_handshaking() {
                // TLS 1.2: our Finished goes first; the records wait for the server's.
                client.handshake().expect("the handshake");
            }
            let mut burst = Vec::new();
            while client.conn.wants_write() {
                client.conn.write_tls(&mut burst).unwrap();
            }
            client.conn.set_buffer_limit(None);
            for _ in 0..records {
                assert_eq!(client.conn.writer().write(b"line\n").unwrap(), 5); // one record each
            }
            while client.conn.wants_write() {
                client.conn.write_tls(&mut burst).unwrap();
            }
            client.sock.set_nonblocking(false).unwrap();
            client.sock.write_all(&burst).unwrap();
            client.sock.set_nonblocking(true).unwrap();
            let echoed = client
                .receive(5 * records)
                .unwrap_or_else(|e| panic!("{records} records ({version:?}): {e}"));
            assert_eq!(echoed, b"line\n".repeat(records));
        }
    }
}

/// TLS 1.3 lets the client's Finished, its first records and its close_notify share one
/// segment: the handshake ends, every line is answered, then the server closes.
#[test]
fn finished_records_and_close_notify_in_one_segment_are_answered_then_closed() {
    let server = tls_server(|_| {});
    let mut client = TlsClient::connect(server.addr(), client_config(&[&version::TLS13], None));
    client
        .drive_until("our side of the handshake", |c| !c.conn.is_handshaking())
        .expect("the handshake");
    client.conn.set_buffer_limit(None);
    for _ in 0..500 {
        client.conn.writer().write_all(b"line\n").unwrap();
    }
    client.conn.send_close_notify();
    client.close_sent = true;
    let mut burst = Vec::new();
    while client.conn.wants_write() {
        client.conn.write_tls(&mut burst).unwrap();
    }
    client.sock.set_nonblocking(false).unwrap();
    client.sock.write_all(&burst).unwrap();
    client.sock.set_nonblocking(true).unwrap();
    let echoed = client.close_and_read_to_end();
    assert_eq!(client.error, None);
    assert_eq!(echoed.len(), 5 * 500, "{}", client.state());
    assert_eq!(echoed, b"line\n".repeat(500));
    assert!(client.close_notify, "no close_notify before the FIN");
    let stats = wait_for_stats(&server, "the close counted", |s| {
        s.total().closed_for(CloseReason::PeerClosed) == 1
    });
    assert_eq!(handshakes(&stats), 1);
}

/// The server closing first (its shutdown, an idle client) says close_notify before its FIN,
/// so that a client can tell the end from a truncation.
#[test]
fn the_server_closing_first_sends_close_notify() {
    let server = tls_server(|cfg| cfg.idle_timeout = Some(Duration::from_secs(1)));
    let mut idle = TlsClient::connect(server.addr(), any_version());
    assert_eq!(try_ping(&mut idle).unwrap(), b"ping");
    let _ = idle.drive_until("the idle timeout", |c| c.eof);
    assert_eq!(idle.error, None);
    assert!(idle.close_notify, "idle: {}", idle.state());
    wait_for_stats(&server, "the idle close counted", |s| {
        s.total().closed_for(CloseReason::IdleTimeout) == 1
    });

    let server = tls_server(|_| {});
    let mut drained = TlsClient::connect(server.addr(), any_version());
    assert_eq!(try_ping(&mut drained).unwrap(), b"ping");
    server.stop_handle().stop();
    let _ = drained.drive_until("the shutdown", |c| c.eof);
    assert_eq!(drained.error, None);
    assert!(drained.close_notify, "shutdown: {}", drained.state());
}

/// A record that does not decrypt, after the handshake: an alert, that connection closed, the
/// others served; not a failed handshake.
#[test]
fn a_broken_record_after_the_handshake_closes_only_that_connection() {
    let server = tls_server(|_| {});
    let mut good = TlsClient::connect(server.addr(), any_version());
    assert_eq!(try_ping(&mut good).unwrap(), b"ping");
    let mut broken = TlsClient::connect(server.addr(), any_version());
    assert_eq!(try_ping(&mut broken).unwrap(), b"ping");
    // Application data (23), TLS 1.2 on the wire, 21 bytes no key made.
    let mut record = vec![23, 3, 3, 0, 21];
    record.extend_from_slice(&[0x5a; 21]);
    broken.sock.set_nonblocking(false).unwrap();
    broken.sock.write_all(&record).unwrap();
    broken.sock.set_nonblocking(true).unwrap();
    let ended = broken.drive_until("the close", |c| c.eof);
    assert!(ended.is_err() || broken.eof, "{}", broken.state());
    assert!(broken.incoming.is_empty(), "{:?}", broken.incoming);
    assert_eq!(good.echo(b"still\n").unwrap(), b"still\n");
    let stats = wait_for_stats(&server, "the close counted", |s| {
        s.total().connections_open == 1
    });
    assert_eq!(failed_in_all(&stats), 0);
    assert_eq!(handshakes(&stats), 2);
}

/// TLS 1.3 lets either side change its keys at any time (KeyUpdate): the records after ours
/// are read with the new keys, and the server answers with its own.
#[test]
fn a_key_update_from_the_client_changes_nothing_for_the_echo() {
    let server = tls_server(|_| {});
    let mut client = TlsClient::connect(server.addr(), client_config(&[&version::TLS13], None));
    assert_eq!(try_ping(&mut client).unwrap(), b"ping");
    for round in 0..3 {
        client.conn.refresh_traffic_keys().expect("a key update");
        let payload = pseudo_random_bytes(100 * 1024, round);
        assert!(client.echo(&payload).unwrap() == payload, "round {round}");
    }
}

/// A FIN without close_notify (a truncation, in TLS terms) still ends the input as a plain
/// client's FIN does: what came before it is answered.
#[test]
fn a_fin_without_close_notify_still_gets_its_echo() {
    let server = tls_server(|_| {});
    let mut client = TlsClient::connect(server.addr(), any_version());
    assert_eq!(try_ping(&mut client).unwrap(), b"ping");
    let payload = pseudo_random_bytes(64 * 1024, 5);
    client.send(&payload);
    client.flush().unwrap();
    client.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = client.drive_until("the server's FIN", |c| c.eof);
    let echoed = std::mem::take(&mut client.incoming);
    assert_eq!(echoed.len(), payload.len(), "{}", client.state());
    assert!(echoed == payload);
}

/// Refused on a `tls:` listener (`--max-connections`): closed without a byte, since a line in
/// clear would only break the client's handshake; counted as a refusal, not a failed handshake.
#[test]
fn a_refusal_on_a_tls_listener_sends_no_cleartext() {
    let server = tls_server(|cfg| cfg.max_connections = 1);
    let mut first = TlsClient::connect(server.addr(), any_version());
    assert_eq!(try_ping(&mut first).unwrap(), b"ping");
    let mut second = common::connect(&server);
    assert_eq!(read_to_end(&mut second), b"");
    let mut third = TlsClient::connect(server.addr(), any_version());
    let refused = try_ping(&mut third);
    assert!(refused.is_err(), "served over --max-connections");
    assert_eq!(third.error, None, "not a clean close: {}", third.state());
    let stats = wait_for_stats(&server, "two refusals", |s| {
        s.total().refused_for(RefusalReason::Full) == 2
    });
    assert_eq!(failed_in_all(&stats), 0);
    assert_eq!(first.echo(b"still\n").unwrap(), b"still\n");
}

/// A client back with the same config resumes its session (a ticket, or the server's cache).
#[test]
fn a_second_connection_resumes_its_session() {
    let server = tls_server(|_| {});
    for version in [&version::TLS13, &version::TLS12] {
        let config = client_config(&[version], None);
        let mut first = TlsClient::connect(server.addr(), config.clone());
        assert_eq!(try_ping(&mut first).unwrap(), b"ping");
        assert_eq!(
            first.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        let mut second = TlsClient::connect(server.addr(), config);
        assert_eq!(try_ping(&mut second).unwrap(), b"ping");
        assert_eq!(
            second.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{version:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Handshakes that fail

#[test]
fn garbage_instead_of_a_client_hello_closes_only_that_connection() {
    let server = tls_server(|_| {});
    let mut good = TlsClient::connect(server.addr(), any_version());
    good.handshake().expect("the handshake");
    assert_eq!(good.echo(b"before\n").unwrap(), b"before\n");

    let mut garbage = common::connect(&server);
    common::send(&mut garbage, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let answer = read_to_end(&mut garbage);
    // An alert record (content type 21), or nothing; never the request echoed.
    assert!(
        answer.is_empty() || answer[0] == 21,
        "answered garbage with {answer:?}"
    );
    let stats = wait_for_stats(&server, "the failure counted", |s| {
        failed(s, TlsFailure::Error) == 1
    });
    assert_eq!(failed(&stats, TlsFailure::Timeout), 0);
    assert_eq!(failed(&stats, TlsFailure::Closed), 0);

    // The good client, connected before, is still served.
    assert_eq!(good.echo(b"after\n").unwrap(), b"after\n");
    assert_eq!(handshakes(&server.stats()), 1);
}

#[test]
fn a_handshake_not_done_by_the_deadline_is_closed_and_one_left_half_way_is_counted() {
    let server = tls_server(|cfg| cfg.tls.handshake_timeout = Duration::from_secs(1));
    let half_hello = {
        let mut conn =
            ClientConnection::new(any_version(), "localhost".try_into().unwrap()).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        hello.truncate(hello.len() / 2);
        hello
    };
    // One says nothing, one sends half a ClientHello: both closed at the deadline.
    let mut silent = common::connect(&server);
    let mut halfway = common::connect(&server);
    common::send(&mut halfway, &half_hello);
    let said = read_to_end(&mut silent);
    assert!(said.is_empty() || said[0] == 21, "sent {said:?}");
    let said = read_to_end(&mut halfway);
    assert!(said.is_empty() || said[0] == 21, "sent {said:?}");
    wait_for_stats(&server, "two timeouts", |s| {
        failed(s, TlsFailure::Timeout) == 2
    });

    // One sends half a ClientHello and leaves: `closed`.
    let mut leaver = common::connect(&server);
    common::send(&mut leaver, &half_hello);
    drop(leaver);
    let stats = wait_for_stats(&server, "the leaver counted", |s| {
        failed(s, TlsFailure::Closed) == 1
    });
    assert_eq!(failed(&stats, TlsFailure::Error), 0);
    assert_eq!(handshakes(&stats), 0);

    // Meanwhile a prompt client is served.
    let mut prompt = TlsClient::connect(server.addr(), any_version());
    assert_eq!(try_ping(&mut prompt).unwrap(), b"ping");
}

/// The handshake deadline is from the connection's start, not from its last byte: a client
/// that trickles its ClientHello a byte at a time, each well within the deadline, is closed
/// long before it is done.
#[test]
fn a_trickled_client_hello_is_closed_at_the_deadline() {
    let server = tls_server(|cfg| cfg.tls.handshake_timeout = Duration::from_secs(1));
    let hello = {
        let mut conn =
            ClientConnection::new(any_version(), "localhost".try_into().unwrap()).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        hello
    };
    let mut trickler = common::connect(&server);
    trickler.set_nodelay(true).unwrap();
    trickler.set_nonblocking(true).unwrap();
    // 50 ms a byte: the whole hello would take 15 s or more, fifteen deadlines.
    let mut sent = 0;
    let closed = loop {
        let mut buf = [0u8; 64];
        match trickler.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {} // an alert, then the FIN
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break true, // reset
        }
        if sent == hello.len() {
            break false;
        }
        match trickler.write(&hello[sent..sent + 1]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break true,
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(
        closed,
        "all {sent} bytes of the ClientHello went in: no deadline"
    );
    assert!(sent < hello.len());
    let stats = wait_for_stats(&server, "the timeout counted", |s| {
        failed(s, TlsFailure::Timeout) == 1
    });
    assert_eq!(handshakes(&stats), 0);
}

#[test]
fn client_certificates_required_only_the_ones_the_ca_signed_are_served() {
    let server = tls_server(|cfg| cfg.tls.client_ca = Some(cert_path("client-ca.pem")));
    for version in [&version::TLS13, &version::TLS12] {
        let mut shown =
            TlsClient::connect(server.addr(), client_config(&[version], Some("client")));
        assert_eq!(try_ping(&mut shown).unwrap(), b"ping", "{version:?}");

        let mut none = TlsClient::connect(server.addr(), client_config(&[version], None));
        let refused = try_ping(&mut none);
        assert!(
            refused.is_err(),
            "served without a certificate: {refused:?}"
        );

        let mut stranger =
            TlsClient::connect(server.addr(), client_config(&[version], Some("stranger")));
        let refused = try_ping(&mut stranger);
        assert!(refused.is_err(), "served a stranger: {refused:?}");
    }
    let stats = wait_for_stats(&server, "the refusals counted", |s| {
        failed(s, TlsFailure::Error) == 4
    });
    assert_eq!(handshakes(&stats), 2);
}

/// TLS 1.0 and 1.1 are refused: rustls does not speak them. `openssl s_client -tls1_1` (its
/// security level lowered so that it offers 1.1 at all) is answered with an alert.
#[test]
#[ignore = "needs openssl"]
fn openssl_s_client_is_echoed_over_1_2_and_1_3_and_refused_over_1_1() {
    let server = tls_server(|_| {});
    for version in ["-tls1_3", "-tls1_2"] {
        let mut child = s_client(server.addr(), &["-quiet", version]);
        let mut stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (lines, line) = mpsc::channel();
        thread::spawn(move || {
            for l in stdout.lines() {
                if lines.send(l).is_err() {
                    break;
                }
            }
        });
        stdin.write_all(b"hello s_client\n").unwrap();
        let echoed = line.recv_timeout(PATIENCE);
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            echoed.ok().and_then(Result::ok).as_deref(),
            Some("hello s_client"),
            "{version}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    wait_for_stats(&server, "two handshakes", |s| handshakes(s) == 2);

    let mut child = s_client(server.addr(), &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    drop(child.stdin.take());
    let output = wait_with_output_bounded(child);
    assert!(!output.status.success(), "s_client -tls1_1 succeeded");
    let stats = wait_for_stats(&server, "the refusal counted", |s| {
        failed(s, TlsFailure::Error) == 1
    });
    assert_eq!(handshakes(&stats), 2);
}

/// `openssl s_client -connect ADDR -CAfile ca.pem -verify_return_error <args>`, stdio piped.
fn s_client(addr: SocketAddr, args: &[&str]) -> std::process::Child {
    Command::new(common::tool("openssl", "openssl"))
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(cert_path("ca.pem"))
        .args(["-verify_return_error", "-servername", "localhost"])
        .args(args)
        // Debian's openssl.cnf sets MinProtocol TLSv1.2: without it, -tls1_1 is offered.
        .env("OPENSSL_CONF", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl")
}

// ---------------------------------------------------------------------------------------------
// Other services

#[test]
fn chat_over_tls_members_see_each_others_lines() {
    let server = tls_server(|cfg| cfg.protocol = ProtocolKind::Chat.into());
    let join = || {
        let mut client = TlsClient::connect(server.addr(), any_version());
        client.handshake().expect("the handshake");
        let greeting = client.read_line().expect("the greeting");
        let name = greeting
            .strip_prefix("* you are ")
            .unwrap_or_else(|| panic!("unexpected greeting {greeting:?}"))
            .to_string();
        (client, name)
    };
    let (mut a, an) = join();
    let (mut b, bn) = join();
    assert_eq!(a.read_line().unwrap(), format!("* {bn} joined"));
    b.send(b"hello over tls\n");
    b.flush().unwrap(); // `a` is driven below, `b` is not
    assert_eq!(a.read_line().unwrap(), format!("[{bn}] hello over tls"));
    a.send(b"and back\n");
    a.flush().unwrap();
    assert_eq!(b.read_line().unwrap(), format!("[{an}] and back"));
}

/// The queue a chat line joins holds ciphertext encrypted for each member: one that never
/// reads is dropped at the queue limit, and the others go on.
#[test]
fn chat_over_tls_drops_a_member_that_never_reads() {
    let server = tls_server(|cfg| {
        cfg.protocol = ProtocolKind::Chat.into();
        cfg.queue_limit = 64 * 1024;
    });
    let join = || {
        let mut client = TlsClient::connect(server.addr(), any_version());
        let greeting = client.read_line().expect("the greeting");
        let name = greeting.strip_prefix("* you are ").unwrap().to_string();
        (client, name)
    };
    let (mut a, an) = join();
    let (mut b, bn) = join();
    assert_eq!(a.read_line().unwrap(), format!("* {bn} joined"));
    let (_slow, slow_name) = join(); // never driven again: it reads nothing
    assert_eq!(a.read_line().unwrap(), format!("* {slow_name} joined"));
    assert_eq!(b.read_line().unwrap(), format!("* {slow_name} joined"));
    let filler = "y".repeat(1000);
    let mut sent = 0;
    let mut announcements = Vec::new();
    while server.stats().total().clients_dropped == 0 {
        for i in sent..sent + 32 {
            a.send(format!("{i} {filler}\n").as_bytes());
        }
        a.flush().unwrap();
        let target = sent + 32;
        while sent < target {
            let line = b.read_line().expect("b gets every line");
            match line.strip_prefix(&format!("[{an}] ")) {
                Some(rest) => assert_eq!(rest, format!("{sent} {filler}"), "b missed a line"),
                None => {
                    announcements.push(line);
                    continue;
                }
            }
            sent += 1;
        }
    }
    let stats = wait_for_stats(&server, "the slow reader dropped", |s| {
        s.closed_for(CloseReason::QueueLimit) == 1
    });
    assert_eq!(stats.total().clients_dropped, 1);
    a.send(b"end\n");
    a.flush().unwrap();
    loop {
        let line = b.read_line().unwrap();
        if line == format!("[{an}] end") {
            break;
        }
        announcements.push(line);
    }
    assert_eq!(announcements, [format!("* {slow_name} left (queue-limit)")]);
}

/// Daytime speaks first: its line must wait for the handshake (sent in clear before it, the
/// client would read it as a broken record).
#[test]
fn daytime_over_tls_sends_its_line_after_the_handshake() {
    let server = tls_server(|cfg| cfg.protocol = ProtocolKind::Daytime.into());
    let mut client = TlsClient::connect(server.addr(), any_version());
    client.handshake().expect("the handshake");
    let all = client.close_and_read_to_end();
    assert_eq!(client.error, None);
    assert!(client.close_notify, "no close_notify before the FIN");
    let line = String::from_utf8(all).expect("text");
    assert!(
        line.ends_with("\r\n") && line.matches('\n').count() == 1,
        "{line:?}"
    );
    assert!(line.len() > 20, "not a date: {line:?}");
    assert_eq!(handshakes(&server.stats()), 1);
}

#[test]
fn the_greeting_comes_after_the_handshake() {
    let server = tls_server(|cfg| cfg.greeting = Some(b"welcome over tls".to_vec()));
    let mut client = TlsClient::connect(server.addr(), any_version());
    client.handshake().expect("the handshake");
    assert_eq!(client.read_line().unwrap(), "welcome over tls");
    assert_eq!(client.echo(b"ping").unwrap(), b"ping");
}

#[test]
fn the_metrics_page_counts_handshakes_done_and_failed_by_reason() {
    let server = tls_server(|cfg| {
        cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
        cfg.tls.handshake_timeout = Duration::from_secs(1);
    });
    let mut good = TlsClient::connect(server.addr(), any_version());
    assert_eq!(try_ping(&mut good).unwrap(), b"ping");
    let mut garbage = common::connect(&server);
    common::send(&mut garbage, b"not a ClientHello\r\n\r\n");
    read_to_end(&mut garbage);
    let mut silent = common::connect(&server);
    read_to_end(&mut silent);
    wait_for_stats(&server, "both failures", |s| {
        failed(s, TlsFailure::Error) == 1 && failed(s, TlsFailure::Timeout) == 1
    });
    let mut scrape = TcpStream::connect(server.metrics_addr().unwrap()).unwrap();
    scrape.set_read_timeout(Some(PATIENCE)).unwrap();
    common::send(
        &mut scrape,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    let page = String::from_utf8(read_to_end(&mut scrape)).unwrap();
    let labels = r#"service="echo",transport="tcp""#;
    for (series, value) in [
        (format!("echoloop_tls_handshakes_total{{{labels}}}"), 1),
        (
            format!(r#"echoloop_tls_handshakes_failed_total{{{labels},reason="error"}}"#),
            1,
        ),
        (
            format!(r#"echoloop_tls_handshakes_failed_total{{{labels},reason="timeout"}}"#),
            1,
        ),
        (
            format!(r#"echoloop_tls_handshakes_failed_total{{{labels},reason="closed"}}"#),
            0,
        ),
    ] {
        let line = format!("{series} {value}");
        assert!(page.lines().any(|l| l == line), "no {line:?} in\n{page}");
    }
}

// ---------------------------------------------------------------------------------------------
// Backpressure

/// The flooder's echo piles up as ciphertext the server cannot send: it is paused at the queue
/// limit by the server's own accounting, like a plain client, and loses nothing.
#[test]
fn a_tls_client_that_never_reads_is_paused_while_others_are_served() {
    const QUEUE_LIMIT: usize = 256 * 1024;
    const FLOOD: usize = 16 << 20;
    let server = tls_server(|cfg| {
        cfg.queue_limit = QUEUE_LIMIT;
        cfg.max_memory = 64 << 20;
    });
    let mut flooder = TlsClient::connect(server.addr(), any_version());
    flooder.handshake().expect("the handshake");
    // All of the flood encrypted beforehand: a thread writes the ciphertext, this one reads.
    flooder.conn.set_buffer_limit(None);
    let flood = pseudo_random_bytes(FLOOD, 42);
    flooder.conn.writer().write_all(&flood).unwrap();
    let mut ciphertext = Vec::new();
    while flooder.conn.wants_write() {
        flooder.conn.write_tls(&mut ciphertext).unwrap();
    }
    let mut flood_writer = flooder.sock.try_clone().unwrap();
    let writer = thread::spawn(move || {
        flood_writer.set_nonblocking(false).unwrap();
        flood_writer.write_all(&ciphertext).unwrap();
    });
    wait_for_stats(&server, "the flooder paused", |s| {
        s.total().readers_paused >= 1
    });

    let mut other = TlsClient::connect(server.addr(), any_version());
    for round in 0..50 {
        let message = pseudo_random_bytes(512, round);
        assert_eq!(other.echo(&message).unwrap(), message);
    }
    let stats = server.stats();
    let slack = 256 * 1024;
    assert!(
        stats.total().queued_bytes_peak <= (QUEUE_LIMIT + slack) as u64,
        "queue peaked at {} bytes",
        stats.total().queued_bytes_peak
    );
    assert!(
        stats.memory_peak <= (QUEUE_LIMIT + 2 * slack) as u64,
        "memory peaked at {} bytes",
        stats.memory_peak
    );

    let echoed = flooder.receive(FLOOD).expect("the flood's echo");
    assert!(echoed == flood, "the flood came back changed");
    writer.join().unwrap();
    let stats = server.stats();
    assert!(stats.total().queued_bytes_peak <= (QUEUE_LIMIT + slack) as u64);
    assert!(stats.memory_peak <= (QUEUE_LIMIT + 2 * slack) as u64);
}

/// `--max-memory` holds with forty TLS clients that send and do not read: by the reactor's own
/// accounting (queues of ciphertext, held plaintext, the sessions), give or take what each
/// client still being read adds before its next check, as for plain clients (`bounded.rs`).
#[test]
fn the_memory_cap_holds_with_many_tls_clients_that_do_not_read() {
    const CLIENTS: usize = 40;
    const EACH: usize = 1 << 20; // 40 MiB in all, were nobody held back
    const CAP: usize = 8 << 20;
    let server = tls_server(|cfg| {
        cfg.max_memory = CAP;
        cfg.queue_limit = 4 << 20; // so that only the cap holds them back
        cfg.sndbuf = Some(4096);
    });
    let mut clients: Vec<TlsClient> = (0..CLIENTS)
        .map(|_| {
            let mut client = TlsClient::connect(server.addr(), any_version());
            client.handshake().expect("the handshake");
            client
        })
        .collect();
    wait_for_stats(&server, "every handshake done", |s| {
        handshakes(s) == CLIENTS as u64
    });
    let mut payloads = Vec::new();
    let mut writers = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        // Encrypted beforehand; a thread writes the ciphertext, this one reads later.
        let payload = pseudo_random_bytes(EACH, i as u64);
        client.conn.set_buffer_limit(None);
        client.conn.writer().write_all(&payload).unwrap();
        let mut ciphertext = Vec::new();
        while client.conn.wants_write() {
            client.conn.write_tls(&mut ciphertext).unwrap();
        }
        let mut writer = client.sock.try_clone().unwrap();
        writers.push(thread::spawn(move || {
            writer.set_nonblocking(false).unwrap();
            writer.write_all(&ciphertext).unwrap();
        }));
        payloads.push(payload);
    }
    wait_for_stats(&server, "an episode over the cap", |s| {
        s.memory_episodes >= 1
    });

    // During the episode a TLS newcomer is turned away without a word.
    let mut newcomer = common::connect(&server);
    assert_eq!(read_to_end(&mut newcomer), b"");
    wait_for_stats(&server, "the newcomer refused", |s| {
        s.total().refused_for(RefusalReason::Busy) >= 1
    });

    for (i, (client, payload)) in clients.iter_mut().zip(&payloads).enumerate() {
        let echoed = client.receive(EACH).expect("the echo");
        assert!(echoed == *payload, "client {i}'s echo changed");
    }
    for writer in writers {
        writer.join().unwrap();
    }
    // Plain clients' slack (one read and its echo, 80 KiB), and a session's own share: its
    // state (counted as 4 KiB) and an unfinished record (up to 18 KiB).
    let peak = server.stats().memory_peak as usize;
    let bound = CAP + CLIENTS * (80 + 22) * 1024;
    assert!(
        peak <= bound,
        "memory peaked at {peak} bytes, bound {bound}"
    );
}

/// What a handshake in progress holds is counted: clients that sent half a ClientHello each
/// add at least that half to the reactor's memory, and give it back when they go.
#[test]
fn handshakes_in_progress_count_toward_max_memory() {
    const CLIENTS: usize = 50;
    // Longer than the wait: the halves must still be held when they are looked at.
    let server = tls_server(|cfg| cfg.tls.handshake_timeout = 3 * PATIENCE);
    let half_hello = {
        let mut conn =
            ClientConnection::new(any_version(), "localhost".try_into().unwrap()).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        hello.truncate(hello.len() / 2);
        hello
    };
    let before = server.stats().memory_bytes;
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut client = common::connect(&server);
            common::send(&mut client, &half_hello);
            client
        })
        .collect();
    wait_for_stats(&server, "every half ClientHello read", |s| {
        s.total().bytes_received >= (CLIENTS * half_hello.len()) as u64
    });
    let held = wait_for_stats(&server, "the halves counted", |s| {
        s.memory_bytes >= before + (CLIENTS * half_hello.len()) as u64
    });
    assert!(held.memory_bytes > before);
    drop(clients);
    let stats = wait_for_stats(&server, "every client gone", |s| {
        failed(s, TlsFailure::Closed) == CLIENTS as u64
    });
    assert_eq!(stats.memory_bytes, before, "memory not given back");
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol in front of TLS

/// A PROXY v2 header (command PROXY, TCP over IPv4) for a client at `source`.
fn proxy_v2(source: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(source) = source else {
        panic!("IPv4 only")
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&source.ip().octets());
    header.extend_from_slice(&[198, 51, 100, 1]);
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&7443u16.to_be_bytes());
    header
}

/// HAProxy's TLS passthrough with `send-proxy-v2`: the header in clear, then the handshake,
/// both in one write. The carried address is the one `--deny` judges.
#[test]
fn a_proxy_v2_header_before_the_handshake_carries_the_address_deny_judges() {
    let server = tls_server(|cfg| {
        cfg.sources.trusted = Vec::new();
        cfg.sources.proxy_protocol.balancers = vec![parse_balancer("127.0.0.1/32").unwrap()];
        cfg.sources.deny = vec!["192.0.2.7/32".parse().unwrap()];
    });
    let header = proxy_v2("192.0.2.8:4000".parse().unwrap());
    let mut allowed = TlsClient::connect_after(server.addr(), any_version(), &header);
    assert_eq!(try_ping(&mut allowed).unwrap(), b"ping");

    let header = proxy_v2("192.0.2.7:4000".parse().unwrap());
    let mut denied = TlsClient::connect_after(server.addr(), any_version(), &header);
    let refused = try_ping(&mut denied);
    assert!(refused.is_err(), "a denied address was served");
    assert!(
        denied.conn.peer_certificates().is_none(),
        "the denied client got a ServerHello"
    );
    let stats = wait_for_stats(&server, "the refusal counted", |s| {
        s.total().headers_refused_for(HeaderRefusal::Denied) == 1
    });
    assert_eq!(stats.total().refused_for(RefusalReason::Acl), 1);
    assert_eq!(stats.total().proxy_headers_accepted, 1);
    assert_eq!(handshakes(&stats), 1);
}

/// The header in a read of its own, the ClientHello in a later one; and a header followed by
/// nothing, closed at the handshake deadline (which starts again once the header is read).
#[test]
fn a_proxy_v2_header_alone_then_the_handshake_and_one_never_followed() {
    let server = tls_server(|cfg| {
        cfg.sources.trusted = Vec::new();
        cfg.sources.proxy_protocol.balancers = vec![parse_balancer("127.0.0.1/32").unwrap()];
        cfg.tls.handshake_timeout = Duration::from_secs(1);
    });
    let mut balancer = common::connect(&server);
    common::send(&mut balancer, &proxy_v2("192.0.2.9:4000".parse().unwrap()));
    wait_for_stats(&server, "the header read", |s| {
        s.total().proxy_headers_accepted == 1
    });
    // The rest of the connection is a TLS client's, on the same socket.
    let mut conn = ClientConnection::new(any_version(), "localhost".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    common::send(&mut balancer, &hello);
    let mut client = TlsClient::over(balancer, conn);
    assert_eq!(try_ping(&mut client).unwrap(), b"ping");

    let mut silent = common::connect(&server);
    common::send(&mut silent, &proxy_v2("192.0.2.10:4000".parse().unwrap()));
    let said = read_to_end(&mut silent);
    assert!(said.is_empty() || said[0] == 21, "sent {said:?}");
    let stats = wait_for_stats(&server, "the timeout counted", |s| {
        failed(s, TlsFailure::Timeout) == 1
    });
    assert_eq!(stats.total().proxy_headers_accepted, 2);
    assert_eq!(handshakes(&stats), 1);
}

// ---------------------------------------------------------------------------------------------
// The binary: listeners, bad files, SIGHUP

/// The address of the daemon's `n`th `listening tls` line.
fn tls_addr(daemon: &Daemon, n: usize) -> SocketAddr {
    daemon
        .listening
        .iter()
        .filter_map(|l| l.strip_prefix("tls "))
        .nth(n)
        .unwrap_or_else(|| panic!("no tls line {n} in {:?}", daemon.lines))
        .parse()
        .unwrap()
}

#[test]
fn tls_and_plain_listeners_mix_and_each_names_its_service() {
    let cert = cert_path("server.pem");
    let key = cert_path("server.key");
    let daemon = Daemon::start(
        &[
            "serve",
            "-l",
            "tls:127.0.0.1:0",
            "-l",
            "127.0.0.1:0",
            "-l",
            "chat@tls:127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        3,
    );
    let kinds_and_services: Vec<(&str, &str)> = daemon
        .lines
        .iter()
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            (words[0], words[2])
        })
        .collect();
    assert_eq!(
        kinds_and_services,
        [("tls", "echo"), ("tcp", "echo"), ("tls", "chat")],
        "{:?}",
        daemon.lines
    );
    let mut tls = TlsClient::connect(tls_addr(&daemon, 0), any_version());
    assert_eq!(try_ping(&mut tls).unwrap(), b"ping");
    let mut plain = TcpStream::connect(daemon.tcp_addr()).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    common::send(&mut plain, b"plain\n");
    assert_eq!(common::read_line(&mut plain), b"plain");
    let mut chat = TlsClient::connect(tls_addr(&daemon, 1), any_version());
    chat.handshake().expect("the handshake");
    assert!(chat.read_line().unwrap().starts_with("* you are "));
    daemon.signal(libc::SIGTERM);
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 0, "{stderr}");
}

/// A temporary folder for this test's files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("echoloop-{}-tls-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_bad_certificate_or_key_file_is_one_line_naming_it_and_exit_2() {
    let dir = temp_dir("bad-files");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let only_a_key = dir.join("only-a-key.pem");
    std::fs::copy(cert_path("server.key"), &only_a_key).unwrap();
    let missing = dir.join("missing.pem");
    let server_pem = cert_path("server.pem");
    let server_key = cert_path("server.key");
    let renewed_key = cert_path("renewed.key");
    // (cert, key, client CA, the file the message must name)
    let cases: [(&Path, &Path, Option<&Path>, &Path); 7] = [
        (&missing, &server_key, None, &missing),
        (&server_pem, &missing, None, &missing),
        (&garbage, &server_key, None, &garbage),
        (&server_pem, &garbage, None, &garbage),
        (&server_pem, &renewed_key, None, &renewed_key), // the key of another certificate
        (&only_a_key, &server_key, None, &only_a_key),   // a cert file with no certificate
        (&server_pem, &server_key, Some(&garbage), &garbage),
    ];
    for (cert, key, client_ca, named) in cases {
        let mut args = vec![
            "serve",
            "-l",
            "tls:127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ];
        if let Some(ca) = client_ca {
            args.extend(["--tls-client-ca", ca.to_str().unwrap()]);
        }
        let (code, stdout, stderr) = run_echoloop(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(named.to_str().unwrap()),
            "{args:?}: the message does not name {}: {stderr}",
            named.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_rotates_the_certificate_and_a_broken_file_keeps_the_old_one() {
    let dir = temp_dir("sighup");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::copy(cert_path("server.pem"), &cert).unwrap();
    std::fs::copy(cert_path("server.key"), &key).unwrap();
    let mut daemon = Daemon::start(
        &[
            "serve",
            "-l",
            "tls:127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        1,
    );
    // Its log, line by line, so that the test can wait for the warning.
    let stderr = std::io::BufReader::new(daemon.child.stderr.take().unwrap());
    let (log_lines, log) = mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines() {
            if log_lines.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let addr = tls_addr(&daemon, 0);
    let shown = || {
        let mut client = TlsClient::connect(addr, any_version());
        client.handshake().expect("the handshake");
        client.server_certificate()
    };
    let original = certificates(&cert_path("server.pem"))[0].to_vec();
    let renewed = certificates(&cert_path("renewed.pem"))[0].to_vec();
    assert!(shown() == original);
    let mut before = TlsClient::connect(addr, any_version());
    before.handshake().expect("the handshake");

    // Rotated: new connections get the new certificate; the one open before goes on.
    std::fs::copy(cert_path("renewed.pem"), &cert).unwrap();
    std::fs::copy(cert_path("renewed.key"), &key).unwrap();
    daemon.signal(libc::SIGHUP);
    common::wait_until("the renewed certificate", shown, |c| *c == renewed);
    assert_eq!(before.echo(b"still\n").unwrap(), b"still\n");

    // Broken, twice: a warning naming the file at fault, and the renewed certificate kept.
    // First a cert file that is not PEM; then the old key beside the renewed certificate.
    let broken: [(&str, &[u8], &[u8], &Path); 2] = [
        (
            "garbage",
            b"not a certificate\n",
            &std::fs::read(cert_path("renewed.key")).unwrap(),
            &cert,
        ),
        (
            "a key of another certificate",
            &std::fs::read(cert_path("renewed.pem")).unwrap(),
            &std::fs::read(cert_path("server.key")).unwrap(),
            &key,
        ),
    ];
    for (what, cert_bytes, key_bytes, named) in broken {
        std::fs::write(&cert, cert_bytes).unwrap();
        std::fs::write(&key, key_bytes).unwrap();
        daemon.signal(libc::SIGHUP);
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            match log.recv_timeout(Duration::from_millis(100)) {
                // Not an INFO line of a reload, which names the cert file too.
                Ok(line) if line.contains("WARN") => {
                    assert!(
                        line.contains(named.to_str().unwrap()),
                        "{what}: the warning does not name {}: {line}",
                        named.display()
                    );
                    break;
                }
                Ok(line) => seen.push(line),
                Err(_) => assert!(
                    start.elapsed() < PATIENCE,
                    "{what}: no warning; the log: {seen:?}"
                ),
            }
        }
        assert!(shown() == renewed, "{what} replaced the certificate");
        assert_eq!(before.echo(b"on\n").unwrap(), b"on\n");
    }

    daemon.signal(libc::SIGTERM);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < PATIENCE, "echoloop did not exit");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every worker reads the files again: after the SIGHUP, no new connection, whichever worker
/// takes it, gets the old certificate.
#[test]
fn sighup_rotates_the_certificate_in_every_worker() {
    let dir = temp_dir("sighup-workers");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::copy(cert_path("server.pem"), &cert).unwrap();
    std::fs::copy(cert_path("server.key"), &key).unwrap();
    let daemon = Daemon::start(
        &[
            "serve",
            "-l",
            "tls:127.0.0.1:0",
            "--workers",
            "2",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        1,
    );
    let addr = tls_addr(&daemon, 0);
    let renewed = certificates(&cert_path("renewed.pem"))[0].to_vec();
    // Clients held open on both workers, so that new ones are spread over both.
    let mut open = Vec::new();
    for _ in 0..8 {
        let mut client = TlsClient::connect(addr, any_version());
        client.handshake().expect("the handshake");
        open.push(client);
    }
    std::fs::copy(cert_path("renewed.pem"), &cert).unwrap();
    std::fs::copy(cert_path("renewed.key"), &key).unwrap();
    daemon.signal(libc::SIGHUP);
    // Once one connection shows the new certificate, wait until 40 in a row do.
    let in_a_row = || {
        (0..40)
            .map(|_| {
                let mut client = TlsClient::connect(addr, any_version());
                client.handshake().expect("the handshake");
                client.server_certificate() == renewed
            })
            .filter(|renewed| *renewed)
            .count()
    };
    common::wait_until("every worker's renewed certificate", in_a_row, |n| *n == 40);
    drop(open);
    daemon.signal(libc::SIGTERM);
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr.matches("TLS certificate reloaded").count(),
        2,
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
