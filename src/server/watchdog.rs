//! systemd's watchdog: ping `WATCHDOG=1` only while every reactor is still turning.
//!
//! With `WatchdogSec=30` in the unit, systemd expects `WATCHDOG=1` at least every 30 s and
//! restarts the service when one is missed. The point is to catch a server that is running but
//! stuck: a loop spinning in one client's callback, a deadlock, a blocking call that never
//! returns. A ping from a thread that merely exists proves nothing, so the ping has to be earned:
//! each reactor stamps a shared [`Heartbeat`] at the top of every turn of its loop (one atomic
//! store: free on the hot path), and the ping is sent only if every stamp is recent.
//!
//! An idle reactor turns only when something happens, and nothing may happen for hours. So the
//! watchdog first *makes* each reactor turn: it wakes it through the reactor's own `mio::Waker`
//! (the one a stop request uses; a wake-up without a stop request is a no-op turn). A healthy
//! reactor turns within microseconds; a stuck one does not, and its stamp grows old.
//!
//! **Where the pinging lives.** A small thread of its own, rather than a timer on worker 0's
//! loop: a timer on worker 0 would stop with worker 0 (fine: no ping, systemd restarts us) but
//! would have to reach into the other workers to wake and check them anyway, and a watchdog that
//! shares the loop it watches is one more thing in the loop. The thread sleeps half the interval
//! (systemd's own advice), then checks each stamp is no older than the interval, pings if so,
//! wakes every reactor, and sleeps again. It ends when the server's reactors have all stopped.
//!
//! Only a daemon (`serve` from the command line) runs it, and only if systemd set
//! `WATCHDOG_USEC` for this process: see `net/notify.rs`.
//!
//! Next: `server/stats.rs`, the counters.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::Waker;

use crate::net::notify;

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

/// The running watchdog thread; it stops and is joined when this is dropped.
pub struct WatchdogThread {
    /// Dropped to tell the thread to stop (its `recv_timeout` then returns at once).
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WatchdogThread {
    /// Starts pinging every `interval / 2` while every one of `reactors` turns.
    pub fn spawn(reactors: Vec<Watched>, interval: Duration) -> io::Result<WatchdogThread> {
        let (stop, stopped) = mpsc::channel::<()>();
        info!(
            "watchdog: WATCHDOG=1 every {:?} while all {} reactor(s) turn",
            interval / 2,
            reactors.len()
        );
        let thread = std::thread::Builder::new()
            .name("echoloop-watchdog".into())
            .spawn(move || watch(&reactors, interval, &stopped))?;
        Ok(WatchdogThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for WatchdogThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watchdog's loop: wake, wait half the interval, check, ping; until `stopped` says so.
fn watch(reactors: &[Watched], interval: Duration, stopped: &mpsc::Receiver<()>) {
    let mut stale_logged = false;
    loop {
        for reactor in reactors {
            let _ = reactor.waker.wake(); // fails only if the reactor is gone: then we stop soon
        }
        match stopped.recv_timeout(interval / 2) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        match first_stale(reactors, interval, Instant::now()) {
            None => {
                notify::notify_watchdog();
                stale_logged = false;
            }
            Some(worker) if !stale_logged => {
                warn!(
                    "watchdog: worker {worker} has not turned for {} ms: no WATCHDOG=1 until it \
                     does (systemd restarts a server stuck for WatchdogSec)",
                    reactors[worker].heartbeat.age(Instant::now()).as_millis()
                );
                stale_logged = true;
            }
            Some(_) => {}
        }
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
