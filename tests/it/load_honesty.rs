//! `echoloop load` never reports a clean run that was not: owed replies are timeouts, no reply
//! means no latency (`n/a`, `null`) and exit 1, `-n` is exact, bad output paths fail before any
//! connection, SIGINT still gives the report (exit 130), and the one-way services are measured.
//! A late reply is a timeout (UDP: lost), never a mismatch, and the replies after it are still
//! matched: mismatches never exceed replies received. Counts and exit codes only: never a time or
//! a rate (the delays below only make replies late).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use echoloop::clients::load::{self, LoadConfig, ReplyKind, Target};
use echoloop::{FramingKind, ProtocolKind, Transport};

use crate::common;
use crate::load::{tcp, tiny_server};

fn echoloop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(args)
        .output()
        .expect("echoloop runs")
}

fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn count(json: &serde_json::Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {json}"))
}

#[test]
fn a_server_that_never_answers_fails_the_run_with_no_latency() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Discard.into());
    let addr = server.addr().to_string();
    let output = echoloop(&[
        "load",
        "--json",
        "-c",
        "2",
        "-d",
        "300ms",
        "--timeout",
        "200ms",
        &addr,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let json = json_of(&output);
    let sent = count(&json, "messages_sent");
    assert!(sent >= 2, "{json}");
    assert_eq!(count(&json, "messages_received"), 0);
    assert_eq!(count(&json, "timeouts"), sent, "every message sent is owed");
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_us"][key].is_null(), "{key} in {json}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no reply arrived"), "{stderr}");
    // And the summary says n/a, never 0.
    let text = echoloop(&[
        "load",
        "-c",
        "1",
        "-d",
        "200ms",
        "--timeout",
        "100ms",
        &addr,
    ]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("p50 n/a"), "{stdout}");
    assert_eq!(text.status.code(), Some(1));
}

#[test]
fn a_server_that_answers_half_the_connections_gives_timeouts() {
    // Echo on the first connection; swallow everything on the second.
    let accepted = Arc::new(AtomicUsize::new(0));
    let (addr, server) = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::clone(&accepted);
        let thread = std::thread::spawn(move || {
            let mut clients = Vec::new();
            for i in 0..2 {
                let (mut stream, _) = listener.accept().unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                clients.push(std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0
                            || (i == 0
                                && std::io::Write::write_all(&mut stream, &buf[..n]).is_err())
                        {
                            break;
                        }
                    }
                }));
            }
            for client in clients {
                let _ = client.join();
            }
        });
        (addr, thread)
    };
    let mut config = LoadConfig::for_tests(tcp(addr));
    config.duration = Some(Duration::from_millis(300));
    config.timeout = Duration::from_millis(200);
    let report = load::run(&config).unwrap();
    server.join().unwrap();
    let text = report.to_text();
    assert!(report.messages_received > 0, "{text}");
    assert_eq!(
        report.timeouts, 1,
        "the silent connection's one message: {text}"
    );
    assert_eq!(
        report.messages_sent,
        report.messages_received + report.timeouts,
        "{text}"
    );
    assert_eq!(report.mismatches, 0, "{text}");
    assert_eq!(report.exit_code(), 1, "{text}");
    assert!(
        report.failure.as_deref().unwrap().contains("1 of"),
        "{text}"
    );
}

#[test]
fn a_server_that_stops_answering_mid_run_gives_timeouts() {
    // Echoes the first 100 messages of 64 bytes, then reads and says nothing.
    let echoed = Arc::new(AtomicUsize::new(0));
    let limit: usize = 100 * 64;
    let counter = Arc::clone(&echoed);
    let (addr, server) = tiny_server(1, move |bytes| {
        let before = counter.fetch_add(bytes.len(), Ordering::SeqCst);
        bytes[..limit.saturating_sub(before).min(bytes.len())].to_vec()
    });
    let mut config = LoadConfig::for_tests(tcp(addr));
    config.connections = 1;
    config.pipeline = 4;
    config.timeout = Duration::from_millis(200);
    config.duration = Some(Duration::from_millis(500));
    let report = load::run(&config).unwrap();
    server.join().unwrap();
    let text = report.to_text();
    assert_eq!(report.messages_received, 100, "{text}");
    assert_eq!(
        report.timeouts, 4,
        "the pipeline's worth still owed: {text}"
    );
    assert_eq!(report.messages_sent, 104, "{text}");
    assert_eq!(report.exit_code(), 1);
    assert!(report.latency_us.at(50.0).is_some());
}

