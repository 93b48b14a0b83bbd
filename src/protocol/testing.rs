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

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use slab::Slab;

use super::framing::{Decoder, FramingKind};
use super::{Action, Answer, ClientId, CloseReason, InputWish, Protocol, Replies};

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
    /// The poller whose waker the protocol was given ([`Harness::with_waker`]).
    poll: Option<mio::Poll>,
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
    /// The protocol paused its input ([`Replies::pause_input`]).
    paused: bool,
    /// Bytes sent while paused, or left of a send when the protocol paused: answered, in order,
    /// once it resumes.
    held: Vec<u8>,
    /// It sent FIN while bytes were waiting: the end is told after them, as the reactor reads
    /// the FIN only once the bytes before it are answered.
    fin_waiting: bool,
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
            poll: None,
        }
    }

    /// Gives the protocol a waker ([`Protocol::attach_waker`]), as a reactor does when it
    /// starts; [`Harness::wait_for_wake`] then waits for it to ring.
    pub fn with_waker(mut self) -> Self {
        let poll = mio::Poll::new().expect("a poller for the harness");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("a waker");
        self.protocol.attach_waker(Arc::new(waker));
        self.poll = Some(poll);
        self
    }

    /// Waits up to `timeout` for the protocol's waker to ring; if it does, runs
    /// [`Harness::woken`]. Returns whether it rang. Needs [`Harness::with_waker`].
    pub fn wait_for_wake(&mut self, timeout: Duration) -> bool {
        let poll = self
            .poll
            .as_mut()
            .expect("wait_for_wake needs Harness::with_waker");
        let mut events = mio::Events::with_capacity(4);
        let _ = poll.poll(&mut events, Some(timeout));
        let rang = !events.is_empty();
        if rang {
            self.woken();
        }
        rang
    }

    /// As the reactor when its waker rings: [`Protocol::on_woken`] names the clients whose work
    /// is done, and each still connected gets [`Protocol::on_resume`] (then, if it resumed its
    /// input, the frames that waited). Returns the clients named.
    pub fn woken(&mut self) -> Vec<ClientId> {
        let mut ready = Vec::new();
        self.protocol.on_woken(&mut ready);
        for &client in &ready {
            let Some(state) = self.clients.get_mut(client.0) else {
                continue;
            };
            self.replies.reset(state.decoder.kind());
            self.protocol
                .on_resume(&mut state.session, self.now, &mut self.replies);
            self.deliver(client);
            self.answer_held(client);
        }
        ready
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
            paused: false,
            held: Vec::new(),
            fin_waiting: false,
        });
        self.deliver(id);
        id
    }

    /// `client` sends `bytes` (one read's worth): they are cut into frames and answered. Bytes
    /// from a client that is closing, has sent FIN or is gone are ignored, as the reactor does;
    /// while the protocol has paused the client's input they wait, in order, as in the reactor.
    pub fn send(&mut self, client: ClientId, bytes: &[u8]) {
        let Some(state) = self.clients.get_mut(client.0) else {
            return;
        };
        if state.closing || state.input_ended {
            return;
        }
        state.held.extend_from_slice(bytes);
        self.answer_held(client);
    }

    /// Answers what `client` has waiting, frame by frame, until it is used up or the protocol
    /// pauses the client's input (the rest keeps waiting).
    fn answer_held(&mut self, client: ClientId) {
        let Some(state) = self.clients.get_mut(client.0) else {
            return;
        };
        if state.paused || state.closing || state.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut state.held);
        self.replies.reset(state.decoder.kind());
        let mut input = &held[..];
        while !self.replies.closes_sender() && self.replies.input_wish() != Some(InputWish::Pause) {
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
        if !self.replies.closes_sender() && !state.closing {
            state.held = input.to_vec();
        }
        self.deliver(client);
        if let Some(state) = self.clients.get_mut(client.0)
            && state.fin_waiting
            && state.held.is_empty()
            && !state.paused
        {
            state.fin_waiting = false;
            self.end_input(client);
        }
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
        if state.paused || !state.held.is_empty() {
            state.fin_waiting = true;
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

    /// Whether the protocol has paused `client`'s input ([`Replies::pause_input`]).
    pub fn is_paused(&self, client: ClientId) -> bool {
        self.clients.get(client.0).is_some_and(|state| state.paused)
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
            match self.replies.input_wish() {
                Some(InputWish::Pause) => state.paused = true,
                Some(InputWish::Resume) => state.paused = false,
                None => {}
            }
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
