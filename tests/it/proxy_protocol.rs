//! The PROXY protocol (`--proxy-protocol`, `net/proxy_header.rs`, `reactor/proxied.rs`): a
//! connection from a balancer starts with a v1 or v2 header, and the address it carries is the
//! client's for the access lists and the per-source limits. The in-process server's balancer is
//! this test itself, on 127.0.0.1; the carried addresses are documentation ones (192.0.2.0/24).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use echoloop::net::address::Address;
use echoloop::server::sources::balancers::{Balancer, parse_balancer};
use echoloop::server::stats::{HeaderRefusal, RefusalReason};
use echoloop::{CloseReason, ServeConfig};

use crate::common::{self, PATIENCE, TestServer, read_line, read_to_end, send};

/// The v2 signature.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn prefix(text: &str) -> ipnet::IpNet {
    text.parse().unwrap()
}

/// A v1 header for a TCP4 client at `source`.
fn v1(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 198.51.100.1 51234 7007\r\n").into_bytes()
}

/// A v2 header (`command` 1: PROXY, 0: LOCAL) for a stream client at `source`.
fn v2(command: u8, source: SocketAddr) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x20 | command);
    let (family, addresses): (u8, Vec<u8>) = match source {
        SocketAddr::V4(v4) => {
            let mut a = v4.ip().octets().to_vec();
            a.extend_from_slice(&[198, 51, 100, 1]);
            (0x11, a)
        }
        SocketAddr::V6(v6) => {
            let mut a = v6.ip().octets().to_vec();
            a.extend_from_slice(
                &"2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
            (0x21, a)
        }
    };
    header.push(family);
    header.extend_from_slice(&((addresses.len() + 4) as u16).to_be_bytes());
    header.extend_from_slice(&addresses);
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&7007u16.to_be_bytes());
    header
}

/// An echo server whose balancer is 127.0.0.1 (this test), nobody trusted, header deadline
/// as given; changed further by `adjust`.
fn behind_balancer(adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
    common::serve(|cfg| {
        cfg.sources.trusted = Vec::new();
        cfg.sources.proxy_protocol.balancers = vec![parse_balancer("127.0.0.1/32").unwrap()];
        adjust(cfg);
    })
}

/// Sends `header` and `ping` in one write; whether `ping` comes back.
fn echoed_after(server: &TestServer, header: &[u8]) -> bool {
    let mut stream = common::connect(server);
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(b"ping");
    if stream.write_all(&bytes).is_err() {
        return false;
    }
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).is_ok() && &reply == b"ping"
}

#[test]
fn v1_and_v2_headers_are_read_and_the_bytes_after_them_echoed() {
    let server = behind_balancer(|_| {});
    assert!(echoed_after(&server, &v1("192.0.2.7")));
    assert!(echoed_after(
        &server,
        &v2(1, "192.0.2.8:4000".parse().unwrap())
    ));
    assert!(echoed_after(
        &server,
        &v2(1, "[2001:db8::7]:4000".parse().unwrap())
    ));
    let stats = common::wait_for_stats(&server, "three headers", |s| {
        s.total().proxy_headers_accepted == 3
    });
    assert!(
        stats
            .summary_line()
            .contains("proxy_headers accepted=3 refused=0"),
        "{}",
        stats.summary_line()
    );
}

#[test]
fn a_header_split_byte_by_byte_is_read() {
    let server = behind_balancer(|_| {});
    let mut stream = common::connect(&server);
    stream.set_nodelay(true).unwrap();
    for byte in v2(1, "192.0.2.7:4000".parse().unwrap()) {
        send(&mut stream, &[byte]);
        std::thread::sleep(Duration::from_millis(1)); // most bytes then come in reads of their own
    }
    send(&mut stream, b"ping\n");
    assert_eq!(read_line(&mut stream), b"ping");
    assert_eq!(server.stats().total().proxy_headers_accepted, 1);
}

#[test]
fn a_denied_carried_address_is_closed_without_a_byte_and_counted() {
    let server = behind_balancer(|cfg| cfg.sources.deny = vec![prefix("192.0.2.7/32")]);
    let mut stream = common::connect(&server);
    let mut bytes = v1("192.0.2.7");
    bytes.extend_from_slice(b"ping");
    send(&mut stream, &bytes);
    assert_eq!(read_to_end(&mut stream), b"");
    // The balancer's address itself is not denied: another client through it is served.
    assert!(echoed_after(&server, &v1("192.0.2.8")));
    let stats = common::wait_for_stats(&server, "the refusal", |s| {
        s.total().headers_refused_for(HeaderRefusal::Denied) == 1
    });
    assert_eq!(stats.total().refused_for(RefusalReason::Acl), 1);
    assert_eq!(stats.total().proxy_headers_accepted, 1);
}

