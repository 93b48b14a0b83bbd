//! One client's readiness: write what it is owed, read what it sent, answer it.
//!
//! A client is its socket, its registration with the poller, and its [`Connection`] (the sans-IO
//! state machine of `connection.rs`, which holds the decoder, the outbound queue and the
//! protocol's session). This file does the IO for it and tells the machine what happened:
//!
//! - **Reading** ([`Reactor::drain_reads`]): until `WouldBlock`, a short read (the kernel had no
//!   more), end of input, or the per-turn budget. The bytes go through the decoder to the protocol.
//!   On mio's `poll(2)` backend a short read does not end the drain (see [`SHORT_READ_ENDS_DRAIN`]).
//! - **Answering** ([`Reactor::deliver`]): what the protocol recorded is written at once, straight
//!   from the read buffer when it is echoed input; only bytes the kernel refuses are queued. Every
//!   callback's replies come through this one function, whatever the callback was.
//! - **Flushing** ([`Reactor::flush_client`]): the queue, with `writev`; and each time it empties,
//!   the protocol's refill if it asked for one (chargen's next batch, a download's next chunk).
//! - **Settling** ([`Reactor::sync`]): the machine applies the queue limit and moves a finished
//!   client on; the poller's interest and the client's timer are brought in line.
//!
//! Next: `tls.rs`, a client that speaks TLS.

use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use log::{debug, trace, warn};
use mio::event::Event;

use super::proxied::AwaitingHeader;
use super::token::Source;
use super::{Phase, Reactor};
use crate::net::memory::SharedBytes;
use crate::net::outbound::Flushed;
use crate::net::registration::Registration;
use crate::net::stream::Stream;
use crate::net::tls::TlsSession;
use crate::protocol::framing::FramingKind;
use crate::protocol::{Action, ClientId, CloseReason, InputWish, Replies};
use crate::server::connection::{Connection, Policy, State, Step};
use crate::server::stats::{HeaderRefusal, Stats, TlsFailure};
use crate::server::timers::TimerEntry;

/// Most bytes one stream read takes. Smaller reads cost more system calls; bigger ones make a
/// peer wait longer for the first reply. Measured with one connection sending 16 × 4 KiB at a
/// time (docs/BENCHMARKS.md), 32 KiB answered 1.37× the messages of 64 KiB (median of 3
/// rounds): the client gets the first half of its replies, and sends more, while the server
/// reads the second half. At 50 and 1000 connections the two were within noise of each other.
const STREAM_READ_BYTES: usize = 32 * 1024;
/// Most ciphertext one read takes from a TLS client's socket (`tls.rs`). Its plaintext, with
/// what is left of a record begun in the read before (up to 18 KiB), must fit the reactor's
/// read buffer (64 KiB), which [`crate::net::tls::TlsSession::decrypt`] fills.
pub(super) const TLS_READ_BYTES: usize = 32 * 1024;
/// Bytes one client may read, or be written, per turn before others get their chance.
const TURN_BUDGET_BYTES: usize = 256 * 1024;
/// Whether a short read may end a drain, saving the read that would only say `WouldBlock`.
///
/// On epoll (and kqueue) it may: the kernel raises a new edge when new bytes arrive. Not when mio
/// is built on `poll(2)` (`RUSTFLAGS='--cfg mio_unsupported_force_poll_poll'`, the guide's "Why
/// epoll" build). `poll(2)` has no edges, so mio makes them up: once it has reported a socket
/// readable it stops asking the kernel about reading it, until a read through mio returns
/// `WouldBlock`, which re-arms the interest. A drain that stops at a short read never sees that
/// `WouldBlock`, and the client's next message would never be reported. So that build reads on
/// to `WouldBlock`: one more `read` per message, paid only there. On epoll that read would cost a
/// system call and 10% more user-space instructions per message (831 against 757 Ir/msg,
/// `scripts/instructions.sh`, 50 connections × 64 bytes), so epoll builds keep the short cut.
///
/// Writes and accepts need nothing: a flush ends at an empty queue, where the interest changes
/// and is set afresh, or at `WouldBlock`; `drain_accepts` always accepts to `WouldBlock`.
const SHORT_READ_ENDS_DRAIN: bool = !cfg!(mio_unsupported_force_poll_poll);

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flush {
    /// Nothing more to write now: the queue is empty (and no refill is due) or the kernel refused.
    Done,
    /// The per-turn budget went on refills: the client is on `still_ready` for the next turn.
    Budget,
}

