//! File transfer with resume: the tutorials' upload server, done safely on the reactor.
//!
//! The tutorials end with an upload server: the client sends the file's size, waits for the server
//! to echo it (their cure for "sticky packets": the size and the first bytes of the file can no
//! longer arrive glued together), then streams the file. `-p files` is that server grown up: named
//! uploads and downloads that survive a dropped connection, served from one folder (`--dir`) on the
//! same single-threaded reactor as every other protocol. Two conversations share the port:
//!
//! - **Tutorial mode.** A client whose first bytes are only ASCII digits is the tutorial client: we
//!   echo the digits, read exactly that many bytes into `upload-<UTC time>-<id>.bin`, and close.
//! - **Named mode.** Request lines, one reply line each (see `request.rs`): `PUT <name> <size>` is
//!   answered `OK <offset>`, the bytes the server already holds of an interrupted upload of that
//!   name and size (FTP's `SIZE` + `REST`, tus's `Upload-Offset`): the client sends the rest, and
//!   gets `DONE <size> <sha256>`. `GET <name> [offset]` is answered `OK <size> <sha256>`, then the
//!   bytes from `offset` on. `LIST` and `QUIT` do what they say.
//!
//! **Frames are just bytes here.** The default framing is `raw`, so each read reaches
//! [`Protocol::on_frame`] as it came. Each client's session is a small state machine (`Mode`),
//! kept with its connection: while it is
//! sending request lines, its bytes go into a line buffer of at most 4096 bytes; after `OK` to a
//! `PUT` they are the body; one read may hold the end of a body and the next request, and both are
//! handled.
//!
//! **Fair to everyone else.** The disk is touched only in `disk.rs`, and a bounded amount per event:
//! an upload writes the bytes of one read (at most `--max-frame`), and a download reads one chunk
//! ([`CHUNK_BYTES`]) each time the client's queue empties ([`Replies::refill_when_drained`], then
//! [`Protocol::on_drained`]: the way chargen produces only as fast as the client reads), so a
//! file is never held in memory and a slow reader costs nothing. The exceptions, said plainly in `docs/FILES.md`: the `fsync` when an upload
//! completes, the first digest of a file this server did not receive itself, and re-reading the
//! held part of an upload resumed after a restart.
//!
//! **Shared state lives here, per reactor.** The digest cache (by name, size and mtime), the busy
//! set (names being written: a second writer gets `error: busy`), the quota and the bytes the
//! uploads under way have reserved of it are fields of [`Files`]. With `--workers N` there would
//! be N of each, so `-p files` refuses more than one (`ServeConfig::validate`).
//!
//! Next: `files/request.rs` (the words, pure) and `files/disk.rs` (the syscalls).

mod disk;
pub mod request;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use log::{debug, info, warn};
use memchr::memchr;
use sha2::{Digest, Sha256};

use self::disk::{Folder, Kind, describe_io_error};
use self::request::{
    FirstBytes, MAX_LINE_BYTES, Request, Start, check_quota, classify_first, hex, is_valid_name,
    parse_partial_name, parse_request, partial_name, start_of, tutorial_name,
};
use super::{ClientId, CloseReason, Protocol, Replies};
use crate::protocol::framing::{Frame, FrameError, FramingKind};

/// `--max-file-bytes` when not given: 1 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;
/// Bytes read from disk for a download each time the client's queue empties.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// What `-p files` serves and how much it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// The served folder (`--dir`): nothing outside it is ever created, read or followed.
    pub dir: PathBuf,
    /// Largest file accepted (`--max-file-bytes`); a larger size is refused before anything is written.
    pub max_file_bytes: u64,
    /// Content bytes the folder may hold, partial files included (`--dir-quota`); 0: no quota.
    pub dir_quota: u64,
}

impl FilesConfig {
    /// Serves `dir` with the default limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FilesConfig {
            dir: dir.into(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            dir_quota: 0,
        }
    }
}

/// An upload under way: bytes go to `partial` until all `size` are in, then it becomes `name`.
#[derive(Debug)]
struct Upload {
    name: String,
    partial: String,
    file: File,
    size: u64,
    written: u64,
    /// The digest of bytes `0..written`.
    hasher: Sha256,
    /// Tutorial mode: close when done, delete if cut short (there is no name to resume under).
    tutorial: bool,
}

impl Upload {
    fn remaining(&self) -> u64 {
        self.size - self.written
    }
}

