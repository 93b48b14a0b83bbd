//! Chat over real sockets: joins, leaves, broadcast to the others, order, commands, slow readers,
//! and a room open to strangers: bytes that act on terminals shown as `\xNN`, names unique
//! without regard to case, `/who` in a big room (and a flood of it) made as the asker reads.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;

use crate::common::{
    PATIENCE, TestServer, connect, read_line, read_to_end, send, serve, wait_for_stats,
};
use echoloop::{CloseReason, ProtocolKind, ServeConfig};

fn chat_server(adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
    serve(|cfg| {
        cfg.protocol = ProtocolKind::Chat.into();
        adjust(cfg);
    })
}

/// Connects and reads the `* you are userN` line; returns the stream and the name.
fn join(server: &TestServer) -> (TcpStream, String) {
    let mut stream = connect(server);
    let line = String::from_utf8(read_line(&mut stream)).unwrap();
    let name = line
        .strip_prefix("* you are ")
        .unwrap_or_else(|| panic!("unexpected greeting {line:?}"))
        .to_string();
    (stream, name)
}

fn line_of(stream: &mut TcpStream) -> String {
    String::from_utf8_lossy(&read_line(stream)).into_owned()
}

/// Three clients, each having seen the later ones join.
fn three(server: &TestServer) -> [(TcpStream, String); 3] {
    let (mut a, an) = join(server);
    let (mut b, bn) = join(server);
    assert_eq!(line_of(&mut a), format!("* {bn} joined"));
    let (c, cn) = join(server);
    assert_eq!(line_of(&mut a), format!("* {cn} joined"));
    assert_eq!(line_of(&mut b), format!("* {cn} joined"));
    [(a, an), (b, bn), (c, cn)]
}

#[test]
fn a_line_reaches_the_others_and_not_the_sender() {
    let server = chat_server(|_| {});
    let [(mut a, an), (mut b, bn), (mut c, _)] = three(&server);
    send(&mut a, "hello 🦀 bytes\r\n".as_bytes());
    let expected = format!("[{an}] hello 🦀 bytes");
    assert_eq!(line_of(&mut b), expected);
    assert_eq!(line_of(&mut c), expected);
    // `a` got nothing back: the next thing it reads is b's line.
    send(&mut b, b"back\n");
    assert_eq!(line_of(&mut a), format!("[{bn}] back"));
    assert_eq!(line_of(&mut c), format!("[{bn}] back"));
}

#[test]
fn one_senders_lines_arrive_in_order() {
    let server = chat_server(|_| {});
    let [(mut a, an), (b, _), (c, _)] = three(&server);
    let readers: Vec<_> = [b, c]
        .into_iter()
        .map(|mut stream| {
            thread::spawn(move || (0..200).map(|_| line_of(&mut stream)).collect::<Vec<_>>())
        })
        .collect();
    let mut first_half = Vec::new();
    for i in 0..100 {
        writeln!(first_half, "line {i}").unwrap();
    }
    // Half in one write, half line by line: the order must hold either way.
    send(&mut a, &first_half);
    for i in 100..200 {
        send(&mut a, format!("line {i}\n").as_bytes());
    }
    let expected: Vec<String> = (0..200).map(|i| format!("[{an}] line {i}")).collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), expected);
    }
}

#[test]
fn joins_and_leaves_are_announced_with_the_reason() {
    let server = chat_server(|_| {});
    let [(mut a, _), (mut b, _), (c, cn)] = three(&server);
    drop(c);
    assert_eq!(line_of(&mut a), format!("* {cn} left (peer-closed)"));
    assert_eq!(line_of(&mut b), format!("* {cn} left (peer-closed)"));
    let (mut d, dn) = join(&server);
    assert_eq!(line_of(&mut a), format!("* {dn} joined"));
    send(&mut d, b"/quit\n");
    assert_eq!(line_of(&mut d), "* bye");
    assert!(read_to_end(&mut d).is_empty());
    assert_eq!(line_of(&mut a), format!("* {dn} left (finished)"));
    assert_eq!(line_of(&mut b), format!("* {dn} joined"));
    assert_eq!(line_of(&mut b), format!("* {dn} left (finished)"));
}

#[test]
fn idle_clients_are_closed_with_idle_timeout() {
    let server = chat_server(|cfg| cfg.idle_timeout = Some(std::time::Duration::from_millis(300)));
    let (mut a, _) = join(&server);
    let (mut b, bn) = join(&server);
    assert_eq!(line_of(&mut a), format!("* {bn} joined"));
    // Which one idles out first is a matter of timing; both do, and each is told why.
    for stream in [&mut a, &mut b] {
        let rest = String::from_utf8_lossy(&read_to_end(stream)).into_owned();
        assert!(rest.contains("error: idle timeout\n"), "{rest:?}");
    }
    wait_for_stats(&server, "two idle closes", |s| {
        s.closed_for(CloseReason::IdleTimeout) == 2
    });
}