/// One client of the reactor: its socket, what the poller holds for it, and its state.
#[derive(Debug)]
pub(super) struct Client {
    pub(super) stream: Stream,
    pub(super) registration: Registration,
    pub(super) conn: Connection,
    /// Its source is exempt from the per-source limits (`--trusted`, or a Unix peer).
    pub(super) trusted: bool,
    /// The index of its service in the reactor's list (`server/services.rs`): its listener's.
    pub(super) service: usize,
    /// Its service's policy (queue limit, slow readers, idle timeout), copied at accept: read
    /// at every settle, so kept beside the connection rather than looked up.
    pub(super) policy: Policy,
    /// Its service's counters, in this reactor (the same `Arc` as `Report::stats[service]`):
    /// counted into at every read and write without a lookup.
    pub(super) stats: Arc<Stats>,
    /// From a load balancer, and its PROXY header is not whole yet (`proxied.rs`): the
    /// protocol has not heard of it. `None` for every other client.
    pub(super) header: Option<Box<AwaitingHeader>>,
    /// Its TLS session, if it came in on a `tls:` listener (`tls.rs`).
    pub(super) tls: Option<Box<TlsSession>>,
    /// The protocol has heard of it (`Reactor::begin_session`): it has arrived (its PROXY
    /// header read, its TLS handshake done), and it will be told of its going.
    pub(super) started: bool,
    /// Its TLS `close_notify` came while input decrypted before it was held back: the end of
    /// its input waits for that input to be answered (`tls.rs`).
    pub(super) close_notify_held: bool,
}

/// The readiness a client event reports, as the handlers use it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Readiness {
    readable: bool,
    writable: bool,
    read_closed: bool,
}

impl Readiness {
    /// Assume everything: for clients revisited without an event.
    const ALL: Readiness = Readiness {
        readable: true,
        writable: true,
        read_closed: false,
    };
}

impl From<&Event> for Readiness {
    fn from(event: &Event) -> Readiness {
        Readiness {
            // An error or hang-up is reported as readable: the read returns it.
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable() || event.is_write_closed() || event.is_error(),
            read_closed: event.is_read_closed(),
        }
    }
}

impl Client {
    /// Sends `bytes`: straight to the kernel while nothing is queued (the usual case, no copy
    /// kept), into the queue otherwise. What the kernel refuses is queued, in order. Returns how
    /// many bytes reached the kernel now.
    #[inline]
    fn send(&mut self, bytes: &[u8], now: std::time::Instant) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        if self.tls.is_some() {
            return self.send_tls(bytes, now); // encrypted first (`tls.rs`)
        }
        if !self.conn.outbound.is_empty() {
            self.conn.outbound.push_copy(bytes);
            return Ok(0);
        }
        let written = loop {
            match self.stream.write(bytes) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.conn.on_written(written, now);
        if written < bytes.len() {
            self.conn.outbound.push_copy(&bytes[written..]);
        }
        Ok(written)
    }
}

