//! Bounded work per event and bounded memory in total: a read full of requests is answered frame
//! by frame while the queue has room, and the reactor's buffers stay under `--max-memory`
//! (by its own accounting, give or take one read per client) however many clients stop reading.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::SystemTime;

use echoloop::{ClientId, Frame, FramingKind, Protocol, ProtocolFactory, Replies};

use crate::common::{self, PATIENCE, pseudo_random_bytes, read_exactly, wait_for_stats};

/// Bytes of each answer of [`Big`].
const REPLY_BYTES: usize = 4096;

/// Answers every line with [`REPLY_BYTES`] bytes: a request that asks for far more than it costs
/// (files' `LIST`, chat's `/who`).
struct Big;

impl Protocol for Big {
    type Session = ();
    const NAME: &'static str = "big";
    const FRAMING: FramingKind = FramingKind::Line;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, _: &mut Replies) {}

    fn on_frame(&mut self, _: &mut (), _: Frame<'_>, _: SystemTime, out: &mut Replies) {
        out.send_raw(&[b'x'; REPLY_BYTES - 1]);
        out.send_raw(b"\n");
    }
}

/// A client whose socket takes little from the kernel (a small receive buffer), so that what it
/// does not read piles up in the server, where it is counted.
fn stingy_client(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

#[test]
fn a_read_full_of_big_requests_is_answered_only_while_the_queue_has_room() {
    const QUEUE_LIMIT: usize = 256 * 1024;
    const REQUESTS: usize = 2048; // 8 KiB of requests ask for 8 MiB of answers
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolFactory::new(|| Big).into();
        cfg.queue_limit = QUEUE_LIMIT;
        cfg.sndbuf = Some(4096);
    });
    let mut flooder = stingy_client(server.addr());
    flooder.write_all(&b"give\n".repeat(REQUESTS)).unwrap();
    wait_for_stats(&server, "the flooder paused", |s| {
        s.total().readers_paused >= 1
    });

    // Another client is served meanwhile.
    let mut other = common::connect(&server);
    for _ in 0..20 {
        other.write_all(b"one\n").unwrap();
        assert_eq!(read_exactly(&mut other, REPLY_BYTES).len(), REPLY_BYTES);
    }

    // By the server's own accounting: the limit, one answer over it, and the input held back.
    let peak = server.stats().memory_peak as usize;
    let bound = QUEUE_LIMIT + REPLY_BYTES + 32 * 1024 + 8 * 1024;
    assert!(
        peak <= bound,
        "memory peaked at {peak} bytes, bound {bound}"
    );

    // Nothing was lost: every request is answered, in full, once the flooder reads.
    let answers = read_exactly(&mut flooder, REQUESTS * REPLY_BYTES);
    assert_eq!(answers.iter().filter(|b| **b == b'\n').count(), REQUESTS);
}

#[test]
fn the_memory_cap_holds_with_many_clients_that_do_not_read() {
    const CLIENTS: usize = 40;
    const EACH: usize = 2 << 20; // 80 MiB in all, were nobody held back
    const CAP: usize = 8 << 20;
    let server = common::serve(|cfg| {
        cfg.max_memory = CAP;
        cfg.queue_limit = 4 << 20; // so that only the cap holds them back
        cfg.sndbuf = Some(4096);
    });
    // Everyone connects first: once the episode begins, newcomers are turned away.
    let streams: Vec<TcpStream> = (0..CLIENTS).map(|_| stingy_client(server.addr())).collect();
    wait_for_stats(&server, "every client accepted", |s| {
        s.total().connections_open == CLIENTS as u64
    });
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let mut writer = stream.try_clone().unwrap();
        let payload = pseudo_random_bytes(EACH, i as u64);
        readers.push((stream, payload.clone()));
        writers.push(thread::spawn(move || writer.write_all(&payload).unwrap()));
    }
    let stats = wait_for_stats(&server, "an episode over the cap", |s| {
        s.memory_episodes >= 1
    });
    assert!(stats.memory_episodes >= 1);

    // During the episode a newcomer is told why it is turned away.
    let mut newcomer = common::connect(&server);
    let mut line = String::new();
    newcomer.read_to_string(&mut line).unwrap();
    assert_eq!(line, "error: server busy\n");

    // Every client gets its bytes back, exact, once it reads: holding back lost nothing.
    for (mut stream, payload) in readers {
        assert!(read_exactly(&mut stream, EACH) == payload, "echo changed");
    }
    for writer in writers {
        writer.join().unwrap();
    }
    // The cap held, give or take what each client still being read adds before its next check
    // (one read and its echo, in chunks of up to 64 KiB). The first clients read grow well past
    // any share of the cap before the episode begins: a per-client share would not bound this.
    let peak = server.stats().memory_peak as usize;
    let bound = CAP + CLIENTS * 80 * 1024;
    assert!(
        peak <= bound,
        "memory peaked at {peak} bytes, bound {bound}"
    );
}

/// Over the cap, only what a reader can drain (its queue) holds a client back: a client whose
/// memory is an unfinished line is still read, so the line completes and is answered.
#[test]
fn clients_with_unfinished_lines_are_not_held_for_good_over_the_cap() {
    const CLIENTS: usize = 34;
    let server = common::serve(|cfg| {
        cfg.framing = Some(FramingKind::Line);
        cfg.max_memory = 1 << 20;
    });
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| common::connect(&server)).collect();
    wait_for_stats(&server, "every client accepted", |s| {
        s.total().connections_open == CLIENTS as u64
    });
    for client in &mut clients {
        client.write_all(&[b'a'; 30_000]).unwrap(); // 1,020,000 bytes: just under the cap
    }
    wait_for_stats(&server, "every unfinished line read", |s| {
        s.total().bytes_received == (CLIENTS * 30_000) as u64
    });
    clients[0].write_all(&[b'a'; 30_000]).unwrap(); // over it
    wait_for_stats(&server, "an episode over the cap", |s| {
        s.memory_episodes >= 1
    });
    // Each now reads more during the episode: judged on its memory, it would be held for good.
    for client in &mut clients[1..] {
        client.write_all(&[b'b'; 2_000]).unwrap();
    }
    let all = CLIENTS * 30_000 + 30_000 + (CLIENTS - 1) * 2_000;
    wait_for_stats(&server, "every client's more read", |s| {
        s.total().bytes_received == all as u64
    });
    for client in &mut clients {
        client.write_all(b"z\n").unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let len = if i == 0 { 60_002 } else { 32_002 };
        let line = read_exactly(client, len);
        assert_eq!(&line[len - 2..], b"z\n");
    }
}
