//! `serve --model threaded`: one blocking thread per connection, the same protocols and limits.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::thread;

use crate::common::{
    Daemon, PATIENCE, pseudo_random_bytes, read_exactly, read_line, read_to_end, send, wait_until,
};
use echoloop::server::threaded::{RunningThreaded, ThreadedServer};
use echoloop::{CloseReason, FramingKind, ProtocolKind, ServeConfig, StatsSnapshot};

fn serve_threaded(adjust: impl FnOnce(&mut ServeConfig)) -> RunningThreaded {
    let mut config = ServeConfig::for_tests();
    adjust(&mut config);
    ThreadedServer::bind(&config)
        .expect("bind the threaded test server")
        .spawn()
        .expect("start the threaded test server")
}

fn connect(server: &RunningThreaded) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).expect("connect to the threaded server");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// [`crate::common::wait_for_stats`] for the threaded server.
fn wait_for_stats(
    server: &RunningThreaded,
    what: &str,
    check: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    wait_until(what, || server.stats(), check)
}

/// Eight clients at once, each sending 1 MiB of its own bytes while another thread reads: every
/// byte comes back, in order, to the client that sent it; the counters add up exactly although
/// eight threads wrote them.
#[test]
fn echo_is_byte_exact_for_concurrent_clients() {
    let server = serve_threaded(|_| {});
    const CLIENTS: usize = 8;
    const BYTES: usize = 1 << 20;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let mut stream = connect(&server);
            thread::spawn(move || {
                let payload = pseudo_random_bytes(BYTES, i as u64 + 1);
                let mut writer = stream.try_clone().unwrap();
                let sent = payload.clone();
                let sender = thread::spawn(move || {
                    writer.write_all(&sent).unwrap();
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let echoed = read_to_end(&mut stream);
                sender.join().unwrap();
                assert!(echoed == payload, "client {i}: the echo differs");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let total = (CLIENTS * BYTES) as u64;
    let stats = wait_for_stats(&server, "every client closed", |s| {
        s.closed_for(CloseReason::PeerClosed) == CLIENTS as u64
    });
    assert_eq!(stats.total().connections_accepted, CLIENTS as u64);
    assert_eq!(stats.total().connections_open, 0);
    assert_eq!(stats.total().bytes_received, total);
    assert_eq!(stats.total().bytes_sent, total);
    server.stop().unwrap();
}

#[test]
fn timestamp_answers_a_read_with_nothing_added_by_default() {
    let server = serve_threaded(|cfg| cfg.protocol = ProtocolKind::Timestamp.into());
    let mut client = connect(&server);
    send(&mut client, b"hello");
    let reply = read_exactly(&mut client, 27 + 5);
    assert_eq!((reply[0], &reply[25..]), (b'[', &b"] hello"[..]));
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut client).is_empty(), "no newline added");
    server.stop().unwrap();
}

#[test]
fn timestamp_stamps_each_line() {
    let server = serve_threaded(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.framing = Some(FramingKind::Line);
    });
    let mut client = connect(&server);
    send(&mut client, b"hello\r\nsecond line\n");
    for expected in [&b"hello"[..], b"second line"] {
        let reply = read_line(&mut client);
        assert!(reply.len() == 27 + expected.len(), "{reply:?}");
        assert_eq!(reply[0], b'[');
        assert_eq!(&reply[25..27], b"] ");
        assert_eq!(&reply[27..], expected);
    }
    server.stop().unwrap();
}

#[test]
fn a_greeting_comes_first() {
    let server = serve_threaded(|cfg| cfg.greeting = Some(b"hi there".to_vec()));
    let mut client = connect(&server);
    assert_eq!(read_line(&mut client), b"hi there");
    send(&mut client, b"x");
    assert_eq!(read_exactly(&mut client, 1), b"x");
    server.stop().unwrap();
}

#[test]
fn one_over_max_connections_is_refused_with_a_line() {
    let server = serve_threaded(|cfg| cfg.max_connections = 2);
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&server)).collect();
    for client in &mut held {
        send(client, b"ok"); // each is served: its thread exists
        assert_eq!(read_exactly(client, 2), b"ok");
    }
    let mut third = connect(&server);
    assert_eq!(read_line(&mut third), b"error: server full (2 connections)");
    assert!(read_to_end(&mut third).is_empty());
    let stats = wait_for_stats(&server, "the refusal counted", |s| {
        s.total().connections_refused == 1
    });
    assert_eq!(stats.total().connections_open, 2);
    // A place frees up when a client leaves.
    drop(held.pop());
    wait_for_stats(&server, "a client gone", |s| {
        s.total().connections_open == 1
    });
    let mut fourth = connect(&server);
    send(&mut fourth, b"again");
    assert_eq!(read_exactly(&mut fourth, 5), b"again");
    server.stop().unwrap();
}

