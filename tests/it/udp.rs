//! Every protocol over UDP: one answer datagram per request (or none), the service-port rule of
//! the loop guard, and datagrams over `--max-frame`. (Forged sources, the rate limit and the
//! access lists: `sources.rs`.)

use std::net::{SocketAddr, UdpSocket};

use echoloop::ProtocolKind;
use echoloop::server::stats::DropReason;

use crate::common;

/// A UDP server for `protocol` on 127.0.0.1:0 (and nothing else).
fn serve_udp(protocol: ProtocolKind, max_frame: Option<usize>) -> common::TestServer {
    common::serve(|cfg| {
        cfg.protocol = protocol.into();
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
        if let Some(max) = max_frame {
            cfg.max_frame = max;
        }
    })
}

fn client_at(addr: &str) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_read_timeout(Some(common::PATIENCE))?;
    Ok(socket)
}

/// Sends `request` to `to` and waits for the one answer.
fn ask(client: &UdpSocket, to: SocketAddr, request: &[u8]) -> Vec<u8> {
    client.send_to(request, to).expect("send a datagram");
    let mut buf = vec![0u8; 65_536];
    let (len, from) = client.recv_from(&mut buf).expect("an answer datagram");
    assert_eq!(from, to);
    buf.truncate(len);
    buf
}

#[test]
fn echo_returns_each_datagram_even_an_empty_one() {
    let server = serve_udp(ProtocolKind::Echo, None);
    let client = client_at("127.0.0.1:0").unwrap();
    let to = server.udp_addrs()[0];
    assert_eq!(ask(&client, to, b"\x00hi\xff"), b"\x00hi\xff");
    assert_eq!(ask(&client, to, b""), b"");
}

#[test]
fn timestamp_stamps_the_datagram_without_a_newline() {
    let server = serve_udp(ProtocolKind::Timestamp, None);
    let client = client_at("127.0.0.1:0").unwrap();
    let reply = ask(&client, server.udp_addrs()[0], b"hello python");
    assert_eq!(reply.len(), 27 + 12);
    assert_eq!(reply[0], b'[');
    assert_eq!(&reply[25..], b"] hello python");
}

#[test]
fn daytime_answers_any_datagram_with_one_line() {
    let server = serve_udp(ProtocolKind::Daytime, None);
    let client = client_at("127.0.0.1:0").unwrap();
    let reply = ask(&client, server.udp_addrs()[0], b"anything");
    assert_eq!(reply.len(), 26);
    assert!(reply.ends_with(b"\r\n"));
}

#[test]
fn discard_answers_nothing() {
    let server = serve_udp(ProtocolKind::Discard, None);
    let client = client_at("127.0.0.1:0").unwrap();
    client
        .send_to(b"into the void", server.udp_addrs()[0])
        .unwrap();
    let stats = common::wait_for_stats(&server, "the datagram", |s| s.datagrams_received == 1);
    assert_eq!(stats.datagrams_sent, 0);
    assert_eq!(stats.datagrams_dropped, 0);
}

#[test]
fn chargen_answers_each_datagram_with_at_most_512_characters() {
    let server = serve_udp(ProtocolKind::Chargen, None);
    let client = client_at("127.0.0.1:0").unwrap();
    let to = server.udp_addrs()[0];
    let first = ask(&client, to, b"");
    assert!(first.len() <= 512);
    let line0: Vec<u8> = (0x20u8..0x20 + 72).collect();
    assert_eq!(&first[..72], &line0[..]);
    assert_eq!(&first[72..74], b"\r\n");
    let second = ask(&client, to, b"more");
    assert!(second.len() <= 512);
    assert!(
        second
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) || b == b'\r' || b == b'\n')
    );
}

#[test]
#[ignore = "needs root (binds UDP port 7 or 19)"]
fn datagrams_from_a_loop_port_get_no_answer() {
    let server = serve_udp(ProtocolKind::Echo, None);
    // Only root may bind ports below 1024, and one of the two must be free.
    let client = ["127.0.0.1:7", "127.0.0.1:19"]
        .iter()
        .find_map(|addr| client_at(addr).ok())
        .expect("bind UDP port 7 or 19 (this test needs root, and one of them free)");
    client.send_to(b"ping", server.udp_addrs()[0]).unwrap();
    let stats = common::wait_for_stats(&server, "the datagram dropped", |s| {
        s.datagrams_dropped == 1
    });
    assert_eq!(stats.datagrams_received, 1);
    assert_eq!(stats.datagrams_sent, 0);
    assert_eq!(stats.dropped_for(DropReason::Loop), 1);
    // From an ordinary port, the same server answers.
    let other = client_at("127.0.0.1:0").unwrap();
    assert_eq!(ask(&other, server.udp_addrs()[0], b"ping"), b"ping");
}

#[test]
fn a_datagram_over_max_frame_is_dropped_and_counted() {
    let server = serve_udp(ProtocolKind::Echo, Some(100));
    let client = client_at("127.0.0.1:0").unwrap();
    let to = server.udp_addrs()[0];
    client.send_to(&[b'x'; 101], to).unwrap();
    // Datagrams are handled in order: the answer to the next one proves the first was seen.
    assert_eq!(ask(&client, to, &[b'y'; 100]), [b'y'; 100]);
    // The counter moves just after the send: wait for it rather than race it.
    let stats = common::wait_for_stats(&server, "the reply counted", |s| s.datagrams_sent == 1);
    assert_eq!(stats.datagrams_dropped, 1);
    assert_eq!(stats.dropped_for(DropReason::Size), 1);
    assert_eq!(stats.datagrams_received, 2);
}

/// The IPv6 loopback is not a tool that may be missing: `cli` binds `[::1]:0` too, so the suite
/// needs it anyway, and a machine without it fails here rather than passing untested.
#[test]
fn ipv6_loopback_works() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Echo.into();
        cfg.udp = vec!["[::1]:0".parse().unwrap()];
    });
    let client = client_at("[::1]:0").unwrap();
    assert_eq!(ask(&client, server.udp_addrs()[0], b"over v6"), b"over v6");
}
