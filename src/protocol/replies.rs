//! What a protocol wants done, recorded for the reactor to carry out.
//!
//! A protocol never writes to a socket. Each callback gets a [`Replies`] and records actions in
//! it: bytes for the client being answered (the *sender*), bytes for other clients (`send_to`,
//! `broadcast`), "close the sender once its bytes are out", "call me again when the sender's
//! queue is empty". When the callback returns, the reactor carries out everything recorded, by one
//! path whatever the callback was (`on_connect`, `on_frame`, `on_drained`, `on_idle_timeout`,
//! `on_disconnect`), with all the care about short writes and slow readers a protocol should not
//! have to think about. That one path is the point: an action recorded anywhere is delivered.
//!
//! The reactor keeps one `Replies` and clears it between uses, so answering a frame allocates
//! nothing once its buffers have grown to their working size.
//!
//! Echo sends back slices of the very bytes it is answering. Copying them into the reply buffer
//! only to write them out again costs a `memcpy` of everything echoed, which at 4 KiB messages was
//! nearly half of the server's CPU time. So the reactor says which bytes it is answering, and
//! while the answer so far is one unbroken run of those bytes, `send_raw` only records where the
//! run is; the reactor writes it straight from its read buffer. Anything else is copied, after the
//! run: the order of the bytes is always the run, then the copies.
//!
//! Next: `service.rs`, how the reactor calls a protocol whatever its session type.

use std::ops::Range;
use std::rc::Rc;

use super::ClientId;
use super::framing::{self, FramingKind};

/// An action for clients other than the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// These bytes to one client.
    SendTo(ClientId, Rc<[u8]>),
    /// These bytes to every client but `except` (chat): one allocation, shared by all queues.
    Broadcast {
        except: Option<ClientId>,
        bytes: Rc<[u8]>,
    },
}

/// Whether the protocol wants the sender's frames held back or given again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputWish {
    /// Hold them ([`Replies::pause_input`]).
    Pause,
    /// Give them again ([`Replies::resume_input`]).
    Resume,
}

/// What a protocol wants done: record it here; the reactor does it when the callback returns.
#[derive(Debug)]
pub struct Replies {
    framing: FramingKind,
    to_sender: Vec<u8>,
    /// Addresses of the bytes being answered (empty when none): a slice given to `send_raw`
    /// that lies inside them is recorded as a range instead of copied.
    input: Range<usize>,
    /// The run of the input sent back uncopied, as offsets into it; it goes before `to_sender`.
    echoed: Option<Range<usize>>,
    others: Vec<Action>,
    close_sender: bool,
    refill: bool,
    /// What the protocol said about the sender's input, if anything.
    input_wish: Option<InputWish>,
}

impl Replies {
    /// Empty replies for a client whose frames are cut by `framing`.
    pub(crate) fn new(framing: FramingKind) -> Self {
        Replies {
            framing,
            to_sender: Vec::new(),
            input: 0..0,
            echoed: None,
            others: Vec::new(),
            close_sender: false,
            refill: false,
            input_wish: None,
        }
    }

    // ----- what a protocol may record ----------------------------------------------------------

    /// The framing of the client being answered: replies are framed the same way.
    pub fn framing(&self) -> FramingKind {
        self.framing
    }

