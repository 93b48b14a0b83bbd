//! Protocols: frames in, replies out.
//!
//! A protocol is what a server *says*; the reactor is how it *listens*. Keeping them apart is the
//! point of this module: a [`Protocol`] never sees a socket, a token or the clock. It is handed a
//! frame (already cut out of the byte stream by `framing.rs`), the time as an argument, and a
//! [`Replies`] to record what should happen: bytes for the sender, bytes for other clients, "close
//! this one when its bytes are out". The reactor carries those actions out, with all the care about
//! short writes and slow readers that a protocol should not have to think about. So every protocol
//! here is tested with byte slices, no network needed, and anyone can write a new one (see
//! `examples/suffix.rs`).
//!
//! One protocol value serves every client of a reactor; per-client state (chargen's position in its
//! pattern, chat's nicknames) lives inside it, keyed by [`ClientId`].
//!
//! Next: `echo.rs`, the simplest protocol, then `udp.rs`: datagrams on the same loop.

mod chargen;
mod chat;
mod close;
mod daytime;
mod discard;
mod echo;
pub mod files;
pub mod framing;
mod timestamp;

pub use chargen::Chargen;
pub use chat::Chat;
pub use daytime::Daytime;
pub use discard::Discard;
pub use echo::Echo;
pub use files::{Files, FilesConfig};
pub use timestamp::{Ctime, Timestamp};

use std::fmt;
use std::ops::Range;
use std::rc::Rc;
use std::time::SystemTime;

pub use close::CloseReason;
use framing::{Frame, FrameError, FramingKind};

/// Names one connection of a reactor for as long as it is open (its slot in the reactor's slab).
///
/// Numbers are reused after a client leaves: a protocol that keeps per-client state drops it in
/// [`Protocol::on_disconnect`], which always comes before the number is given out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub usize);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the reactor does with a client whose outbound queue passes `--queue-limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowReader {
    /// Stop reading it until its queue drains (echo: the client slows itself down).
    PauseReading,
    /// Drop it: it would otherwise hold up everyone who talks to it (chat).
    Drop,
}

/// Whether a datagram gets an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Send the reply buffer back to the datagram's source (it may be empty: an empty datagram).
    Reply,
    /// Send nothing.
    Silent,
}

/// Frames and the time in, actions out: a service the reactor can run.
pub trait Protocol {
    /// The framing used when `--framing` is not given.
    fn default_framing(&self) -> FramingKind;

    /// What to do with a client that reads slower than it is sent to.
    fn slow_reader(&self) -> SlowReader {
        SlowReader::PauseReading
    }

    /// A client has connected (after the `--greeting`, if any). Daytime answers here.
    fn on_connect(&mut self, _client: ClientId, _now: SystemTime, _out: &mut Replies) {}

    /// One complete frame from `client`.
    fn on_frame(&mut self, client: ClientId, frame: Frame<'_>, now: SystemTime, out: &mut Replies);

    /// A frame broke the framing's rules. Line protocols answer with an `error:` line.
    fn on_frame_error(&mut self, _client: ClientId, error: &FrameError, out: &mut Replies) {
        if out.framing() == FramingKind::Line {
            out.error_line(&error.to_string());
        }
    }

    /// Whether this protocol makes output by itself as the client reads (chargen, file
    /// downloads). Only then does the reactor call [`Protocol::on_drained`]; asking every echo
    /// client "anything more?" after every reply would cost a call per message for nothing.
    fn refills_when_drained(&self) -> bool {
        false
    }

    /// `client`'s outbound queue has emptied (only if [`Protocol::refills_when_drained`]):
    /// chargen makes more here.
    fn on_drained(&mut self, _client: ClientId, _out: &mut Replies) {}

    /// `client` sent FIN: it will send no more, but may still read. A refilling protocol that
    /// still owes a body (a file download) keeps being asked through `on_drained`; one that would
    /// talk forever (chargen) stops here.
    fn on_end_of_input(&mut self, _client: ClientId, _out: &mut Replies) {}

    /// `client` is gone (its number may be reused after this returns). Chat announces it here.
    fn on_disconnect(&mut self, _client: ClientId, _reason: CloseReason, _out: &mut Replies) {}

    /// One UDP datagram. Write the answer into `reply` (empty on entry) and say whether to send it.
    fn on_datagram(&mut self, _datagram: &[u8], _now: SystemTime, _reply: &mut Vec<u8>) -> Answer {
        Answer::Silent
    }
}

/// The services echoloop ships (`-p/--protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolKind {
    /// RFC 862: every byte comes back.
    Echo,
    /// The tutorial server: each message comes back as `[<ctime>] <message>`.
    Timestamp,
    /// RFC 867: one line with the date and time, then the server closes.
    Daytime,
    /// RFC 863: everything is read and dropped; nothing is sent.
    Discard,
    /// RFC 864: an endless rotating pattern of characters, as fast as the client reads.
    Chargen,
    /// A chat room: each line goes to every other client (`/nick`, `/who`, `/quit`).
    Chat,
    /// Uploads and downloads with resume, in one folder (`--dir`); the tutorial upload client too.
    Files,
}