impl Reactor {
    /// Does what a client's readiness allows: write what it is owed, answer what waited, read
    /// what it sent.
    pub(super) fn drive_client(&mut self, id: usize, readiness: Readiness) {
        let Some(client) = self.clients.slab.get_mut(id) else {
            return; // closed and freed earlier: events are hints
        };
        if client.conn.is_closed() {
            return; // marked earlier in this batch
        }
        if readiness.read_closed {
            client.conn.on_peer_fin();
        }
        let mut budget_used = false;
        if readiness.writable && !client.conn.outbound.is_empty() {
            budget_used = self.flush_client(id) == Flush::Budget;
        }
        // Input held back since an earlier turn (the queue was full, the protocol paused) is
        // answered first, in order; then the socket is read. Whatever lifted the hold put the
        // client on `still_ready`, which comes here as if readable: the edge that announced
        // its bytes was spent while it was held back.
        let conn = &self.clients.slab[id].conn;
        if !conn.held.is_empty() && conn.may_answer() {
            self.answer_held(id);
            self.end_input_after_held(id);
        }
        if readiness.readable {
            self.drain_reads(id);
        }
        // A non-empty queue was just refused by the kernel: writing again now would only be told
        // `WouldBlock`. An empty one may owe a refill (chargen: the client read everything),
        // unless this turn's budget went on refills already (it is on `still_ready`).
        let Some(client) = self.clients.slab.get(id) else {
            return;
        };
        let conn = &client.conn;
        if !budget_used && conn.owes_refill() && conn.outbound.is_empty() {
            self.flush_client(id);
        }
        self.sync(id);
    }

    /// The waker rang: the protocol names the clients whose work off the loop is done (a files
    /// upload's fsync), and each still connected is given [`crate::Protocol::on_resume`].
    pub(super) fn resume_woken_clients(&mut self) {
        for service in 0..self.speech.services.len() {
            self.resume_woken_clients_of(service);
        }
    }

    /// [`Reactor::resume_woken_clients`] for one service: the clients it names are its own.
    fn resume_woken_clients_of(&mut self, service: usize) {
        let mut woken = std::mem::take(&mut self.speech.woken);
        self.speech.services[service].service.woken(&mut woken);
        for ClientId(id) in woken.drain(..) {
            let Some(client) = self.clients.slab.get_mut(id) else {
                continue; // gone: the protocol heard so in `on_disconnect`
            };
            if client.service != service {
                continue; // its client left and the slot went to another service's
            }
            if client.conn.is_closed() || matches!(client.conn.state(), State::Lingering { .. }) {
                continue; // nothing more can be written to it (its FIN is sent)
            }
            if !client.started {
                continue; // a newcomer in the slot of the client it names, not yet started
            }
            let conn = &mut client.conn;
            let speech = &mut self.speech;
            speech.replies.reset(conn.decoder.kind());
            speech.services[service].service.resume(
                &mut conn.session,
                self.clock.wall_now,
                &mut speech.replies,
            );
            self.deliver(id, service);
            // A refill asked for here (a download that was waiting for its hash) is made now,
            // as in `drive_client`: no event would come for an empty queue.
            let conn = &self.clients.slab[id].conn;
            if conn.owes_refill() && conn.outbound.is_empty() {
                self.flush_client(id);
            }
            self.sync(id);
        }
        self.speech.woken = woken;
    }

    /// Serves again the clients and sockets that stopped at their per-turn budget.
    pub(super) fn revisit_still_ready(&mut self) {
        for id in std::mem::take(&mut self.clients.still_ready) {
            self.drive_client(id, Readiness::ALL);
        }
        for index in std::mem::take(&mut self.sockets.datagrams_still_ready) {
            self.drain_datagrams(index, false);
        }
    }