/// A download under way: bytes `pos..end` of `file` are still to be sent.
#[derive(Debug)]
struct Download {
    file: File,
    pos: u64,
    end: u64,
}

/// Where one client's conversation is.
#[derive(Debug)]
enum Mode {
    /// Nothing received yet: the first bytes choose tutorial or named mode.
    Start,
    /// Reading request lines.
    Lines,
    /// Reading the body of a `PUT` or a tutorial upload.
    Receiving(Upload),
    /// Sending a file; what the client sends meanwhile waits in the line buffer.
    Sending(Download),
    /// Closing: everything more is ignored.
    Done,
}

/// One client's conversation (its session): its mode and its unfinished request line (at most
/// [`MAX_LINE_BYTES`]).
#[derive(Debug)]
pub struct Conversation {
    mode: Mode,
    line: Vec<u8>,
}

/// A file's digest, valid while its size and modification time stay the same.
#[derive(Debug, Clone, Copy)]
struct CachedDigest {
    size: u64,
    modified: Option<SystemTime>,
    digest: [u8; 32],
}

/// The files service of one reactor: its folder, its clients, and what they share.
pub struct Files {
    folder: Folder,
    max_file_bytes: u64,
    dir_quota: u64,
    /// Bytes the uploads under way will still bring: the quota holds room for them.
    reserved: u64,
    /// Names being written now.
    busy: HashSet<String>,
    digests: HashMap<String, CachedDigest>,
    /// Digests of interrupted uploads' partial files, so a resume need not read them back.
    partial_hashes: HashMap<String, (u64, Sha256)>,
    next_upload_id: u64,
    buffer: Box<[u8]>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("folder", &self.folder)
            .field("reserved", &self.reserved)
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

/// The words after `error: ` when a request is refused.
type Refusal = String;

fn io_words(e: io::Error) -> Refusal {
    describe_io_error(&e)
}

impl Files {
    /// The files service for `config.dir`, which must open as a folder. Also sets SIGXFSZ to
    /// ignored, process-wide: a write past `RLIMIT_FSIZE` then fails with `EFBIG` (an error
    /// line) instead of killing the server.
    pub fn open(config: &FilesConfig) -> io::Result<Files> {
        let folder = Folder::open(&config.dir).map_err(|e| {
            io::Error::new(e.kind(), format!("--dir {}: {e}", config.dir.display()))
        })?;
        ignore_sigxfsz();
        Ok(Files {
            folder,
            max_file_bytes: config.max_file_bytes,
            dir_quota: config.dir_quota,
            reserved: 0,
            busy: HashSet::new(),
            digests: HashMap::new(),
            partial_hashes: HashMap::new(),
            next_upload_id: 0,
            buffer: vec![0; CHUNK_BYTES].into_boxed_slice(),
        })
    }

    /// Runs `input` through `session`'s state machine, mode by mode, until it is used up.
    fn feed(
        &mut self,
        session: &mut Conversation,
        mut input: &[u8],
        now: SystemTime,
        out: &mut Replies,
    ) {
        while !input.is_empty() {
            let mode = std::mem::replace(&mut session.mode, Mode::Done);
            session.mode = match mode {
                Mode::Done => return,
                Mode::Start => match classify_first(input) {
                    FirstBytes::Named => Mode::Lines,
                    FirstBytes::BadSize => refuse_and_close(out, "bad size"),
                    FirstBytes::Tutorial(size) => {
                        let digits = std::mem::take(&mut input);
                        self.begin_tutorial(size, digits, now, out)
                    }
                },
                Mode::Lines => {
                    let (taken, complete) = match memchr(b'\n', input) {
                        Some(end) => (&input[..end], true),
                        None => (input, false),
                    };
                    input = &input[taken.len() + usize::from(complete)..];
                    if session.line.len() + taken.len() > MAX_LINE_BYTES {
                        session.line.clear();
                        refuse_and_close(out, "line too long")
                    } else {
                        session.line.extend_from_slice(taken);
                        if complete {
                            let line = std::mem::take(&mut session.line);
                            let next = self.on_request(&line, out);
                            session.line = line;
                            session.line.clear();
                            next
                        } else {
                            Mode::Lines
                        }
                    }
                }
                Mode::Receiving(upload) => {
                    let len = usize::try_from(upload.remaining())
                        .map_or(input.len(), |left| left.min(input.len()));
                    let (body, rest) = input.split_at(len);
                    input = rest;
                    self.receive(upload, body, out)
                }
                Mode::Sending(download) => {
                    // Requests sent ahead wait until the file is out; only a line's worth fits.
                    if session.line.len() + input.len() > MAX_LINE_BYTES {
                        refuse_and_close(out, "line too long")
                    } else {
                        session.line.extend_from_slice(std::mem::take(&mut input));
                        Mode::Sending(download)
                    }
                }
            };
        }
    }