#[test]
fn max_per_source_counts_the_carried_address_not_the_balancer() {
    let server = behind_balancer(|cfg| cfg.sources.max_per_source = 1);
    // Two clients behind the one balancer address: both served, both kept open.
    let open: Vec<TcpStream> = ["192.0.2.7", "192.0.2.8"]
        .iter()
        .map(|source| {
            let mut stream = common::connect(&server);
            let mut bytes = v1(source);
            bytes.extend_from_slice(b"ping\n");
            send(&mut stream, &bytes);
            assert_eq!(read_line(&mut stream), b"ping");
            stream
        })
        .collect();
    // A second connection for the same client: refused with its one line.
    let mut again = common::connect(&server);
    send(&mut again, &v1("192.0.2.7"));
    assert_eq!(
        read_to_end(&mut again),
        b"error: too many connections from 192.0.2.7\n"
    );
    let stats = common::wait_for_stats(&server, "the refusal", |s| {
        s.total().refused_for(RefusalReason::PerSource) == 1
    });
    assert_eq!(stats.total().headers_refused_for(HeaderRefusal::Denied), 1);
    // Its first connection gone, the client may come back: the count was given back.
    let mut open = open;
    drop(open.remove(0));
    common::wait_for_stats(&server, "the first client's close", |s| {
        s.total().closed_for(CloseReason::PeerClosed) == 1
    });
    let mut back = common::connect(&server);
    let mut bytes = v1("192.0.2.7");
    bytes.extend_from_slice(b"back again\n");
    send(&mut back, &bytes);
    assert_eq!(read_line(&mut back), b"back again");
    drop(open);
}

#[test]
fn malformed_headers_are_closed_and_counted_and_others_are_unaffected() {
    let server = behind_balancer(|_| {});
    let mut bystander = common::connect(&server);
    send(&mut bystander, &v1("192.0.2.9"));
    let mut bad_signature = V2_SIGNATURE.to_vec();
    bad_signature[9] = b'X';
    bad_signature.extend_from_slice(&[0x21, 0x11, 0, 12]);
    let mut oversize = V2_SIGNATURE.to_vec();
    oversize.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    for bytes in [&b"GET / HTTP/1.0\r\n\r\n"[..], &bad_signature, &oversize] {
        let mut stream = common::connect(&server);
        send(&mut stream, bytes);
        assert_eq!(read_to_end(&mut stream), b"", "{bytes:?}");
    }
    let stats = common::wait_for_stats(&server, "three refusals", |s| {
        s.total().headers_refused_for(HeaderRefusal::Malformed) == 3
    });
    assert_eq!(stats.total().proxy_headers_accepted, 1);
    let page = echoloop::server::metrics::exposition(&[("echo", stats)]);
    for line in [
        "echoloop_proxy_headers_accepted_total{service=\"echo\",transport=\"tcp\"} 1",
        "echoloop_proxy_headers_refused_total{service=\"echo\",transport=\"tcp\",reason=\"malformed\"} 3",
    ] {
        assert!(page.lines().any(|l| l == line), "{line} not in\n{page}");
    }
    send(&mut bystander, b"still here\n");
    assert_eq!(read_line(&mut bystander), b"still here");
}

/// A peer that leaves before its header is whole is counted, whether it closes (FIN) or
/// resets (RST): every balancer connection ends up accepted or refused.
#[test]
fn a_peer_that_leaves_midway_through_its_header_is_counted() {
    let server = behind_balancer(|_| {});
    let closes = common::connect(&server);
    send(&mut &closes, b"PROXY TCP4 192.0.2");
    drop(closes);
    let resets = common::connect(&server);
    send(&mut &resets, b"PROXY TCP4 192.0.2");
    socket2::SockRef::from(&resets)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(resets); // an RST, not a FIN
    common::wait_for_stats(&server, "both closed", |s| {
        s.total().connections_open == 0 && s.total().connections_accepted == 2
    });
    let stats = common::wait_for_stats(&server, "two refusals", |s| {
        s.total().headers_refused_for(HeaderRefusal::Malformed) == 2
    })
    .total();
    assert_eq!(
        stats.headers_refused_for(HeaderRefusal::Malformed),
        2,
        "{stats:?}"
    );
    assert_eq!(stats.proxy_headers_accepted, 0);
}

#[test]
fn a_connection_without_a_header_is_closed_at_the_deadline() {
    let server = behind_balancer(|cfg| {
        cfg.sources.proxy_protocol.header_timeout = Duration::from_millis(100);
    });
    let mut silent = common::connect(&server);
    assert_eq!(read_to_end(&mut silent), b"");
    let mut partial = common::connect(&server);
    send(&mut partial, b"PROXY TCP4 192.0.2.7");
    assert_eq!(read_to_end(&mut partial), b"");
    let stats = common::wait_for_stats(&server, "two timeouts", |s| {
        s.total().headers_refused_for(HeaderRefusal::Timeout) == 2
    });
    assert_eq!(stats.total().connections_open, 0);
}

