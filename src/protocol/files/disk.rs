//! The one place that touches the served folder: every path is one name, resolved relative to the
//! folder's descriptor, and never through a symbolic link.
//!
//! A server that writes files where clients say must not be talked into writing elsewhere. Checking
//! a *path* first and opening it later leaves a gap (someone swaps a folder for a link in between),
//! so we do not open paths at all. [`Folder`] holds a descriptor of the served folder, opened once;
//! each file is then opened with `openat(folder, name, ...)`, where `name` has passed the name rules
//! (`request.rs`: no `/`, never `.` or `..`), and with `O_NOFOLLOW`: a symbolic link planted in the
//! folder makes the open fail instead of leading out. New partial files are created with `O_EXCL`
//! (never an existing file, never through a link), and a finished upload gets its name with
//! `renameat2(..., RENAME_NOREPLACE)`: atomic, and it never replaces whatever holds the name.
//! (macOS has the same call as `renameatx_np(..., RENAME_EXCL)`; other systems, FreeBSD among
//! them, have no rename that refuses to replace, and get a hard link and an unlink instead: see
//! `link_then_unlink`.)
//! Opens also carry `O_NONBLOCK`, so a FIFO planted in the folder cannot stall the reactor; after
//! opening, `fstat` on the descriptor (not the name) checks that it is a regular file *with one
//! link*: a hard link planted under a partial file's name (or a served name) would let someone
//! who can write into the folder make us write into, or serve, a file elsewhere on the same disk.
//!
//! Reads and writes here are ordinary blocking calls on regular files: on a local disk they return
//! as fast as the page cache takes the bytes, so small writes stay on the reactor. The calls that
//! wait for the disk itself (`fsync` of a file and of the folder, reading a large file back to
//! hash it) are made by the disk worker (`worker.rs`), off the loop.
//!
//! Next: `inventory.rs`, what the folder holds, kept in memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use sha2::{Digest, Sha256};

/// What a name in the folder is, as far as the files protocol cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: servable, resumable.
    Regular,
    /// A link, folder, FIFO, socket, device: never followed, never replaced.
    Other,
}

/// One name's kind and size, from `fstatat` without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Regular or not.
    pub kind: Kind,
    /// Size in bytes (of the link itself, for a link).
    pub size: u64,
    /// How many names the file has (`st_nlink`): ours always have exactly one.
    pub links: u64,
    /// Which file this is, and which version of it: the digest cache's key.
    pub identity: Identity,
}

