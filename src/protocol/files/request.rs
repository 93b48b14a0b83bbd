//! The files protocol's words, and the decisions that need no disk: pure, tested with byte slices.
//!
//! A request is one line: `PUT <name> <size> [sha256]`, `GET <name> [offset]`, `LIST` or `QUIT`, at most
//! [`MAX_LINE_BYTES`] bytes before its `\n`. Commands are matched without regard to case, words are
//! separated by spaces. A *name* is 1 to [`MAX_NAME_BYTES`] bytes of `[A-Za-z0-9._-]` that does not
//! start with `.`: so a name can never hold a path separator, can never be `.` or `..`, and can never
//! be one of our hidden partial files, whose names start with [`PARTIAL_PREFIX`]. The partial file of
//! an upload carries the size and the digest it was started with
//! (`.partial-<size>-<sha256 hex>-<name>`, or `.partial-<size>-u-<name>` for an unverified `PUT`
//! without a digest): only a later `PUT` of the same name, size *and digest* resumes it. A `PUT`
//! that declares another digest gets a partial file of its own beside it, so nobody can extend or
//! destroy an upload that is not theirs ([`PartialKey`]).
//!
//! The tutorial client sends the file's size as bare digits, with no newline: [`classify_first`]
//! decides from a connection's first bytes which of the two conversations it is.
//!
//! Next: `disk.rs`, the one place that touches the folder.

use std::time::SystemTime;

/// Longest request line, in bytes, not counting the `\n`.
pub const MAX_LINE_BYTES: usize = 4096;
/// Longest name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// How the hidden partial file of an upload starts.
pub const PARTIAL_PREFIX: &str = ".partial-";
/// Most digits a size may have (u64::MAX has 20).
const MAX_DIGITS: usize = 20;

/// One request of named mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Store `size` bytes under `name` (resuming an interrupted upload of the same size and digest).
    Put {
        /// The file's name in the folder.
        name: &'a str,
        /// Its full size in bytes.
        size: u64,
        /// The sha256 of the whole file, checked before it is published; `None`: unverified.
        digest: Option<[u8; 32]>,
    },
    /// Send `name` from byte `offset` on.
    Get {
        /// The file's name in the folder.
        name: &'a str,
        /// The first byte wanted (0 without one).
        offset: u64,
    },
    /// One line per complete file, then `END`.
    List,
    /// `BYE`, then close.
    Quit,
}

/// Why a request line was refused: the words after `error: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not one of PUT, GET, LIST, QUIT.
    #[error("unknown command")]
    UnknownCommand,
    /// A name breaking the name rules.
    #[error("bad name")]
    BadName,
    /// A size that is not a decimal number of bytes.
    #[error("bad size")]
    BadSize,
    /// An offset that is not a decimal number of bytes.
    #[error("bad offset")]
    BadOffset,
    /// A digest that is not 64 hex digits.
    #[error("bad sha256")]
    BadDigest,
    /// Too few or too many words for the command.
    #[error("bad request (PUT <name> <size> [sha256], GET <name> [offset], LIST, QUIT)")]
    BadArguments,
}

/// Parses one request line (without its `\n`; a trailing `\r` is allowed). `Ok(None)`: a blank line.
pub fn parse_request(line: &[u8]) -> Result<Option<Request<'_>>, RequestError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let Some(command) = words.next() else {
        return Ok(None);
    };
    let args: Vec<&[u8]> = words.collect();
    let request = if command.eq_ignore_ascii_case(b"PUT") {
        let (name, size, digest) = match args[..] {
            [name, size] => (name, size, None),
            [name, size, digest] => (name, size, Some(digest)),
            _ => return Err(RequestError::BadArguments),
        };
        Request::Put {
            name: parse_name(name)?,
            size: parse_decimal(size).ok_or(RequestError::BadSize)?,
            digest: digest
                .map(|d| parse_digest(d).ok_or(RequestError::BadDigest))
                .transpose()?,
        }
    } else if command.eq_ignore_ascii_case(b"GET") {
        let (name, offset) = match args[..] {
            [name] => (name, 0),
            [name, offset] => (name, parse_decimal(offset).ok_or(RequestError::BadOffset)?),
            _ => return Err(RequestError::BadArguments),
        };
        Request::Get {
            name: parse_name(name)?,
            offset,
        }
    } else if command.eq_ignore_ascii_case(b"LIST") || command.eq_ignore_ascii_case(b"QUIT") {
        if !args.is_empty() {
            return Err(RequestError::BadArguments);
        }
        if command.eq_ignore_ascii_case(b"LIST") {
            Request::List
        } else {
            Request::Quit
        }
    } else {
        return Err(RequestError::UnknownCommand);
    };
    Ok(Some(request))
}

/// Whether `name` may name a file: 1–128 bytes of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn is_valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && name[0] != b'.'
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse_name(name: &[u8]) -> Result<&str, RequestError> {
    if !is_valid_name(name) {
        return Err(RequestError::BadName);
    }
    std::str::from_utf8(name).map_err(|_| RequestError::BadName) // ASCII: never fails
}