    /// Reads until `WouldBlock`, a short read, end of input, or the per-turn budget.
    fn drain_reads(&mut self, id: usize) {
        let mut budget = TURN_BUDGET_BYTES;
        loop {
            let client = &mut self.clients.slab[id];
            if !client.conn.is_reading() {
                return;
            }
            // Ciphertext goes to its own buffer, to be decrypted into the read buffer; a PROXY
            // header before it comes in clear (`tls.rs`).
            let through_tls = client.tls.is_some() && client.header.is_none();
            let buffer = if through_tls {
                &mut self.speech.tls_input[..TLS_READ_BYTES]
            } else {
                &mut self.speech.read_buffer[..STREAM_READ_BYTES]
            };
            let read_size = buffer.len();
            let n = match client.stream.read(buffer) {
                Ok(0) => {
                    trace!("client {id} read 0 bytes (end of input)");
                    self.on_end_of_input(id);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    trace!("client {id} read WouldBlock");
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("client {id} read failed: {e}");
                    client.conn.abort(CloseReason::from_error(&e));
                    return;
                }
            };
            trace!("client {id} read {n} bytes");
            client.conn.on_read(n, self.clock.now);
            client.stats.received(client.stream.transport(), n);
            let short_read = SHORT_READ_ENDS_DRAIN && n < read_size && !client.conn.peer_fin_seen();
            if client.header.is_some() {
                self.read_header(id, n);
            } else if through_tls {
                if !matches!(client.conn.state(), State::Lingering { .. }) {
                    self.tls_received(id, n);
                } // else lingering: the input is read and dropped
            } else if client.conn.is_answering() {
                self.answer(id, n);
            } // else lingering: the input is read and dropped
            // A short read means the kernel had no more: epoll(7) lets us stop here and save the
            // read that would only say `WouldBlock`. New bytes will raise a new edge. (`sync`,
            // which follows every `drain_reads`, applies the queue limit.) Not on `poll(2)`:
            // see `SHORT_READ_ENDS_DRAIN`.
            if short_read {
                trace!("client {id} short read: stop until the next edge");
                return;
            }
            // Before reading more: the limit is applied after every full read, so a flooding
            // client holds at most the limit plus the replies to one read.
            if !self.settle(id) {
                return;
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                trace!("client {id} read budget used: served again next turn");
                self.clients.still_ready.push(id);
                return;
            }
        }
    }

    /// Cuts `len` bytes of the read buffer into frames, lets the protocol answer, and delivers
    /// the answers.
    ///
    /// One read can hold thousands of small requests, and one request can ask for a lot (a long
    /// listing). So the protocol is given frames *one at a time while there is room*: before
    /// each frame the client's queue plus the replies not yet delivered are checked against
    /// `--queue-limit`, and the protocol's own `pause_input` and the frame rate are obeyed. When
    /// one of them says stop, the rest of the read waits in [`Connection::held`] and is answered
    /// when the obstacle is gone; a client can therefore never make us hold more than its limit
    /// plus one reply, whatever it sends at once.
    pub(super) fn answer(&mut self, id: usize, len: usize) {
        let client = &mut self.clients.slab[id];
        let service = client.service;
        let conn = &mut client.conn;
        let speech = &mut self.speech;
        let served = &mut speech.services[service];
        let limit = self.settings.queue_limit;
        speech.replies.reset(conn.decoder.kind());
        let mut input = &speech.read_buffer[..len];
        speech.replies.answering(input); // echoed slices of it are written from here, not copied
        let mut broken = false;
        // The first frame needs no check: a client is read only while it may be answered.
        let mut first = true;
        while !speech.replies.closes_sender() {
            if !first && !input.is_empty() && !room_for_another_frame(conn, &speech.replies, limit)
            {
                break;
            }
            first = false;
            if let Err(refill_at) = conn.frame_allowance(self.clock.now) {
                if !input.is_empty() {
                    trace!("client {id} over its frame rate: held until {refill_at:?}");
                    conn.holds.rate_until = Some(refill_at);
                }
                break;
            }
            match conn.decoder.next_frame(&mut input) {
                Ok(Some(frame)) => {
                    if let Some(budget) = &mut conn.frame_budget {
                        budget.spend(); // (a field, not a method: `frame` borrows the decoder)
                    }
                    served.service.frame(
                        &mut conn.session,
                        frame,
                        self.clock.wall_now,
                        &mut speech.replies,
                    )
                }
                Ok(None) => break,
                Err(error) => {
                    debug!("client {id} sent a bad frame: {error}");
                    served
                        .service
                        .frame_error(&mut conn.session, &error, &mut speech.replies);
                    if conn.decoder.kind() == FramingKind::Length {
                        broken = true; // the stream cannot be trusted past a bad length prefix
                        break;
                    }
                }
            }
        }
        if !input.is_empty() && !broken && !speech.replies.closes_sender() {
            trace!("client {id}: {} bytes of input held back", input.len());
            conn.held.extend_from_slice(input);
        }
        self.deliver(id, service);
        if broken {
            self.clients.slab[id].conn.finish(CloseReason::FrameError);
        }
    }

