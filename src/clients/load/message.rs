//! What each request carries, and how a reply is checked against it without keeping a copy.
//!
//! A load generator that sends the same bytes again and again cannot tell a correct server from one
//! that returns a stale buffer, or the replies of another connection, or yesterday's answer in the
//! wrong order. So every message is different: its payload starts with the connection number and
//! the message's sequence number, in hex, and is filled up with letters that shift with the
//! sequence number:
//!
//! ```text
//! 0000002a:0000000000000011:stuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghi   (64 bytes, connection 42, message 17)
//! ```
//!
//! The payload is a pure function of (connection, sequence, size), so a connection keeps no copy of
//! what it sent: to check a reply it computes the bytes it expects, piece by piece, on the stack.
//! Payloads shorter than the 26-byte header keep the end of it up to the last digit of the sequence
//! number, so they still differ from one message to the next. Every byte is printable ASCII, never
//! `\n`, so line framing can carry it.
//!
//! A timestamp reply is `[<ctime>] payload`: `[Tue Nov  4 09:05:01 2026] ` and then the payload,
//! which must match as echo's does. The 24 characters of the time are checked for ctime's shape
//! (day and month names, a space-padded day, digits and colons where they belong).
//!
//! `--payload-file FILE` replaces the generated payloads with the user's own ([`Payloads::Given`]):
//! the whole file per message, or with line framing one message per line, in turn. They are
//! checked the same way, only they cannot tell one message from the next as generated ones do.
//!
//! Next: `stamped.rs`, a timestamp reply in raw framing, checked as its pieces come.

use std::sync::Arc;

use crate::protocol::framing::FramingKind;

/// Bytes of the `cccccccc:ssssssssssssssss:` header.
pub const HEADER_LEN: usize = 26;

/// `[` + 24 bytes of ctime + `] `.
pub const TIMESTAMP_PREFIX_LEN: usize = 27;

/// The two hex digits of every byte value: a header is 12 table lookups, not 24 digit
/// computations (it is built for every message sent and every reply checked).
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    pairs
};

/// Writes `bytes` as lowercase hex into `out` (twice as long).
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
}

/// The alphabet, 40 times over: every run of filler letters is a slice of it, so writing and
/// checking a payload are `memcpy` and `memcmp`, not a computation per byte (at 4 KiB a message,
/// that per-byte work was what kept the load generator from outrunning the server).
const ALPHABETS: [u8; 26 * 40] = {
    let mut letters = [0u8; 26 * 40];
    let mut i = 0;
    while i < letters.len() {
        letters[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    letters
};

/// The filler of message `seq` at payload positions `from..from + len`, as slices of
/// [`ALPHABETS`]: position `i` holds `'a' + (seq + i) % 26`.
fn filler(seq: u64, from: usize, len: usize) -> impl Iterator<Item = &'static [u8]> {
    let mut phase = ((seq % 26) as usize + from % 26) % 26;
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(ALPHABETS.len() - 26);
        let chunk = &ALPHABETS[phase..phase + n];
        phase = (phase + n) % 26;
        left -= n;
        Some(chunk)
    })
}

/// A generated payload, described rather than stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    header: [u8; HEADER_LEN],
    seq: u64,
    size: usize,
}

impl Generated {
    /// Message `seq` of connection `connection`, `size` payload bytes.
    pub fn new(connection: u32, seq: u64, size: usize) -> Self {
        let mut header = [b':'; HEADER_LEN];
        write_hex(&mut header[..8], &connection.to_be_bytes());
        write_hex(&mut header[9..25], &seq.to_be_bytes());
        Generated { header, seq, size }
    }

    /// The payload length.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The payload's first bytes, before the filler letters: the whole header, or for a payload
    /// shorter than it, the end of the header up to the last digit of the sequence number.
    fn prefix(&self) -> &[u8] {
        if self.size < HEADER_LEN {
            &self.header[HEADER_LEN - 1 - self.size..HEADER_LEN - 1]
        } else {
            &self.header
        }
    }

    /// Appends the payload to `out`.
    pub fn write_payload(&self, out: &mut Vec<u8>) {
        let prefix = self.prefix();
        out.extend_from_slice(prefix);
        for chunk in filler(self.seq, prefix.len(), self.size - prefix.len()) {
            out.extend_from_slice(chunk);
        }
    }

