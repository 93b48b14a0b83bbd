//! `echoloop load` against in-process servers: correct servers give zero mismatches in every
//! framing and transport, a corrupting server is caught, a stalling server shows up in the
//! corrected open-loop latency only, failures are counted. Never asserts throughput.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use echoloop::clients::load::{self, LoadConfig, LoadReport, Payloads, ReplyKind, Target};
use echoloop::{Address, FramingKind};

use crate::common;

pub fn tcp(addr: SocketAddr) -> Target {
    Target::Stream(Address::Tcp(addr))
}

fn run(config: &LoadConfig) -> LoadReport {
    load::run(config).expect("the load run starts")
}

fn assert_clean(report: &LoadReport) {
    assert_eq!(report.mismatches, 0, "{}", report.to_text());
    assert_eq!(report.errors, 0, "{}", report.to_text());
    assert!(report.messages_received > 0, "{}", report.to_text());
    assert_eq!(report.connections_failed, 0, "{}", report.to_text());
    assert_eq!(report.exit_code(), 0);
}

#[test]
fn closed_loop_echo_has_no_mismatches_in_every_framing() {
    for framing in [FramingKind::Raw, FramingKind::Line, FramingKind::Length] {
        let server = common::serve(|cfg| cfg.framing = Some(framing));
        let mut config = LoadConfig::for_tests(tcp(server.addr()));
        config.framing = framing;
        config.connections = 4;
        config.threads = 2;
        config.pipeline = 4;
        config.payloads = Payloads::Generated { size: 100 };
        let report = run(&config);
        assert_clean(&report);
        assert_eq!(report.connections_ok, 4);
    }
}

#[test]
fn raw_echo_checks_a_stream_cut_anywhere() {
    // Big payloads and a deep pipeline: replies come back cut differently than they were sent.
    let server = common::serve(|_| {});
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.payloads = Payloads::Generated { size: 10_000 };
    config.pipeline = 16;
    assert_clean(&run(&config));
}

/// A one-shot std::net server: accepts `connections` clients, each on its own thread, and answers
/// every read with `answer(read bytes)`; an optional lock is held around each answer.
pub fn tiny_server(
    connections: usize,
    answer: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    let thread = std::thread::spawn(move || {
        let mut clients = Vec::new();
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().unwrap();
            let answer = Arc::clone(&answer);
            clients.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&answer(&buf[..n])).is_err() {
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
}

#[test]
fn timestamp_replies_are_checked() {
    // The timestamp protocol is not in this branch yet: a tutorial-style server, line by line.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        for line in BufReader::new(stream).split(b'\n') {
            let Ok(line) = line else { break };
            let mut reply = b"[Wed Nov  4 09:05:01 2026] ".to_vec();
            reply.extend_from_slice(&line);
            reply.push(b'\n');
            if writer.write_all(&reply).is_err() {
                break;
            }
        }
    });
    let mut config = LoadConfig::for_tests(tcp(addr));
    config.connections = 1;
    config.reply = ReplyKind::Timestamp;
    config.framing = FramingKind::Line;
    config.pipeline = 4;
    assert_clean(&run(&config));
    server.join().unwrap();
}

#[test]
fn a_timestamp_check_catches_a_plain_echo() {
    let server = common::serve(|cfg| cfg.framing = Some(FramingKind::Line));
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Timestamp;
    config.framing = FramingKind::Line;
    let report = run(&config);
    assert!(report.mismatches > 0);
    assert!(
        report
            .first_mismatch
            .as_deref()
            .unwrap()
            .contains("[<ctime>]")
    );
}

/// A timestamp server as `serve -p timestamp` with `framing` (`None`: its default).
fn timestamp_server(framing: Option<FramingKind>) -> common::TestServer {
    common::serve(|cfg| {
        cfg.protocol = echoloop::ProtocolKind::Timestamp.into();
        cfg.framing = framing;
    })
}

/// Every message sent was answered and checked, and none was wrong.
fn assert_all_answered(report: &LoadReport) {
    assert_clean(report);
    assert_eq!(report.timeouts, 0, "{}", report.to_text());
    assert_eq!(
        report.messages_received,
        report.messages_sent,
        "{}",
        report.to_text()
    );
}

#[test]
fn raw_timestamp_against_the_default_server_checks_every_reply() {
    let server = timestamp_server(None);
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Timestamp;
    assert_eq!(config.framing, FramingKind::Raw);
    config.connections = 4;
    assert_all_answered(&run(&config));
}

