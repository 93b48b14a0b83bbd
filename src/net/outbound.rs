//! Bytes we owe a client that the kernel has not taken yet.
//!
//! A non-blocking `write` may take everything we offer, part of it (a *short write*), or nothing
//! (`WouldBlock`: the client reads slower than we write and its socket buffer is full). What the
//! kernel refuses waits here, in order, and is offered again when mio reports the socket writable.
//! That is the only reason a connection is ever registered for `WRITABLE`. This is the Python
//! select server's `message_dict[s]`, with a limit: above `--queue-limit` the reactor stops reading
//! the client (echo, timestamp) or drops it (chat), so a slow reader cannot grow our memory.
//!
//! The queue holds chunks: bytes copied for this client alone, and bytes shared with other clients
//! (a chat line goes to a hundred queues as one allocation). An empty queue owns no memory at all,
//! so an idle connection costs nothing here. Writes hand the kernel several chunks at once
//! (`writev`), so a queue of many small replies still drains in one system call.
//!
//! Next: `net/registration.rs`, what a socket asks the poller for.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use super::memory::SharedBytes;

/// Copies appended to a non-empty queue are gathered into chunks of up to this many bytes.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks offered to the kernel in one `writev`.
const SLICES_PER_WRITE: usize = 64;

/// One piece of the queue.
#[derive(Debug)]
enum Chunk {
    /// Bytes for this client only.
    Owned(Vec<u8>),
    /// Bytes shared with other clients' queues.
    Shared(Rc<SharedBytes>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(bytes) => bytes,
            Chunk::Shared(shared) => shared.bytes(),
        }
    }
}

/// What one slot of the queue's ring costs, whatever it holds.
const SLOT_BYTES: usize = std::mem::size_of::<Chunk>();

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything is written: the queue is empty.
    All,
    /// The kernel refused the rest (`WouldBlock`): wait for `WRITABLE`.
    Blocked,
}

/// An ordered queue of bytes owed to one client.
#[derive(Debug, Default)]
pub struct OutboundQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    /// Bytes queued and not yet written.
    len: usize,
    /// The capacity of the copies held (`Owned` chunks).
    owned_capacity: usize,
    /// The cost of the shared pieces held, each counted in full.
    shared_cost: usize,
}

impl OutboundQueue {
    /// An empty queue (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory this queue holds, counted as its limit counts it: the capacity of its
    /// copies, every shared piece in full, and the slots of its ring. Never less than
    /// [`OutboundQueue::len`].
    pub fn footprint(&self) -> usize {
        self.owned_memory() + self.shared_cost
    }

    /// The memory only this queue holds (shared pieces are counted once, by the
    /// [`SharedBytes`] themselves): the capacity of its copies and the slots of its ring.
    pub fn owned_memory(&self) -> usize {
        self.owned_capacity + self.chunks.capacity() * SLOT_BYTES
    }

    /// Appends a copy of `bytes`.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut()
            && last.len() + bytes.len() <= CHUNK_BYTES
        {
            let before = last.capacity();
            last.extend_from_slice(bytes);
            self.owned_capacity += last.capacity() - before;
            return;
        }
        let copy = bytes.to_vec();
        self.owned_capacity += copy.capacity();
        self.chunks.push_back(Chunk::Owned(copy));
    }

    /// Appends bytes shared with other queues (no copy).
    pub fn push_shared(&mut self, shared: &Rc<SharedBytes>) {
        if shared.bytes().is_empty() {
            return;
        }
        self.len += shared.bytes().len();
        self.shared_cost += shared.cost();
        self.chunks.push_back(Chunk::Shared(Rc::clone(shared)));
    }

    /// Writes until the queue is empty or the kernel refuses. Returns what it achieved and how
    /// many bytes it wrote; errors other than `WouldBlock`/`Interrupted` end the connection.
    pub fn flush_into(&mut self, sink: &mut impl Write) -> io::Result<(Flushed, usize)> {
        let mut written = 0;
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); SLICES_PER_WRITE];
            let mut count = 0;
            for (i, chunk) in self.chunks.iter().take(SLICES_PER_WRITE).enumerate() {
                let skip = if i == 0 { self.front_written } else { 0 };
                slices[i] = IoSlice::new(&chunk.bytes()[skip..]);
                count += 1;
            }
            match sink.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((Flushed::Blocked, written));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Give the memory back: an idle connection should own no buffer.
        if self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
        }
        Ok((Flushed::All, written))
    }

    /// Drops everything queued (a client dropped or reset); returns how many bytes that was.
    pub fn discard(&mut self) -> usize {
        let dropped = self.len;
        *self = OutboundQueue::new();
        dropped
    }

    /// Takes a piece that leaves the queue off the counts.
    fn forget(&mut self, chunk: &Chunk) {
        match chunk {
            Chunk::Owned(bytes) => self.owned_capacity -= bytes.capacity(),
            Chunk::Shared(shared) => self.shared_cost -= shared.cost(),
        }
    }

    /// Forgets the first `n` written bytes.
    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front_left = self.chunks[0].bytes().len() - self.front_written;
            if n < front_left {
                self.front_written += n;
                return;
            }
            n -= front_left;
            if let Some(chunk) = self.chunks.pop_front() {
                self.forget(&chunk);
            }
            self.front_written = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `room` bytes, then says `WouldBlock`.
    struct Stingy {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room).min(3); // short writes, always
            self.taken.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_keep_order_across_owned_and_shared_chunks() {
        let mut queue = OutboundQueue::new();
        queue.push_copy(b"hello ");
        let meter = super::super::memory::MemoryMeter::new();
        queue.push_shared(&SharedBytes::new(Rc::from(&b"shared "[..]), &meter));
        queue.push_copy(b"world");
        assert_eq!(queue.len(), 18);
        let mut sink = Stingy {
            taken: Vec::new(),
            room: 10,
        };
        assert_eq!(queue.flush_into(&mut sink).unwrap(), (Flushed::Blocked, 10));
        assert_eq!(queue.len(), 8);
        sink.room = 100;
        assert_eq!(queue.flush_into(&mut sink).unwrap(), (Flushed::All, 8));
        assert_eq!(sink.taken, b"hello shared world");
        assert!(queue.is_empty());
    }

    #[test]
    fn small_copies_are_gathered_into_one_chunk() {
        let mut queue = OutboundQueue::new();
        for _ in 0..1000 {
            queue.push_copy(b"0123456789");
        }
        assert_eq!(queue.chunks.len(), 1);
        assert_eq!(queue.len(), 10_000);
        assert_eq!(queue.discard(), 10_000);
        assert!(queue.is_empty());
    }
}
