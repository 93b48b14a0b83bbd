//! A UDP endpoint on the same reactor: one reply datagram per request datagram.
//!
//! UDP has no connections, so there is nothing to accept and no per-client state: the socket is
//! read until `WouldBlock` (or a per-turn budget), each datagram goes to the protocol, and the reply
//! goes back to the sender's address. A datagram is never truncated: it is received into a buffer
//! that holds the largest UDP payload; one larger than `--max-frame` is dropped and counted.
//!
//! A reply the kernel refuses (`WouldBlock`: the socket's send buffer is full) waits in a small
//! queue and the socket is registered for `WRITABLE` until it drains, exactly like a stream's
//! outbound queue; past the queue's limit, replies are dropped and counted: UDP may lose datagrams,
//! memory may not grow.
//!
//! A datagram's source address is whatever its sender wrote, so before the protocol sees one,
//! `server/sources/` judges it: the reflection guard drops datagrams that would start a loop
//! (from our own socket, from a port below 1024, from a broadcast address: the echo↔chargen loop
//! of CERT CA-1996-01), the access lists drop refused sources, and a source group over
//! `--udp-rate-limit` is dropped too, so a forged victim gets at most that many replies a second.
//! And no reply is ever larger than [`reply_cap`] of its request (four times it, plus 512 bytes):
//! a tiny request cannot buy a big answer. Each drop is counted with its reason.
//!
//! Next: `server/sources/`, who may talk to us, and how much.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::net::registration::{self, Registration};
use crate::protocol::{Answer, Service};
use crate::server::sources::Sources;
use crate::server::stats::{DropReason, Stats};

/// The largest reply a request of `request_bytes` may get: four times it, plus 512 bytes (an
/// empty datagram gets at most 512: chargen's 444, daytime's line). A larger one is dropped.
#[inline]
pub const fn reply_cap(request_bytes: usize) -> usize {
    request_bytes.saturating_mul(4).saturating_add(512)
}

/// Datagrams handled per turn before other sockets get their chance.
const DATAGRAMS_PER_TURN: usize = 256;

/// One bound UDP socket and its queue of refused replies.
#[derive(Debug)]
pub struct DatagramEndpoint {
    socket: UdpSocket,
    registration: Registration,
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    pending_bytes: usize,
    queue_limit: usize,
    reply: Vec<u8>,
}

/// What a drain achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The socket has no more datagrams now.
    Empty,
    /// The per-turn budget ran out: come back next turn without waiting for an event.
    Budget,
}

impl DatagramEndpoint {
    /// Wraps a bound socket, registered under `token`; refused replies may hold up to
    /// `queue_limit` bytes.
    pub fn register(
        socket: UdpSocket,
        queue_limit: usize,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Self> {
        let mut endpoint = DatagramEndpoint {
            socket,
            registration: Registration::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            queue_limit,
            reply: Vec::new(),
        };
        endpoint.sync(registry, token)?;
        Ok(endpoint)
    }

    /// What to ask the poller for: always readable, writable too while refused replies wait.
    fn wanted(&self) -> Option<Interest> {
        registration::interest(true, !self.pending.is_empty())
    }

    /// Brings the poller's interest in line with the queue of refused replies.
    pub fn sync(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wanted = self.wanted();
        self.registration
            .update(registry, &mut self.socket, token, wanted)
    }

    /// Our socket's address, as the loop guard must know it.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives and answers datagrams until `WouldBlock` or the per-turn budget. `sources`
    /// judges each sender at `clock` (the rate limit's time) before the protocol answers at
    /// `now` (the wall clock protocols print).
    #[allow(clippy::too_many_arguments)] // the reactor's parts, lent for one drain
    pub(crate) fn drain_datagrams(
        &mut self,
        protocol: &mut dyn Service,
        sources: &mut Sources,
        buf: &mut [u8],
        max_frame: usize,
        clock: Instant,
        now: SystemTime,
        stats: &Stats,
    ) -> io::Result<Drained> {
        for _ in 0..DATAGRAMS_PER_TURN {
            let (len, from) = match self.socket.recv_from(buf) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Empty),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error from an earlier reply (port unreachable) surfaces here: not ours.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            stats.datagrams_received.add(1);
            log::trace!("udp datagram of {len} bytes from {from}");
            let verdict = if len > max_frame {
                Err(DropReason::Size)
            } else {
                sources.judge_datagram(from, clock)
            };
            if let Err(reason) = verdict {
                log::debug!(
                    "udp datagram from {from} dropped ({len} bytes): {}",
                    reason.as_str()
                );
                stats.drop_datagram(reason);
                continue;
            }
            self.reply.clear();
            if protocol.datagram(&buf[..len], now, &mut self.reply) == Answer::Reply {
                if self.reply.len() > reply_cap(len) {
                    log::debug!(
                        "udp reply of {} bytes to {from} dropped: over 4 x {len} + 512",
                        self.reply.len()
                    );
                    stats.drop_datagram(DropReason::Size);
                    continue;
                }
                let reply = std::mem::take(&mut self.reply);
                self.send_or_queue(from, reply, stats);
            }
        }
        Ok(Drained::Budget)
    }