    /// Bytes to the sender exactly as given (echo's wire bytes, chargen's lines).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if self.to_sender.is_empty()
            && let Some(at) = self.offset_in_input(bytes)
        {
            match &mut self.echoed {
                None => {
                    self.echoed = Some(at..at + bytes.len());
                    return;
                }
                Some(run) if run.end == at => {
                    run.end += bytes.len();
                    return;
                }
                Some(_) => {} // not contiguous: copied, after the run
            }
        }
        self.to_sender.extend_from_slice(bytes);
    }

    /// One message to the sender made of `parts`, framed like the sender's frames.
    pub fn send_frame(&mut self, parts: &[&[u8]]) {
        framing::encode(self.framing, parts, &mut self.to_sender);
    }

    /// `error: <what>\n` to the sender.
    pub fn error_line(&mut self, what: &str) {
        self.send_raw(b"error: ");
        self.send_raw(what.as_bytes());
        self.send_raw(b"\n");
    }

    /// Shared bytes to another client (sent as they are: frame them with
    /// [`framing::encode`](super::framing::encode) first if they are a message).
    pub fn send_to(&mut self, client: ClientId, bytes: Rc<[u8]>) {
        self.others.push(Action::SendTo(client, bytes));
    }

    /// Shared bytes to every client but `except`: one allocation, however many receive it.
    pub fn broadcast(&mut self, except: Option<ClientId>, bytes: Rc<[u8]>) {
        self.others.push(Action::Broadcast { except, bytes });
    }

    /// Close the sender once everything owed to it is written.
    pub fn close(&mut self) {
        self.close_sender = true;
    }

    /// Call [`on_drained`](super::Protocol::on_drained) for the sender once its queue is empty:
    /// the kernel has taken everything, so there is room for more. This is how a protocol
    /// produces only as fast as its client reads (chargen's next batch, a download's next
    /// chunk, a long listing's next lines). One request, one call: ask again from `on_drained`
    /// while there is more to say. A request still pending when the client's input ends is
    /// dropped (see [`on_end_of_input`](super::Protocol::on_end_of_input)), and so is one made
    /// by an `on_drained` that sent nothing (it would be called again at once, forever).
    pub fn refill_when_drained(&mut self) {
        self.refill = true;
    }

    /// Give the protocol no more of the sender's frames until a later callback calls
    /// [`Replies::resume_input`]: what the client already sent is kept, in order, and its socket
    /// is not read meanwhile (its TCP window fills and pushes back on it). For work that must
    /// finish before the next request may be looked at: the files service pauses while its
    /// helper thread fsyncs an upload, and resumes from [`on_resume`](super::Protocol::on_resume).
    /// Frames already cut from the same read after this one wait too.
    pub fn pause_input(&mut self) {
        self.input_wish = Some(InputWish::Pause);
    }

    /// Undoes [`Replies::pause_input`]: the frames that waited are given to the protocol, then
    /// the socket is read again.
    pub fn resume_input(&mut self) {
        self.input_wish = Some(InputWish::Resume);
    }

    // ----- what the reactor reads back ---------------------------------------------------------

    /// Readies the replies for another client (its framing), keeping the buffers' memory.
    pub(crate) fn reset(&mut self, framing: FramingKind) {
        self.framing = framing;
        self.to_sender.clear();
        self.input = 0..0;
        self.echoed = None;
        self.others.clear();
        self.close_sender = false;
        self.refill = false;
        self.input_wish = None;
    }

    /// Tells which bytes are being answered (the reactor's read buffer, after [`Replies::reset`]),
    /// so echoing slices of them needs no copy. Only addresses are kept, never the bytes.
    pub(crate) fn answering(&mut self, input: &[u8]) {
        let start = input.as_ptr() as usize;
        self.input = start..start + input.len();
    }

    /// Where `bytes` starts in the input being answered, if it lies wholly inside it.
    fn offset_in_input(&self, bytes: &[u8]) -> Option<usize> {
        let start = bytes.as_ptr() as usize;
        let inside =
            !bytes.is_empty() && self.input.start <= start && start + bytes.len() <= self.input.end;
        inside.then(|| start - self.input.start)
    }

    /// The run of the input (see [`Replies::answering`]) sent back as it is, as offsets into
    /// it: it goes to the sender before [`Replies::to_sender`].
    pub(crate) fn echoed_input(&self) -> Option<Range<usize>> {
        self.echoed.clone()
    }

    /// Bytes recorded for the sender so far, echoed and copied: what delivering them would add.
    #[inline]
    pub(crate) fn pending_len(&self) -> usize {
        self.echoed.as_ref().map_or(0, |run| run.len()) + self.to_sender.len()
    }

    /// The bytes recorded (copied) for the sender; they follow the echoed run, if any.
    pub(crate) fn to_sender(&self) -> &[u8] {
        &self.to_sender
    }

    /// Whether anything at all is recorded for the sender (bytes, close, refill).
    pub(crate) fn has_sender_actions(&self) -> bool {
        self.echoed.is_some()
            || !self.to_sender.is_empty()
            || self.close_sender
            || self.refill
            || self.input_wish.is_some()
    }

    /// Whether the sender should be closed once its bytes are out.
    pub(crate) fn closes_sender(&self) -> bool {
        self.close_sender
    }

    /// Whether the protocol asked to be called when the sender's queue is empty.
    pub(crate) fn asks_refill(&self) -> bool {
        self.refill
    }

    /// What the protocol said about the sender's input in this callback, if anything.
    pub(crate) fn input_wish(&self) -> Option<InputWish> {
        self.input_wish
    }

    /// Whether anything is recorded for other clients.
    pub(crate) fn has_others(&self) -> bool {
        !self.others.is_empty()
    }

    /// Takes the actions for other clients out, leaving the list empty (its memory goes with them).
    pub(crate) fn take_others(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.others)
    }

    /// Gives back a list taken with [`Replies::take_others`], emptied, so its memory is reused.
    pub(crate) fn return_others(&mut self, mut list: Vec<Action>) {
        list.clear();
        if self.others.is_empty() {
            self.others = list;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the sender gets: the echoed run of `input`, then the copied bytes.
    fn answer(out: &Replies, input: &[u8]) -> Vec<u8> {
        let run = out.echoed_input().map_or(&[][..], |run| &input[run]);
        [run, out.to_sender()].concat()
    }

    #[test]
    fn contiguous_slices_of_the_input_are_recorded_not_copied() {
        let input = b"one two three".to_vec();
        let mut out = Replies::new(FramingKind::Raw);
        out.answering(&input);
        out.send_raw(&input[..4]);
        out.send_raw(&input[4..8]);
        assert_eq!(out.echoed_input(), Some(0..8));
        assert!(out.to_sender().is_empty());
        assert_eq!(answer(&out, &input), b"one two ");
    }

    #[test]
    fn order_is_kept_when_the_run_breaks() {
        let input = b"abcdef".to_vec();
        let mut out = Replies::new(FramingKind::Raw);
        out.answering(&input);
        out.send_raw(&input[0..2]);
        out.send_raw(b"-"); // not input: copied after the run
        out.send_raw(&input[2..4]); // input again, but after copied bytes: copied too
        out.send_raw(&input[0..1]); // a jump back: copied
        assert_eq!(answer(&out, &input), b"ab-cda");

        out.reset(FramingKind::Raw);
        out.answering(&input);
        out.send_raw(&input[3..]);
        out.send_raw(&input[..1]); // not contiguous with the run: copied after it
        assert_eq!(out.echoed_input(), Some(3..6));
        assert_eq!(answer(&out, &input), b"defa");
    }

    #[test]
    fn without_answering_or_after_reset_everything_is_copied() {
        let input = b"xyz".to_vec();
        let mut out = Replies::new(FramingKind::Raw);
        out.send_raw(&input);
        assert_eq!(out.echoed_input(), None);
        assert_eq!(out.to_sender(), b"xyz");
        out.answering(&input);
        out.reset(FramingKind::Raw);
        out.send_raw(&input[1..]);
        assert_eq!(out.echoed_input(), None);
        assert_eq!(out.to_sender(), b"yz");
    }

    #[test]
    fn reset_forgets_every_action() {
        let mut out = Replies::new(FramingKind::Line);
        out.send_frame(&[b"x"]);
        out.close();
        out.refill_when_drained();
        out.broadcast(None, Rc::from(&b"all"[..]));
        assert!(out.has_sender_actions() && out.has_others());
        out.reset(FramingKind::Raw);
        assert!(!out.has_sender_actions() && !out.has_others());
        assert!(!out.closes_sender() && !out.asks_refill());
        assert_eq!(out.framing(), FramingKind::Raw);
    }
}
