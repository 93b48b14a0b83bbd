//! `echoloop put` and `echoloop get`: the clients of `-p files`, which resume by themselves.
//!
//! A transfer over a network can be cut anywhere: the server restarts, a cable is pulled, the laptop
//! sleeps. Starting again from byte 0 wastes what already crossed; so, like `curl -C -` against FTP's
//! `REST` or tus's `Upload-Offset`, each *attempt* first asks where to start:
//!
//! - `put` hashes the local file first and sends `PUT <name> <size> <sha256>`; the server answers
//!   `OK <offset>`, the bytes it already holds of an earlier attempt *of this very file* (same
//!   name, size and digest, even across a server restart), and we send the rest. The server
//!   checks the digest before it publishes the file; `DONE <size> <sha256>` ends it.
//! - `get` looks at how much of the local file exists, sends `GET <name> <that many>`, and appends
//!   what comes after `OK <size> <sha256>`.
//!
//! A dropped connection (or `error: busy`, which a reconnect can meet while the server has not yet
//! seen the old connection end) is followed by a new attempt after a growing pause, up to
//! `--retries` times. At the end both compare the sha256 of the whole file with the server's. These
//! are plain blocking clients, one socket, no event loop: there is only one conversation to have.
//!
//! Over TLS (`tls:HOST:PORT`, trust from `--tls-ca` or `--insecure` as for every client, see
//! `clients/tls.rs`) the handshake is done when the connection opens, so a refused certificate
//! fails the transfer at once, with rustls' reason: reconnecting would not change the
//! certificate. `put` reads replies on a thread of its own while it sends the body, on a clone
//! of the socket; a TLS session cannot be cloned like a socket (one state, two directions), so
//! both handles share one `ClientConnection` behind a mutex (`TlsConn`). The reading handle
//! takes it only to hand rustls bytes or take plaintext out, never while it waits for the
//! network; the writing one holds it while the kernel takes its records (a blocking write, as a
//! plain client's is), so a reply that comes meanwhile is read when that write returns.
//! A failure is a [`TransferError`], and its variant says whose it is (`cli/exit.rs` turns it into
//! the exit code): a bad name, a FILE that cannot be read (a directory, say) or an output that
//! cannot be written is the command line's mistake, found before any connection; the server's
//! `error:` line, a digest that does not match and retries that ran out are the run's.
//!
//! Next: `cli/mod.rs`, the command line, and `main.rs`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::interactive::describe;
use super::tls::{TlsOptions, Trust};
use crate::net::address::Address;
use crate::protocol::files::request::{MAX_LINE_BYTES, hex, is_valid_name, parse_decimal};

/// Bytes sent or received per write or read.
const CHUNK_BYTES: usize = 64 * 1024;
/// How long a silent server is waited for before the attempt counts as dropped.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// The first pause before reconnecting; it doubles each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// Why a transfer did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The command line asks for something impossible: a bad name, a FILE that cannot be read,
    /// an output that cannot be written.
    #[error("{0}")]
    Usage(String),
    /// The server answered `error: <what>`.
    #[error("server: error: {0}")]
    Server(String),
    /// The file arrived but its sha256 is not the server's.
    #[error("sha256 mismatch: server {server}, local {local}")]
    Mismatch {
        /// The server's digest.
        server: String,
        /// Ours.
        local: String,
    },
    /// Reading or writing the local file failed after it was opened.
    #[error("{0}")]
    Local(io::Error),
    /// TLS failed: a certificate refused, a handshake broken off by the server's rules.
    #[error("TLS: {0}")]
    Tls(String),
    /// Every attempt was cut short.
    #[error("gave up after {attempts} attempt{}: {last}", if *attempts == 1 { "" } else { "s" })]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// What ended the last one.
        last: String,
    },
}

/// How one attempt ended, when it did not succeed.
enum Attempt {
    /// The connection dropped (or the name was busy): try again.
    Retry(String),
    /// Trying again will not help.
    Fail(TransferError),
}

