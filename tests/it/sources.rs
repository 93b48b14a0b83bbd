//! Who may talk to us, and how much (`server/sources/`): `--allow`/`--deny`, `--trusted`,
//! `--max-per-source`, `--accept-rate`, `--udp-rate-limit`, and the UDP reflection guard, with
//! forged datagrams from a raw socket (root only).
//!
//! Limits made for strangers are tested with `--trusted none` (loopback is trusted by default).
//! Rate tests never assert a time: they assert `given <= burst + rate x elapsed`, with the
//! elapsed time measured by the test around everything the server did.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::{Instant, SystemTime};

use echoloop::net::address::Address;
use echoloop::net::stream::Transport;
use echoloop::protocol::Answer;
use echoloop::server::sources::SourcesConfig;
use echoloop::server::stats::{DropReason, RefusalReason};
use echoloop::server::threaded::ThreadedServer;
use echoloop::{ClientId, Frame, FramingKind, Protocol, ProtocolFactory, Replies, ServeConfig};

use crate::common::{self, Daemon, PATIENCE, TestServer, read_line, read_to_end, send};

fn prefix(text: &str) -> ipnet::IpNet {
    text.parse().unwrap()
}

/// The default rules, but nobody trusted: loopback is a stranger like any other.
fn strangers() -> SourcesConfig {
    SourcesConfig {
        trusted: Vec::new(),
        ..SourcesConfig::default()
    }
}

/// Whether an echo server served this connection: `ping` comes back. A refused connection reads
/// EOF (or a reset) with no byte, and may not even take the write.
fn echoes(stream: &mut TcpStream) -> bool {
    if stream.write_all(b"ping").is_err() {
        return false;
    }
    let mut reply = [0u8; 4];
    match stream.read_exact(&mut reply) {
        Ok(()) => {
            assert_eq!(&reply, b"ping");
            true
        }
        Err(_) => false,
    }
}

/// Everything a refused connection gets before EOF: nothing, when refused without a byte.
fn bytes_before_close(server: SocketAddr) -> Vec<u8> {
    let mut stream = TcpStream::connect(server).expect("the kernel completes the handshake");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    read_to_end(&mut stream)
}

#[test]
fn a_denied_source_is_closed_at_accept_without_a_byte() {
    let server = common::serve(|cfg| cfg.sources.deny = vec![prefix("127.0.0.1/32")]);
    assert_eq!(bytes_before_close(server.addr()), b"");
    let stats = common::wait_for_stats(&server, "the refusal", |s| {
        s.total().connections_refused == 1
    });
    assert_eq!(stats.total().refused_for(RefusalReason::Acl), 1);
    assert_eq!(stats.total().connections_accepted, 0);
    assert!(
        stats.summary_line().contains("refused=1[acl=1]"),
        "{}",
        stats.summary_line()
    );
}

#[test]
fn with_an_allow_list_only_its_sources_are_served_and_deny_wins() {
    // Loopback outside the allow list: refused, over TCP and UDP alike.
    let server = common::serve(|cfg| {
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
        cfg.sources.allow = vec![prefix("10.0.0.0/8"), prefix("::1/128")];
    });
    assert_eq!(bytes_before_close(server.addr()), b"");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"hello", server.udp_addrs()[0]).unwrap();
    let stats = common::wait_for_stats(&server, "the datagram dropped", |s| {
        s.dropped_for(DropReason::Acl) == 1
    });
    assert_eq!(stats.datagrams_sent, 0);
    assert_eq!(stats.total().refused_for(RefusalReason::Acl), 1);
    drop(server);

    // Inside the allow list: served; and --deny wins over --allow.
    let server = common::serve(|cfg| cfg.sources.allow = vec![prefix("127.0.0.0/8")]);
    assert!(echoes(&mut common::connect(&server)));
    drop(server);
    let server = common::serve(|cfg| {
        cfg.sources.allow = vec![prefix("127.0.0.0/8")];
        cfg.sources.deny = vec![prefix("127.0.0.1/32")];
    });
    assert_eq!(bytes_before_close(server.addr()), b"");
}