#[test]
fn raw_timestamp_follows_a_reply_the_server_stamped_in_pieces() {
    // 100 KB is more than one server read (32 KiB) and than --max-frame: several stamps a reply.
    let server = timestamp_server(None);
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Timestamp;
    config.payloads = Payloads::Generated { size: 100_000 };
    assert_all_answered(&run(&config));
}

#[test]
fn raw_timestamp_keeps_one_in_flight_whatever_the_pipeline_says() {
    let server = timestamp_server(None);
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Timestamp;
    config.pipeline = 8; // the library lowers it to 1; the command line refuses it
    assert_eq!(config.in_flight_limit(), 1);
    let report = run(&config);
    assert_all_answered(&report);
    assert!(
        report.to_text().contains("pipeline 1,"),
        "{}",
        report.to_text()
    );
}

#[test]
fn raw_timestamp_payloads_are_bytes() {
    let server = timestamp_server(None);
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Timestamp;
    config.payloads = Payloads::Given(Arc::new(vec![
        b"\xff\xfe\x00 caf\xc3\xa9 \xc3".to_vec(),
        b"\x80\n\r\x01".to_vec(),
    ]));
    assert_all_answered(&run(&config));
}

#[test]
fn line_timestamp_pipelines_against_a_line_server() {
    let server = timestamp_server(Some(FramingKind::Line));
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Timestamp;
    config.framing = FramingKind::Line;
    config.pipeline = 4;
    assert_eq!(config.in_flight_limit(), 4);
    assert_all_answered(&run(&config));
}