/// Once the header is read the idle timeout rules, even when it is much shorter than what was
/// left of the header's deadline: a client is not kept for an hour by the header's timer. (Read
/// with the tests' patience: a close only at the header deadline fails the read.)
#[test]
fn after_the_header_the_idle_timeout_applies() {
    let server = behind_balancer(|cfg| {
        cfg.sources.proxy_protocol.header_timeout = Duration::from_secs(3600);
        cfg.idle_timeout = Some(Duration::from_millis(200));
    });
    let mut stream = common::connect(&server);
    send(&mut stream, &[&v1("192.0.2.7")[..], b"ping"].concat());
    assert_eq!(read_to_end(&mut stream), b"ping");
    let stats = common::wait_for_stats(&server, "one idle close", |s| {
        s.total().closed_for(echoloop::CloseReason::IdleTimeout) == 1
    });
    assert_eq!(stats.total().headers_refused_for(HeaderRefusal::Timeout), 0);
}

#[test]
fn local_headers_are_served_with_the_socket_address() {
    let server = behind_balancer(|_| {});
    assert!(echoed_after(
        &server,
        &v2(0, "192.0.2.7:4000".parse().unwrap())
    ));
    assert!(echoed_after(&server, b"PROXY UNKNOWN\r\n"));
    drop(server);
    // The socket's address is the balancer's: denying it refuses its health checks ...
    let server = behind_balancer(|cfg| cfg.sources.deny = vec![prefix("127.0.0.1/32")]);
    assert!(!echoed_after(&server, b"PROXY UNKNOWN\r\n"));
    // ... but not the clients it relays.
    assert!(echoed_after(&server, &v1("192.0.2.7")));
    let stats = common::wait_for_stats(&server, "one refusal", |s| {
        s.total().headers_refused_for(HeaderRefusal::Denied) == 1
    });
    assert_eq!(stats.total().proxy_headers_accepted, 1);
}

#[test]
fn a_peer_that_is_not_a_balancer_is_served_as_usual_even_if_it_sends_a_header() {
    let server = common::serve(|cfg| {
        cfg.sources.proxy_protocol.balancers = vec![parse_balancer("127.0.0.2/32").unwrap()];
        cfg.sources.deny = vec![prefix("192.0.2.7/32")];
    });
    let mut stream = common::connect(&server);
    let header = v1("192.0.2.7");
    send(&mut stream, &header);
    assert_eq!(common::read_exactly(&mut stream, header.len()), header);
    let stats = server.stats();
    assert_eq!(stats.total().proxy_headers_accepted, 0);
    assert_eq!(stats.total().connections_refused, 0);
}

#[test]
fn unix_names_every_peer_of_a_unix_listener() {
    let path = std::env::temp_dir().join(format!("echoloop-{}-proxy.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = common::serve(|cfg| {
        cfg.listen.push(Address::Unix(path.clone()));
        cfg.sources.proxy_protocol.balancers = vec![Balancer::Unix];
        cfg.sources.deny = vec![prefix("192.0.2.7/32")];
    });
    let through_unix = |header: &[u8]| {
        let mut stream = UnixStream::connect(&path).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"ping");
        stream.write_all(&bytes).unwrap();
        read_to_end_after_shutdown(stream)
    };
    assert_eq!(through_unix(&v1("192.0.2.8")), b"ping");
    assert_eq!(
        through_unix(&v1("192.0.2.7")),
        b"",
        "denied by its carried address"
    );
    // TCP peers (127.0.0.1) are not balancers here: a header from them is data.
    assert!(echoed_after(&server, b""));
    let stats = server.stats();
    assert_eq!(stats.total().proxy_headers_accepted, 1);
    drop(server);
    let _ = std::fs::remove_file(&path);
}

/// Half-closes `stream` and reads what comes back until EOF.
fn read_to_end_after_shutdown(mut stream: UnixStream) -> Vec<u8> {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    all
}

#[test]
fn the_flag_is_refused_where_no_stream_socket_or_the_threaded_model_would_use_it() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_echoloop"))
            .args(args)
            .output()
            .expect("run echoloop")
    };
    for args in [
        &[
            "serve",
            "-u",
            "127.0.0.1:0",
            "--proxy-protocol",
            "10.0.0.0/8",
        ][..],
        &[
            "serve",
            "-l",
            "127.0.0.1:0",
            "--model",
            "threaded",
            "--proxy-protocol",
            "10.0.0.0/8",
        ],
        &["serve", "-l", "127.0.0.1:0", "--proxy-protocol", "nonsense"],
    ] {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("proxy"), "{stderr}");
    }
}
