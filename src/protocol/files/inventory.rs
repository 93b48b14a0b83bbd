//! What the folder holds, kept in memory: complete files, partial files, bytes used, and the
//! quota that uploads under way have reserved.
//!
//! The first version of this service asked the disk: every `PUT` listed the whole folder to add up
//! the quota and find stale partial files, so with 20,000 files one `PUT` cost 21 ms of reactor
//! time, and every other client waited that long. Here the folder is listed **once**, when the
//! service starts (before the server prints `listening`, so no request meets a half-known folder:
//! [`Inventory::scan`]), and from then on every change the service makes is also made here. A
//! `PUT` then costs a few hash-map lookups however many files the folder holds; `LIST` walks a
//! sorted map from a cursor, a batch at a time.
//!
//! What the inventory counts:
//! - **complete files**: regular files with one link and a valid name, by name (what `LIST` shows);
//! - **partial files**: our `.partial-<size>-<digest>-<name>` files ([`PartialKey`]), with the bytes
//!   each holds, when it was last written, and (while this server runs) the digest of those bytes,
//!   so a resume need not read them back;
//! - **other bytes**: any other regular file found at start (a hidden file of the operator's):
//!   it holds disk space, so it counts against `--dir-quota`, but it is never served;
//! - **files**: complete plus partial, limited by `--max-files` (an empty file is a file);
//! - **reservations**: each upload under way reserves the bytes it will still bring, so two
//!   uploads cannot both be promised the last free megabyte. A reservation ends with its
//!   connection, or after `--reservation-timeout` without a byte from it: an idle upload cannot
//!   hold the quota forever. A reservation that timed out is asked for again when bytes come.
//!
//! Files the operator adds or removes by hand while the server runs are not seen until a restart
//! (a `GET` opens the name itself, so an added file is still served). Nothing here touches the
//! disk; the scan's listing is the only exception.
//!
//! Next: `digests.rs`, the digest cache.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ops::Bound;
use std::time::{Duration, SystemTime};

use log::{info, warn};
use sha2::Sha256;

use super::disk::{Folder, Kind};
use super::request::{PartialKey, check_quota, is_valid_name};

/// One of our partial files.
#[derive(Debug, Clone)]
pub struct PartialFile {
    /// Bytes it holds.
    pub held: u64,
    /// When it was last written (its mtime, for one found at start).
    pub touched: SystemTime,
    /// The digest of its `held` bytes, remembered when its upload was interrupted.
    pub prefix: Option<Sha256>,
}

/// Bytes an upload under way will still bring, held against the quota.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    bytes: u64,
    last_byte: SystemTime,
}

/// What the folder holds, and what uploads under way have been promised.
#[derive(Debug, Default)]
pub struct Inventory {
    complete: BTreeMap<String, u64>,
    partials: HashMap<PartialKey, PartialFile>,
    /// The partial files of each name: the ones to remove when that name is published.
    partials_of: HashMap<String, Vec<PartialKey>>,
    other_bytes: u64,
    used: u64,
    reservations: HashMap<u64, Reservation>,
    reserved: u64,
}

impl Inventory {
    /// Lists `folder` once. A pair left by a crash between the `link` and the `unlink` of a
    /// publish without a no-replace rename (`disk::link_then_unlink`: the partial file and the
    /// complete name are one inode) is completed here by removing the partial name. Partial
    /// files that are links, or have another name, are left alone with a warning.
    pub fn scan(folder: &Folder) -> io::Result<Inventory> {
        let mut inventory = Inventory::default();
        let entries = folder.entries()?;
        let identities: HashMap<&str, _> = entries
            .iter()
            .map(|(name, entry)| (name.as_str(), entry.identity))
            .collect();
        for (name, entry) in &entries {
            if let Some(key) = PartialKey::parse(name) {
                let same_as_complete = identities.get(key.name.as_str()).is_some_and(|done| {
                    done.device == entry.identity.device && done.inode == entry.identity.inode
                });
                if same_as_complete {
                    info!("files: {name}: completing a publish cut short by a crash");
                    folder.remove(name)?;
                } else if entry.kind != Kind::Regular || entry.links != 1 {
                    warn!(
                        "files: {name}: a partial file that is a link or has other names: ignored"
                    );
                } else {
                    let touched = SystemTime::UNIX_EPOCH
                        + Duration::from_nanos(u64::try_from(entry.identity.modified).unwrap_or(0));
                    inventory.add_partial(key, entry.size, touched);
                }
            }
        }
        // Complete files second: a pair completed above has one link now.
        for (name, entry) in &entries {
            if entry.kind != Kind::Regular || PartialKey::parse(name).is_some() {
                continue;
            }
            let links = match entry.links {
                1 => 1,
                _ => folder.stat(name)?.map_or(0, |now| now.links),
            };
            if is_valid_name(name.as_bytes()) && links == 1 {
                inventory.complete.insert(name.clone(), entry.size);
            } else {
                inventory.other_bytes += entry.size;
            }
            inventory.used += entry.size;
        }
        Ok(inventory)
    }

