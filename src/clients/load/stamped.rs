//! A timestamp reply in raw framing, checked as its pieces come.
//!
//! In raw framing the timestamp server answers each of its reads: `[<ctime>] ` and the bytes it
//! read, nothing added (the tutorial server). Nothing in the reply says where it ends, so the
//! load generator keeps one message in flight per connection: then everything that arrives
//! before the next message is sent answers the message in flight, and the reply is complete
//! once all of its payload has come back.
//!
//! TCP cuts both ways. Our read may return part of a reply, so the state lives here between
//! reads (a stamp is held until its 27 bytes are in, then checked: `[`, ctime's 24 characters,
//! `] `). And the server's read may return part of our message (a payload over its read size,
//! 32 KiB, or over `--max-frame`, or a request the kernel delivered in two goes): then the reply
//! comes in several *pieces*, each `[<ctime>] ` and the next part of the payload. So a reply is
//! one or more pieces whose parts add up to the payload:
//!
//! ```text
//! [Wed Nov  4 09:05:01 2026] 0000002a:0000000000000011:stuv[Wed Nov  4 09:05:01 2026] wxyz…
//! └──────── stamp ─────────┘ └──── payload, part 1 ───────┘└─ stamp of the next piece┘
//! ```
//!
//! Bytes that continue the payload are taken as payload; a piece ends at the first byte that
//! does not, which must start the next piece's stamp. Generated payloads never contain `[`, so
//! for them this is exact. A `--payload-file` payload could hold a `[` exactly where the server
//! cut it, and that correct reply would then be judged wrong: the price of raw framing, which
//! `--framing line` on both sides does not pay.
//!
//! A reply is wrong as soon as a byte is neither the payload's next nor part of a well-formed
//! stamp: a plain echo server is caught at its first byte. How long a wrong reply is cannot be
//! known, so the caller takes the rest of that read to be part of it.
//!
//! Next: `pacing.rs`, when messages are sent.

use super::message::{Message, TIMESTAMP_PREFIX_LEN, looks_like_ctime};

/// What each byte of a stamp may be: `a` a letter, `d` a digit, `_` a space or a digit (the
/// space-padded day), anything else itself.
const STAMP_SHAPE: &[u8; TIMESTAMP_PREFIX_LEN] = b"[aaa aaa _d dd:dd:dd dddd] ";

/// Where the reply to the message in flight has come to.
#[derive(Debug, Clone, Default)]
pub struct StampedReply {
    /// The stamp of the current piece, as far as it has come.
    stamp: [u8; TIMESTAMP_PREFIX_LEN],
    /// Bytes of `stamp` received: [`TIMESTAMP_PREFIX_LEN`] once the piece's payload part began.
    stamp_len: usize,
    /// Payload bytes in the current piece (a piece with none is wrong).
    piece_len: usize,
    /// Payload bytes of the message received so far, over all pieces.
    offset: usize,
    /// Pieces begun so far.
    pieces: usize,
}

/// What the bytes fed so far say about the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not complete yet: every byte given was taken, and fits.
    Unfinished,
    /// Complete and correct, in this many pieces. Bytes after it were not taken.
    Right {
        /// How many stamped pieces the reply came in.
        pieces: usize,
    },
    /// A byte is neither the payload's next nor part of a stamp.
    Wrong,
}

impl StampedReply {
    /// Nothing received yet.
    pub fn new() -> Self {
        StampedReply::default()
    }

    /// Takes bytes of the reply to `message` from `input`, up to its end; says where it stands.
    /// After `Right` or `Wrong` it is ready for the next message's reply.
    pub fn feed(&mut self, message: &Message, input: &mut &[u8]) -> Verdict {
        loop {
            if self.stamp_len < TIMESTAMP_PREFIX_LEN {
                if input.is_empty() {
                    return Verdict::Unfinished;
                }
                if self.stamp_len == 0 {
                    self.pieces += 1;
                }
                let take = (TIMESTAMP_PREFIX_LEN - self.stamp_len).min(input.len());
                let (piece, rest) = input.split_at(take);
                let at = self.stamp_len;
                if !fits_stamp_shape(at, piece) {
                    return self.finish(Verdict::Wrong);
                }
                self.stamp[at..at + take].copy_from_slice(piece);
                self.stamp_len += take;
                *input = rest;
                if self.stamp_len < TIMESTAMP_PREFIX_LEN {
                    return Verdict::Unfinished;
                }
                if !looks_like_ctime(&self.stamp[1..TIMESTAMP_PREFIX_LEN - 2]) {
                    return self.finish(Verdict::Wrong); // `Xyz` is a letter run, not a day name
                }
                self.piece_len = 0;
            }
            let size = message.size();
            let matched = message.matched_len(self.offset, input);
            self.offset += matched;
            self.piece_len += matched;
            *input = &input[matched..];
            if self.offset == size {
                let pieces = self.pieces;
                return self.finish(Verdict::Right { pieces });
            }
            if input.is_empty() {
                return Verdict::Unfinished;
            }
            if self.piece_len == 0 {
                // A stamp and no payload after it: the server never sends that.
                return self.finish(Verdict::Wrong);
            }
            self.stamp_len = 0; // the payload stops here: the next piece's stamp must follow
        }
    }

    /// Ends this reply: the next bytes start the next one.
    pub fn finish(&mut self, verdict: Verdict) -> Verdict {
        *self = StampedReply::default();
        verdict
    }
}