#[test]
fn a_udp_run_fails_only_above_max_loss() {
    // Answers every other datagram.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            n += 1;
            if n.is_multiple_of(2) {
                let _ = socket.send_to(&buf[..len], peer);
            }
        }
    });
    let mut config = LoadConfig::for_tests(Target::Datagram(addr));
    config.connections = 1;
    config.messages = Some(40);
    config.duration = None;
    config.timeout = Duration::from_millis(100);
    let lossy = load::run(&config).unwrap();
    let text = lossy.to_text();
    assert_eq!(lossy.messages_sent, 40, "{text}");
    assert_eq!(
        lossy.messages_sent,
        lossy.messages_received + lossy.lost,
        "{text}"
    );
    assert!(lossy.lost >= 10, "{text}");
    assert_eq!(lossy.timeouts, 0, "UDP loses, it does not time out: {text}");
    assert_eq!(lossy.exit_code(), 1, "{text}");
    assert!(
        lossy.failure.as_deref().unwrap().contains("--max-loss"),
        "{text}"
    );
    config.max_loss_percent = 100.0;
    let tolerated = load::run(&config).unwrap();
    assert_eq!(tolerated.exit_code(), 0, "{}", tolerated.to_text());
    server.join().unwrap();
}

#[test]
fn dash_n_sends_and_receives_exactly_n() {
    let server = common::serve(|_| {});
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.connections = 3;
    config.threads = 2;
    config.pipeline = 4;
    config.messages = Some(1000);
    config.duration = None;
    let report = load::run(&config).unwrap();
    let text = report.to_text();
    assert_eq!(report.messages_sent, 1000, "{text}");
    assert_eq!(report.messages_received, 1000, "{text}");
    assert_eq!(report.timeouts, 0, "{text}");
    assert_eq!(report.exit_code(), 0, "{text}");
    // The server saw exactly those messages: no uncounted ramp-up before the window.
    common::wait_for_stats(&server, "1000 messages of 64 bytes", |s| {
        s.stream(Transport::Tcp).bytes_received >= 64_000
    });
    assert_eq!(server.stats().stream(Transport::Tcp).bytes_received, 64_000);
}

