//! The reactor's alarm clock: a Linux timerfd that epoll watches like one more socket.
//!
//! The obvious way to wake a reactor for its next deadline is `poll`'s timeout, and it works, but
//! it is not free. Each time `epoll_wait` is given a timeout *and has to sleep*, the kernel arms a
//! high-resolution timer for that sleep and cancels it when the thread is woken. A server with a
//! few busy clients sleeps once per message or so; with one connection ping-ponging 64 bytes,
//! passing the idle-timeout deadline to every `epoll_wait` cost about 16% more CPU per message
//! than sleeping without a timeout (docs/BENCHMARKS.md, "Optimisations").
//!
//! So the reactor sleeps without a timeout and keeps its earliest deadline here instead: a
//! `timerfd` registered with the poller, which becomes readable when the deadline passes. The
//! timer is set again only when the earliest deadline *changes*, which the lazy timer heap
//! (`timers.rs`) makes rare: activity on a connection does not move its heap entry. In the steady
//! state the alarm costs no system call at all.
//!
//! Next: `shutdown.rs`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, timerfd_create, timerfd_settime,
};

/// A one-shot timer on `CLOCK_MONOTONIC` (the clock [`Instant`] reads), readable once it expires.
#[derive(Debug)]
pub struct Alarm {
    timer: OwnedFd,
    /// The deadline the timer is set for; `None` once it has rung, or if never set.
    set_for: Option<Instant>,
}

impl Alarm {
    /// An alarm that is not set.
    pub fn new() -> io::Result<Alarm> {
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Alarm {
            timer,
            set_for: None,
        })
    }

    /// Makes the alarm ring at `deadline`, or never (`None`). Costs a system call only when the
    /// deadline differs from the one already set. `now` may be a little stale: the alarm then
    /// rings a little late, never early.
    pub fn set(&mut self, deadline: Option<Instant>, now: Instant) -> io::Result<()> {
        if deadline == self.set_for {
            return Ok(());
        }
        let after = match deadline {
            // A zero `it_value` would disarm the timer: a deadline already passed rings at once.
            Some(at) => at
                .saturating_duration_since(now)
                .max(Duration::from_nanos(1)),
            None => Duration::ZERO, // disarms
        };
        let setting = Itimerspec {
            it_interval: timespec(Duration::ZERO), // one-shot
            it_value: timespec(after),
        };
        timerfd_settime(&self.timer, TimerfdTimerFlags::empty(), &setting)?;
        self.set_for = deadline;
        Ok(())
    }

    /// The alarm's token became readable: clears it. The caller then runs whatever is due; the
    /// next [`Alarm::set`] sets the timer again, even for the same deadline.
    pub fn rang(&mut self) {
        let mut expirations = [0u8; 8];
        // `WouldBlock` is possible and harmless: the timer was set again after it expired and
        // before this event was handled, which clears the expiry but not the event.
        let _ = rustix::io::read(&self.timer, &mut expirations);
        self.set_for = None;
    }
}

fn timespec(duration: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: duration.as_secs() as i64,
        tv_nsec: duration.subsec_nanos().into(),
    }
}

impl Source for Alarm {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.timer.as_raw_fd()).register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.timer.as_raw_fd()).reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.timer.as_raw_fd()).deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    const ALARM: Token = Token(7);

    fn poll_with(alarm: &mut Alarm) -> Poll {
        let poll = Poll::new().unwrap();
        poll.registry()
            .register(alarm, ALARM, Interest::READABLE)
            .unwrap();
        poll
    }

    /// Waits (bounded) for the alarm's event; true if it came.
    fn rings_within(poll: &mut Poll, wait: Duration) -> bool {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(wait)).unwrap();
        events.iter().any(|event| event.token() == ALARM)
    }

    #[test]
    fn rings_at_its_deadline_not_before() {
        let mut alarm = Alarm::new().unwrap();
        let mut poll = poll_with(&mut alarm);
        let now = Instant::now();
        let deadline = now + Duration::from_millis(30);
        alarm.set(Some(deadline), now).unwrap();
        let mut events = Events::with_capacity(4);
        loop {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            if events.iter().any(|event| event.token() == ALARM) {
                break;
            }
        }
        assert!(Instant::now() >= deadline, "rang early");
        alarm.rang();
        assert_eq!(alarm.set_for, None, "ringing forgets the setting");
    }

    #[test]
    fn a_deadline_already_passed_rings_at_once() {
        let mut alarm = Alarm::new().unwrap();
        let mut poll = poll_with(&mut alarm);
        let now = Instant::now();
        alarm.set(Some(now), now + Duration::from_secs(1)).unwrap();
        assert!(rings_within(&mut poll, Duration::from_secs(10)));
    }

    #[test]
    fn unset_or_moved_later_it_stays_quiet() {
        let mut alarm = Alarm::new().unwrap();
        let mut poll = poll_with(&mut alarm);
        let now = Instant::now();
        alarm
            .set(Some(now + Duration::from_millis(1)), now)
            .unwrap();
        alarm.set(None, now).unwrap();
        assert!(!rings_within(&mut poll, Duration::from_millis(50)));
        alarm
            .set(
                Some(Instant::now() + Duration::from_secs(60)),
                Instant::now(),
            )
            .unwrap();
        assert!(!rings_within(&mut poll, Duration::from_millis(50)));
    }

    #[test]
    fn setting_the_same_deadline_again_keeps_it() {
        let mut alarm = Alarm::new().unwrap();
        let mut poll = poll_with(&mut alarm);
        let now = Instant::now();
        let deadline = now + Duration::from_millis(20);
        alarm.set(Some(deadline), now).unwrap();
        // A later `now` with the same deadline must not push the ring later.
        alarm
            .set(Some(deadline), now + Duration::from_secs(5))
            .unwrap();
        assert!(rings_within(&mut poll, Duration::from_secs(10)));
        alarm.rang();
        // Rung: the same deadline sets the timer again (at once, since it has passed).
        alarm.set(Some(deadline), Instant::now()).unwrap();
        assert!(rings_within(&mut poll, Duration::from_secs(10)));
    }
}