#[test]
fn an_idle_line_client_is_told_and_closed() {
    let server = serve_threaded(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.framing = Some(FramingKind::Line);
        cfg.idle_timeout = Some(std::time::Duration::from_secs(1));
    });
    let mut client = connect(&server);
    assert_eq!(read_line(&mut client), b"error: idle timeout");
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut client).is_empty());
    wait_for_stats(&server, "the idle close", |s| {
        s.closed_for(CloseReason::IdleTimeout) == 1
    });
    server.stop().unwrap();
}

#[test]
fn sigterm_drains_clients_and_exits_0() {
    let daemon = Daemon::start(&["serve", "--model", "threaded", "-l", "127.0.0.1:0"], 1);
    let mut client = TcpStream::connect(daemon.tcp_addr()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    send(&mut client, b"before");
    assert_eq!(read_exactly(&mut client, 6), b"before");
    daemon.signal(libc::SIGTERM);
    // The server shuts our connection's read side: we get its FIN once it owes us nothing.
    assert!(read_to_end(&mut client).is_empty());
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stderr.contains("shutting down: 1 clients to drain"),
        "{stderr}"
    );
}

#[test]
fn chat_is_refused_with_exit_2_and_one_line() {
    let daemon = Daemon::start(
        &[
            "serve",
            "--model",
            "threaded",
            "-p",
            "chat",
            "-l",
            "127.0.0.1:0",
        ],
        0,
    );
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot serve chat"), "{stderr}");
}

#[test]
fn files_is_refused_one_writer_per_name_needs_the_reactor() {
    let config = ServeConfig {
        protocol: ProtocolKind::Files.into(),
        files: Some(echoloop::protocol::FilesConfig::new(std::env::temp_dir())),
        ..ServeConfig::for_tests()
    };
    let error = ThreadedServer::bind(&config).err().expect("refused");
    assert!(error.to_string().contains("cannot serve files"), "{error}");
}

/// `custom::Idler` asks for a refill from every refill without sending anything: the threaded
/// loop, like the reactor, must stop asking (or its thread would spin, deaf to the client).
#[test]
fn a_refill_that_makes_nothing_does_not_spin_a_thread() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let refills = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&refills);
    let server = serve_threaded(move |cfg| {
        cfg.protocol = echoloop::ProtocolFactory::new(move || crate::custom::Idler {
            refills: std::sync::Arc::clone(&counter),
        })
        .into();
    });
    let mut client = connect(&server);
    for round in 1..=3 {
        send(&mut client, b"ping\n");
        assert_eq!(read_line(&mut client), b"pong");
        wait_until(
            "the refill",
            || refills.load(Ordering::SeqCst),
            |n| *n >= round,
        );
    }
    let calls = refills.load(Ordering::SeqCst);
    assert!(calls < 10, "{calls} calls to on_drained for 3 requests");
}

#[test]
fn udp_is_refused_with_exit_2() {
    let daemon = Daemon::start(&["serve", "--model", "threaded", "-u", "127.0.0.1:0"], 0);
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn unix_sockets_are_served() {
    let path = std::env::temp_dir().join(format!("echoloop-threaded-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let server = serve_threaded(|cfg| {
        cfg.listen = vec![echoloop::Address::Unix(path.clone())];
    });
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    send(&mut client, b"over unix");
    assert_eq!(read_exactly(&mut client, 9), b"over unix");
    drop(client);
    server.stop().unwrap();
    assert!(!path.exists(), "the socket file is removed on stop");
}

/// Chargen is a blocking write loop: it writes as fast as the client reads, and stops between
/// batches when the server stops.
#[test]
fn chargen_writes_while_read_and_stops_on_shutdown() {
    let server = serve_threaded(|cfg| cfg.protocol = ProtocolKind::Chargen.into());
    let mut client = connect(&server);
    let first = read_exactly(&mut client, 74);
    assert!(
        first.starts_with(b" !\"#$%&'()*+,-./0123456789"),
        "{first:?}"
    );
    assert!(first.ends_with(b"\r\n"));
    let reader = thread::spawn(move || read_to_end(&mut client).len());
    wait_for_stats(&server, "more than a batch written", |s| {
        s.total().bytes_sent > 100_000
    });
    let stop = thread::spawn(move || {
        server.stop().unwrap();
    });
    assert!(reader.join().unwrap() > 0);
    stop.join().unwrap();
}
