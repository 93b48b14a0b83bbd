//! Idle timeout: connections with no traffic are closed; active ones are not.

use std::io::Write;
use std::thread;
use std::time::Duration;

use crate::common::{connect, read_exactly, read_to_end, serve, wait_for_stats};
use echoloop::{CloseReason, FramingKind};

#[test]
fn idle_clients_are_closed_and_active_ones_survive() {
    let server = serve(|cfg| {
        cfg.idle_timeout = Some(Duration::from_millis(300));
        cfg.framing = Some(FramingKind::Line); // a line protocol says why it closes
    });
    let mut idle = connect(&server);
    let mut active = connect(&server);
    let chatter = thread::spawn(move || {
        // Keeps talking, more often than the timeout, until the idle one has been closed.
        for round in 0..40u32 {
            let line = format!("round {round}\n");
            active.write_all(line.as_bytes()).unwrap();
            assert_eq!(read_exactly(&mut active, line.len()), line.as_bytes());
            thread::sleep(Duration::from_millis(50));
        }
        active
    });
    assert_eq!(read_to_end(&mut idle), b"error: idle timeout\n");
    let mut active = chatter
        .join()
        .expect("the active client was served throughout");
    active.write_all(b"still open\n").unwrap();
    assert_eq!(read_exactly(&mut active, 11), b"still open\n");
    let stats = wait_for_stats(&server, "one idle close", |s| {
        s.closed_for(CloseReason::IdleTimeout) == 1
    });
    assert_eq!(stats.total().connections_open, 1);
}

#[test]
fn raw_echo_closes_idle_clients_without_an_error_line() {
    let server = serve(|cfg| cfg.idle_timeout = Some(Duration::from_millis(200)));
    let mut idle = connect(&server);
    assert_eq!(read_to_end(&mut idle), b"");
    wait_for_stats(&server, "the idle close", |s| {
        s.closed_for(CloseReason::IdleTimeout) == 1
    });
}

#[test]
fn idle_timeout_zero_means_never() {
    let server = serve(|cfg| cfg.idle_timeout = None);
    let mut client = connect(&server);
    thread::sleep(Duration::from_millis(300));
    client.write_all(b"x").unwrap();
    assert_eq!(read_exactly(&mut client, 1), b"x");
}
