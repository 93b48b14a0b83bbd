//! One client's TLS: ciphertext in, plaintext out, and the other way round.
//!
//! A [`TlsSession`] wraps rustls' `ServerConnection` with the three moves the reactor makes:
//!
//! - [`TlsSession::decrypt`]: the bytes of one socket read go in, and *every* byte of plaintext
//!   they complete comes out, into the reactor's read buffer, in the same call. This is the
//!   heart of TLS on an edge-triggered loop. rustls decrypts whole records; one read can hold
//!   many records, or the end of one begun in the previous read. Plaintext left inside rustls
//!   would be announced by nothing: the kernel raises an edge for new bytes on the socket, and
//!   these bytes have left the socket already. So nothing decrypted is left behind: what the
//!   protocol cannot take now waits in the connection's held input, which the reactor knows to
//!   come back to (`Connection::held`), exactly as plain input does. rustls keeps only an
//!   unfinished record, which needs more bytes from the socket, and so a new edge.
//! - [`TlsSession::encrypt`]: replies go in as plaintext and become records inside rustls.
//! - [`TlsSession::take_ciphertext`]: records go out, to the socket or to the connection's
//!   outbound queue. The reactor moves them out after every `encrypt` and `decrypt`, so rustls
//!   never holds records to send: the queue does, where `--queue-limit`, `--max-memory` and the
//!   `WRITABLE` interest already look.
//!
//! [`TlsSession::memory`] is what the session holds, for `--max-memory`: an estimate of rustls'
//! own state plus what it buffers, which is bounded by one record (the unfinished one, or the
//! buffer rustls grew for the last one: at most about 18 KiB) once the handshake is done, and by
//! what the client sent (at most 64 KiB) before.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use super::Decrypted;

/// What rustls holds for one server connection once its handshake is done, about: the
/// connection value, the heap it points to (keys, record layer) and its 4 KiB input buffer.
/// Measured: 2,000 idle TLS connections made the server's RSS grow 8.5 KB each, a plain
/// connection 0.5 KB (release build, TLS 1.3, P-256 certificate).
const SESSION_STATE_BYTES: usize = 8 * 1024;

/// rustls joins a handshake message from several records, up to 64 KiB, and a record in
/// progress adds up to one more record: the most a handshake can make it hold.
const HANDSHAKE_BUFFER_MAX: usize = 64 * 1024 + RECORD_MAX;

/// The largest TLS record on the wire: a 5-byte header and 2^14 bytes of plaintext plus what
/// encryption adds (at most 2048 bytes by RFC 8446; TLS 1.2 allows the same).
const RECORD_MAX: usize = 5 + (1 << 14) + 2048;

/// One client's TLS state.
#[derive(Debug)]
pub struct TlsSession {
    conn: ServerConnection,
    /// Ciphertext given during the handshake: an upper bound of what rustls holds then.
    handshake_input: usize,
    /// Where the record the client is sending ends: how much of it rustls holds unfinished.
    records: RecordBoundary,
    /// `close_notify` is queued: nothing more is encrypted.
    closing: bool,
}

