//! Protocols: frames in, replies out.
//!
//! A protocol is what a server *says*; the reactor is how it *listens*. Keeping them apart is the
//! point of this module: a [`Protocol`] never sees a socket, a token or the clock. It is handed a
//! frame (already cut out of the byte stream by `framing.rs`), the time as an argument, and a
//! [`Replies`] to record what should happen: bytes for the sender, bytes for other clients, "close
//! this one when its bytes are out", "call me when its queue is empty". The reactor carries those
//! actions out, with all the care about short writes and slow readers that a protocol should not
//! have to think about. So every protocol here is tested with byte slices, no network needed (see
//! [`testing`]), and anyone can write a new one (see `examples/suffix.rs` and docs/GUIDE.md).
//!
//! One protocol value serves every client of a reactor and holds what they share (chat's room).
//! What belongs to one client (chargen's place in its pattern, a file transfer under way) is its
//! [`Protocol::Session`], which the reactor keeps with the connection.
//!
//! Reading order: `framing.rs` (where one message ends), this file (the trait), `replies.rs`,
//! `service.rs`, `close.rs`, then the services from the simplest: `echo.rs`, `timestamp.rs`,
//! `daytime.rs`, `time.rs`, `discard.rs`, `chargen.rs`, `chat/`, `files/`; `testing.rs` drives any of them
//! with bytes.
//!
//! Next: `replies.rs`, what a protocol records.

mod chargen;
mod chat;
mod close;
mod daytime;
mod discard;
mod echo;
pub mod files;
pub mod framing;
mod replies;
mod service;
pub mod testing;
mod time;
mod timestamp;

pub use chargen::Chargen;
pub use chat::Chat;
pub use close::CloseReason;
pub use daytime::Daytime;
pub use discard::Discard;
pub use echo::Echo;
pub use files::{Files, FilesConfig};
pub use replies::Replies;
pub use service::{ProtocolFactory, Session};
pub use time::Time;
pub use timestamp::{Ctime, Timestamp};

pub(crate) use replies::{Action, InputWish};
pub(crate) use service::Service;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use framing::{Frame, FrameError, FramingKind};

/// Names one connection of a reactor for as long as it is open (its slot in the reactor's slab).
///
/// Numbers are reused after a client leaves: a protocol that keeps client numbers in shared state
/// (chat's room) forgets them in [`Protocol::on_disconnect`], which always comes before the number
/// is given out again.
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
///
/// One protocol value serves every client of a reactor and holds what they share (chat's room);
/// what belongs to one client lives in its [`Protocol::Session`], made by
/// [`Protocol::on_connect`], handed back `&mut` to every later callback for that client, and
/// given back by value to [`Protocol::on_disconnect`]. Every callback records what it wants done
/// in a [`Replies`]; the reactor carries it out the same way whichever callback it was.
pub trait Protocol: 'static {
    /// What the protocol keeps for each client: chargen its place in the pattern, files the
    /// transfer under way, chat the client's number. `()` for none.
    type Session: 'static;

    /// The name logs use: `echo`, `chat`, or your protocol's own.
    const NAME: &'static str;

    /// The framing used when `--framing` is not given.
    const FRAMING: FramingKind;

    /// What to do with a client that reads slower than it is sent to.
    fn slow_reader(&self) -> SlowReader {
        SlowReader::PauseReading
    }

    /// A client has connected (after the `--greeting`, if any): make its session. Daytime
    /// answers here.
    fn on_connect(&mut self, client: ClientId, now: SystemTime, out: &mut Replies)
    -> Self::Session;

    /// One complete frame from the client of `session`.
    fn on_frame(
        &mut self,
        session: &mut Self::Session,
        frame: Frame<'_>,
        now: SystemTime,
        out: &mut Replies,
    );

    /// A frame broke the framing's rules. Line protocols answer with an `error:` line.
    fn on_frame_error(
        &mut self,
        _session: &mut Self::Session,
        error: &FrameError,
        out: &mut Replies,
    ) {
        if out.framing() == FramingKind::Line {
            out.error_line(&error.to_string());
        }
    }

    /// The client's outbound queue is empty and the protocol asked for this with
    /// [`Replies::refill_when_drained`]: chargen makes its next batch here.
    fn on_drained(&mut self, _session: &mut Self::Session, _out: &mut Replies) {}

    /// The client sent FIN: it will send no more, but may still read. A refill asked for earlier
    /// is dropped at this point: a protocol that still owes a body (a file download) asks again
    /// here; one that would talk forever (chargen) does not, and the connection closes once its
    /// queue is written.
    fn on_end_of_input(&mut self, _session: &mut Self::Session, _out: &mut Replies) {}

    /// Nothing moved for `--idle-timeout`: the connection closes once what is recorded here is
    /// written. Line protocols say why.
    fn on_idle_timeout(&mut self, _session: &mut Self::Session, out: &mut Replies) {
        if out.framing() == FramingKind::Line {
            out.error_line("idle timeout");
        }
    }

    /// The client is gone (its number may be reused after this returns); its session comes back
    /// to be dropped or mined. Only actions for other clients are carried out. Chat announces
    /// the departure here.
    fn on_disconnect(&mut self, _session: Self::Session, _reason: CloseReason, _out: &mut Replies) {
    }

    /// One UDP datagram. Write the answer into `reply` (empty on entry) and say whether to send it.
    fn on_datagram(&mut self, _datagram: &[u8], _now: SystemTime, _reply: &mut Vec<u8>) -> Answer {
        Answer::Silent
    }

    /// Whether `--chat-rate` applies: the reactor then gives each untrusted client's frames to
    /// the protocol at most that many per second (chat's flood control). A client over its rate
    /// is simply not read until its budget refills: its lines wait, in order, and its own TCP
    /// window pushes back on it, never on others.
    fn limits_frame_rate(&self) -> bool {
        false
    }

    /// Called once when a reactor starts, before any client: the waker that interrupts the
    /// reactor's wait. Give it to work done off the loop (one helper thread doing blocking disk
    /// work: the files service's fsync); when a job is done, [`mio::Waker::wake`] it, and the
    /// reactor calls [`Protocol::on_woken`] on its own thread. Not called in the threaded model:
    /// a protocol that gets no waker does its work inline.
    fn attach_waker(&mut self, _waker: Arc<mio::Waker>) {}

    /// The waker fired (or something else woke the reactor: wake-ups are hints): push the clients
    /// whose work off the loop is finished. Each of them still connected then gets
    /// [`Protocol::on_resume`].
    fn on_woken(&mut self, _ready: &mut Vec<ClientId>) {}

    /// Work off the loop for this client is finished (it was named by [`Protocol::on_woken`]):
    /// answer through `out` as from [`Protocol::on_frame`]; typically
    /// [`Replies::resume_input`] too, if the work began with [`Replies::pause_input`].
    fn on_resume(&mut self, _session: &mut Self::Session, _now: SystemTime, _out: &mut Replies) {}
}

