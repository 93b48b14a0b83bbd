//! A UDP endpoint on the same reactor: one reply datagram per request datagram.
//!
//! UDP has no connections, so there is nothing to accept and no per-client state: the socket is
//! read until `WouldBlock` (or a per-turn budget), each datagram goes to the protocol, and the reply
//! goes back to the sender's address. On Linux both directions go in batches (`net/datagrams/`):
//! one `recvmmsg` takes up to 64 datagrams, the protocol answers each into the outgoing batch, and
//! one `sendmmsg` sends the replies (a run of equal-sized replies to one sender as one message the
//! kernel cuts, `UDP_SEGMENT`), so a busy socket costs a few system calls per hundred datagrams
//! instead of two per datagram. Each datagram has a slot of `--max-frame` + 1 bytes: one
//! that fills its slot, or that the kernel had to cut (`MSG_TRUNC`), is over `--max-frame`, and
//! is dropped and counted.
//!
//! The socket asks for a large receive buffer (`--udp-rcvbuf`, 4 MiB): the default holds only a
//! few hundred small datagrams, and a burst beyond it is dropped by the kernel before we see it.
//! Those drops are counted too (`SO_RXQ_OVFL`: `kernel_dropped` in the stats line,
//! `echoloop_udp_kernel_drops_total`).
//!
//! A reply the kernel refuses (`WouldBlock`: the socket's send buffer is full), and every reply
//! of the batch after it, waits in a small queue and the socket is registered for `WRITABLE` until it drains, exactly like a stream's
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
//! Next: `net/datagrams/`, the batches themselves; then `server/sources/`, who may talk to
//! us, and how much.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::net::datagrams::{self, BATCH, ReceiveBuffer, RecvBatch, SendBatch};
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

/// Datagrams handled per turn before other sockets get their chance (four batches).
const DATAGRAMS_PER_TURN: usize = 4 * BATCH;

/// The largest UDP payload (65,535 − 8 bytes of UDP header; IPv4 takes 20 more, but a slot
/// one byte longer than any datagram costs nothing).
const MAX_UDP_PAYLOAD: usize = 65_535 - 8;

/// One bound UDP socket, its batches, and its queue of refused replies.
#[derive(Debug)]
pub struct DatagramEndpoint {
    socket: UdpSocket,
    registration: Registration,
    /// Requests come in here, a batch per system call; made at the first drain, when
    /// `--max-frame` (the slot size) is known, and reused ever after.
    incoming: Option<RecvBatch>,
    /// Replies wait here until the batch is sent, in one system call.
    outgoing: SendBatch,
    /// Replies the kernel refused (`WouldBlock`), oldest first: sent one by one when writable.
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    pending_bytes: usize,
    queue_limit: usize,
    /// The kernel's drop count last seen on this socket (`SO_RXQ_OVFL`), to count only news.
    kernel_drops_seen: u32,
    /// Test hook: the kernel "takes" only this many more sends, then says `WouldBlock`.
    #[cfg(test)]
    sends_allowed: Option<usize>,
}

/// What a drain achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The socket has no more datagrams now.
    Empty,
    /// The per-turn budget ran out: come back next turn without waiting for an event.
    Budget,
}

/// Says once per process that the kernel granted a smaller receive buffer than asked for
/// (every UDP socket of every worker asks the same, and gets the same answer).
fn warn_buffer_capped(asked: usize, granted: usize) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        log::warn!(
            "udp: receive buffers of {granted} bytes, not the {asked} asked for (--udp-rcvbuf): \
             the kernel caps them at net.core.rmem_max; raise that sysctl"
        );
    });
}

/// Whether a batch shorter than asked for ends a drain, saving the call that would only say
/// `WouldBlock`. Not on mio's poll(2) backend, which watches a socket again only after a
/// `WouldBlock` (as for stream reads: see `SHORT_READ_ENDS_DRAIN` in `reactor/client.rs`).
const SHORT_BATCH_ENDS_DRAIN: bool = !cfg!(mio_unsupported_force_poll_poll);

/// What the reactor lends a UDP socket for one drain: the socket's service, the judge of
/// senders, and the moment (`clock` for the rate limit, `now` for the protocols' wall clock).
pub(crate) struct Lent<'a> {
    /// The socket's service.
    pub protocol: &'a mut dyn Service,
    /// Who may talk to us, and how much.
    pub sources: &'a mut Sources,
    /// `--max-frame`: a longer datagram is dropped.
    pub max_frame: usize,
    /// The loop's monotonic time, for the rate limit.
    pub clock: Instant,
    /// The wall clock, which protocols print.
    pub now: SystemTime,
    /// The socket's service's counters.
    pub stats: &'a Stats,
}