impl From<io::Error> for Attempt {
    /// A socket error: the connection is gone, a new one may do better. A TLS error is not: the
    /// same certificate would be refused again.
    fn from(e: io::Error) -> Attempt {
        #[cfg(feature = "tls")]
        if let Some(tls) = super::tls::tls_error(&e) {
            return Attempt::Fail(TransferError::Tls(super::tls::with_certificate_hint(
                tls.to_string(),
            )));
        }
        Attempt::Retry(describe(&e))
    }
}

/// Checks the TLS flags against the address and reads `--tls-ca`: usage errors, before any
/// connection.
fn trust(addr: &Address, options: &TlsOptions) -> Result<Trust, TransferError> {
    options.trust(addr).map_err(TransferError::Usage)
}

/// Runs `attempt` until it succeeds, fails for good, or `retries` reconnections are used up.
fn with_retries<T>(
    retries: u32,
    mut attempt: impl FnMut() -> Result<T, Attempt>,
) -> Result<T, TransferError> {
    let mut pause = FIRST_BACKOFF;
    let mut made = 0;
    loop {
        made += 1;
        match attempt() {
            Ok(done) => return Ok(done),
            Err(Attempt::Fail(e)) => return Err(e),
            Err(Attempt::Retry(why)) if made > retries => {
                return Err(TransferError::GaveUp {
                    attempts: made,
                    last: why,
                });
            }
            Err(Attempt::Retry(why)) => {
                eprintln!("echoloop: {why}; reconnecting in {pause:?}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A connection to the server, TCP, Unix, or TLS over TCP.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    #[cfg(feature = "tls")]
    Tls(TlsConn),
}

impl Conn {
    fn open(addr: &Address, trust: &Trust) -> io::Result<Conn> {
        let conn = match addr {
            Address::Tcp(addr) => {
                let stream = TcpStream::connect(addr)?;
                stream.set_nodelay(true)?;
                Conn::Tcp(stream)
            }
            Address::Unix(path) => Conn::Unix(UnixStream::connect(path)?),
            Address::Tls { addr, host } => open_tls(addr, host, trust)?,
        };
        match &conn {
            Conn::Tcp(s) => s.set_read_timeout(Some(REPLY_TIMEOUT))?,
            Conn::Unix(s) => s.set_read_timeout(Some(REPLY_TIMEOUT))?,
            #[cfg(feature = "tls")]
            Conn::Tls(_) => {} // set before its handshake
        }
        Ok(conn)
    }

    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Conn::Tls(s.try_clone()?),
        })
    }

    /// Ends both directions: a thread blocked reading this socket wakes up.
    fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.shutdown(),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "tls")]
fn open_tls(addr: &std::net::SocketAddr, host: &str, trust: &Trust) -> io::Result<Conn> {
    let config = trust
        .clone()
        .ok_or_else(|| io::Error::other("a tls: address without a TLS config"))?;
    TlsConn::connect(addr, host, config).map(Conn::Tls)
}

#[cfg(not(feature = "tls"))]
fn open_tls(_: &std::net::SocketAddr, _: &str, _: &Trust) -> io::Result<Conn> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        super::tls::NO_TLS_BUILD,
    ))
}

/// One handle on a TLS connection over a blocking socket; [`TlsConn::try_clone`] makes another
/// on the same session, for the thread that reads replies while `put` sends.
#[cfg(feature = "tls")]
struct TlsConn {
    tls: std::sync::Arc<std::sync::Mutex<rustls::ClientConnection>>,
    socket: TcpStream,
    /// Bytes this handle read from the socket that rustls has not taken yet.
    pending: Vec<u8>,
    taken: usize,
}

