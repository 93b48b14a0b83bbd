//! The PROXY protocol header: the real client's address, as a load balancer tells it.
//!
//! Behind HAProxy, nginx or a cloud load balancer every connection comes from the balancer, so
//! logs, access lists and per-source limits would all see one address. A balancer configured
//! with `send-proxy` (v1, one text line) or `send-proxy-v2` (binary) starts each connection with
//! a header naming the client it is relaying ([HAProxy's spec]):
//!
//! ```text
//! v1: PROXY TCP4 192.0.2.7 198.51.100.1 51234 7007\r\n        (at most 107 bytes)
//! v2: \r\n\r\n\0\r\nQUIT\n, version|command, family|protocol, length (u16), addresses, TLVs
//! ```
//!
//! Parsing is the [`ppp`] crate's; this file adds what a server on a readiness loop needs
//! around it. [`HeaderReader`] is sans-IO: the reactor hands it each read as it comes, and it
//! answers "need more", "here is the header, and this many bytes of that read were its end" (the
//! rest is the client's first data, which must not be lost), or "malformed". The header may come
//! split across any number of reads, down to one byte each. It keeps at most [`MAX_HEADER`]
//! bytes: a v2 header announcing more than [`MAX_V2_PAYLOAD`] bytes of addresses and TLVs is
//! refused as soon as its length field is in, so a peer can never make us buffer more.
//!
//! A `LOCAL` header (v2's `LOCAL` command, v1's `UNKNOWN`: the balancer's own health checks)
//! carries no client: the connection is the balancer's, and keeps the socket's address. So does
//! a header for a Unix or unspecified address family.
//!
//! [HAProxy's spec]: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
//!
//! Next: back to `server/reactor/proxied.rs`, which feeds it; then `server/reactor/memory.rs`.

use std::net::SocketAddr;

use ppp::PartialResult;
use ppp::{HeaderResult, v1, v2};

/// The 12-byte signature that starts a v2 header.
const V2_SIGNATURE: &[u8] = v2::PROTOCOL_PREFIX;
/// A v2 header's fixed part: signature, version and command, family and protocol, length.
const V2_FIXED: usize = 16;
/// Most bytes of addresses and TLVs a v2 header may announce. The largest address block is 216
/// bytes (two Unix paths); HAProxy's TLVs (ALPN, authority, the TLS details, a cloud's endpoint
/// id) fit easily in the rest.
pub const MAX_V2_PAYLOAD: usize = 1024;
/// The longest v1 header, `\r\n` included (the spec's figure).
pub const MAX_V1: usize = 107;
/// Most bytes a [`HeaderReader`] ever holds.
pub const MAX_HEADER: usize = V2_FIXED + MAX_V2_PAYLOAD;

/// Who the header says the connection is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// Relayed for this client: its address is the connection's from now on.
    Client(SocketAddr),
    /// The balancer's own connection (`LOCAL`, `UNKNOWN`, or no IP address carried): it keeps
    /// the socket's address.
    Local,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// A v2 header announcing more than [`MAX_V2_PAYLOAD`] bytes.
    TooLong(usize),
    /// Not a header, or a broken one: the parser's words.
    Invalid(String),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::TooLong(len) => write!(
                f,
                "v2 header announces {len} bytes (at most {MAX_V2_PAYLOAD})"
            ),
            Malformed::Invalid(why) => f.write_str(why),
        }
    }
}

/// What a [`HeaderReader`] made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not a whole header yet, and nothing wrong so far: read more.
    NeedMore,
    /// The header is complete. Its last `consumed` bytes were at the start of the chunk just
    /// pushed; the rest of that chunk is the client's data.
    Done {
        /// Who the connection is from.
        carried: Carried,
        /// How many bytes of the last chunk belonged to the header.
        consumed: usize,
    },
    /// Not a PROXY header: the connection is to be closed.
    Malformed(Malformed),
}

/// Collects a PROXY header from reads of any size; holds at most [`MAX_HEADER`] bytes.
#[derive(Debug, Default)]
pub struct HeaderReader {
    /// The header's bytes so far (the start of a header that did not fit in one read).
    buffered: Vec<u8>,
}

impl HeaderReader {
    /// A reader that has seen nothing yet.
    pub fn new() -> HeaderReader {
        HeaderReader::default()
    }

    /// Bytes held, for the memory accounting.
    pub fn buffered(&self) -> usize {
        self.buffered.capacity()
    }

