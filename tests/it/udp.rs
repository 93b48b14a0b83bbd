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

/// Several clients keep a window of datagrams in flight each; every reply must come back byte
/// for byte, and the server's counters must say exactly what the clients saw.
#[test]
fn a_burst_from_several_clients_is_answered_in_full_and_counted_exactly() {
    const CLIENTS: usize = 4;
    const EACH: usize = 1250; // 5,000 in all
    const WINDOW: usize = 64; // well within the clients' default receive buffers
    let server = serve_udp(ProtocolKind::Echo, None);
    let to = server.udp_addrs()[0];
    let payload = |client: usize, seq: usize| -> Vec<u8> {
        let mut bytes = format!("client {client} datagram {seq} ").into_bytes();
        bytes.extend(common::pseudo_random_bytes(seq % 200, seq as u64));
        bytes
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let socket = client_at("127.0.0.1:0").unwrap();
                let mut sent = 0;
                let mut buf = vec![0u8; 2048];
                for seq in 0..EACH {
                    while sent < EACH && sent < seq + WINDOW {
                        socket.send_to(&payload(c, sent), to).unwrap();
                        sent += 1;
                    }
                    let (n, from) = socket.recv_from(&mut buf).expect("every reply comes");
                    assert_eq!(from, to);
                    assert_eq!(&buf[..n], payload(c, seq), "in order, byte for byte");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let total = (CLIENTS * EACH) as u64;
    let stats = common::wait_for_stats(&server, "every reply counted", |s| {
        s.datagrams_sent == total
    });
    assert_eq!(stats.datagrams_received, total);
    assert_eq!(stats.datagrams_dropped, 0);
    assert_eq!(stats.udp_kernel_drops, 0);
}

/// A datagram over `--max-frame` among good ones: it is dropped and counted, the others of
/// its batch are answered.
#[test]
fn a_datagram_over_max_frame_inside_a_batch_leaves_its_neighbours_answered() {
    let server = serve_udp(ProtocolKind::Echo, Some(100));
    let client = client_at("127.0.0.1:0").unwrap();
    let to = server.udp_addrs()[0];
    let requests: Vec<Vec<u8>> = (0..30usize)
        .map(|i| {
            if i % 10 == 5 {
                vec![b'x'; 5000]
            } else {
                vec![b'0' + (i % 10) as u8; 100]
            }
        })
        .collect();
    for request in &requests {
        client.send_to(request, to).unwrap();
    }
    let mut buf = vec![0u8; 8192];
    for request in requests.iter().filter(|r| r.len() <= 100) {
        let n = client.recv(&mut buf).expect("the good ones are answered");
        assert_eq!(&buf[..n], &request[..]);
    }
    let stats = common::wait_for_stats(&server, "every datagram counted", |s| {
        s.datagrams_received == 30 && s.datagrams_sent == 27
    });
    assert_eq!(stats.dropped_for(DropReason::Size), 3);
    assert_eq!(stats.datagrams_dropped, 3);
}

/// A receive buffer far too small for a flood: what the kernel drops is counted
/// (`SO_RXQ_OVFL`), so that received + dropped by the kernel = sent; and what it dropped before
/// the socket was ours (a socket from systemd outlives a restart) is not. The socket is the
/// test's own, handed over as systemd would, with the smallest buffer the kernel allows (a
/// buffer is never shrunk: `udp_rcvbuf` is left unset so the small one stays).
#[test]
#[cfg(target_os = "linux")]
fn the_kernels_drops_are_counted_when_the_receive_buffer_overflows() {
    use echoloop::Server;
    use echoloop::net::activation::InheritedSocket;
    use echoloop::server::config::{ServeConfig, ServiceAddress};

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(1)
        .unwrap();
    let to = socket.local_addr().unwrap();
    let client = client_at("127.0.0.1:0").unwrap();
    // Nobody reads yet: loopback delivers within `send_to`, so all but a few are dropped now.
    for _ in 0..300 {
        client.send_to(&[b'f'; 64], to).unwrap();
    }
    let mut config = ServeConfig::for_tests();
    config.listen.clear();
    config.protocol = ProtocolKind::Discard.into();
    config.udp_rcvbuf = None;
    let inherited = vec![ServiceAddress::plain(InheritedSocket::Udp(socket))];
    let server = Server::bind_with(&config, inherited)
        .unwrap()
        .spawn()
        .unwrap();
    // What was queued before the handover is read now; what was dropped then is not counted.
    let queued = common::wait_until(
        "the datagrams queued before the handover",
        || server.stats(),
        |s| s.datagrams_received > 0,
    )
    .datagrams_received;
    assert_eq!(server.stats().udp_kernel_drops, 0);
    let sent = std::cell::Cell::new(queued);
    for _ in 0..5000 {
        client.send_to(&[b'f'; 64], to).unwrap();
        sent.set(sent.get() + 1);
    }
    // The kernel reports its count with the next datagram it queues: send a probe until the
    // counts add up (a probe may be dropped too, and is counted like any other).
    let stats = common::wait_until(
        "received + dropped by the kernel = sent",
        || {
            client.send_to(b"probe", to).unwrap();
            sent.set(sent.get() + 1);
            std::thread::sleep(std::time::Duration::from_millis(20));
            (sent.get(), server.stats())
        },
        |(sent, s)| s.datagrams_received + s.udp_kernel_drops == *sent,
    );
    assert!(stats.1.datagrams_received > queued);
    // Two datagrams' room against a sender in a tight loop: the kernel drops some.
    assert!(stats.1.udp_kernel_drops > 0, "{:?}", stats.1);
}

/// A UDP echo on its own thread that answers all but every `k`-th datagram it receives, until
/// none comes for a second.
fn lossy_echo(k: u64) -> (SocketAddr, std::thread::JoinHandle<u64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut seen = 0u64;
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            seen += 1;
            if !seen.is_multiple_of(k) {
                socket.send_to(&buf[..len], peer).unwrap();
            }
        }
        seen
    });
    (addr, server)
}