#[cfg(feature = "tls")]
impl TlsConn {
    /// Connects and does the whole handshake (the socket's timeouts bound it).
    fn connect(
        addr: &std::net::SocketAddr,
        host: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> io::Result<TlsConn> {
        let mut socket = TcpStream::connect(addr)?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(REPLY_TIMEOUT))?;
        socket.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let mut tls = rustls::ClientConnection::new(config, super::tls::server_name(host)?)
            .map_err(io::Error::other)?;
        while tls.is_handshaking() {
            // A TLS error comes back as `InvalidData` with rustls' error inside (the alert to
            // the server is sent first).
            if tls.complete_io(&mut socket)? == (0, 0) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the TLS handshake",
                ));
            }
        }
        Ok(TlsConn {
            tls: std::sync::Arc::new(std::sync::Mutex::new(tls)),
            socket,
            pending: Vec::new(),
            taken: 0,
        })
    }

    fn try_clone(&self) -> io::Result<TlsConn> {
        Ok(TlsConn {
            tls: std::sync::Arc::clone(&self.tls),
            socket: self.socket.try_clone()?,
            pending: Vec::new(),
            taken: 0,
        })
    }

    fn session(&self) -> std::sync::MutexGuard<'_, rustls::ClientConnection> {
        // A thread that panicked holding it left nothing half-done that matters here.
        self.tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// close_notify if the session is free (best effort), then both directions of the socket.
    fn shutdown(&self) -> io::Result<()> {
        if let Ok(mut tls) = self.tls.try_lock() {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut &self.socket);
        }
        self.socket.shutdown(Shutdown::Both)
    }
}

/// Decrypts what rustls was given and sends what it answers; a TLS error becomes `InvalidData`
/// with rustls' error inside (after the alert is sent).
#[cfg(feature = "tls")]
fn process(tls: &mut rustls::ClientConnection, mut socket: &TcpStream) -> io::Result<()> {
    if let Err(e) = tls.process_new_packets() {
        let _ = tls.write_tls(&mut socket);
        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
    }
    while tls.wants_write() {
        tls.write_tls(&mut socket)?;
    }
    Ok(())
}

#[cfg(feature = "tls")]
impl Read for TlsConn {
    /// Plaintext rustls holds, else records from the socket (read without the lock held).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut guard = self
                    .tls
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let tls = &mut *guard;
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n), // 0: close_notify
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e), // UnexpectedEof: closed without close_notify
                }
                if self.taken < self.pending.len() {
                    let mut rest = &self.pending[self.taken..];
                    let before = rest.len();
                    tls.read_tls(&mut rest)?;
                    self.taken += before - rest.len();
                    process(tls, &self.socket)?;
                    continue;
                }
            }
            self.pending.resize(CHUNK_BYTES, 0);
            self.taken = 0;
            let n = match self.socket.read(&mut self.pending) {
                Ok(n) => n,
                Err(e) => {
                    // Nothing was read: a retry (EINTR after a stop and continue) must not
                    // feed rustls the records it already had, or the zeros after them.
                    self.pending.clear();
                    return Err(e);
                }
            };
            self.pending.truncate(n);
            if n == 0 {
                let mut tls = self.session();
                tls.read_tls(&mut &[][..])?; // the end of the stream, noted
                process(&mut tls, &self.socket)?;
            }
        }
    }
}

