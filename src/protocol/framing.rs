//! Where one message ends and the next begins.
//!
//! TCP carries a stream of bytes, not messages: one `send(b"hello")` may arrive as `he` + `llo`, and two
//! sends may arrive glued together in one read (the tutorials call this "sticky packets"). A *framing*
//! says how to cut the stream back into messages (*frames*):
//!
//! - `raw`: every read is one frame. It is what a blocking `recv(1024)` server does, and all echo needs.
//! - `line`: a frame ends at `\n`; a `\r` before it is accepted and kept out of the frame.
//! - `length`: each frame starts with its length as 4 bytes, big-endian.
//!
//! [`Decoder`] is pure: bytes in, frames out, no socket. When a frame lies wholly inside the bytes just
//! read it is handed out as a slice of them (no copy); only an unfinished frame is copied into the
//! decoder's own buffer, which therefore never holds more than one frame (`--max-frame`). A frame over
//! the limit is an error: in `line` framing the rest of that line is skipped and decoding goes on
//! (the reactor answers `error: ...`); in `length` framing the stream cannot be trusted any more, so the
//! decoder refuses everything after it (the reactor closes the connection).
//!
//! Each [`Frame`] carries both its `payload` and its `wire` bytes (payload plus terminator or prefix), so
//! that echo can return exactly what it was sent, in every framing.
//!
//! Next: `protocol/mod.rs`, which turns frames into replies.

use memchr::memchr;

/// How the byte stream is cut into frames (`--framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FramingKind {
    /// Each read is one frame.
    Raw,
    /// `\n`-terminated lines (`\r\n` accepted).
    Line,
    /// A 4-byte big-endian length, then that many bytes.
    Length,
}

/// Size of the length prefix in `length` framing.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// One message, cut out of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message itself: no terminator, no prefix.
    pub payload: &'a [u8],
    /// The bytes as they came over the wire: payload plus `\n`/`\r\n`, or prefix plus payload.
    pub wire: &'a [u8],
}

/// A stream that breaks the framing's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A line or frame longer than `--max-frame`.
    #[error("frame too long (limit {limit} bytes)")]
    TooLong {
        /// The limit that was passed, in bytes.
        limit: usize,
    },
}

/// A buffer for unfinished frames bigger than this is given back once its frame is done.
const KEPT_PARTIAL_BYTES: usize = 4 * 1024;

/// Cuts a byte stream into frames; keeps only the unfinished one.
#[derive(Debug)]
pub struct Decoder {
    kind: FramingKind,
    max_frame: usize,
    /// Wire bytes of an unfinished frame (or of the frame last handed out from here).
    partial: Vec<u8>,
    /// The frame last returned was lent from `partial`: clear it before decoding on.
    lent_partial: bool,
    /// What to do with the bytes that come next.
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Framing,
    /// Line framing, after an over-long line: drop bytes up to and including the next `\n`.
    SkippingLine,
    /// Length framing, after a bad prefix: the stream is lost, drop everything.
    Refusing,
}

impl Decoder {
    /// A decoder for `kind` that accepts payloads of at most `max_frame` bytes (at least 1).
    pub fn new(kind: FramingKind, max_frame: usize) -> Self {
        Decoder {
            kind,
            max_frame: max_frame.max(1),
            partial: Vec::new(),
            lent_partial: false,
            mode: Mode::Framing,
        }
    }

    /// The framing this decoder applies.
    pub fn kind(&self) -> FramingKind {
        self.kind
    }

    /// Bytes held for an unfinished frame.
    pub fn buffered(&self) -> usize {
        if self.lent_partial {
            0
        } else {
            self.partial.len()
        }
    }

    /// Memory held for unfinished frames: the buffer's capacity, which is what `--max-memory`
    /// counts.
    pub fn buffered_capacity(&self) -> usize {
        self.partial.capacity()
    }

