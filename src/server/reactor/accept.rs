//! New connections: accept until `WouldBlock`, admit each one or refuse it.
//!
//! A listener is edge-triggered like every other socket, so it is drained: `accept` until the
//! kernel says `WouldBlock`. A new client gets a slab slot (its token), a registration for
//! `READABLE`, a decoder, and a session from the protocol, which may answer at once (daytime
//! does, after the `--greeting`). Past `--max-connections` the client is told why in one line and
//! closed. When the process is out of descriptors the pending connection is shed with the reserve
//! descriptor (`net/listener.rs`), so the listener cannot keep the loop spinning.
//!
//! Next: `client.rs`, one client's reads, answers and writes.

use std::io::{self, Read};
use std::time::Duration;

use log::{debug, warn};

use super::Reactor;
use super::client::Client;
use super::token::Source;
use crate::net::listener::is_resource_exhaustion;
use crate::net::registration::Registration;
use crate::net::stream::Stream;
use crate::protocol::ClientId;
use crate::protocol::framing::Decoder;
use crate::server::connection::Connection;
use crate::server::rate::TokenBucket;

/// How long to wait before accepting again when even the reserve descriptor could not help.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

impl Reactor {
    /// Accepts until `WouldBlock`.
    pub(super) fn drain_accepts(&mut self, index: usize) {
        loop {
            let Some(Some(listener)) = self.sockets.listeners.get(index) else {
                return; // closed by the drain
            };
            match listener.accept(self.settings.accept) {
                Ok(stream) => {
                    self.accepting.exhaustion_logged = false;
                    self.admit(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_exhaustion(&e) => {
                    self.report
                        .stats
                        .stream(listener.transport())
                        .accept_errors
                        .add(1);
                    if !self.accepting.exhaustion_logged {
                        warn!(
                            "{}accept failed: {e}; shedding new connections until descriptors free up",
                            self.report.name
                        );
                        self.accepting.exhaustion_logged = true;
                    }
                    if !self.accepting.reserve_fd.shed_one(listener) {
                        // Even the reserve could not help: try again shortly, without spinning.
                        self.accepting.retry_at = Some(self.clock.now + ACCEPT_RETRY);
                        return;
                    }
                }
                Err(e) => {
                    // ECONNABORTED and the like: that one connection is gone, the next may be fine.
                    self.report
                        .stats
                        .stream(listener.transport())
                        .accept_errors
                        .add(1);
                    debug!("{}accept failed: {e}", self.report.name);
                }
            }
        }
    }

    /// Takes a new connection in, or refuses it when the reactor is full.
    fn admit(&mut self, mut stream: Stream) {
        if self.clients.slab.len() >= self.settings.max_connections {
            self.refuse(stream, Refusal::Full);
            return;
        }
        if self.over_memory() {
            self.refuse(stream, Refusal::Busy); // the episode was logged when it began
            return;
        }
        self.accepting.full_logged = false;
        let entry = self.clients.slab.vacant_entry();
        let id = entry.key();
        let mut registration = Registration::new();
        let token = Source::Client(id).token();
        if let Err(e) = registration.update(
            self.poll.registry(),
            &mut stream,
            token,
            Some(mio::Interest::READABLE),
        ) {
            warn!("{}cannot register a new connection: {e}", self.report.name);
            return;
        }
        if log::log_enabled!(log::Level::Debug) {
            debug!("client {id} accepted from {}", stream.peer_label());
        }
        let counters = self.report.stats.stream(stream.transport());
        counters.connections_accepted.add(1);
        counters.connections_open.add(1);
        let serial = self.clients.next_serial;
        self.clients.next_serial += 1;

        // The greeting, then whatever the protocol says on connect: one delivery, in that order.
        let replies = &mut self.speech.replies;
        replies.reset(self.settings.framing);
        if let Some(greeting) = &self.settings.greeting {
            replies.send_raw(greeting);
        }
        let session = self
            .speech
            .service
            .connect(ClientId(id), self.clock.wall_now, replies);
        let decoder = Decoder::new(self.settings.framing, self.settings.max_frame);
        let mut conn = Connection::new(decoder, session, self.clock.now, serial);
        if let Some(rate) = self.settings.frame_rate
            && !is_trusted(&stream)
        {
            conn.frame_budget = Some(TokenBucket::new(
                rate,
                rate.saturating_mul(2),
                self.clock.now,
            ));
        }
        entry.insert(Client {
            stream,
            registration,
            conn,
        });
        self.deliver(id);
        self.flush_client(id); // chargen makes more as soon as the kernel takes the first batch
        self.sync(id);
    }

    /// One over `--max-connections`, or one during a memory episode: a one-line explanation,
    /// then close.
    fn refuse(&mut self, mut stream: Stream, why: Refusal) {
        self.report
            .stats
            .stream(stream.transport())
            .connections_refused
            .add(1);
        let line = match why {
            Refusal::Full => {
                if !self.accepting.full_logged {
                    warn!(
                        "{}refusing connections: server full ({} connections)",
                        self.report.name, self.settings.max_connections
                    );
                    self.accepting.full_logged = true;
                }
                format!(
                    "error: server full ({} connections)\n",
                    self.settings.max_connections
                )
            }
            Refusal::Busy => "error: server busy\n".to_string(),
        };
        let _ = io::Write::write(&mut stream, line.as_bytes()); // best effort: it has room
        let _ = stream.shutdown_write();
        // Closing a socket with unread input sends RST, which can destroy the line above: drop
        // what the client already sent (one read; a refused client gets no more care than that).
        let _ = stream.read(&mut self.speech.read_buffer);
    }
}

/// Whether a peer is exempt from per-source limits: a Unix socket's peer is local; a TCP peer
/// on loopback too.
fn is_trusted(stream: &Stream) -> bool {
    match stream {
        Stream::Tcp(tcp) => tcp.peer_addr().is_ok_and(|peer| peer.ip().is_loopback()),
        Stream::Unix(_) => true,
    }
}

/// Why a connection is turned away at accept, with a line saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `--max-connections` are open.
    Full,
    /// The reactor is over `--max-memory`.
    Busy,
}
