//! Framing through a running server: split and merged ("sticky") lines, `\r\n`, empty lines,
//! lines over `--max-frame`, and length-prefixed binary frames.

use std::io::Write;

use echoloop::{CloseReason, FramingKind, ProtocolKind};

use crate::common;

fn serve(protocol: ProtocolKind, framing: FramingKind, max_frame: usize) -> common::TestServer {
    common::serve(|cfg| {
        cfg.protocol = protocol.into();
        cfg.framing = Some(framing);
        cfg.max_frame = max_frame;
    })
}

/// `[<24 characters of ctime>] `: the stamp timestamp puts before each message.
fn unstamp(line: &[u8]) -> &[u8] {
    assert_eq!(line[0], b'[', "{:?}", String::from_utf8_lossy(line));
    assert_eq!(&line[25..27], b"] ", "{:?}", String::from_utf8_lossy(line));
    &line[27..]
}

#[test]
fn a_line_split_across_writes_is_one_frame() {
    let server = serve(ProtocolKind::Timestamp, FramingKind::Line, 1024);
    let mut client = common::connect(&server);
    common::send(&mut client, b"hel");
    common::send(&mut client, b"lo wo");
    common::send(&mut client, b"rld\n");
    assert_eq!(unstamp(&common::read_line(&mut client)), b"hello world");
}

#[test]
fn merged_lines_are_separate_frames() {
    let server = serve(ProtocolKind::Timestamp, FramingKind::Line, 1024);
    let mut client = common::connect(&server);
    common::send(&mut client, b"one\ntwo\nthree\n");
    for expected in [&b"one"[..], b"two", b"three"] {
        assert_eq!(unstamp(&common::read_line(&mut client)), expected);
    }
}

#[test]
fn crlf_and_empty_lines() {
    let server = serve(ProtocolKind::Timestamp, FramingKind::Line, 1024);
    let mut client = common::connect(&server);
    common::send(&mut client, b"windows\r\n\n\r\n");
    assert_eq!(unstamp(&common::read_line(&mut client)), b"windows");
    assert_eq!(unstamp(&common::read_line(&mut client)), b"");
    assert_eq!(unstamp(&common::read_line(&mut client)), b"");
}

#[test]
fn echo_in_line_framing_returns_the_terminator_it_was_sent() {
    let server = serve(ProtocolKind::Echo, FramingKind::Line, 1024);
    let mut client = common::connect(&server);
    common::send(&mut client, b"a\r\nb\n");
    assert_eq!(common::read_exactly(&mut client, 5), b"a\r\nb\n");
}

#[test]
fn a_line_over_the_limit_gets_an_error_line_and_the_connection_goes_on() {
    let server = serve(ProtocolKind::Echo, FramingKind::Line, 16);
    let mut bystander = common::connect(&server);
    let mut client = common::connect(&server);
    common::send(&mut client, &[b'x'; 40]);
    common::send(&mut client, b"\nstill here\n");
    assert_eq!(
        common::read_line(&mut client),
        b"error: frame too long (limit 16 bytes)"
    );
    assert_eq!(common::read_line(&mut client), b"still here");
    // At the limit exactly is fine.
    common::send(&mut client, &[b'y'; 16]);
    common::send(&mut client, b"\n");
    assert_eq!(common::read_line(&mut client), [b'y'; 16]);
    // Other clients never noticed.
    common::send(&mut bystander, b"untouched\n");
    assert_eq!(common::read_line(&mut bystander), b"untouched");
    assert_eq!(server.stats().total().connections_open, 2);
}

#[test]
fn length_framing_carries_binary_frames() {
    let server = serve(ProtocolKind::Echo, FramingKind::Length, 1024);
    let mut client = common::connect(&server);
    let payload = common::pseudo_random_bytes(1000, 4);
    let mut stream = Vec::new();
    for frame in [&payload[..], b"", b"\n\r\n\x00"] {
        stream.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        stream.extend_from_slice(frame);
    }
    // Sent in awkward pieces: the prefix split, frames glued together.
    for piece in stream.chunks(3) {
        common::send(&mut client, piece);
    }
    assert_eq!(common::read_exactly(&mut client, stream.len()), stream);
}

#[test]
fn a_length_prefix_over_the_limit_closes_only_that_connection() {
    let server = serve(ProtocolKind::Timestamp, FramingKind::Length, 16);
    let mut bystander = common::connect(&server);
    let mut client = common::connect(&server);
    common::send(&mut client, &1000u32.to_be_bytes());
    common::send(&mut client, &[b'z'; 100]);
    assert_eq!(
        common::read_to_end(&mut client),
        b"",
        "closed without a reply"
    );
    drop(client); // our FIN ends the server's lingering close
    common::wait_for_stats(&server, "the frame error close", |s| {
        s.closed_for(CloseReason::FrameError) == 1
    });
    common::send(&mut bystander, &2u32.to_be_bytes());
    common::send(&mut bystander, b"ok");
    let prefix = common::read_exactly(&mut bystander, 4);
    assert_eq!(u32::from_be_bytes(prefix.try_into().unwrap()), 27 + 2);
    assert_eq!(unstamp(&common::read_exactly(&mut bystander, 29)), b"ok");
}

/// Line echo with lines split across reads at every kind of place, some over the limit, to a
/// client that does not read at first. A read's answer then mixes bytes echoed straight from the
/// read buffer (whole lines) with copied ones (a line finished from the decoder's unfinished one,
/// an error line), and the kernel refuses some of them (queued). The client must get back exactly
/// the lines it sent, in order, each over-long one replaced by one error line.
#[test]
fn split_lines_to_a_slow_reader_come_back_exactly() {
    let server = serve(ProtocolKind::Echo, FramingKind::Line, 48);
    let mut client = common::connect(&server);
    // 12 MB: more than the kernel's socket buffers hold here (a sender's buffer grows to 4 MiB).
    let (mut sent, mut expected) = (Vec::new(), Vec::new());
    for i in 0..400_000usize {
        let line_len = i * 7919 % 61; // 0..=60: lines of 49 and more are over the limit
        let letter = b'a' + (i % 26) as u8;
        sent.extend(std::iter::repeat_n(letter, line_len));
        sent.push(b'\n');
        if line_len > 48 {
            expected.extend_from_slice(b"error: frame too long (limit 48 bytes)\n");
        } else {
            expected.extend(std::iter::repeat_n(letter, line_len));
            expected.push(b'\n');
        }
    }
    let mut writer = client.try_clone().unwrap();
    let writing = std::thread::spawn(move || {
        // Chunks of 1..=1499 bytes: lines are cut at every offset, several lines per chunk.
        let mut rest = &sent[..];
        let mut size = 1;
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(size.min(rest.len()));
            writer.write_all(chunk).expect("write to the server");
            rest = after;
            size = size * 7 % 1499 + 1;
        }
    });
    // Not reading yet: the server's writes are refused and queued.
    common::wait_for_stats(&server, "bytes queued for the client", |s| {
        s.total().queued_bytes_peak > 0
    });
    let echoed = common::read_exactly(&mut client, expected.len());
    writing.join().unwrap();
    assert!(echoed == expected, "the echo differs from what was sent");
}