    /// Takes the next frame from the front of `input` and advances `input` past what it used.
    ///
    /// `Ok(None)`: `input` is used up and no frame is complete yet (normal, not an error). Call again
    /// until it returns `Ok(None)`; the returned frame borrows from `input` or from the decoder.
    #[inline]
    pub fn next_frame<'s, 'i: 's>(
        &'s mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<Frame<'s>>, FrameError> {
        if self.lent_partial {
            self.lent_partial = false;
            self.partial.clear();
            if self.partial.capacity() > KEPT_PARTIAL_BYTES {
                self.partial = Vec::new(); // one long frame should not cost memory for ever
            }
        }
        match self.kind {
            FramingKind::Raw => Ok(self.next_raw(input)),
            FramingKind::Line => self.next_line(input),
            FramingKind::Length => self.next_length(input),
        }
    }

    /// At end of stream: a last line that had no `\n` is still a frame. Other framings have none.
    pub fn finish(&mut self) -> Option<Frame<'_>> {
        let unfinished = self.kind == FramingKind::Line
            && self.mode == Mode::Framing
            && !self.lent_partial
            && !self.partial.is_empty();
        if !unfinished {
            return None;
        }
        self.lent_partial = true;
        let payload = strip_line_end(&self.partial);
        Some(Frame {
            payload,
            wire: &self.partial,
        })
    }

    fn next_raw<'s, 'i: 's>(&'s mut self, input: &mut &'i [u8]) -> Option<Frame<'s>> {
        if input.is_empty() {
            return None;
        }
        let take = input.len().min(self.max_frame);
        let (frame, rest) = input.split_at(take);
        *input = rest;
        Some(Frame {
            payload: frame,
            wire: frame,
        })
    }

    fn next_line<'s, 'i: 's>(
        &'s mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<Frame<'s>>, FrameError> {
        loop {
            if input.is_empty() {
                return Ok(None);
            }
            let newline = memchr(b'\n', input);
            if self.mode == Mode::SkippingLine {
                match newline {
                    Some(at) => {
                        *input = &input[at + 1..];
                        self.mode = Mode::Framing;
                        continue;
                    }
                    None => {
                        *input = &[];
                        return Ok(None);
                    }
                }
            }
            // A payload of `max_frame` bytes may still be followed by a `\r` that is not part of it.
            let max_unfinished = self.max_frame + 1;
            let Some(at) = newline else {
                if self.partial.len() + input.len() > max_unfinished {
                    self.partial.clear();
                    self.mode = Mode::SkippingLine;
                    *input = &[];
                    return Err(self.too_long());
                }
                self.partial.extend_from_slice(input);
                *input = &[];
                return Ok(None);
            };
            let (line, rest) = input.split_at(at + 1);
            *input = rest;
            if self.partial.len() + line.len() - 1 > max_unfinished {
                self.partial.clear();
                return Err(self.too_long());
            }
            let wire: &'s [u8] = if self.partial.is_empty() {
                line
            } else {
                self.partial.extend_from_slice(line);
                self.lent_partial = true;
                &self.partial
            };
            let payload = strip_line_end(wire);
            if payload.len() > self.max_frame {
                return Err(FrameError::TooLong {
                    limit: self.max_frame,
                });
            }
            return Ok(Some(Frame { payload, wire }));
        }
    }

    fn next_length<'s, 'i: 's>(
        &'s mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<Frame<'s>>, FrameError> {
        if self.mode == Mode::Refusing {
            *input = &[];
            return Ok(None);
        }
        // The whole frame is in `input`: hand it out without copying.
        if self.partial.is_empty()
            && let Some(len) = self.prefix_in(input)?
            && input.len() >= LENGTH_PREFIX_BYTES + len
        {
            let (wire, rest) = input.split_at(LENGTH_PREFIX_BYTES + len);
            *input = rest;
            return Ok(Some(Frame {
                payload: &wire[LENGTH_PREFIX_BYTES..],
                wire,
            }));
        }
        // Otherwise gather the prefix, then the payload, in `partial`.
        if self.partial.len() < LENGTH_PREFIX_BYTES {
            let take = (LENGTH_PREFIX_BYTES - self.partial.len()).min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            *input = &input[take..];
            if self.partial.len() < LENGTH_PREFIX_BYTES {
                return Ok(None);
            }
        }
        let prefix = *self
            .partial
            .first_chunk::<LENGTH_PREFIX_BYTES>()
            .expect("gathered above");
        let Some(len) = self.prefix_in(&prefix)? else {
            return Ok(None);
        };
        let want = LENGTH_PREFIX_BYTES + len;
        let take = (want - self.partial.len()).min(input.len());
        self.partial.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.partial.len() < want {
            return Ok(None);
        }
        self.lent_partial = true;
        Ok(Some(Frame {
            payload: &self.partial[LENGTH_PREFIX_BYTES..],
            wire: &self.partial,
        }))
    }

    /// The payload length announced at the start of `bytes`, once all 4 prefix bytes are there.
    fn prefix_in(&mut self, bytes: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = bytes.first_chunk::<LENGTH_PREFIX_BYTES>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > self.max_frame {
            self.mode = Mode::Refusing;
            self.partial = Vec::new();
            return Err(self.too_long());
        }
        Ok(Some(len))
    }

    fn too_long(&self) -> FrameError {
        FrameError::TooLong {
            limit: self.max_frame,
        }
    }
}