/// A file's version as the kernel sees it: device, inode, size, mtime and ctime. Replacing the
/// file, writing to it or renaming it changes at least one of them (ctime cannot be set back by
/// a user), so a digest remembered under an identity is the digest of those very bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `st_dev`.
    pub device: u64,
    /// `st_ino`.
    pub inode: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime` in nanoseconds.
    pub modified: i128,
    /// `st_ctime` in nanoseconds.
    pub changed: i128,
}

/// The served folder, by descriptor.
#[derive(Debug)]
pub struct Folder {
    fd: OwnedFd,
}

fn entry_of(stat: &rustix::fs::Stat) -> Entry {
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Kind::Regular,
        _ => Kind::Other,
    };
    let nanos = |secs: i64, nsecs: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // field types differ by OS
    Entry {
        kind,
        size,
        links: stat.st_nlink as u64,
        identity: Identity {
            device: stat.st_dev as u64,
            inode: stat.st_ino as u64,
            size,
            modified: nanos(stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            changed: nanos(stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        },
    }
}

/// Not a regular file: the error a caller sees for a link, FIFO or folder where a file should be.
fn not_regular() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// A regular file with more than one name: refused like a link (`EMLINK`).
fn not_single() -> io::Error {
    io::Error::from_raw_os_error(libc::EMLINK)
}

/// Whether an open failed because the name holds something we never use: a symbolic link
/// (`ELOOP` under `O_NOFOLLOW`), a hard link (`EMLINK`), a FIFO or folder (`EINVAL`, `ENXIO`).
pub fn is_refused_kind(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP | libc::EMLINK | libc::EINVAL | libc::ENXIO)
    )
}

impl Folder {
    /// Opens the folder at `path` (the operator's choice: a link to a folder is fine here).
    pub fn open(path: &Path) -> io::Result<Folder> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Folder { fd })
    }

    /// What `name` is, without following it; `None` when nothing has that name.
    pub fn stat(&self, name: &str) -> io::Result<Option<Entry>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(entry_of(&stat))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn open_at(&self, name: &str, flags: OFlags) -> io::Result<File> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_bits_truncate(0o644))?;
        Ok(File::from(fd))
    }

    /// The opened file, if it is a regular file with one name; its entry from `fstat`.
    fn regular(file: File) -> io::Result<(File, Entry)> {
        let entry = describe(&file)?;
        if entry.kind != Kind::Regular {
            return Err(not_regular());
        }
        if entry.links != 1 {
            return Err(not_single());
        }
        Ok((file, entry))
    }

    /// Creates `name`, which must not exist: `EEXIST` otherwise, even for a dangling link.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        self.open_at(name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL)
    }

    /// Opens the existing partial file `name` to go on writing it, and to read back what it
    /// holds (its digest, after a restart): read *and* write. A link fails (`ELOOP`), a file with
    /// another name too (`EMLINK`), anything but a regular file (`EINVAL`).
    pub fn open_for_resume(&self, name: &str) -> io::Result<(File, Entry)> {
        Self::regular(self.open_at(name, OFlags::RDWR)?)
    }

    /// Opens the existing regular file `name` for reading. A link fails (`ELOOP`), a file with
    /// another name too (`EMLINK`), anything but a regular file (`EINVAL`).
    pub fn open_for_reading(&self, name: &str) -> io::Result<(File, Entry)> {
        Self::regular(self.open_at(name, OFlags::RDONLY)?)
    }

    /// Gives the finished `partial` its `name`; `EEXIST` if the name is taken.
    pub fn publish(&self, partial: &str, name: &str) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
        return rename_no_replace(&self.fd, partial, name);
        #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
        return link_then_unlink(&self.fd, partial, name);
    }

    /// Waits until the folder's entries (a rename, a new name) are on the disk: after this, a
    /// published file survives a power loss under its new name.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd)?;
        Ok(())
    }

    /// Removes `name` (a link is removed itself, never its target).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?;
        Ok(())
    }

    /// Every entry whose name is UTF-8, with what it is. Entries that vanish meanwhile are skipped.
    pub fn entries(&self) -> io::Result<Vec<(String, Entry)>> {
        let mut found = Vec::new();
        for entry in Dir::read_from(&self.fd)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            if let Some(stat) = self.stat(name)? {
                found.push((name.to_string(), stat));
            }
        }
        Ok(found)
    }
}

/// What `file` is now, from `fstat` on its descriptor.
pub fn describe(file: &File) -> io::Result<Entry> {
    Ok(entry_of(&rustix::fs::fstat(file)?))
}

/// Renames `from` to `to` in `dir` in one atomic step that fails with `EEXIST` rather than replace:
/// `renameat2(RENAME_NOREPLACE)` on Linux, `renameatx_np(RENAME_EXCL)` on Apple's systems.
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn rename_no_replace(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    rustix::fs::renameat_with(dir, from, dir, to, rustix::fs::RenameFlags::NOREPLACE)?;
    Ok(())
}

/// The same without such a rename (FreeBSD and the rest): a hard link `to` (which fails with
/// `EEXIST` whatever holds the name, a dangling link included), then `from` removed. `to` never
/// names anything but the finished file, but this is two steps, not one: a crash between them
/// leaves both names, and a filesystem without hard links refuses (`EPERM` or `EOPNOTSUPP`).
/// Compiled everywhere, so that Linux tests check it too.
#[cfg_attr(
    any(target_os = "linux", target_os = "android", target_vendor = "apple"),
    allow(dead_code)
)]
fn link_then_unlink(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    // Without `AT_SYMLINK_FOLLOW`: a link at `from` would be linked itself, never its target.
    rustix::fs::linkat(dir, from, dir, to, AtFlags::empty())?;
    if let Err(e) = rustix::fs::unlinkat(dir, from, AtFlags::empty()) {
        // Undone, so that an error means "not published", as it does for a rename.
        let _ = rustix::fs::unlinkat(dir, to, AtFlags::empty());
        return Err(e.into());
    }
    Ok(())
}

/// Writes `bytes` at `offset`, retrying short writes. Returns how many bytes reached the file,
/// and the error that stopped it early, if one did: the bytes before an error count too.
pub fn write_at(file: &File, bytes: &[u8], offset: u64) -> (usize, Option<io::Error>) {
    let mut done = 0;
    while done < bytes.len() {
        match file.write_at(&bytes[done..], offset + done as u64) {
            Ok(0) => return (done, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// Reads into `buf` from `offset`; `Ok(0)` at end of file.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Feeds bytes `from..to` of `file` to `hasher`, through `buf`. Fails if the file is shorter.
pub fn hash_range(
    file: &File,
    from: u64,
    to: u64,
    hasher: &mut Sha256,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut pos = from;
    while pos < to {
        let want = buf
            .len()
            .min(usize::try_from(to - pos).unwrap_or(usize::MAX));
        let n = read_at(file, &mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

/// What an error writing or syncing a file is called on the wire (after `error: `).
pub fn describe_io_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => "disk full".to_string(),
        Some(libc::EFBIG) => "file too large for the filesystem".to_string(),
        Some(libc::EIO) => "io error".to_string(),
        _ => format!("{}", io::Error::from(e.kind())).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_errors_have_short_names() {
        let named = |code| describe_io_error(&io::Error::from_raw_os_error(code));
        assert_eq!(named(libc::ENOSPC), "disk full");
        assert_eq!(named(libc::EFBIG), "file too large for the filesystem");
        assert_eq!(named(libc::EIO), "io error");
        assert_eq!(named(libc::EACCES), "permission denied");
    }

    /// A fresh, empty folder under the temporary directory, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let path =
                std::env::temp_dir().join(format!("echoloop-disk-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir(&path).unwrap();
            Scratch(path)
        }

        fn write(&self, name: &str, contents: &str) {
            std::fs::write(self.0.join(name), contents).unwrap();
        }

        fn read(&self, name: &str) -> Option<String> {
            std::fs::read_to_string(self.0.join(name)).ok()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A way to give a partial file its name.
    type Publish = fn(&Folder, &str, &str) -> io::Result<()>;

    /// The way this system uses, and the fallback of systems without a no-replace rename.
    const PUBLISHERS: [(&str, Publish); 2] = [
        ("publish", Folder::publish),
        ("link_then_unlink", |folder, from, to| {
            link_then_unlink(&folder.fd, from, to)
        }),
    ];

    #[test]
    fn publishing_moves_the_partial_file_to_its_name() {
        for (how, publish) in PUBLISHERS {
            let scratch = Scratch::new(how);
            let folder = Folder::open(&scratch.0).unwrap();
            scratch.write("a.partial", "finished");
            publish(&folder, "a.partial", "a").unwrap();
            assert_eq!(scratch.read("a").as_deref(), Some("finished"), "{how}");
            assert_eq!(
                scratch.read("a.partial"),
                None,
                "{how}: the partial name is gone"
            );
        }
    }

    #[test]
    fn publishing_never_replaces_what_holds_the_name() {
        for (how, publish) in PUBLISHERS {
            let scratch = Scratch::new(&format!("{how}-taken"));
            let folder = Folder::open(&scratch.0).unwrap();
            scratch.write("a.partial", "new");
            scratch.write("a", "old");
            std::os::unix::fs::symlink("nowhere", scratch.0.join("dangling")).unwrap();
            for taken in ["a", "dangling"] {
                let error = publish(&folder, "a.partial", taken).unwrap_err();
                assert_eq!(
                    error.raw_os_error(),
                    Some(libc::EEXIST),
                    "{how} onto {taken}"
                );
            }
            assert_eq!(scratch.read("a").as_deref(), Some("old"), "{how}");
            assert_eq!(scratch.read("a.partial").as_deref(), Some("new"), "{how}");
        }
    }
}