    /// One request line: the reply is recorded in `out`; returns the mode that follows.
    fn on_request(&mut self, line: &[u8], out: &mut Replies) -> Mode {
        let request = match parse_request(line) {
            Ok(Some(request)) => request,
            Ok(None) => return Mode::Lines, // a blank line
            Err(e) => {
                out.error_line(&e.to_string());
                return Mode::Lines;
            }
        };
        debug!("files: {request:?}");
        let result = match request {
            Request::Put { name, size } => self.begin_put(name, size, out),
            Request::Get { name, offset } => self.begin_get(name, offset, out),
            Request::List => self.list(out).map(|()| Mode::Lines),
            Request::Quit => {
                out.send_raw(b"BYE\n");
                out.close();
                Ok(Mode::Done)
            }
        };
        result.unwrap_or_else(|refusal| {
            out.error_line(&refusal);
            Mode::Lines
        })
    }

    /// `PUT <name> <size>`: `OK <offset>` and the body follows, or a refusal.
    fn begin_put(&mut self, name: &str, size: u64, out: &mut Replies) -> Result<Mode, Refusal> {
        if size > self.max_file_bytes {
            return Err(format!("too large (limit {} bytes)", self.max_file_bytes));
        }
        if self.busy.contains(name) {
            return Err("busy".into());
        }
        let folder = &self.folder;
        if folder.stat(name).map_err(io_words)?.is_some() {
            return Err("exists".into()); // complete already, or a link or anything else: never replaced
        }
        let partial = partial_name(name, size);
        // One listing per PUT (not per byte): stale partials of this name, and the quota.
        let mut used = 0;
        for (file, entry) in folder.entries().map_err(io_words)? {
            match parse_partial_name(&file) {
                Some((other_size, of)) if of == name && other_size != size => {
                    debug!("files: {name}: dropping {file}, a partial upload of another size");
                    folder.remove(&file).map_err(io_words)?;
                }
                _ if entry.kind == Kind::Regular => used += entry.size,
                _ => {}
            }
        }
        let held = match folder.stat(&partial).map_err(io_words)? {
            Some(entry) if entry.kind == Kind::Regular => Some(entry.size),
            Some(_) => return Err("exists".into()), // something planted under our partial's name
            None => None,
        };
        let offset = match start_of(held, size) {
            Start::Fresh => 0,
            Start::Resume(held) => held,
            Start::Discard => {
                folder.remove(&partial).map_err(io_words)?;
                used = used.saturating_sub(held.unwrap_or(0));
                0
            }
        };
        check_quota(self.dir_quota, used, self.reserved, size - offset)
            .map_err(|free| format!("over quota ({free} bytes free)"))?;
        let (file, hasher) = if held.is_some() && offset > 0 {
            let (file, _) = folder.open_for_writing(&partial).map_err(io_words)?;
            let hasher = self.prefix_hasher(&partial, &file, offset)?;
            (file, hasher)
        } else if held.is_some() {
            (
                folder.open_for_writing(&partial).map_err(io_words)?.0,
                Sha256::new(),
            )
        } else {
            let file = folder.create_new(&partial).map_err(io_words)?;
            (file, Sha256::new())
        };
        out.send_raw(format!("OK {offset}\n").as_bytes());
        let upload = Upload {
            name: name.to_string(),
            partial,
            file,
            size,
            written: offset,
            hasher,
            tutorial: false,
        };
        Ok(self.start_upload(upload, out))
    }

    /// The digest of the `held` bytes of a partial file: remembered from the interrupted upload,
    /// or (after a restart) read back from disk once.
    fn prefix_hasher(&mut self, partial: &str, file: &File, held: u64) -> Result<Sha256, Refusal> {
        if let Some((bytes, hasher)) = self.partial_hashes.remove(partial)
            && bytes == held
        {
            return Ok(hasher);
        }
        let mut hasher = Sha256::new();
        disk::hash_prefix(file, held, &mut hasher, &mut self.buffer).map_err(io_words)?;
        Ok(hasher)
    }

