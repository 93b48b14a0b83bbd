//! The timestamp service over TCP: `[<ctime>] <message>` in raw framing (the default: one answer
//! per read, nothing added, as the tutorial server), line framing (one answer per line: pipelining)
//! and length framing.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::SystemTime;

use echoloop::{FramingKind, ProtocolKind};
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::common;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Checks `reply` is `[<ctime>] <message>` with ctime within 2 s of now, and returns `<message>`.
///
/// The shape is `^\[(Mon|...|Sun) (Jan|...|Dec) [ 123]\d \d\d:\d\d:\d\d \d{4}\] `, checked by
/// hand; the time is parsed back with jiff in the local zone.
fn check_stamp(reply: &[u8]) -> &[u8] {
    let message = check_stamp_shape(reply);
    let text = std::str::from_utf8(&reply[..27]).unwrap();
    let parsed = DateTime::strptime("%a %b %e %H:%M:%S %Y", &text[1..25]).expect("parse ctime");
    let when = TimeZone::system()
        .to_timestamp(parsed)
        .expect("a local time");
    let now = jiff::Timestamp::try_from(SystemTime::now()).unwrap();
    let apart = (now.as_second() - when.as_second()).abs();
    assert!(apart <= 2, "stamp {text:?} is {apart} s from now");
    message
}

/// Checks `reply` starts with a stamp of ctime's shape, and returns what follows it.
fn check_stamp_shape(reply: &[u8]) -> &[u8] {
    assert!(
        reply.len() >= 27,
        "too short: {:?}",
        String::from_utf8_lossy(reply)
    );
    let (stamp, message) = reply.split_at(27);
    let text = std::str::from_utf8(stamp).expect("the stamp is ASCII");
    let b = text.as_bytes();
    assert_eq!(b[0], b'[', "{text:?}");
    assert!(DAYS.contains(&&text[1..4]), "{text:?}");
    assert_eq!(b[4], b' ', "{text:?}");
    assert!(MONTHS.contains(&&text[5..8]), "{text:?}");
    assert_eq!(b[8], b' ', "{text:?}");
    assert!(matches!(b[9], b' ' | b'1' | b'2' | b'3'), "{text:?}");
    let digits = [10, 12, 13, 15, 16, 18, 19, 21, 22, 23, 24];
    assert!(digits.iter().all(|&i| b[i].is_ascii_digit()), "{text:?}");
    assert_eq!(
        (b[11], b[14], b[17], b[20]),
        (b' ', b':', b':', b' '),
        "{text:?}"
    );
    assert_eq!(&text[25..], "] ", "{text:?}");
    message
}

/// Splits raw timestamp answers into the payload pieces after their stamps (each stamp checked).
/// The payloads must hold no `[`, so that a stamp is where the next `[` is.
fn unstamp_pieces(mut answers: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    while !answers.is_empty() {
        let piece = check_stamp_shape(answers); // shape only: these may be read seconds later
        let end = piece.iter().position(|&b| b == b'[').unwrap_or(piece.len());
        pieces.push(&piece[..end]);
        answers = &piece[end..];
    }
    pieces
}

/// Reads until `len` bytes have come; panics at EOF or after the common timeout.
fn read_at_least(client: &mut impl Read, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.len() < len {
        let n = client.read(&mut buf).expect("an answer within the timeout");
        assert!(n > 0, "EOF after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn the_tutorial_client_is_answered_by_the_defaults() {
    // The seeds' client against `echoloop serve -p timestamp` and no other flag, the real binary:
    // `send(b"hello")` with no newline, then `recv(1024)`.
    let daemon = common::Daemon::start(&["serve", "-p", "timestamp", "-l", "127.0.0.1:0"], 1);
    let mut client = std::net::TcpStream::connect(daemon.tcp_addr()).unwrap();
    client.set_read_timeout(Some(common::PATIENCE)).unwrap();
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    while got.len() < 27 + 5 {
        let n = client
            .read(&mut buf)
            .expect("an answer without a newline sent");
        assert!(n > 0, "EOF after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(check_stamp(&got), b"hello", "nothing added");
    // Bytes, not text: invalid UTF-8, a NUL and a newline come back exactly as they were sent.
    let binary = b"\xff\xfe\x00 caf\xc3\xa9 \xc3\n";
    client.write_all(binary).unwrap();
    assert_eq!(
        check_stamp(&read_at_least(&mut client, 27 + binary.len())),
        binary
    );
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        common::read_to_end(&mut client),
        b"",
        "nothing more: no newline added"
    );
}

#[test]
fn raw_is_the_default_and_each_read_gets_one_answer() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Timestamp.into());
    let mut client = common::connect(&server);
    for message in [&b"one"[..], b"two\n", b"\xff\x00 three"] {
        client.write_all(message).unwrap();
        let answer = read_at_least(&mut client, 27 + message.len());
        assert_eq!(check_stamp(&answer), message);
    }
}

#[test]
fn a_raw_read_over_max_frame_is_answered_in_stamped_pieces() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.max_frame = 16;
    });
    let mut client = common::connect(&server);
    let message = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    client.write_all(message).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let answers = common::read_to_end(&mut client);
    let pieces = unstamp_pieces(&answers);
    assert!(pieces.len() >= message.len().div_ceil(16), "{pieces:?}");
    assert!(
        pieces.iter().all(|p| !p.is_empty() && p.len() <= 16),
        "{pieces:?}"
    );
    assert_eq!(pieces.concat(), message);
}

