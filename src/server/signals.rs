//! How a reactor learns it should stop: signals and stop requests as readable tokens.
//!
//! A signal handler may run between any two instructions of the program, so it can do almost
//! nothing safely. `signal-hook-mio` does the one safe thing: the handler writes a byte to a pipe
//! that the reactor watches like any socket. SIGINT and SIGTERM then arrive as an ordinary
//! readiness event, in the loop, between two batches of work, and the reactor begins its drain:
//! close the listeners (a connection attempted after the signal is refused, not served), stop
//! reading, flush every queue for up to `--shutdown-timeout`, then exit. SIGUSR1 logs the counters.
//! SIGHUP (the daemon's "reload") reads the host's addresses again for the UDP loop guard
//! (`server/sources/guard.rs`), after an address was added or removed, and the TLS certificate
//! and key (`reactor/tls.rs`), after a renewal; it no longer ends the process, as its default
//! action would.
//!
//! In-process servers (tests, the load generator's own checks) do not touch the process's signals;
//! they are stopped through a [`StopHandle`], which sets a flag and wakes the reactor with a
//! `mio::Waker` (an eventfd the reactor also watches).
//!
//! Next: `server/watchdog.rs`, proving to systemd that the loops still turn.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::{Registry, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

/// What a signal asks of the reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalRequest {
    /// SIGINT or SIGTERM: drain and stop.
    Stop,
    /// SIGUSR1: log the counters.
    LogStats,
    /// SIGHUP: read the host's addresses and the TLS certificate and key again.
    Reload,
}

/// The signals a daemon reactor listens to, registered with its poller.
pub struct SignalSource {
    signals: Signals,
    token: Token,
}

impl SignalSource {
    /// Installs handlers for SIGINT, SIGTERM, SIGUSR1 and SIGHUP and registers their pipe under
    /// `token`.
    pub fn register(registry: &Registry, token: Token) -> io::Result<SignalSource> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGHUP])?;
        registry.register(&mut signals, token, mio::Interest::READABLE)?;
        Ok(SignalSource { signals, token })
    }

    /// The signals that arrived since the last call. On mio's poll(2) backend the pipe is
    /// registered again: signal-hook drains it itself, so mio never sees the `WouldBlock` after
    /// which that backend watches a source again, and a second signal would go unnoticed.
    pub fn pending(&mut self, registry: &Registry) -> Vec<SignalRequest> {
        let requests = self
            .signals
            .pending()
            .map(|signal| match signal {
                SIGUSR1 => SignalRequest::LogStats,
                SIGHUP => SignalRequest::Reload,
                _ => SignalRequest::Stop,
            })
            .collect();
        if cfg!(mio_unsupported_force_poll_poll)
            && let Err(e) =
                registry.reregister(&mut self.signals, self.token, mio::Interest::READABLE)
        {
            log::warn!("cannot watch for signals again: {e}");
        }
        requests
    }
}

/// Asks one or more running reactors to drain and stop, from any thread.
#[derive(Clone)]
pub struct StopHandle {
    requested: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
}

impl StopHandle {
    /// A handle whose flag `requested` the reactors check when woken.
    pub fn new(requested: Arc<AtomicBool>, wakers: Vec<Arc<Waker>>) -> Self {
        StopHandle { requested, wakers }
    }

    /// Begins the same drain as SIGTERM in every reactor.
    pub fn stop(&self) {
        self.requested.store(true, Ordering::SeqCst);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("requested", &self.requested.load(Ordering::Relaxed))
            .finish()
    }
}