    /// Content bytes held: complete, partial and other files.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Files held: complete plus partial.
    pub fn files(&self) -> u64 {
        (self.complete.len() + self.partials.len()) as u64
    }

    /// Bytes reserved by uploads under way.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Whether `name` is a complete file we know of.
    pub fn has_complete(&self, name: &str) -> bool {
        self.complete.contains_key(name)
    }

    /// Up to `count` complete files after `cursor` (from the first without one), by name.
    pub fn list_after(&self, cursor: Option<&str>, count: usize) -> Vec<(&str, u64)> {
        let from = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        self.complete
            .range::<str, _>((from, Bound::Unbounded))
            .take(count)
            .map(|(name, &size)| (name.as_str(), size))
            .collect()
    }

    /// The partial file of `key`, if we hold one.
    pub fn partial(&self, key: &PartialKey) -> Option<&PartialFile> {
        self.partials.get(key)
    }

    /// A partial file appears (created, or found at start) holding `held` bytes.
    pub fn add_partial(&mut self, key: PartialKey, held: u64, touched: SystemTime) {
        self.remove_partial(&key);
        self.partials_of
            .entry(key.name.clone())
            .or_default()
            .push(key.clone());
        self.used += held;
        self.partials.insert(
            key,
            PartialFile {
                held,
                touched,
                prefix: None,
            },
        );
    }

    /// `bytes` more were written to the partial file of `key`.
    pub fn grow_partial(&mut self, key: &PartialKey, bytes: u64, now: SystemTime) {
        if let Some(partial) = self.partials.get_mut(key) {
            partial.held += bytes;
            partial.touched = now;
            partial.prefix = None;
            self.used += bytes;
        }
    }

    /// An interrupted upload leaves the digest of what its partial file holds, for a resume.
    pub fn remember_prefix(&mut self, key: &PartialKey, held: u64, prefix: Sha256) {
        if let Some(partial) = self.partials.get_mut(key)
            && partial.held == held
        {
            partial.prefix = Some(prefix);
        }
    }

    /// Takes the remembered digest of the partial file of `key`, if it still covers `held` bytes.
    pub fn take_prefix(&mut self, key: &PartialKey, held: u64) -> Option<Sha256> {
        let partial = self.partials.get_mut(key)?;
        if partial.held != held {
            return None;
        }
        partial.prefix.take()
    }