#[test]
fn unix_peers_are_not_affected_by_the_access_lists_or_limits() {
    let path = std::env::temp_dir().join(format!("echoloop-{}-sources.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = common::serve(|cfg| {
        cfg.listen.push(Address::Unix(path.clone()));
        cfg.sources = SourcesConfig {
            deny: vec![prefix("0.0.0.0/0"), prefix("::/0")],
            max_per_source: 1,
            accept_rate: 1,
            ..strangers()
        };
    });
    let mut clients: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(&path).expect("connect to the unix socket"))
        .collect();
    for client in &mut clients {
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        send(client, b"unix");
        assert_eq!(common::read_exactly(client, 4), b"unix");
    }
    assert_eq!(
        server.stats().stream(Transport::Unix).connections_refused,
        0
    );
    drop(clients);
    drop(server);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn one_over_max_per_source_is_told_why_and_closed() {
    let server = common::serve(|cfg| {
        cfg.sources = SourcesConfig {
            max_per_source: 2,
            accept_rate: 0,
            ..strangers()
        }
    });
    let mut first = common::connect(&server);
    let mut second = common::connect(&server);
    assert!(echoes(&mut first));
    assert!(echoes(&mut second));
    let mut third = common::connect(&server);
    assert_eq!(
        read_line(&mut third),
        b"error: too many connections from 127.0.0.1"
    );
    assert_eq!(read_to_end(&mut third), b"", "then closed");
    let stats = server.stats();
    assert_eq!(stats.total().refused_for(RefusalReason::PerSource), 1);
    assert_eq!(stats.total().connections_accepted, 2);

    // A place given back is a place to take.
    drop(first);
    common::wait_for_stats(&server, "the first client closed", |s| {
        s.total().connections_open == 1
    });
    let mut fourth = common::connect(&server);
    assert!(echoes(&mut fourth));
    assert!(echoes(&mut second), "the others are unaffected");
}

#[test]
fn trusted_sources_are_exempt_from_the_per_source_limits() {
    // Loopback is trusted by default: the limits do not apply to it.
    let server = common::serve(|cfg| {
        cfg.sources.max_per_source = 1;
        cfg.sources.accept_rate = 1;
    });
    let mut clients: Vec<TcpStream> = (0..5).map(|_| common::connect(&server)).collect();
    for client in &mut clients {
        assert!(echoes(client));
    }
    assert_eq!(server.stats().total().connections_refused, 0);
}

#[test]
fn connections_over_the_accept_rate_are_closed_without_a_byte() {
    const RATE: u64 = 2; // burst 2 x RATE
    const ATTEMPTS: usize = 30;
    let server = common::serve(|cfg| {
        cfg.sources = SourcesConfig {
            accept_rate: RATE as u32,
            max_per_source: 0,
            ..strangers()
        }
    });
    let start = Instant::now();
    let mut served = Vec::new();
    let mut refused = 0;
    for _ in 0..ATTEMPTS {
        let mut stream = common::connect(&server);
        if echoes(&mut stream) {
            served.push(stream);
        } else {
            assert_eq!(read_to_end(&mut stream), b"", "refused without a byte");
            refused += 1;
        }
    }
    let stats = common::wait_for_stats(&server, "every attempt decided", |s| {
        s.total().connections_accepted + s.total().connections_refused == ATTEMPTS as u64
    });
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = 2.0 * RATE as f64 + RATE as f64 * elapsed;
    assert!(
        served.len() as f64 <= allowed,
        "{} served in {elapsed:.2}s, at most {allowed:.1} allowed",
        served.len()
    );
    assert!(served.len() >= 2 * RATE as usize, "the burst is served");
    assert_eq!(stats.total().refused_for(RefusalReason::Rate), refused);
    assert_eq!(stats.total().connections_accepted, served.len() as u64);
}

