//! What a socket asks the poller for, decided in one place from two facts.
//!
//! A readiness loop must not ask for more than it can use. A socket registered for `READABLE`
//! while we do not want its bytes (a paused client) wakes the loop for nothing; one registered for
//! `WRITABLE` while we have nothing to write is worse: an idle socket's send buffer has room, so
//! the kernel reports it writable at once, every time, and the loop spins. So every socket in
//! echoloop (a server's client, a UDP endpoint, a metrics scrape, the interactive client, each
//! connection of the load generator) derives its interest from the same two facts with
//! [`interest`]:
//!
//! - *reading*: we want the peer's bytes now (not paused, not closing);
//! - *refused bytes*: the kernel refused some of our bytes, which wait in a queue for room.
//!
//! [`Registration`] remembers what the poller holds and calls `epoll_ctl` (or `kevent`) only when
//! the wanted interest differs: one system call per change of mind, none in the steady state.
//!
//! Next: `protocol/framing.rs`, where one message ends and the next begins.

use std::io;

use log::trace;
use mio::event::Source;
use mio::{Interest, Registry, Token};

/// What to ask the poller for: readable while `reading`, writable only while bytes the kernel
/// refused are waiting. `None`: nothing left to wait for (the socket is done).
pub fn interest(reading: bool, refused_bytes: bool) -> Option<Interest> {
    match (reading, refused_bytes) {
        (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
        (true, false) => Some(Interest::READABLE),
        (false, true) => Some(Interest::WRITABLE),
        (false, false) => None,
    }
}

/// The interest a poller holds for one socket, changed only when the wanted interest differs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    held: Option<Interest>,
}

impl Registration {
    /// Not registered yet.
    pub fn new() -> Self {
        Registration { held: None }
    }

    /// What the poller holds now (`None`: not registered).
    pub fn held(&self) -> Option<Interest> {
        self.held
    }

    /// Makes the poller hold `wanted` for `source` under `token`: registers, re-registers or
    /// deregisters as needed, and does nothing if it already holds that (the usual case, kept
    /// inline: it costs a comparison).
    #[inline]
    pub fn update(
        &mut self,
        registry: &Registry,
        source: &mut impl Source,
        token: Token,
        wanted: Option<Interest>,
    ) -> io::Result<()> {
        if wanted == self.held {
            return Ok(());
        }
        self.change(registry, source, token, wanted)
    }

    /// Tells the poller about a change of mind: one `epoll_ctl` (or `kevent`).
    #[cold]
    fn change(
        &mut self,
        registry: &Registry,
        source: &mut impl Source,
        token: Token,
        wanted: Option<Interest>,
    ) -> io::Result<()> {
        trace!(
            "interest token={} {} -> {}",
            token.0,
            label(self.held),
            label(wanted)
        );
        match (self.held, wanted) {
            (None, Some(interest)) => registry.register(source, token, interest)?,
            (Some(_), Some(interest)) => registry.reregister(source, token, interest)?,
            (Some(_), None) => registry.deregister(source)?,
            (None, None) => {}
        }
        self.held = wanted;
        Ok(())
    }

    /// The socket was closed (closing a descriptor removes it from the poller): nothing is held.
    pub fn forget(&mut self) {
        self.held = None;
    }
}

/// Interest as the trace writes it: `-`, `R`, `W`, `RW`.
pub fn label(interest: Option<Interest>) -> &'static str {
    match interest {
        None => "-",
        Some(i) if i.is_readable() && i.is_writable() => "RW",
        Some(i) if i.is_readable() => "R",
        Some(_) => "W",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;
    use mio::net::UdpSocket;

    #[test]
    fn writable_only_for_refused_bytes() {
        assert_eq!(interest(true, false), Some(Interest::READABLE));
        assert_eq!(
            interest(true, true),
            Some(Interest::READABLE | Interest::WRITABLE)
        );
        assert_eq!(interest(false, true), Some(Interest::WRITABLE));
        assert_eq!(interest(false, false), None);
    }

    #[test]
    fn the_poller_is_told_only_about_changes() {
        let poll = Poll::new().unwrap();
        let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut registration = Registration::new();
        let token = Token(3);
        let readable = Some(Interest::READABLE);
        registration
            .update(poll.registry(), &mut socket, token, readable)
            .unwrap();
        assert_eq!(registration.held(), readable);
        // Registering the same socket twice fails with EEXIST: a second `update` with the same
        // interest must not try.
        registration
            .update(poll.registry(), &mut socket, token, readable)
            .unwrap();
        let both = interest(true, true);
        registration
            .update(poll.registry(), &mut socket, token, both)
            .unwrap();
        assert_eq!(registration.held(), both);
        registration
            .update(poll.registry(), &mut socket, token, None)
            .unwrap();
        assert_eq!(registration.held(), None);
        // Deregistered: registering again works.
        registration
            .update(poll.registry(), &mut socket, token, readable)
            .unwrap();
    }

    #[test]
    fn labels() {
        assert_eq!(label(None), "-");
        assert_eq!(label(interest(true, true)), "RW");
        assert_eq!(label(interest(false, true)), "W");
    }
}