    /// Takes the next chunk read from the socket.
    pub fn push(&mut self, chunk: &[u8]) -> Progress {
        if self.buffered.is_empty() {
            // The usual case: the whole header came in one read, and nothing is copied.
            return match judge(chunk) {
                Judged::NeedMore => {
                    self.buffered.extend_from_slice(chunk);
                    Progress::NeedMore
                }
                Judged::Done { carried, len } => Progress::Done {
                    carried,
                    consumed: len,
                },
                Judged::Malformed(why) => Progress::Malformed(why),
            };
        }
        let before = self.buffered.len();
        // Never more than a header can be: what goes past that is the client's, or garbage.
        let take = chunk.len().min(MAX_HEADER - before);
        self.buffered.extend_from_slice(&chunk[..take]);
        match judge(&self.buffered) {
            Judged::NeedMore if take < chunk.len() => {
                // `judge` decides within MAX_HEADER bytes; should it not, never wait on.
                Progress::Malformed(Malformed::Invalid("header too long".into()))
            }
            Judged::NeedMore => Progress::NeedMore,
            Judged::Done { carried, len } => {
                self.buffered = Vec::new();
                Progress::Done {
                    carried,
                    consumed: len - before,
                }
            }
            Judged::Malformed(why) => Progress::Malformed(why),
        }
    }
}

/// What the bytes at the start of a connection are, if they are enough to tell.
enum Judged {
    NeedMore,
    Done { carried: Carried, len: usize },
    Malformed(Malformed),
}

