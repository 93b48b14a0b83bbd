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
    fn default_framing(&self) -> FramingKind {
        FramingKind::Raw
    }

    fn on_frame(&mut self, _: ClientId, _: Frame<'_>, _: SystemTime, _: &mut Replies) {}

    // Even an over-long line is silently dropped: discard never says a word.
    fn on_frame_error(&mut self, _: ClientId, _: &FrameError, _: &mut Replies) {}

    fn on_datagram(&mut self, _: &[u8], _: SystemTime, _: &mut Vec<u8>) -> Answer {
        Answer::Silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_nothing_in_any_framing() {
        for framing in [FramingKind::Raw, FramingKind::Line, FramingKind::Length] {
            let mut out = Replies::new(framing);
            let frame = Frame {
                payload: b"\x00drop me",
                wire: b"\x00drop me\n",
            };
            Discard.on_frame(ClientId(0), frame, SystemTime::now(), &mut out);
            Discard.on_frame_error(ClientId(0), &FrameError::TooLong { limit: 1 }, &mut out);
            assert!(out.to_sender().is_empty());
            assert!(!out.closes_sender());
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
