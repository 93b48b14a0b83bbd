//! Chargen (RFC 864): the server sends characters, endlessly, as fast as the client reads them.
//!
//! The pattern is RFC 864's "rotating" one. Take the 95 printable ASCII characters, space (0x20)
//! through tilde (0x7E), as a ring. Line 0 is the 72 characters starting at space; line 1 the 72
//! starting one further on, at `!`; line *k* starts at character *k* mod 95. Each line ends with
//! `\r\n`, so the pattern repeats every 95 lines:
//!
//! ```text
//!  !"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\]^_`abcdefg
//! !"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\]^_`abcdefgh
//! ```
//!
//! **Only as fast as the client reads.** An endless service must not produce endlessly: a client
//! that reads slowly (or not at all) would otherwise grow our memory without bound. So chargen
//! writes one batch ([`BATCH_BYTES`] worth of lines) when the client connects, and asks
//! ([`Replies::refill_when_drained`]) for the next only when the reactor reports the client's
//! queue empty ([`Protocol::on_drained`]): the kernel took
//! everything, so there is room for more. A client that stops reading fills its socket buffer,
//! the queue stops emptying, and chargen stops being asked. Each client's place in the pattern is
//! its session: the number of its next line, kept with the connection and gone with it.
//!
//! Whatever the client sends is ignored. Over UDP each datagram (contents ignored) is answered
//! with one datagram. The RFC suggests a random length between 0 and 512 characters; ours is
//! deterministic: [`DATAGRAM_LINES`] whole lines (444 characters), continuing the pattern from one
//! datagram to the next, so a series of datagrams shows the rotation too.
//!
//! Next: `chat/mod.rs`, where one client's line becomes bytes for many.

use std::time::SystemTime;

use super::{Answer, ClientId, Protocol, Replies};
use crate::protocol::framing::{Frame, FrameError, FramingKind};

/// Characters in the ring: the printable ASCII characters 0x20 through 0x7E.
pub const RING_LEN: usize = 95;
/// Characters per line, before the `\r\n`.
pub const LINE_CHARS: usize = 72;
/// Bytes per line on the wire.
pub const LINE_BYTES: usize = LINE_CHARS + 2;
/// Bytes produced at a time for a stream client (rounded down to whole lines).
pub const BATCH_BYTES: usize = 16 * 1024;
/// Lines in each UDP answer: 6 × 74 = 444 bytes, within the RFC's 512.
pub const DATAGRAM_LINES: usize = 6;

/// The ring twice over, so any line is one slice: line `k` is `ring[k..k + 72]`.
const RING_TWICE: [u8; 2 * RING_LEN] = {
    let mut ring = [0u8; 2 * RING_LEN];
    let mut i = 0;
    while i < ring.len() {
        ring[i] = b' ' + (i % RING_LEN) as u8;
        i += 1;
    }
    ring
};

/// Appends `count` lines of the pattern starting at line `first`; returns the line after them.
fn write_lines(first: usize, count: usize, out: &mut impl FnMut(&[u8])) -> usize {
    let mut line = first % RING_LEN;
    for _ in 0..count {
        out(&RING_TWICE[line..line + LINE_CHARS]);
        out(b"\r\n");
        line = (line + 1) % RING_LEN;
    }
    line
}

/// The chargen service; its one piece of shared state is where UDP answers are in the pattern.
#[derive(Debug, Default, Clone)]
pub struct Chargen {
    next_datagram_line: usize,
}

impl Chargen {
    /// A chargen service with no clients yet.
    pub fn new() -> Self {
        Chargen::default()
    }
}

/// Records the batch starting at line `next`, moves `next` on, and asks for the next refill.
fn send_batch(next: &mut usize, out: &mut Replies) {
    *next = write_lines(*next, BATCH_BYTES / LINE_BYTES, &mut |bytes| {
        out.send_raw(bytes)
    });
    out.refill_when_drained();
}

impl Protocol for Chargen {
    /// The client's next line.
    type Session = usize;
    const NAME: &'static str = "chargen";
    const FRAMING: FramingKind = FramingKind::Raw;

    fn on_connect(&mut self, _: ClientId, _: SystemTime, out: &mut Replies) -> usize {
        let mut next = 0;
        send_batch(&mut next, out);
        next
    }