    /// The partial file of `key` is gone (removed, or renamed to its name).
    pub fn remove_partial(&mut self, key: &PartialKey) -> Option<PartialFile> {
        let partial = self.partials.remove(key)?;
        self.used -= partial.held;
        if let Some(keys) = self.partials_of.get_mut(&key.name) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.partials_of.remove(&key.name);
            }
        }
        Some(partial)
    }

    /// The partial file of `key` became the complete file `key.name`. Returns the other partial
    /// files of that name, which the caller removes from the disk (they can never be published).
    pub fn publish(&mut self, key: &PartialKey) -> Vec<PartialKey> {
        let held = self.remove_partial(key).map_or(key.size, |p| p.held);
        self.used += held;
        self.complete.insert(key.name.clone(), held);
        let others = self.partials_of.remove(&key.name).unwrap_or_default();
        for other in &others {
            if let Some(partial) = self.partials.remove(other) {
                self.used -= partial.held;
            }
        }
        others
    }

    /// Partial files not written since `now - ttl`, except those of `busy` names.
    pub fn stale_partials(
        &self,
        now: SystemTime,
        ttl: Duration,
        busy: impl Fn(&str) -> bool,
    ) -> Vec<PartialKey> {
        self.partials
            .iter()
            .filter(|(key, partial)| {
                !busy(&key.name)
                    && now
                        .duration_since(partial.touched)
                        .is_ok_and(|age| age >= ttl)
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    // ----- reservations ------------------------------------------------------------------------

    /// Whether `needed` more bytes fit under `quota` (0: none) beside what is held and reserved.
    /// `Err(free)`: they do not; `free` bytes do.
    pub fn fits(&self, quota: u64, needed: u64) -> Result<(), u64> {
        check_quota(quota, self.used, self.reserved, needed)
    }

    /// Upload `upload` reserves `bytes`.
    pub fn reserve(&mut self, upload: u64, bytes: u64, now: SystemTime) {
        self.release(upload);
        self.reserved += bytes;
        self.reservations.insert(
            upload,
            Reservation {
                bytes,
                last_byte: now,
            },
        );
    }

    /// Upload `upload` wrote `bytes` of what it reserved. `false`: it holds no reservation
    /// (it timed out): the caller asks for one again.
    pub fn consume(&mut self, upload: u64, bytes: u64, now: SystemTime) -> bool {
        let Some(reservation) = self.reservations.get_mut(&upload) else {
            return false;
        };
        let taken = bytes.min(reservation.bytes);
        reservation.bytes -= taken;
        reservation.last_byte = now;
        self.reserved -= taken;
        true
    }

    /// Upload `upload` holds a reservation.
    pub fn is_reserved(&self, upload: u64) -> bool {
        self.reservations.contains_key(&upload)
    }

    /// Upload `upload` ended (or timed out): what it still held is free again.
    pub fn release(&mut self, upload: u64) {
        if let Some(reservation) = self.reservations.remove(&upload) {
            self.reserved -= reservation.bytes;
        }
    }

    /// Releases every reservation without a byte for `timeout`. Costs one step per upload under
    /// way (never per file).
    pub fn expire_reservations(&mut self, now: SystemTime, timeout: Duration) {
        let reserved = &mut self.reserved;
        self.reservations.retain(|_, reservation| {
            let idle = now
                .duration_since(reservation.last_byte)
                .is_ok_and(|idle| idle >= timeout);
            if idle {
                *reserved -= reservation.bytes;
            }
            !idle
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, size: u64, digest: Option<u8>) -> PartialKey {
        PartialKey {
            name: name.into(),
            size,
            digest: digest.map(|b| [b; 32]),
        }
    }

    #[test]
    fn bytes_and_files_follow_partials_through_publishing() {
        let now = SystemTime::UNIX_EPOCH;
        let mut inventory = Inventory::default();
        inventory.add_partial(key("a", 10, Some(1)), 0, now);
        inventory.add_partial(key("a", 10, Some(2)), 4, now);
        inventory.add_partial(key("b", 0, None), 0, now);
        assert_eq!((inventory.files(), inventory.used()), (3, 4));
        inventory.grow_partial(&key("a", 10, Some(1)), 10, now);
        assert_eq!(inventory.used(), 14);
        let others = inventory.publish(&key("a", 10, Some(1)));
        assert_eq!(others, vec![key("a", 10, Some(2))]);
        assert_eq!((inventory.files(), inventory.used()), (2, 10));
        assert!(inventory.has_complete("a"));
        assert!(inventory.partial(&key("b", 0, None)).is_some());
    }

    #[test]
    fn list_walks_by_name_from_a_cursor() {
        let mut inventory = Inventory::default();
        for name in ["c", "a", "b", "d"] {
            inventory.complete.insert(name.into(), 1);
        }
        assert_eq!(inventory.list_after(None, 2), vec![("a", 1), ("b", 1)]);
        assert_eq!(inventory.list_after(Some("b"), 5), vec![("c", 1), ("d", 1)]);
        assert!(inventory.list_after(Some("d"), 5).is_empty());
    }

    #[test]
    fn reservations_are_consumed_released_and_expire() {
        let start = SystemTime::UNIX_EPOCH;
        let later = start + Duration::from_secs(61);
        let mut inventory = Inventory::default();
        inventory.reserve(1, 100, start);
        inventory.reserve(2, 50, start);
        assert_eq!(inventory.fits(200, 51), Err(50));
        assert!(inventory.consume(1, 30, start));
        assert_eq!(inventory.reserved(), 120);
        assert!(inventory.consume(2, 0, later));
        inventory.expire_reservations(later, Duration::from_secs(60));
        assert_eq!(inventory.reserved(), 50, "upload 1 was idle, upload 2 not");
        assert!(!inventory.consume(1, 1, later));
        inventory.release(2);
        assert_eq!(inventory.reserved(), 0);
        assert_eq!(inventory.fits(0, u64::MAX), Ok(()));
    }

    #[test]
    fn stale_partials_skip_busy_names() {
        let start = SystemTime::UNIX_EPOCH;
        let mut inventory = Inventory::default();
        inventory.add_partial(key("old", 5, None), 1, start);
        inventory.add_partial(key("busy", 5, None), 1, start);
        inventory.add_partial(key("new", 5, None), 1, start + Duration::from_secs(50));
        let stale = inventory.stale_partials(
            start + Duration::from_secs(60),
            Duration::from_secs(30),
            |n| n == "busy",
        );
        assert_eq!(stale, vec![key("old", 5, None)]);
    }
}
