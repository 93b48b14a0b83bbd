//! `--metrics`: the page counts what clients did (TCP and Unix apart), passes promtool, bad
//! requests cost nothing, and connections that hold or churn the endpoint's slots cannot keep a
//! real scrape from its answer. The promtool check is `#[ignore = "needs promtool"]` (Debian's
//! prometheus package): `cargo test -- --include-ignored` runs it, on the pages the counting tests
//! read, and it fails if promtool is missing.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::common::{
    self, PATIENCE, TestServer, connect, read_exactly, read_to_end, send, serve, wait_for_stats,
};
use echoloop::server::metrics::MAX_SCRAPES;
use echoloop::{Address, CloseReason, Transport};

fn with_metrics() -> TestServer {
    serve(|cfg| {
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
        cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
    })
}

/// Sends `request` as is and returns the whole answer (the endpoint closes after it).
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request).expect("send the request");
    String::from_utf8(read_to_end(&mut stream)).expect("an HTTP answer is text")
}

fn scrape(server: &TestServer) -> String {
    let answer = http(
        server.metrics_addr().unwrap(),
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let (_head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    body.to_string()
}

/// The value of the sample `series` (name and labels, as written) on the page.
fn sample(page: &str, series: &str) -> u64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{page}"))
        .parse()
        .unwrap()
}

/// `promtool check metrics` on the page (promtool is in Debian's prometheus package).
fn promtool_accepts(page: &str) {
    let mut child = Command::new(common::tool("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Three TCP clients that came and went, one that stays, two UDP round trips: returns the server,
/// the client that stays, and the page then.
fn page_after_tcp_and_udp_clients() -> (TestServer, TcpStream, String) {
    let server = with_metrics();
    for i in 0..3 {
        let mut client = connect(&server);
        let message = vec![b'a' + i; 100];
        send(&mut client, &message);
        assert_eq!(read_exactly(&mut client, 100), message);
    }
    wait_for_stats(&server, "three clients closed", |s| {
        s.closed_for(CloseReason::PeerClosed) == 3
    });
    let mut open = connect(&server);
    send(&mut open, b"still here");
    assert_eq!(read_exactly(&mut open, 10), b"still here");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(PATIENCE)).unwrap();
    for _ in 0..2 {
        udp.send_to(b"ping", server.udp_addrs()[0]).unwrap();
        let mut reply = [0u8; 16];
        let (n, _) = udp.recv_from(&mut reply).unwrap();
        assert_eq!(&reply[..n], b"ping");
    }
    let page = scrape(&server);
    (server, open, page)
}

#[test]
fn a_scrape_counts_what_the_clients_did() {
    let (server, open, page) = page_after_tcp_and_udp_clients();
    let stream = "{service=\"echo\",transport=\"tcp\"}";
    let udp_label = "{service=\"echo\",transport=\"udp\"}";
    assert_eq!(
        sample(&page, &format!("echoloop_connections_open{stream}")),
        1
    );
    assert_eq!(
        sample(
            &page,
            &format!("echoloop_connections_accepted_total{stream}")
        ),
        4
    );
    assert_eq!(
        sample(
            &page,
            "echoloop_connections_closed_total{service=\"echo\",transport=\"tcp\",reason=\"peer-closed\"}"
        ),
        3
    );
    assert_eq!(
        sample(&page, &format!("echoloop_bytes_received_total{stream}")),
        310
    );
    assert_eq!(
        sample(&page, &format!("echoloop_bytes_sent_total{stream}")),
        310
    );
    assert_eq!(
        sample(
            &page,
            &format!("echoloop_datagrams_received_total{udp_label}")
        ),
        2
    );
    assert_eq!(
        sample(&page, &format!("echoloop_datagrams_sent_total{udp_label}")),
        2
    );
    for reason in ["full", "acl", "rate", "per-source"] {
        let series = format!(
            "echoloop_connections_refused_total{{service=\"echo\",transport=\"tcp\",reason=\"{reason}\"}}"
        );
        assert_eq!(sample(&page, &series), 0, "{series}");
    }
    for reason in ["loop", "rate", "acl", "size", "queue"] {
        let series = format!(
            "echoloop_datagrams_dropped_total{{service=\"echo\",transport=\"udp\",reason=\"{reason}\"}}"
        );
        assert_eq!(sample(&page, &series), 0, "{series}");
    }

    // Scrapes are not clients: a second one sees the same counts.
    let again = scrape(&server);
    assert_eq!(
        sample(
            &again,
            &format!("echoloop_connections_accepted_total{stream}")
        ),
        4
    );
    assert_eq!(server.stats().total().connections_accepted, 4);
    drop(open);
}

/// A TCP client that came and went, a Unix client that stays (on a socket file named after
/// `test`): returns the server, the Unix client, the socket's path, and the page then.
fn page_after_a_tcp_and_a_unix_client(test: &str) -> (TestServer, UnixStream, PathBuf, String) {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "echoloop-{}-metrics-{test}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let server = serve(|cfg| {
        cfg.listen.push(Address::Unix(path.clone()));
        cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    // One TCP client that leaves, one Unix client that stays; different sizes tell them apart.
    let mut tcp = connect(&server);
    send(&mut tcp, &[b't'; 100]);
    assert_eq!(read_exactly(&mut tcp, 100), [b't'; 100]);
    drop(tcp);
    let mut unix = UnixStream::connect(&path).expect("connect to the unix socket");
    unix.set_read_timeout(Some(PATIENCE)).unwrap();
    send(&mut unix, &[b'u'; 7]);
    assert_eq!(read_exactly(&mut unix, 7), [b'u'; 7]);
    wait_for_stats(&server, "the TCP client closed", |s| {
        s.closed_for(CloseReason::PeerClosed) == 1
    });
    let page = scrape(&server);
    (server, unix, path, page)
}

#[test]
fn tcp_and_unix_clients_are_counted_apart() {
    let (server, unix, path, page) = page_after_a_tcp_and_a_unix_client("apart");
    let series = |name: &str, transport: &str| {
        format!("{name}{{service=\"echo\",transport=\"{transport}\"}}")
    };
    for (name, tcp, unix) in [
        ("echoloop_connections_open", 0, 1),
        ("echoloop_connections_accepted_total", 1, 1),
        ("echoloop_bytes_received_total", 100, 7),
        ("echoloop_bytes_sent_total", 100, 7),
        ("echoloop_queued_bytes", 0, 0),
        ("echoloop_accept_errors_total", 0, 0),
    ] {
        assert_eq!(sample(&page, &series(name, "tcp")), tcp, "{name} tcp");
        assert_eq!(sample(&page, &series(name, "unix")), unix, "{name} unix");
    }
    let closed = |transport: &str| {
        format!(
            "echoloop_connections_closed_total{{service=\"echo\",transport=\"{transport}\",reason=\"peer-closed\"}}"
        )
    };
    assert_eq!(sample(&page, &closed("tcp")), 1);
    assert_eq!(sample(&page, &closed("unix")), 0);
    assert!(!page.contains("transport=\"stream\""), "{page}");

    // The snapshot keeps both: per transport, and the totals other tests read.
    let stats = server.stats();
    assert_eq!(stats.total().connections_accepted, 2);
    assert_eq!(stats.total().bytes_received, 107);
    assert_eq!(stats.stream(Transport::Tcp).bytes_received, 100);
    assert_eq!(stats.stream(Transport::Unix).bytes_received, 7);
    drop(unix);
    drop(server);
    let _ = std::fs::remove_file(&path);
}

#[test]
#[ignore = "needs promtool"]
fn both_pages_pass_promtool() {
    let (server, open, page) = page_after_tcp_and_udp_clients();
    promtool_accepts(&page);
    drop(open);
    drop(server);
    let (server, unix, path, page) = page_after_a_tcp_and_a_unix_client("promtool");
    promtool_accepts(&page);
    drop(unix);
    drop(server);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn bad_requests_get_400_and_431_and_cost_nothing_else() {
    let server = with_metrics();
    let metrics = server.metrics_addr().unwrap();
    let mut client = connect(&server);
    send(&mut client, b"before");
    assert_eq!(read_exactly(&mut client, 6), b"before");

    let malformed = http(metrics, b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n");
    assert!(
        malformed.starts_with("HTTP/1.1 400 "),
        "malformed: {malformed}"
    );
    let mut oversized = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    oversized.resize(64 * 1024, b'x');
    let oversized = http(metrics, &oversized);
    assert!(
        oversized.starts_with("HTTP/1.1 431 "),
        "oversized: {oversized}"
    );
    let wrong_method = http(metrics, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(wrong_method.starts_with("HTTP/1.1 405 "), "{wrong_method}");
    let wrong_path = http(metrics, b"GET /admin HTTP/1.1\r\n\r\n");
    assert!(wrong_path.starts_with("HTTP/1.1 404 "), "{wrong_path}");
    // A scraper that connects and leaves without a word.
    drop(TcpStream::connect(metrics).unwrap());

    // The client was not disturbed, nothing was counted, and the endpoint still answers.
    send(&mut client, b"after");
    assert_eq!(read_exactly(&mut client, 5), b"after");
    let page = scrape(&server);
    assert_eq!(
        sample(
            &page,
            "echoloop_connections_accepted_total{service=\"echo\",transport=\"tcp\"}"
        ),
        1
    );
    let stats = server.stats();
    assert_eq!(stats.total().connections_accepted, 1);
    assert_eq!(stats.total().bytes_received, 11);
    assert_eq!(stats.total().accept_errors, 0);
}

#[test]
fn workers_are_reported_together() {
    let server = serve(|cfg| {
        cfg.workers = 2;
        cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    for _ in 0..8 {
        let mut client = connect(&server);
        send(&mut client, b"x");
        assert_eq!(read_exactly(&mut client, 1), b"x");
    }
    wait_for_stats(&server, "eight closes", |s| {
        s.closed_for(CloseReason::PeerClosed) == 8
    });
    let page = scrape(&server);
    assert_eq!(
        sample(
            &page,
            "echoloop_connections_accepted_total{service=\"echo\",transport=\"tcp\"}"
        ),
        8
    );
}

#[test]
fn the_daemon_prints_a_metrics_line_and_head_has_no_body() {
    let daemon = common::Daemon::start(
        &["serve", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
        2,
    );
    let addr: SocketAddr = daemon.listening[1]
        .strip_prefix("metrics ")
        .unwrap_or_else(|| panic!("expected a metrics line: {:?}", daemon.listening))
        .parse()
        .unwrap();
    assert_ne!(addr.port(), 0);
    let head = http(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    assert!(head.contains("Connection: close\r\n"));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    assert!(page.contains("# TYPE echoloop_bytes_received_total counter"));
    daemon.signal(libc::SIGTERM);
    let (code, _stderr) = daemon.wait();
    assert_eq!(code, 0);
}

/// Connections that never say a word, held open.
fn idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            stream
        })
        .collect()
}

#[test]
fn a_scrape_is_answered_while_others_hold_and_churn_the_slots() {
    let server = with_metrics();
    let metrics = server.metrics_addr().unwrap();
    // Every slot taken by a connection that says nothing ...
    let holders = idle_connections(metrics, MAX_SCRAPES);
    // ... and two threads opening more as fast as they can, each kept open a while (so every
    // accept finds the slots full) and then dropped.
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut opened = 0u64;
                let mut held = VecDeque::new();
                while !stop.load(Ordering::Relaxed) {
                    held.push_back(TcpStream::connect(metrics).expect("churn connect"));
                    if held.len() > 2 * MAX_SCRAPES {
                        held.pop_front();
                    }
                    opened += 1;
                }
                opened
            })
        })
        .collect();
    // Real scrapes, one after another, while that goes on: each answered one is a whole page,
    // and (nearly) all are answered. A scrape is lost only if more connections than there are
    // slots arrive between its connect and its request reaching the server; on this shared
    // 2-core machine the scraping thread can be descheduled for that long about once in a few
    // hundred scrapes. (The rule before, evicting the oldest, lost 6 of 50 in scripts/attack.sh.)
    let mut answered = 0;
    for _ in 0..50 {
        let answer = http(metrics, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
        if answer.is_empty() {
            continue; // closed before its request arrived
        }
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
        assert!(answer.contains("# TYPE echoloop_connections_open gauge\n"));
        answered += 1;
    }
    assert!(answered >= 48, "only {answered} of 50 scrapes answered");
    stop.store(true, Ordering::Relaxed);
    let opened: u64 = churners.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        opened > MAX_SCRAPES as u64,
        "the churn ran: {opened} connections"
    );
    // The idle holders were the ones to give way: each was closed without a byte.
    for mut holder in holders {
        assert!(read_to_end(&mut holder).is_empty());
    }
    // Scrapes are not clients, and the endpoint still answers once the churn stops.
    assert_eq!(server.stats().total().connections_accepted, 0);
    scrape(&server);
}
