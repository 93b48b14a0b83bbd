//! Several services in one process, as inetd serves them: `-l PROTOCOL@ADDR` and `-u
//! PROTOCOL@ADDR`, each socket with its own service, one reactor for all; each service's
//! counters apart; flags that no configured service uses refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};

use echoloop::server::config::ServiceAddress;
use echoloop::{ProtocolKind, ServeConfig};

use crate::common::{self, Daemon, PATIENCE, read_line, read_to_end, send};

use crate::common::run_echoloop as echoloop;

/// The address on a daemon's `listening` line number `i` (`tcp 127.0.0.1:40123 echo`).
fn address_of(daemon: &Daemon, i: usize) -> SocketAddr {
    daemon.lines[i].split(' ').nth(1).unwrap().parse().unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// `echo` on the in-process server's plain listener, and `protocol` on a second one.
fn echo_beside(
    protocol: ProtocolKind,
    adjust: impl FnOnce(&mut ServeConfig),
) -> common::TestServer {
    common::serve(|cfg| {
        cfg.listen_services = vec![ServiceAddress::serving(
            protocol,
            "127.0.0.1:0".parse().unwrap(),
        )];
        adjust(cfg);
    })
}

/// The `listening` lines come in command-line order (streams, then UDP), prefixed or not, so
/// a script that reads the first line gets the first `-l`.
#[test]
fn the_listening_lines_follow_the_command_line() {
    let daemon = Daemon::start(
        &[
            "serve",
            "-l",
            "daytime@127.0.0.1:0",
            "-l",
            "127.0.0.1:0",
            "-u",
            "time@127.0.0.1:0",
            "-u",
            "127.0.0.1:0",
        ],
        4,
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
        [
            ("tcp", "daytime"),
            ("tcp", "echo"),
            ("udp", "time"),
            ("udp", "echo")
        ],
        "{:?}",
        daemon.lines
    );
}

#[test]
fn echo_daytime_and_time_are_served_by_one_process() {
    let daemon = Daemon::start(
        &[
            "serve",
            "-l",
            "echo@127.0.0.1:0",
            "-l",
            "daytime@127.0.0.1:0",
            "-u",
            "time@127.0.0.1:0",
        ],
        3,
    );
    let services: Vec<&str> = daemon
        .lines
        .iter()
        .map(|line| line.split(' ').nth(2).expect("a fourth field"))
        .collect();
    assert_eq!(services, ["echo", "daytime", "time"], "{:?}", daemon.lines);
    assert!(
        daemon.lines[2].starts_with("udp 127.0.0.1:"),
        "{:?}",
        daemon.lines
    );

    let mut echo = connect(address_of(&daemon, 0));
    send(&mut echo, b"ping");
    assert_eq!(common::read_exactly(&mut echo, 4), b"ping");

    let mut daytime = connect(address_of(&daemon, 1));
    let line = read_to_end(&mut daytime);
    assert!(line.ends_with(b"\r\n"), "{line:?}");
    assert_eq!(
        line.len(),
        26,
        "one ctime line: {:?}",
        String::from_utf8_lossy(&line)
    );

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"", address_of(&daemon, 2)).unwrap();
    let mut reply = [0u8; 16];
    let (n, _) = client.recv_from(&mut reply).unwrap();
    assert_eq!(n, 4, "RFC 868: four bytes");
    // Seconds since 1900: after 2020-01-01 (3786825600), whatever the clock says today.
    let seconds = u32::from_be_bytes(reply[..4].try_into().unwrap());
    assert!(seconds > 3_786_825_600, "{seconds}");
}

#[test]
fn a_chat_line_is_not_seen_by_an_echo_client() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Chat.into();
        cfg.listen_services = vec![ServiceAddress::serving(
            ProtocolKind::Echo,
            "127.0.0.1:0".parse().unwrap(),
        )];
    });
    let [chat_addr, echo_addr] = server.tcp_addrs() else {
        panic!("two listeners: {:?}", server.tcp_addrs());
    };
    let mut echo = connect(*echo_addr);
    send(&mut echo, b"first");
    assert_eq!(common::read_exactly(&mut echo, 5), b"first");
    let mut a = connect(*chat_addr);
    let a_name = String::from_utf8(read_line(&mut a)).unwrap();
    assert!(a_name.starts_with("* you are "), "{a_name}");
    let mut b = connect(*chat_addr);
    let b_name = String::from_utf8(read_line(&mut b)).unwrap();
    let b_name = b_name.strip_prefix("* you are ").unwrap();
    assert_eq!(read_line(&mut a), format!("* {b_name} joined").as_bytes());
    send(&mut a, b"hello room\n");
    let seen = String::from_utf8(read_line(&mut b)).unwrap();
    assert!(seen.ends_with("] hello room"), "{seen}");
    // The chat line has been delivered: had it gone to the echo client too, it would be queued
    // before the answer to this.
    send(&mut echo, b"second");
    assert_eq!(common::read_exactly(&mut echo, 6), b"second");
    drop(a);
    drop(b);
    drop(echo);
    common::wait_for_stats(&server, "everyone gone", |s| {
        s.total().connections_open == 0
    });
}

