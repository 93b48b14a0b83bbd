//! The tests' TLS client: rustls' sans-IO [`ClientConnection`] over a non-blocking socket,
//! driven a turn at a time, so that a test decides which bytes go out in which write (half a
//! ClientHello, 500 records in one segment, a PROXY header glued to the ClientHello) and sees
//! how the server ended the connection: close_notify, a FIN, or an alert.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::common::PATIENCE;

/// A TLS client over a non-blocking socket, driven a turn at a time ([`TlsClient::turn`]) until
/// what the test waits for has happened, or the connection ended, or [`PATIENCE`] ran out.
pub(super) struct TlsClient {
    pub(super) conn: ClientConnection,
    pub(super) sock: TcpStream,
    /// Plaintext rustls has not taken yet.
    pub(super) outgoing: Vec<u8>,
    /// Plaintext received that the test has not taken yet.
    pub(super) incoming: Vec<u8>,
    /// Send close_notify once `outgoing` is empty.
    pub(super) closing: bool,
    pub(super) close_sent: bool,
    /// The server's close_notify has come.
    pub(super) close_notify: bool,
    /// The server's FIN (or a reset) has come.
    pub(super) eof: bool,
    /// Bytes that came after the server's close_notify (there should be none).
    pub(super) after_close_notify: usize,
    /// A write failed (the server is gone): nothing more is sent.
    pub(super) write_failed: bool,
    /// Why TLS failed: an alert from the server, bytes that were not TLS.
    pub(super) error: Option<String>,
}

impl TlsClient {
    /// Connects and sends the ClientHello.
    pub(super) fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsClient {
        TlsClient::connect_after(addr, config, &[])
    }

    /// Connects and sends `preamble` and the ClientHello in one write (as HAProxy forwards a
    /// PROXY header and the client's first bytes).
    pub(super) fn connect_after(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        preamble: &[u8],
    ) -> TlsClient {
        let mut conn =
            ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut first = preamble.to_vec();
        while conn.wants_write() {
            conn.write_tls(&mut first).unwrap();
        }
        let mut sock = TcpStream::connect(addr).expect("connect to the TLS listener");
        sock.set_nodelay(true).unwrap();
        sock.set_write_timeout(Some(PATIENCE)).unwrap();
        sock.write_all(&first).expect("send the ClientHello");
        TlsClient::over(sock, conn)
    }

    /// The session `conn` over `sock`, whose ClientHello is sent already.
    pub(super) fn over(sock: TcpStream, conn: ClientConnection) -> TlsClient {
        sock.set_nonblocking(true).unwrap();
        TlsClient {
            conn,
            sock,
            outgoing: Vec::new(),
            incoming: Vec::new(),
            closing: false,
            close_sent: false,
            close_notify: false,
            eof: false,
            after_close_notify: 0,
            write_failed: false,
            error: None,
        }
    }

    /// Whether nothing more can come.
    fn ended(&self) -> bool {
        self.eof || self.error.is_some()
    }

    /// How it stands, for failure messages.
    pub(super) fn state(&self) -> String {
        format!(
            "handshaking={} outgoing={} incoming={} close_notify={} eof={} error={:?}",
            self.conn.is_handshaking(),
            self.outgoing.len(),
            self.incoming.len(),
            self.close_notify,
            self.eof,
            self.error
        )
    }

