//! systemd's watchdog: ping `WATCHDOG=1` only while every reactor is still turning.
//!
//! With `WatchdogSec=30` in the unit, systemd expects `WATCHDOG=1` at least every 30 s and
//! restarts the service when one is missed. The point is to catch a server that is running but
//! stuck: a loop spinning in one client's callback, a deadlock, a blocking call that never
//! returns. A ping sent by something that merely exists proves nothing, so the ping has to be
//! earned: each reactor stamps a shared [`Heartbeat`] at the top of every turn of its loop (one
//! atomic store: free on the hot path), and the ping is sent only if every stamp is recent.
//!
//! An idle reactor turns only when something happens, and nothing may happen for hours. So the
//! watchdog first *makes* each reactor turn: it wakes it through the reactor's own `mio::Waker`
//! (the one a stop request uses; a wake-up without a stop request is a no-op turn). A healthy
//! reactor turns within microseconds; a stuck one does not, and its stamp grows old.
//!
//! **Where the pinging lives: on worker 0's loop, as one more deadline.** No thread of its own
//! (the only threads besides the reactors are the files workers, which do blocking disk work):
//! a [`Watchdog`] belongs to worker 0, and its next check is one more deadline in worker 0's
//! alarm (`reactor/tidy.rs` runs it with the other timers). Every half interval (systemd's own
//! advice) worker 0 checks that every stamp is no older than the interval, pings if so, and wakes
//! the other reactors, so that by the next check each has turned once more. Its own stamp is
//! fresh by construction: it was written at the top of the very turn that runs the check. The
//! others' are atomics, read without a lock. Nothing is added to a turn when no check is due.
//!
//! **A stuck worker 0** runs no check, so no ping comes and systemd restarts the service: the
//! watchdog's own stall is detected exactly like any other worker's. A watchdog on a thread of
//! its own could say no more (it would see worker 0's stamp grow old and stop pinging: the same
//! silence), and would be one more thread to start, stop and reason about. The pings end when
//! worker 0 stops; the others may still be draining then, under systemd's stop timeout.
//!
//! Only a daemon (`serve` from the command line) has one, and only if systemd set
//! `WATCHDOG_USEC` for this process (see `net/notify.rs`); an embedder or a test may give a
//! server its own with [`crate::Server::set_watchdog`].
//!
//! Next: `server/stats.rs`, the counters.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::Waker;

/// When one reactor last began a turn of its loop, readable from any thread.
#[derive(Debug)]
pub struct Heartbeat {
    /// The clock's zero for `last_turn_ms`.
    since: Instant,
    /// Milliseconds after `since` of the last turn.
    last_turn_ms: AtomicU64,
}

impl Heartbeat {
    /// A heartbeat that counts its creation as a turn.
    pub fn new() -> Heartbeat {
        Heartbeat {
            since: Instant::now(),
            last_turn_ms: AtomicU64::new(0),
        }
    }

