//! The trap of TLS on an edge-triggered loop: records that arrive together are decrypted
//! together, and plaintext left inside the TLS session is announced by no readiness event. A
//! server that waited for the next READABLE edge would answer some lines and hang; these tests
//! bound that wait with [`PATIENCE`](crate::common::PATIENCE).

use std::io::Write;

use echoloop::CloseReason;
use rustls::version;

use super::client::TlsClient;
use super::{client_config, handshakes, tls_server};
use crate::common::wait_for_stats;

/// Many small records in one segment: once the socket is read to `WouldBlock`, the plaintext of
/// all of them sits in the TLS session and no new readiness edge will come.
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
            client.conn.set_buffer_limit(None);
            for _ in 0..records {
                assert_eq!(client.conn.writer().write(b"line\n").unwrap(), 5); // one record each
            }
            client.send_held_records_at_once();
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
    client.send_held_records_at_once();
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