#[test]
fn nick_who_and_unknown_commands() {
    let server = chat_server(|_| {});
    let [(mut a, an), (mut b, bn), (mut c, cn)] = three(&server);
    send(&mut a, b"/nick alice\n");
    assert_eq!(line_of(&mut a), "* you are now known as alice");
    assert_eq!(line_of(&mut b), format!("* {an} is now known as alice"));
    assert_eq!(line_of(&mut c), format!("* {an} is now known as alice"));

    send(&mut b, b"/nick alice\n");
    assert_eq!(line_of(&mut b), "error: name alice is taken");
    send(&mut b, b"/nick two words\n");
    assert_eq!(
        line_of(&mut b),
        "error: a name is letters, digits, _ and - only"
    );
    send(&mut b, b"/nick ALICE\n");
    assert_eq!(line_of(&mut b), "error: name ALICE is taken");
    send(&mut b, format!("/nick {}\n", "x".repeat(33)).as_bytes());
    assert_eq!(line_of(&mut b), "error: name too long (limit 32 bytes)");
    send(&mut b, format!("/nick {cn}\n").as_bytes());
    assert_eq!(line_of(&mut b), "error: names user<N> are reserved");
    send(&mut b, b"/nick\n/shout hi\n/who\n");
    assert_eq!(line_of(&mut b), "error: usage: /nick NAME");
    assert_eq!(line_of(&mut b), "error: unknown command");
    assert_eq!(line_of(&mut b), format!("* online: alice {bn} {cn}"));

    send(&mut a, b"still here\n");
    assert_eq!(line_of(&mut c), "[alice] still here");
    // None of b's mistakes reached the others: c's next line is b's real message.
    send(&mut b, b"hi\n");
    assert_eq!(line_of(&mut c), format!("[{bn}] hi"));
    assert_eq!(line_of(&mut a), format!("[{bn}] hi"));
}

#[test]
fn an_over_long_line_is_refused_and_not_broadcast() {
    let server = chat_server(|cfg| cfg.max_frame = 64);
    let [(mut a, an), (mut b, _), (_c, _)] = three(&server);
    let mut long = vec![b'x'; 200];
    long.extend_from_slice(b"\nafter\n");
    send(&mut a, &long);
    assert_eq!(line_of(&mut a), "error: line too long (limit 64 bytes)");
    assert_eq!(line_of(&mut b), format!("[{an}] after"));
    send(&mut a, b"/who\n");
    assert!(line_of(&mut a).starts_with("* online: "));
}

#[test]
fn a_slow_reader_is_dropped_and_the_others_go_on() {
    let server = chat_server(|cfg| cfg.queue_limit = 64 * 1024);
    let [(mut a, an), (b, _), (slow, slow_name)] = three(&server);
    // `b` reads everything, passing each line on; `a` sends a batch, then waits until `b` has
    // it, so `b` keeps up (a reader slower than the sender would rightly be dropped too) while
    // `slow`, which never reads, falls further behind with every batch.
    let (lines_tx, lines) = mpsc::channel();
    let mut b_reader = BufReader::new(b.try_clone().unwrap());
    thread::spawn(move || {
        let mut line = Vec::new();
        while matches!(b_reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if lines_tx.send(text).is_err() {
                return;
            }
            line.clear();
        }
    });
    let filler = "y".repeat(1000);
    let mut announcements = Vec::new();
    let mut sent = 0;
    while server.stats().total().clients_dropped == 0 {
        let mut batch = Vec::new();
        for i in sent..sent + 32 {
            writeln!(batch, "{i} {filler}").unwrap();
        }
        send(&mut a, &batch);
        let target = sent + 32;
        while sent < target {
            let line = lines.recv_timeout(PATIENCE).expect("b gets every line");
            match line.strip_prefix(&format!("[{an}] ")) {
                Some(rest) => assert_eq!(rest, format!("{sent} {filler}"), "b missed a line"),
                None => {
                    announcements.push(line);
                    continue;
                }
            }
            sent += 1;
        }
    }
    let stats = wait_for_stats(&server, "the slow reader dropped", |s| {
        s.closed_for(CloseReason::QueueLimit) == 1
    });
    assert_eq!(stats.total().clients_dropped, 1);
    // The two left still talk both ways, and `b` heard that `slow` left.
    send(&mut a, b"end\n");
    loop {
        let line = lines.recv_timeout(PATIENCE).expect("b gets the end");
        if line == format!("[{an}] end") {
            break;
        }
        announcements.push(line);
    }
    assert_eq!(announcements, [format!("* {slow_name} left (queue-limit)")]);
    let mut b = b;
    send(&mut b, b"still here\n");
    assert_eq!(line_of(&mut a), format!("* {slow_name} left (queue-limit)"));
    assert!(line_of(&mut a).ends_with("] still here"));
    drop(slow);
}

