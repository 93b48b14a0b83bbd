//! How the reactor calls a protocol whatever its session type: one object-safe trait.
//!
//! [`Protocol`] has an associated type, [`Protocol::Session`]: chargen keeps a line number per
//! client, files a transfer, echo nothing (`()`). That is what a protocol author wants to write,
//! and what makes per-client state live *with* the connection instead of in a map keyed by client
//! number. But a reactor cannot hold "some protocol with some session type" in one field unless
//! the type is erased. [`Service`] is the erased form: the reactor holds a `Box<dyn Service>`, and
//! each connection holds its session as a [`Session`] (a `Box<dyn Any>`). Every `P: Protocol` is a
//! `Service` through the blanket impl below, which turns the box back into `P::Session` for each
//! call. A session of size zero (echo's `()`) is boxed without allocating, so a protocol without
//! per-client state costs nothing per connection.
//!
//! [`ProtocolFactory`] makes a fresh service per reactor (each worker has its own; a protocol lives
//! on its reactor's thread and need not be `Send`), and knows the protocol's name and default
//! framing without making one.
//!
//! Next: `close.rs`, why a connection ended.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use super::framing::{Frame, FrameError, FramingKind};
use super::{Answer, ClientId, CloseReason, Protocol, Replies, SlowReader};

/// One connection's protocol state, whatever the protocol: kept beside the connection.
pub struct Session(Box<dyn Any>);

impl Session {
    /// A session holding nothing: for tests of the connection state machine, and for a
    /// connection whose PROXY header is not read yet (no service has been told of it).
    pub(crate) fn none() -> Session {
        Session(Box::new(()))
    }

    /// The protocol's own session type, back from the box. Each session is made by the service
    /// that later receives it (the reactor never mixes services), so the type always matches.
    fn of<P: Protocol>(&mut self) -> &mut P::Session {
        self.0
            .downcast_mut::<P::Session>()
            .expect("a session is only ever given back to the service that made it")
    }

    fn into_inner<P: Protocol>(self) -> P::Session {
        *self
            .0
            .downcast::<P::Session>()
            .expect("a session is only ever given back to the service that made it")
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Session(..)")
    }
}

/// A [`Protocol`] with its session type erased: what the reactor and the threaded model call.
pub(crate) trait Service {
    fn default_framing(&self) -> FramingKind;
    fn slow_reader(&self) -> SlowReader;
    fn connect(&mut self, client: ClientId, now: SystemTime, out: &mut Replies) -> Session;
    fn frame(
        &mut self,
        session: &mut Session,
        frame: Frame<'_>,
        now: SystemTime,
        out: &mut Replies,
    );
    fn frame_error(&mut self, session: &mut Session, error: &FrameError, out: &mut Replies);
    fn drained(&mut self, session: &mut Session, out: &mut Replies);
    fn end_of_input(&mut self, session: &mut Session, out: &mut Replies);
    fn idle_timeout(&mut self, session: &mut Session, out: &mut Replies);
    fn disconnect(&mut self, session: Session, reason: CloseReason, out: &mut Replies);
    fn datagram(&mut self, datagram: &[u8], now: SystemTime, reply: &mut Vec<u8>) -> Answer;
    fn limits_frame_rate(&self) -> bool;
    fn attach_waker(&mut self, waker: Arc<mio::Waker>);
    fn woken(&mut self, ready: &mut Vec<ClientId>);
    fn resume(&mut self, session: &mut Session, now: SystemTime, out: &mut Replies);
}

impl<P: Protocol> Service for P {
    fn default_framing(&self) -> FramingKind {
        P::FRAMING
    }

    fn slow_reader(&self) -> SlowReader {
        Protocol::slow_reader(self)
    }

    fn connect(&mut self, client: ClientId, now: SystemTime, out: &mut Replies) -> Session {
        Session(Box::new(self.on_connect(client, now, out)))
    }

    #[inline]
    fn frame(
        &mut self,
        session: &mut Session,
        frame: Frame<'_>,
        now: SystemTime,
        out: &mut Replies,
    ) {
        self.on_frame(session.of::<P>(), frame, now, out);
    }

    fn frame_error(&mut self, session: &mut Session, error: &FrameError, out: &mut Replies) {
        self.on_frame_error(session.of::<P>(), error, out);
    }

    fn drained(&mut self, session: &mut Session, out: &mut Replies) {
        self.on_drained(session.of::<P>(), out);
    }

    fn end_of_input(&mut self, session: &mut Session, out: &mut Replies) {
        self.on_end_of_input(session.of::<P>(), out);
    }

    fn idle_timeout(&mut self, session: &mut Session, out: &mut Replies) {
        self.on_idle_timeout(session.of::<P>(), out);
    }

    fn disconnect(&mut self, session: Session, reason: CloseReason, out: &mut Replies) {
        self.on_disconnect(session.into_inner::<P>(), reason, out);
    }

    fn datagram(&mut self, datagram: &[u8], now: SystemTime, reply: &mut Vec<u8>) -> Answer {
        self.on_datagram(datagram, now, reply)
    }

    fn limits_frame_rate(&self) -> bool {
        Protocol::limits_frame_rate(self)
    }

    fn attach_waker(&mut self, waker: Arc<mio::Waker>) {
        Protocol::attach_waker(self, waker);
    }

    fn woken(&mut self, ready: &mut Vec<ClientId>) {
        self.on_woken(ready);
    }

    fn resume(&mut self, session: &mut Session, now: SystemTime, out: &mut Replies) {
        self.on_resume(session.of::<P>(), now, out);
    }
}

/// Makes a fresh protocol value for one reactor: how a protocol of your own is served.
///
/// A protocol lives on its reactor's thread and need not be `Send`, so with `--workers N` each
/// reactor builds its own from this shared factory. See `examples/suffix.rs`.
#[derive(Clone)]
pub struct ProtocolFactory {
    name: &'static str,
    framing: FramingKind,
    make: Arc<dyn Fn() -> Box<dyn Service> + Send + Sync>,
}

impl ProtocolFactory {
    /// A factory that calls `make` once per reactor (and once per connection in the threaded
    /// model, where each thread needs its own value).
    pub fn new<P: Protocol>(make: impl Fn() -> P + Send + Sync + 'static) -> Self {
        ProtocolFactory {
            name: P::NAME,
            framing: P::FRAMING,
            make: Arc::new(move || Box::new(make()) as Box<dyn Service>),
        }
    }

    /// The protocol's name ([`Protocol::NAME`]), for logs.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The framing used when none is configured ([`Protocol::FRAMING`]).
    pub fn default_framing(&self) -> FramingKind {
        self.framing
    }

    /// A new protocol value, erased.
    pub(crate) fn build(&self) -> Box<dyn Service> {
        (self.make)()
    }
}

impl fmt::Debug for ProtocolFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProtocolFactory({})", self.name)
    }
}
