//! File transfer with resume: the tutorials' upload server, done safely on the reactor.
//!
//! The tutorials end with an upload server: the client sends the file's size, waits for the server
//! to echo it (their cure for "sticky packets": the size and the first bytes of the file can no
//! longer arrive glued together), then streams the file. `-p files` is that server grown up: named
//! uploads and downloads that survive a dropped connection *and a restarted server*, served from
//! one folder (`--dir`) on the same single-threaded reactor as every other protocol. Two
//! conversations share the port:
//!
//! - **Tutorial mode.** A client whose first bytes are only ASCII digits is the tutorial client: we
//!   echo the digits, read exactly that many bytes into `upload-<UTC time>-<id>.bin`, and close.
//! - **Named mode.** Request lines, one reply line each (see `request.rs`): `PUT <name> <size>
//!   <sha256>` is answered `OK <offset>`, the bytes the server already holds of an interrupted
//!   upload of that very file (FTP's `SIZE` + `REST`, tus's `Upload-Offset`): the client sends the
//!   rest, and gets `DONE <size> <sha256>`, once the server has checked the digest and the file
//!   is on the disk under its name. `GET <name> [offset]` is answered `OK <size> <sha256>`, then
//!   the bytes from `offset` on. `LIST` and `QUIT` do what they say.
//!
//! **Whose upload is it?** A partial file is bound to the name, size *and digest* its upload
//! declared (`request.rs`, `PartialKey`). Only a `PUT` of that same file resumes it; a `PUT` with
//! another digest gets a partial file of its own, so nobody can extend (splice) or destroy someone
//! else's interrupted upload. While one connection writes a name, every other `PUT` of it gets
//! `error: busy`. The first upload of a name to complete publishes it (if its bytes match its
//! digest: `error: digest mismatch` otherwise, and nothing is published); the other partial
//! files of that name are then removed. `PUT <name> <size>` without a digest is kept for simple
//! clients: unverified, and resumable by any `PUT` that also has no digest.
//!
//! **Frames are just bytes here.** The default framing is `raw`, so each read reaches
//! [`Protocol::on_frame`] as it came. Each client's session is a small state machine (`Mode`),
//! kept with its connection: while it is sending request lines, its bytes go into a line buffer
//! of at most 4096 bytes; after `OK` to a `PUT` they are the body; one read may hold the end of a
//! body and the next request, and both are handled. While a connection is busy (sending a file,
//! a long `LIST`, or waiting for the disk) what it sends next is *held* (at most one read's
//! worth) and its input paused ([`Replies::pause_input`]) until the answer is out.
//!
//! **Fair to everyone else.** No request costs more than a bounded amount of work on the loop:
//! - an upload writes the bytes of one read (at most `--max-frame`); a download reads one chunk
//!   ([`CHUNK_BYTES`]) each time the client's queue empties ([`Replies::refill_when_drained`],
//!   then [`Protocol::on_drained`]: the way chargen produces only as fast as the client reads);
//!   `LIST` sends [`LIST_BATCH`] lines the same way, from a cursor;
//! - what the folder holds is known in memory (`inventory.rs`): a `PUT` never lists the folder;
//! - the calls that wait for the disk (the `fsync`s of a finished upload, its rename, hashing a
//!   large file) run on a helper thread (`worker.rs`), which wakes the loop when done.
//!
//! **Shared state lives here, per reactor.** The inventory, the digest cache, the busy set and the
//! disk worker are fields of [`Files`]. With `--workers N` there would be N of each, so `-p files`
//! refuses more than one (`ServeConfig::validate`).
//!
//! Next: `files/request.rs` (the words, pure) and `files/disk.rs` (the syscalls).

mod digests;
mod disk;
mod inventory;
pub mod request;
mod worker;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use log::{debug, info, warn};
use memchr::memchr;
use sha2::{Digest, Sha256};

use self::digests::DigestCache;
use self::disk::{Folder, Identity, describe_io_error, is_refused_kind};
use self::inventory::Inventory;
use self::request::{
    FirstBytes, MAX_LINE_BYTES, PartialKey, Request, Start, classify_first, hex, parse_request,
    start_of, tutorial_name,
};
use self::worker::{DiskWorker, Job, Outcome};
use super::{ClientId, CloseReason, Protocol, Replies};
use crate::protocol::framing::{Frame, FrameError, FramingKind};

/// `--max-file-bytes` when not given: 1 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;
/// `--max-files` when not given.
pub const DEFAULT_MAX_FILES: u64 = 100_000;
/// `--reservation-timeout` when not given.
pub const DEFAULT_RESERVATION_TIMEOUT: Duration = Duration::from_secs(60);
/// `--partial-ttl` when not given: a day.
pub const DEFAULT_PARTIAL_TTL: Duration = Duration::from_secs(86_400);
/// Bytes read from disk for a download each time the client's queue empties.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// `LIST` lines sent each time the client's queue empties.
pub const LIST_BATCH: usize = 256;
/// A file up to this size is hashed on the loop; a larger one by the disk worker.
const HASH_ON_LOOP_BYTES: u64 = 256 * 1024;
/// Most input held while a connection is busy: one read, and a request line.
const MAX_HELD_BYTES: usize = 64 * 1024 + MAX_LINE_BYTES;
/// How often, at most, partial files are checked against `--partial-ttl`.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What `-p files` serves and how much it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// The served folder (`--dir`): nothing outside it is ever created, read or followed.
    pub dir: PathBuf,
    /// Largest file accepted (`--max-file-bytes`); a larger size is refused before anything is written.
    pub max_file_bytes: u64,
    /// Content bytes the folder may hold, partial files included (`--dir-quota`); 0: no quota.
    pub dir_quota: u64,
    /// Complete plus partial files the folder may hold (`--max-files`).
    pub max_files: u64,
    /// An upload's quota reservation ends after this long without a byte (`--reservation-timeout`).
    pub reservation_timeout: Duration,
    /// Partial files untouched this long are removed (`--partial-ttl`); `None`: kept.
    pub partial_ttl: Option<Duration>,
}