#[test]
fn a_fast_reader_is_not_dropped_for_a_burst_bigger_than_the_queue_limit() {
    let server = chat_server(|cfg| cfg.queue_limit = 64 * 1024);
    let (mut a, an) = join(&server);
    let (b, bn) = join(&server);
    assert_eq!(line_of(&mut a), format!("* {bn} joined"));
    let reader = thread::spawn(move || {
        BufReader::new(b)
            .lines()
            .take(1024)
            .map(|line| line.expect("b reads a line"))
            .collect::<Vec<_>>()
    });
    // 1 MiB in one write: the server reads it in chunks that each broadcast more than the
    // limit, and used to judge b's queue before offering it to the kernel. `b` reads as fast
    // as it can (its socket buffers take the rest) and must get it all.
    let filler = "z".repeat(1000);
    let mut burst = Vec::new();
    for i in 0..1024 {
        writeln!(burst, "{i} {filler}").unwrap();
    }
    send(&mut a, &burst);
    let lines = reader.join().unwrap();
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line, &format!("[{an}] {i} {filler}"));
    }
    assert_eq!(server.stats().total().clients_dropped, 0);
}

#[test]
fn a_quit_in_the_last_unterminated_line_before_fin_leaves_as_finished() {
    let server = chat_server(|_| {});
    let (mut a, _) = join(&server);
    let (mut b, bn) = join(&server);
    assert_eq!(line_of(&mut a), format!("* {bn} joined"));
    b.write_all(b"/quit").unwrap(); // no newline: the FIN ends the line
    b.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut b), b"* bye\n");
    // The protocol asked to close before the FIN finished the connection: it left "finished".
    assert_eq!(line_of(&mut a), format!("* {bn} left (finished)"));
}

#[test]
fn bytes_that_act_on_terminals_are_shown_as_hex() {
    let server = chat_server(|_| {});
    let [(mut a, an), (mut b, _), (_c, _)] = three(&server);
    let cases: [(&[u8], &str); 5] = [
        // `\r` would put the cursor back over `[name] ` and let the rest pass for the server.
        (b"hi\r* alice left (reset)\n", r"hi\x0d* alice left (reset)"),
        // ESC: a screen clear, and an OSC 52 write to the reader's clipboard.
        (
            b"\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\n",
            r"\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07",
        ),
        // Telnet IAC DO ECHO, and a C1 CSI as UTF-8 and as a raw byte.
        (
            b"\xff\xfd\x01 \xc2\x9b31m \x9b31m\n",
            r"\xff\xfd\x01 \xc2\x9b31m \x9b31m",
        ),
        // Invalid UTF-8 beside valid text, which passes unchanged.
        (
            b"caf\xe9 caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\n",
            r"caf\xe9 café 日本",
        ),
        (b"tab\there\x7f\x00\n", "tab\there\\x7f\\x00"),
    ];
    for (sent, shown) in cases {
        send(&mut a, sent);
        let line = read_line(&mut b);
        assert_eq!(
            String::from_utf8(line).expect("UTF-8"),
            format!("[{an}] {shown}")
        );
    }
}

#[test]
fn names_are_unique_without_regard_to_case() {
    let server = chat_server(|_| {});
    let [(mut a, an), (mut b, bn), (mut c, cn)] = three(&server);
    send(&mut a, b"/nick Alice\n");
    assert_eq!(line_of(&mut a), "* you are now known as Alice");
    assert_eq!(line_of(&mut b), format!("* {an} is now known as Alice"));
    assert_eq!(line_of(&mut c), format!("* {an} is now known as Alice"));
    for taken in ["alice", "ALICE", "aLiCe"] {
        send(&mut b, format!("/nick {taken}\n").as_bytes());
        assert_eq!(line_of(&mut b), format!("error: name {taken} is taken"));
    }
    send(&mut b, format!("/nick {}\n", an.to_uppercase()).as_bytes());
    assert_eq!(line_of(&mut b), "error: names user<N> are reserved");
    // The owner may change the case of its own name.
    send(&mut a, b"/nick ALICE\n");
    assert_eq!(line_of(&mut a), "* you are now known as ALICE");
    assert_eq!(line_of(&mut b), "* Alice is now known as ALICE");
    send(&mut c, b"/who\n");
    assert_eq!(line_of(&mut c), "* Alice is now known as ALICE");
    assert_eq!(line_of(&mut c), format!("* online: ALICE {bn} {cn}"));
}

