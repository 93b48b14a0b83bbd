//! Counting the memory a reactor's buffers hold, so that a limit on it can be kept.
//!
//! A limit on memory is only as good as the count it is checked against. Counting payload bytes
//! undercounts, badly for small messages: a 10-byte chat line queued for one client is a
//! 10-byte payload inside an allocation with a header, behind a slot in the queue. So every
//! buffer here is counted by what it really holds: a `Vec`'s *capacity*, not its length, plus a
//! fixed overhead per queued piece.
//!
//! Bytes shared by many queues (one chat line for a thousand members) are one allocation, so the
//! reactor-wide total must count them once, not a thousand times, and must stop counting them
//! when the *last* queue lets go, whichever that is. [`SharedBytes`] does this with `Drop`: made
//! once per broadcast, it adds its cost to the [`MemoryMeter`]; the queues hold `Rc`s of it;
//! when the last `Rc` goes, its `drop` takes the cost off again. Each member's own queue limit
//! still counts the line in full: that limit is about what one slow reader makes us hold.
//!
//! Next: `net/outbound.rs`, the queue these count.

use std::cell::Cell;
use std::rc::Rc;

/// What an `Rc` allocation adds to what it holds: its two counters.
pub const RC_HEADER_BYTES: usize = 2 * std::mem::size_of::<usize>();

/// A running total of bytes held, shared by everything that counts into it on one reactor
/// (it is not `Send`: each reactor has its own).
#[derive(Debug, Clone, Default)]
pub struct MemoryMeter(Rc<Cell<usize>>);

impl MemoryMeter {
    /// A meter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held now.
    pub fn total(&self) -> usize {
        self.0.get()
    }

    /// `bytes` more are held.
    pub fn add(&self, bytes: usize) {
        self.0.set(self.0.get() + bytes);
    }

    /// `bytes` fewer are held.
    pub fn sub(&self, bytes: usize) {
        self.0.set(self.0.get().saturating_sub(bytes));
    }

    /// Moves this holder's share from `before` to `now` bytes.
    pub fn recount(&self, before: usize, now: usize) {
        if now >= before {
            self.add(now - before);
        } else {
            self.sub(before - now);
        }
    }
}

/// Bytes shared by several outbound queues, counted once on a meter for as long as any queue
/// holds them.
#[derive(Debug)]
pub struct SharedBytes {
    bytes: Rc<[u8]>,
    meter: MemoryMeter,
}

impl SharedBytes {
    /// Wraps `bytes` for sharing, and counts them on `meter` until the last holder lets go.
    pub fn new(bytes: Rc<[u8]>, meter: &MemoryMeter) -> Rc<SharedBytes> {
        let shared = SharedBytes {
            bytes,
            meter: meter.clone(),
        };
        meter.add(shared.cost());
        Rc::new(shared)
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What holding them costs: the payload and its allocation's header, and this wrapper in
    /// its own allocation.
    pub fn cost(&self) -> usize {
        self.bytes.len() + RC_HEADER_BYTES + std::mem::size_of::<SharedBytes>() + RC_HEADER_BYTES
    }
}

impl Drop for SharedBytes {
    fn drop(&mut self) {
        self.meter.sub(self.cost());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_bytes_count_once_until_the_last_holder_lets_go() {
        let meter = MemoryMeter::new();
        let line: Rc<[u8]> = Rc::from(&b"[alice] hello\n"[..]);
        let shared = SharedBytes::new(line, &meter);
        let cost = shared.cost();
        assert!(cost > 14, "the payload and more");
        let holders: Vec<_> = (0..1000).map(|_| Rc::clone(&shared)).collect();
        assert_eq!(meter.total(), cost, "a thousand holders, counted once");
        drop(shared);
        drop(holders);
        assert_eq!(meter.total(), 0);
    }

    #[test]
    fn recount_moves_a_share_both_ways() {
        let meter = MemoryMeter::new();
        meter.recount(0, 100);
        meter.recount(100, 40);
        assert_eq!(meter.total(), 40);
        meter.recount(40, 0);
        assert_eq!(meter.total(), 0);
    }
}