#[cfg(feature = "tls")]
impl Write for TlsConn {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut tls = self.session();
        let taken = tls.writer().write(bytes)?;
        while tls.wants_write() {
            match tls.write_tls(&mut &self.socket) {
                Ok(_) => {}
                // rustls keeps the records the kernel did not take: write them again, but
                // never report `bytes` as not taken (the caller would encrypt them twice).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One reply line, without its `\n`. End of input before it counts as a dropped connection.
fn read_reply(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    reader
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// What a reply line says: its words after `expected` (`OK`, `DONE`), or how the attempt ends.
fn expect_reply<'a>(line: &'a str, expected: &str) -> Result<Vec<&'a str>, Attempt> {
    if let Some(what) = line.strip_prefix("error: ") {
        return Err(match what {
            "busy" => Attempt::Retry("server: error: busy".into()),
            _ => Attempt::Fail(TransferError::Server(what.to_string())),
        });
    }
    let mut words = line.split(' ');
    if words.next() != Some(expected) {
        return Err(Attempt::Fail(TransferError::Server(format!(
            "unexpected reply {line:?}"
        ))));
    }
    Ok(words.collect())
}

fn number(word: Option<&&str>) -> Result<u64, Attempt> {
    word.and_then(|w| parse_decimal(w.as_bytes()))
        .ok_or_else(|| Attempt::Fail(TransferError::Server("a reply without a number".into())))
}

/// A progress bar on a terminal; nothing when stderr is piped.
fn progress(len: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// The sha256 of a whole local file, as hex.
fn sha256_of(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK_BYTES];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// What `echoloop put` is asked to do.
#[derive(Debug, Clone)]
pub struct PutConfig {
    /// The server.
    pub addr: Address,
    /// The local file to upload.
    pub file: PathBuf,
    /// The name on the server; `None`: the file's own name.
    pub name: Option<String>,
    /// Reconnects after a dropped connection (or `error: busy`).
    pub retries: u32,
    /// `tls:` addresses: whom to trust (`--tls-ca`, `--insecure`).
    pub tls: TlsOptions,
}

/// What `echoloop get` is asked to do.
#[derive(Debug, Clone)]
pub struct GetConfig {
    /// The server.
    pub addr: Address,
    /// The file's name on the server.
    pub name: String,
    /// Where to write it; `None`: `name` in the current folder.
    pub output: Option<PathBuf>,
    /// Reconnects after a dropped connection.
    pub retries: u32,
    /// `tls:` addresses: whom to trust (`--tls-ca`, `--insecure`).
    pub tls: TlsOptions,
}

/// `echoloop put ADDR FILE [--name NAME]`.
pub fn put(args: &PutConfig) -> Result<(), TransferError> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string(),
    };
    if !is_valid_name(name.as_bytes()) {
        return Err(TransferError::Usage(format!(
            "bad name {name:?}: 1-128 of A-Z a-z 0-9 . _ -, not starting with . (use --name)"
        )));
    }
    let trust = trust(&args.addr, &args.tls)?;
    let unreadable =
        |why: String| TransferError::Usage(format!("cannot read {}: {why}", args.file.display()));
    let mut file = File::open(&args.file).map_err(|e| unreadable(describe(&e)))?;
    let metadata = file.metadata().map_err(|e| unreadable(describe(&e)))?;
    // open(2) accepts a directory for reading; only the first read says EISDIR.
    if metadata.is_dir() {
        return Err(unreadable("is a directory".into()));
    }
    let size = metadata.len();
    let local = sha256_of(&args.file).map_err(TransferError::Local)?;
    let bar = progress(size);
    let result = with_retries(args.retries, || {
        put_attempt(&args.addr, &trust, &name, size, &local, &mut file, &bar)
    });
    bar.finish_and_clear();
    let server = match result {
        // Stored already (say, by a run killed after the last byte): the same file is success.
        Err(TransferError::Server(what)) if what == "exists" => {
            match stored_digest(&args.addr, &trust, &name, size) {
                Some(digest) if digest == local => {
                    eprintln!("echoloop: {name} is stored already ({size} bytes, sha256 {local})");
                    return Ok(());
                }
                _ => return Err(TransferError::Server(what)),
            }
        }
        result => result?,
    };
    if server != local {
        return Err(TransferError::Mismatch { server, local });
    }
    eprintln!("echoloop: stored {name} ({size} bytes, sha256 {local})");
    Ok(())
}

/// The server's digest of `name` if it is a file of `size` bytes (asked with `GET name size`,
/// which sends no body).
fn stored_digest(addr: &Address, trust: &Trust, name: &str, size: u64) -> Option<String> {
    let mut conn = Conn::open(addr, trust).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    conn.write_all(format!("GET {name} {size}\nQUIT\n").as_bytes())
        .ok()?;
    let line = read_reply(&mut reader).ok()?;
    let words = expect_reply(&line, "OK").ok()?;
    let stored = number(words.first()).ok()?;
    (stored == size).then(|| words.get(1).map(|d| d.to_string()))?
}

/// One connection's worth of upload; returns the server's digest.
fn put_attempt(
    addr: &Address,
    trust: &Trust,
    name: &str,
    size: u64,
    digest: &str,
    file: &mut File,
    bar: &ProgressBar,
) -> Result<String, Attempt> {
    let mut conn = Conn::open(addr, trust)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    conn.write_all(format!("PUT {name} {size} {digest}\n").as_bytes())?;
    let line = read_reply(&mut reader)?;
    let words = expect_reply(&line, "OK")?;
    let offset = number(words.first())?;
    if offset > size {
        return Err(Attempt::Fail(TransferError::Server(format!(
            "offset {offset} past the end"
        ))));
    }
    if offset > 0 {
        eprintln!("echoloop: resuming {name} at byte {offset} of {size}");
    }
    bar.set_position(offset);
    // Replies are read on their own thread, so an error line mid-body is seen while we send.
    let (replies_tx, replies) = mpsc::channel();
    std::thread::spawn(move || {
        loop {
            let reply = read_reply(&mut reader);
            let stop = reply.is_err();
            if replies_tx.send(reply).is_err() || stop {
                return;
            }
        }
    });
    let sent = send_body(&mut conn, file, offset, size, bar, &replies);
    let reply = match sent {
        Ok(()) => replies.recv().unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection lost",
            ))
        }),
        // The socket failed: the server may have said why before it closed.
        Err(e) => replies
            .recv_timeout(Duration::from_millis(200))
            .unwrap_or(Err(e)),
    };
    conn.shutdown(); // ends the reply thread
    let line = reply?;
    let words = expect_reply(&line, "DONE")?;
    words
        .get(1)
        .map(|digest| digest.to_string())
        .ok_or_else(|| Attempt::Fail(TransferError::Server(format!("bad reply {line:?}"))))
}