#[test]
fn raw_answers_stop_reading_at_the_queue_limit_and_lose_nothing() {
    const QUEUE_LIMIT: usize = 64 * 1024;
    const FLOOD: usize = 4 << 20;
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.queue_limit = QUEUE_LIMIT;
        cfg.sndbuf = Some(4096); // so that what the flooder does not read piles up in the server
    });
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr().into()).unwrap();
    let mut flooder: std::net::TcpStream = socket.into();
    flooder.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let mut writer = flooder.try_clone().unwrap();
    let flood: Vec<u8> = (0..FLOOD).map(|i| b'a' + (i % 26) as u8).collect();
    let sent = flood.clone();
    let writing = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    common::wait_for_stats(&server, "the flooder paused", |s| {
        s.total().readers_paused >= 1
    });
    // Each answer is at most one read (32 KiB) and its stamp: the queue holds the limit and one.
    let peak = server.stats().total().queued_bytes_peak;
    assert!(
        peak <= (QUEUE_LIMIT + 32 * 1024 + 27) as u64,
        "queue peaked at {peak} bytes"
    );
    let answers = common::read_to_end(&mut flooder);
    writing.join().unwrap();
    let pieces = unstamp_pieces(&answers);
    assert!(pieces.concat() == flood, "the flood came back changed");
    let peak = server.stats().total().queued_bytes_peak;
    assert!(
        peak <= (QUEUE_LIMIT + 32 * 1024 + 27) as u64,
        "queue peaked at {peak} bytes"
    );
}

#[test]
fn line_framing_pipelines_each_line() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.framing = Some(FramingKind::Line);
    });
    let mut client = common::connect(&server);
    // Three lines in one write: three answers, one per line, each a line.
    common::send(&mut client, b"hello\r\nsecond line\n\n");
    assert_eq!(check_stamp(&common::read_line(&mut client)), b"hello");
    assert_eq!(check_stamp(&common::read_line(&mut client)), b"second line");
    assert_eq!(check_stamp(&common::read_line(&mut client)), b"");
}
#[test]
fn the_tutorial_raw_client_gets_one_answer_per_send() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Timestamp.into());
    let mut client = common::connect(&server);
    // tcpCliSock.send(b'hello python'); data = tcpCliSock.recv(1024)
    client.write_all(b"hello python").unwrap();
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    while got.len() < 27 + 12 {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "EOF after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(check_stamp(&got), b"hello python");
}

#[test]
fn invalid_utf8_comes_back_byte_exact_in_line_framing() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.framing = Some(FramingKind::Line);
    });
    let mut client = common::connect(&server);
    common::send(&mut client, b"\xff\xfe caf\xc3\xa9 \xc3\n");
    assert_eq!(
        check_stamp(&common::read_line(&mut client)),
        b"\xff\xfe caf\xc3\xa9 \xc3"
    );
}

#[test]
fn length_framing_answers_with_a_length_prefixed_frame() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.framing = Some(FramingKind::Length);
    });
    let mut client = common::connect(&server);
    let payload = b"bin\x00\n\xff";
    let mut request = (payload.len() as u32).to_be_bytes().to_vec();
    request.extend_from_slice(payload);
    common::send(&mut client, &request);
    let prefix = common::read_exactly(&mut client, 4);
    let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
    assert_eq!(len, 27 + payload.len());
    let frame = common::read_exactly(&mut client, len);
    assert_eq!(check_stamp(&frame), payload);
}

#[test]
fn a_last_line_without_newline_is_answered_when_the_client_closes() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.framing = Some(FramingKind::Line);
    });
    let mut client = common::connect(&server);
    common::send(&mut client, b"last words without newline");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let all = common::read_to_end(&mut client);
    let line = all.strip_suffix(b"\n").expect("a whole line");
    assert_eq!(check_stamp(line), b"last words without newline");
}
