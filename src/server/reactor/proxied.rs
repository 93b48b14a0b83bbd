//! A client behind a load balancer: its PROXY header first, then the client it names.
//!
//! A connection from a `--proxy-protocol` peer is taken in by `accept.rs` without being judged
//! (its address is the balancer's) and without a word from the protocol: its [`Connection`] is
//! `Arriving`, read but never answered, with a deadline ([`Sources::header_timeout`], 5 s), and
//! it holds an [`AwaitingHeader`] besides.
//! Each read goes to its [`HeaderReader`] (`net/proxy_header.rs`), which holds at most the
//! header's bound. When the header is whole:
//!
//! 1. The address it carries is judged as `accept.rs` judges a socket's: the access lists, the
//!    accept rate, the per-source count. A refused client is closed without a byte (or, over
//!    `--max-per-source`, after its one `error:` line; not on a `tls:` listener, where a line in
//!    clear would mean nothing to its client), and counted twice: as a connection
//!    refused for that reason, and as a header refused as `denied`. The balancer's own address
//!    was never counted, so nothing has to be given back; a `LOCAL` header (a health check) is
//!    judged by the socket's address.
//! 2. An admitted client is started as any other (`Reactor::begin_session`: the greeting, the
//!    protocol's connect), and the bytes that came after the header in the same read are
//!    answered at once: a client may send its first request in the balancer's first segment.
//!    On a `tls:` listener (a balancer passing TLS through) its handshake comes first
//!    (`tls.rs`), and those bytes are its beginning.
//!
//! A malformed header, a peer that leaves before its header is whole, and the deadline close the
//! connection; each is counted (`echoloop_proxy_headers_refused_total`). Until then the protocol
//! never heard of the client, so it is not told of its going either (`tidy.rs`).
//!
//! [`Connection`]: crate::server::connection::Connection
//! [`Sources::header_timeout`]: crate::server::sources::Sources::header_timeout
//!
//! Next: `memory.rs`, the cap on what all clients' buffers hold.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use log::debug;

use super::Reactor;
use crate::net::proxy_header::{Carried, HeaderReader, Progress};
use crate::protocol::CloseReason;
use crate::server::sources::{Admission, Sources};
use crate::server::stats::HeaderRefusal;

/// What a client still owing its PROXY header holds besides its connection.
#[derive(Debug)]
pub(super) struct AwaitingHeader {
    /// The header so far.
    reader: HeaderReader,
    /// The socket's peer (the balancer; `None`: a Unix peer), for a `LOCAL` header.
    socket_peer: Option<IpAddr>,
}

impl AwaitingHeader {
    /// Nothing read yet from a connection that `socket_peer` opened.
    pub(super) fn new(socket_peer: Option<IpAddr>) -> AwaitingHeader {
        AwaitingHeader {
            reader: HeaderReader::new(),
            socket_peer,
        }
    }

    /// Bytes it holds (the start of a header that did not come in one read), for
    /// `--max-memory`: at most the header's bound.
    pub(super) fn memory(&self) -> usize {
        self.reader.buffered()
    }
}

impl Reactor {
    /// The first `len` bytes of the read buffer were read from client `id`, which still owes
    /// its header: they go to the header, and what follows a whole header to the protocol.
    pub(super) fn read_header(&mut self, id: usize, len: usize) {
        let client = &mut self.clients.slab[id];
        let Some(awaiting) = client.header.as_mut() else {
            return;
        };
        let stats = Arc::clone(&client.stats);
        let counters = stats.stream(client.stream.transport());
        let (carried, consumed) = match awaiting.reader.push(&self.speech.read_buffer[..len]) {
            Progress::NeedMore => return,
            Progress::Malformed(why) => {
                debug!(
                    "client {id} from {}: bad PROXY header: {why}",
                    client.stream.peer_label()
                );
                counters.count_header_refusal(HeaderRefusal::Malformed);
                client.conn.abort(CloseReason::FrameError);
                return;
            }
            Progress::Done { carried, consumed } => (carried, consumed),
        };
        let peer = match carried {
            Carried::Client(address) => Some(address.ip()),
            Carried::Local => awaiting.socket_peer,
        };
        match self.sources.admit_stream(peer, id, self.clock.now) {
            Admission::Refuse(reason) => {
                counters.count_refusal(reason);
                counters.count_header_refusal(HeaderRefusal::Denied);
                debug!(
                    "client {id} from {} for {carried:?}: refused: {}",
                    client.stream.peer_label(),
                    reason.as_str()
                );
                if let Some(line) = Sources::refusal_line(reason, peer)
                    && client.tls.is_none()
                {
                    let _ = client.stream.write(line.as_bytes()); // best effort, as at accept
                    let _ = client.stream.shutdown_write();
                }
                client.conn.abort(CloseReason::Finished);
            }
            Admission::Admit { trusted } => {
                counters.proxy_headers_accepted.add(1);
                debug!(
                    "client {id} from {} is {}",
                    client.stream.peer_label(),
                    match carried {
                        Carried::Client(address) => address.to_string(),
                        Carried::Local => "the balancer itself (LOCAL)".to_string(),
                    }
                );
                client.trusted = trusted;
                client.header = None;
                let rest = len - consumed;
                if client.tls.is_some() {
                    // TLS passed through: its handshake comes next, with a deadline of its own,
                    // and may have begun in the header's last read.
                    client
                        .conn
                        .arrive_by(self.clock.now + self.settings.tls_handshake_timeout);
                    if rest > 0 {
                        self.speech.tls_input[..rest]
                            .copy_from_slice(&self.speech.read_buffer[consumed..len]);
                        self.tls_received(id, rest);
                    }
                    return;
                }
                self.begin_session(id);
                // The client's first bytes, if they came with the header's last ones.
                if rest > 0 && self.clients.slab[id].conn.is_answering() {
                    self.speech.read_buffer.copy_within(consumed..len, 0);
                    self.answer(id, rest);
                }
            }
        }
    }
}