/// `count` members joined, each having read its own welcome (the first also the joins).
fn members(server: &TestServer, count: usize) -> Vec<(TcpStream, String)> {
    (0..count).map(|_| join(server)).collect()
}

/// Reads `* online:` lines until the one without ` ...`, skipping the room's other lines;
/// returns the names listed, in order.
fn listing(reader: &mut impl BufRead) -> Vec<String> {
    let mut names = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read a line") > 0,
            "EOF in /who"
        );
        let Some(list) = line.trim_end().strip_prefix("* online: ") else {
            continue; // a join or leave in between
        };
        let more = list.ends_with(" ...");
        names.extend(list.trim_end_matches(" ...").split(' ').map(str::to_string));
        if !more {
            return names;
        }
    }
}

#[test]
fn who_in_a_big_room_lists_everyone_once_in_slot_order() {
    let server = chat_server(|_| {});
    let room = members(&server, 200);
    let everyone: Vec<String> = room.iter().map(|(_, name)| name.clone()).collect();
    let (last, _) = room.last().unwrap();
    let mut reader = BufReader::new(last.try_clone().unwrap());
    send(&mut last.try_clone().unwrap(), b"/who\n");
    assert_eq!(listing(&mut reader), everyone);
}

#[test]
fn a_who_flood_is_answered_as_read_without_piling_up() {
    let server = chat_server(|_| {});
    let room = members(&server, 200);
    let everyone: Vec<String> = room.iter().map(|(_, name)| name.clone()).collect();
    let (flooder, _) = room.last().unwrap();
    let mut reader = BufReader::new(flooder.try_clone().unwrap());
    // 2,000 requests in one write: each is answered in full, in turn, a line per drained queue.
    send(&mut flooder.try_clone().unwrap(), &b"/who\n".repeat(2000));
    for _ in 0..2000 {
        assert_eq!(listing(&mut reader), everyone);
    }
    // Built whole per request, the answers would have waited in the flooder's queue (MiBs);
    // made as it reads, at most about one line of the list is ever queued.
    let peak = server.stats().total().queued_bytes_peak;
    assert!(peak < 64 * 1024, "queue peak {peak} bytes");
}

/// `--chat-rate`: a member who floods is read no faster than its rate (after a burst of twice
/// that); its lines are delayed, in order, never dropped, and nobody else is dropped for them.
#[test]
fn a_flooder_is_slowed_to_its_rate_and_loses_nothing() {
    const RATE: u32 = 50;
    const LINES: usize = 300;
    let server = chat_server(|cfg| {
        cfg.chat_rate = Some(RATE);
        cfg.sources.trusted.clear(); // loopback is trusted by default, and trusted is exempt
    });
    let (mut flooder, flooder_name) = join(&server);
    let (mut reader, _) = join(&server);
    assert!(line_of(&mut flooder).ends_with("joined"));
    let flood: String = (0..LINES).map(|i| format!("line {i}\n")).collect();
    let start = std::time::Instant::now();
    send(&mut flooder, flood.as_bytes());
    for i in 0..LINES {
        assert_eq!(line_of(&mut reader), format!("[{flooder_name}] line {i}"));
        // Measured after the line arrived, so the bound is generous to a slow machine: the
        // burst, the rate over the time so far, and one in flight.
        let allowed = f64::from(2 * RATE) + f64::from(RATE) * start.elapsed().as_secs_f64() + 1.0;
        assert!(
            (i + 1) as f64 <= allowed,
            "{} lines after {:?}: over burst + rate",
            i + 1,
            start.elapsed()
        );
    }
    assert_eq!(server.stats().total().clients_dropped, 0);
}

/// A trusted source (loopback, by default) is not slowed.
#[test]
fn a_trusted_member_is_not_rate_limited() {
    let server = chat_server(|cfg| cfg.chat_rate = Some(1));
    let (mut talker, name) = join(&server);
    let (mut reader, _) = join(&server);
    assert!(line_of(&mut talker).ends_with("joined"));
    let lines: String = (0..50).map(|i| format!("{i}\n")).collect();
    send(&mut talker, lines.as_bytes());
    for i in 0..50 {
        assert_eq!(line_of(&mut reader), format!("[{name}] {i}"));
    }
}
