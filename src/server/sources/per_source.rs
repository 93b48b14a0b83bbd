//! How many stream connections each source holds right now (`--max-per-source`).
//!
//! Without a limit, one address can take every one of the `--max-connections` slots and keep
//! them: nobody else gets in. So each untrusted connection is counted against its source (one
//! IPv4 address, one IPv6 /64: a single host usually owns a whole /64), and the connection over
//! the limit is told `error: too many connections from <address>` and closed.
//!
//! The table holds an entry only for sources with a connection open, so it is never larger than
//! the number of connections. The client's slot number remembers which source it was counted
//! against, so that closing it (`reactor/tidy.rs`) gives the place back without asking the
//! socket again; trusted clients are not counted and cost nothing at close.
//!
//! Next: `balancers.rs`, the peers that speak for their clients.

use std::collections::HashMap;

use super::cidr::SourceKey;

/// Open connections per source, and which source each client slot was counted against.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    open: HashMap<SourceKey, u32>,
    /// Indexed by client slot: the source it holds a place of, if any.
    held: Vec<Option<SourceKey>>,
}

impl ConnectionCounts {
    /// Counts client `slot` against `key`, if `key` has fewer than `limit` open; `false` (and
    /// nothing counted) otherwise.
    pub fn try_open(&mut self, slot: usize, key: SourceKey, limit: u32) -> bool {
        let count = self.open.entry(key).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                self.open.remove(&key);
            }
            return false;
        }
        *count += 1;
        if self.held.len() <= slot {
            self.held.resize(slot + 1, None);
        }
        self.held[slot] = Some(key);
        true
    }

    /// Client `slot` closed: gives its place back (nothing if it held none).
    #[inline]
    pub fn close(&mut self, slot: usize) {
        let Some(key) = self.held.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let Some(count) = self.open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.open.remove(&key);
            }
        }
    }

    /// Connections counted against `key` now.
    pub fn open_from(&self, key: SourceKey) -> u32 {
        self.open.get(&key).copied().unwrap_or(0)
    }

    /// Sources with at least one connection counted.
    pub fn sources(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_holds_at_most_the_limit_and_closing_gives_places_back() {
        let mut counts = ConnectionCounts::default();
        let a = SourceKey(1);
        assert!(counts.try_open(0, a, 2));
        assert!(counts.try_open(1, a, 2));
        assert!(!counts.try_open(2, a, 2));
        assert!(counts.try_open(2, SourceKey(2), 2), "another source");
        assert_eq!(counts.open_from(a), 2);
        counts.close(0);
        assert_eq!(counts.open_from(a), 1);
        assert!(counts.try_open(0, a, 2));
        counts.close(0);
        counts.close(0); // twice: nothing more
        counts.close(1);
        counts.close(2);
        counts.close(7); // never counted
        assert_eq!(counts.sources(), 0, "no entry is left behind");
    }
}