impl TlsSession {
    /// A session for a new client, with the certificate `config` holds.
    pub(super) fn new(config: Arc<ServerConfig>) -> Result<TlsSession, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        // Records never wait in rustls (they are moved to the queue at once), so its own limit
        // on them would only make `encrypt` fail: the queue limit is the one that counts.
        conn.set_buffer_limit(None);
        Ok(TlsSession {
            conn,
            handshake_input: 0,
            records: RecordBoundary::default(),
            closing: false,
        })
    }

    /// Whether the handshake is still under way (the protocol has not heard of the client).
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Feeds `ciphertext` (what one socket read brought) to the session and writes all the
    /// plaintext it completes to the front of `plaintext`. `plaintext` must have room for
    /// `ciphertext.len()` plus one record: plaintext is never longer than its ciphertext, and
    /// at most one record was left unfinished by the previous read.
    ///
    /// An error is the client's (a malformed record, a failed handshake): the alert rustls
    /// queued for it is there to be sent with [`TlsSession::take_ciphertext`], and the
    /// connection is to be closed.
    pub fn decrypt(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut [u8],
    ) -> Result<Decrypted, rustls::Error> {
        let mut out = Decrypted::default();
        if self.is_handshaking() {
            self.handshake_input += ciphertext.len();
        }
        self.records.advance(ciphertext);
        while !ciphertext.is_empty() {
            // rustls takes what fits in its buffer (about 4 KiB at a time), so this loops.
            if let Err(e) = self.conn.read_tls(&mut ciphertext) {
                // Only when its plaintext buffer is full, which the loop empties every time.
                return Err(rustls::Error::General(format!(
                    "cannot take more input: {e}"
                )));
            }
            let state = self.conn.process_new_packets()?;
            // All of it, every time: see the module docs.
            let ready = state.plaintext_bytes_to_read();
            let Some(room) = plaintext.get_mut(out.plaintext..out.plaintext + ready) else {
                // `plaintext` was given too little room: the caller's mistake, not the peer's.
                return Err(rustls::Error::General(format!(
                    "no room for {ready} bytes of plaintext"
                )));
            };
            if ready > 0 {
                self.conn
                    .reader()
                    .read_exact(room)
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
                out.plaintext += ready;
            }
            if state.peer_has_closed() {
                out.closed = true; // close_notify: what follows it is ignored
                break;
            }
        }
        Ok(out)
    }

    /// Encrypts `plaintext` into records, to be moved out with [`TlsSession::take_ciphertext`].
    /// Before the handshake is done they wait inside rustls (the reactor writes nothing then).
    pub fn encrypt(&mut self, plaintext: &[u8]) -> io::Result<()> {
        if self.closing {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS close_notify already sent",
            ));
        }
        self.conn.writer().write_all(plaintext)
    }

    /// Whether records (handshake messages, replies, an alert) wait to be moved out.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Moves waiting records to `sink` until it refuses (`WouldBlock`) or none is left, and
    /// returns how many bytes it took. Records it refuses stay for the next call.
    pub fn take_ciphertext(&mut self, sink: &mut dyn Write) -> io::Result<usize> {
        let mut moved = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(sink) {
                Ok(0) => break, // a sink that takes nothing would loop forever
                Ok(n) => moved += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// Queues `close_notify`: our side of the TLS stream is over. Once.
    pub fn close(&mut self) {
        if !self.closing {
            self.closing = true;
            self.conn.send_close_notify();
        }
    }

    /// Whether `close_notify` is queued already.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// What was agreed, for the debug log: `TLSv1_3 TLS13_AES_256_GCM_SHA384`.
    pub fn describe(&self) -> String {
        match (
            self.conn.protocol_version(),
            self.conn.negotiated_cipher_suite(),
        ) {
            (Some(version), Some(suite)) => format!("{version:?} {:?}", suite.suite()),
            _ => "no TLS version agreed yet".to_string(),
        }
    }

    /// Bytes this session holds, about, for `--max-memory`: rustls' state, and what it
    /// buffers of the client's input (the handshake so far, or the unfinished record).
    pub fn memory(&self) -> usize {
        let buffered = if self.is_handshaking() {
            self.handshake_input.min(HANDSHAKE_BUFFER_MAX)
        } else {
            self.records.buffered()
        };
        SESSION_STATE_BYTES + buffered
    }
}

/// Follows the record framing of the client's byte stream (a 5-byte header whose last two
/// bytes are the length of the body that follows), to know how much of a record is unfinished.
#[derive(Debug, Default)]
struct RecordBoundary {
    /// Bytes of the current record's header seen so far (0 to 5).
    header_seen: usize,
    /// The two length bytes, as they come.
    length: [u8; 2],
    /// Bytes of the current record's body still to come.
    body_left: usize,
    /// Bytes of the current, unfinished record seen so far (header included).
    unfinished: usize,
    /// Bytes of the last record finished: rustls keeps the buffer it grew for a big one until
    /// the next read.
    last_whole: usize,
}

impl RecordBoundary {
    /// `bytes` came next on the wire.
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.header_seen == 0 && bytes.len() >= 5 {
                // A whole header: its length at once (the usual case).
                self.body_left = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
                self.header_seen = 5;
                self.unfinished = 5;
                bytes = &bytes[5..];
                self.finish_if_whole();
                continue;
            }
            if self.header_seen < 5 {
                let byte = bytes[0];
                bytes = &bytes[1..];
                if self.header_seen >= 3 {
                    self.length[self.header_seen - 3] = byte;
                }
                self.header_seen += 1;
                self.unfinished += 1;
                if self.header_seen == 5 {
                    self.body_left = usize::from(u16::from_be_bytes(self.length));
                    self.finish_if_whole();
                }
                continue;
            }
            let taken = self.body_left.min(bytes.len());
            bytes = &bytes[taken..];
            self.body_left -= taken;
            self.unfinished += taken;
            self.finish_if_whole();
        }
    }

    /// A record whose body is all here is finished: the next byte begins a header.
    fn finish_if_whole(&mut self) {
        if self.body_left == 0 {
            self.header_seen = 0;
            self.last_whole = self.unfinished;
            self.unfinished = 0;
        }
    }

    /// What rustls' input buffer holds beyond its usual 4 KiB, at most: the unfinished record,
    /// or the buffer it grew for the last one (shrunk only at the next read).
    fn buffered(&self) -> usize {
        self.unfinished.max(self.last_whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: usize) -> Vec<u8> {
        let mut bytes = vec![23, 3, 3];
        bytes.extend_from_slice(&(body as u16).to_be_bytes());
        bytes.resize(5 + body, 0xab);
        bytes
    }

    #[test]
    fn the_unfinished_record_is_followed_across_reads_of_any_size() {
        let mut stream = record(100);
        stream.extend(record(0));
        stream.extend(record(16_000));
        stream.extend(&record(300)[..42]); // unfinished
        for piece in [1, 2, 5, 7, 4096, stream.len()] {
            let mut boundary = RecordBoundary::default();
            for chunk in stream.chunks(piece) {
                boundary.advance(chunk);
            }
            assert_eq!(boundary.unfinished, 42, "read {piece} bytes at a time");
        }
        let mut boundary = RecordBoundary::default();
        boundary.advance(&record(7));
        assert_eq!(boundary.unfinished, 0);
        // A big record leaves rustls' buffer grown until the next read: counted until then.
        boundary.advance(&record(16_000));
        assert_eq!(boundary.buffered(), 16_005);
        boundary.advance(&record(10));
        assert_eq!(boundary.buffered(), 15);
    }
}
