//! The alarm on Linux: a timerfd, a one-shot timer that epoll watches like one more socket.
//!
//! Why not `epoll_wait`'s own timeout: see the module docs (`mod.rs`). `timerfd_create` gives a
//! descriptor that becomes readable when the timer expires; we register it with the poller once,
//! in [`TimerFd::new`], and from then on only set the timer (`timerfd_settime`), and only when
//! the earliest deadline changes. Reading the descriptor clears it.
//!
//! Next: `timeout.rs`, the same alarm without a descriptor.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, timerfd_create, timerfd_settime,
};

/// A one-shot timer on `CLOCK_MONOTONIC` (the clock [`Instant`] reads), readable once it expires.
#[derive(Debug)]
pub struct TimerFd {
    timer: OwnedFd,
    /// The deadline the timer is set for; `None` once it has rung, or if never set.
    set_for: Option<Instant>,
}

impl TimerFd {
    /// A timer that is not set, registered with `registry` for `READABLE` under `token`. It stays
    /// registered for as long as it lives: closing the descriptor removes it from the poller.
    pub fn new(registry: &Registry, token: Token) -> io::Result<TimerFd> {
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        registry.register(&mut SourceFd(&timer.as_raw_fd()), token, Interest::READABLE)?;
        Ok(TimerFd {
            timer,
            set_for: None,
        })
    }

    /// Makes the timer ring at `deadline`, or never (`None`). Costs a system call only when the
    /// deadline differs from the one already set. `now` may be a little stale: the timer then
    /// rings a little late, never early. The timeout for `poll` is always `None`: the timer's
    /// readiness wakes it.
    pub fn set(&mut self, deadline: Option<Instant>, now: Instant) -> io::Result<Option<Duration>> {
        if deadline == self.set_for {
            return Ok(None);
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
        Ok(None)
    }

    /// [`TimerFd::set`]: a timerfd is precise to the nanosecond already.
    pub fn set_precise(
        &mut self,
        deadline: Option<Instant>,
        now: Instant,
    ) -> io::Result<Option<Duration>> {
        self.set(deadline, now)
    }

    /// The timer's token became readable: clears it. The caller then runs whatever is due; the
    /// next [`TimerFd::set`] sets the timer again, even for the same deadline.
    pub fn rang(&mut self) {
        let mut expirations = [0u8; 8];
        // Read only to clear the expiry count; what it says does not matter. Should the timer
        // have been set again between expiring and this event (which clears the count), the
        // read would say `WouldBlock`: harmless, and ignored like any other answer.
        let _ = rustix::io::read(&self.timer, &mut expirations);
        self.set_for = None;
    }
}

fn timespec(duration: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: duration
            .as_secs()
            .try_into()
            .unwrap_or(rustix::time::Secs::MAX),
        tv_nsec: duration.subsec_nanos() as _, // below 10^9: fits every platform's type
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use rustix::time::timerfd_gettime;

    const ALARM: Token = Token(7);
    /// Long enough for any ring these tests expect, however busy the machine.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// A new timer, registered with a poller of its own.
    fn registered_alarm() -> (TimerFd, Poll) {
        let poll = Poll::new().unwrap();
        let alarm = TimerFd::new(poll.registry(), ALARM).unwrap();
        (alarm, poll)
    }

    /// Waits until the alarm's event comes or `wait` has passed; true if it came.
    fn rings_within(poll: &mut Poll, wait: Duration) -> bool {
        let mut events = Events::with_capacity(4);
        let give_up = Instant::now() + wait;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match poll.poll(&mut events, Some(left)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => result.unwrap(),
            }
            if events.iter().any(|event| event.token() == ALARM) {
                return true;
            }
            if left.is_zero() {
                return false;
            }
        }
    }

    /// What is left before the timer expires; zero if it is not set.
    fn remaining(alarm: &TimerFd) -> Duration {
        let value = timerfd_gettime(&alarm.timer).unwrap().it_value;
        Duration::new(value.tv_sec as u64, value.tv_nsec as u32)
    }

    #[test]
    fn rings_at_its_deadline_not_before() {
        let (mut alarm, mut poll) = registered_alarm();
        let now = Instant::now();
        let deadline = now + Duration::from_millis(30);
        let timeout = alarm.set(Some(deadline), now).unwrap();
        assert_eq!(timeout, None, "poll needs no timeout: the timer wakes it");
        assert!(rings_within(&mut poll, PATIENCE), "never rang");
        assert!(Instant::now() >= deadline, "rang early");
        alarm.rang();
        assert_eq!(alarm.set_for, None, "ringing forgets the setting");
    }

    #[test]
    fn a_deadline_already_passed_rings_at_once() {
        let (mut alarm, mut poll) = registered_alarm();
        let now = Instant::now();
        alarm.set(Some(now), now + Duration::from_secs(1)).unwrap();
        assert!(rings_within(&mut poll, PATIENCE));
    }

    #[test]
    fn unset_it_stays_quiet() {
        let (mut alarm, mut poll) = registered_alarm();
        let now = Instant::now();
        alarm
            .set(Some(now + Duration::from_millis(1)), now)
            .unwrap();
        alarm.set(None, now).unwrap();
        assert_eq!(remaining(&alarm), Duration::ZERO, "disarmed");
        assert!(!rings_within(&mut poll, Duration::from_millis(50)));
    }

    #[test]
    fn moved_later_it_waits_for_the_later_deadline() {
        let (mut alarm, mut poll) = registered_alarm();
        let now = Instant::now();
        alarm
            .set(Some(now + Duration::from_millis(1)), now)
            .unwrap();
        alarm.set(Some(now + Duration::from_secs(60)), now).unwrap();
        assert!(
            remaining(&alarm) > Duration::from_secs(30),
            "set for the later deadline"
        );
        assert!(!rings_within(&mut poll, Duration::from_millis(50)));
    }

    #[test]
    fn setting_the_same_deadline_again_keeps_it() {
        let (mut alarm, mut poll) = registered_alarm();
        let now = Instant::now();
        let deadline = now + Duration::from_secs(20);
        alarm.set(Some(deadline), now).unwrap();
        // An earlier `now` with the same deadline must not set the timer again (it would then
        // ring later than the deadline): what is left only shrinks.
        alarm
            .set(
                Some(deadline),
                now.checked_sub(Duration::from_secs(5)).unwrap(),
            )
            .unwrap();
        assert!(
            remaining(&alarm) <= Duration::from_secs(20),
            "not set again"
        );
        // Once rung, the same deadline sets the timer again (at once, since it has passed).
        let passed = Instant::now();
        alarm.set(Some(passed), passed).unwrap();
        assert!(rings_within(&mut poll, PATIENCE));
        alarm.rang();
        alarm.set(Some(passed), Instant::now()).unwrap();
        assert!(rings_within(&mut poll, PATIENCE), "set again after ringing");
    }
}
