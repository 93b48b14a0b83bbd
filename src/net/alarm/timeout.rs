//! The alarm without a descriptor (macOS, FreeBSD, every system but Linux; and Linux when mio is
//! built on `poll(2)`, which cannot re-arm a raw descriptor: see `mod.rs`): `poll`'s timeout.
//!
//! Nothing is registered and nothing rings: [`PollTimeout::set`] turns the earliest deadline into
//! the longest `poll` may sleep, and when that time is up `poll` returns with no events and the
//! reactor runs what is due. The whole alarm is the arithmetic in [`poll_timeout`], a pure
//! function, tested on every system (Linux included, where on epoll the rest of this file goes
//! unused).
//!
//! Next: `server/signals.rs`, how a reactor learns it should stop.

use std::io;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

/// `poll`'s timeout as an alarm: no state at all, since `poll` is given the deadline every turn.
#[derive(Debug)]
pub struct PollTimeout;

impl PollTimeout {
    /// Nothing to create or register: the registry and token are for alarms with a descriptor.
    pub fn new(_registry: &Registry, _token: Token) -> io::Result<PollTimeout> {
        Ok(PollTimeout)
    }

    /// The timeout for `poll`: see [`poll_timeout`]. Never fails.
    pub fn set(&mut self, deadline: Option<Instant>, now: Instant) -> io::Result<Option<Duration>> {
        Ok(poll_timeout(deadline, now))
    }

    /// The exact time left before `deadline`, not rounded: see [`super::Alarm::set_precise`].
    pub fn set_precise(
        &mut self,
        deadline: Option<Instant>,
        now: Instant,
    ) -> io::Result<Option<Duration>> {
        Ok(deadline.map(|at| at.saturating_duration_since(now)))
    }

    /// Nothing to clear: without a descriptor, no token is ever reported for the alarm.
    pub fn rang(&mut self) {}
}

/// How long `poll` may sleep to wake at `deadline`: the time left, rounded *up* to the next whole
/// millisecond (so the loop never wakes before the deadline, whatever the backend does with the
/// nanoseconds); zero for a deadline already passed; `None` (sleep until an event) for no deadline.
pub fn poll_timeout(deadline: Option<Instant>, now: Instant) -> Option<Duration> {
    let left = deadline?.saturating_duration_since(now);
    let millis = left.as_nanos().div_ceil(1_000_000);
    // Past `u64::MAX` milliseconds (585 million years) we may as well wait that long.
    Some(Duration::from_millis(
        u64::try_from(millis).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `poll_timeout` for a deadline `left` after `now`.
    fn timeout_for(left: Duration) -> Option<Duration> {
        let now = Instant::now();
        poll_timeout(Some(now + left), now)
    }

    #[test]
    fn no_deadline_sleeps_until_an_event() {
        assert_eq!(poll_timeout(None, Instant::now()), None);
    }

    #[test]
    fn whole_milliseconds_are_kept() {
        assert_eq!(timeout_for(Duration::ZERO), Some(Duration::ZERO));
        assert_eq!(
            timeout_for(Duration::from_millis(30)),
            Some(Duration::from_millis(30))
        );
        assert_eq!(
            timeout_for(Duration::from_secs(3600)),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn parts_of_a_millisecond_round_up_never_down() {
        assert_eq!(
            timeout_for(Duration::from_nanos(1)),
            Some(Duration::from_millis(1)),
            "a nanosecond left is not zero: that would wake the loop early"
        );
        assert_eq!(
            timeout_for(Duration::from_micros(29_001)),
            Some(Duration::from_millis(30))
        );
        assert_eq!(
            timeout_for(Duration::new(1, 999_999_999)),
            Some(Duration::from_secs(2)),
            "rounding carries into the seconds"
        );
    }

    #[test]
    fn a_deadline_already_passed_gives_zero() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert_eq!(poll_timeout(Some(now), later), Some(Duration::ZERO));
        assert_eq!(poll_timeout(Some(now), now), Some(Duration::ZERO));
    }

    #[test]
    fn a_stale_now_makes_it_late_never_early() {
        // `now` read a little before the real now: the timeout is longer than the time truly
        // left, so the loop wakes after the deadline.
        let stale = Instant::now();
        let deadline = stale + Duration::from_micros(1500);
        let truly_left = deadline.saturating_duration_since(Instant::now());
        assert!(poll_timeout(Some(deadline), stale).unwrap() >= truly_left);
    }

    #[test]
    fn the_alarm_is_the_arithmetic() {
        let poll = mio::Poll::new().unwrap();
        let mut alarm = PollTimeout::new(poll.registry(), Token(0)).unwrap();
        let now = Instant::now();
        let deadline = now + Duration::from_micros(2500);
        assert_eq!(
            alarm.set(Some(deadline), now).unwrap(),
            Some(Duration::from_millis(3))
        );
        alarm.rang();
        assert_eq!(alarm.set(None, now).unwrap(), None);
    }
}