#[test]
fn durations_take_units_in_config_and_report() {
    let server = common::serve(|_| {});
    let output = echoloop(&[
        "load",
        "--json",
        "-c",
        "1",
        "-d",
        "500ms",
        &server.addr().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let json = json_of(&output);
    assert_eq!(json["config"]["duration_secs"], 0.5);
    assert_eq!(json["duration_secs"], 0.5);
    let bad = echoloop(&["load", "-d", "-5s", "127.0.0.1:9"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_payload_file_is_what_the_server_receives() {
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let (addr, server) = tiny_server(1, move |bytes| {
        sink.lock().unwrap().extend_from_slice(bytes);
        bytes.to_vec()
    });
    let dir = std::env::temp_dir().join(format!("echoloop-payload-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lines.txt");
    std::fs::write(&file, "GET /a\nGET /bb\n").unwrap();
    let output = echoloop(&[
        "load",
        "-c",
        "1",
        "-n",
        "3",
        "--framing",
        "line",
        "--payload-file",
        file.to_str().unwrap(),
        &addr.to_string(),
    ]);
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(&*received.lock().unwrap(), b"GET /a\nGET /bb\nGET /a\n");
}

#[test]
fn a_bad_output_path_fails_before_any_connection() {
    let server = common::serve(|_| {});
    let addr = server.addr().to_string();
    for flag in [
        "--histogram",
        "--json-out",
        "--timeline",
        "--plot",
        "--hdr-log",
    ] {
        let output = echoloop(&["load", "-d", "200ms", flag, "/nonexistent/dir/out", &addr]);
        assert_eq!(output.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr}");
        assert!(stderr.contains("/nonexistent/dir/out"), "{flag}: {stderr}");
    }
    assert_eq!(
        server.stats().stream(Transport::Tcp).connections_accepted,
        0
    );
}

#[test]
fn discard_counts_what_the_server_takes() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Discard.into());
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Discard;
    config.messages = Some(500);
    config.duration = None;
    let report = load::run(&config).unwrap();
    let text = report.to_text();
    assert_eq!(report.messages_sent, 500, "{text}");
    assert_eq!(report.messages_received, 0, "{text}");
    assert_eq!(report.timeouts, 0, "no reply is owed by discard: {text}");
    assert_eq!(report.exit_code(), 0, "{text}");
    assert!(report.latency_us.max.is_none());
    common::wait_for_stats(&server, "500 messages", |s| {
        s.stream(Transport::Tcp).bytes_received >= 500 * 64
    });
    assert_eq!(
        server.stats().stream(Transport::Tcp).bytes_received,
        500 * 64
    );
}

#[test]
fn chargen_checks_every_byte() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Chargen.into());
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Chargen;
    config.duration = Some(Duration::from_millis(300));
    let report = load::run(&config).unwrap();
    let text = report.to_text();
    assert!(report.messages_received > 0, "{text}");
    assert_eq!(
        report.counts.received_bytes,
        report.messages_received * 74,
        "{text}"
    );
    assert_eq!(report.mismatches, 0, "{text}");
    assert_eq!(report.exit_code(), 0, "{text}");
    // An echo server is not chargen: every line is wrong, or nothing comes.
    let echo = common::serve(|_| {});
    let mut wrong = LoadConfig::for_tests(tcp(echo.addr()));
    wrong.reply = ReplyKind::Chargen;
    wrong.duration = Some(Duration::from_millis(200));
    assert_eq!(load::run(&wrong).unwrap().exit_code(), 1);
}

#[test]
fn sigint_keeps_the_report() {
    let server = common::serve(|cfg| cfg.framing = Some(FramingKind::Raw));
    let dir = std::env::temp_dir().join(format!("echoloop-sigint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let timeline = dir.join("timeline.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args([
            "load",
            "--json",
            "-c",
            "2",
            "-d",
            "60s",
            "--interval",
            "100ms",
            "--timeline",
        ])
        .arg(&timeline)
        .arg(server.addr().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for traffic (a timeline row), not for time.
    common::wait_until(
        "a timeline row",
        || {
            std::fs::read_to_string(&timeline)
                .unwrap_or_default()
                .lines()
                .count()
        },
        |rows| *rows >= 2,
    );
    // SAFETY: kill(2) on the child we started and still own (not yet waited for).
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        stderr.push(line.unwrap());
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(130), "{stdout} {stderr:?}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("the report, as JSON");
    assert_eq!(json["interrupted"], true);
    assert!(count(&json, "messages_received") > 0, "{json}");
    assert_eq!(
        count(&json, "messages_sent"),
        count(&json, "messages_received") + count(&json, "timeouts")
    );
    assert!(json["duration_secs"].as_f64().unwrap() < 60.0, "{json}");
    assert!(
        stderr.iter().any(|l| l.contains("interrupted")),
        "{stderr:?}"
    );
}

#[test]
fn hold_fails_when_fewer_connections_come_up() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // nothing listens there now
    let mut config = LoadConfig::for_tests(tcp(addr));
    config.hold = true;
    config.duration = Some(Duration::from_millis(100));
    let report = load::run(&config).unwrap();
    assert_eq!(report.connections_up, 0);
    assert_eq!(report.exit_code(), 1);
    assert!(report.failure.unwrap().contains("0 of 2"));
}

/// A UDP echo server that holds back its `late`th reply (counting from 1) for `delay` and
/// answers every other datagram at once. It stops once no datagram came for a second.
fn udp_echo_with_one_late_reply(
    late: u64,
    delay: Duration,
) -> (std::net::SocketAddr, std::thread::JoinHandle<u64>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut received = 0u64;
        let mut held_back = None;
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            received += 1;
            if received == late {
                let (socket, reply) = (socket.try_clone().unwrap(), buf[..len].to_vec());
                held_back = Some(std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let _ = socket.send_to(&reply, peer);
                }));
            } else {
                let _ = socket.send_to(&buf[..len], peer);
            }
        }
        if let Some(sender) = held_back {
            sender.join().unwrap();
        }
        received
    });
    (addr, server)
}

