//! Handshakes that fail or never finish: each closes only its connection and is counted with
//! its reason (`error`, `timeout`, `closed`); client certificates; the TLS versions
//! `openssl s_client` may use; refusals that send no cleartext; the counters on the metrics
//! page.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use echoloop::server::stats::{RefusalReason, TlsFailure};
use rustls::version;

use super::client::TlsClient;
use super::{
    any_version, cert_path, client_config, client_hello, failed, failed_in_all, handshakes,
    tls_server, try_ping, wait_with_output_bounded,
};
use crate::common::{self, PATIENCE, read_to_end, wait_for_stats};

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
    let mut half_hello = client_hello();
    half_hello.truncate(half_hello.len() / 2);
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
    let hello = client_hello();
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

/// What the server writes for the handshake counts as sent, as what the client writes for it
/// counts as received: its flight (the certificate chain alone is over a kilobyte) before any
/// echo.
#[test]
fn the_servers_handshake_bytes_count_as_sent() {
    let server = tls_server(|_| {});
    let mut client = TlsClient::connect(server.addr(), any_version());
    client.handshake().expect("the handshake");
    wait_for_stats(&server, "the handshake's bytes counted as sent", |s| {
        s.total().bytes_sent > 1000
    });
}