/// Sends bytes `offset..size` of `file`; stops early if a reply (an error line) comes first.
fn send_body(
    conn: &mut Conn,
    file: &mut File,
    offset: u64,
    size: u64,
    bar: &ProgressBar,
    replies: &mpsc::Receiver<io::Result<String>>,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; CHUNK_BYTES];
    let mut pos = offset;
    while pos < size {
        if let Ok(reply) = replies.try_recv() {
            // Nothing is due before the body ends: this is an error line (or the end).
            let line = reply?;
            return Err(io::Error::other(format!("early reply: {line}")));
        }
        let want = usize::try_from(size - pos).map_or(CHUNK_BYTES, |left| left.min(CHUNK_BYTES));
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the local file shrank",
            ));
        }
        conn.write_all(&buf[..n])?;
        pos += n as u64;
        bar.set_position(pos);
    }
    Ok(())
}

/// `echoloop get ADDR NAME [-o FILE]`.
pub fn get(args: &GetConfig) -> Result<(), TransferError> {
    if !is_valid_name(args.name.as_bytes()) {
        return Err(TransferError::Usage(format!(
            "bad name {:?}: 1-128 of A-Z a-z 0-9 . _ -, not starting with .",
            args.name
        )));
    }
    let trust = trust(&args.addr, &args.tls)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| Path::new(&args.name).to_path_buf());
    // Opened (or created) before any connection: an output that cannot be written is the
    // command line's mistake. A partial file from an earlier run is appended to.
    let existed = output.exists();
    let mut file = File::options()
        .create(true)
        .append(true)
        .open(&output)
        .map_err(|e| {
            TransferError::Usage(format!(
                "cannot write {}: {}",
                output.display(),
                describe(&e)
            ))
        })?;
    let bar = progress(0);
    let result = with_retries(args.retries, || {
        get_attempt(&args.addr, &trust, &args.name, &mut file, &bar)
    });
    bar.finish_and_clear();
    let (size, server) = match result {
        Ok(done) => done,
        Err(e) => {
            // A file this run created and never wrote to is no partial download: leave no trace
            // (a partial one stays, for the next run to resume).
            if !existed && file.metadata().is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(&output);
            }
            return Err(e);
        }
    };
    let local = sha256_of(&output).map_err(TransferError::Local)?;
    if server != local {
        return Err(TransferError::Mismatch { server, local });
    }
    eprintln!(
        "echoloop: fetched {} ({size} bytes, sha256 {local})",
        output.display()
    );
    Ok(())
}