#[test]
fn a_late_udp_reply_is_lost_and_the_replies_after_it_still_match() {
    // The 5th reply comes 600 ms late, past the 200 ms timeout: by then its datagram was given up
    // (a later reply said it was lost). It must not be taken for the reply of the oldest message
    // in flight, which would put every reply after it one behind.
    let (addr, server) = udp_echo_with_one_late_reply(5, Duration::from_millis(600));
    let mut config = LoadConfig::for_tests(Target::Datagram(addr));
    config.connections = 1;
    config.pipeline = 4;
    config.timeout = Duration::from_millis(200);
    config.duration = Some(Duration::from_secs(1));
    let report = load::run(&config).unwrap();
    let datagrams = server.join().unwrap();
    assert!(datagrams >= 5, "the late reply was sent");
    let text = report.to_text();
    assert!(
        report.messages_received > 5,
        "replies after the late one: {text}"
    );
    assert_eq!(report.mismatches, 0, "{text}");
    assert_eq!(
        report.errors, 0,
        "the late reply is no stray datagram: {text}"
    );
    assert_eq!(report.lost, 1, "the late reply's datagram, once: {text}");
    assert_eq!(report.timeouts, 0, "{text}");
    assert_eq!(
        report.messages_sent,
        report.messages_received + report.lost,
        "{text}"
    );
}

#[test]
fn late_wrong_replies_are_timeouts_not_mismatches() {
    // Every line is answered `WRONG` 300 ms later, past the 100 ms timeout: each message is a
    // timeout, and a reply that did not count as received cannot count as a mismatch.
    let (addr, server) = tiny_server(1, |bytes| {
        std::thread::sleep(Duration::from_millis(300));
        b"WRONG\n".repeat(bytes.iter().filter(|&&b| b == b'\n').count())
    });
    let mut config = LoadConfig::for_tests(tcp(addr));
    config.connections = 1;
    config.framing = FramingKind::Line;
    config.timeout = Duration::from_millis(100);
    config.duration = Some(Duration::from_secs(1));
    let report = load::run(&config).unwrap();
    server.join().unwrap();
    let text = report.to_text();
    assert!(report.messages_sent >= 2, "{text}");
    assert_eq!(report.messages_received, 0, "{text}");
    assert_eq!(report.timeouts, report.messages_sent, "{text}");
    assert_eq!(report.mismatches, 0, "mismatches <= received: {text}");

    // The same wrong replies in time are received, and every one is a mismatch.
    let (addr, server) = tiny_server(1, |bytes| {
        b"WRONG\n".repeat(bytes.iter().filter(|&&b| b == b'\n').count())
    });
    config.target = tcp(addr);
    config.duration = Some(Duration::from_millis(300));
    let report = load::run(&config).unwrap();
    server.join().unwrap();
    let text = report.to_text();
    assert!(report.messages_received > 0, "{text}");
    assert_eq!(report.mismatches, report.messages_received, "{text}");
}

#[test]
fn a_raw_reply_wrong_from_its_first_byte_counts_only_when_complete_and_in_time() {
    // Raw framing: each message is answered with half its length of wrong bytes: with one message
    // in flight at a time, none is ever complete. The wrong bytes are remembered, never counted: nothing was received.
    let (addr, server) = tiny_server(1, |bytes| vec![b'X'; bytes.len() / 2]);
    let mut config = LoadConfig::for_tests(tcp(addr));
    config.connections = 1;
    config.timeout = Duration::from_millis(100);
    config.duration = Some(Duration::from_millis(300));
    let report = load::run(&config).unwrap();
    server.join().unwrap();
    let text = report.to_text();
    assert!(report.messages_sent >= 1, "{text}");
    assert_eq!(report.messages_received, 0, "{text}");
    assert_eq!(report.timeouts, report.messages_sent, "{text}");
    assert_eq!(report.mismatches, 0, "mismatches <= received: {text}");

    // Whole wrong replies in time: received, and each one mismatch (not one per wrong piece).
    let (addr, server) = tiny_server(1, |bytes| vec![b'X'; bytes.len()]);
    config.target = tcp(addr);
    let report = load::run(&config).unwrap();
    server.join().unwrap();
    let text = report.to_text();
    assert!(report.messages_received > 0, "{text}");
    assert_eq!(report.mismatches, report.messages_received, "{text}");
    assert!(report.first_mismatch.is_some(), "{text}");
}
