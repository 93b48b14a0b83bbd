//! Daytime (RFC 867): connect, get one line with the date and time, and the server hangs up.
//!
//! The oldest "hello world" of network services. RFC 867 leaves the format free ("the daytime
//! should be just a readable string"); we send the `ctime()` layout of `timestamp.rs` in local
//! time, ended by `\r\n` as the RFC's era of line protocols expects: `Wed Nov  4 09:05:01 2026\r\n`.
//!
//! Everything happens in [`Protocol::on_connect`]: the line is recorded, then [`Replies::close`]
//! asks the reactor to close once the line is written (after a `--greeting`, if one is set).
//! Whatever the client sends is ignored. Over UDP, any datagram (its contents are ignored) is
//! answered with one datagram holding the same line.
//!
//! Next: `time.rs`, the same clock as four bytes for machines.

use std::time::SystemTime;

use super::timestamp::Ctime;
use super::{Answer, ClientId, Protocol, Replies};
use crate::protocol::framing::{Frame, FrameError, FramingKind};

/// The daytime service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Daytime;

impl Protocol for Daytime {
    type Session = ();
    const NAME: &'static str = "daytime";
    const FRAMING: FramingKind = FramingKind::Raw;

    fn on_connect(&mut self, _client: ClientId, now: SystemTime, out: &mut Replies) {
        out.send_raw(Ctime::local(now).as_bytes());
        out.send_raw(b"\r\n");
        out.close();
    }

    fn on_frame(&mut self, _: &mut (), _: Frame<'_>, _: SystemTime, _: &mut Replies) {}

    fn on_frame_error(&mut self, _: &mut (), _: &FrameError, _: &mut Replies) {}

    fn on_datagram(&mut self, _datagram: &[u8], now: SystemTime, reply: &mut Vec<u8>) -> Answer {
        reply.extend_from_slice(Ctime::local(now).as_bytes());
        reply.extend_from_slice(b"\r\n");
        Answer::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::testing::Harness;

    #[test]
    fn sends_one_ctime_line_on_connect_then_closes() {
        let mut daytime = Harness::new(Daytime);
        let client = daytime.connect();
        let mut expected = Ctime::local(daytime.now()).as_bytes().to_vec();
        expected.extend_from_slice(b"\r\n");
        assert_eq!(daytime.take_output(client), expected);
        assert!(daytime.is_closing(client));
    }

    #[test]
    fn ignores_input_even_an_over_long_line() {
        let mut daytime = Harness::new(Daytime)
            .with_framing(FramingKind::Line)
            .with_max_frame(4);
        let client = daytime.connect();
        daytime.take_output(client);
        // Closing already, so the reactor would read no more; the protocol itself is silent too.
        let mut session = ();
        let mut out = Replies::new(FramingKind::Line);
        let frame = Frame {
            payload: b"what time is it",
            wire: b"what time is it\n",
        };
        Daytime.on_frame(&mut session, frame, daytime.now(), &mut out);
        Daytime.on_frame_error(&mut session, &FrameError::TooLong { limit: 4 }, &mut out);
        assert!(!out.has_sender_actions());
    }

    #[test]
    fn answers_any_datagram_with_the_line() {
        let now = SystemTime::now();
        let mut reply = Vec::new();
        assert_eq!(Daytime.on_datagram(b"?", now, &mut reply), Answer::Reply);
        assert_eq!(reply.len(), 24 + 2);
        assert!(reply.ends_with(b"\r\n"));
    }
}
