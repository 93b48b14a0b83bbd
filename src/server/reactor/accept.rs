//! New connections: accept until `WouldBlock`, admit each one or refuse it.
//!
//! A listener is edge-triggered like every other socket, so it is drained: `accept` until the
//! kernel says `WouldBlock`. A new client gets a slab slot (its token), a registration for
//! `READABLE`, a decoder, and a session from the protocol, which may answer at once (daytime
//! does, after the `--greeting`). First the reactor's `Sources` (`server/sources/`) judge the
//! peer: a source refused by `--allow`/`--deny` or over `--accept-rate` is closed without a byte;
//! one over `--max-per-source` is told `error: too many connections from <address>` and closed.
//! Past `--max-connections` the client is told why in one line and closed. When the process is
//! out of descriptors the pending connection is shed with the reserve descriptor
//! (`net/listener.rs`), so the listener cannot keep the loop spinning.
//!
//! A connection from a load balancer (`--proxy-protocol`) is not judged here: its address is the
//! balancer's. It is taken in awaiting its PROXY header, and the protocol hears of it only once
//! the header says who the client is and that client is admitted (`proxied.rs`).
//!
//! Next: `client.rs`, one client's reads, answers and writes.

use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, warn};

use super::Reactor;
use super::client::Client;
use super::proxied::AwaitingHeader;
use super::token::Source;
use crate::net::listener::is_resource_exhaustion;
use crate::net::registration::Registration;
use crate::net::stream::Stream;
use crate::protocol::framing::Decoder;
use crate::protocol::{ClientId, Session};
use crate::server::connection::Connection;
use crate::server::rate::TokenBucket;
use crate::server::sources::{Admission, Sources};
use crate::server::stats::RefusalReason;

/// How long to wait before accepting again when even the reserve descriptor could not help.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

