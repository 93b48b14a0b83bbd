//! Echo through TLS: byte-exact for any bytes, each session its own stream, whatever the TLS
//! version, the client (rustls, Python's `ssl`), a key update in the middle, or a resumed session.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;

use echoloop::CloseReason;
use rustls::{ProtocolVersion, version};

use super::client::TlsClient;
use super::{
    any_version, cert_path, client_config, failed_in_all, handshakes, tls_server, try_ping,
    wait_with_output_bounded,
};
use crate::common::{self, pseudo_random_bytes, wait_for_stats};

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