    /// The tutorial client's size: echo it, then receive that many bytes into a new file.
    fn begin_tutorial(
        &mut self,
        size: u64,
        digits: &[u8],
        now: SystemTime,
        out: &mut Replies,
    ) -> Mode {
        if size > self.max_file_bytes {
            let what = format!("too large (limit {} bytes)", self.max_file_bytes);
            return refuse_and_close(out, &what);
        }
        match self.create_tutorial_file(size, now) {
            Ok((name, partial, file)) => {
                out.send_raw(digits);
                let upload = Upload {
                    name,
                    partial,
                    file,
                    size,
                    written: 0,
                    hasher: Sha256::new(),
                    tutorial: true,
                };
                self.start_upload(upload, out)
            }
            Err(refusal) => refuse_and_close(out, &refusal),
        }
    }

    /// A fresh `upload-<time>-<id>.bin` (its partial file, created exclusively), within the quota.
    fn create_tutorial_file(
        &mut self,
        size: u64,
        now: SystemTime,
    ) -> Result<(String, String, File), Refusal> {
        let folder = &self.folder;
        if self.dir_quota > 0 {
            let used = folder
                .entries()
                .map_err(io_words)?
                .iter()
                .filter(|(_, entry)| entry.kind == Kind::Regular)
                .map(|(_, entry)| entry.size)
                .sum();
            check_quota(self.dir_quota, used, self.reserved, size)
                .map_err(|free| format!("over quota ({free} bytes free)"))?;
        }
        for _ in 0..1000 {
            self.next_upload_id += 1;
            let name = tutorial_name(now, self.next_upload_id);
            let partial = partial_name(&name, size);
            if self.busy.contains(&name) || folder.stat(&name).map_err(io_words)?.is_some() {
                continue;
            }
            match folder.create_new(&partial) {
                Ok(file) => return Ok((name, partial, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_words(e)),
            }
        }
        Err("busy".into())
    }

    /// An upload begins: its name is busy and the bytes it will bring are reserved of the quota
    /// until they are written (or the upload is abandoned).
    fn start_upload(&mut self, upload: Upload, out: &mut Replies) -> Mode {
        self.busy.insert(upload.name.clone());
        self.reserved += upload.remaining();
        self.receive(upload, &[], out)
    }

    /// Writes one read's worth of body; completes the upload when the last byte is in. A write
    /// error ends the request with an error line and a close: the client is still sending body
    /// bytes, which cannot be told apart from requests. The partial file stays for a resume.
    fn receive(&mut self, mut upload: Upload, body: &[u8], out: &mut Replies) -> Mode {
        let (written, error) = disk::write_at(&upload.file, body, upload.written);
        upload.hasher.update(&body[..written]);
        upload.written += written as u64;
        self.reserved -= written as u64;
        if let Some(e) = error {
            warn!("files: writing {}: {e}", upload.partial);
            self.abandon(upload);
            return refuse_and_close(out, &describe_io_error(&e));
        }
        if upload.remaining() > 0 {
            return Mode::Receiving(upload);
        }
        self.complete(upload, out)
    }

    /// All bytes are in: fsync, give the file its name atomically, reply `DONE` (or close).
    fn complete(&mut self, upload: Upload, out: &mut Replies) -> Mode {
        self.busy.remove(&upload.name);
        let published = upload
            .file
            .sync_all()
            .and_then(|()| self.folder.publish(&upload.partial, &upload.name))
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => "exists".to_string(),
                _ => describe_io_error(&e),
            });
        if let Err(refusal) = published {
            warn!("files: completing {}: {refusal}", upload.name);
            let tutorial = upload.tutorial;
            self.abandon(upload);
            return if tutorial {
                refuse_and_close(out, &refusal)
            } else {
                out.error_line(&refusal);
                Mode::Lines
            };
        }
        let digest: [u8; 32] = upload.hasher.finalize().into();
        let modified = upload.file.metadata().and_then(|m| m.modified()).ok();
        self.digests.insert(
            upload.name.clone(),
            CachedDigest {
                size: upload.size,
                modified,
                digest,
            },
        );
        info!("files: stored {} ({} bytes)", upload.name, upload.size);
        if upload.tutorial {
            out.close();
            Mode::Done
        } else {
            out.send_raw(format!("DONE {} {}\n", upload.size, hex(&digest)).as_bytes());
            Mode::Lines
        }
    }