impl FilesConfig {
    /// Serves `dir` with the default limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FilesConfig {
            dir: dir.into(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            dir_quota: 0,
            max_files: DEFAULT_MAX_FILES,
            reservation_timeout: DEFAULT_RESERVATION_TIMEOUT,
            partial_ttl: Some(DEFAULT_PARTIAL_TTL),
        }
    }
}

/// An upload under way: bytes go to `partial` until all `key.size` are in, then it becomes
/// `key.name`.
#[derive(Debug)]
struct Upload {
    /// Names its quota reservation.
    serial: u64,
    key: PartialKey,
    partial: String,
    file: File,
    written: u64,
    /// The digest of bytes `0..written`.
    hasher: Sha256,
    /// When the last byte came.
    last_byte: SystemTime,
    /// Tutorial mode: close when done, delete if cut short (there is no name to resume under).
    tutorial: bool,
}

impl Upload {
    fn remaining(&self) -> u64 {
        self.key.size - self.written
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
    Receiving(Box<Upload>),
    /// Sending a file, a chunk per drained queue.
    Sending(Download),
    /// Answering `LIST`, a batch per drained queue; the last name sent.
    Listing(String),
    /// The disk worker has this job of ours (fsync and publish, or a hash).
    WaitingForDisk(u64),
    /// Closing: everything more is ignored.
    Done,
}

impl Mode {
    /// Whether what the client sends now must wait until the current answer is out.
    fn is_busy(&self) -> bool {
        matches!(
            self,
            Mode::Sending(_) | Mode::Listing(_) | Mode::WaitingForDisk(_)
        )
    }
}

/// One client's conversation (its session): its mode, its unfinished request line (at most
/// [`MAX_LINE_BYTES`]), and the input held while it is busy.
#[derive(Debug)]
pub struct Conversation {
    client: ClientId,
    mode: Mode,
    line: Vec<u8>,
    held: Vec<u8>,
}

/// What a connection waits for the disk worker to finish.
#[derive(Debug)]
enum Parked {
    /// A complete upload: fsync, publish, fsync the folder. `digest` is its sha256.
    Publish { upload: Upload, digest: [u8; 32] },
    /// The digest of a partial file's held bytes, before `OK <offset>`.
    Resume(Upload),
    /// The digest of a file to send, before `OK <size> <sha256>`.
    Get {
        name: String,
        identity: Identity,
        download: Download,
    },
}

/// A parked connection's next step, computed when its job finished.
#[derive(Debug)]
struct Resumed {
    reply: Vec<u8>,
    close: bool,
    mode: Mode,
}

/// The files service of one reactor: its folder, its clients, and what they share.
pub struct Files {
    folder: Arc<Folder>,
    max_file_bytes: u64,
    dir_quota: u64,
    max_files: u64,
    reservation_timeout: Duration,
    partial_ttl: Option<Duration>,
    inventory: Inventory,
    /// Names being written now (and until their publish is done).
    busy: HashSet<String>,
    digests: DigestCache,
    /// The helper thread, once the reactor has given us a waker; without it, disk jobs run inline.
    worker: Option<DiskWorker>,
    /// Jobs out at the worker, by serial: whose, and what to do with the outcome.
    parked: HashMap<u64, (ClientId, Parked)>,
    /// Parked jobs whose client left meanwhile.
    orphans: HashSet<u64>,
    /// Finished jobs whose client has not been resumed yet.
    ready: HashMap<u64, Resumed>,
    next_serial: u64,
    next_upload_id: u64,
    next_sweep: Option<SystemTime>,
    buffer: Box<[u8]>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("folder", &self.folder)
            .field("files", &self.inventory.files())
            .field("used", &self.inventory.used())
            .field("reserved", &self.inventory.reserved())
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
    /// The files service for `config.dir`, which must open as a folder; lists it once (see
    /// `inventory.rs`). Also sets SIGXFSZ to ignored, process-wide: a write past `RLIMIT_FSIZE`
    /// then fails with `EFBIG` (an error line) instead of killing the server.
    pub fn open(config: &FilesConfig) -> io::Result<Files> {
        let named =
            |e: io::Error| io::Error::new(e.kind(), format!("--dir {}: {e}", config.dir.display()));
        let folder = Folder::open(&config.dir).map_err(named)?;
        let inventory = Inventory::scan(&folder).map_err(named)?;
        debug!(
            "files: {}: {} files, {} bytes",
            config.dir.display(),
            inventory.files(),
            inventory.used()
        );
        ignore_sigxfsz();
        Ok(Files {
            folder: Arc::new(folder),
            max_file_bytes: config.max_file_bytes,
            dir_quota: config.dir_quota,
            max_files: config.max_files,
            reservation_timeout: config.reservation_timeout,
            partial_ttl: config.partial_ttl,
            inventory,
            busy: HashSet::new(),
            digests: DigestCache::default(),
            worker: None,
            parked: HashMap::new(),
            orphans: HashSet::new(),
            ready: HashMap::new(),
            next_serial: 0,
            next_upload_id: 0,
            next_sweep: None,
            buffer: vec![0; CHUNK_BYTES].into_boxed_slice(),
        })
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// Runs `input` through `session`'s state machine, mode by mode, until it is used up (or held).
    fn feed(
        &mut self,
        session: &mut Conversation,
        mut input: &[u8],
        now: SystemTime,
        out: &mut Replies,
    ) {
        loop {
            if let Mode::WaitingForDisk(serial) = session.mode {
                match self.ready.remove(&serial) {
                    Some(resumed) => {
                        session.mode = self.apply(session.client, resumed, now, out);
                        continue;
                    }
                    None => return hold(session, input, out),
                }
            }
            if input.is_empty() {
                return;
            }
            if session.mode.is_busy() {
                return hold(session, input, out);
            }
            let mode = std::mem::replace(&mut session.mode, Mode::Done);
            session.mode = match mode {
                Mode::Done => return,
                Mode::Start => match classify_first(input) {
                    FirstBytes::Named => Mode::Lines,
                    FirstBytes::BadSize => refuse_and_close(out, "bad size"),
                    FirstBytes::Tutorial(size) => {
                        let digits = std::mem::take(&mut input);
                        self.begin_tutorial(session.client, size, digits, now, out)
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
                            let next = self.on_request(session.client, &line, now, out);
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
                    self.receive(session.client, *upload, body, now, out)
                }
                busy => busy, // handled above
            };
        }
    }

    /// The connection is no longer busy: what it sent meanwhile is handled now, and once nothing
    /// is held its input flows again.
    fn release_held(&mut self, session: &mut Conversation, now: SystemTime, out: &mut Replies) {
        if session.mode.is_busy() {
            return;
        }
        let held = std::mem::take(&mut session.held);
        self.feed(session, &held, now, out);
        if session.held.is_empty() {
            session.held = held; // its memory, for next time
            session.held.clear();
        }
        if !session.mode.is_busy() {
            out.resume_input();
        }
    }

    /// One request line: the reply is recorded in `out`; returns the mode that follows.
    fn on_request(
        &mut self,
        client: ClientId,
        line: &[u8],
        now: SystemTime,
        out: &mut Replies,
    ) -> Mode {
        let request = match parse_request(line) {
            Ok(Some(request)) => request,
            Ok(None) => return Mode::Lines, // a blank line
            Err(e) => {
                out.error_line(&e.to_string());
                return Mode::Lines;
            }
        };
        debug!("files: client {client}: {request:?}");
        self.sweep_partials(now);
        let result = match request {
            Request::Put { name, size, digest } => {
                let key = PartialKey {
                    name: name.to_string(),
                    size,
                    digest,
                };
                self.begin_put(client, key, now, out)
            }
            Request::Get { name, offset } => self.begin_get(client, name, offset, out),
            Request::List => Ok(self.list_batch(None, out)),
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

    /// `PUT <name> <size> [sha256]`: `OK <offset>` and the body follows, or a refusal.
    fn begin_put(
        &mut self,
        client: ClientId,
        key: PartialKey,
        now: SystemTime,
        out: &mut Replies,
    ) -> Result<Mode, Refusal> {
        let size = key.size;
        if size > self.max_file_bytes {
            return Err(format!("too large (limit {} bytes)", self.max_file_bytes));
        }
        if self.busy.contains(&key.name) {
            return Err("busy".into());
        }
        // One `fstatat`, whatever the folder holds: a complete file, or anything an operator put
        // there, is never replaced.
        if self.inventory.has_complete(&key.name)
            || self.folder.stat(&key.name).map_err(io_words)?.is_some()
        {
            return Err("exists".into());
        }
        let partial = key.file_name();
        let mut held = None;
        if self.inventory.partial(&key).is_some() {
            match self.folder.open_for_resume(&partial) {
                Ok((file, entry)) => held = Some((file, entry.size)),
                Err(e) if is_refused_kind(&e) => {
                    warn!("files: {partial}: a link or a file with other names: refused");
                    return Err("exists".into());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.inventory.remove_partial(&key); // removed behind our back
                }
                Err(e) => return Err(io_words(e)),
            }
        }
        if let Some((_, bytes)) = &held
            && start_of(Some(*bytes), size) == Start::Discard
        {
            // Longer than its declared size: not something we wrote. Start over.
            self.folder.remove(&partial).map_err(io_words)?;
            self.inventory.remove_partial(&key);
            held = None;
        }
        self.inventory
            .expire_reservations(now, self.reservation_timeout);
        let (file, offset) = match held {
            Some((file, bytes)) => {
                self.check_quota(size - bytes)?;
                if self.inventory.partial(&key).map(|p| p.held) != Some(bytes) {
                    self.inventory.add_partial(key.clone(), bytes, now); // grown behind our back
                }
                (file, bytes)
            }
            None => {
                if self.inventory.files() >= self.max_files {
                    return Err("too many files".into());
                }
                self.check_quota(size)?;
                let file = match self.folder.create_new(&partial) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        warn!("files: {partial}: something we did not make holds the name");
                        return Err("exists".into());
                    }
                    Err(e) => return Err(io_words(e)),
                };
                self.inventory.add_partial(key.clone(), 0, now);
                (file, 0)
            }
        };
        let remembered = self.inventory.take_prefix(&key, offset);
        let upload = Upload {
            serial: self.serial(),
            key,
            partial,
            file,
            written: offset,
            hasher: Sha256::new(),
            last_byte: now,
            tutorial: false,
        };
        self.busy.insert(upload.key.name.clone());
        self.inventory
            .reserve(upload.serial, upload.remaining(), now);
        match remembered {
            _ if offset == 0 => Ok(self.accept_upload(client, upload, now, out)),
            Some(hasher) => Ok(self.accept_upload(client, Upload { hasher, ..upload }, now, out)),
            // After a restart: the held bytes are read back once, to go on with their digest.
            None if offset <= HASH_ON_LOOP_BYTES => match worker::hash_now(&upload.file, offset) {
                Ok(hasher) => Ok(self.accept_upload(client, Upload { hasher, ..upload }, now, out)),
                Err(e) => {
                    self.abandon(upload);
                    Err(io_words(e))
                }
            },
            None => {
                let job = match upload.file.try_clone() {
                    Ok(file) => Job::Hash {
                        file,
                        hasher: Sha256::new(),
                        from: 0,
                        to: offset,
                    },
                    Err(e) => {
                        self.abandon(upload);
                        return Err(io_words(e));
                    }
                };
                Ok(self.park(client, Parked::Resume(upload), job))
            }
        }
    }

    /// `Err("over quota (N bytes free)")` unless `needed` more bytes fit.
    fn check_quota(&self, needed: u64) -> Result<(), Refusal> {
        self.inventory
            .fits(self.dir_quota, needed)
            .map_err(|free| format!("over quota ({free} bytes free)"))
    }

    /// `OK <offset>`: the body follows (none, for an empty file or one held whole).
    fn accept_upload(
        &mut self,
        client: ClientId,
        upload: Upload,
        now: SystemTime,
        out: &mut Replies,
    ) -> Mode {
        out.send_raw(format!("OK {}\n", upload.written).as_bytes());
        self.receive(client, upload, &[], now, out)
    }

    /// The tutorial client's size: echo it, then receive that many bytes into a new file.
    fn begin_tutorial(
        &mut self,
        client: ClientId,
        size: u64,
        digits: &[u8],
        now: SystemTime,
        out: &mut Replies,
    ) -> Mode {
        if size > self.max_file_bytes {
            let what = format!("too large (limit {} bytes)", self.max_file_bytes);
            return refuse_and_close(out, &what);
        }
        self.inventory
            .expire_reservations(now, self.reservation_timeout);
        let created = if self.inventory.files() >= self.max_files {
            Err("too many files".to_string())
        } else {
            self.check_quota(size)
                .and_then(|()| self.create_tutorial_file(size, now))
        };
        match created {
            Ok((key, partial, file)) => {
                out.send_raw(digits);
                self.inventory.add_partial(key.clone(), 0, now);
                let upload = Upload {
                    serial: self.serial(),
                    key,
                    partial,
                    file,
                    written: 0,
                    hasher: Sha256::new(),
                    last_byte: now,
                    tutorial: true,
                };
                self.busy.insert(upload.key.name.clone());
                self.inventory.reserve(upload.serial, size, now);
                self.receive(client, upload, &[], now, out)
            }
            Err(refusal) => refuse_and_close(out, &refusal),
        }
    }

    /// A fresh `upload-<time>-<id>.bin` (its partial file, created exclusively).
    fn create_tutorial_file(
        &mut self,
        size: u64,
        now: SystemTime,
    ) -> Result<(PartialKey, String, File), Refusal> {
        for _ in 0..1000 {
            self.next_upload_id += 1;
            let key = PartialKey {
                name: tutorial_name(now, self.next_upload_id),
                size,
                digest: None,
            };
            if self.busy.contains(&key.name)
                || self.inventory.has_complete(&key.name)
                || self.folder.stat(&key.name).map_err(io_words)?.is_some()
            {
                continue;
            }
            let partial = key.file_name();
            match self.folder.create_new(&partial) {
                Ok(file) => return Ok((key, partial, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_words(e)),
            }
        }
        Err("busy".into())
    }

    /// Writes one read's worth of body; completes the upload when the last byte is in. A write
    /// error ends the request with an error line and a close: the client is still sending body
    /// bytes, which cannot be told apart from requests. The partial file stays for a resume.
    fn receive(
        &mut self,
        client: ClientId,
        mut upload: Upload,
        body: &[u8],
        now: SystemTime,
        out: &mut Replies,
    ) -> Mode {
        if !body.is_empty() && !self.inventory.is_reserved(upload.serial) {
            // Silent past `--reservation-timeout`, the upload lost its reservation: asked again.
            if let Err(refusal) = self.check_quota(upload.remaining()) {
                self.abandon(upload);
                return refuse_and_close(out, &refusal);
            }
            self.inventory
                .reserve(upload.serial, upload.remaining(), now);
        }
        let (written, error) = disk::write_at(&upload.file, body, upload.written);
        upload.hasher.update(&body[..written]);
        upload.written += written as u64;
        self.inventory.consume(upload.serial, written as u64, now);
        self.inventory
            .grow_partial(&upload.key, written as u64, now);
        if !body.is_empty() {
            upload.last_byte = now;
        }
        if let Some(e) = error {
            warn!("files: writing {}: {e}", upload.partial);
            self.abandon(upload);
            return refuse_and_close(out, &describe_io_error(&e));
        }
        if upload.remaining() > 0 {
            return Mode::Receiving(Box::new(upload));
        }
        self.complete(client, upload, out)
    }

    /// All bytes are in: check the digest, then fsync and publish (on the disk worker).
    fn complete(&mut self, client: ClientId, upload: Upload, out: &mut Replies) -> Mode {
        let digest: [u8; 32] = upload.hasher.clone().finalize().into();
        if let Some(declared) = upload.key.digest
            && declared != digest
        {
            warn!(
                "files: {}: the bytes received do not match the declared sha256",
                upload.key.name
            );
            self.busy.remove(&upload.key.name);
            self.inventory.release(upload.serial);
            self.inventory.remove_partial(&upload.key);
            if let Err(e) = self.folder.remove(&upload.partial) {
                warn!("files: removing {}: {e}", upload.partial);
            }
            out.error_line("digest mismatch");
            return Mode::Lines;
        }
        self.inventory.release(upload.serial);
        match upload.file.try_clone() {
            Ok(file) => {
                let job = Job::Publish {
                    file,
                    partial: upload.partial.clone(),
                    name: upload.key.name.clone(),
                };
                self.park(client, Parked::Publish { upload, digest }, job)
            }
            Err(e) => {
                let tutorial = upload.tutorial;
                self.abandon(upload);
                if tutorial {
                    refuse_and_close(out, &io_words(e))
                } else {
                    out.error_line(&io_words(e));
                    Mode::Lines
                }
            }
        }
    }

    /// An upload that will not finish now: free its name and its reservation; keep a named
    /// upload's partial file (and its digest so far) for a resume, delete a tutorial upload's.
    fn abandon(&mut self, upload: Upload) {
        self.busy.remove(&upload.key.name);
        self.inventory.release(upload.serial);
        if upload.tutorial {
            self.inventory.remove_partial(&upload.key);
            let _ = self.folder.remove(&upload.partial);
        } else {
            self.inventory
                .remember_prefix(&upload.key, upload.written, upload.hasher);
        }
    }

    /// Gives `job` to the disk worker and parks the connection until it is done; without a
    /// worker, does it now (the outcome is then ready at once).
    fn park(&mut self, client: ClientId, work: Parked, job: Job) -> Mode {
        let serial = self.serial();
        let job = match &self.worker {
            Some(worker) => match worker.submit(serial, job) {
                Ok(()) => {
                    self.parked.insert(serial, (client, work));
                    return Mode::WaitingForDisk(serial);
                }
                Err(job) => job, // the thread is gone: do it here
            },
            None => job,
        };
        let outcome = worker::run(job, &self.folder);
        let resumed = self.settle(work, outcome);
        self.ready.insert(serial, resumed);
        Mode::WaitingForDisk(serial)
    }

    /// What a finished job means, whoever is still waiting for it: the inventory is brought up
    /// to date here (a published file is published, even if its uploader left meanwhile).
    fn settle(&mut self, work: Parked, outcome: Outcome) -> Resumed {
        let lines = |reply: String| Resumed {
            reply: reply.into_bytes(),
            close: false,
            mode: Mode::Lines,
        };
        match (work, outcome) {
            (Parked::Publish { upload, digest }, Outcome::Published(result)) => {
                self.settle_publish(upload, digest, result)
            }
            (Parked::Resume(upload), Outcome::Hashed(Ok(hasher))) => Resumed {
                reply: format!("OK {}\n", upload.written).into_bytes(),
                close: false,
                mode: Mode::Receiving(Box::new(Upload { hasher, ..upload })),
            },
            (Parked::Resume(upload), Outcome::Hashed(Err(e))) => {
                warn!("files: reading back {}: {e}", upload.partial);
                self.abandon(upload);
                lines(format!("error: {}\n", describe_io_error(&e)))
            }
            (
                Parked::Get {
                    name,
                    identity,
                    download,
                },
                Outcome::Hashed(Ok(hasher)),
            ) => {
                let digest: [u8; 32] = hasher.finalize().into();
                self.digests.insert(&name, identity, digest);
                let reply = format!("OK {} {}\n", download.end, hex(&digest)).into_bytes();
                let mode = match download.pos < download.end {
                    true => Mode::Sending(download),
                    false => Mode::Lines,
                };
                Resumed {
                    reply,
                    close: false,
                    mode,
                }
            }
            (Parked::Get { name, .. }, Outcome::Hashed(Err(e))) => {
                warn!("files: hashing {name}: {e}");
                lines(format!("error: {}\n", describe_io_error(&e)))
            }
            (work, outcome) => {
                // Each job kind has its one outcome kind: this cannot happen.
                warn!("files: a disk job {work:?} came back as {outcome:?}");
                if let Parked::Publish { upload, .. } | Parked::Resume(upload) = work {
                    self.abandon(upload);
                }
                lines("error: io error\n".into())
            }
        }
    }

    /// A publish is done: the name is taken (and on the disk) or the upload stays partial.
    fn settle_publish(
        &mut self,
        upload: Upload,
        digest: [u8; 32],
        result: io::Result<Identity>,
    ) -> Resumed {
        let tutorial = upload.tutorial;
        let finished = |reply: String| Resumed {
            reply: reply.into_bytes(),
            close: tutorial,
            mode: if tutorial { Mode::Done } else { Mode::Lines },
        };
        let renamed = match &result {
            Ok(_) => true,
            // The rename was done, only the folder's fsync failed: published, not yet durable.
            Err(_) => matches!(self.folder.stat(&upload.partial), Ok(None)),
        };
        if renamed {
            self.busy.remove(&upload.key.name);
            for other in self.inventory.publish(&upload.key) {
                debug!("files: {}: removing {}", upload.key.name, other.file_name());
                if let Err(e) = self.folder.remove(&other.file_name()) {
                    warn!("files: removing {}: {e}", other.file_name());
                }
            }
        }
        match result {
            Ok(identity) => {
                self.digests.insert(&upload.key.name, identity, digest);
                info!(
                    "files: stored {} ({} bytes)",
                    upload.key.name, upload.key.size
                );
                match tutorial {
                    true => finished(String::new()),
                    false => finished(format!("DONE {} {}\n", upload.key.size, hex(&digest))),
                }
            }
            Err(e) => {
                let refusal = match e.kind() {
                    io::ErrorKind::AlreadyExists => "exists".to_string(),
                    _ => describe_io_error(&e),
                };
                warn!("files: completing {}: {e}", upload.key.name);
                if !renamed {
                    self.abandon(upload);
                }
                match tutorial {
                    true => finished(String::new()),
                    false => finished(format!("error: {refusal}\n")),
                }
            }
        }
    }

    /// A parked connection goes on: its reply, then its next mode.
    fn apply(
        &mut self,
        client: ClientId,
        resumed: Resumed,
        now: SystemTime,
        out: &mut Replies,
    ) -> Mode {
        out.send_raw(&resumed.reply);
        if resumed.close {
            out.close();
        }
        match resumed.mode {
            Mode::Sending(download) => {
                out.refill_when_drained();
                Mode::Sending(download)
            }
            // A resumed upload held whole: nothing more comes, it completes now.
            Mode::Receiving(upload) if upload.remaining() == 0 => {
                self.receive(client, *upload, &[], now, out)
            }
            mode => mode,
        }
    }

    /// The client of a finished job left before hearing of it.
    fn orphan(&mut self, resumed: Resumed) {
        if let Mode::Receiving(upload) = resumed.mode {
            self.abandon(*upload);
        }
    }

    /// Partial files untouched for `--partial-ttl` are removed; checked at most every minute.
    fn sweep_partials(&mut self, now: SystemTime) {
        let Some(ttl) = self.partial_ttl else {
            return;
        };
        if self.next_sweep.is_some_and(|next| now < next) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY.min(ttl));
        let busy = &self.busy;
        let stale = self
            .inventory
            .stale_partials(now, ttl, |name| busy.contains(name));
        for key in stale {
            let partial = key.file_name();
            info!("files: removing {partial}: untouched for --partial-ttl");
            match self.folder.remove(&partial) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!("files: removing {partial}: {e}");
                    continue;
                }
            }
            self.inventory.remove_partial(&key);
        }
    }