/// `load --udp` sends in batches (a pipeline's worth per call) and still counts every datagram:
/// against a server that drops every fourth, exactly a quarter is lost, and `--max-loss`
/// decides the exit code.
#[test]
fn batched_load_counts_the_loss_exactly_and_max_loss_decides() {
    use echoloop::clients::load::{self, LoadConfig, Target};
    let (addr, server) = lossy_echo(4);
    let mut config = LoadConfig::for_tests(Target::Datagram(addr));
    config.connections = 4;
    config.pipeline = 16; // a batch of 16 per socket
    config.messages = Some(400);
    config.duration = None;
    config.timeout = std::time::Duration::from_millis(300);
    config.max_loss_percent = 30.0;
    let report = load::run(&config).unwrap();
    let text = report.to_text();
    assert_eq!(report.messages_sent, 400, "{text}");
    assert_eq!(report.messages_received, 300, "{text}");
    assert_eq!(report.lost, 100, "{text}");
    assert_eq!(report.mismatches, 0, "{text}");
    assert_eq!(report.exit_code(), 0, "25% lost, 30% allowed: {text}");
    config.max_loss_percent = 20.0;
    let report = load::run(&config).unwrap();
    let text = report.to_text();
    assert_eq!(report.lost, 100, "{text}");
    assert_eq!(report.exit_code(), 1, "25% lost, 20% allowed: {text}");
    assert_eq!(server.join().unwrap(), 800, "the server saw every datagram");
}

/// Against `-p discard` nothing comes back: every datagram of a batched run is lost.
#[test]
fn batched_load_against_discard_loses_every_datagram() {
    use echoloop::clients::load::{self, LoadConfig, Target};
    let server = serve_udp(ProtocolKind::Discard, None);
    let mut config = LoadConfig::for_tests(Target::Datagram(server.udp_addrs()[0]));
    config.connections = 2;
    config.pipeline = 32;
    config.messages = Some(200);
    config.duration = None;
    config.timeout = std::time::Duration::from_millis(200);
    let report = load::run(&config).unwrap();
    let text = report.to_text();
    assert_eq!(report.messages_sent, 200, "{text}");
    assert_eq!((report.messages_received, report.lost), (0, 200), "{text}");
    assert_eq!(report.exit_code(), 1, "{text}");
    let stats = common::wait_for_stats(&server, "every datagram", |s| s.datagrams_received == 200);
    assert_eq!(stats.datagrams_sent, 0);
}