    fn on_frame(&mut self, _: &mut usize, _: Frame<'_>, _: SystemTime, _: &mut Replies) {}

    fn on_frame_error(&mut self, _: &mut usize, _: &FrameError, _: &mut Replies) {}

    fn on_drained(&mut self, next: &mut usize, out: &mut Replies) {
        send_batch(next, out);
    }

    // RFC 864: the pattern runs until the client closes. At its FIN the pending refill is
    // dropped (see `Protocol::on_end_of_input`) and not asked for again: the queue is written,
    // then the connection closes.

    fn on_datagram(&mut self, _: &[u8], _: SystemTime, reply: &mut Vec<u8>) -> Answer {
        self.next_datagram_line =
            write_lines(self.next_datagram_line, DATAGRAM_LINES, &mut |bytes| {
                reply.extend_from_slice(bytes)
            });
        Answer::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CloseReason;
    use crate::protocol::testing::Harness;

    fn lines(bytes: &[u8]) -> Vec<&[u8]> {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r\n").expect("each line ends in CRLF"))
            .collect()
    }

    #[test]
    fn first_lines_follow_the_rfc_pattern() {
        let mut chargen = Harness::new(Chargen::new());
        let client = chargen.connect();
        let output = chargen.take_output(client);
        let got = lines(&output);
        let first: Vec<u8> = (0x20u8..0x20 + 72).collect();
        assert_eq!(got[0], &first[..]);
        assert_eq!(got[0].len(), 72);
        assert!(got[1].starts_with(b"!\"#$"));
        assert!(got[1].ends_with(b"fgh"));
        // The line starting at `~` wraps around to space.
        assert!(got[94].starts_with(b"~ !\"#"));
        assert_eq!(got[95], got[0]);
        for (k, line) in got.iter().enumerate() {
            assert_eq!(line[0], b' ' + (k % 95) as u8, "line {k}");
            assert!(line.iter().all(|b| (0x20..=0x7e).contains(b)));
        }
    }

    #[test]
    fn batches_are_bounded_asked_for_and_continue_where_the_last_ended() {
        let mut chargen = Harness::new(Chargen::new());
        let client = chargen.connect();
        let first = chargen.take_output(client);
        assert!(first.len() <= BATCH_BYTES && first.len() > BATCH_BYTES - LINE_BYTES);
        assert!(
            chargen.wants_refill(client),
            "the next batch waits for a drained queue"
        );
        assert!(chargen.drain(client));
        let both = [first, chargen.take_output(client)].concat();
        for (k, line) in lines(&both).iter().enumerate() {
            assert_eq!(line[0], b' ' + (k % 95) as u8, "line {k}");
        }
        assert!(
            chargen.wants_refill(client),
            "and so on, for as long as the client reads"
        );
    }

    #[test]
    fn clients_have_their_own_place() {
        let mut chargen = Harness::new(Chargen::new());
        let first = chargen.connect();
        chargen.drain(first);
        let second = chargen.connect();
        assert!(chargen.take_output(second).starts_with(b" !\"#"));
        chargen.disconnect(first, CloseReason::PeerClosed);
        assert!(!chargen.drain(first), "gone: nothing more for it");
    }

    #[test]
    fn stops_at_the_clients_fin_and_ignores_input() {
        let mut chargen = Harness::new(Chargen::new()).with_framing(FramingKind::Line);
        let client = chargen.connect();
        chargen.take_output(client);
        chargen.send(client, b"stop\n");
        assert!(chargen.take_output(client).is_empty());
        chargen.end_input(client);
        assert!(!chargen.wants_refill(client));
        assert!(!chargen.drain(client));
    }

    #[test]
    fn each_datagram_gets_whole_lines_within_512_bytes_continuing_the_pattern() {
        let mut chargen = Harness::new(Chargen::new());
        let first = chargen.datagram(b"").unwrap();
        let second = chargen.datagram(b"").unwrap();
        assert_eq!(first.len(), DATAGRAM_LINES * LINE_BYTES);
        assert!(first.len() <= 512);
        assert!(first.starts_with(b" !\"#"));
        assert_eq!(lines(&second)[0][0], b' ' + DATAGRAM_LINES as u8);
    }
}