    /// Whether `bytes` are the payload's bytes starting at `offset` (a piece of a raw stream).
    pub fn matches_at(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset + bytes.len() > self.size {
            return false;
        }
        let prefix = self.prefix();
        let (mut at, mut rest) = (offset, bytes);
        if at < prefix.len() {
            let n = (prefix.len() - at).min(rest.len());
            if rest[..n] != prefix[at..at + n] {
                return false;
            }
            at += n;
            rest = &rest[n..];
        }
        for chunk in filler(self.seq, at, rest.len()) {
            let (piece, after) = rest.split_at(chunk.len());
            if piece != chunk {
                return false;
            }
            rest = after;
        }
        true
    }

    /// How many of `bytes` are the payload's bytes from `offset` on: the length of the longest
    /// prefix of `bytes` that matches (a raw timestamp reply's payload runs until a new stamp).
    pub fn matched_len(&self, offset: usize, bytes: &[u8]) -> usize {
        let bytes = &bytes[..bytes.len().min(self.size.saturating_sub(offset))];
        let prefix = self.prefix();
        let mut matched = 0;
        if offset < prefix.len() {
            let expected = &prefix[offset..];
            let same = common_len(expected, bytes);
            if same < expected.len().min(bytes.len()) || same == bytes.len() {
                return same;
            }
            matched = same;
        }
        for chunk in filler(self.seq, offset + matched, bytes.len() - matched) {
            let same = common_len(chunk, &bytes[matched..]);
            matched += same;
            if same < chunk.len() {
                break;
            }
        }
        matched
    }
}

/// The length of the common start of `a` and `b`.
fn common_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    if a[..n] == b[..n] {
        return n; // the usual case, a correct reply: one `memcmp`
    }
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// What the payloads are: generated (the default) or read from `--payload-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payloads {
    /// Generated, `size` bytes each, different for every message (the module docs).
    Generated {
        /// Payload bytes per message (`-s`).
        size: usize,
    },
    /// Given by the user: message `seq` of every connection carries `given[seq % given.len()]`.
    Given(Arc<Vec<Vec<u8>>>),
}

impl Payloads {
    /// The payloads of `--payload-file`: with line framing one message per non-empty line of the
    /// file, otherwise the whole file per message. `Err` is the line to show the user.
    pub fn from_file(bytes: Vec<u8>, framing: FramingKind) -> Result<Payloads, String> {
        let given: Vec<Vec<u8>> = match framing {
            FramingKind::Line => bytes
                .split(|&b| b == b'\n')
                .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
            FramingKind::Raw | FramingKind::Length if bytes.is_empty() => Vec::new(),
            FramingKind::Raw | FramingKind::Length => vec![bytes],
        };
        if given.is_empty() {
            return Err("--payload-file: the file has no payload (it is empty)".into());
        }
        Ok(Payloads::Given(Arc::new(given)))
    }

    /// Message `seq` of connection `connection`.
    pub fn message(&self, connection: u32, seq: u64) -> Message<'_> {
        match self {
            Payloads::Generated { size } => {
                Message::Generated(Generated::new(connection, seq, *size))
            }
            Payloads::Given(given) => Message::Given(&given[(seq % given.len() as u64) as usize]),
        }
    }

    /// The sequence number a reply's `payload` carries, for generated payloads: `None` for given
    /// ones (they cannot tell one message from the next), or if the payload has the wrong size or
    /// no hex digits where the sequence number belongs. A payload shorter than the header carries
    /// only the low digits of the number: the latest number below `below` that ends in them is
    /// taken. The caller still checks the whole payload against that message.
    pub fn sequence_in(&self, payload: &[u8], below: u64) -> Option<u64> {
        let Payloads::Generated { size } = *self else {
            return None;
        };
        if payload.len() != size {
            return None;
        }
        // The 16 digits sit at 9..25 of the header; a shorter payload ends with the last of them.
        let digits = if size >= HEADER_LEN {
            &payload[9..HEADER_LEN - 1]
        } else {
            &payload[size - size.min(16)..]
        };
        if digits.is_empty() {
            return None;
        }
        let low = u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
        if digits.len() == 16 {
            return Some(low);
        }
        let modulus = 1u64 << (4 * digits.len());
        let last = below.checked_sub(1)?;
        let back = (last % modulus + modulus - low) % modulus;
        last.checked_sub(back)
    }

    /// The longest payload.
    pub fn max_size(&self) -> usize {
        match self {
            Payloads::Generated { size } => *size,
            Payloads::Given(given) => given.iter().map(Vec::len).max().unwrap_or(0),
        }
    }

    /// The mean payload size over one cycle of the given payloads (or the generated size).
    pub fn mean_size(&self) -> f64 {
        match self {
            Payloads::Generated { size } => *size as f64,
            Payloads::Given(given) => {
                given.iter().map(Vec::len).sum::<usize>() as f64 / given.len().max(1) as f64
            }
        }
    }
}