    /// Answers the input held back from an earlier read, as if it had just been read.
    fn answer_held(&mut self, id: usize) {
        let held = std::mem::take(&mut self.clients.slab[id].conn.held);
        self.speech.read_buffer[..held.len()].copy_from_slice(&held);
        self.answer(id, held.len());
    }

    /// The peer sent FIN (or TLS `close_notify`): its last unfinished line is still a frame, the
    /// protocol hears of the end, and then the connection finishes.
    pub(super) fn on_end_of_input(&mut self, id: usize) {
        let client = &mut self.clients.slab[id];
        let service = client.service;
        let conn = &mut client.conn;
        if conn.is_answering() {
            // A pending refill is dropped here: a protocol that still owes a body asks again.
            conn.cancel_refill();
            let speech = &mut self.speech;
            let served = &mut speech.services[service];
            speech.replies.reset(conn.decoder.kind());
            if let Some(frame) = conn.decoder.finish() {
                served.service.frame(
                    &mut conn.session,
                    frame,
                    self.clock.wall_now,
                    &mut speech.replies,
                );
            }
            served
                .service
                .end_of_input(&mut conn.session, &mut speech.replies);
            self.deliver(id, service);
        } else if client.header.is_some() {
            // Gone before its PROXY header was whole: a balancer never does that.
            client
                .stats
                .stream(client.stream.transport())
                .count_header_refusal(HeaderRefusal::Malformed);
        } else if !client.started && client.is_handshaking() {
            client
                .stats
                .stream(client.stream.transport())
                .count_tls_failure(TlsFailure::Closed);
        } // else lingering: its FIN was what we waited for
        self.clients.slab[id].conn.on_end_of_input();
    }

    /// Carries out what the protocol of `service` recorded in the replies on behalf of client
    /// `id`: its bytes (the echoed run of the read buffer first, then the copied bytes), its
    /// close, its refill request; then what it recorded for others, who are that service's
    /// clients only. Every callback's replies come through here.
    pub(super) fn deliver(&mut self, id: usize, service: usize) {
        let replies = &self.speech.replies;
        if let Some(client) = self.clients.slab.get_mut(id)
            && !client.conn.is_closed()
            && replies.has_sender_actions()
        {
            let echoed = match replies.echoed_input() {
                Some(run) => &self.speech.read_buffer[run],
                None => &[][..],
            };
            for reply in [echoed, replies.to_sender()] {
                if reply.is_empty() {
                    continue;
                }
                let queued_before = client.conn.outbound.len();
                match client.send(reply, self.clock.now) {
                    Ok(written) => {
                        client.stats.sent(client.stream.transport(), written);
                        trace_send(id, written, reply.len(), queued_before);
                    }
                    Err(e) => {
                        debug!("client {id} write failed: {e}");
                        client.conn.abort(CloseReason::from_error(&e));
                        break;
                    }
                }
            }
            if replies.closes_sender() {
                client.conn.finish(CloseReason::Finished);
            }
            if replies.asks_refill() {
                client.conn.ask_refill();
            }
            match replies.input_wish() {
                Some(InputWish::Pause) => client.conn.holds.protocol = true,
                Some(InputWish::Resume) => {
                    client.conn.holds.protocol = false;
                    // Its held input and the kernel's: nothing will announce them again.
                    if client.conn.may_answer() {
                        self.clients.still_ready.push(id);
                    }
                }
                None => {}
            }
        }
        if self.speech.replies.has_others() {
            self.deliver_to_others(service);
        }
    }

