//! Drive a protocol with byte slices, as the reactor would, with no socket and no thread.
//!
//! A [`Harness`] holds one protocol value and any number of pretend clients. Each client has the
//! decoder the reactor would give it, so [`Harness::send`] cuts bytes into frames exactly as a
//! read would be cut; whatever the protocol records in its [`Replies`] is carried out the way the
//! reactor carries it out (the sender's bytes, `send_to`, `broadcast`, close, refill), and what
//! each client would have received is kept for [`Harness::take_output`]. Time stands still unless
//! you move it ([`Harness::set_now`]), so answers that hold the time are repeatable.
//!
//! What it leaves out is the network: every byte is "written" at once, so queues never fill and
//! a client reads everything (refills happen when you call [`Harness::drain`]).
//!
//! ```
//! use echoloop::protocol::{Chat, testing::Harness};
//!
//! let mut room = Harness::new(Chat::new());
//! let alice = room.connect();
//! let bob = room.connect();
//! room.take_output(alice); // the welcome lines
//! room.take_output(bob);
//! room.send(alice, b"hello\n");
//! assert_eq!(room.take_output(bob), b"[user0] hello\n");
//! assert!(room.take_output(alice).is_empty()); // the sender gets nothing back
//! ```
//!
//! Next: `server/udp.rs`, datagrams on the same loop.

use std::time::{Duration, SystemTime};

use slab::Slab;

use super::framing::{Decoder, FramingKind};
use super::{Action, Answer, ClientId, CloseReason, Protocol, Replies};

/// The default `--max-frame`.
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// One protocol value and its pretend clients.
pub struct Harness<P: Protocol> {
    protocol: P,
    framing: FramingKind,
    max_frame: usize,
    now: SystemTime,
    clients: Slab<Client<P::Session>>,
    replies: Replies,
}

/// What the harness knows of one client.
struct Client<S> {
    session: S,
    decoder: Decoder,
    /// Everything delivered to it and not yet taken.
    received: Vec<u8>,
    /// The protocol asked to close it (or its framing broke): it is read no more.
    closing: bool,
    /// It sent FIN.
    input_ended: bool,
    /// The protocol asked for `on_drained`.
    refill: bool,
}

impl<P: Protocol> Harness<P> {
    /// A harness around `protocol`, with its default framing, the default `--max-frame`, and
    /// the clock at 2001-09-09 01:46:40 UTC.
    pub fn new(protocol: P) -> Self {
        Harness {
            protocol,
            framing: P::FRAMING,
            max_frame: MAX_FRAME_BYTES,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
            clients: Slab::new(),
            replies: Replies::new(P::FRAMING),
        }
    }

    /// Clients connected from now on use `framing` (as `--framing`).
    pub fn with_framing(mut self, framing: FramingKind) -> Self {
        self.framing = framing;
        self
    }

    /// Clients connected from now on accept frames of at most `bytes` (as `--max-frame`).
    pub fn with_max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// The protocol value, to look at its shared state.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// The time the protocol is told from now on.
    pub fn set_now(&mut self, now: SystemTime) {
        self.now = now;
    }

    /// The time the protocol is told.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// A new client connects: the protocol makes its session and may answer at once.
    pub fn connect(&mut self) -> ClientId {
        let entry = self.clients.vacant_entry();
        let id = ClientId(entry.key());
        self.replies.reset(self.framing);
        let session = self.protocol.on_connect(id, self.now, &mut self.replies);
        entry.insert(Client {
            session,
            decoder: Decoder::new(self.framing, self.max_frame),
            received: Vec::new(),
            closing: false,
            input_ended: false,
            refill: false,
        });
        self.deliver(id);
        id
    }

    /// `client` sends `bytes` (one read's worth): they are cut into frames and answered. Bytes
    /// from a client that is closing, has sent FIN or is gone are ignored, as the reactor does.
    pub fn send(&mut self, client: ClientId, bytes: &[u8]) {
        let Some(state) = self.clients.get_mut(client.0) else {
            return;
        };
        if state.closing || state.input_ended {
            return;
        }
        self.replies.reset(state.decoder.kind());
        let mut input = bytes;
        while !self.replies.closes_sender() {
            match state.decoder.next_frame(&mut input) {
                Ok(Some(frame)) => {
                    self.protocol
                        .on_frame(&mut state.session, frame, self.now, &mut self.replies)
                }
                Ok(None) => break,
                Err(error) => {
                    self.protocol
                        .on_frame_error(&mut state.session, &error, &mut self.replies);
                    if state.decoder.kind() == FramingKind::Length {
                        state.closing = true; // nothing after a bad length prefix can be trusted
                        break;
                    }
                }
            }
        }
        self.deliver(client);
    }