    /// Sends queued replies until the queue is empty or the kernel refuses.
    pub fn flush(&mut self, stats: &Stats) {
        while let Some((to, bytes)) = self.pending.front() {
            match self.socket.send_to(bytes, *to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => {
                    if result.is_ok() {
                        stats.datagrams_sent.add(1);
                    } else {
                        stats.drop_datagram(DropReason::Queue);
                    }
                    self.pending_bytes -= bytes.len();
                    self.pending.pop_front();
                }
            }
        }
    }

    fn send_or_queue(&mut self, to: SocketAddr, reply: Vec<u8>, stats: &Stats) {
        if self.pending.is_empty() {
            match self.socket.send_to(&reply, to) {
                Ok(_) => {
                    stats.datagrams_sent.add(1);
                    self.reply = reply;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    log::debug!("udp reply to {to} failed: {e}");
                    stats.drop_datagram(DropReason::Queue);
                    self.reply = reply;
                    return;
                }
            }
        }
        if self.pending_bytes + reply.len() > self.queue_limit {
            stats.drop_datagram(DropReason::Queue);
            self.reply = reply;
            return;
        }
        self.pending_bytes += reply.len();
        self.pending.push_back((to, reply));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Echo, Service};
    use mio::Poll;
    use std::time::Duration;

    const TOKEN: Token = Token(9);

    /// An endpoint on 127.0.0.1:0, registered with a poller of its own, and a client socket.
    fn endpoint(queue_limit: usize) -> (DatagramEndpoint, Poll, std::net::UdpSocket) {
        let poll = Poll::new().unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let endpoint =
            DatagramEndpoint::register(socket, queue_limit, poll.registry(), TOKEN).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        (endpoint, poll, client)
    }

    /// The default rules (loopback trusted), guarding `endpoint`.
    fn sources_for(endpoint: &DatagramEndpoint) -> Sources {
        let own = [endpoint.local_addr().unwrap()];
        Sources::new(&Default::default(), &own, std::time::Instant::now())
    }