/// Sends `count` datagrams from `client` to `to` in small batches, each batch taken in by the
/// server before the next (so the kernel drops none of them), then waits until every one was
/// judged. Returns the counters then.
fn flood(
    server: &TestServer,
    client: &UdpSocket,
    to: SocketAddr,
    count: u64,
) -> echoloop::StatsSnapshot {
    let before = server.stats().datagrams_received;
    let mut sent = 0;
    while sent < count {
        let batch = (count - sent).min(50);
        for _ in 0..batch {
            client.send_to(b"flood", to).unwrap();
        }
        sent += batch;
        common::wait_for_stats(server, "the batch received", |s| {
            s.datagrams_received >= before + sent
        });
    }
    // Every datagram received has been answered or dropped once the two add up.
    common::wait_for_stats(server, "every datagram judged", |s| {
        s.datagrams_sent + s.datagrams_dropped == before + count
    })
}

#[test]
fn udp_replies_to_one_source_stay_within_burst_plus_rate() {
    const RATE: u64 = 50;
    const FLOOD: u64 = 1000;
    let server = common::serve(|cfg| {
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
        cfg.sources = SourcesConfig {
            udp_rate_limit: RATE as u32,
            ..strangers()
        };
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let stats = flood(&server, &client, server.udp_addrs()[0], FLOOD);
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = RATE as f64 + RATE as f64 * elapsed;
    assert!(
        stats.datagrams_sent as f64 <= allowed,
        "{} replies in {elapsed:.2}s, at most {allowed:.1} allowed",
        stats.datagrams_sent
    );
    assert!(stats.datagrams_sent >= RATE, "the burst is answered");
    assert_eq!(
        stats.datagrams_sent + stats.dropped_for(DropReason::Rate),
        FLOOD,
        "every other datagram was dropped for the rate: {stats:?}"
    );
}

#[test]
fn a_trusted_source_is_not_rate_limited() {
    let server = common::serve(|cfg| {
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
        cfg.sources.udp_rate_limit = 5;
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stats = flood(&server, &client, server.udp_addrs()[0], 300);
    assert_eq!(stats.datagrams_sent, 300);
    assert_eq!(stats.datagrams_dropped, 0);
}

/// A protocol that would amplify: each datagram is answered with `request bytes x 4 + 512 +
/// extra` bytes (`extra` is the first byte of the request).
struct Amplifier;

impl Protocol for Amplifier {
    type Session = ();
    const NAME: &'static str = "amplifier";
    const FRAMING: FramingKind = FramingKind::Raw;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, _: &mut Replies) {}

    fn on_frame(&mut self, _: &mut (), _: Frame<'_>, _: SystemTime, _: &mut Replies) {}

    fn on_datagram(&mut self, datagram: &[u8], _: SystemTime, reply: &mut Vec<u8>) -> Answer {
        let extra = usize::from(datagram.first().copied().unwrap_or(0));
        reply.resize(datagram.len() * 4 + 512 + extra, b'a');
        Answer::Reply
    }
}

#[test]
fn a_reply_over_four_times_its_request_plus_512_is_dropped() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolFactory::new(|| Amplifier).into();
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let to = server.udp_addrs()[0];
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // Over the cap by one byte (from a trusted source, too: the cap is for everyone).
    client.send_to(&[1, 0, 0], to).unwrap();
    // At the cap exactly: answered; its answer also shows the first was handled (in order).
    client.send_to(&[0; 10], to).unwrap();
    let mut buf = vec![0u8; 4096];
    let (len, _) = client.recv_from(&mut buf).expect("the reply at the cap");
    assert_eq!(len, 10 * 4 + 512);
    let stats = common::wait_for_stats(&server, "the reply counted", |s| s.datagrams_sent == 1);
    assert_eq!(stats.dropped_for(DropReason::Size), 1);
    assert_eq!(stats.datagrams_received, 2);
}

#[test]
fn refusals_are_counted_by_reason_on_the_metrics_page() {
    let server = common::serve(|cfg| {
        cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
        cfg.sources.deny = vec![prefix("127.0.0.2/32")];
        cfg.max_frame = 10;
    });
    // One datagram over --max-frame, one from a denied address.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(&[b'x'; 11], server.udp_addrs()[0]).unwrap();
    let denied = UdpSocket::bind("127.0.0.2:0").unwrap();
    denied.send_to(b"x", server.udp_addrs()[0]).unwrap();
    common::wait_for_stats(&server, "both dropped", |s| s.datagrams_dropped == 2);
    let mut scrape = TcpStream::connect(server.metrics_addr().unwrap()).unwrap();
    scrape.set_read_timeout(Some(PATIENCE)).unwrap();
    send(
        &mut scrape,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    let page = String::from_utf8(read_to_end(&mut scrape)).unwrap();
    for (reason, count) in [("loop", 0), ("rate", 0), ("acl", 1), ("size", 1)] {
        let series = format!(
            "echoloop_datagrams_dropped_total{{service=\"echo\",transport=\"udp\",reason=\"{reason}\"}} {count}\n"
        );
        assert!(page.contains(&series), "{series} in\n{page}");
    }
    assert!(
        page.contains(
            "echoloop_connections_refused_total{service=\"echo\",transport=\"tcp\",reason=\"acl\"} 0\n"
        ),
        "{page}"
    );
    let line = server.stats().summary_line();
    assert!(line.ends_with("dropped=2[acl=1 size=1]"), "{line}");
}

#[test]
fn the_threaded_model_applies_the_access_lists_and_per_source_limits() {
    let mut config = ServeConfig::for_tests();
    config.sources = SourcesConfig {
        max_per_source: 1,
        accept_rate: 0,
        ..strangers()
    };
    let server = ThreadedServer::bind(&config).unwrap().spawn().unwrap();
    let connect = || {
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    };
    let mut first = connect();
    assert!(echoes(&mut first));
    let mut second = connect();
    assert_eq!(
        read_line(&mut second),
        b"error: too many connections from 127.0.0.1"
    );
    drop(first);
    common::wait_until(
        "the first client gone",
        || server.stats(),
        |s| s.total().connections_open == 0,
    );
    assert!(echoes(&mut connect()), "its place was given back");
    assert_eq!(
        server.stats().total().refused_for(RefusalReason::PerSource),
        1
    );
    drop(server);

    config.sources.deny = vec![prefix("127.0.0.0/8")];
    let server = ThreadedServer::bind(&config).unwrap().spawn().unwrap();
    assert_eq!(bytes_before_close(server.addr()), b"");
    common::wait_until(
        "the refusal counted",
        || server.stats(),
        |s| s.total().refused_for(RefusalReason::Acl) == 1,
    );
}

#[test]
fn sighup_reads_the_addresses_again_and_the_server_goes_on() {
    let daemon = Daemon::start(&["serve", "-l", "127.0.0.1:0", "-u", "127.0.0.1:0"], 2);
    daemon.signal(libc::SIGHUP); // its default action would end the process
    // Still serving, TCP and UDP.
    let mut stream = TcpStream::connect(daemon.tcp_addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    assert!(echoes(&mut stream));
    drop(stream);
    let udp: SocketAddr = daemon
        .listening
        .iter()
        .find_map(|l| l.strip_prefix("udp "))
        .unwrap()
        .parse()
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"still here", udp).unwrap();
    let mut buf = [0u8; 64];
    let (len, _) = client.recv_from(&mut buf).expect("an answer after SIGHUP");
    assert_eq!(&buf[..len], b"still here");
    daemon.signal(libc::SIGTERM);
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("SIGHUP: the loop guard knows"), "{stderr}");
}

/// Sends one UDP datagram with a forged source from a raw socket (root only). Checksum 0 means
/// "none" for UDP over IPv4; the kernel fills in the IP header's checksum.
fn forge(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
    .expect("a raw socket (this test needs root)");
    let total = 20 + 8 + payload.len();
    let mut packet = vec![0x45, 0];
    packet.extend((total as u16).to_be_bytes());
    packet.extend([0, 0, 0x40, 0, 64, 17, 0, 0]); // id, don't fragment, TTL, UDP, checksum
    packet.extend(from.ip().octets());
    packet.extend(to.ip().octets());
    packet.extend(from.port().to_be_bytes());
    packet.extend(to.port().to_be_bytes());
    packet.extend(((8 + payload.len()) as u16).to_be_bytes());
    packet.extend([0, 0]);
    packet.extend(payload);
    let sent = socket
        .send_to(&packet, &SocketAddr::V4(to).into())
        .expect("send the forged datagram");
    assert_eq!(sent, total);
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => panic!("an IPv4 address"),
    }
}

/// Sends a real datagram and waits for its answer: every datagram sent before it was seen.
fn answered(to: SocketAddr) {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"real", to).unwrap();
    let mut buf = [0u8; 16];
    let (len, _) = client
        .recv_from(&mut buf)
        .expect("an answer to a real datagram");
    assert_eq!(&buf[..len], b"real");
}

#[test]
#[ignore = "needs root (a raw socket forges the source)"]
fn forged_datagrams_from_our_own_socket_or_a_service_port_get_no_reply() {
    for bind in ["127.0.0.1:0", "0.0.0.0:0"] {
        let server = common::serve(|cfg| {
            cfg.udp = vec![bind.parse().unwrap()];
            cfg.sources.trusted = Vec::new();
        });
        let port = server.udp_addrs()[0].port();
        let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        forge(to, to, b"myself"); // from itself: the loop of one
        forge(
            SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 7), port),
            to,
            b"lo",
        );
        forge(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 19), to, b"chargen");
        forge(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), to, b"port zero");
        answered(SocketAddr::V4(to)); // handled in order: the forged ones were seen first
        let stats = common::wait_for_stats(&server, "every datagram counted", |s| {
            s.datagrams_sent + s.datagrams_dropped == 5
        });
        // On a wildcard socket 127.0.0.7:port is us too; bound to 127.0.0.1 it is not (that
        // one is answered, into the void).
        let from_127_0_0_7_is_ours = bind.starts_with("0.0.0.0");
        let loops = if from_127_0_0_7_is_ours { 4 } else { 3 };
        assert_eq!(
            stats.dropped_for(DropReason::Loop),
            loops,
            "{bind}: {stats:?}"
        );
        assert_eq!(stats.datagrams_received, 5, "{bind}");
        assert_eq!(stats.datagrams_sent, 5 - loops, "{bind}");
    }
}

