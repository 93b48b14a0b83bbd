//! The digest cache: a file's sha256, remembered under the file's [`Identity`].
//!
//! `GET` answers `OK <size> <sha256>` before the first byte, so the server must know the digest of
//! the whole file. Hashing 1 GiB takes seconds, so each digest is computed once (by the upload
//! that brought the file, or by the first `GET` of a file we did not receive) and kept. It is kept
//! under the file's identity, not only its name: device, inode, size, mtime *and* ctime. A file
//! swapped for another (a new inode), rewritten in place (mtime, ctime) or given a forged mtime
//! with `touch -d` (ctime, which no user can set back) no longer matches, and is hashed again.
//!
//! The cache holds at most [`MAX_DIGESTS`] entries (a few MB); past that it starts over.
//!
//! Next: `worker.rs`, the disk work done off the loop.

use std::collections::HashMap;

use super::disk::Identity;

/// Most digests remembered.
pub const MAX_DIGESTS: usize = 100_000;

/// Digests by file name, each valid for one identity of that file.
#[derive(Debug, Default)]
pub struct DigestCache {
    by_name: HashMap<String, (Identity, [u8; 32])>,
}

impl DigestCache {
    /// The digest of `name` if the file is still the one it was computed for.
    pub fn get(&self, name: &str, identity: &Identity) -> Option<[u8; 32]> {
        match self.by_name.get(name) {
            Some((known, digest)) if known == identity => Some(*digest),
            _ => None,
        }
    }

    /// Remembers `digest` for `name` as it is now (`identity`).
    pub fn insert(&mut self, name: &str, identity: Identity, digest: [u8; 32]) {
        if self.by_name.len() >= MAX_DIGESTS && !self.by_name.contains_key(name) {
            self.by_name.clear();
        }
        self.by_name.insert(name.to_string(), (identity, digest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_holds_only_for_the_same_identity() {
        let identity = Identity {
            device: 1,
            inode: 2,
            size: 3,
            modified: 4,
            changed: 5,
        };
        let mut cache = DigestCache::default();
        cache.insert("a", identity, [9; 32]);
        assert_eq!(cache.get("a", &identity), Some([9; 32]));
        assert_eq!(cache.get("b", &identity), None);
        for other in [
            Identity {
                inode: 7,
                ..identity
            },
            Identity {
                changed: 6,
                ..identity
            },
            Identity {
                modified: 6,
                ..identity
            },
            Identity {
                device: 6,
                ..identity
            },
        ] {
            assert_eq!(cache.get("a", &other), None, "{other:?}");
        }
    }
}