    /// Drains until the endpoint has seen `count` datagrams (they may arrive a little later
    /// than `send_to` returns).
    fn drain_until(endpoint: &mut DatagramEndpoint, stats: &Stats, count: u64) -> Drained {
        let mut echo = Echo;
        let mut sources = sources_for(endpoint);
        let mut buf = vec![0u8; 64 * 1024];
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let drained = endpoint
                .drain_datagrams(
                    &mut echo as &mut dyn Service,
                    &mut sources,
                    &mut buf,
                    8,
                    std::time::Instant::now(),
                    SystemTime::now(),
                    stats,
                )
                .unwrap();
            if stats.datagrams_received.get() >= count || std::time::Instant::now() > give_up {
                return drained;
            }
        }
    }

    #[test]
    fn each_datagram_is_answered_and_one_over_max_frame_is_dropped_and_counted() {
        let (mut endpoint, _poll, client) = endpoint(1024);
        let server = endpoint.socket.local_addr().unwrap();
        let stats = Stats::default();
        client.send_to(b"short", server).unwrap();
        client.send_to(b"far too long for 8", server).unwrap();
        client.send_to(b"", server).unwrap();
        drain_until(&mut endpoint, &stats, 3);
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"short"[..], server));
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(n, 0, "an empty datagram comes back empty");
        assert_eq!(stats.datagrams_received.get(), 3);
        assert_eq!(stats.datagrams_sent.get(), 2);
        assert_eq!(stats.datagrams_dropped.get(), 1);
        assert_eq!(
            stats.datagrams_dropped_by[DropReason::Size as usize].get(),
            1
        );
    }

    #[test]
    fn a_reply_is_never_more_than_four_times_its_request_plus_512() {
        assert_eq!(reply_cap(0), 512);
        assert_eq!(reply_cap(100), 912);
        assert_eq!(reply_cap(usize::MAX), usize::MAX);
    }

    #[test]
    fn a_burst_past_the_per_turn_budget_is_finished_next_turn() {
        let (mut endpoint, _poll, client) = endpoint(1024);
        // Room for the whole burst in the kernel: the default holds only ~256 small datagrams.
        socket2::SockRef::from(&endpoint.socket)
            .set_recv_buffer_size(4 << 20)
            .unwrap();
        let server = endpoint.socket.local_addr().unwrap();
        let stats = Stats::default();
        let burst = DATAGRAMS_PER_TURN as u64 + 10;
        for _ in 0..burst {
            client.send_to(b"x", server).unwrap();
        }
        // Loopback delivers as it sends, so the first turn finds more than its budget; it
        // stops at the budget and says so, and the next turn takes the rest.
        let mut echo = Echo;
        let mut sources = sources_for(&endpoint);
        let mut buf = vec![0u8; 64 * 1024];
        let mut turn = |endpoint: &mut DatagramEndpoint| {
            endpoint
                .drain_datagrams(
                    &mut echo as &mut dyn Service,
                    &mut sources,
                    &mut buf,
                    8,
                    std::time::Instant::now(),
                    SystemTime::now(),
                    &stats,
                )
                .unwrap()
        };
        assert_eq!(turn(&mut endpoint), Drained::Budget);
        assert_eq!(stats.datagrams_received.get(), DATAGRAMS_PER_TURN as u64);
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while stats.datagrams_received.get() < burst && std::time::Instant::now() < give_up {
            assert_eq!(turn(&mut endpoint), Drained::Empty);
        }
        assert_eq!(stats.datagrams_received.get(), burst);
    }

    #[test]
    fn refused_replies_wait_in_a_bounded_queue_with_writable_interest() {
        let (mut endpoint, poll, client) = endpoint(10);
        let to = client.local_addr().unwrap();
        let stats = Stats::default();
        assert_eq!(endpoint.wanted(), Some(Interest::READABLE));
        // As if the kernel had refused an earlier reply: replies now queue behind it.
        endpoint.pending.push_back((to, b"first".to_vec()));
        endpoint.pending_bytes = 5;
        endpoint.send_or_queue(to, b"next".to_vec(), &stats);
        assert_eq!(endpoint.pending_bytes, 9);
        endpoint.send_or_queue(to, b"over".to_vec(), &stats);
        assert_eq!(
            stats.datagrams_dropped.get(),
            1,
            "past the limit: dropped, counted"
        );
        assert_eq!(endpoint.pending.len(), 2);
        assert_eq!(
            endpoint.wanted(),
            Some(Interest::READABLE | Interest::WRITABLE)
        );
        endpoint.sync(poll.registry(), TOKEN).unwrap();
        endpoint.flush(&stats);
        assert_eq!(stats.datagrams_sent.get(), 2);
        assert_eq!(endpoint.wanted(), Some(Interest::READABLE));
        let mut buf = [0u8; 16];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"first", "in order");
    }
}