/// `GET /metrics` on `addr`; the body.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (_head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    body.to_string()
}

/// The value of `series` on the page.
fn sample(page: &str, series: &str) -> u64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{page}"))
        .parse()
        .unwrap()
}

#[test]
fn each_service_counts_its_own_on_the_metrics_page() {
    let server = echo_beside(ProtocolKind::Daytime, |cfg| {
        cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    let [echo_addr, daytime_addr] = server.tcp_addrs() else {
        panic!("two listeners: {:?}", server.tcp_addrs());
    };
    for _ in 0..2 {
        let mut echo = connect(*echo_addr);
        send(&mut echo, b"12345");
        assert_eq!(common::read_exactly(&mut echo, 5), b"12345");
    }
    let mut daytime = connect(*daytime_addr);
    assert_eq!(read_to_end(&mut daytime).len(), 26);
    let page = scrape(server.metrics_addr().unwrap());
    let accepted = |service: &str| {
        sample(
            &page,
            &format!(
                "echoloop_connections_accepted_total{{service=\"{service}\",transport=\"tcp\"}}"
            ),
        )
    };
    let bytes = |name: &str, service: &str| {
        sample(
            &page,
            &format!("echoloop_{name}_total{{service=\"{service}\",transport=\"tcp\"}}"),
        )
    };
    assert_eq!(accepted("echo"), 2);
    assert_eq!(accepted("daytime"), 1);
    assert_eq!(bytes("bytes_received", "echo"), 10);
    assert_eq!(bytes("bytes_sent", "echo"), 10);
    assert_eq!(bytes("bytes_received", "daytime"), 0);
    assert_eq!(bytes("bytes_sent", "daytime"), 26);
    // The memory families are the reactor's: one sample, no service.
    assert!(
        page.contains("\necholoop_memory_episodes_total 0\n"),
        "{page}"
    );
}

#[test]
fn a_flag_no_configured_service_uses_is_a_usage_error_naming_it() {
    for (args, flag) in [
        (&["serve", "--dir", "/tmp"][..], "--dir"),
        (&["serve", "--dir-quota", "1G"][..], "--dir-quota"),
        (&["serve", "--max-file-bytes", "1M"][..], "--max-file-bytes"),
        (&["serve", "--udp-rate-limit", "10"][..], "--udp-rate-limit"),
        (&["serve", "--udp-rcvbuf", "1M"][..], "--udp-rcvbuf"),
        (
            &["serve", "-l", "time@127.0.0.1:0", "--framing", "line"][..],
            "--framing",
        ),
        (
            &["serve", "-p", "daytime", "--framing", "line"][..],
            "--framing",
        ),
        (&["serve", "--chat-rate", "5"][..], "--chat-rate"),
        (
            &["serve", "-u", "127.0.0.1:0", "--greeting", "hi"][..],
            "--greeting",
        ),
        (
            &[
                "serve",
                "-l",
                "files@127.0.0.1:0",
                "--dir",
                "/tmp",
                "--framing",
                "line",
            ][..],
            "framing",
        ),
    ] {
        let (code, stdout, stderr) = echoloop(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: nothing was bound: {stdout}");
    }
}

#[test]
fn files_beside_echo_uses_its_flags_and_framing_goes_to_echo() {
    let dir = std::env::temp_dir().join(format!("echoloop-inetd-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello"), b"hi").unwrap();
    let daemon = Daemon::start(
        &[
            "serve",
            "-l",
            "files@127.0.0.1:0",
            "-l",
            "echo@127.0.0.1:0",
            "--dir",
            dir.to_str().unwrap(),
            "--dir-quota",
            "1M",
            "--framing",
            "line",
        ],
        2,
    );
    assert!(daemon.lines[0].ends_with(" files"), "{:?}", daemon.lines);
    let mut files = connect(address_of(&daemon, 0));
    send(&mut files, b"GET hello\n");
    let head = String::from_utf8(read_line(&mut files)).unwrap();
    assert!(head.starts_with("OK 2 "), "{head}");
    assert_eq!(common::read_exactly(&mut files, 2), b"hi");
    let mut echo = connect(address_of(&daemon, 1));
    send(&mut echo, b"one line\n");
    assert_eq!(
        read_line(&mut echo),
        b"one line",
        "--framing line reached echo"
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_prefix_is_a_usage_error_listing_the_protocols() {
    let (code, stdout, stderr) = echoloop(&["serve", "-l", "nosuch@127.0.0.1:0"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("'nosuch'"), "{stderr}");
    assert!(stderr.contains("echo, timestamp, daytime"), "{stderr}");
    assert!(stdout.is_empty());
}

#[test]
fn the_threaded_model_refuses_several_services() {
    let (code, _, stderr) = echoloop(&[
        "serve",
        "--model",
        "threaded",
        "-l",
        "127.0.0.1:0",
        "-l",
        "daytime@127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--model threaded serves one service"),
        "{stderr}"
    );
}
