//! Discard (RFC 863): everything received is thrown away; nothing is ever sent.
//!
//! A sink, useful to measure how fast a client can send, and a reminder that "answer nothing" is a
//! protocol too. The reactor still does all its usual work: it reads until `WouldBlock`, cuts
//! frames (raw framing by default, so a frame is simply one read), and hands them here, where
//! they are dropped. The queue stays empty, so the connection is only ever registered for
//! `READABLE`. Over UDP no datagram is answered.
//!
//! Next: `chargen.rs`, the opposite: a service that only talks.

use std::time::SystemTime;

use super::{Answer, ClientId, Protocol, Replies};
use crate::protocol::framing::{Frame, FrameError, FramingKind};

/// The discard service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Protocol for Discard {
    type Session = ();
    const NAME: &'static str = "discard";
    const FRAMING: FramingKind = FramingKind::Raw;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, _: &mut Replies) {}

    fn on_frame(&mut self, _: &mut (), _: Frame<'_>, _: SystemTime, _: &mut Replies) {}

    // Even an over-long line is silently dropped: discard never says a word.
    fn on_frame_error(&mut self, _: &mut (), _: &FrameError, _: &mut Replies) {}

    fn on_datagram(&mut self, _: &[u8], _: SystemTime, _: &mut Vec<u8>) -> Answer {
        Answer::Silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::testing::Harness;

    #[test]
    fn says_nothing_in_any_framing() {
        for framing in [FramingKind::Raw, FramingKind::Line, FramingKind::Length] {
            let mut discard = Harness::new(Discard)
                .with_framing(framing)
                .with_max_frame(4);
            let client = discard.connect();
            discard.send(client, b"\x00drop me\nand this too\n");
            assert!(discard.take_output(client).is_empty(), "{framing:?}");
        }
    }

    #[test]
    fn answers_no_datagram() {
        let mut reply = Vec::new();
        let answer = Discard.on_datagram(b"x", SystemTime::now(), &mut reply);
        assert_eq!(answer, Answer::Silent);
        assert!(reply.is_empty());
    }
}