    /// Carries out the actions recorded for clients other than the sender, among the clients of
    /// `service`. Each action's bytes are wrapped once, so that however many queues hold them
    /// they count once towards `--max-memory` (see `net/memory.rs`).
    fn deliver_to_others(&mut self, service: usize) {
        let others = self.speech.replies.take_others();
        for action in &others {
            match action {
                Action::SendTo(target, bytes) => {
                    let shared = SharedBytes::new(Rc::clone(bytes), &self.memory.meter);
                    if self
                        .clients
                        .slab
                        .get(target.0)
                        .is_some_and(|c| c.service == service)
                    {
                        self.queue_shared(target.0, &shared);
                    }
                }
                Action::Broadcast { except, bytes } => {
                    let shared = SharedBytes::new(Rc::clone(bytes), &self.memory.meter);
                    // Recipients are listed first (queueing needs `&mut self`), into a list
                    // kept between broadcasts so that a chat line allocates nothing here.
                    let mut targets = std::mem::take(&mut self.clients.broadcast_targets);
                    targets.clear();
                    targets.extend(
                        self.clients
                            .slab
                            .iter()
                            .filter(|(_, client)| client.service == service)
                            .map(|(key, _)| key)
                            .filter(|key| Some(ClientId(*key)) != *except),
                    );
                    for &target in &targets {
                        self.queue_shared(target, &shared);
                    }
                    self.clients.broadcast_targets = targets;
                }
            }
        }
        self.speech.replies.return_others(others);
        self.after_shared_bytes();
    }

    /// Queues shared bytes for another client; it is flushed once, at the end of the turn.
    fn queue_shared(&mut self, target: usize, shared: &Rc<SharedBytes>) {
        let Some(client) = self.clients.slab.get_mut(target) else {
            return;
        };
        if !client.conn.accepts_shared() {
            return;
        }
        if client.conn.outbound.is_empty() {
            self.clients.to_flush.push(target);
        }
        if client.tls.is_some() {
            // Encrypted for this client alone: its copy counts in its own share.
            if let Err(e) = client.queue_tls(shared.bytes()) {
                debug!("client {target} cannot be sent to: {e}");
                client.conn.abort(CloseReason::from_error(&e));
            }
        } else {
            client.conn.outbound.push_shared(shared);
        }
        if client.conn.outbound.footprint() > self.settings.queue_limit {
            // Over the limit only because this turn piled it up? Offer it to the kernel before
            // `sync` judges: the limit is for bytes a slow reader refuses, not for a burst.
            self.flush_client(target);
        }
        self.sync(target);
    }

    /// Writes a client's queue; each time it is empty and the protocol asked for more, asks it
    /// (chargen's next batch, a download's next chunk), up to the per-turn budget.
    pub(super) fn flush_client(&mut self, id: usize) -> Flush {
        let started_at = self.clients.slab[id].conn.bytes().1;
        loop {
            let client = &mut self.clients.slab[id];
            if client.conn.is_closed() {
                return Flush::Done;
            }
            let before = client.conn.outbound.len();
            if before > 0 {
                match client.conn.outbound.flush_into(&mut client.stream) {
                    Ok((flushed, written)) => {
                        client.conn.on_written(written, self.clock.now);
                        client.stats.sent(client.stream.transport(), written);
                        if flushed == Flushed::Blocked {
                            trace!("client {id} write {written} of {before} (short)");
                            return Flush::Done;
                        }
                        trace!("client {id} write {written} of {before}");
                    }
                    Err(e) => {
                        debug!("client {id} write failed: {e}");
                        client.conn.abort(CloseReason::from_error(&e));
                        return Flush::Done;
                    }
                }
            }
            if !client.conn.take_refill() {
                return Flush::Done;
            }
            // Out of budget: the refill is asked for again and made next turn.
            if client.conn.bytes().1 - started_at >= TURN_BUDGET_BYTES as u64 {
                client.conn.ask_refill();
                self.clients.still_ready.push(id);
                return Flush::Budget;
            }
            let service = client.service;
            let speech = &mut self.speech;
            speech.replies.reset(client.conn.decoder.kind());
            speech.services[service]
                .service
                .drained(&mut client.conn.session, &mut speech.replies);
            let produced = !speech.replies.to_sender().is_empty();
            self.deliver(id, service);
            if !produced {
                // Nothing to send and asking again would call it again at once, forever: a
                // refill that makes nothing ends the refills until another callback asks.
                self.clients.slab[id].conn.cancel_refill();
                return Flush::Done;
            }
        }
    }