#[test]
#[ignore = "needs root (a raw socket forges the source)"]
fn a_forged_loop_between_two_untrusted_instances_dies_at_the_rate_limit() {
    const RATE: u64 = 10;
    let instance = || {
        common::serve(|cfg| {
            cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
            cfg.sources = SourcesConfig {
                udp_rate_limit: RATE as u32,
                ..strangers()
            };
        })
    };
    let (a, b) = (instance(), instance());
    let start = Instant::now();
    // One datagram "from" b to a: each answers the other until one runs out of tokens.
    forge(v4(b.udp_addrs()[0]), v4(a.udp_addrs()[0]), b"ping-pong");
    let dropped = |s: &echoloop::StatsSnapshot| s.dropped_for(DropReason::Rate);
    common::wait_until(
        "the loop dropped",
        || (a.stats(), b.stats()),
        |(a, b)| dropped(a) + dropped(b) == 1,
    );
    let elapsed = start.elapsed().as_secs_f64();
    let (a, b) = (a.stats(), b.stats());
    let allowed = RATE as f64 + RATE as f64 * elapsed;
    for stats in [&a, &b] {
        assert!(
            stats.datagrams_sent as f64 <= allowed,
            "{stats:?} in {elapsed:.2}s"
        );
    }
    // The one forged datagram went round and died: every datagram either side received was
    // the forged one or the other's reply.
    assert_eq!(
        a.datagrams_sent + b.datagrams_sent + 1,
        a.datagrams_received + b.datagrams_received
    );
}
