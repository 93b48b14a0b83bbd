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
//! writes one batch ([`BATCH_BYTES`] worth of lines) when the client connects, and the next only
//! when the reactor reports the client's queue empty ([`Protocol::on_drained`]): the kernel took
//! everything, so there is room for more. A client that stops reading fills its socket buffer,
//! the queue stops emptying, and chargen stops being asked. Each client's place in the pattern is
//! kept in a map from [`ClientId`] to its next line, dropped when it leaves.
//!
//! Whatever the client sends is ignored. Over UDP each datagram (contents ignored) is answered
//! with one datagram. The RFC suggests a random length between 0 and 512 characters; ours is
//! deterministic: [`DATAGRAM_LINES`] whole lines (444 characters), continuing the pattern from one
//! datagram to the next, so a series of datagrams shows the rotation too.
//!
//! Next: `reactor.rs`, to see where `on_drained` is called.

use std::collections::HashMap;
use std::time::SystemTime;

use super::{Answer, ClientId, Protocol, Replies};
use crate::protocol::CloseReason;
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

/// The chargen service: where each stream client is in the pattern, and where UDP is.
#[derive(Debug, Default, Clone)]
pub struct Chargen {
    next_line: HashMap<ClientId, usize>,
    next_datagram_line: usize,
}

impl Chargen {
    /// A chargen service with no clients yet.
    pub fn new() -> Self {
        Chargen::default()
    }

    /// Records the next batch for `client` and moves its place on.
    fn send_batch(&mut self, client: ClientId, out: &mut Replies) {
        let line = self.next_line.entry(client).or_insert(0);
        *line = write_lines(*line, BATCH_BYTES / LINE_BYTES, &mut |bytes| {
            out.send_raw(bytes)
        });
    }
}

impl Protocol for Chargen {
    fn default_framing(&self) -> FramingKind {
        FramingKind::Raw
    }

    fn on_connect(&mut self, client: ClientId, _now: SystemTime, out: &mut Replies) {
        self.next_line.insert(client, 0);
        self.send_batch(client, out);
    }

    fn on_frame(&mut self, _: ClientId, _: Frame<'_>, _: SystemTime, _: &mut Replies) {}

    fn on_frame_error(&mut self, _: ClientId, _: &FrameError, _: &mut Replies) {}

    fn refills_when_drained(&self) -> bool {
        true
    }

    fn on_end_of_input(&mut self, client: ClientId, _out: &mut Replies) {
        self.next_line.remove(&client); // RFC 864: the pattern runs until the client closes
    }

    fn on_drained(&mut self, client: ClientId, out: &mut Replies) {
        if self.next_line.contains_key(&client) {
            self.send_batch(client, out);
        }
    }

    fn on_disconnect(&mut self, client: ClientId, _reason: CloseReason, _out: &mut Replies) {
        self.next_line.remove(&client);
    }

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

    fn lines(bytes: &[u8]) -> Vec<&[u8]> {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r\n").expect("each line ends in CRLF"))
            .collect()
    }

    #[test]
    fn first_lines_follow_the_rfc_pattern() {
        let mut out = Replies::new(FramingKind::Raw);
        Chargen::new().on_connect(ClientId(0), SystemTime::now(), &mut out);
        let got = lines(out.to_sender());
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
    fn batches_are_bounded_and_continue_where_the_last_ended() {
        let mut chargen = Chargen::new();
        let mut out = Replies::new(FramingKind::Raw);
        chargen.on_connect(ClientId(0), SystemTime::now(), &mut out);
        let first = out.to_sender().to_vec();
        assert!(first.len() <= BATCH_BYTES && first.len() > BATCH_BYTES - LINE_BYTES);
        out.reset(FramingKind::Raw);
        chargen.on_drained(ClientId(0), &mut out);
        let both = [first.clone(), out.to_sender().to_vec()].concat();
        let got = lines(&both);
        for (k, line) in got.iter().enumerate() {
            assert_eq!(line[0], b' ' + (k % 95) as u8, "line {k}");
        }
    }

    #[test]
    fn clients_have_their_own_place_and_leave_nothing_behind() {
        let mut chargen = Chargen::new();
        let mut out = Replies::new(FramingKind::Raw);
        chargen.on_connect(ClientId(0), SystemTime::now(), &mut out);
        chargen.on_drained(ClientId(0), &mut out);
        out.reset(FramingKind::Raw);
        chargen.on_connect(ClientId(1), SystemTime::now(), &mut out);
        assert!(out.to_sender().starts_with(b" !\"#"));
        chargen.on_disconnect(ClientId(0), CloseReason::PeerClosed, &mut out);
        chargen.on_disconnect(ClientId(1), CloseReason::PeerClosed, &mut out);
        assert!(chargen.next_line.is_empty());
        out.reset(FramingKind::Raw);
        chargen.on_drained(ClientId(1), &mut out); // gone: nothing more for it
        assert!(out.to_sender().is_empty());
    }

    #[test]
    fn ignores_input() {
        let mut out = Replies::new(FramingKind::Line);
        let frame = Frame {
            payload: b"stop",
            wire: b"stop\n",
        };
        Chargen::new().on_frame(ClientId(0), frame, SystemTime::now(), &mut out);
        assert!(out.to_sender().is_empty());
    }

    #[test]
    fn each_datagram_gets_whole_lines_within_512_bytes_continuing_the_pattern() {
        let mut chargen = Chargen::new();
        let mut first = Vec::new();
        let mut second = Vec::new();
        assert_eq!(
            chargen.on_datagram(b"", SystemTime::now(), &mut first),
            Answer::Reply
        );
        chargen.on_datagram(b"", SystemTime::now(), &mut second);
        assert_eq!(first.len(), DATAGRAM_LINES * LINE_BYTES);
        assert!(first.len() <= 512);
        assert!(first.starts_with(b" !\"#"));
        assert_eq!(lines(&second)[0][0], b' ' + DATAGRAM_LINES as u8);
    }
}