    /// Lets the connection settle (queue limit, finishing) and carries out what it decided.
    /// Returns whether the client is still live (not closed).
    #[inline]
    fn settle(&mut self, id: usize) -> bool {
        self.account_memory(id);
        let Some(client) = self.clients.slab.get_mut(id) else {
            return false; // freed already
        };
        client.close_tls_if_finishing(self.clock.now);
        let queued = client.conn.outbound.len();
        let counters = client.stats.stream(client.stream.transport());
        let policy = &client.policy;
        if queued != client.conn.queue_counted {
            counters.note_queue_len(queued);
            counters.queued_bytes.add(queued as u64);
            counters.queued_bytes.sub(client.conn.queue_counted as u64);
            client.conn.queue_counted = queued;
        }
        let linger_cap = match self.phase {
            Phase::Draining { deadline } => Some(deadline),
            Phase::Serving => None,
        };
        match client.conn.settle(policy, self.clock.now, linger_cap) {
            Step::Steady => {}
            Step::Paused => {
                trace!("client {id} paused: {queued} bytes queued");
                counters.readers_paused.add(1);
            }
            Step::Resumed => {
                trace!("client {id} resumed: {queued} bytes queued");
                // Its held input, and what the kernel holds for it, raise no new edge.
                self.clients.still_ready.push(id);
            }
            Step::Dropped => {
                warn!(
                    "client {id} dropped: queue limit ({queued} bytes queued, limit {})",
                    policy.queue_limit
                );
                counters.clients_dropped.add(1);
            }
            Step::SendFin => {
                if client.stream.shutdown_write().is_err() {
                    client.conn.on_fin_failed();
                }
            }
            Step::Close => {}
        }
        if client.conn.is_closed() {
            self.clients.closing.push(id);
            return false;
        }
        true
    }

    /// After any change to a client: let it settle, then bring the poller's interest and the
    /// timers in line with its state.
    pub(super) fn sync(&mut self, id: usize) {
        if !self.settle(id) {
            return;
        }
        let client = &mut self.clients.slab[id];
        let policy = &client.policy;
        // Input held back for want of room that the kernel then made (everything was written
        // at once): nothing will announce it, so come back next turn.
        if !client.conn.held.is_empty() && client.conn.may_answer() {
            self.clients.still_ready.push(id);
        }
        let wanted = client.conn.wanted();
        let token = Source::Client(id).token();
        if let Err(e) =
            client
                .registration
                .update(self.poll.registry(), &mut client.stream, token, wanted)
        {
            warn!("client {id} cannot change interest: {e}");
            client.conn.abort(CloseReason::IoError);
            self.clients.closing.push(id);
            return;
        }
        // A scheduled entry can only be too late once the deadline moves *earlier*: activity
        // moves it later (the entry is then re-checked when due); lingering and a rate hold
        // move it earlier.
        let conn = &mut client.conn;
        let may_be_earlier = conn.timer_at.is_none()
            || conn.holds.rate_until.is_some()
            || matches!(conn.state(), State::Lingering { .. });
        if may_be_earlier
            && let Some(due) = conn.deadline(policy)
            && conn.timer_at.is_none_or(|at| due < at)
        {
            conn.timer_at = Some(due);
            self.clock.timers.schedule(TimerEntry {
                due,
                slot: id,
                serial: conn.serial,
            });
        }
    }
}

/// Whether the protocol may be given another frame of this read: the connection is open and
/// not held back, and its queue plus the replies recorded so far leave room under the limit.
#[inline]
fn room_for_another_frame(conn: &Connection, replies: &Replies, limit: usize) -> bool {
    conn.may_answer()
        && replies.input_wish() != Some(InputWish::Pause)
        && conn.outbound.footprint() + replies.pending_len() <= limit
}

/// Traces one reply handed to [`Client::send`]: written at once, cut short, or queued behind
/// bytes already waiting.
#[inline]
fn trace_send(id: usize, written: usize, len: usize, queued_before: usize) {
    if queued_before > 0 {
        trace!("client {id} queued {len} bytes behind {queued_before}");
    } else if written < len {
        trace!(
            "client {id} write {written} of {len} (short): {} queued",
            len - written
        );
    } else {
        trace!("client {id} write {written} of {len}");
    }
}
