//! Echo (RFC 862): every byte received is sent back, in order, unchanged.
//!
//! Echo answers with the frame's *wire* bytes, terminator or length prefix included, so it is
//! byte-transparent in every framing: what a client sends is exactly what it gets back. Over UDP
//! each datagram is returned as it came.
//!
//! Next: `timestamp.rs`, the tutorial server.

use std::time::SystemTime;

use super::{Answer, ClientId, Protocol, Replies};
use crate::protocol::framing::{Frame, FramingKind};

/// The echo service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Protocol for Echo {
    type Session = ();
    const NAME: &'static str = "echo";
    const FRAMING: FramingKind = FramingKind::Raw;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, _: &mut Replies) {}

    fn on_frame(&mut self, _: &mut (), frame: Frame<'_>, _now: SystemTime, out: &mut Replies) {
        out.send_raw(frame.wire);
    }

    fn on_datagram(&mut self, datagram: &[u8], _now: SystemTime, reply: &mut Vec<u8>) -> Answer {
        reply.extend_from_slice(datagram);
        Answer::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::testing::Harness;

    #[test]
    fn returns_wire_bytes_in_every_framing() {
        for (framing, bytes) in [
            (FramingKind::Raw, &b"\xffhi\r\n"[..]),
            (FramingKind::Line, b"\xffhi\r\n\x00\n"),
            (FramingKind::Length, b"\x00\x00\x00\x02hi\x00\x00\x00\x00"),
        ] {
            let mut echo = Harness::new(Echo).with_framing(framing);
            let client = echo.connect();
            echo.send(client, bytes);
            assert_eq!(echo.take_output(client), bytes, "{framing:?}");
        }
    }

    #[test]
    fn returns_datagrams_unchanged_even_empty_ones() {
        let mut reply = Vec::new();
        assert_eq!(
            Echo.on_datagram(b"", SystemTime::now(), &mut reply),
            Answer::Reply
        );
        assert!(reply.is_empty());
        assert_eq!(
            Echo.on_datagram(b"\x00x", SystemTime::now(), &mut reply),
            Answer::Reply
        );
        assert_eq!(reply, b"\x00x");
    }
}