    /// The reactor is turning at `now`.
    pub fn beat(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.since).as_millis() as u64;
        self.last_turn_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago, at `now`, the reactor last turned.
    pub fn age(&self, now: Instant) -> Duration {
        let last = self.since + Duration::from_millis(self.last_turn_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

/// One reactor as the watchdog sees it: when it last turned, and how to make it turn.
pub struct Watched {
    /// The reactor's stamp.
    pub heartbeat: Arc<Heartbeat>,
    /// The reactor's waker.
    pub waker: Arc<Waker>,
}

/// Whether every reactor turned within `interval` of `now`; if not, the first one that did not
/// (by its index: the worker's number).
pub fn first_stale(reactors: &[Watched], interval: Duration, now: Instant) -> Option<usize> {
    reactors
        .iter()
        .position(|r| r.heartbeat.age(now) > interval)
}

/// Sends one `WATCHDOG=1` (to systemd: [`crate::net::notify::notify_watchdog`]).
pub type Ping = Box<dyn FnMut() + Send>;

/// The watchdog, owned by worker 0's reactor: when to check next, and whom to check.
pub struct Watchdog {
    /// Every reactor, by worker number; the first is worker 0, the owner.
    reactors: Vec<Watched>,
    /// `WATCHDOG_USEC`: the longest a stamp may be old for a ping.
    interval: Duration,
    /// When the owner's loop checks next: every half interval.
    next_check: Instant,
    ping: Ping,
    /// A stale episode is under way and has been logged.
    stale_logged: bool,
}

impl Watchdog {
    /// A watchdog over `reactors` (worker 0, the owner, first) that calls `ping` every
    /// `interval / 2` while every one of them turned within `interval`. It wakes the others at
    /// once, so that every stamp is fresh at the first check, half an interval from `now`.
    pub fn start(reactors: Vec<Watched>, interval: Duration, ping: Ping, now: Instant) -> Watchdog {
        info!(
            "watchdog: WATCHDOG=1 every {:?} while all {} reactor(s) turn",
            interval / 2,
            reactors.len()
        );
        let watchdog = Watchdog {
            reactors,
            interval,
            next_check: now + interval / 2,
            ping,
            stale_logged: false,
        };
        watchdog.wake_others();
        watchdog
    }

    /// When the owner's loop should call [`Watchdog::check`]: one more deadline for its alarm.
    pub fn next_check(&self) -> Instant {
        self.next_check
    }

    /// Run by the owner's loop once `now` has reached [`Watchdog::next_check`]: pings if every
    /// reactor turned within the interval, then wakes the others and schedules the next check.
    pub fn check(&mut self, now: Instant) {
        match first_stale(&self.reactors, self.interval, now) {
            None => {
                (self.ping)();
                self.stale_logged = false;
            }
            Some(worker) if !self.stale_logged => {
                warn!(
                    "watchdog: worker {worker} has not turned for {} ms: no WATCHDOG=1 until it \
                     does (systemd restarts a server stuck for WatchdogSec)",
                    self.reactors[worker].heartbeat.age(now).as_millis()
                );
                self.stale_logged = true;
            }
            Some(_) => {}
        }
        self.wake_others();
        self.next_check = now + self.interval / 2;
    }

    /// Makes every reactor but the owner turn once (the owner is turning already).
    fn wake_others(&self) {
        for reactor in self.reactors.iter().skip(1) {
            let _ = reactor.waker.wake(); // fails only if the reactor is gone: nothing to wake
        }
    }
}

impl fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchdog")
            .field("reactors", &self.reactors.len())
            .field("interval", &self.interval)
            .field("next_check", &self.next_check)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(poll: &mio::Poll) -> Watched {
        Watched {
            heartbeat: Arc::new(Heartbeat::new()),
            waker: Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap()),
        }
    }

    #[test]
    fn a_reactor_that_stops_turning_is_stale_once_the_interval_has_passed() {
        let polls = [mio::Poll::new().unwrap(), mio::Poll::new().unwrap()];
        let reactors: Vec<Watched> = polls.iter().map(watched).collect();
        let start = reactors[0].heartbeat.since.max(reactors[1].heartbeat.since);
        let interval = Duration::from_secs(10);
        reactors[0].heartbeat.beat(start + Duration::from_secs(5));
        reactors[1].heartbeat.beat(start + Duration::from_secs(5));
        assert_eq!(
            first_stale(&reactors, interval, start + Duration::from_secs(14)),
            None,
            "both turned 9 s ago"
        );
        reactors[0].heartbeat.beat(start + Duration::from_secs(20));
        assert_eq!(
            first_stale(&reactors, interval, start + Duration::from_secs(21)),
            Some(1),
            "worker 1 has not turned for 16 s"
        );
        reactors[1].heartbeat.beat(start + Duration::from_secs(21));
        assert_eq!(
            first_stale(&reactors, interval, start + Duration::from_secs(22)),
            None
        );
    }

    #[test]
    fn a_check_pings_only_while_every_stamp_is_fresh_and_wakes_the_others() {
        let mut polls = [mio::Poll::new().unwrap(), mio::Poll::new().unwrap()];
        let reactors: Vec<Watched> = polls.iter().map(watched).collect();
        let heartbeats: Vec<Arc<Heartbeat>> =
            reactors.iter().map(|r| Arc::clone(&r.heartbeat)).collect();
        let pings = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&pings);
        let ping: Ping = Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let start = heartbeats[0].since.max(heartbeats[1].since);
        let interval = Duration::from_secs(10);
        let mut watchdog = Watchdog::start(reactors, interval, ping, start);
        let mut events = mio::Events::with_capacity(4);
        let woken = |poll: &mut mio::Poll, events: &mut mio::Events| {
            poll.poll(events, Some(Duration::ZERO)).unwrap();
            events.iter().count()
        };
        assert_eq!(
            woken(&mut polls[1], &mut events),
            1,
            "worker 1 woken at the start"
        );
        assert_eq!(watchdog.next_check(), start + Duration::from_secs(5));

        heartbeats[0].beat(start + Duration::from_secs(5));
        heartbeats[1].beat(start + Duration::from_secs(1));
        watchdog.check(start + Duration::from_secs(5));
        assert_eq!(pings.load(Ordering::Relaxed), 1);
        assert_eq!(
            woken(&mut polls[0], &mut events),
            0,
            "the owner is never woken"
        );
        assert_eq!(woken(&mut polls[1], &mut events), 1, "worker 1 woken again");
        assert_eq!(watchdog.next_check(), start + Duration::from_secs(10));

        // Worker 1 does not turn again: 11 s old at the next-but-one check, no more pings.
        heartbeats[0].beat(start + Duration::from_secs(12));
        watchdog.check(start + Duration::from_secs(12));
        assert_eq!(pings.load(Ordering::Relaxed), 1);
        heartbeats[1].beat(start + Duration::from_secs(13));
        heartbeats[0].beat(start + Duration::from_secs(17));
        watchdog.check(start + Duration::from_secs(17));
        assert_eq!(
            pings.load(Ordering::Relaxed),
            2,
            "pings again once it turned"
        );
    }

    #[test]
    fn a_stamp_is_never_in_the_future() {
        let heartbeat = Heartbeat::new();
        let later = heartbeat.since + Duration::from_secs(3);
        heartbeat.beat(later);
        assert_eq!(heartbeat.age(heartbeat.since), Duration::ZERO);
        assert_eq!(
            heartbeat.age(later + Duration::from_millis(1500)),
            Duration::from_millis(1500)
        );
    }
}