impl Reactor {
    /// Accepts until `WouldBlock`.
    pub(super) fn drain_accepts(&mut self, index: usize) {
        let service = self.sockets.listener_service[index];
        let tls = self.sockets.listener_tls[index];
        loop {
            let Some(Some(listener)) = self.sockets.listeners.get(index) else {
                return; // closed by the drain
            };
            match listener.accept_from(self.settings.accept) {
                Ok((stream, peer)) => {
                    self.accepting.exhaustion_logged = false;
                    self.admit(stream, peer, service, tls);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_exhaustion(&e) => {
                    self.report.stats[service]
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
                    self.report.stats[service]
                        .stream(listener.transport())
                        .accept_errors
                        .add(1);
                    debug!("{}accept failed: {e}", self.report.name);
                }
            }
        }
    }

    /// Takes a new connection from `peer` (`None`: a Unix peer) for `service` in, or refuses
    /// it: its source is refused or over a per-source limit, or the reactor is full. A client of
    /// a `tls:` listener begins with its handshake (`tls.rs`); refused, it is closed without a
    /// word, since a line in clear would mean nothing to its TLS client.
    fn admit(&mut self, mut stream: Stream, peer: Option<IpAddr>, service: usize, tls: bool) {
        let id = self.clients.slab.vacant_key();
        // From a balancer: judged once its header says who it speaks for, not counted now.
        let from_balancer = self.sources.sends_header(peer);
        let trusted = if from_balancer {
            false
        } else {
            match self.sources.admit_stream(peer, id, self.clock.now) {
                Admission::Admit { trusted } => trusted,
                Admission::Refuse(reason) => {
                    self.refuse_source(stream, peer, reason, service, tls);
                    return;
                }
            }
        };
        if self.clients.slab.len() >= self.settings.max_connections {
            self.sources.closed(id); // it was counted against its source: give that back
            self.refuse(stream, service, tls);
            return;
        }
        if self.over_memory() {
            self.sources.closed(id);
            self.refuse_busy(stream, service, tls); // the episode was logged when it began
            return;
        }
        let session = if tls {
            let Some(session) = self.new_tls_session() else {
                self.sources.closed(id);
                return;
            };
            Some(session)
        } else {
            None
        };
        self.accepting.full_logged = false;
        let entry = self.clients.slab.vacant_entry();
        let mut registration = Registration::new();
        let token = Source::Client(id).token();
        if let Err(e) = registration.update(
            self.poll.registry(),
            &mut stream,
            token,
            Some(mio::Interest::READABLE),
        ) {
            warn!("{}cannot register a new connection: {e}", self.report.name);
            self.sources.closed(id);
            return;
        }
        if log::log_enabled!(log::Level::Debug) {
            debug!("client {id} accepted from {}", stream.peer_label());
        }
        let counters = self.report.stats[service].stream(stream.transport());
        counters.connections_accepted.add(1);
        counters.connections_open.add(1);
        let serial = self.clients.next_serial;
        self.clients.next_serial += 1;

        let served = &self.speech.services[service];
        let decoder = Decoder::new(served.framing, self.settings.max_frame);
        let mut conn = Connection::new(decoder, Session::none(), self.clock.now, serial);
        let mut header = None;
        if from_balancer {
            conn = conn.arriving(self.clock.now + self.sources.header_timeout());
            header = Some(Box::new(AwaitingHeader::new(peer)));
        } else if tls {
            conn = conn.arriving(self.clock.now + self.settings.tls_handshake_timeout);
        }
        let arriving = conn.is_arriving();
        entry.insert(Client {
            stream,
            registration,
            conn,
            trusted,
            service,
            policy: served.policy,
            stats: Arc::clone(&self.report.stats[service]),
            header,
            tls: session,
            started: false,
            close_notify_held: false,
        });
        if !arriving {
            self.begin_session(id);
        }
        self.sync(id);
    }

    /// Tells the protocol of client `id`, now admitted: the greeting, then whatever the
    /// protocol says on connect, in one delivery and in that order.
    pub(super) fn begin_session(&mut self, id: usize) {
        let client = &mut self.clients.slab[id];
        let service = client.service;
        let served = &mut self.speech.services[service];
        let replies = &mut self.speech.replies;
        replies.reset(served.framing);
        if let Some(greeting) = &served.greeting {
            replies.send_raw(greeting);
        }
        let session = served
            .service
            .connect(ClientId(id), self.clock.wall_now, replies);
        client.conn.start_session(session, self.clock.now);
        client.started = true;
        if let Some(rate) = served.frame_rate
            && !client.trusted
        {
            client.conn.frame_budget = Some(TokenBucket::new(
                rate,
                rate.saturating_mul(2),
                self.clock.now,
            ));
        }
        self.deliver(id, service);
        self.flush_client(id); // chargen makes more as soon as the kernel takes the first batch
    }

    /// A source the access lists or a per-source limit refuse: counted, and closed at once
    /// without a byte, or (over `--max-per-source`) after its one line.
    fn refuse_source(
        &mut self,
        stream: Stream,
        peer: Option<IpAddr>,
        reason: RefusalReason,
        service: usize,
        tls: bool,
    ) {
        self.report.stats[service]
            .stream(stream.transport())
            .count_refusal(reason);
        debug!(
            "{}connection from {} refused: {}",
            self.report.name,
            stream.peer_label(),
            reason.as_str()
        );
        if let Some(line) = Sources::refusal_line(reason, peer)
            && !tls
        {
            self.say_and_close(stream, &line);
        } // else dropping the stream closes it: not a byte sent
    }

    /// One over `--max-connections`: a one-line explanation (not in TLS), then close.
    fn refuse(&mut self, stream: Stream, service: usize, tls: bool) {
        self.report.stats[service]
            .stream(stream.transport())
            .count_refusal(RefusalReason::Full);
        if !self.accepting.full_logged {
            warn!(
                "{}refusing connections: server full ({} connections)",
                self.report.name, self.settings.max_connections
            );
            self.accepting.full_logged = true;
        }
        if tls {
            return; // dropped: closed without a word
        }
        let line = format!(
            "error: server full ({} connections)\n",
            self.settings.max_connections
        );
        self.say_and_close(stream, &line);
    }

    /// A newcomer during a memory episode: `error: server busy` (not in TLS), then close.
    fn refuse_busy(&mut self, stream: Stream, service: usize, tls: bool) {
        self.report.stats[service]
            .stream(stream.transport())
            .count_refusal(RefusalReason::Busy);
        if !tls {
            self.say_and_close(stream, "error: server busy\n");
        }
    }

    /// Writes one line to a refused client, then closes it.
    fn say_and_close(&mut self, mut stream: Stream, line: &str) {
        let _ = io::Write::write(&mut stream, line.as_bytes()); // best effort: it has room
        let _ = stream.shutdown_write();
        // Closing a socket with unread input sends RST, which can destroy the line above: drop
        // what the client already sent (one read; a refused client gets no more care than that).
        let _ = stream.read(&mut self.speech.read_buffer);
    }
}