    /// An upload that will not finish now: free its name; keep a named upload's partial file (and
    /// its digest so far) for a resume, delete a tutorial upload's.
    fn abandon(&mut self, upload: Upload) {
        self.busy.remove(&upload.name);
        self.reserved -= upload.remaining();
        if upload.tutorial {
            let _ = self.folder.remove(&upload.partial);
        } else {
            self.partial_hashes
                .insert(upload.partial, (upload.written, upload.hasher));
        }
    }

    /// `GET <name> [offset]`: `OK <size> <sha256>`, then the bytes, chunk by chunk on drain.
    fn begin_get(&mut self, name: &str, offset: u64, out: &mut Replies) -> Result<Mode, Refusal> {
        let (file, entry) = match self.folder.open_for_reading(name) {
            Ok(opened) => opened,
            // Missing, a link (ELOOP with O_NOFOLLOW), or not a regular file: all "not found".
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || matches!(
                        e.raw_os_error(),
                        Some(libc::ELOOP | libc::EINVAL | libc::ENXIO)
                    ) =>
            {
                return Err("not found".into());
            }
            Err(e) => return Err(io_words(e)),
        };
        if offset > entry.size {
            return Err(format!("bad offset (size {})", entry.size));
        }
        let digest = self.digest_of(name, &file, entry.size)?;
        out.send_raw(format!("OK {} {}\n", entry.size, hex(&digest)).as_bytes());
        if offset == entry.size {
            return Ok(Mode::Lines);
        }
        out.refill_when_drained(); // the first chunk goes once the `OK` line is out
        Ok(Mode::Sending(Download {
            file,
            pos: offset,
            end: entry.size,
        }))
    }

    /// A file's sha256: from the cache while its size and mtime match, else read once and kept.
    fn digest_of(&mut self, name: &str, file: &File, size: u64) -> Result<[u8; 32], Refusal> {
        let modified = file.metadata().and_then(|m| m.modified()).ok();
        if let Some(cached) = self.digests.get(name)
            && cached.size == size
            && cached.modified == modified
        {
            return Ok(cached.digest);
        }
        let mut hasher = Sha256::new();
        disk::hash_prefix(file, size, &mut hasher, &mut self.buffer).map_err(io_words)?;
        let digest: [u8; 32] = hasher.finalize().into();
        self.digests.insert(
            name.to_string(),
            CachedDigest {
                size,
                modified,
                digest,
            },
        );
        Ok(digest)
    }

    /// `LIST`: `<size> <name>` per complete regular file with a valid name, by name, then `END`.
    fn list(&self, out: &mut Replies) -> Result<(), Refusal> {
        let mut files: Vec<(String, u64)> = self
            .folder
            .entries()
            .map_err(io_words)?
            .into_iter()
            .filter(|(name, entry)| entry.kind == Kind::Regular && is_valid_name(name.as_bytes()))
            .map(|(name, entry)| (name, entry.size))
            .collect();
        files.sort();
        for (name, size) in files {
            out.send_raw(format!("{size} {name}\n").as_bytes());
        }
        out.send_raw(b"END\n");
        Ok(())
    }

    /// The next chunk of a download; when the file is out, requests sent meanwhile are answered.
    fn send_chunk(
        &mut self,
        session: &mut Conversation,
        mut download: Download,
        out: &mut Replies,
    ) {
        let want = usize::try_from(download.end - download.pos)
            .map_or(CHUNK_BYTES, |left| left.min(CHUNK_BYTES));
        match disk::read_at(&download.file, &mut self.buffer[..want], download.pos) {
            Ok(n) if n > 0 => {
                out.send_raw(&self.buffer[..n]);
                download.pos += n as u64;
            }
            result => {
                // The file shrank (or the disk failed) under us: the promised bytes cannot come.
                warn!(
                    "files: download cut short at byte {}: {result:?}",
                    download.pos
                );
                out.close();
                session.mode = Mode::Done;
                return;
            }
        }
        if download.pos < download.end {
            session.mode = Mode::Sending(download);
            out.refill_when_drained();
            return;
        }
        session.mode = Mode::Lines;
        let pending = std::mem::take(&mut session.line);
        // `now` only names tutorial uploads, which cannot start here.
        self.feed(session, &pending, SystemTime::now(), out);
    }
}

