//! Time (RFC 868): connect, get four bytes, the number of seconds since 1900, and the server
//! hangs up.
//!
//! Daytime's machine-readable sibling, and what `rdate` asks before NTP took over: a 32-bit
//! unsigned big-endian count of seconds since 1900-01-01 00:00 UTC. No text, no newline, no time
//! zone. The Unix clock counts from 1970, so we add the 70 years between the epochs,
//! 2 208 988 800 seconds (17 leap days included; leap seconds are not counted, by either).
//!
//! 32 bits of seconds run out on 2036-02-07 06:28:16 UTC. RFC 868 (1983) says nothing about it;
//! we do what inetd's built-in service and NTP's "era" numbering do: keep counting modulo 2^32,
//! so the count starts again at 0. A client that knows roughly what year it is (every `rdate` in
//! practice) reads that as 2036 and after; a client that does not would read 1900.
//!
//! Like daytime, everything happens in [`Protocol::on_connect`]: the four bytes are recorded,
//! then [`Replies::close`] asks the reactor to close once they are written. Whatever the client
//! sends is ignored. Over UDP, any datagram (even an empty one) gets one datagram holding the
//! same four bytes, well under the UDP reply cap (four times the request plus 512 bytes).
//!
//! Next: `discard.rs`, a service that answers nothing at all.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Answer, ClientId, Protocol, Replies};
use crate::protocol::framing::{Frame, FrameError, FramingKind};

/// Seconds from 1900-01-01 to 1970-01-01 (UTC): 70 years, 17 of them leap years.
const SECONDS_FROM_1900_TO_1970: i64 = (70 * 365 + 17) * 86_400;

/// The time service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Time;

/// What RFC 868 sends for `now`: seconds since 1900-01-01 UTC, modulo 2^32 (see the module doc
/// for 2036), as four big-endian bytes.
fn rfc868_bytes(now: SystemTime) -> [u8; 4] {
    let unix_seconds = match now.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        // A clock set before 1970: still a count from 1900, if a smaller one.
        Err(before) => -(before.duration().as_secs() as i64),
    };
    let since_1900 = (unix_seconds + SECONDS_FROM_1900_TO_1970).rem_euclid(1 << 32);
    (since_1900 as u32).to_be_bytes()
}

impl Protocol for Time {
    type Session = ();
    const NAME: &'static str = "time";
    const FRAMING: FramingKind = FramingKind::Raw;

    fn on_connect(&mut self, _client: ClientId, now: SystemTime, out: &mut Replies) {
        out.send_raw(&rfc868_bytes(now));
        out.close();
    }

    fn on_frame(&mut self, _: &mut (), _: Frame<'_>, _: SystemTime, _: &mut Replies) {}

    fn on_frame_error(&mut self, _: &mut (), _: &FrameError, _: &mut Replies) {}

    fn on_datagram(&mut self, _datagram: &[u8], now: SystemTime, reply: &mut Vec<u8>) -> Answer {
        reply.extend_from_slice(&rfc868_bytes(now));
        Answer::Reply
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    use crate::protocol::testing::Harness;

    fn at_unix(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn the_unix_epoch_is_2208988800() {
        assert_eq!(rfc868_bytes(UNIX_EPOCH), 2_208_988_800u32.to_be_bytes());
        // RFC 868's own examples: 1 Jan 1976 00:00 GMT is 2,398,291,200.
        assert_eq!(
            rfc868_bytes(at_unix(189_302_400)),
            2_398_291_200u32.to_be_bytes()
        );
    }

    #[test]
    fn fractions_of_a_second_are_dropped() {
        let now = UNIX_EPOCH + Duration::from_millis(1_999);
        assert_eq!(rfc868_bytes(now), 2_208_988_801u32.to_be_bytes());
    }

    #[test]
    fn the_count_wraps_to_zero_on_2036_02_07() {
        // 2036-02-07 06:28:16 UTC is 2^32 seconds after 1900.
        let wrap = (1u64 << 32) - 2_208_988_800;
        assert_eq!(rfc868_bytes(at_unix(wrap - 1)), [0xff, 0xff, 0xff, 0xff]);
        assert_eq!(rfc868_bytes(at_unix(wrap)), [0, 0, 0, 0]);
        assert_eq!(rfc868_bytes(at_unix(wrap + 1)), [0, 0, 0, 1]);
    }

    #[test]
    fn a_clock_before_1970_still_counts_from_1900() {
        let one_day_before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(
            rfc868_bytes(one_day_before),
            (2_208_988_800u32 - 86_400).to_be_bytes()
        );
    }

    #[test]
    fn sends_four_bytes_on_connect_then_closes() {
        let mut time = Harness::new(Time);
        time.set_now(at_unix(1_800_000_000));
        let client = time.connect();
        let expected = (1_800_000_000u32 + 2_208_988_800).to_be_bytes();
        assert_eq!(time.take_output(client), expected);
        assert!(time.is_closing(client));
    }

    #[test]
    fn answers_any_datagram_even_an_empty_one_with_four_bytes() {
        let mut time = Harness::new(Time);
        time.set_now(at_unix(0));
        let expected = 2_208_988_800u32.to_be_bytes().to_vec();
        assert_eq!(time.datagram(b""), Some(expected.clone()));
        assert_eq!(time.datagram(b"what time is it?"), Some(expected));
    }
}
