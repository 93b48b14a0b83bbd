//! Daytime, time, discard and chargen over TCP (and time over UDP): what each sends, when each
//! closes, and that chargen only produces as fast as its client reads.

use std::io::Read;

use echoloop::{CloseReason, ProtocolKind};

use crate::common;

/// `Wed Nov  4 09:05:01 2026`: 24 ASCII characters in ctime's layout.
fn assert_ctime(text: &[u8]) {
    assert_eq!(text.len(), 24, "{:?}", String::from_utf8_lossy(text));
    assert!(text.is_ascii());
    assert_eq!(
        (text[3], text[7], text[10], text[19]),
        (b' ', b' ', b' ', b' ')
    );
    assert_eq!((text[13], text[16]), (b':', b':'));
}

#[test]
fn daytime_sends_one_line_then_closes() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Daytime.into());
    let mut client = common::connect(&server);
    let all = common::read_to_end(&mut client);
    let line = all.strip_suffix(b"\r\n").expect("one CRLF-terminated line");
    assert_ctime(line);
    drop(client); // our FIN ends the server's lingering close
    common::wait_for_stats(&server, "daytime closes the session", |s| {
        s.closed_for(CloseReason::Finished) == 1
    });
}

#[test]
fn daytime_ignores_what_the_client_sends() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Daytime.into());
    let mut client = common::connect(&server);
    common::send(&mut client, b"what time is it?\n");
    let all = common::read_to_end(&mut client);
    assert_eq!(all.len(), 26);
    assert!(all.ends_with(b"\r\n"));
}

/// RFC 868's four bytes as seconds since 1970, checked against our own clock read around them.
fn assert_rfc868_now(bytes: &[u8], before: std::time::SystemTime) {
    let after = std::time::SystemTime::now();
    let count = u32::from_be_bytes(bytes.try_into().expect("exactly four bytes"));
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    };
    // Seconds since 1900, back to since 1970 (valid until the count wraps in 2036).
    let said = i64::from(count) - 2_208_988_800;
    assert!(
        unix(before) <= said && said <= unix(after),
        "{said} is not between {} and {}",
        unix(before),
        unix(after)
    );
}

#[test]
fn time_sends_four_bytes_then_closes() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Time.into());
    let before = std::time::SystemTime::now();
    let mut client = common::connect(&server);
    common::send(&mut client, b"ignored\n");
    let all = common::read_to_end(&mut client);
    assert_rfc868_now(&all, before);
    drop(client); // our FIN ends the server's lingering close
    common::wait_for_stats(&server, "time closes the session", |s| {
        s.closed_for(CloseReason::Finished) == 1
    });
}

#[test]
fn time_answers_any_datagram_even_an_empty_one_with_four_bytes() {
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Time.into();
        cfg.udp = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let to = server.udp_addrs()[0];
    for request in [&b""[..], b"what time is it?"] {
        let before = std::time::SystemTime::now();
        client.send_to(request, to).unwrap();
        let mut buf = [0u8; 64];
        let (len, from) = client.recv_from(&mut buf).expect("an answer datagram");
        assert_eq!(from, to);
        assert_rfc868_now(&buf[..len], before);
    }
    let stats = common::wait_for_stats(&server, "both answered", |s| s.datagrams_sent == 2);
    assert_eq!(stats.datagrams_dropped, 0);
}

#[test]
fn discard_swallows_a_mebibyte_and_stays_usable() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Discard.into());
    let mut client = common::connect(&server);
    let data = common::pseudo_random_bytes(1024 * 1024, 863);
    common::send(&mut client, &data);
    common::wait_for_stats(&server, "the mebibyte read", |s| {
        s.total().bytes_received == data.len() as u64
    });
    common::send(&mut client, b"and a bit more\n");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        common::read_to_end(&mut client),
        b"",
        "discard never answers"
    );
    let stats = common::wait_for_stats(&server, "a clean close", |s| {
        s.closed_for(CloseReason::PeerClosed) == 1
    });
    assert_eq!(stats.total().bytes_received, data.len() as u64 + 15);
    assert_eq!(stats.total().bytes_sent, 0);
}

/// Checks that `bytes` continue the chargen pattern from line `first`; returns the next line.
fn check_pattern(bytes: &[u8], first: usize) -> usize {
    assert_eq!(bytes.len() % 74, 0);
    let mut line = first;
    for chunk in bytes.chunks(74) {
        for (i, &b) in chunk[..72].iter().enumerate() {
            assert_eq!(b, b' ' + ((line + i) % 95) as u8, "line {line}, column {i}");
        }
        assert_eq!(&chunk[72..], b"\r\n", "line {line}");
        line += 1;
    }
    line
}

#[test]
fn chargen_first_lines_follow_the_rfc() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Chargen.into());
    let mut client = common::connect(&server);
    let first = common::read_exactly(&mut client, 3 * 74);
    let line0: Vec<u8> = (0x20u8..0x20 + 72).collect();
    assert_eq!(&first[..72], &line0[..]);
    assert_eq!(&first[72..74], b"\r\n");
    assert!(first[74..].starts_with(b"!\"#$%"));
    assert!(first[148..].starts_with(b"\"#$%&"));
}

#[test]
fn chargen_keeps_going_while_read_with_a_bounded_queue() {
    let queue_limit = 64 * 1024;
    let server = common::serve(|cfg| {
        cfg.protocol = ProtocolKind::Chargen.into();
        cfg.queue_limit = queue_limit;
    });
    let mut client = common::connect(&server);
    // Read 4 MiB worth of whole lines, in small reads (a slow-ish reader), checking every byte.
    let total = 74 * 57_000;
    let mut pending = Vec::new();
    let mut line = 0;
    let mut read = 0;
    let mut buf = [0u8; 4096];
    while read < total {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "chargen stopped after {read} bytes");
        read += n;
        pending.extend_from_slice(&buf[..n]);
        let whole = pending.len() / 74 * 74;
        line = check_pattern(&pending[..whole], line);
        pending.drain(..whole);
    }
    drop(client);
    let stats = common::wait_for_stats(&server, "the client gone", |s| {
        s.total().connections_open == 0
    });
    // More is produced only when the queue is empty: never more than one batch waits.
    assert!(
        stats.total().queued_bytes_peak <= 16 * 1024,
        "peak {} bytes queued",
        stats.total().queued_bytes_peak
    );
    assert!(stats.total().queued_bytes_peak as usize <= queue_limit);
    assert_eq!(stats.total().readers_paused, 0);
}

#[test]
fn chargen_ignores_input_and_ends_when_the_client_closes() {
    let server = common::serve(|cfg| cfg.protocol = ProtocolKind::Chargen.into());
    let mut client = common::connect(&server);
    common::send(&mut client, b"please stop\n");
    let first = common::read_exactly(&mut client, 74 * 100);
    check_pattern(&first, 0);
    client.shutdown(std::net::Shutdown::Write).unwrap();
    // The server finishes what it already produced, in whole lines, then closes: EOF arrives.
    let rest = common::read_to_end(&mut client);
    check_pattern(&rest, 100);
    common::wait_for_stats(&server, "the close", |s| s.total().connections_open == 0);
}