/// `error: <what>`, then close: nothing after this can be trusted.
fn refuse_and_close(out: &mut Replies, what: &str) -> Mode {
    out.error_line(what);
    out.close();
    Mode::Done
}

/// A write past `RLIMIT_FSIZE` raises SIGXFSZ, whose default action ends the process. Ignored, the
/// write fails with `EFBIG` instead, and that client gets an error line.
fn ignore_sigxfsz() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; it is
    // async-signal-safe and idempotent.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

impl Protocol for Files {
    type Session = Conversation;
    const NAME: &'static str = "files";
    const FRAMING: FramingKind = FramingKind::Raw;

    fn on_connect(&mut self, _: ClientId, _now: SystemTime, _out: &mut Replies) -> Conversation {
        Conversation {
            mode: Mode::Start,
            line: Vec::new(),
        }
    }

    fn on_frame(
        &mut self,
        conversation: &mut Conversation,
        frame: Frame<'_>,
        now: SystemTime,
        out: &mut Replies,
    ) {
        self.feed(conversation, frame.payload, now, out);
    }

    fn on_frame_error(&mut self, _: &mut Conversation, _: &FrameError, _: &mut Replies) {}

    fn on_drained(&mut self, conversation: &mut Conversation, out: &mut Replies) {
        match std::mem::replace(&mut conversation.mode, Mode::Done) {
            Mode::Sending(download) => self.send_chunk(conversation, download, out),
            mode => conversation.mode = mode,
        }
    }

    /// A client that half-closes right after `GET` (`nc -N`) is still owed the whole file.
    fn on_end_of_input(&mut self, conversation: &mut Conversation, out: &mut Replies) {
        if matches!(conversation.mode, Mode::Sending(_)) {
            out.refill_when_drained();
        }
    }

