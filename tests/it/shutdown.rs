//! Shutdown: stop accepting at once, deliver what is queued, exit 0.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    Daemon, PATIENCE, connect, pseudo_random_bytes, read_exactly, read_to_end, serve,
    wait_for_stats,
};
use echoloop::CloseReason;

/// A client floods 32 MiB without reading (more than the socket buffers and the queue hold, so the
/// server pauses it), then the drain begins: what the server had taken in comes back in full, in
/// order, before the server closes.
#[test]
fn the_drain_delivers_queued_output() {
    let server = serve(|cfg| cfg.queue_limit = 128 * 1024);
    let mut client = connect(&server);
    let payload = pseudo_random_bytes(32 << 20, 3);
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let sender = thread::spawn(move || {
        // The drain stops reading, so this may end early with a reset or broken pipe.
        let _ = writer.write_all(&sent);
        let _ = writer.shutdown(Shutdown::Write);
    });
    wait_for_stats(&server, "output queued and reading paused", |s| {
        s.total().readers_paused >= 1 && s.total().queued_bytes > 0
    });
    server.stop_handle().stop();
    let echoed = read_to_end(&mut client);
    sender.join().unwrap();
    let stats = server.stats();
    assert!(!echoed.is_empty());
    assert!(
        echoed == payload[..echoed.len()],
        "the echo is not a prefix of what was sent"
    );
    assert_eq!(
        echoed.len() as u64,
        stats.total().bytes_sent,
        "bytes the server wrote were lost"
    );
    // Closed (and counted) once its linger ends: the client's own FIN, or the linger deadline.
    wait_for_stats(&server, "the shutdown close", |s| {
        s.closed_for(CloseReason::Shutdown) == 1
    });
    server.stop().unwrap();
}

#[test]
fn sigterm_refuses_new_connections_flushes_and_exits_0() {
    let daemon = Daemon::start(&["serve", "-l", "127.0.0.1:0", "--queue-limit", "65536"], 1);
    let addr = daemon.tcp_addr();
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"before the signal").unwrap();
    assert_eq!(read_exactly(&mut client, 17), b"before the signal");
    let payload = pseudo_random_bytes(1 << 20, 9);
    client.write_all(&payload).unwrap(); // fits in the socket buffers plus the server's queue

    daemon.signal(libc::SIGTERM);
    // A connection attempted after the signal is refused (once the reactor has seen it).
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("unexpected connect error: {e}"),
            Ok(_) => {
                assert!(start.elapsed() < PATIENCE, "still accepting after SIGTERM");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    client.shutdown(Shutdown::Write).unwrap();
    let echoed = read_to_end(&mut client);
    assert!(
        echoed == payload[..echoed.len()],
        "the echo is not a prefix of what was sent"
    );
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stderr.contains("shutting down"), "stderr: {stderr}");
}

#[test]
fn a_client_that_never_reads_cannot_hold_the_exit_past_the_deadline() {
    let daemon = Daemon::start(
        &[
            "serve",
            "-l",
            "127.0.0.1:0",
            "--queue-limit",
            "65536",
            "--shutdown-timeout",
            "1",
        ],
        1,
    );
    let mut stubborn = TcpStream::connect(daemon.tcp_addr()).unwrap();
    stubborn
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = stubborn.write_all(&vec![b'x'; 16 << 20]); // times out once everything is full
    daemon.signal(libc::SIGTERM);
    let (code, stderr) = daemon.wait();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stderr.contains("bytes unsent"), "stderr: {stderr}");
}