/// Whether `bytes`, found at `at` in a stamp, have the shape [`STAMP_SHAPE`] gives them there.
fn fits_stamp_shape(at: usize, bytes: &[u8]) -> bool {
    bytes
        .iter()
        .zip(&STAMP_SHAPE[at..])
        .all(|(&byte, &shape)| match shape {
            b'a' => byte.is_ascii_alphabetic(),
            b'd' => byte.is_ascii_digit(),
            b'_' => byte == b' ' || byte.is_ascii_digit(),
            _ => byte == shape,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::load::message::Payloads;

    const STAMP: &[u8] = b"[Wed Nov  4 09:05:01 2026] ";

    fn payload(message: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        message.write_payload(&mut out);
        out
    }

    /// Feeds `reply` cut into reads of `read` bytes; the verdict after the last read.
    fn feed_in_reads(message: &Message, reply: &[u8], read: usize) -> (Verdict, usize) {
        let mut state = StampedReply::new();
        let mut verdict = Verdict::Unfinished;
        let mut left_over = 0;
        for chunk in reply.chunks(read) {
            let mut input = chunk;
            verdict = state.feed(message, &mut input);
            left_over = input.len();
            if verdict != Verdict::Unfinished {
                break;
            }
        }
        (verdict, left_over)
    }

    #[test]
    fn one_piece_in_any_number_of_reads() {
        let message = Message::new(42, 17, 64);
        let reply = [STAMP, &payload(&message)].concat();
        for read in [1, 2, 26, 27, 28, 64, 91, 1000] {
            let (verdict, left) = feed_in_reads(&message, &reply, read);
            assert_eq!(verdict, Verdict::Right { pieces: 1 }, "reads of {read}");
            assert_eq!(left, 0);
        }
    }

    #[test]
    fn several_pieces_when_the_server_read_the_message_in_parts() {
        let message = Message::new(1, 2, 100);
        let bytes = payload(&message);
        let reply = [
            STAMP,
            &bytes[..1],
            b"[Sat Nov 14 23:59:59 2026] ",
            &bytes[1..60],
            STAMP,
            &bytes[60..],
        ]
        .concat();
        for read in [1, 5, 27, 50, 1000] {
            assert_eq!(
                feed_in_reads(&message, &reply, read).0,
                Verdict::Right { pieces: 3 },
                "reads of {read}"
            );
        }
    }

    #[test]
    fn bytes_after_the_reply_are_not_taken() {
        let message = Message::new(0, 0, 10);
        let reply = [STAMP, &payload(&message), b"more"].concat();
        let mut input = &reply[..];
        let verdict = StampedReply::new().feed(&message, &mut input);
        assert_eq!(verdict, Verdict::Right { pieces: 1 });
        assert_eq!(input, b"more");
    }

    #[test]
    fn wrong_replies_are_caught_as_soon_as_they_show() {
        let message = Message::new(0, 5, 40);
        let bytes = payload(&message);
        let other = payload(&Message::new(0, 6, 40));
        let cases: [(&str, Vec<u8>); 7] = [
            ("a plain echo", bytes.clone()),
            (
                "a zero-padded day",
                [&b"[Wed Nov 04 09:05:01 2026] "[..], &bytes].concat(),
            ),
            (
                "no such day",
                [&b"[Xyz Nov  4 09:05:01 2026] "[..], &bytes].concat(),
            ),
            ("another message", [STAMP, &other].concat()),
            ("a stamp and nothing", [STAMP, STAMP, &bytes].concat()),
            (
                "a newline added in pieces",
                [STAMP, &bytes[..20], b"\n"].concat(),
            ),
            (
                "stamps with no ] ",
                [&b"[Wed Nov  4 09:05:01 2026]"[..], &bytes].concat(),
            ),
        ];
        for (what, reply) in cases {
            for read in [1, 7, 1000] {
                assert_eq!(
                    feed_in_reads(&message, &reply, read).0,
                    Verdict::Wrong,
                    "{what}, reads of {read}"
                );
            }
        }
    }

    #[test]
    fn a_short_reply_stays_unfinished_and_the_state_is_fresh_after_a_verdict() {
        let message = Message::new(0, 0, 30);
        let reply = [STAMP, &payload(&message)].concat();
        let mut state = StampedReply::new();
        let mut input = &reply[..40];
        assert_eq!(state.feed(&message, &mut input), Verdict::Unfinished);
        let mut wrong = &b"x"[..];
        assert_eq!(state.feed(&message, &mut wrong), Verdict::Wrong);
        let mut whole = &reply[..];
        assert_eq!(
            state.feed(&message, &mut whole),
            Verdict::Right { pieces: 1 }
        );
    }

    #[test]
    fn non_utf8_payloads_are_compared_as_bytes() {
        let given = Payloads::Given(std::sync::Arc::new(vec![b"\xff\xfe\x00hi".to_vec()]));
        let message = given.message(0, 0);
        let reply = [STAMP, b"\xff\xfe\x00hi"].concat();
        assert_eq!(
            feed_in_reads(&message, &reply, 3).0,
            Verdict::Right { pieces: 1 }
        );
        let bad = [STAMP, b"\xff\xfd\x00hi"].concat();
        assert_eq!(feed_in_reads(&message, &bad, 3).0, Verdict::Wrong);
    }
}