impl DatagramEndpoint {
    /// Wraps a bound socket, registered under `token`; refused replies may hold up to
    /// `queue_limit` bytes. Asks for a receive buffer of `rcvbuf` bytes (logging what the
    /// kernel granted) and for the kernel's drop count with each datagram.
    pub fn register(
        socket: UdpSocket,
        queue_limit: usize,
        rcvbuf: Option<usize>,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Self> {
        let name = socket
            .local_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        if let Some(asked) = rcvbuf {
            match datagrams::grow_receive_buffer(&socket, asked) {
                Ok(ReceiveBuffer::Set { bytes }) if bytes < asked => {
                    warn_buffer_capped(asked, bytes)
                }
                Ok(done) => log::debug!("udp {name}: receive buffer {done:?}"),
                Err(e) => log::warn!("udp {name}: cannot set the receive buffer: {e}"),
            }
        }
        if let Err(e) = datagrams::enable_drop_count(&socket) {
            log::warn!("udp {name}: the kernel's drops will not be counted: {e}");
        }
        // A socket from systemd may have dropped datagrams before we had it: not ours to count.
        let kernel_drops_seen = datagrams::kernel_drops_so_far(&socket).unwrap_or(0);
        let mut endpoint = DatagramEndpoint {
            socket,
            registration: Registration::new(),
            incoming: None,
            outgoing: SendBatch::new(BATCH),
            pending: VecDeque::new(),
            pending_bytes: 0,
            queue_limit,
            kernel_drops_seen,
            #[cfg(test)]
            sends_allowed: None,
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

    /// Receives and answers datagrams, a batch per system call, until the socket is empty or
    /// the per-turn budget is spent. Each batch's replies go out together before the next
    /// batch is read. `lent.sources` judges each sender at `lent.clock` (the rate limit's time)
    /// before the protocol answers at `lent.now` (the wall clock protocols print).
    pub(crate) fn drain_datagrams(&mut self, mut lent: Lent<'_>) -> io::Result<Drained> {
        // One byte over `--max-frame`: a datagram that fills its slot is too long, cut or not.
        let slot_len = lent.max_frame.saturating_add(1).min(MAX_UDP_PAYLOAD + 1);
        let mut incoming = self
            .incoming
            .take()
            .unwrap_or_else(|| RecvBatch::new(BATCH, slot_len));
        let result = self.drain_into(&mut incoming, &mut lent);
        self.incoming = Some(incoming);
        result
    }

    fn drain_into(&mut self, incoming: &mut RecvBatch, lent: &mut Lent<'_>) -> io::Result<Drained> {
        let mut handled = 0;
        while handled < DATAGRAMS_PER_TURN {
            let count = match incoming.receive(&self.socket) {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Empty),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error from an earlier reply (port unreachable) surfaces here: not ours.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            self.note_kernel_drops(incoming, lent.stats);
            for i in 0..count {
                self.answer(incoming, i, lent);
            }
            self.send_replies(lent.stats);
            handled += count;
            if SHORT_BATCH_ENDS_DRAIN && count < incoming.capacity() {
                // The kernel stopped short of the batch: the socket is empty (a later
                // datagram brings a new edge).
                return Ok(Drained::Empty);
            }
        }
        Ok(Drained::Budget)
    }

    /// Judges datagram `i` of the batch and, if it passes, puts the protocol's reply in the
    /// outgoing batch.
    fn answer(&mut self, incoming: &RecvBatch, i: usize, lent: &mut Lent<'_>) {
        let stats = lent.stats;
        let datagram = incoming.get(i);
        let (len, from) = (datagram.bytes.len(), datagram.from);
        stats.datagrams_received.add(1);
        log::trace!("udp datagram of {len} bytes from {from}");
        let verdict = if datagram.truncated || len > lent.max_frame {
            Err(DropReason::Size)
        } else {
            lent.sources.judge_datagram(from, lent.clock)
        };
        if let Err(reason) = verdict {
            log::debug!(
                "udp datagram from {from} dropped ({len}{} bytes): {}",
                if datagram.truncated { "+" } else { "" },
                reason.as_str()
            );
            stats.drop_datagram(reason);
            return;
        }
        if self.outgoing.is_full() {
            self.send_replies(stats); // chargen and friends may answer more than asked
        }
        let Some(reply) = self.outgoing.next_slot() else {
            stats.drop_datagram(DropReason::Queue); // cannot happen: just emptied
            return;
        };
        if lent.protocol.datagram(datagram.bytes, lent.now, reply) != Answer::Reply {
            return;
        }
        if reply.len() > reply_cap(len) {
            log::debug!(
                "udp reply of {} bytes to {from} dropped: over 4 x {len} + 512",
                reply.len()
            );
            stats.drop_datagram(DropReason::Size);
            return;
        }
        self.outgoing.commit(Some(from));
    }

    /// Adds the kernel's drops since we last looked to the counters.
    fn note_kernel_drops(&mut self, incoming: &RecvBatch, stats: &Stats) {
        if let Some(total) = incoming.kernel_drops() {
            let news = total.wrapping_sub(self.kernel_drops_seen);
            if news > 0 {
                log::debug!("udp: the kernel dropped {news} datagrams (receive buffer full)");
                stats.udp_kernel_drops.add(u64::from(news));
            }
            self.kernel_drops_seen = total;
        }
    }

    /// Sends the outgoing batch. Replies behind refused ones keep their order: while the
    /// queue of refused replies is not empty they join it; when the kernel refuses part of
    /// the batch (`WouldBlock`) the rest joins it (and the socket asks for `WRITABLE`).
    fn send_replies(&mut self, stats: &Stats) {
        while self.outgoing.waiting() > 0 {
            if !self.pending.is_empty() {
                self.queue_unsent(stats);
                return;
            }
            match self.transmit() {
                Ok(sent) => stats.datagrams_sent.add(sent as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.queue_unsent(stats);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let to = self.outgoing.unsent().next().and_then(|(_, to)| to);
                    log::debug!("udp reply to {to:?} failed: {e}");
                    stats.drop_datagram(DropReason::Queue);
                    self.outgoing.skip_one();
                }
            }
        }
    }

    /// One `sendmmsg` of the outgoing batch (or, under the test hook, a refusal).
    fn transmit(&mut self) -> io::Result<usize> {
        #[cfg(test)]
        if let Some(left) = self.sends_allowed {
            if left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let sent = self.outgoing.send(&self.socket)?;
            self.sends_allowed = Some(left.saturating_sub(sent));
            return Ok(sent);
        }
        self.outgoing.send(&self.socket)
    }

    /// Moves what is left of the outgoing batch to the queue of refused replies (a copy each:
    /// this is the slow path, taken only when the kernel has no room).
    fn queue_unsent(&mut self, stats: &Stats) {
        let unsent: Vec<(SocketAddr, Vec<u8>)> = self
            .outgoing
            .unsent()
            .filter_map(|(bytes, to)| Some((to?, bytes.to_vec())))
            .collect();
        self.outgoing.clear();
        for (to, reply) in unsent {
            self.queue_or_drop(to, reply, stats);
        }
    }

    /// Queues a refused reply, or drops and counts it past the queue's limit.
    fn queue_or_drop(&mut self, to: SocketAddr, reply: Vec<u8>, stats: &Stats) {
        if self.pending_bytes + reply.len() > self.queue_limit {
            log::debug!("udp reply to {to} dropped: the queue of refused replies is full");
            stats.drop_datagram(DropReason::Queue);
            return;
        }
        self.pending_bytes += reply.len();
        self.pending.push_back((to, reply));
    }

    /// Sends queued replies until the queue is empty or the kernel refuses.
    pub fn flush(&mut self, stats: &Stats) {
        while let Some((to, bytes)) = self.pending.front() {
            match self.send_one(bytes, *to) {
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

    /// One `sendto` from the queue of refused replies (or, under the test hook, a refusal).
    fn send_one(&self, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        #[cfg(test)]
        if self.sends_allowed == Some(0) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.socket.send_to(bytes, to)
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
            DatagramEndpoint::register(socket, queue_limit, Some(4 << 20), poll.registry(), TOKEN)
                .unwrap();
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
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let drained = endpoint
                .drain_datagrams(Lent {
                    protocol: &mut echo as &mut dyn Service,
                    sources: &mut sources,
                    max_frame: 8,
                    clock: std::time::Instant::now(),
                    now: SystemTime::now(),
                    stats,
                })
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
        // Room for the whole burst in the kernel: `endpoint()` asks for a 4 MiB buffer.
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
        let mut turn = |endpoint: &mut DatagramEndpoint| {
            endpoint
                .drain_datagrams(Lent {
                    protocol: &mut echo as &mut dyn Service,
                    sources: &mut sources,
                    max_frame: 8,
                    clock: std::time::Instant::now(),
                    now: SystemTime::now(),
                    stats: &stats,
                })
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
        for reply in [&b"next"[..], b"over"] {
            endpoint
                .outgoing
                .next_slot()
                .unwrap()
                .extend_from_slice(reply);
            endpoint.outgoing.commit(Some(to));
        }
        endpoint.send_replies(&stats);
        assert_eq!(endpoint.pending_bytes, 9);
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
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"next", "in order");
    }

    #[test]
    fn a_batch_the_kernel_refuses_waits_bounded_then_flushes_and_writable_interest_ends() {
        // Room for 40 one-byte replies out of a batch of 100 requests.
        let (mut endpoint, poll, client) = endpoint(40);
        let server = endpoint.socket.local_addr().unwrap();
        let stats = Stats::default();
        endpoint.sends_allowed = Some(0); // the kernel has no room for any reply
        for i in 0..100u8 {
            client.send_to(&[i % 8], server).unwrap();
        }
        drain_until(&mut endpoint, &stats, 100);
        assert_eq!(stats.datagrams_received.get(), 100);
        assert_eq!(stats.datagrams_sent.get(), 0);
        assert_eq!(endpoint.pending.len(), 40, "queued up to the limit");
        assert_eq!(
            stats.datagrams_dropped_by[DropReason::Queue as usize].get(),
            60,
            "the rest counted"
        );
        assert_eq!(
            endpoint.wanted(),
            Some(Interest::READABLE | Interest::WRITABLE),
            "writable interest only now"
        );
        // Writable while the kernel still refuses: nothing moves, nothing spins.
        endpoint.flush(&stats);
        assert_eq!(endpoint.pending.len(), 40);
        endpoint.sends_allowed = None; // room again
        endpoint.flush(&stats);
        assert_eq!(stats.datagrams_sent.get(), 40);
        assert!(endpoint.pending.is_empty());
        assert_eq!(endpoint.pending_bytes, 0);
        assert_eq!(
            endpoint.wanted(),
            Some(Interest::READABLE),
            "and now no more"
        );
        endpoint.sync(poll.registry(), TOKEN).unwrap();
        let mut buf = [0u8; 16];
        for i in 0..40u8 {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i % 8], "in order");
        }
    }

    #[test]
    fn the_loop_guard_access_lists_and_rate_limit_judge_each_datagram_of_a_mixed_batch() {
        let (mut endpoint, _poll, trusted) = endpoint(1024);
        let server = endpoint.local_addr().unwrap();
        let config = crate::server::sources::SourcesConfig {
            trusted: vec!["127.0.0.1/32".parse().unwrap()],
            deny: vec!["127.0.0.3/32".parse().unwrap()],
            udp_rate_limit: 5, // and a burst of 5
            ..Default::default()
        };
        let start = std::time::Instant::now();
        let mut sources = Sources::new(&config, &[server], start);
        let stranger = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        stranger
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let denied = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
        // Interleaved, all sent before the server reads: they arrive as one batch.
        for i in 0..20u8 {
            trusted.send_to(&[b't', i], server).unwrap();
            stranger.send_to(&[b's', i], server).unwrap();
            if i % 4 == 0 {
                denied.send_to(b"d", server).unwrap();
            }
        }
        endpoint.socket.send_to(b"from ourselves", server).unwrap(); // a loop
        let stats = Stats::default();
        let drained = endpoint
            .drain_datagrams(Lent {
                protocol: &mut Echo as &mut dyn Service,
                sources: &mut sources,
                max_frame: 64,
                clock: start, // no time passes: the rate table refills nothing
                now: SystemTime::now(),
                stats: &stats,
            })
            .unwrap();
        assert_eq!(drained, Drained::Empty);
        assert_eq!(
            endpoint.incoming.as_ref().unwrap().len(),
            46,
            "one batch held them all"
        );
        assert_eq!(stats.datagrams_received.get(), 46);
        let dropped = |reason: DropReason| stats.datagrams_dropped_by[reason as usize].get();
        assert_eq!(dropped(DropReason::Loop), 1);
        assert_eq!(dropped(DropReason::Acl), 5);
        assert_eq!(dropped(DropReason::Rate), 15, "the stranger's burst is 5");
        assert_eq!(stats.datagrams_sent.get(), 25);
        let mut buf = [0u8; 16];
        for i in 0..20u8 {
            let n = trusted.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[b't', i]);
        }
        for i in 0..5u8 {
            let n = stranger.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[b's', i], "the first five of the stranger's");
        }
    }
}
