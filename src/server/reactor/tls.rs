//! A client on a `tls:` listener: its handshake first, then its bytes through TLS.
//!
//! The reactor's IO does not change for TLS; only what the bytes go through does
//! (`net/tls/`, rustls driven sans-IO):
//!
//! - **In** ([`Reactor::tls_received`]): each socket read goes to the client's
//!   [`TlsSession`], which gives back *all* the plaintext it completes, into the reactor's read
//!   buffer; that plaintext is answered as a plain client's read is, or held with the
//!   connection's held input when the protocol cannot take it now. Nothing decrypted is left
//!   inside rustls, where no readiness event would ever announce it again; that is the trap of
//!   TLS on an edge-triggered loop (docs/GUIDE.md), and why the short read may end a drain here
//!   just as it does for plain clients (`client.rs`).
//! - **Out** ([`Client::move_ciphertext`]): replies are encrypted as they are sent, and the
//!   records written at once, or queued where the kernel refuses them. The outbound queue
//!   therefore holds ciphertext, and `--queue-limit`, `--max-memory`, the `WRITABLE` interest
//!   and flushing all work on it unchanged; bytes for many clients (a chat line) are encrypted
//!   once per client.
//! - **Handshake**: until it is done the connection is `Arriving` (`server/connection.rs`): read,
//!   its handshake messages written, and never answered, with a deadline
//!   (`--tls-handshake-timeout`). When it is done the protocol hears of the client
//!   (`Reactor::begin_session`: the greeting, daytime's line). A handshake that fails sends
//!   rustls' alert and closes only that connection; each outcome is counted
//!   (`echoloop_tls_handshakes_total`, `echoloop_tls_handshakes_failed_total`).
//! - **Close**: a client's `close_notify` is its end of input (as a FIN is for plain clients).
//!   Ours is queued when the connection starts finishing, so it goes out after the last reply
//!   and before our FIN.
//! - **Reload**: SIGHUP reads the certificate and key again (`ServerTls::reload`); new clients
//!   get the new ones, and a bad file keeps the old ones, with a warning.
//!
//! Behind a load balancer that passes TLS through (`--proxy-protocol`), the PROXY header comes
//! first, in clear (`proxied.rs`), and the handshake after it.
//!
//! Next: `net/tls/`, the sessions this file drives; then `proxied.rs`, a client behind a load
//! balancer.

use std::io::{self, Write};
use std::time::Instant;

use log::{debug, info, warn};

use super::Reactor;
use super::client::Client;
use crate::net::outbound::OutboundQueue;
use crate::net::tls::TlsSession;
use crate::protocol::CloseReason;
use crate::server::connection::State;
use crate::server::stats::TlsFailure;

/// Takes records from a session into a client's outbound queue: what the kernel refused.
struct IntoQueue<'a>(&'a mut OutboundQueue);

impl Write for IntoQueue<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.push_copy(bytes);
        Ok(bytes.len())
    }

    fn write_vectored(&mut self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut taken = 0;
        for slice in slices {
            self.0.push_copy(slice);
            taken += slice.len();
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Client {
    /// Encrypts `plaintext` and sends the records: to the kernel while nothing is queued, into
    /// the queue otherwise or for what it refuses. Returns the ciphertext bytes the kernel took.
    pub(super) fn send_tls(&mut self, plaintext: &[u8], now: Instant) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(0);
        };
        tls.encrypt(plaintext)?;
        self.move_ciphertext(now)
    }

    /// Moves the records the session holds (replies, handshake messages, session tickets, an
    /// alert, `close_notify`) to the kernel, while nothing is queued before them, and the rest
    /// into the queue: rustls never keeps records to send. Returns the bytes the kernel took.
    pub(super) fn move_ciphertext(&mut self, now: Instant) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(0);
        };
        let mut written = 0;
        if self.conn.outbound.is_empty() {
            written = tls.take_ciphertext(&mut self.stream)?;
            self.conn.on_written(written, now);
        }
        tls.take_ciphertext(&mut IntoQueue(&mut self.conn.outbound))?;
        Ok(written)
    }

    /// Encrypts bytes meant for this client from another (a chat line) straight into its
    /// queue; the reactor flushes it at the end of the turn.
    pub(super) fn queue_tls(&mut self, plaintext: &[u8]) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        tls.encrypt(plaintext)?;
        tls.take_ciphertext(&mut IntoQueue(&mut self.conn.outbound))?;
        Ok(())
    }

    /// A TLS client that is finishing queues its `close_notify` after its last reply, so that it
    /// goes out before our FIN: once the protocol has said everything (no refill owed, no work
    /// off the loop under way, as for the FIN), since nothing can be encrypted after it. Called
    /// from every settle; once.
    #[inline]
    pub(super) fn close_tls_if_finishing(&mut self, now: Instant) {
        let Some(tls) = self.tls.as_mut() else {
            return; // plain: one test on every settle
        };
        if tls.is_closing() || !self.conn.has_said_everything() {
            return;
        }
        tls.close();
        match self.move_ciphertext(now) {
            Ok(written) => self.stats.sent(self.stream.transport(), written),
            Err(e) => {
                debug!("TLS close_notify not sent: {e}");
                self.conn.abort(CloseReason::from_error(&e));
            }
        }
    }

    /// Whether this client speaks TLS and its handshake is not done.
    pub(super) fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }
}

