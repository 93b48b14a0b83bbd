//! UDP in the load generator: a connected UDP socket per "connection", a datagram per message.
//!
//! Over UDP a datagram may be lost, or come late: a reply is matched by the sequence number its
//! payload carries, and a message not answered within `--timeout` is given up as lost (which
//! frees its place in the pipeline). The socket is connected, so it receives only the server's
//! datagrams.
//!
//! Next: `tally.rs`, where every message ends up counted.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::net::UdpSocket;
use mio::{Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::{Connection, ConnectionError, Env, Socket2, classify_error, is_correct, payload_of};

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

    /// Sends `env.payload` as one datagram; `false` if the kernel refused it for now.
    pub(super) fn send_datagram(&mut self, env: &mut Env) -> bool {
        let Some(Socket2::Datagram(socket)) = &self.socket else {
            return false;
        };
        match socket.send(&env.payload) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => {
                self.end(env, classify_error(&e));
                false
            }
        }
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
