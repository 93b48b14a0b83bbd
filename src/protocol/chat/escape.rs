//! What a member says, made safe to show on everyone else's terminal.
//!
//! A chat line goes from one member's keyboard to the others' *terminals*, and a terminal does
//! not only print bytes: it obeys some of them. `\r` moves the cursor back to the start of the
//! line, so `hi\r* alice left (reset)` would show a system line that the server never sent. ESC
//! starts a control sequence: colours, cursor moves, a new window title, or (OSC 52) a write to
//! the reader's clipboard. Telnet clients act on byte 0xFF (IAC). C1 controls (U+0080 to U+009F)
//! are the 8-bit forms of ESC sequences, which some terminals obey too. And bytes that are not
//! UTF-8 leave the terminal's decoder in a state the next bytes do not expect.
//!
//! So before a line is shared, [`escape_into`] shows each of those bytes as the four visible
//! characters `\xNN` (two lower-case hex digits), and passes everything else as it came:
//!
//! | the body holds | shown as |
//! |---|---|
//! | a C0 control byte 0x00 to 0x1F, except TAB | that byte as `\xNN`: `\r` is `\x0d`, ESC is `\x1b` |
//! | DEL, 0x7F | `\x7f` |
//! | a C1 control U+0080 to U+009F, written as UTF-8 (`C2 80` to `C2 9F`) | each of its two bytes: U+009B is `\xc2\x9b` |
//! | a byte that is not part of valid UTF-8 (a raw 0x80 to 0x9F, 0xFF, a cut sequence) | that byte as `\xNN`: IAC is `\xff` |
//! | TAB, printable ASCII, any other valid UTF-8 (accents, CJK, emoji) | unchanged |
//!
//! Why `\xNN` for everything rather than U+FFFD for invalid bytes: one form is easier to read and
//! to test, and it keeps which byte it was (U+FFFD would hide it). Valid UTF-8 is cut into
//! characters by the standard library ([`slice::utf8_chunks`]), so a multi-byte character is
//! never split and an invalid byte never swallows the valid ones after it.
//!
//! The escape is for the eyes, not a reversible encoding: a backslash passes as it is, so a
//! member who types the four characters `\x1b` is shown the same as one who sent ESC. What
//! matters is that neither can act on a terminal. The output is always valid UTF-8 with no
//! control character but TAB, and never holds `\n`: a member's line stays one line, whatever
//! the framing.
//!
//! This is chat's rule only: echo and timestamp give back bytes exactly as they came.
//!
//! Next: `who.rs`, a list of thousands of names, made as the reader reads it.

/// Appends `body` to `out` with every control byte, every C1 control and every byte outside valid
/// UTF-8 shown as `\xNN` (see the module docs); everything else unchanged.
pub fn escape_into(body: &[u8], out: &mut Vec<u8>) {
    if body.iter().all(|&b| is_plain_ascii(b)) {
        out.extend_from_slice(body); // the common case: nothing to look at twice
        return;
    }
    for chunk in body.utf8_chunks() {
        let valid = chunk.valid();
        let mut kept_from = 0;
        for (at, character) in valid.char_indices() {
            if character.is_control() && character != '\t' {
                out.extend_from_slice(&valid.as_bytes()[kept_from..at]);
                let end = at + character.len_utf8();
                for &byte in &valid.as_bytes()[at..end] {
                    push_hex(byte, out);
                }
                kept_from = end;
            }
        }
        out.extend_from_slice(&valid.as_bytes()[kept_from..]);
        for &byte in chunk.invalid() {
            push_hex(byte, out);
        }
    }
}

/// TAB or printable ASCII (space to `~`): passed on as it is.
fn is_plain_ascii(byte: u8) -> bool {
    byte == b'\t' || (b' '..=b'~').contains(&byte)
}

/// `\xNN`, two lower-case hex digits.
fn push_hex(byte: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(byte >> 4)],
        HEX[usize::from(byte & 0xf)],
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(body: &[u8]) -> String {
        let mut out = Vec::new();
        escape_into(body, &mut out);
        String::from_utf8(out).expect("the escaped form is UTF-8")
    }

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        assert_eq!(escaped(b"hi\r* alice left"), r"hi\x0d* alice left");
        assert_eq!(
            escaped(b"\x1b[2J\x1b]52;c;aGk=\x07"),
            r"\x1b[2J\x1b]52;c;aGk=\x07"
        );
        assert_eq!(escaped(b"a\nb\0c\x7f"), r"a\x0ab\x00c\x7f");
        assert_eq!(
            escaped(b"\xff\xfb\x01"),
            r"\xff\xfb\x01",
            "telnet IAC WILL ECHO"
        );
    }

    #[test]
    fn c1_controls_are_shown_byte_by_byte_in_either_form() {
        // U+009B (CSI) as UTF-8, and the same value as a raw byte (not UTF-8 at all).
        assert_eq!(escaped("x\u{9b}31m".as_bytes()), r"x\xc2\x9b31m");
        assert_eq!(escaped(b"x\x9b31m"), r"x\x9b31m");
        assert_eq!(
            escaped("\u{80}\u{9f}\u{a0}".as_bytes()),
            "\\xc2\\x80\\xc2\\x9f\u{a0}"
        );
    }

    #[test]
    fn invalid_utf8_is_shown_and_the_text_around_it_kept() {
        assert_eq!(escaped(b"caf\xe9 ok"), r"caf\xe9 ok");
        assert_eq!(escaped(b"cut \xe2\x82 end"), r"cut \xe2\x82 end");
        assert_eq!(escaped(b"\xc3\xa9\xc3"), r"é\xc3");
        assert_eq!(
            escaped(b"\xed\xa0\x80"),
            r"\xed\xa0\x80",
            "a UTF-16 surrogate"
        );
    }

    #[test]
    fn text_passes_unchanged() {
        for text in [
            "plain words",
            "tab\tok",
            "café naïve",
            "日本語のテキスト",
            "🦀 ✓",
            r"C:\x1b",
        ] {
            assert_eq!(escaped(text.as_bytes()), text);
        }
    }

    proptest! {
        #[test]
        fn any_bytes_come_out_as_safe_utf8(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut out = Vec::new();
            escape_into(&body, &mut out);
            let text = std::str::from_utf8(&out).expect("valid UTF-8");
            prop_assert!(text.chars().all(|c| c == '\t' || !c.is_control()), "{text:?}");
            prop_assert!(!out.contains(&0xff) && !out.contains(&b'\n') && !out.contains(&b'\r'));
        }

        #[test]
        fn text_without_controls_is_unchanged(text in "[^\\p{Cc}]{0,40}|[\\t -~]{0,40}") {
            prop_assert_eq!(escaped(text.as_bytes()), text);
        }
    }
}
