//! UDP in the load generator: a connected UDP socket per "connection", a datagram per message.
//!
//! Over UDP a datagram may be lost, or come late: a reply is matched by the sequence number its
//! payload carries, and a message not answered within `--timeout` is given up as lost (which
//! frees its place in the pipeline). The socket is connected, so it receives only the server's
//! datagrams.
//!
//! A driver that makes one system call per datagram is slower than a batching server, and would
//! measure itself. So on Linux a connection sends everything its pipeline has room for in one
//! `sendmmsg`, and reads its replies up to 64 per `recvmmsg` (`net/datagrams/`; elsewhere the
//! same code makes one call per datagram). The batches belong to the reactor
//! ([`DatagramBatches`]) and serve each of its connections in turn: nothing is allocated per
//! datagram. A message counts as sent only once the kernel took it: those of a batch it refused
//! are taken back (their sequence numbers and their places in `-n`) and sent later.
//!
//! Next: `tally.rs`, where every message ends up counted.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::net::UdpSocket;
use mio::{Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::{
    Connection, ConnectionError, Env, InFlight, READS_PER_TURN, Socket2, State, classify_error,
    is_correct, payload_of,
};
use crate::clients::load::message::TIMESTAMP_PREFIX_LEN;
use crate::net::datagrams::{BATCH, RecvBatch, SendBatch};

/// A reactor's batches for its UDP sockets, lent to one connection at a time.
#[derive(Debug)]
pub struct DatagramBatches {
    incoming: RecvBatch,
    outgoing: SendBatch,
    /// The messages of `outgoing`, in order: when each was due, whether it is measured, its size.
    planned: Vec<(InFlight, usize)>,
}

impl DatagramBatches {
    /// Batches for replies of up to `reply_len` bytes (a longer one is cut, and is wrong).
    fn new(reply_len: usize) -> Self {
        DatagramBatches {
            incoming: RecvBatch::new(BATCH, reply_len + 1),
            outgoing: SendBatch::new(BATCH),
            planned: Vec::with_capacity(BATCH),
        }
    }

    /// Takes the reactor's batches out of `env` (made at the first call), to be put back.
    fn take(env: &mut Env) -> Box<DatagramBatches> {
        env.datagrams.take().unwrap_or_else(|| {
            // Echo and timestamp replies, and chargen's or daytime's at most 512 bytes.
            let longest = (env.payloads.max_size() + TIMESTAMP_PREFIX_LEN).max(512);
            Box::new(DatagramBatches::new(longest))
        })
    }
}

impl Connection {
    /// UDP: gives up messages in flight for longer than the timeout (lost), which frees their
    /// places in the pipeline for the next ones.
    pub fn expire_datagrams(&mut self, env: &mut Env, registry: &Registry, token: Token) {
        let mut expired = false;
        while let Some(oldest) = self.in_flight.front()
            && env.now_ns.saturating_sub(oldest.sent_ns) > env.timeout_ns
        {
            let measured = oldest.measured;
            self.in_flight.pop_front();
            self.oldest_seq += 1;
            env.tally.lost(u64::from(measured));
            expired = true;
        }
        if expired {
            self.fill(env);
            self.update_interest(registry, token);
        }
    }

    /// UDP: the reply is matched by the sequence number it carries. If it answers a later message
    /// than the oldest, those before it were lost; if it answers one already given up, it is
    /// late and dropped (counted once already, as lost). A reply that answers no message is a
    /// wrong reply to the oldest.
    pub(super) fn on_datagram(&mut self, reply: &[u8], env: &mut Env) {
        let payloads = env.payloads.clone();
        let answers = |seq: u64| is_correct(env.reply, &payloads.message(self.id, seq), reply);
        let carried = payloads
            .sequence_in(payload_of(env.reply, reply), self.next_seq)
            .filter(|&seq| seq < self.next_seq && answers(seq)); // never one not sent yet
        if let Some(seq) = carried
            && seq < self.oldest_seq
        {
            log::debug!("connection {}: late reply to message {seq}", self.id);
            return;
        }
        // Given payloads carry no number: the first message in flight that the reply answers.
        let answered =
            carried.or_else(|| (self.oldest_seq..self.next_seq).find(|&seq| answers(seq)));
        if self.in_flight.is_empty() {
            // A stray datagram: it answers nothing in flight (with `--payload-file` payloads,
            // which carry no number, it may also be a late reply).
            env.tally.error(ConnectionError::Unexpected);
            return;
        }
        if let Some(seq) = answered {
            while self.oldest_seq < seq {
                let skipped = self.in_flight.pop_front().expect("seq < next_seq");
                self.oldest_seq += 1;
                env.tally.lost(u64::from(skipped.measured));
            }
        }
        let (seq, oldest) = (self.oldest_seq, payloads.message(self.id, self.oldest_seq));
        if self.answered(env, oldest.size()) && answered.is_none() {
            self.count_mismatch(seq, &oldest, reply, env);
        }
    }

    /// Reads replies, a batch per call, until the socket is empty or the per-turn budget is
    /// spent; checks every one. Returns `true` if it stopped at the budget.
    pub(super) fn drain_datagrams(&mut self, env: &mut Env) -> bool {
        let mut batches = DatagramBatches::take(env);
        let mut still_ready = false;
        for round in 0..READS_PER_TURN {
            let Some(Socket2::Datagram(socket)) = &self.socket else {
                break;
            };
            match batches.incoming.receive(socket) {
                Ok(count) => {
                    for i in 0..count {
                        if self.state == State::Up {
                            self.on_bytes(batches.incoming.get(i).bytes, env);
                        }
                    }
                    if count < batches.incoming.capacity() {
                        break; // the kernel stopped short: the socket is empty
                    }
                    still_ready = round + 1 == READS_PER_TURN;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.end(env, classify_error(&e));
                    break;
                }
            }
        }
        env.datagrams = Some(batches);
        still_ready && self.state == State::Up
    }

    /// Echo and timestamp over UDP: sends, in one call, every message the pipeline has room for
    /// and the pacing allows. What the kernel refuses is taken back, to be sent later.
    pub(super) fn fill_datagrams(&mut self, env: &mut Env) {
        let mut batches = DatagramBatches::take(env);
        let payloads = env.payloads.clone();
        loop {
            batches.outgoing.clear();
            batches.planned.clear();
            while self.in_flight.len() + batches.planned.len() < env.pipeline
                && !batches.outgoing.is_full()
            {
                let Some(due_ns) = self.next_due_ns(env) else {
                    break;
                };
                let Some(measured) = Self::admit(env, due_ns) else {
                    break;
                };
                let message = payloads.message(self.id, self.next_seq);
                let Some(slot) = batches.outgoing.next_slot() else {
                    break;
                };
                message.write_payload(slot);
                batches.outgoing.commit(None);
                let sent_ns = env.now_ns;
                let planned = InFlight {
                    sent_ns,
                    due_ns,
                    measured,
                };
                batches.planned.push((planned, message.size()));
                self.next_seq += 1; // taken back below if the kernel refuses it
            }
            if batches.planned.is_empty() {
                break;
            }
            let (sent, refusal) = send_all(&mut batches.outgoing, self.socket.as_ref());
            for &(message, size) in &batches.planned[..sent] {
                self.in_flight.push_back(message);
                env.tally.sent(message.measured, size);
            }
            for &(message, _) in &batches.planned[sent..] {
                self.next_seq -= 1;
                if message.measured
                    && let Some(left) = &mut env.quota
                {
                    *left += 1; // not sent after all: its place in the quota is free again
                }
            }
            match refusal {
                None => {}
                Some(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Some(e) => {
                    self.end(env, classify_error(&e));
                    break;
                }
            }
        }
        env.datagrams = Some(batches);
    }
}

/// A UDP socket connected to `addr`, so it receives only the server's datagrams.
pub(super) fn open_udp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// Sends the whole batch on `socket`, as many calls as the kernel needs; returns how many were
/// sent and, if it stopped before the end, why.
fn send_all(batch: &mut SendBatch, socket: Option<&Socket2>) -> (usize, Option<io::Error>) {
    let Some(Socket2::Datagram(socket)) = socket else {
        return (0, Some(io::ErrorKind::NotConnected.into()));
    };
    let mut sent = 0;
    while batch.waiting() > 0 {
        match batch.send(socket) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (sent, Some(e)),
        }
    }
    (sent, None)
}