/// One connection's worth of download into `file` (opened for appending), continuing what it
/// holds already. Returns the file's size and the server's digest.
fn get_attempt(
    addr: &Address,
    trust: &Trust,
    name: &str,
    file: &mut File,
    bar: &ProgressBar,
) -> Result<(u64, String), Attempt> {
    let local_error = |e: io::Error| Attempt::Fail(TransferError::Local(e));
    let offset = file.metadata().map_err(local_error)?.len();
    let mut conn = Conn::open(addr, trust)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    conn.write_all(format!("GET {name} {offset}\n").as_bytes())?;
    let line = read_reply(&mut reader)?;
    let words = expect_reply(&line, "OK")?;
    let size = number(words.first())?;
    let digest = words
        .get(1)
        .map(|d| d.to_string())
        .ok_or_else(|| Attempt::Fail(TransferError::Server(format!("bad reply {line:?}"))))?;
    if offset > 0 && offset < size {
        eprintln!("echoloop: resuming {name} at byte {offset} of {size}");
    }
    bar.set_length(size);
    bar.set_position(offset);
    let mut pos = offset;
    let mut buf = vec![0; CHUNK_BYTES];
    while pos < size {
        let want = usize::try_from(size - pos).map_or(CHUNK_BYTES, |left| left.min(CHUNK_BYTES));
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(Attempt::Retry(format!(
                "connection closed at byte {pos} of {size}"
            )));
        }
        file.write_all(&buf[..n]).map_err(local_error)?;
        pos += n as u64;
        bar.set_position(pos);
    }
    let _ = conn.write_all(b"QUIT\n");
    conn.shutdown();
    Ok((size, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_whole_and_error_lines_decide_the_attempt() {
        let mut input = &b"OK 12\nDONE 3 abc\npartial"[..];
        assert_eq!(read_reply(&mut input).unwrap(), "OK 12");
        assert_eq!(read_reply(&mut input).unwrap(), "DONE 3 abc");
        assert!(read_reply(&mut input).is_err());
        assert_eq!(expect_reply("OK 12", "OK").ok(), Some(vec!["12"]));
        assert!(matches!(
            expect_reply("error: busy", "OK"),
            Err(Attempt::Retry(_))
        ));
        assert!(matches!(
            expect_reply("error: exists", "OK"),
            Err(Attempt::Fail(TransferError::Server(what))) if what == "exists"
        ));
        assert!(matches!(expect_reply("HELLO", "OK"), Err(Attempt::Fail(_))));
    }

    #[test]
    fn retries_stop_after_the_limit_or_at_a_real_failure() {
        let mut calls = 0;
        let result: Result<(), _> = with_retries(1, || {
            calls += 1;
            Err(Attempt::Retry("dropped".into()))
        });
        assert!(matches!(
            result,
            Err(TransferError::GaveUp { attempts: 2, .. })
        ));
        assert_eq!(calls, 2);
        let mut calls = 0;
        let result: Result<(), _> = with_retries(5, || {
            calls += 1;
            Err(Attempt::Fail(TransferError::Server("exists".into())))
        });
        assert!(matches!(result, Err(TransferError::Server(_))));
        assert_eq!(calls, 1);
    }
}
