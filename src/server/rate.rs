//! A token bucket: at most `rate` events per second, with bursts of up to `burst`.
//!
//! The bucket holds up to `burst` tokens and gains `rate` of them per second; each event takes
//! one. It is refilled lazily, from the time that passed since the last look, so an idle bucket
//! costs nothing. Chat's flood control (`--chat-rate`) gives each untrusted member one: a member
//! with no token left is not read until the next token is due.
//!
//! Tokens are kept in millionths so that rates above one per second refill smoothly, without
//! floating point.
//!
//! Next: `net/memory.rs`, how the memory a connection holds is counted.

use std::time::{Duration, Instant};

/// Millionths of a token: the unit the bucket counts in.
const MICROS: u64 = 1_000_000;

/// At most `rate` events per second, in bursts of at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens gained per second.
    rate: u64,
    /// Most tokens held, in millionths.
    capacity: u64,
    /// Tokens held at `checked_at`, in millionths.
    held: u64,
    checked_at: Instant,
}

impl TokenBucket {
    /// A full bucket: `burst` events may happen at once, then `rate` per second. `rate` and
    /// `burst` are at least 1.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let capacity = u64::from(burst.max(1)) * MICROS;
        TokenBucket {
            rate: u64::from(rate.max(1)),
            capacity,
            held: capacity,
            checked_at: now,
        }
    }

    /// Takes one token, or says when the next one is due.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        self.check(now)?;
        self.spend();
        Ok(())
    }

    /// Whether a token is there now (taking none); if not, when the next one is due.
    #[inline]
    pub fn check(&mut self, now: Instant) -> Result<(), Instant> {
        self.refill(now);
        if self.held >= MICROS {
            return Ok(());
        }
        let missing = MICROS - self.held;
        let wait_micros = missing.div_ceil(self.rate); // `rate` tokens per second: `rate` µ-tokens per µs
        Err(now + Duration::from_micros(wait_micros))
    }

    /// Takes the token [`TokenBucket::check`] found (none if there was none).
    #[inline]
    pub fn spend(&mut self) {
        self.held = self.held.saturating_sub(MICROS);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.checked_at);
        let gained = (elapsed.as_micros() as u64).saturating_mul(self.rate);
        self.held = self.held.saturating_add(gained).min(self.capacity);
        self.checked_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20, 40, start);
        for _ in 0..40 {
            assert!(bucket.take(start).is_ok());
        }
        let due = bucket.take(start).unwrap_err();
        assert_eq!(
            due,
            start + Duration::from_millis(50),
            "one token per 1/20 s"
        );
        assert!(bucket.take(due).is_ok());
        assert!(bucket.take(due).is_err());
    }

    #[test]
    fn an_idle_bucket_fills_up_to_its_burst_only() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start);
        for _ in 0..3 {
            bucket.take(start).unwrap();
        }
        let later = start + Duration::from_secs(3600);
        let taken = (0..10).filter(|_| bucket.take(later).is_ok()).count();
        assert_eq!(taken, 3);
    }
}