#[test]
fn raw_timestamp_counts_a_plain_echo_as_wrong_replies() {
    let server = common::serve(|_| {}); // -p echo
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Timestamp;
    let report = run(&config);
    let text = report.to_text();
    assert!(report.messages_received > 0, "{text}");
    assert_eq!(report.mismatches, report.messages_received, "{text}");
    assert!(text.contains("[<ctime>]"), "{text}");
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn raw_timestamp_against_a_line_server_times_out_instead_of_hanging() {
    // The server waits for a newline that raw framing never sends: no reply, ever.
    let server = timestamp_server(Some(FramingKind::Line));
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.reply = ReplyKind::Timestamp;
    config.timeout = Duration::from_millis(300);
    let report = run(&config);
    let text = report.to_text();
    assert_eq!(report.messages_received, 0, "{text}");
    assert_eq!(report.timeouts, report.messages_sent, "{text}");
    assert_eq!(report.exit_code(), 1);
    let why = report.failure.as_deref().unwrap_or_default();
    assert!(why.contains("--framing line here too"), "{why}");
}

#[test]
fn the_binary_runs_raw_timestamp_and_refuses_to_pipeline_it() {
    let daemon = common::Daemon::start(&["serve", "-p", "timestamp", "-l", "127.0.0.1:0"], 1);
    let addr = daemon.tcp_addr().to_string();
    let load = |extra: &[&str]| {
        let mut args = vec!["load", "--protocol", "timestamp", "-c", "2", "-d", "0.3"];
        args.extend_from_slice(extra);
        args.push(&addr);
        Command::new(env!("CARGO_BIN_EXE_echoloop"))
            .args(&args)
            .output()
            .unwrap()
    };
    let output = load(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("timestamp (raw), pipeline 1"), "{stdout}");
    assert!(stdout.contains("mismatches:  0"), "{stdout}");
    let refused = load(&["--pipeline", "4"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--pipeline 4"), "{stderr}");
    assert!(stderr.contains("--framing line"), "{stderr}");
}

fn flip_first_byte(bytes: &[u8]) -> Vec<u8> {
    let mut reply = bytes.to_vec();
    reply[0] ^= 0x20;
    reply
}

#[test]
fn a_corrupting_server_makes_mismatches() {
    let (addr, server) = tiny_server(1, flip_first_byte);
    let mut config = LoadConfig::for_tests(tcp(addr));
    config.connections = 1;
    let report = run(&config);
    assert!(report.mismatches > 0, "{}", report.to_text());
    assert!(
        report.mismatches <= report.messages_received,
        "{}",
        report.to_text()
    );
    assert_eq!(report.exit_code(), 1);
    assert!(report.to_text().contains("mismatches:  "));
    server.join().unwrap();
}

#[test]
fn the_binary_exits_1_and_says_so_on_mismatches() {
    let (addr, server) = tiny_server(1, flip_first_byte);
    let output = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args([
            "load",
            "-c",
            "1",
            "-d",
            "0.3",
            "--threads",
            "1",
            &addr.to_string(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("(first: connection 0 message 0"),
        "{stdout}"
    );
    server.join().unwrap();
}

#[test]
fn open_loop_sees_a_stall_that_closed_loop_measurement_hides() {
    // Echo, but 300 ms after the first message every connection stalls for 200 ms, once.
    let started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stalled = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(Mutex::new(()));
    let (addr, server) = tiny_server(2, move |bytes| {
        let first = *started.lock().unwrap().get_or_insert_with(Instant::now);
        let _held = gate.lock().unwrap(); // everyone waits while one sleeps
        if first.elapsed() > Duration::from_millis(300) && !stalled.swap(true, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
        bytes.to_vec()
    });
    let mut config = LoadConfig::for_tests(tcp(addr));
    config.connections = 2;
    config.duration = Some(Duration::from_secs(1));
    config.rate = Some(1000.0);
    let report = run(&config);
    server.join().unwrap();
    let corrected = &report.latency_us;
    let uncorrected = report
        .latency_uncorrected_us
        .as_ref()
        .expect("open loop reports both");
    let text = report.to_text();
    assert_eq!(report.mismatches, 0, "{text}");
    let p99 = corrected.at(99.0).unwrap();
    assert!(corrected.max.unwrap() >= 150_000.0, "{text}");
    assert!(p99 >= 50_000.0, "{text}");
    assert!(uncorrected.at(99.0).unwrap() * 3.0 < p99, "{text}");
}

#[test]
fn json_has_every_field() {
    let server = common::serve(|_| {});
    let output = Command::new(env!("CARGO_BIN_EXE_echoloop"))
        .args(["load", "--json", "-c", "2", "-d", "0.3", "--rate", "200"])
        .arg(server.addr().to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    for key in [
        "messages_sent",
        "messages_received",
        "msgs_per_sec",
        "mib_per_sec",
        "mismatches",
        "connections_ok",
        "connections_failed",
        "connections_failed_by_reason",
        "errors",
        "latency_us",
        "latency_uncorrected_us",
        "timeouts",
        "lost",
        "interrupted",
        "failure",
        "config",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_us"][key].is_number(), "latency_us.{key}");
        assert!(json["latency_uncorrected_us"][key].is_number());
    }
    for key in ["refused", "timed_out", "emfile", "eaddrnotavail"] {
        assert!(
            json["connections_failed_by_reason"][key].is_number(),
            "{key}"
        );
    }
    assert_eq!(json["config"]["connections"], 2);
    assert_eq!(json["connections_ok"], 2);
}

#[test]
fn refused_connections_are_counted() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // dropped: nothing listens there now
    let mut config = LoadConfig::for_tests(tcp(addr));
    config.connections = 3;
    let report = run(&config);
    assert_eq!(report.connections_ok, 0);
    assert_eq!(report.connections_failed, 3);
    assert_eq!(report.connections_failed_by_reason.refused, 3);
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn udp_datagrams_are_checked() {
    let server = common::serve(|cfg| cfg.udp = vec!["127.0.0.1:0".parse().unwrap()]);
    let mut config = LoadConfig::for_tests(Target::Datagram(server.udp_addrs()[0]));
    config.connections = 3;
    config.pipeline = 2;
    assert_clean(&run(&config));
}

#[test]
fn unix_sockets_work() {
    let dir = std::env::temp_dir().join(format!("echoloop-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let _ = std::fs::remove_file(&path);
    let server = common::serve(|cfg| cfg.listen = vec![Address::Unix(path.clone())]);
    let mut config = LoadConfig::for_tests(Target::Stream(Address::Unix(path.clone())));
    config.connections = 3;
    config.framing = FramingKind::Raw;
    assert_clean(&run(&config));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hold_reports_the_connections_up() {
    let server = common::serve(|_| {});
    let mut config = LoadConfig::for_tests(tcp(server.addr()));
    config.connections = 40;
    config.threads = 2;
    config.hold = true;
    config.duration = Some(Duration::from_millis(300));
    let report = run(&config);
    assert_eq!(report.connections_up, 40, "{}", report.to_text());
    assert_eq!(report.messages_sent, 0);
    assert_eq!(report.exit_code(), 0);
}