/// One message's payload: generated, or borrowed from the given payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Computed from (connection, sequence, size).
    Generated(Generated),
    /// A payload of `--payload-file`.
    Given(&'a [u8]),
}

impl Message<'static> {
    /// Generated message `seq` of connection `connection`, `size` payload bytes.
    pub fn new(connection: u32, seq: u64, size: usize) -> Self {
        Message::Generated(Generated::new(connection, seq, size))
    }
}

impl Message<'_> {
    /// The payload length.
    pub fn size(&self) -> usize {
        match self {
            Message::Generated(g) => g.size(),
            Message::Given(bytes) => bytes.len(),
        }
    }

    /// Appends the payload to `out`.
    pub fn write_payload(&self, out: &mut Vec<u8>) {
        match self {
            Message::Generated(g) => g.write_payload(out),
            Message::Given(bytes) => out.extend_from_slice(bytes),
        }
    }

    /// Whether `bytes` are the payload's bytes starting at `offset` (a piece of a raw stream).
    pub fn matches_at(&self, offset: usize, bytes: &[u8]) -> bool {
        match self {
            Message::Generated(g) => g.matches_at(offset, bytes),
            Message::Given(given) => given.get(offset..offset + bytes.len()) == Some(bytes),
        }
    }

    /// How many of `bytes` are the payload's bytes from `offset` on: the longest matching start.
    pub fn matched_len(&self, offset: usize, bytes: &[u8]) -> usize {
        match self {
            Message::Generated(g) => g.matched_len(offset, bytes),
            Message::Given(given) => common_len(given.get(offset..).unwrap_or_default(), bytes),
        }
    }

    /// Whether `reply` is a correct echo of this message.
    pub fn is_echo(&self, reply: &[u8]) -> bool {
        reply.len() == self.size() && self.matches_at(0, reply)
    }

    /// Whether `reply` is `[<ctime>] payload` for this message.
    pub fn is_timestamped(&self, reply: &[u8]) -> bool {
        let Some((prefix, payload)) = reply.split_at_checked(TIMESTAMP_PREFIX_LEN) else {
            return false;
        };
        prefix[0] == b'['
            && &prefix[25..] == b"] "
            && looks_like_ctime(&prefix[1..25])
            && self.is_echo(payload)
    }

    /// The payload as text, for a mismatch report.
    pub fn to_text(&self) -> String {
        let mut out = Vec::with_capacity(self.size());
        self.write_payload(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `Www Mmm dd hh:mm:ss yyyy`, as C's `ctime()` writes it (the day padded with a space).
pub fn looks_like_ctime(text: &[u8]) -> bool {
    const DAYS: [&[u8]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let digit = |i: usize| text[i].is_ascii_digit();
    text.len() == 24
        && DAYS.contains(&&text[0..3])
        && text[3] == b' '
        && MONTHS.contains(&&text[4..7])
        && text[7] == b' '
        && matches!(
            (text[8], text[9]),
            (b' ', b'1'..=b'9') | (b'1'..=b'3', b'0'..=b'9')
        )
        && text[10] == b' '
        && digit(11)
        && digit(12)
        && text[13] == b':'
        && digit(14)
        && digit(15)
        && text[16] == b':'
        && digit(17)
        && digit(18)
        && text[19] == b' '
        && (20..24).all(digit)
}

/// Up to 80 characters of `bytes`, for a mismatch report.
pub fn preview(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(80)];
    let more = if bytes.len() > 80 { "…" } else { "" };
    format!(
        "{:?}{more} ({} bytes)",
        String::from_utf8_lossy(cut),
        bytes.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(connection: u32, seq: u64, size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        Message::new(connection, seq, size).write_payload(&mut out);
        out
    }

    /// The payload as the module doc defines it, one byte at a time.
    fn payload_by_definition(connection: u32, seq: u64, size: usize) -> Vec<u8> {
        let header = Generated::new(connection, seq, size).header;
        (0..size)
            .map(|i| {
                if size < HEADER_LEN {
                    header[HEADER_LEN - 1 - size + i]
                } else if i < HEADER_LEN {
                    header[i]
                } else {
                    b'a' + ((seq + i as u64) % 26) as u8
                }
            })
            .collect()
    }

    #[test]
    fn a_payload_tells_its_sequence_number() {
        for size in [1, 4, 16, 17, 25, 26, 64, 4096] {
            let payloads = Payloads::Generated { size };
            for seq in [0, 1, 15, 16, 17, 255, 256, 70_000] {
                let found = payloads.sequence_in(&payload(7, seq, size), seq + 3);
                assert_eq!(found, Some(seq), "size {size} seq {seq}");
            }
            assert_eq!(payloads.sequence_in(&payload(7, 3, size + 1), 10), None);
        }
        // One hex digit says the number modulo 16: the latest below 40 that ends in it.
        let short = Payloads::Generated { size: 1 };
        assert_eq!(short.sequence_in(&payload(7, 1, 1), 40), Some(33));
        assert_eq!(
            short.sequence_in(&payload(7, 1, 1), 1),
            None,
            "none below 1"
        );
        assert_eq!(
            Payloads::Generated { size: 0 }.sequence_in(b"", 10),
            None,
            "no digits"
        );
        let given = Payloads::Given(Arc::new(vec![b"0000000000000001".to_vec()]));
        assert_eq!(given.sequence_in(b"0000000000000001", 10), None);
    }

    #[test]
    fn payload_and_pieces_follow_the_definition() {
        for size in [0, 1, 25, 26, 27, 64, 1013, 1014, 1015, 4096, 70_000] {
            for seq in [0, 1, 25, 26, 12_345] {
                let expected = payload_by_definition(9, seq, size);
                assert_eq!(payload(9, seq, size), expected, "size {size} seq {seq}");
                let message = Message::new(9, seq, size);
                for cut in [0, 1, 13, 25, 26, 27, 1000, 2100] {
                    let cut = cut.min(size);
                    assert!(message.matches_at(0, &expected[..cut]));
                    assert!(message.matches_at(cut, &expected[cut..]));
                    if cut < size {
                        let mut wrong = expected[cut..].to_vec();
                        let last = wrong.len() - 1;
                        wrong[last] ^= 1;
                        assert!(!message.matches_at(cut, &wrong), "size {size} cut {cut}");
                    }
                }
            }
        }
    }

    #[test]
    fn payload_names_connection_and_sequence() {
        let bytes = payload(42, 17, 64);
        assert_eq!(bytes.len(), 64);
        assert!(bytes.starts_with(b"0000002a:0000000000000011:"));
        assert!(!bytes.contains(&b'\n'));
        assert!(Message::new(42, 17, 64).is_echo(&bytes));
    }

    #[test]
    fn every_size_round_trips_and_neighbours_differ() {
        for size in [0, 1, 2, 5, 25, 26, 27, 100, 5000] {
            let a = payload(1, 7, size);
            assert_eq!(a.len(), size);
            assert!(Message::new(1, 7, size).is_echo(&a));
            if size > 0 {
                assert_ne!(a, payload(1, 8, size), "size {size}");
                assert!(!Message::new(1, 8, size).is_echo(&a), "size {size}");
            }
        }
    }

    #[test]
    fn a_flipped_byte_or_a_wrong_length_is_caught() {
        let message = Message::new(3, 99, 64);
        let mut bytes = payload(3, 99, 64);
        assert!(!message.is_echo(&bytes[..63]));
        bytes[40] ^= 1;
        assert!(!message.is_echo(&bytes));
        assert!(!Message::new(4, 99, 64).is_echo(&payload(3, 99, 64)));
    }

    #[test]
    fn pieces_of_a_stream_match_where_they_belong() {
        let message = Message::new(5, 1234, 100);
        let bytes = payload(5, 1234, 100);
        assert!(message.matches_at(0, &bytes[..10]));
        assert!(message.matches_at(10, &bytes[10..60]));
        assert!(message.matches_at(60, &bytes[60..]));
        assert!(!message.matches_at(11, &bytes[10..60]));
        assert!(!message.matches_at(60, &bytes[59..]));
    }

    #[test]
    fn a_payload_file_is_cut_by_the_framing_and_checked_like_the_rest() {
        let lines = Payloads::from_file(b"one\r\n\ntwo\n".to_vec(), FramingKind::Line).unwrap();
        assert_eq!(lines.max_size(), 3);
        assert_eq!(lines.message(0, 0), Message::Given(b"one"));
        assert_eq!(lines.message(7, 1), Message::Given(b"two"));
        assert_eq!(lines.message(7, 2), Message::Given(b"one"), "in turn");
        let whole = Payloads::from_file(b"a\nb".to_vec(), FramingKind::Raw).unwrap();
        let message = whole.message(0, 5);
        assert!(message.is_echo(b"a\nb"));
        assert!(message.matches_at(1, b"\nb"));
        assert!(!message.matches_at(2, b"bb"));
        assert!(!message.is_echo(b"a\nc"));
        for empty in [&b""[..], b"\n\n"] {
            assert!(Payloads::from_file(empty.to_vec(), FramingKind::Line).is_err());
        }
        assert!(Payloads::from_file(Vec::new(), FramingKind::Raw).is_err());
    }

    #[test]
    fn matched_len_stops_at_the_first_difference() {
        for size in [1, 20, 26, 64, 1100] {
            let message = Message::new(3, 29, size);
            let expected = payload(3, 29, size);
            for from in [0, 1, 10, 25, 26, 27, 30, 1050] {
                let from = from.min(size);
                let mut bytes = expected[from..].to_vec();
                assert_eq!(message.matched_len(from, &bytes), size - from);
                bytes.extend_from_slice(b"[extra");
                assert_eq!(
                    message.matched_len(from, &bytes),
                    size - from,
                    "past the end"
                );
                for wrong_at in [0, 1, 5, 40] {
                    if from + wrong_at < size {
                        let mut wrong = expected[from..].to_vec();
                        wrong[wrong_at] = b'[';
                        assert_eq!(message.matched_len(from, &wrong), wrong_at);
                    }
                }
            }
        }
        let given = Payloads::Given(Arc::new(vec![b"a[b".to_vec()]));
        assert_eq!(given.message(0, 0).matched_len(1, b"[bc"), 2);
        assert_eq!(given.message(0, 0).matched_len(4, b"x"), 0);
    }

    #[test]
    fn timestamp_replies_are_checked_for_shape_and_payload() {
        let message = Message::new(0, 1, 30);
        let mut good = b"[Wed Nov  4 09:05:01 2026] ".to_vec();
        good.extend_from_slice(&payload(0, 1, 30));
        assert!(message.is_timestamped(&good));
        let mut two_digit_day = b"[Sat Nov 14 09:05:01 2026] ".to_vec();
        two_digit_day.extend_from_slice(&payload(0, 1, 30));
        assert!(message.is_timestamped(&two_digit_day));
        for bad in [
            &b"[Wed Nov 04 09:05:01 2026] "[..], // zero-padded day
            b"[Wed Nob  4 09:05:01 2026] ",
            b"[Wed Nov  4 09-05:01 2026] ",
            b"(Wed Nov  4 09:05:01 2026) ",
        ] {
            let mut reply = bad.to_vec();
            reply.extend_from_slice(&payload(0, 1, 30));
            assert!(!message.is_timestamped(&reply), "{}", preview(bad));
        }
        let mut wrong_payload = b"[Wed Nov  4 09:05:01 2026] ".to_vec();
        wrong_payload.extend_from_slice(&payload(0, 2, 30));
        assert!(!message.is_timestamped(&wrong_payload));
        assert!(!message.is_timestamped(b"[short"));
    }
}
