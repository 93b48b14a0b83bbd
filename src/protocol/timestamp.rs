//! Timestamp: the tutorial server. Each message comes back as `[<time>] <message>`.
//!
//! Every socket tutorial writes this server: `data = conn.recv(1024)`, then
//! `conn.send(b'[%s] %s' % (ctime(), data))`. The time is written as C's `ctime()` (and Python's
//! `time.ctime()`) writes it, in *local* time: `Tue Nov  4 09:05:01 2026`. Note the day of the
//! month: padded with a space to two characters, not with a zero.
//!
//! **Which framing.** By default `raw`: each read is one message and its answer is
//! `[<time>] ` and the bytes read, nothing added. That is exactly the tutorial server, one answer
//! per `recv(1024)`, so the tutorial clients, which send `hello` without a newline and wait, are
//! answered. The price: how the answers are cut follows how TCP cut the requests, so a client
//! that sends several messages before reading cannot tell them apart. `--framing line` gives one
//! answer per line (`\n` added), which pipelined clients need; `length` framing answers a
//! length-prefixed frame with one. The message is carried as bytes: invalid UTF-8 comes back as
//! it was sent, never "repaired".
//!
//! **Local time, safely.** C's `localtime()` reads the `TZ` variable, and a program with several
//! threads cannot read the environment safely while another thread may change it; `localtime_r`
//! still calls `tzset()` under the hood. We ask `jiff` instead: it reads `TZ` or `/etc/localtime`
//! itself, once, caches the parsed zone, and is safe to use from any thread (`--workers N`).
//! The reactor hands us the time as an argument (read once per turn), so the formatting is a pure
//! function, [`Ctime::at`], tested with fixed times in a fixed zone.
//!
//! **No allocation per message.** A ctime string is 24 bytes: it is written into a small array on
//! the stack, and the last one is kept, since many frames are answered within the same second.
//!
//! Over UDP each datagram gets one datagram back, `[<time>] <datagram>`, with nothing added.
//!
//! Next: `daytime.rs`, the same clock as a service of its own.

use std::io::Write;
use std::time::SystemTime;

use jiff::Timestamp as Instant;
use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;

use super::{Answer, ClientId, Protocol, Replies};
use crate::protocol::framing::{Frame, FramingKind};

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Room for a ctime string: 24 bytes for years 1000–9999, more for a sign and five digits.
const CTIME_CAPACITY: usize = 32;

/// A time written as `ctime()` writes it (`Tue Nov  4 09:05:01 2026`), held on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctime {
    bytes: [u8; CTIME_CAPACITY],
    len: usize,
}

impl Ctime {
    /// `now` in the local time zone (`TZ`, else `/etc/localtime`; UTC if neither can be read).
    pub fn local(now: SystemTime) -> Ctime {
        Ctime::at(now, &TimeZone::system())
    }

    /// `now` in the time zone `zone`.
    pub fn at(now: SystemTime, zone: &TimeZone) -> Ctime {
        // A SystemTime beyond jiff's years -9999..=9999 cannot come from a real clock; clamp it
        // rather than fail, since a peer's message must never make us panic.
        let instant = Instant::try_from(now).unwrap_or(if now > SystemTime::UNIX_EPOCH {
            Instant::MAX
        } else {
            Instant::MIN
        });
        Ctime::of(zone.to_datetime(instant))
    }

    /// A civil date and time, written in ctime's layout.
    pub fn of(time: DateTime) -> Ctime {
        let mut bytes = [0u8; CTIME_CAPACITY];
        let mut rest = &mut bytes[..];
        // Writing into a slice allocates nothing; 32 bytes hold even `Sun Jan  1 00:00:00 -9999`.
        let _ = write!(
            rest,
            "{} {} {:2} {:02}:{:02}:{:02} {}",
            weekday_name(time.weekday()),
            MONTHS[(time.month() - 1) as usize],
            time.day(),
            time.hour(),
            time.minute(),
            time.second(),
            time.year()
        );
        let len = CTIME_CAPACITY - rest.len();
        Ctime { bytes, len }
    }

    /// The text, as bytes (always ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn weekday_name(day: Weekday) -> &'static str {
    WEEKDAYS[day.to_sunday_zero_offset() as usize]
}

/// The timestamp service. Keeps the last time it wrote, to reuse within the same second.
#[derive(Debug, Default, Clone)]
pub struct Timestamp {
    last: Option<(u64, Ctime)>,
}

impl Timestamp {
    /// A timestamp service with nothing cached yet.
    pub fn new() -> Self {
        Timestamp::default()
    }

    /// `now` as ctime text in local time, computed at most once per second.
    fn ctime(&mut self, now: SystemTime) -> Ctime {
        let Ok(since) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return Ctime::local(now); // a clock before 1970: not worth caching
        };
        let second = since.as_secs();
        match self.last {
            Some((cached, text)) if cached == second => text,
            _ => {
                let text = Ctime::local(now);
                self.last = Some((second, text));
                text
            }
        }
    }
}

