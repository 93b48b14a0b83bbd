//! How a TLS session ends: the client's close_notify is its end of input (everything is
//! echoed, then the server's close_notify and FIN); the server closing first says close_notify
//! too; a FIN without it still ends the input; a record that does not decrypt closes only its
//! connection; a protocol's `error:` line is encrypted like any reply.

use std::io::Write;
use std::time::Duration;

use echoloop::{CloseReason, FramingKind};

use super::client::TlsClient;
use super::{any_version, failed_in_all, handshakes, tls_server, try_ping};
use crate::common::{pseudo_random_bytes, wait_for_stats};

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

/// A protocol's `error:` line goes through TLS like any reply (never in clear), and the
/// connection goes on, as over plain TCP (`framing.rs`).
#[test]
fn a_line_over_the_limit_gets_its_error_line_through_tls() {
    let server = tls_server(|cfg| {
        cfg.framing = Some(FramingKind::Line);
        cfg.max_frame = 16;
    });
    let mut client = TlsClient::connect(server.addr(), any_version());
    client.send(&[b'x'; 40]);
    client.send(b"\nstill here\n");
    assert_eq!(
        client.read_line().unwrap(),
        "error: frame too long (limit 16 bytes)"
    );
    assert_eq!(client.read_line().unwrap(), "still here");
}