impl ProtocolKind {
    /// A fresh protocol value of this kind, for one reactor.
    pub fn build(self) -> Box<dyn Protocol> {
        match self {
            ProtocolKind::Echo => Box::new(Echo),
            ProtocolKind::Timestamp => Box::new(Timestamp::new()),
            ProtocolKind::Daytime => Box::new(Daytime),
            ProtocolKind::Discard => Box::new(Discard),
            ProtocolKind::Chargen => Box::new(Chargen::new()),
            ProtocolKind::Chat => Box::new(Chat::new()),
            // Needs its folder: `ServeConfig::build_protocol` builds it from `ServeConfig::files`.
            ProtocolKind::Files => Box::new(Files::unconfigured()),
        }
    }
}

/// An action for clients other than the sender of the frame being answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// These bytes to one client.
    SendTo(ClientId, Rc<[u8]>),
    /// These bytes to every client but `except` (chat): one allocation, shared by all queues.
    Broadcast {
        /// The client left out (usually the sender).
        except: Option<ClientId>,
        /// The bytes, shared.
        bytes: Rc<[u8]>,
    },
}

/// What a protocol wants done, recorded for the reactor to carry out.
///
/// The reactor keeps one `Replies` and clears it between uses, so answering a frame allocates
/// nothing once the buffers have grown to their working size.
///
/// Echo sends back slices of the very bytes it is answering. Copying them into `to_sender` only
/// to write them out again costs a `memcpy` of everything echoed, which at 4 KiB messages was
/// nearly half of the server's CPU time. So the reactor says which bytes it is answering
/// (`Replies::answering`), and while the answer so far is one unbroken run of those bytes,
/// `send_raw` only records where the run is (`Replies::echoed_input`); the reactor writes it
/// straight from its read buffer. Anything else goes to `to_sender`, after the run: the order of
/// the bytes is always the run, then `to_sender`.
#[derive(Debug)]
pub struct Replies {
    framing: FramingKind,
    to_sender: Vec<u8>,
    /// Addresses of the bytes being answered (empty when none): a slice given to `send_raw`
    /// that lies inside them can be recorded as a range instead of copied.
    input: Range<usize>,
    /// The run of the input sent back uncopied, as offsets into it; it goes before `to_sender`.
    echoed: Option<Range<usize>>,
    others: Vec<Action>,
    close_sender: bool,
}

impl Replies {
    /// Empty replies for a client whose frames are cut by `framing`.
    pub fn new(framing: FramingKind) -> Self {
        Replies {
            framing,
            to_sender: Vec::new(),
            input: 0..0,
            echoed: None,
            others: Vec::new(),
            close_sender: false,
        }
    }

    /// Tells which bytes are being answered (the reactor's read buffer, after [`Replies::reset`]),
    /// so echoing slices of them needs no copy. Only addresses are kept, never the bytes.
    pub(crate) fn answering(&mut self, input: &[u8]) {
        let start = input.as_ptr() as usize;
        self.input = start..start + input.len();
    }

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

    /// Where `bytes` starts in the input being answered, if it lies wholly inside it.
    fn offset_in_input(&self, bytes: &[u8]) -> Option<usize> {
        let start = bytes.as_ptr() as usize;
        let inside =
            !bytes.is_empty() && self.input.start <= start && start + bytes.len() <= self.input.end;
        inside.then(|| start - self.input.start)
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

    /// Shared bytes to another client.
    pub fn send_to(&mut self, client: ClientId, bytes: Rc<[u8]>) {
        self.others.push(Action::SendTo(client, bytes));
    }

    /// Shared bytes to every client but `except`.
    pub fn broadcast(&mut self, except: Option<ClientId>, bytes: Rc<[u8]>) {
        self.others.push(Action::Broadcast { except, bytes });
    }

    /// Close the sender once everything owed to it is written.
    pub fn close(&mut self) {
        self.close_sender = true;
    }

    /// The bytes recorded (copied) for the sender so far; they follow
    /// the echoed run of the input, if there is one (the reactor writes that first).
    pub fn to_sender(&self) -> &[u8] {
        &self.to_sender
    }

    /// The run of the input (see [`Replies::answering`]) sent back as it is, as offsets into
    /// it: it goes to the sender before [`Replies::to_sender`].
    pub(crate) fn echoed_input(&self) -> Option<Range<usize>> {
        self.echoed.clone()
    }

    /// The actions recorded for other clients so far.
    pub fn others(&self) -> &[Action] {
        &self.others
    }

    /// Whether the sender should be closed once its bytes are out.
    pub fn closes_sender(&self) -> bool {
        self.close_sender
    }

    /// Readies the replies for another client (its framing), keeping the buffers' memory.
    pub fn reset(&mut self, framing: FramingKind) {
        self.framing = framing;
        self.to_sender.clear();
        self.input = 0..0;
        self.echoed = None;
        self.others.clear();
        self.close_sender = false;
    }

    /// Takes the actions for other clients out, leaving the list empty (its memory goes with them).
    pub fn take_others(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.others)
    }

    /// Gives back a list taken with [`Replies::take_others`], emptied, so its memory is reused.
    pub fn return_others(&mut self, mut list: Vec<Action>) {
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
}