impl Protocol for Timestamp {
    type Session = ();
    const NAME: &'static str = "timestamp";
    /// Raw, as the tutorial server: one answer per read (see the module docs).
    const FRAMING: FramingKind = FramingKind::Raw;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, _: &mut Replies) {}

    fn on_frame(&mut self, _: &mut (), frame: Frame<'_>, now: SystemTime, out: &mut Replies) {
        let time = self.ctime(now);
        out.send_frame(&[b"[", time.as_bytes(), b"] ", frame.payload]);
    }

    fn on_datagram(&mut self, datagram: &[u8], now: SystemTime, reply: &mut Vec<u8>) -> Answer {
        let time = self.ctime(now);
        reply.extend_from_slice(b"[");
        reply.extend_from_slice(time.as_bytes());
        reply.extend_from_slice(b"] ");
        reply.extend_from_slice(datagram);
        Answer::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::Harness;
    use std::time::Duration;

    fn at_unix(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn utc(seconds: u64) -> Vec<u8> {
        Ctime::at(at_unix(seconds), &TimeZone::UTC)
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn pads_the_day_with_a_space_as_ctime_does() {
        // 2026-11-04T09:05:01Z; `TZ=UTC python3 -c 'import time; print(time.ctime(1793783101))'`
        assert_eq!(utc(1_793_783_101), b"Wed Nov  4 09:05:01 2026");
        // Two-digit days have no padding at all.
        assert_eq!(utc(1_794_647_101), b"Sat Nov 14 09:05:01 2026");
    }

    #[test]
    fn matches_known_ctime_values() {
        // Values of `TZ=UTC python3 -c 'import time; print(time.ctime(T))'`.
        assert_eq!(utc(0), b"Thu Jan  1 00:00:00 1970");
        assert_eq!(utc(1_000_000_000), b"Sun Sep  9 01:46:40 2001");
        assert_eq!(utc(2_147_483_647), b"Tue Jan 19 03:14:07 2038");
        assert_eq!(utc(951_782_400), b"Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn uses_the_zone_it_is_given() {
        // 1 January 00:30 UTC is still New Year's Eve in New York (UTC-5 in winter).
        let zone = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        let text = Ctime::at(at_unix(1_767_227_400), &zone);
        assert_eq!(text.as_bytes(), b"Wed Dec 31 19:30:00 2025");
    }

    #[test]
    fn answers_in_the_frame_of_each_framing_keeping_bytes() {
        let now = at_unix(1_000_000_000);
        let stamp = Ctime::local(now);
        let mut expected = b"[".to_vec();
        expected.extend_from_slice(stamp.as_bytes());
        expected.extend_from_slice(b"] hi \xff");
        let prefix = (expected.len() as u32).to_be_bytes();
        let cases: [(FramingKind, &[u8], Vec<u8>); 3] = [
            (FramingKind::Raw, b"hi \xff", expected.clone()),
            (
                FramingKind::Line,
                b"hi \xff\r\n",
                [&expected[..], b"\n"].concat(),
            ),
            (
                FramingKind::Length,
                b"\x00\x00\x00\x04hi \xff",
                [&prefix[..], &expected[..]].concat(),
            ),
        ];
        for (framing, sent, answer) in cases {
            let mut timestamp = Harness::new(Timestamp::new()).with_framing(framing);
            timestamp.set_now(now);
            let client = timestamp.connect();
            timestamp.send(client, sent);
            assert_eq!(timestamp.take_output(client), answer, "{framing:?}");
        }
    }

    #[test]
    fn raw_is_the_default_one_answer_per_read() {
        let now = at_unix(1_000_000_000);
        let mut timestamp = Harness::new(Timestamp::new());
        timestamp.set_now(now);
        let client = timestamp.connect();
        timestamp.send(client, b"hello");
        let stamp = Ctime::local(now);
        let expected = [&b"["[..], stamp.as_bytes(), b"] hello"].concat();
        assert_eq!(timestamp.take_output(client), expected);
    }

    #[test]
    fn an_idle_line_client_is_told_why_it_is_closed() {
        let mut timestamp = Harness::new(Timestamp::new()).with_framing(FramingKind::Line);
        let client = timestamp.connect();
        timestamp.idle_timeout(client);
        assert_eq!(timestamp.take_output(client), b"error: idle timeout\n");
        assert!(timestamp.is_closing(client));
    }

    #[test]
    fn an_idle_raw_client_is_closed_without_a_line() {
        let mut timestamp = Harness::new(Timestamp::new());
        let client = timestamp.connect();
        timestamp.idle_timeout(client);
        assert_eq!(timestamp.take_output(client), b"");
        assert!(timestamp.is_closing(client));
    }

    #[test]
    fn answers_a_datagram_without_adding_a_newline() {
        let now = at_unix(1_000_000_000);
        let mut reply = Vec::new();
        let answer = Timestamp::new().on_datagram(b"x", now, &mut reply);
        assert_eq!(answer, Answer::Reply);
        assert!(reply.starts_with(b"["));
        assert!(reply.ends_with(b"] x"));
        assert_eq!(reply.len(), 1 + 24 + 2 + 1);
    }

    #[test]
    fn the_cached_second_is_refreshed_when_time_moves() {
        let mut service = Timestamp::new();
        let first = service.ctime(at_unix(1_000_000_000));
        let same = service.ctime(at_unix(1_000_000_000) + Duration::from_millis(900));
        let next = service.ctime(at_unix(1_000_000_001));
        assert_eq!(first, same);
        assert_ne!(first, next);
    }

    #[test]
    fn clamps_times_out_of_range_instead_of_panicking() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert!(Ctime::at(far, &TimeZone::UTC).as_bytes().ends_with(b"9999"));
    }
}