    /// `client` sends FIN: its last unfinished line is still a frame, then the protocol hears
    /// that its input ended (and any pending refill is dropped, as in the reactor).
    pub fn end_input(&mut self, client: ClientId) {
        let Some(state) = self.clients.get_mut(client.0) else {
            return;
        };
        if state.input_ended {
            return;
        }
        state.input_ended = true;
        state.refill = false;
        self.replies.reset(state.decoder.kind());
        if !state.closing {
            if let Some(frame) = state.decoder.finish() {
                self.protocol
                    .on_frame(&mut state.session, frame, self.now, &mut self.replies);
            }
            self.protocol
                .on_end_of_input(&mut state.session, &mut self.replies);
        }
        self.deliver(client);
    }

    /// `client` has read everything it was sent: if the protocol asked for it
    /// ([`Replies::refill_when_drained`]), `on_drained` is called once. Returns whether it was.
    pub fn drain(&mut self, client: ClientId) -> bool {
        let Some(state) = self.clients.get_mut(client.0) else {
            return false;
        };
        // As the reactor: a client closing for another reason than its own FIN gets no more.
        if !std::mem::take(&mut state.refill) || state.closing {
            return false;
        }
        self.replies.reset(state.decoder.kind());
        self.protocol
            .on_drained(&mut state.session, &mut self.replies);
        let produced = !self.replies.to_sender().is_empty();
        self.deliver(client);
        if !produced && let Some(state) = self.clients.get_mut(client.0) {
            state.refill = false; // as the reactor: a refill that makes nothing asks no more
        }
        true
    }

    /// `client` was idle for `--idle-timeout`: the protocol may say goodbye; it is then closing.
    pub fn idle_timeout(&mut self, client: ClientId) {
        let Some(state) = self.clients.get_mut(client.0) else {
            return;
        };
        self.replies.reset(state.decoder.kind());
        self.protocol
            .on_idle_timeout(&mut state.session, &mut self.replies);
        state.closing = true;
        self.deliver(client);
    }

    /// `client` is gone for `reason`; the protocol gets its session back and may tell others.
    pub fn disconnect(&mut self, client: ClientId, reason: CloseReason) {
        let Some(state) = self.clients.try_remove(client.0) else {
            return;
        };
        self.replies.reset(state.decoder.kind());
        self.protocol
            .on_disconnect(state.session, reason, &mut self.replies);
        self.deliver(client);
    }

    /// One UDP datagram: the reply, if the protocol answers.
    pub fn datagram(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut reply = Vec::new();
        match self.protocol.on_datagram(bytes, self.now, &mut reply) {
            Answer::Reply => Some(reply),
            Answer::Silent => None,
        }
    }

    /// Everything delivered to `client` since the last call (empty for a client that is gone).
    pub fn take_output(&mut self, client: ClientId) -> Vec<u8> {
        self.clients
            .get_mut(client.0)
            .map(|state| std::mem::take(&mut state.received))
            .unwrap_or_default()
    }

    /// Whether `client` is closing: the protocol asked, its framing broke, or it idled out.
    pub fn is_closing(&self, client: ClientId) -> bool {
        self.clients
            .get(client.0)
            .is_some_and(|state| state.closing)
    }

    /// Whether the protocol asked to be called when `client`'s queue is empty.
    pub fn wants_refill(&self, client: ClientId) -> bool {
        self.clients.get(client.0).is_some_and(|state| state.refill)
    }

    /// The clients still connected.
    pub fn clients(&self) -> Vec<ClientId> {
        self.clients.iter().map(|(id, _)| ClientId(id)).collect()
    }

    /// Carries out what the protocol recorded on behalf of `sender`.
    fn deliver(&mut self, sender: ClientId) {
        if let Some(state) = self.clients.get_mut(sender.0) {
            // Outside `send` nothing is being answered, so nothing was recorded as an echoed
            // run: every byte is in `to_sender`.
            state.received.extend_from_slice(self.replies.to_sender());
            state.closing |= self.replies.closes_sender();
            state.refill |= self.replies.asks_refill();
        }
        for action in self.replies.take_others() {
            match action {
                Action::SendTo(target, bytes) => {
                    if let Some(state) = self.clients.get_mut(target.0)
                        && state.accepts_shared()
                    {
                        state.received.extend_from_slice(&bytes);
                    }
                }
                Action::Broadcast { except, bytes } => {
                    for (id, state) in self.clients.iter_mut() {
                        if Some(ClientId(id)) != except && state.accepts_shared() {
                            state.received.extend_from_slice(&bytes);
                        }
                    }
                }
            }
        }
    }
}

impl<S> Client<S> {
    /// As the reactor: bytes from other clients go only to a client still open (not closing,
    /// not past its FIN).
    fn accepts_shared(&self) -> bool {
        !self.closing && !self.input_ended
    }
}

impl<P: Protocol + std::fmt::Debug> std::fmt::Debug for Harness<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("protocol", &self.protocol)
            .field("framing", &self.framing)
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}