impl Reactor {
    /// A session for a client of a `tls:` listener; `None` (and a warning) if rustls cannot
    /// make one, which only an internal error would cause.
    pub(super) fn new_tls_session(&self) -> Option<Box<TlsSession>> {
        let tls = self.tls.as_ref()?;
        match tls.session() {
            Ok(session) => Some(Box::new(session)),
            Err(e) => {
                warn!("{}cannot begin a TLS session: {e}", self.report.name);
                None
            }
        }
    }

    /// The first `len` bytes of the TLS scratch buffer were read from TLS client `id`: decrypt
    /// them, write what the handshake has to say, start the client once its handshake is done,
    /// and answer the plaintext.
    pub(super) fn tls_received(&mut self, id: usize, len: usize) {
        let client = &mut self.clients.slab[id];
        let Some(tls) = client.tls.as_mut() else {
            return;
        };
        let was_handshaking = tls.is_handshaking();
        let decrypted = tls.decrypt(&self.speech.tls_input[..len], &mut self.speech.read_buffer);
        let transport = client.stream.transport();
        let decrypted = match decrypted {
            Ok(decrypted) => decrypted,
            Err(e) => {
                debug!("client {id} from {}: TLS: {e}", client.stream.peer_label());
                // rustls queued an alert that says why: sent if the kernel takes it now, and if
                // nothing queued before it would be cut by it (the queue is dropped with the
                // connection).
                if client.conn.outbound.is_empty()
                    && let Ok(written) = tls.take_ciphertext(&mut client.stream)
                {
                    client.stats.sent(transport, written);
                }
                if was_handshaking {
                    client
                        .stats
                        .stream(transport)
                        .count_tls_failure(TlsFailure::Error);
                }
                client.conn.abort(CloseReason::FrameError);
                return;
            }
        };
        // The handshake's reply, tickets, or an alert about to close it.
        match client.move_ciphertext(self.clock.now) {
            Ok(written) => client.stats.sent(transport, written),
            Err(e) => {
                debug!("client {id} write failed: {e}");
                client.conn.abort(CloseReason::from_error(&e));
                return;
            }
        }
        if was_handshaking && !client.is_handshaking() {
            client.stats.stream(transport).tls_handshakes.add(1);
            if log::log_enabled!(log::Level::Debug) {
                let tls = client
                    .tls
                    .as_ref()
                    .map(|t| t.describe())
                    .unwrap_or_default();
                debug!("client {id} TLS handshake done: {tls}");
            }
            self.begin_session(id);
        }
        if decrypted.plaintext > 0 {
            self.answer_plaintext(id, decrypted.plaintext);
        }
        if decrypted.closed {
            let client = &mut self.clients.slab[id];
            if client.conn.held.is_empty() {
                self.on_tls_close_notify(id);
            } else {
                // Behind input held back (the queue limit, a frame rate): the end of input
                // waits for it, as a FIN would wait in the kernel (`end_input_after_held`).
                client.close_notify_held = true;
            }
        }
    }

    /// A `close_notify` that came behind held input ends the input once that input is
    /// answered. Nothing else would: no byte follows a `close_notify`, so no event comes.
    pub(super) fn end_input_after_held(&mut self, id: usize) {
        let Some(client) = self.clients.slab.get_mut(id) else {
            return;
        };
        if client.close_notify_held && client.conn.held.is_empty() {
            client.close_notify_held = false;
            self.on_tls_close_notify(id);
        }
    }

    /// `len` bytes of plaintext are at the front of the read buffer: answered now if the
    /// client may be answered, else held with its held input (answered when it may).
    fn answer_plaintext(&mut self, id: usize, len: usize) {
        let Some(client) = self.clients.slab.get_mut(id) else {
            return;
        };
        let conn = &mut client.conn;
        if conn.may_answer() && conn.held.is_empty() {
            self.answer(id, len);
        } else if matches!(conn.state(), State::Open | State::Paused) {
            conn.held.extend_from_slice(&self.speech.read_buffer[..len]);
        } // else finishing or lingering: dropped, as a plain client's late input is
    }

    /// The client sent `close_notify`: its input is over, as with a FIN.
    fn on_tls_close_notify(&mut self, id: usize) {
        if self
            .clients
            .slab
            .get(id)
            .is_some_and(|client| !client.conn.is_closed())
        {
            debug!("client {id} sent TLS close_notify");
            self.on_end_of_input(id);
        }
    }

    /// SIGHUP: the `tls:` listeners' certificate and key are read again; a bad file keeps the
    /// old ones.
    pub(super) fn reload_tls(&mut self) {
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        match tls.reload() {
            Ok(()) => info!(
                "{}SIGHUP: TLS certificate reloaded from {}: new connections get it",
                self.report.name,
                tls.cert_path().display()
            ),
            Err(e) => warn!(
                "{}SIGHUP: keeping the TLS certificate in use: {e}",
                self.report.name
            ),
        }
    }
}