    /// `GET <name> [offset]`: `OK <size> <sha256>`, then the bytes, chunk by chunk on drain.
    fn begin_get(
        &mut self,
        client: ClientId,
        name: &str,
        offset: u64,
        out: &mut Replies,
    ) -> Result<Mode, Refusal> {
        let (file, entry) = match self.folder.open_for_reading(name) {
            Ok(opened) => opened,
            // Missing, a link, a file with other names, not a regular file: all "not found".
            Err(e) if e.kind() == io::ErrorKind::NotFound || is_refused_kind(&e) => {
                return Err("not found".into());
            }
            Err(e) => return Err(io_words(e)),
        };
        if offset > entry.size {
            return Err(format!("bad offset (size {})", entry.size));
        }
        let download = Download {
            file,
            pos: offset,
            end: entry.size,
        };
        let digest = match self.digests.get(name, &entry.identity) {
            Some(digest) => digest,
            None if entry.size <= HASH_ON_LOOP_BYTES => {
                let hasher = worker::hash_now(&download.file, entry.size).map_err(io_words)?;
                let digest: [u8; 32] = hasher.finalize().into();
                self.digests.insert(name, entry.identity, digest);
                digest
            }
            None => {
                let job = Job::Hash {
                    file: download.file.try_clone().map_err(io_words)?,
                    hasher: Sha256::new(),
                    from: 0,
                    to: entry.size,
                };
                let work = Parked::Get {
                    name: name.to_string(),
                    identity: entry.identity,
                    download,
                };
                return Ok(self.park(client, work, job));
            }
        };
        out.send_raw(format!("OK {} {}\n", entry.size, hex(&digest)).as_bytes());
        if offset == entry.size {
            return Ok(Mode::Lines);
        }
        out.refill_when_drained(); // the first chunk goes once the `OK` line is out
        Ok(Mode::Sending(download))
    }