/// A line's payload: without its `\n`, and without a `\r` just before it.
fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Appends one frame made of `parts` to `out`, framed as `kind` frames it.
pub fn encode(kind: FramingKind, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    if kind == FramingKind::Length {
        let prefix = u32::try_from(len).expect("a reply frame is smaller than 4 GiB");
        out.extend_from_slice(&prefix.to_be_bytes());
    }
    for part in parts {
        out.extend_from_slice(part);
    }
    if kind == FramingKind::Line {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` one by one, collecting payloads (`Ok`) and errors (`Err`).
    fn decode(kind: FramingKind, max: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut decoder = Decoder::new(kind, max);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            loop {
                match decoder.next_frame(&mut input) {
                    Ok(Some(frame)) => out.push(Ok(frame.payload.to_vec())),
                    Ok(None) => break,
                    Err(e) => out.push(Err(e)),
                }
            }
        }
        if let Some(last) = decoder.finish() {
            out.push(Ok(last.payload.to_vec()));
        }
        out
    }

    fn frames(list: &[&[u8]]) -> Vec<Result<Vec<u8>, FrameError>> {
        list.iter().map(|f| Ok(f.to_vec())).collect()
    }

    #[test]
    fn line_split_merged_crlf_and_empty() {
        let got = decode(
            FramingKind::Line,
            64,
            &[b"hel", b"lo\nwor", b"ld\r\n\n", b"a\nb\n"],
        );
        assert_eq!(got, frames(&[b"hello", b"world", b"", b"a", b"b"]));
    }

    #[test]
    fn line_wire_keeps_the_terminator_it_came_with() {
        let mut decoder = Decoder::new(FramingKind::Line, 64);
        let mut input: &[u8] = b"one\r\ntwo\n";
        assert_eq!(
            decoder.next_frame(&mut input).unwrap().unwrap().wire,
            b"one\r\n"
        );
        assert_eq!(
            decoder.next_frame(&mut input).unwrap().unwrap().wire,
            b"two\n"
        );
    }

    #[test]
    fn line_over_the_limit_is_one_error_then_decoding_goes_on() {
        let got = decode(FramingKind::Line, 4, &[b"ok\n12345", b"678", b"9\nfine\n"]);
        assert_eq!(
            got,
            vec![
                Ok(b"ok".to_vec()),
                Err(FrameError::TooLong { limit: 4 }),
                Ok(b"fine".to_vec())
            ]
        );
        // At the limit exactly, with or without `\r`, is fine; one more byte is not.
        let got = decode(FramingKind::Line, 4, &[b"1234\r", b"\n1234\n12345\n"]);
        assert_eq!(got[..2], frames(&[b"1234", b"1234"])[..]);
        assert_eq!(got[2], Err(FrameError::TooLong { limit: 4 }));
    }

    #[test]
    fn line_memory_stays_bounded_on_an_endless_line() {
        let mut decoder = Decoder::new(FramingKind::Line, 100);
        let chunk = [b'x'; 64];
        for _ in 0..1000 {
            let mut input = &chunk[..];
            while let Ok(Some(_)) = decoder.next_frame(&mut input) {}
            assert!(decoder.buffered() <= 101);
        }
    }

    #[test]
    fn last_line_without_newline_is_a_frame_at_end_of_stream() {
        assert_eq!(
            decode(FramingKind::Line, 64, &[b"a\nb"]),
            frames(&[b"a", b"b"])
        );
    }

    #[test]
    fn length_binary_split_and_merged() {
        let mut stream = Vec::new();
        encode(FramingKind::Length, &[b"\x00\xff\n"], &mut stream);
        encode(FramingKind::Length, &[b""], &mut stream);
        encode(FramingKind::Length, &[b"abc", b"def"], &mut stream);
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            let got = decode(FramingKind::Length, 64, &[a, b]);
            assert_eq!(
                got,
                frames(&[b"\x00\xff\n", b"", b"abcdef"]),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn length_over_the_limit_refuses_the_rest() {
        let got = decode(
            FramingKind::Length,
            4,
            &[b"\x00\x00\x00\x05hello\x00\x00\x00\x01x"],
        );
        assert_eq!(got, vec![Err(FrameError::TooLong { limit: 4 })]);
        // Also when the prefix arrives one byte at a time.
        let got = decode(
            FramingKind::Length,
            4,
            &[b"\x00", b"\x00", b"\x01", b"\x00", b"x"],
        );
        assert_eq!(got, vec![Err(FrameError::TooLong { limit: 4 })]);
    }

    #[test]
    fn raw_is_one_frame_per_read_cut_at_the_limit() {
        assert_eq!(
            decode(FramingKind::Raw, 4, &[b"abcdefg", b"h"]),
            frames(&[b"abcd", b"efg", b"h"])
        );
    }

    #[test]
    fn encode_frames_each_kind() {
        let mut out = Vec::new();
        encode(FramingKind::Line, &[b"[t] ", b"hi"], &mut out);
        encode(FramingKind::Raw, &[b"x"], &mut out);
        encode(FramingKind::Length, &[b"ab"], &mut out);
        assert_eq!(out, b"[t] hi\nx\x00\x00\x00\x02ab");
    }

    proptest! {
        /// However the stream is cut into reads, the same frames come out, and wire bytes
        /// concatenated give back the stream (so echo is byte-transparent).
        #[test]
        fn frames_do_not_depend_on_how_reads_cut_the_stream(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..12),
            cuts in proptest::collection::vec(0usize..400, 0..8),
            line in any::<bool>(),
        ) {
            let kind = if line { FramingKind::Line } else { FramingKind::Length };
            let messages: Vec<Vec<u8>> = messages
                .into_iter()
                .map(|m| if line { m.into_iter().filter(|&b| b != b'\n' && b != b'\r').collect() } else { m })
                .collect();
            let mut stream = Vec::new();
            for m in &messages {
                encode(kind, &[m], &mut stream);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.sort();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                chunks.push(&stream[start..cut]);
                start = cut;
            }
            let mut decoder = Decoder::new(kind, 64);
            let (mut payloads, mut wire) = (Vec::new(), Vec::new());
            for chunk in chunks {
                let mut input = chunk;
                while let Some(frame) = decoder.next_frame(&mut input).unwrap() {
                    payloads.push(frame.payload.to_vec());
                    wire.extend_from_slice(frame.wire);
                }
            }
            prop_assert_eq!(payloads, messages);
            prop_assert_eq!(wire, stream);
        }

        /// No input, however hostile, panics a decoder or grows it past one frame.
        #[test]
        fn any_bytes_are_safe(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..10)) {
            for kind in [FramingKind::Raw, FramingKind::Line, FramingKind::Length] {
                let mut decoder = Decoder::new(kind, 50);
                for chunk in &chunks {
                    let mut input = &chunk[..];
                    loop {
                        match decoder.next_frame(&mut input) {
                            Ok(Some(frame)) => prop_assert!(frame.payload.len() <= 50),
                            Ok(None) => break,
                            Err(_) => {}
                        }
                    }
                    prop_assert!(decoder.buffered() <= 54);
                }
            }
        }
    }
}
