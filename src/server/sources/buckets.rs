//! How fast a source may go: token buckets in a table of fixed size.
//!
//! A *token bucket* holds up to `burst` tokens and gains `rate` tokens a second. Each reply (UDP)
//! or new connection (`--accept-rate`) takes one; with none left, the datagram is dropped or the
//! connection closed. A source that keeps within its rate never notices; one that floods gets
//! `burst` at once, then `rate` a second, whatever it sends. This is the idea of response-rate
//! limiting in DNS servers (BIND's and Knot's RRL): an attacker who forges a victim's address
//! gets at most `rate` replies a second sent to it, per group of addresses (`cidr.rs`).
//!
//! **Bounded memory.** Forged sources are free to invent, so the table cannot grow with them: it
//! is a fixed array of [`BUCKETS`] buckets, 32 bytes each (128 KiB per table, per reactor,
//! allocated only when the limit is on), in sets of [`WAYS`]. A key hashes (with a key chosen at
//! random per table, so nobody can aim at one set) to one set and lives in one of its ways. A
//! new key takes the way whose bucket is fullest once refilled; if that bucket is full, its
//! owner has been quiet for at least `burst / rate` seconds and loses nothing by starting over.
//! If every way of the set is busy, the newcomer *shares the fullest bucket* without taking it
//! over: together, owner and newcomer get no more than that one bucket gives. So no number of
//! sources, forged or not, can push the table past `BUCKETS × rate` a second (plus the bursts),
//! and a source that owns a bucket never gets more than its own. Crowding a set mostly slows the
//! neighbours in it, which is why the set is chosen by a secret hash.
//!
//! An unused bucket is a full bucket of key 0: a fresh table needs no "empty" mark.
//!
//! Next: `per_source.rs`, how many connections a source holds.

use std::hash::BuildHasher;
use std::time::Instant;

use super::cidr::SourceKey;

/// Buckets in a table.
pub const BUCKETS: usize = 4096;
/// Buckets per set: a key may live in any of them.
pub const WAYS: usize = 4;
const SETS: usize = BUCKETS / WAYS;

/// One source group's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    key: SourceKey,
    tokens: f64,
    /// When `tokens` was last brought up to date, in nanoseconds since the table's epoch.
    at_nanos: u64,
}

/// A table of token buckets, one per source group, of fixed size.
#[derive(Debug)]
pub struct RateTable {
    buckets: Box<[Bucket]>,
    /// Tokens gained per nanosecond.
    per_nano: f64,
    burst: f64,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
}

impl RateTable {
    /// A table allowing `rate` a second (more than 0) with bursts of `burst`, from `epoch` on.
    pub fn new(rate: u32, burst: u32, epoch: Instant) -> RateTable {
        let burst = f64::from(burst.max(1));
        RateTable {
            buckets: vec![
                Bucket {
                    key: SourceKey::default(),
                    tokens: burst,
                    at_nanos: 0,
                };
                BUCKETS
            ]
            .into_boxed_slice(),
            per_nano: f64::from(rate) / 1e9,
            burst,
            epoch,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Takes a token from `key`'s bucket at `now`: `true` if there was one.
    pub fn take(&mut self, key: SourceKey, now: Instant) -> bool {
        let now_nanos = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let set = (self.hasher.hash_one(key) as usize) % SETS;
        let ways = &mut self.buckets[set * WAYS..(set + 1) * WAYS];
        let (per_nano, burst) = (self.per_nano, self.burst);
        for bucket in ways.iter_mut() {
            refill(bucket, now_nanos, per_nano, burst);
        }
        let index = match ways.iter().position(|b| b.key == key) {
            Some(mine) => mine,
            None => {
                let fullest = (0..WAYS)
                    .max_by(|&a, &b| ways[a].tokens.total_cmp(&ways[b].tokens))
                    .unwrap_or(0);
                if ways[fullest].tokens >= burst {
                    ways[fullest].key = key; // its owner was quiet long enough to start over
                }
                fullest
            }
        };
        let bucket = &mut ways[index];
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refill(bucket: &mut Bucket, now_nanos: u64, per_nano: f64, burst: f64) {
    let elapsed = now_nanos.saturating_sub(bucket.at_nanos);
    bucket.tokens = (bucket.tokens + elapsed as f64 * per_nano).min(burst);
    bucket.at_nanos = now_nanos.max(bucket.at_nanos);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: u128) -> SourceKey {
        SourceKey(n)
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut table = RateTable::new(10, 20, start);
        let given = (0..100).filter(|_| table.take(key(7), start)).count();
        assert_eq!(given, 20);
        // Half a second later: five more tokens, no more.
        let later = start + Duration::from_millis(500);
        let given = (0..100).filter(|_| table.take(key(7), later)).count();
        assert_eq!(given, 5);
        // Another source has its own bucket.
        assert!(table.take(key(8), later));
    }

    #[test]
    fn a_bucket_refills_no_further_than_its_burst() {
        let start = Instant::now();
        let mut table = RateTable::new(100, 3, start);
        let later = start + Duration::from_secs(3600);
        let given = (0..100).filter(|_| table.take(key(1), later)).count();
        assert_eq!(given, 3);
    }

    #[test]
    fn crowding_the_table_never_lifts_anyone_over_the_limit() {
        // Many more sources than buckets, each sending once a round: the total given in a round
        // can never pass every bucket's burst, however the sources collide.
        let start = Instant::now();
        let mut table = RateTable::new(1, 2, start);
        let sources = 4 * BUCKETS as u128;
        let mut given = 0;
        for round in 0..5 {
            for n in 0..sources {
                if table.take(key(n + 1), start) {
                    given += 1;
                }
            }
            assert!(given <= 2 * BUCKETS, "round {round}: {given} given");
        }
        // And one flooding source among them still gets no more than its own burst.
        let mut table = RateTable::new(1, 2, start);
        let mut flooder = 0;
        for n in 0..sources {
            table.take(key(n + 1), start);
            if table.take(key(0xf00d), start) {
                flooder += 1;
            }
        }
        assert!(flooder <= 2, "{flooder}");
    }
}