    /// One batch of `LIST`: `<size> <name>` per complete file after `after`, by name; `END` after
    /// the last. Returns `Listing` while more remain (the next batch comes on drain).
    fn list_batch(&self, after: Option<&str>, out: &mut Replies) -> Mode {
        let batch = self.inventory.list_after(after, LIST_BATCH);
        for (name, size) in &batch {
            out.send_raw(format!("{size} {name}\n").as_bytes());
        }
        match batch.last() {
            Some((last, _)) if batch.len() == LIST_BATCH => {
                out.refill_when_drained();
                Mode::Listing(last.to_string())
            }
            _ => {
                out.send_raw(b"END\n");
                Mode::Lines
            }
        }
    }

    /// The next chunk of a download.
    fn send_chunk(&mut self, mut download: Download, out: &mut Replies) -> Mode {
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
                return Mode::Done;
            }
        }
        if download.pos < download.end {
            out.refill_when_drained();
            return Mode::Sending(download);
        }
        Mode::Lines
    }
}

/// Keeps `input` until the connection is no longer busy, and stops reading it meanwhile. More
/// than [`MAX_HELD_BYTES`] is refused.
fn hold(session: &mut Conversation, input: &[u8], out: &mut Replies) {
    if session.held.len() + input.len() > MAX_HELD_BYTES {
        session.held.clear();
        session.mode = refuse_and_close(out, "too many requests ahead");
        return;
    }
    session.held.extend_from_slice(input);
    out.pause_input();
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

    fn on_connect(&mut self, client: ClientId, _now: SystemTime, _: &mut Replies) -> Conversation {
        Conversation {
            client,
            mode: Mode::Start,
            line: Vec::new(),
            held: Vec::new(),
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
        conversation.mode = match std::mem::replace(&mut conversation.mode, Mode::Done) {
            Mode::Sending(download) => self.send_chunk(download, out),
            Mode::Listing(after) => self.list_batch(Some(&after), out),
            mode => mode,
        };
        // `now` only names tutorial uploads, which cannot start here.
        self.release_held(conversation, SystemTime::now(), out);
    }

    /// A client that half-closes right after `GET` (`nc -N`) is still owed the whole file.
    fn on_end_of_input(&mut self, conversation: &mut Conversation, out: &mut Replies) {
        if matches!(conversation.mode, Mode::Sending(_) | Mode::Listing(_)) {
            out.refill_when_drained();
        }
    }

    /// Starts the disk worker: from now on fsyncs, publishing and large hashes run on it.
    fn attach_waker(&mut self, waker: Arc<mio::Waker>) {
        match DiskWorker::start(Arc::clone(&self.folder), waker) {
            Ok(worker) => self.worker = Some(worker),
            Err(e) => warn!("files: no disk worker thread ({e}): disk work stays on the loop"),
        }
    }

    fn on_woken(&mut self, ready: &mut Vec<ClientId>) {
        self.woken(ready);
    }

    fn on_resume(&mut self, conversation: &mut Conversation, now: SystemTime, out: &mut Replies) {
        self.resume(conversation, now, out);
    }

    fn on_disconnect(&mut self, conversation: Conversation, reason: CloseReason, _: &mut Replies) {
        match conversation.mode {
            Mode::Receiving(upload) => {
                debug!(
                    "files: {} interrupted at byte {} of {} ({reason})",
                    upload.key.name, upload.written, upload.key.size
                );
                self.abandon(*upload);
            }
            Mode::WaitingForDisk(serial) => {
                if self.parked.contains_key(&serial) {
                    self.orphans.insert(serial);
                } else if let Some(resumed) = self.ready.remove(&serial) {
                    self.orphan(resumed);
                }
            }
            _ => {}
        }
    }
}

impl Files {
    /// The disk worker reported: the clients whose jobs finished, to be resumed
    /// (`Protocol::on_resume`). Outcomes of clients that left are settled and dropped here.
    fn woken(&mut self, ready: &mut Vec<ClientId>) {
        let Some(worker) = &self.worker else {
            return;
        };
        for (serial, outcome) in worker.finished() {
            let Some((client, work)) = self.parked.remove(&serial) else {
                continue;
            };
            let resumed = self.settle(work, outcome);
            if self.orphans.remove(&serial) {
                self.orphan(resumed);
            } else {
                self.ready.insert(serial, resumed);
                ready.push(client);
            }
        }
    }

    /// A parked connection's job is done: its reply, then what it sent meanwhile.
    fn resume(&mut self, session: &mut Conversation, now: SystemTime, out: &mut Replies) {
        self.feed(session, &[], now, out);
        self.release_held(session, now, out);
        if matches!(session.mode, Mode::Sending(_) | Mode::Listing(_)) {
            // Sending or listing now: the reactor makes the refill asked for here at once, and
            // the client's input may flow again; what it sends meanwhile is held by the session,
            // as in any busy mode.
            out.resume_input();
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
        assert_eq!(service.protocol().inventory.reserved(), 60);
        let second = service.connect();
        service.send(second, b"PUT two 60\n");
        assert_eq!(
            service.take_output(second),
            b"error: over quota (40 bytes free)\n"
        );
        service.send(first, &[b'x'; 20]);
        assert_eq!(
            service.protocol().inventory.reserved(),
            40,
            "written bytes leave the reservation"
        );
        service.disconnect(first, CloseReason::Reset);
        assert_eq!(
            service.protocol().inventory.reserved(),
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
    fn a_list_is_sent_a_batch_per_drained_queue() {
        let folder = Folder::new();
        for i in 0..LIST_BATCH + 10 {
            std::fs::write(folder.path().join(format!("f{i:04}")), b"x").unwrap();
        }
        let mut service = files(&folder, 0);
        let client = service.connect();
        service.send(client, b"LIST\n");
        let first = service.take_output(client);
        assert_eq!(first.iter().filter(|&&b| b == b'\n').count(), LIST_BATCH);
        assert!(first.starts_with(b"1 f0000\n"));
        assert!(service.wants_refill(client));
        assert!(service.drain(client));
        let rest = service.take_output(client);
        assert!(rest.starts_with(format!("1 f{LIST_BATCH:04}\n").as_bytes()));
        assert!(rest.ends_with(b"1 f0265\nEND\n"));
        assert!(!service.wants_refill(client));
    }

    #[test]
    fn pipelined_lists_are_answered_one_at_a_time_as_the_queue_drains() {
        let folder = Folder::new();
        for i in 0..LIST_BATCH * 2 {
            std::fs::write(folder.path().join(format!("f{i:04}")), b"x").unwrap();
        }
        let mut service = files(&folder, 0);
        let client = service.connect();
        // 32 KiB of `LIST` lines in one read: 6,553 requests.
        let flood = b"LIST\n".repeat(32 * 1024 / 5);
        service.send(client, &flood);
        let first = service.take_output(client);
        assert_eq!(
            first.iter().filter(|&&b| b == b'\n').count(),
            LIST_BATCH,
            "one batch, not 6,553 listings"
        );
        let mut drains = 0;
        let mut ends = 0;
        while service.drain(client) && drains < 10 {
            drains += 1;
            let out = service.take_output(client);
            assert!(out.len() <= (LIST_BATCH + 1) * 16, "{}", out.len());
            ends += out.windows(4).filter(|w| w == b"END\n").count();
        }
        assert_eq!((drains, ends), (10, 5), "one batch per drain, in order");
        assert!(!service.is_closing(client));
    }

    fn sha256_of(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    /// Waits for the disk worker to report, and resumes its clients.
    fn wake(service: &mut Harness<Files>) {
        assert!(
            service.wait_for_wake(std::time::Duration::from_secs(20)),
            "the disk worker rang"
        );
    }

    #[test]
    fn a_publish_waits_for_the_disk_worker_and_so_does_the_next_request() {
        let folder = Folder::new();
        let mut service = files(&folder, 0).with_waker();
        let client = service.connect();
        let put = format!("PUT a 5 {}\nhelloLIST\n", sha256_hex(b"hello"));
        service.send(client, put.as_bytes());
        assert_eq!(
            service.take_output(client),
            b"OK 0\n",
            "no DONE before the fsync"
        );
        assert!(service.is_paused(client));
        service.send(client, b"LIST\n"); // waits in the harness, as in the reactor
        wake(&mut service);
        let done =
            format!("DONE 5 {}\n1 a\nEND\n1 a\nEND\n", sha256_hex(b"hello")).replace("1 a", "5 a");
        assert_eq!(service.take_output(client), done.as_bytes());
        assert!(!service.is_paused(client));
        assert_eq!(std::fs::read(folder.path().join("a")).unwrap(), b"hello");
    }

    #[test]
    fn a_client_gone_during_its_publish_still_publishes_and_its_number_is_not_confused() {
        let folder = Folder::new();
        let mut service = files(&folder, 0).with_waker();
        let first = service.connect();
        service.send(first, b"PUT gone 3\nabc");
        assert_eq!(service.take_output(first), b"OK 0\n");
        service.disconnect(first, CloseReason::Reset);
        let second = service.connect();
        assert_eq!(second, first, "the number is reused");
        wake(&mut service);
        assert!(
            service.take_output(second).is_empty(),
            "nothing of the other's job"
        );
        service.send(second, b"PUT gone 3\n");
        assert_eq!(service.take_output(second), b"error: exists\n");
        assert_eq!(std::fs::read(folder.path().join("gone")).unwrap(), b"abc");
    }

    #[test]
    fn a_large_partial_file_is_hashed_off_the_loop_on_resume_after_a_restart() {
        let folder = Folder::new();
        let body: Vec<u8> = (0..600_000u32).map(|i| (i * 7) as u8).collect();
        let put = format!("PUT big 600000 {}\n", hex(&sha256_of(&body)));
        {
            let mut before = files(&folder, 0);
            let client = before.connect();
            before.send(client, put.as_bytes());
            before.send(client, &body[..400_000]);
            before.disconnect(client, CloseReason::Reset);
        } // the server restarts
        let mut service = files(&folder, 0).with_waker();
        let client = service.connect();
        service.send(client, put.as_bytes());
        assert!(
            service.take_output(client).is_empty(),
            "hashing 400000 bytes"
        );
        assert!(service.is_paused(client));
        wake(&mut service);
        assert_eq!(service.take_output(client), b"OK 400000\n");
        service.send(client, &body[400_000..]);
        wake(&mut service);
        let done = format!("DONE 600000 {}\n", hex(&sha256_of(&body)));
        assert_eq!(service.take_output(client), done.as_bytes());
        // The first GET of a large file it did not receive is hashed off the loop too.
        std::fs::write(folder.path().join("theirs"), &body).unwrap();
        service.send(client, b"GET theirs 599999\n");
        assert!(service.take_output(client).is_empty());
        wake(&mut service);
        let header = format!("OK 600000 {}\n", hex(&sha256_of(&body)));
        assert_eq!(service.take_output(client), header.as_bytes());
        assert!(service.drain(client));
        assert_eq!(service.take_output(client), &body[599_999..]);
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