    /// One turn: plaintext to rustls, records to the socket, records from it, plaintext out.
    /// Whether anything moved.
    fn turn(&mut self) -> bool {
        let mut moved = false;
        if !self.outgoing.is_empty() {
            // rustls takes up to its buffer limit (64 KiB) and says how much it took.
            let n = self.conn.writer().write(&self.outgoing).unwrap();
            self.outgoing.drain(..n);
            moved |= n > 0;
        }
        if self.closing && !self.close_sent && self.outgoing.is_empty() {
            self.conn.send_close_notify();
            self.close_sent = true;
        }
        while self.conn.wants_write() && !self.write_failed {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => moved = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.write_failed = true, // EPIPE, ECONNRESET: the server is gone
            }
        }
        if self.close_notify {
            // rustls reads nothing after close_notify: the FIN is read from the socket.
            let mut buf = [0u8; 4096];
            match self.sock.read(&mut buf) {
                Ok(0) => (self.eof, moved) = (true, true),
                Ok(n) => (self.after_close_notify, moved) = (self.after_close_notify + n, true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => (self.eof, moved) = (true, true),
            }
        } else if !self.eof && self.error.is_none() {
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => (self.eof, moved) = (true, true),
                Ok(_) => {
                    moved = true;
                    if let Err(e) = self.conn.process_new_packets() {
                        self.error = Some(e.to_string());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => panic!("reading TLS: {e}; {}", self.state()),
            }
        }
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => {
                    self.close_notify = true;
                    break;
                }
                Ok(n) => {
                    self.incoming.extend_from_slice(&buf[..n]);
                    moved = true;
                }
                Err(_) => break, // WouldBlock, or EOF without close_notify (self.eof says so)
            }
        }
        moved
    }

    /// Turns until `done` holds (`Ok`), or the connection ends first (`Err`: how it ended).
    /// Panics after [`PATIENCE`].
    pub(super) fn drive_until(
        &mut self,
        what: &str,
        done: impl Fn(&TlsClient) -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if done(self) {
                return Ok(());
            }
            if self.ended() {
                return Err(self.state());
            }
            if !self.turn() {
                assert!(
                    start.elapsed() < PATIENCE,
                    "waited for {what}: {}",
                    self.state()
                );
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Finishes the handshake: ours done and our last message (Finished) sent.
    pub(super) fn handshake(&mut self) -> Result<(), String> {
        self.drive_until("the handshake", |c| {
            !c.conn.is_handshaking() && !c.conn.wants_write()
        })
    }

    /// Queues `bytes` to be sent.
    pub(super) fn send(&mut self, bytes: &[u8]) {
        self.outgoing.extend_from_slice(bytes);
    }

    /// Turns until everything queued is on the socket.
    pub(super) fn flush(&mut self) -> Result<(), String> {
        self.drive_until("the bytes sent", |c| {
            c.outgoing.is_empty() && !c.conn.wants_write()
        })
    }

    /// The next `len` bytes received.
    pub(super) fn receive(&mut self, len: usize) -> Result<Vec<u8>, String> {
        self.drive_until("the bytes", |c| c.incoming.len() >= len)?;
        Ok(self.incoming.drain(..len).collect())
    }

    /// Sends `bytes` and returns as many received.
    pub(super) fn echo(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.send(bytes);
        self.receive(bytes.len())
    }

    /// The next line received, without its `\n`.
    pub(super) fn read_line(&mut self) -> Result<String, String> {
        self.drive_until("a line", |c| c.incoming.contains(&b'\n'))?;
        let end = self.incoming.iter().position(|b| *b == b'\n').unwrap();
        let line: Vec<u8> = self.incoming.drain(..=end).collect();
        Ok(String::from_utf8_lossy(&line[..end]).into_owned())
    }

    /// Sends close_notify after what is queued, then reads until the server's FIN; returns
    /// everything received (the caller checks `close_notify` and `error`).
    pub(super) fn close_and_read_to_end(&mut self) -> Vec<u8> {
        self.closing = true;
        let _ = self.drive_until("the server's FIN", |c| c.eof);
        std::mem::take(&mut self.incoming)
    }

    /// Every record rustls holds for the server (our Finished, records, close_notify), taken
    /// out to be sent by the test.
    pub(super) fn take_ciphertext(&mut self) -> Vec<u8> {
        let mut records = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut records).unwrap();
        }
        records
    }

    /// Every record rustls holds for the server, in one write (one or few TCP segments).
    pub(super) fn send_held_records_at_once(&mut self) {
        let records = self.take_ciphertext();
        self.sock.set_nonblocking(false).unwrap();
        self.sock.write_all(&records).expect("send the records");
        self.sock.set_nonblocking(true).unwrap();
    }

    /// The certificate the server showed (its leaf).
    pub(super) fn server_certificate(&self) -> Vec<u8> {
        self.conn.peer_certificates().expect("a server certificate")[0].to_vec()
    }
}
