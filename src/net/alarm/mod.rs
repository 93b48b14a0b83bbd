//! The reactor's alarm clock: how the loop wakes for its earliest deadline when no socket does.
//!
//! A reactor's only wait is `poll`, so a deadline (an idle client, the end of a drain) must end
//! that wait. There are two ways, and which one is cheaper depends on the kernel.
//!
//! **`poll`'s timeout** is the obvious way, and it works everywhere: sleep no longer than the time
//! left before the earliest deadline. But it is not free on Linux. Each time `epoll_wait` is given
//! a timeout *and has to sleep*, the kernel arms a high-resolution timer for that sleep and cancels
//! it when the thread is woken. A server with a few busy clients sleeps once per message or so, and
//! pays that every time: with one connection ping-ponging 64 bytes, the timerfd below spends 4.6%
//! less CPU per message than passing the deadline to every `epoll_wait` did (both builds run side
//! by side, docs/BENCHMARKS.md, "Optimisations").
//!
//! **A timerfd** (Linux, `timerfd.rs`) is a timer with a file descriptor, which epoll watches like
//! one more socket: it becomes readable when the deadline passes. So on Linux the reactor sleeps
//! without a timeout and keeps its earliest deadline there. The timer is set again only when the
//! earliest deadline *changes*, which the lazy timer heap (`timers.rs`) makes rare: activity on a
//! connection does not move its heap entry. In the steady state the alarm costs no system call.
//!
//! **Everywhere else** (macOS, FreeBSD and the other kqueue systems; `timeout.rs`) there is no
//! descriptor: [`Alarm::set`] returns the time left before the deadline, and the reactor hands it
//! to `poll` as its timeout. kqueue takes that timeout as a `timespec`, to the nanosecond, and mio
//! passes it on exactly; mio's epoll and `poll(2)` backends round it up to whole milliseconds
//! instead. We round up to the next whole millisecond ourselves, on every backend, so the alarm
//! behaves the same everywhere: never early (a timeout rounded *down* would wake the loop before
//! the deadline, find nothing due, and sleep again for the crumbs), at most a millisecond late,
//! and deadlines within the same millisecond are served by one wake-up. (kqueue has a timer of
//! its own, `EVFILT_TIMER`, but mio does not expose it, and the cost measured above was measured
//! on Linux only.)
//!
//! **On mio's `poll(2)` backend** (a build with `RUSTFLAGS='--cfg mio_unsupported_force_poll_poll'`,
//! which the guide's "Why epoll" measurements use) the timerfd cannot serve, on Linux or not.
//! `poll(2)` is level-triggered, so mio emulates epoll's edges: once it has reported a descriptor,
//! it stops asking about what it reported until an IO call through mio's own socket types says
//! `WouldBlock`, which re-arms it. A timerfd is a raw descriptor, read by us and not by mio: it
//! would ring once and never again. So that build uses `timeout.rs` as the kqueue systems do
//! (`server/reactor/client.rs` explains the other half: reading to `WouldBlock`).
//!
//! A load generator pacing `--rate` messages needs better than a millisecond: it calls
//! [`Alarm::set_precise`] instead (the exact time left, on every backend) and lowers its threads'
//! timer slack with [`lower_timer_slack`], so the kernel does not batch its wake-ups.
//!
//! Either way the reactor is written once, against the three methods below: `new` (registers the
//! descriptor, if there is one), `set` (returns what `poll` should be given) and `rang` (the
//! alarm's token came: clear it).
//!
//! Next: `timerfd.rs` and `timeout.rs`, the two clocks; then `server/signals.rs`.

use std::io;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

// The timerfd where there is one and the poller is epoll; `poll`'s timeout everywhere else,
// mio's `poll(2)` backend included (see the module docs).
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(mio_unsupported_force_poll_poll)
))]
mod timerfd;
// Compiled on every system, so that its arithmetic is unit-tested on Linux CI as well; on Linux
// (epoll) only those tests use it.
#[cfg_attr(
    all(
        any(target_os = "linux", target_os = "android"),
        not(mio_unsupported_force_poll_poll)
    ),
    allow(dead_code)
)]
mod timeout;

#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(mio_unsupported_force_poll_poll)
)))]
use timeout::PollTimeout as Clock;
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(mio_unsupported_force_poll_poll)
))]
use timerfd::TimerFd as Clock;

