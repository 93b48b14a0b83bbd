//! Backpressure: a client that writes and never reads costs the server bounded memory, and
//! everyone else keeps being served.

use std::io::Write;
use std::thread;

use crate::common::{connect, pseudo_random_bytes, read_exactly, serve, wait_for_stats};

#[test]
fn a_client_that_never_reads_is_paused_while_others_are_served() {
    const QUEUE_LIMIT: usize = 256 * 1024;
    const FLOOD: usize = 64 << 20;
    let server = serve(|cfg| cfg.queue_limit = QUEUE_LIMIT);

    // The flooder writes 64 MiB and reads nothing (yet).
    let mut flooder = connect(&server);
    let mut flood_writer = flooder.try_clone().unwrap();
    let flood = pseudo_random_bytes(FLOOD, 42);
    let flood_sent = flood.clone();
    let writer = thread::spawn(move || {
        flood_writer.write_all(&flood_sent).unwrap();
        flood_writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    wait_for_stats(&server, "the flooder paused", |s| {
        s.total().readers_paused >= 1
    });

    // Meanwhile another client is answered, round trip after round trip.
    let mut other = connect(&server);
    for round in 0..100 {
        let message = pseudo_random_bytes(512, round);
        other.write_all(&message).unwrap();
        assert_eq!(read_exactly(&mut other, message.len()), message);
    }

    // The server held at most the limit plus one read's worth for the flooder.
    let stats = server.stats();
    assert!(
        stats.total().queued_bytes_peak <= (QUEUE_LIMIT + 256 * 1024) as u64,
        "queue peaked at {} bytes",
        stats.total().queued_bytes_peak
    );

    // Once it reads, the flooder gets every byte back, in order: pausing lost nothing.
    let echoed = read_exactly(&mut flooder, FLOOD);
    assert!(echoed == flood, "the flood came back changed");
    writer.join().unwrap();
    let stats = server.stats();
    assert!(stats.total().queued_bytes_peak <= (QUEUE_LIMIT + 256 * 1024) as u64);
}