/// A decimal number of at most 20 digits that fits in a `u64`; nothing else (no sign, no spaces).
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A sha256 written as 64 hex digits (either case).
pub fn parse_digest(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = (high * 16 + low) as u8;
    }
    Some(digest)
}

/// What a connection's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// Only digits: the tutorial client's file size.
    Tutorial(u64),
    /// Starts with a digit but is not a size (digits glued to the body, or too many): refused.
    BadSize,
    /// Anything else: request lines.
    Named,
}

/// Decides the conversation from the first bytes a client sent (one read, not empty).
pub fn classify_first(bytes: &[u8]) -> FirstBytes {
    match bytes.first() {
        Some(b) if b.is_ascii_digit() => match parse_decimal(bytes) {
            Some(size) => FirstBytes::Tutorial(size),
            None => FirstBytes::BadSize,
        },
        _ => FirstBytes::Named,
    }
}

/// What binds a partial file to one upload: the name, the size and the declared digest. Its file
/// name in the folder says all three, so a restarted server knows them from a listing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartialKey {
    /// The name the file gets when complete.
    pub name: String,
    /// The full size declared.
    pub size: u64,
    /// The sha256 declared; `None`: an unverified `PUT` (the tag `u`).
    pub digest: Option<[u8; 32]>,
}

impl PartialKey {
    /// The hidden file this upload is written to until it is complete:
    /// `.partial-<size>-<sha256 hex | u>-<name>`.
    pub fn file_name(&self) -> String {
        let tag = self.digest.map_or_else(|| "u".to_string(), |d| hex(&d));
        format!("{PARTIAL_PREFIX}{}-{tag}-{}", self.size, self.name)
    }

    /// The key a partial file's name spells, if `file` is one of ours.
    pub fn parse(file: &str) -> Option<PartialKey> {
        let rest = file.strip_prefix(PARTIAL_PREFIX)?;
        let (size, rest) = rest.split_once('-')?;
        let (tag, name) = rest.split_once('-')?;
        let digest = match tag {
            "u" => None,
            _ => Some(parse_digest(tag.as_bytes())?),
        };
        let key = PartialKey {
            name: name.to_string(),
            size: parse_decimal(size.as_bytes())?,
            digest,
        };
        // Only the canonical spelling (lowercase hex) is ours: one key, one file name.
        (is_valid_name(name.as_bytes()) && key.file_name() == file).then_some(key)
    }
}

/// Where a `PUT` of `size` bytes starts, given the length of the partial file already held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// No partial file: create one, send everything.
    Fresh,
    /// Resume: the first `n` bytes are held.
    Resume(u64),
    /// The partial file is longer than the size (not ours to trust): delete it, start fresh.
    Discard,
}

/// The resume decision: FTP's `REST`, tus's `Upload-Offset`.
pub fn start_of(held: Option<u64>, size: u64) -> Start {
    match held {
        None => Start::Fresh,
        Some(held) if held <= size => Start::Resume(held),
        Some(_) => Start::Discard,
    }
}

/// Whether `needed` more bytes fit under `quota` (0: no quota) when the folder holds `used` bytes
/// and uploads under way will still bring `reserved`. `Err(free)`: they do not; `free` bytes do.
pub fn check_quota(quota: u64, used: u64, reserved: u64, needed: u64) -> Result<(), u64> {
    if quota == 0 {
        return Ok(());
    }
    let free = quota.saturating_sub(used.saturating_add(reserved));
    if needed > free { Err(free) } else { Ok(()) }
}

/// The tutorial upload's file name: `upload-20261125T034510Z-<id>.bin`, the time in UTC.
pub fn tutorial_name(now: SystemTime, id: u64) -> String {
    let stamp = jiff::Timestamp::try_from(now)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| "00000000T000000Z".to_string());
    format!("upload-{stamp}-{id}.bin")
}