    fn on_disconnect(&mut self, conversation: Conversation, reason: CloseReason, _: &mut Replies) {
        if let Mode::Receiving(upload) = conversation.mode {
            debug!(
                "files: {} interrupted at byte {} of {} ({reason})",
                upload.name, upload.written, upload.size
            );
            self.abandon(upload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::Harness;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A folder of its own under the temp dir, removed when dropped.
    struct Folder(PathBuf);

    impl Folder {
        fn new() -> Folder {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "echoloop-files-unit-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Folder(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn files(folder: &Folder, quota: u64) -> Harness<Files> {
        let config = FilesConfig {
            dir_quota: quota,
            ..FilesConfig::new(folder.path())
        };
        Harness::new(Files::open(&config).unwrap())
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    #[test]
    fn a_folder_that_does_not_open_is_an_error_naming_dir() {
        let missing = FilesConfig::new("/nonexistent/echoloop/unit");
        let error = Files::open(&missing).unwrap_err();
        assert!(
            error.to_string().starts_with("--dir /nonexistent"),
            "{error}"
        );
    }

    #[test]
    fn put_then_get_then_list_in_one_conversation() {
        let folder = Folder::new();
        let mut service = files(&folder, 0);
        let client = service.connect();
        service.send(client, b"PUT a.txt 5\nhel");
        assert_eq!(service.take_output(client), b"OK 0\n");
        service.send(client, b"lo");
        let done = format!("DONE 5 {}\n", sha256_hex(b"hello"));
        assert_eq!(service.take_output(client), done.as_bytes());
        assert_eq!(
            std::fs::read(folder.path().join("a.txt")).unwrap(),
            b"hello"
        );

        // GET answers its header at once and the body only as the client drains.
        service.send(client, b"GET a.txt\nLIST\n");
        let header = format!("OK 5 {}\n", sha256_hex(b"hello"));
        assert_eq!(service.take_output(client), header.as_bytes());
        assert!(service.wants_refill(client));
        assert!(service.drain(client));
        // The body, then the LIST that waited behind it.
        assert_eq!(service.take_output(client), b"hello5 a.txt\nEND\n");
        assert!(!service.wants_refill(client));
        service.send(client, b"QUIT\n");
        assert_eq!(service.take_output(client), b"BYE\n");
        assert!(service.is_closing(client));
    }

    #[test]
    fn a_download_is_cut_into_chunks_one_per_drain() {
        let folder = Folder::new();
        let body: Vec<u8> = (0..CHUNK_BYTES * 2 + 10).map(|i| i as u8).collect();
        std::fs::write(folder.path().join("big"), &body).unwrap();
        let mut service = files(&folder, 0);
        let client = service.connect();
        service.send(client, b"GET big\n");
        service.take_output(client);
        let mut got = Vec::new();
        let mut drains = 0;
        while service.drain(client) {
            drains += 1;
            got.extend(service.take_output(client));
        }
        assert_eq!(drains, 3);
        assert!(got == body);
    }

    #[test]
    fn a_client_that_half_closes_after_get_still_gets_the_whole_file() {
        let folder = Folder::new();
        std::fs::write(folder.path().join("f"), vec![7u8; CHUNK_BYTES + 1]).unwrap();
        let mut service = files(&folder, 0);
        let client = service.connect();
        service.send(client, b"GET f\n");
        assert!(service.take_output(client).starts_with(b"OK 65537 "));
        service.end_input(client); // drops the pending refill; the protocol asks again
        assert!(service.wants_refill(client));
        let mut body = 0;
        while service.drain(client) {
            body += service.take_output(client).len();
        }
        assert_eq!(body, CHUNK_BYTES + 1);
    }

    #[test]
    fn a_reservation_holds_quota_until_the_upload_ends() {
        let folder = Folder::new();
        let mut service = files(&folder, 100);
        let first = service.connect();
        service.send(first, b"PUT one 60\n");
        assert_eq!(service.take_output(first), b"OK 0\n");
        assert_eq!(service.protocol().reserved, 60);
        let second = service.connect();
        service.send(second, b"PUT two 60\n");
        assert_eq!(
            service.take_output(second),
            b"error: over quota (40 bytes free)\n"
        );
        service.send(first, &[b'x'; 20]);
        assert_eq!(
            service.protocol().reserved,
            40,
            "written bytes leave the reservation"
        );
        service.disconnect(first, CloseReason::Reset);
        assert_eq!(
            service.protocol().reserved,
            0,
            "an interrupted upload frees it"
        );
        // The 20 bytes held in the partial file still count against the quota.
        service.send(second, b"PUT two 90\n");
        assert_eq!(
            service.take_output(second),
            b"error: over quota (80 bytes free)\n"
        );
        service.send(second, b"PUT two 80\n");
        assert_eq!(service.take_output(second), b"OK 0\n");
    }

    #[test]
    fn an_interrupted_put_resumes_where_it_stopped() {
        let folder = Folder::new();
        let mut service = files(&folder, 0);
        let first = service.connect();
        service.send(first, b"PUT r 6\nabc");
        service.take_output(first);
        service.disconnect(first, CloseReason::Reset);
        let second = service.connect();
        service.send(second, b"PUT r 6\n");
        assert_eq!(service.take_output(second), b"OK 3\n");
        service.send(second, b"def");
        let done = format!("DONE 6 {}\n", sha256_hex(b"abcdef"));
        assert_eq!(service.take_output(second), done.as_bytes());
    }

    #[test]
    fn a_second_writer_of_a_name_is_busy() {
        let folder = Folder::new();
        let mut service = files(&folder, 0);
        let first = service.connect();
        service.send(first, b"PUT n 4\n");
        let second = service.connect();
        service.send(second, b"PUT n 4\n");
        assert_eq!(service.take_output(second), b"error: busy\n");
        assert!(
            !service.is_closing(second),
            "a refused request keeps the connection"
        );
    }

    #[test]
    fn the_tutorial_client_gets_its_size_echoed_and_the_file_is_stored() {
        let folder = Folder::new();
        let mut service = files(&folder, 0);
        let client = service.connect();
        service.send(client, b"5");
        assert_eq!(service.take_output(client), b"5");
        service.send(client, b"12345");
        assert!(service.is_closing(client));
        let stored: Vec<String> = std::fs::read_dir(folder.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert!(stored[0].starts_with("upload-") && stored[0].ends_with(".bin"));
    }

    #[test]
    fn an_over_long_request_line_is_refused_and_closed() {
        let folder = Folder::new();
        let mut service = files(&folder, 0);
        let client = service.connect();
        service.send(client, b"LIST");
        service.send(client, &vec![b'x'; MAX_LINE_BYTES]);
        assert_eq!(service.take_output(client), b"error: line too long\n");
        assert!(service.is_closing(client));
    }
}