/// The reactor's alarm: a timerfd on Linux, `poll`'s own timeout elsewhere and on mio's `poll(2)`
/// backend (see the module docs).
#[derive(Debug)]
pub struct Alarm {
    clock: Clock,
}

impl Alarm {
    /// A new alarm, not set; registered with `registry` under `token` where it has a descriptor.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Alarm> {
        Ok(Alarm {
            clock: Clock::new(registry, token)?,
        })
    }

    /// Sets the alarm for `deadline` (or never) and returns the timeout to hand to `poll`:
    /// `None` (wait for events; the timerfd wakes the poller) on Linux, the time left, rounded up
    /// to a whole millisecond, elsewhere (and on mio's `poll(2)` backend).
    /// `now` may be a little stale: the alarm then rings a little late, never early.
    pub fn set(&mut self, deadline: Option<Instant>, now: Instant) -> io::Result<Option<Duration>> {
        self.clock.set(deadline, now)
    }

    /// Like [`Alarm::set`], for a caller that needs the deadline to the microsecond (the load
    /// generator's `--rate` schedule): nothing is rounded up to a whole millisecond. A timerfd is
    /// precise anyway; `poll`'s timeout is passed as it is (kqueue takes nanoseconds; mio's
    /// epoll and `poll(2)` backends would round it up themselves).
    pub fn set_precise(
        &mut self,
        deadline: Option<Instant>,
        now: Instant,
    ) -> io::Result<Option<Duration>> {
        self.clock.set_precise(deadline, now)
    }

    /// The alarm's token was reported readable (Linux on epoll only; harmless elsewhere): clear it. The
    /// caller then runs whatever is due; the next [`Alarm::set`] sets the alarm again, even for the
    /// same deadline.
    pub fn rang(&mut self) {
        self.clock.rang();
    }
}

/// Lets the kernel fire this thread's timers at most `slack` late (`PR_SET_TIMERSLACK`, Linux).
///
/// Linux may delay a sleeping thread's wake-up by its *timer slack* (50 µs by default for normal
/// threads, more for some) to batch wake-ups and save power. A load generator pacing messages to
/// the microsecond wants less. The setting is per thread: call it from the thread that waits.
/// Elsewhere this does nothing (kqueue has no such knob); an error is ignored, as the only
/// effect would be a later wake-up.
pub fn lower_timer_slack(slack: Duration) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let ns = libc::c_ulong::try_from(slack.as_nanos())
            .unwrap_or(libc::c_ulong::MAX)
            .max(1);
        // SAFETY: PR_SET_TIMERSLACK takes its value as the second argument and reads no memory.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0);
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = slack;
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    const ALARM: Token = Token(7);
    /// Long enough for any wake-up these tests expect, however busy the machine.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// The reactor's loop, with nothing registered but the alarm: sets it, sleeps in `poll` for
    /// what `set` says, clears it if it rang, until the deadline has passed. Whichever way the
    /// alarm works, `poll` must return by the deadline (a sleep of `PATIENCE` counts as for good).
    fn sleep_until(alarm: &mut Alarm, poll: &mut Poll, deadline: Instant) {
        let mut events = Events::with_capacity(4);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let timeout = alarm.set(Some(deadline), now).unwrap();
            match poll.poll(&mut events, timeout.or(Some(PATIENCE))) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => result.unwrap(),
            }
            assert!(
                now.elapsed() < PATIENCE,
                "the loop slept through its deadline"
            );
            if events.iter().any(|event| event.token() == ALARM) {
                alarm.rang();
            }
        }
    }

    #[test]
    fn the_loop_wakes_for_its_deadline() {
        let mut poll = Poll::new().unwrap();
        let mut alarm = Alarm::new(poll.registry(), ALARM).unwrap();
        sleep_until(
            &mut alarm,
            &mut poll,
            Instant::now() + Duration::from_millis(30),
        );
        // And again for a later one: ringing once does not leave the alarm spent.
        sleep_until(
            &mut alarm,
            &mut poll,
            Instant::now() + Duration::from_millis(30),
        );
    }

    #[test]
    fn no_deadline_means_no_timeout() {
        let poll = Poll::new().unwrap();
        let mut alarm = Alarm::new(poll.registry(), ALARM).unwrap();
        assert_eq!(alarm.set(None, Instant::now()).unwrap(), None);
    }
}
