//! The timestamp service over TCP: `[<ctime>] <message>` in line, raw and length framing.

use std::io::{Read, Write};
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

    let parsed = DateTime::strptime("%a %b %e %H:%M:%S %Y", &text[1..25]).expect("parse ctime");
    let when = TimeZone::system()
        .to_timestamp(parsed)
        .expect("a local time");
    let now = jiff::Timestamp::try_from(SystemTime::now()).unwrap();
    let apart = (now.as_second() - when.as_second()).abs();
    assert!(apart <= 2, "stamp {text:?} is {apart} s from now");
    message
}

#[test]
fn line_framing_stamps_each_line() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Timestamp.into());
    let mut client = common::connect(&server);
    common::send(&mut client, b"hello\r\nsecond line\n\n");
    assert_eq!(check_stamp(&common::read_line(&mut client)), b"hello");
    assert_eq!(check_stamp(&common::read_line(&mut client)), b"second line");
    assert_eq!(check_stamp(&common::read_line(&mut client)), b"");
}

#[test]
fn the_tutorial_raw_client_gets_one_answer_per_send() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Timestamp.into();
        cfg.framing = Some(FramingKind::Raw);
    });
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
fn invalid_utf8_comes_back_byte_exact() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Timestamp.into());
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
fn closes_cleanly_after_the_client_does() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Timestamp.into());
    let mut client = common::connect(&server);
    common::send(&mut client, b"last words without newline");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let all = common::read_to_end(&mut client);
    let line = all.strip_suffix(b"\n").expect("a whole line");
    assert_eq!(check_stamp(line), b"last words without newline");
}
