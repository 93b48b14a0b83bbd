//! Deadlines: idle timeouts and lingering closes, without scanning every connection.
//!
//! A reactor cannot sleep in a timer: its only wait is `poll`. So deadlines go into a min-heap, and
//! the earliest one sets the reactor's alarm (`net/alarm/`), a timer the poller watches. Each
//! connection has at most one *live* entry. Entries are lazy: activity on a connection does not
//! touch the heap (that would cost a heap operation per message); it only moves the connection's
//! `last_active`. When an entry comes due, the reactor asks the connection for its real deadline:
//! if activity moved it later, the entry is pushed again for the new time; if not, the connection
//! has expired. So the cost is one heap operation per connection per timeout period, whatever the
//! traffic, and nothing at all for connections whose deadline is still far off.
//!
//! An entry names its connection by slab slot *and* serial number, because slots are reused: an
//! entry left behind by a closed connection must not expire its successor.
//!
//! Next: `net/alarm/`, the one timer the loop sleeps on.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// One scheduled check: at `due`, look at the connection in slot `slot` if it still has `serial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerEntry {
    /// When to look.
    pub due: Instant,
    /// The connection's slab slot.
    pub slot: usize,
    /// The connection's serial number.
    pub serial: u64,
}

/// A min-heap of deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<TimerEntry>>,
}

impl Timers {
    /// No deadlines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules a check.
    pub fn schedule(&mut self, entry: TimerEntry) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest deadline, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| entry.due)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerEntry> {
        match self.heap.peek() {
            Some(Reverse(entry)) if entry.due <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Keeps only the entries for which `live` holds.
    pub fn retain(&mut self, mut live: impl FnMut(&TimerEntry) -> bool) {
        self.heap.retain(|Reverse(entry)| live(entry));
    }

    /// Entries held (live and stale).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let start = Instant::now();
        let mut timers = Timers::new();
        for (secs, slot) in [(3, 0), (1, 1), (2, 2)] {
            timers.schedule(TimerEntry {
                due: start + Duration::from_secs(secs),
                slot,
                serial: 0,
            });
        }
        assert_eq!(timers.next_due(), Some(start + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(start), None);
        let at = start + Duration::from_secs(2);
        let slots: Vec<usize> = std::iter::from_fn(|| timers.pop_due(at))
            .map(|e| e.slot)
            .collect();
        assert_eq!(slots, vec![1, 2]);
        assert_eq!(timers.len(), 1);
    }
}