/// The services echoloop ships (`-p/--protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolKind {
    /// RFC 862: every byte comes back.
    Echo,
    /// The tutorial server: each read (raw framing, the default) or line (`--framing line`)
    /// comes back as `[<ctime>] <message>`.
    Timestamp,
    /// RFC 867: one line with the date and time, then the server closes.
    Daytime,
    /// RFC 868: four bytes, the seconds since 1900 (big-endian), then the server closes.
    Time,
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
    /// Every kind, in `--help` order.
    pub const ALL: [ProtocolKind; 8] = [
        ProtocolKind::Echo,
        ProtocolKind::Timestamp,
        ProtocolKind::Daytime,
        ProtocolKind::Time,
        ProtocolKind::Discard,
        ProtocolKind::Chargen,
        ProtocolKind::Chat,
        ProtocolKind::Files,
    ];

    /// The name `-p` takes and logs use.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolKind::Echo => Echo::NAME,
            ProtocolKind::Timestamp => Timestamp::NAME,
            ProtocolKind::Daytime => Daytime::NAME,
            ProtocolKind::Time => Time::NAME,
            ProtocolKind::Discard => Discard::NAME,
            ProtocolKind::Chargen => Chargen::NAME,
            ProtocolKind::Chat => Chat::NAME,
            ProtocolKind::Files => Files::NAME,
        }
    }

    /// Whether `--framing` changes anything for this service: not for those that never read a
    /// message (daytime and time answer the connection, chargen ignores what comes), nor for
    /// files, which has its own.
    pub fn takes_framing(self) -> bool {
        !matches!(
            self,
            ProtocolKind::Daytime
                | ProtocolKind::Time
                | ProtocolKind::Chargen
                | ProtocolKind::Files
        )
    }

    /// The framing used when `--framing` is not given.
    pub fn default_framing(self) -> FramingKind {
        match self {
            ProtocolKind::Echo => Echo::FRAMING,
            ProtocolKind::Timestamp => Timestamp::FRAMING,
            ProtocolKind::Daytime => Daytime::FRAMING,
            ProtocolKind::Time => Time::FRAMING,
            ProtocolKind::Discard => Discard::FRAMING,
            ProtocolKind::Chargen => Chargen::FRAMING,
            ProtocolKind::Chat => Chat::FRAMING,
            ProtocolKind::Files => Files::FRAMING,
        }
    }

    /// A fresh protocol value of this kind, for one reactor. Only `files` needs a config (its
    /// folder, opened here); without one it cannot be built.
    pub(crate) fn build(self, files: Option<&FilesConfig>) -> io::Result<Box<dyn Service>> {
        Ok(match self {
            ProtocolKind::Echo => Box::new(Echo),
            ProtocolKind::Timestamp => Box::new(Timestamp::new()),
            ProtocolKind::Daytime => Box::new(Daytime),
            ProtocolKind::Time => Box::new(Time),
            ProtocolKind::Discard => Box::new(Discard),
            ProtocolKind::Chargen => Box::new(Chargen::new()),
            ProtocolKind::Chat => Box::new(Chat::new()),
            ProtocolKind::Files => match files {
                Some(config) => Box::new(Files::open(config)?),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "-p files needs --dir DIR",
                    ));
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn each_kind_is_named_as_the_command_line_names_it() {
        for kind in ProtocolKind::ALL {
            let value = kind.to_possible_value().unwrap();
            assert_eq!(value.get_name(), kind.name());
        }
        assert_eq!(ProtocolKind::value_variants(), &ProtocolKind::ALL);
    }
}