/// Parses `bytes`, the start of a connection, bounding a v2 header before `ppp` sees it.
fn judge(bytes: &[u8]) -> Judged {
    if bytes.len() >= V2_FIXED && bytes.starts_with(V2_SIGNATURE) {
        let len = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        if len > MAX_V2_PAYLOAD {
            return Judged::Malformed(Malformed::TooLong(len));
        }
    }
    // ppp judges a v1 line cut after a space ("PROXY TCP4 192.0.2.7 ") as broken, not as
    // incomplete: a v1 header is given to it only once its line has ended.
    if !V2_SIGNATURE.starts_with(&bytes[..bytes.len().min(V2_SIGNATURE.len())])
        && !bytes[..bytes.len().min(MAX_V1)].contains(&b'\n')
    {
        let prefix = &b"PROXY "[..];
        let could_be_v1 = bytes.starts_with(prefix) || prefix.starts_with(bytes);
        return if !could_be_v1 {
            Judged::Malformed(Malformed::Invalid("not a PROXY header".into()))
        } else if bytes.len() >= MAX_V1 {
            Judged::Malformed(Malformed::Invalid("v1: header too long".into()))
        } else {
            Judged::NeedMore
        };
    }
    let parsed = HeaderResult::parse(bytes);
    if parsed.is_incomplete() {
        // A v2 header is bounded above; a v1 header that is not whole by its 107th byte never
        // will be (ppp says "incomplete" for `PROXY TCP4\r\n`, as it would for its start).
        if bytes.len() >= MAX_V1 && !bytes.starts_with(V2_SIGNATURE) {
            return Judged::Malformed(Malformed::Invalid("v1: header too long".into()));
        }
        return Judged::NeedMore;
    }
    match parsed {
        HeaderResult::V1(Ok(header)) => Judged::Done {
            carried: match header.addresses {
                v1::Addresses::Tcp4(a) => {
                    Carried::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                v1::Addresses::Tcp6(a) => {
                    Carried::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                v1::Addresses::Unknown => Carried::Local,
            },
            len: header.header.len(),
        },
        HeaderResult::V2(Ok(header)) => Judged::Done {
            carried: match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Carried::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Carried::Client(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => Carried::Local,
            },
            len: header.len(),
        },
        HeaderResult::V1(Err(e)) => Judged::Malformed(Malformed::Invalid(format!("v1: {e}"))),
        HeaderResult::V2(Err(e)) => Judged::Malformed(Malformed::Invalid(format!("v2: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V1: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 7007\r\n";

    /// A v2 PROXY header for `source` (IPv4) to 198.51.100.1:7007, with `tlv` bytes after.
    fn v2(command: u8, source: [u8; 4], port: u16, tlv: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(0x11); // IPv4, stream
        header.extend_from_slice(&((12 + tlv.len()) as u16).to_be_bytes());
        header.extend_from_slice(&source);
        header.extend_from_slice(&[198, 51, 100, 1]);
        header.extend_from_slice(&port.to_be_bytes());
        header.extend_from_slice(&7007u16.to_be_bytes());
        header.extend_from_slice(tlv);
        header
    }

    fn client(text: &str) -> Carried {
        Carried::Client(text.parse().unwrap())
    }

    #[test]
    fn a_v1_header_in_one_read_leaves_the_data_after_it() {
        let mut chunk = V1.to_vec();
        chunk.extend_from_slice(b"hello\n");
        let progress = HeaderReader::new().push(&chunk);
        assert_eq!(
            progress,
            Progress::Done {
                carried: client("192.0.2.7:51234"),
                consumed: V1.len()
            }
        );
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let tcp6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 7\r\nx";
        assert_eq!(
            HeaderReader::new().push(tcp6),
            Progress::Done {
                carried: client("[2001:db8::7]:4000"),
                consumed: tcp6.len() - 1
            }
        );
        let unknown = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            HeaderReader::new().push(unknown),
            Progress::Done {
                carried: Carried::Local,
                consumed: unknown.len()
            }
        );
    }

    #[test]
    fn v2_proxy_and_local() {
        let header = v2(1, [203, 0, 113, 9], 40000, &[]);
        assert_eq!(
            HeaderReader::new().push(&header),
            Progress::Done {
                carried: client("203.0.113.9:40000"),
                consumed: header.len()
            }
        );
        let local = v2(0, [203, 0, 113, 9], 40000, &[]);
        assert_eq!(
            HeaderReader::new().push(&local),
            Progress::Done {
                carried: Carried::Local,
                consumed: local.len()
            }
        );
    }

    #[test]
    fn a_v2_header_announcing_too_much_is_refused_before_it_is_read() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(
            HeaderReader::new().push(&header),
            Progress::Malformed(Malformed::TooLong(0xffff))
        );
    }

    #[test]
    fn garbage_and_a_bad_signature_are_malformed() {
        for bytes in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c",
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", // no \r: the line runs on to the bound
            b"PROXY TCP4\r\n",                   // ends before its addresses
        ] {
            let mut reader = HeaderReader::new();
            let mut progress = reader.push(bytes);
            // A header without its `\r` is "need more" until it is too long to be one.
            let mut pushes = 0;
            while progress == Progress::NeedMore && pushes < MAX_HEADER {
                progress = reader.push(b"x");
                pushes += 1;
            }
            assert!(
                matches!(progress, Progress::Malformed(_)),
                "{bytes:?}: {progress:?}"
            );
        }
    }

    /// Pushes `bytes` cut at `cuts`; returns what the last push said and the bytes left over.
    fn push_in_pieces(bytes: &[u8], cuts: &[usize]) -> (Progress, Vec<u8>) {
        let mut reader = HeaderReader::new();
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        ends.push(bytes.len());
        ends.sort_unstable();
        for end in ends {
            if end <= start && end != bytes.len() {
                continue;
            }
            let chunk = &bytes[start..end.max(start)];
            let progress = reader.push(chunk);
            match progress {
                Progress::NeedMore => start = end.max(start),
                Progress::Done { consumed, .. } => {
                    let mut rest = chunk[consumed..].to_vec();
                    rest.extend_from_slice(&bytes[end.max(start)..]);
                    return (progress, rest);
                }
                Progress::Malformed(_) => return (progress, Vec::new()),
            }
        }
        (Progress::NeedMore, Vec::new())
    }

    #[test]
    fn a_header_split_byte_by_byte() {
        let mut bytes = v2(1, [203, 0, 113, 9], 40000, &[0x04, 0, 2, 1, 2]);
        bytes.extend_from_slice(b"data");
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        let (progress, rest) = push_in_pieces(&bytes, &cuts);
        assert!(matches!(progress, Progress::Done { .. }), "{progress:?}");
        assert_eq!(rest, b"data");
    }

    proptest! {
        /// However a header and the data after it are cut into reads, the header is found and
        /// every byte after it is handed on, in order.
        #[test]
        fn any_split_finds_the_header_and_keeps_the_data(
            v2_header in any::<bool>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut bytes = if v2_header { v2(1, [203, 0, 113, 9], 40000, &[]) } else { V1.to_vec() };
            bytes.extend_from_slice(&data);
            let (progress, rest) = push_in_pieces(&bytes, &cuts);
            let carried = if v2_header { client("203.0.113.9:40000") } else { client("192.0.2.7:51234") };
            let found = matches!(progress, Progress::Done { carried: c, .. } if c == carried);
            prop_assert!(found, "{:?}", progress);
            prop_assert_eq!(rest, data);
        }

        /// Whatever arrives, the reader never holds more than its bound and never panics.
        #[test]
        fn any_input_is_bounded(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..20)
        ) {
            let mut reader = HeaderReader::new();
            for chunk in &chunks {
                let progress = reader.push(chunk);
                prop_assert!(reader.buffered.len() <= MAX_HEADER);
                if progress != Progress::NeedMore {
                    break;
                }
            }
        }
    }
}
