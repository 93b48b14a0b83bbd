//! The limits count ciphertext and TLS buffers: a TLS client that never reads is paused at
//! `--queue-limit`, `--max-memory` holds with many of them, and a handshake in progress is
//! counted, all by the server's own accounting.

use std::io::Write;
use std::net::TcpStream;
use std::thread;

use echoloop::server::stats::{RefusalReason, TlsFailure};

use super::client::TlsClient;
use super::{any_version, client_hello, failed, handshakes, tls_server};
use crate::common::{self, PATIENCE, pseudo_random_bytes, read_to_end, wait_for_stats};

/// The flooder's echo piles up as ciphertext the server cannot send: it is paused at the queue
/// limit by the server's own accounting, like a plain client, and loses nothing.
#[test]
fn a_tls_client_that_never_reads_is_paused_while_others_are_served() {
    const QUEUE_LIMIT: usize = 256 * 1024;
    const FLOOD: usize = 16 << 20;
    let server = tls_server(|cfg| {
        cfg.queue_limit = QUEUE_LIMIT;
        cfg.max_memory = 64 << 20;
    });
    let mut flooder = TlsClient::connect(server.addr(), any_version());
    flooder.handshake().expect("the handshake");
    // All of the flood encrypted beforehand: a thread writes the ciphertext, this one reads.
    flooder.conn.set_buffer_limit(None);
    let flood = pseudo_random_bytes(FLOOD, 42);
    flooder.conn.writer().write_all(&flood).unwrap();
    let ciphertext = flooder.take_ciphertext();
    let mut flood_writer = flooder.sock.try_clone().unwrap();
    let writer = thread::spawn(move || {
        flood_writer.set_nonblocking(false).unwrap();
        flood_writer.write_all(&ciphertext).unwrap();
    });
    wait_for_stats(&server, "the flooder paused", |s| {
        s.total().readers_paused >= 1
    });

    let mut other = TlsClient::connect(server.addr(), any_version());
    for round in 0..50 {
        let message = pseudo_random_bytes(512, round);
        assert_eq!(other.echo(&message).unwrap(), message);
    }
    let stats = server.stats();
    let slack = 256 * 1024;
    assert!(
        stats.total().queued_bytes_peak <= (QUEUE_LIMIT + slack) as u64,
        "queue peaked at {} bytes",
        stats.total().queued_bytes_peak
    );
    assert!(
        stats.memory_peak <= (QUEUE_LIMIT + 2 * slack) as u64,
        "memory peaked at {} bytes",
        stats.memory_peak
    );

    let echoed = flooder.receive(FLOOD).expect("the flood's echo");
    assert!(echoed == flood, "the flood came back changed");
    writer.join().unwrap();
    let stats = server.stats();
    assert!(stats.total().queued_bytes_peak <= (QUEUE_LIMIT + slack) as u64);
    assert!(stats.memory_peak <= (QUEUE_LIMIT + 2 * slack) as u64);
}

/// `--max-memory` holds with forty TLS clients that send and do not read: by the reactor's own
/// accounting (queues of ciphertext, held plaintext, the sessions), give or take what each
/// client still being read adds before its next check, as for plain clients (`bounded.rs`).
#[test]
fn the_memory_cap_holds_with_many_tls_clients_that_do_not_read() {
    const CLIENTS: usize = 40;
    const EACH: usize = 1 << 20; // 40 MiB in all, were nobody held back
    const CAP: usize = 8 << 20;
    let server = tls_server(|cfg| {
        cfg.max_memory = CAP;
        cfg.queue_limit = 4 << 20; // so that only the cap holds them back
        cfg.sndbuf = Some(4096);
    });
    let mut clients: Vec<TlsClient> = (0..CLIENTS)
        .map(|_| {
            let mut client = TlsClient::connect(server.addr(), any_version());
            client.handshake().expect("the handshake");
            client
        })
        .collect();
    wait_for_stats(&server, "every handshake done", |s| {
        handshakes(s) == CLIENTS as u64
    });
    let mut payloads = Vec::new();
    let mut writers = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        // Encrypted beforehand; a thread writes the ciphertext, this one reads later.
        let payload = pseudo_random_bytes(EACH, i as u64);
        client.conn.set_buffer_limit(None);
        client.conn.writer().write_all(&payload).unwrap();
        let ciphertext = client.take_ciphertext();
        let mut writer = client.sock.try_clone().unwrap();
        writers.push(thread::spawn(move || {
            writer.set_nonblocking(false).unwrap();
            writer.write_all(&ciphertext).unwrap();
        }));
        payloads.push(payload);
    }
    wait_for_stats(&server, "an episode over the cap", |s| {
        s.memory_episodes >= 1
    });

    // During the episode a TLS newcomer is turned away without a word.
    let mut newcomer = common::connect(&server);
    assert_eq!(read_to_end(&mut newcomer), b"");
    wait_for_stats(&server, "the newcomer refused", |s| {
        s.total().refused_for(RefusalReason::Busy) >= 1
    });

    for (i, (client, payload)) in clients.iter_mut().zip(&payloads).enumerate() {
        let echoed = client.receive(EACH).expect("the echo");
        assert!(echoed == *payload, "client {i}'s echo changed");
    }
    for writer in writers {
        writer.join().unwrap();
    }
    // Plain clients' slack (one read and its echo, 80 KiB), and a session's own share: its
    // state (counted as 4 KiB) and an unfinished record (up to 18 KiB).
    let peak = server.stats().memory_peak as usize;
    let bound = CAP + CLIENTS * (80 + 22) * 1024;
    assert!(
        peak <= bound,
        "memory peaked at {peak} bytes, bound {bound}"
    );
}

/// What a handshake in progress holds is counted: clients that sent half a ClientHello each
/// add at least that half to the reactor's memory, and give it back when they go.
#[test]
fn handshakes_in_progress_count_toward_max_memory() {
    const CLIENTS: usize = 50;
    // Longer than the wait: the halves must still be held when they are looked at.
    let server = tls_server(|cfg| cfg.tls.handshake_timeout = 3 * PATIENCE);
    let mut half_hello = client_hello();
    half_hello.truncate(half_hello.len() / 2);
    let before = server.stats().memory_bytes;
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut client = common::connect(&server);
            common::send(&mut client, &half_hello);
            client
        })
        .collect();
    wait_for_stats(&server, "every half ClientHello read", |s| {
        s.total().bytes_received >= (CLIENTS * half_hello.len()) as u64
    });
    wait_for_stats(&server, "the halves counted", |s| {
        s.memory_bytes >= before + (CLIENTS * half_hello.len()) as u64
    });
    drop(clients);
    // Each is counted when its FIN is read, and its memory given back when it is closed, at
    // the end of that turn: wait for both.
    let stats = wait_for_stats(&server, "every client gone, its memory given back", |s| {
        s.total().connections_open == 0 && s.memory_bytes == before
    });
    assert_eq!(failed(&stats, TlsFailure::Closed), CLIENTS as u64);
}