/// Bytes as lowercase hex (a sha256 digest on the wire).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 15)] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(b"PUT a.txt 12"),
            Ok(Some(Request::Put {
                name: "a.txt",
                size: 12,
                digest: None
            }))
        );
        let digest = [0xab; 32];
        let line = format!("PUT a.txt 12 {}", "AB".repeat(32));
        assert_eq!(
            parse_request(line.as_bytes()),
            Ok(Some(Request::Put {
                name: "a.txt",
                size: 12,
                digest: Some(digest)
            }))
        );
        assert_eq!(
            parse_request(b"get a.txt\r"),
            Ok(Some(Request::Get {
                name: "a.txt",
                offset: 0
            }))
        );
        assert_eq!(
            parse_request(b"GET  a  7"),
            Ok(Some(Request::Get {
                name: "a",
                offset: 7
            }))
        );
        assert_eq!(parse_request(b"LIST"), Ok(Some(Request::List)));
        assert_eq!(parse_request(b"quit\r"), Ok(Some(Request::Quit)));
        assert_eq!(parse_request(b""), Ok(None));
        assert_eq!(parse_request(b"  \r"), Ok(None));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(
            parse_request(b"DELETE x"),
            Err(RequestError::UnknownCommand)
        );
        assert_eq!(parse_request(b"PUT x"), Err(RequestError::BadArguments));
        assert_eq!(parse_request(b"PUT x 1 2"), Err(RequestError::BadDigest));
        let too_many = format!("PUT x 1 {} y", "0".repeat(64));
        assert_eq!(
            parse_request(too_many.as_bytes()),
            Err(RequestError::BadArguments)
        );
        let not_hex = format!("PUT x 1 {}", "g".repeat(64));
        assert_eq!(
            parse_request(not_hex.as_bytes()),
            Err(RequestError::BadDigest)
        );
        assert_eq!(parse_request(b"PUT x -1"), Err(RequestError::BadSize));
        assert_eq!(parse_request(b"PUT x 1e3"), Err(RequestError::BadSize));
        assert_eq!(
            parse_request(b"PUT x 99999999999999999999"),
            Err(RequestError::BadSize)
        );
        assert_eq!(parse_request(b"GET x y"), Err(RequestError::BadOffset));
        assert_eq!(parse_request(b"LIST all"), Err(RequestError::BadArguments));
        assert_eq!(
            parse_request(b"\xff\xfe"),
            Err(RequestError::UnknownCommand)
        );
    }

    #[test]
    fn hostile_names_are_refused() {
        for name in [
            &b"../x"[..],
            b"/etc/passwd",
            b"a/b",
            b".hidden",
            b".",
            b"..",
            b"",
            b"a b",
            b"a\0b",
            b"caf\xc3\xa9",
            b".partial-3-x",
            &[b'a'; 129],
            &[b'a'; 4096],
        ] {
            assert!(!is_valid_name(name), "{:?}", String::from_utf8_lossy(name));
            let mut line = b"PUT ".to_vec();
            line.extend_from_slice(name);
            line.extend_from_slice(b" 1");
            assert!(parse_request(&line).is_err());
        }
        for name in [&b"a"[..], b"A-z_0.9", b"x..y", b"file.", &[b'a'; 128]] {
            assert!(is_valid_name(name), "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"12 "), None);
    }

    #[test]
    fn first_bytes_choose_the_conversation() {
        assert_eq!(classify_first(b"1048576"), FirstBytes::Tutorial(1 << 20));
        assert_eq!(classify_first(b"0"), FirstBytes::Tutorial(0));
        assert_eq!(classify_first(b"12\n"), FirstBytes::BadSize);
        assert_eq!(classify_first(b"12abc"), FirstBytes::BadSize);
        assert_eq!(classify_first(b"PUT a 1\n"), FirstBytes::Named);
        assert_eq!(classify_first(b"L"), FirstBytes::Named);
    }

    #[test]
    fn partial_names_round_trip_and_stay_hidden() {
        let unverified = PartialKey {
            name: "a.bin".into(),
            size: 42,
            digest: None,
        };
        assert_eq!(unverified.file_name(), ".partial-42-u-a.bin");
        let verified = PartialKey {
            digest: Some([0x0f; 32]),
            ..unverified.clone()
        };
        let file = verified.file_name();
        assert_eq!(file, format!(".partial-42-{}-a.bin", "0f".repeat(32)));
        for key in [&unverified, &verified] {
            assert!(!is_valid_name(key.file_name().as_bytes()));
            assert_eq!(PartialKey::parse(&key.file_name()).as_ref(), Some(key));
        }
        let dashed = PartialKey::parse(".partial-4-u-2-x").unwrap();
        assert_eq!((dashed.size, dashed.name.as_str()), (4, "2-x"));
        let upper = format!(".partial-42-{}-a.bin", "0F".repeat(32));
        for foreign in [
            ".partial-4-u-.x",
            ".partial-x-u-y",
            ".partial-4-abc-y",
            ".partial-4-y",
            "a.bin",
            upper.as_str(),
        ] {
            assert_eq!(PartialKey::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn resume_decisions() {
        assert_eq!(start_of(None, 10), Start::Fresh);
        assert_eq!(start_of(Some(0), 10), Start::Resume(0));
        assert_eq!(start_of(Some(4), 10), Start::Resume(4));
        assert_eq!(start_of(Some(10), 10), Start::Resume(10));
        assert_eq!(start_of(Some(11), 10), Start::Discard);
    }

    #[test]
    fn quota_counts_what_is_held_and_what_is_still_to_come() {
        assert_eq!(check_quota(0, u64::MAX, u64::MAX, u64::MAX), Ok(()));
        assert_eq!(check_quota(100, 50, 20, 30), Ok(()));
        assert_eq!(check_quota(100, 50, 20, 31), Err(30));
        assert_eq!(check_quota(100, 150, 0, 1), Err(0));
    }

    #[test]
    fn tutorial_names_carry_utc_time_and_an_id() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_578_310);
        assert_eq!(tutorial_name(now, 7), "upload-20261125T034510Z-7.bin");
        assert!(is_valid_name(tutorial_name(now, 7).as_bytes()));
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
