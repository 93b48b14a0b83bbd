//! Receiving a batch: `recvmmsg` into slots made once (Linux), `recv_from` each elsewhere.
//!
//! Next: `send.rs`.

use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;

#[cfg(target_os = "linux")]
use super::LinuxArrays;
#[cfg(target_os = "linux")]
use super::sockaddr::socket_addr;

/// Control bytes per received datagram: room for the `SO_RXQ_OVFL` message (a `u32`).
#[cfg(target_os = "linux")]
const CONTROL_LEN: usize = 64;

/// One datagram of a receive batch.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// Its bytes (at most the slot's length).
    pub bytes: &'a [u8],
    /// Who sent it.
    pub from: SocketAddr,
    /// It was longer than its slot and has been cut: its tail is lost.
    pub truncated: bool,
}

/// Buffers for receiving up to `capacity` datagrams in one call, reused by every call.
pub struct RecvBatch {
    slot_len: usize,
    buffers: Vec<u8>,
    lens: Vec<usize>,
    froms: Vec<SocketAddr>,
    truncated: Vec<bool>,
    count: usize,
    kernel_drops: Option<u32>,
    #[cfg(target_os = "linux")]
    kernel: LinuxArrays,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.lens.len())
            .field("slot_len", &self.slot_len)
            .field("count", &self.count)
            .finish()
    }
}

impl RecvBatch {
    /// Room for `capacity` datagrams of up to `slot_len` bytes each. Pages of the buffers that
    /// no datagram ever reaches are never touched, so a large `slot_len` costs address space,
    /// not memory.
    pub fn new(capacity: usize, slot_len: usize) -> Self {
        let capacity = capacity.max(1);
        let slot_len = slot_len.max(1);
        RecvBatch {
            slot_len,
            buffers: vec![0; capacity * slot_len],
            lens: vec![0; capacity],
            froms: vec![SocketAddr::from(([0, 0, 0, 0], 0)); capacity],
            truncated: vec![false; capacity],
            count: 0,
            kernel_drops: None,
            #[cfg(target_os = "linux")]
            kernel: LinuxArrays::new(capacity, CONTROL_LEN),
        }
    }

    /// Datagrams one call may receive.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Bytes one datagram may have before it is cut.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Datagrams the last [`receive`](RecvBatch::receive) got.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` of the last receive (`i < len()`).
    pub fn get(&self, i: usize) -> Received<'_> {
        let start = i * self.slot_len;
        Received {
            bytes: &self.buffers[start..start + self.lens[i]],
            from: self.froms[i],
            truncated: self.truncated[i],
        }
    }

    /// The socket's count of datagrams the kernel dropped (its receive buffer was full), as the
    /// latest datagram that carried one said: the socket's total since it was made. The kernel
    /// stamps it on datagrams queued after a drop, so it is `None` until the first drop (or if
    /// the socket does not report drops: see [`enable_drop_count`](super::enable_drop_count)).
    pub fn kernel_drops(&self) -> Option<u32> {
        self.kernel_drops
    }

    /// Receives up to `capacity()` datagrams in one call (Linux) or one call each (elsewhere).
    /// `Ok(n)` with `n ≥ 1`; `WouldBlock` if there was nothing.
    #[cfg(target_os = "linux")]
    pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        self.count = 0;
        let k = &mut self.kernel;
        let capacity = k.headers.len();
        let slot_len = self.slot_len;
        // Every pointer a header holds derives from these, taken once: indexing a `Vec` again
        // would reborrow all of it and, by Rust's aliasing rules, void the pointers already
        // stored from it.
        let buffers = self.buffers.as_mut_ptr();
        let iovecs = k.iovecs.as_mut_ptr();
        let names = k.names.as_mut_ptr();
        let controls = k.controls.as_mut_ptr();
        for (i, entry) in k.headers.iter_mut().enumerate() {
            // SAFETY: `i < capacity`, and `buffers` holds `capacity * slot_len` bytes,
            // `controls` `capacity * CONTROL_LEN`, `iovecs` and `names` `capacity` entries
            // (`RecvBatch::new`), so every offset stays inside its allocation; the `iovec`
            // written is a plain value over memory this batch owns.
            let (iovec, name, control) = unsafe {
                let iovec = iovecs.add(i);
                iovec.write(libc::iovec {
                    iov_base: buffers.add(i * slot_len).cast(),
                    iov_len: slot_len,
                });
                (iovec, names.add(i), controls.add(i * CONTROL_LEN))
            };
            let header = &mut entry.msg_hdr;
            header.msg_name = name.cast();
            header.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = iovec;
            header.msg_iovlen = 1;
            header.msg_control = control.cast();
            header.msg_controllen = CONTROL_LEN as _;
            header.msg_flags = 0;
            entry.msg_len = 0;
        }
        // Through mio's `try_io`, so that a `WouldBlock` re-arms the socket on mio's poll(2)
        // backend (which watches a socket again only after one); on epoll it is a plain call.
        let received = socket.try_io(|| {
            // SAFETY: `socket` is open for the borrow. Every header points at memory this batch
            // owns and keeps alive across the call: its name (a whole `sockaddr_storage`), one
            // `iovec` describing `slot_len` bytes inside `buffers`, and `CONTROL_LEN` control bytes
            // inside `controls`; `capacity` is the length of `headers`. The kernel writes only
            // within those lengths. No timeout (null): a non-blocking socket returns at once.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    k.headers.as_mut_ptr(),
                    capacity as libc::c_uint,
                    0,
                    std::ptr::null_mut(),
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        })?;
        for i in 0..received {
            let header = &k.headers[i].msg_hdr;
            self.lens[i] = (k.headers[i].msg_len as usize).min(self.slot_len);
            self.truncated[i] = header.msg_flags & libc::MSG_TRUNC != 0;
            self.froms[i] =
                socket_addr(&k.names[i]).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            if let Some(drops) = drop_count(header) {
                self.kernel_drops = Some(drops);
            }
        }
        self.count = received;
        Ok(received)
    }

    /// Receives up to `capacity()` datagrams in one call (Linux) or one call each (elsewhere).
    /// `Ok(n)` with `n ≥ 1`; `WouldBlock` if there was nothing.
    #[cfg(not(target_os = "linux"))]
    pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.count = 0;
        while self.count < self.capacity() {
            let i = self.count;
            let slot = &mut self.buffers[i * self.slot_len..(i + 1) * self.slot_len];
            match socket.recv_from(slot) {
                Ok((len, from)) => {
                    // Without MSG_TRUNC to read, a datagram that filled its slot is taken as
                    // cut: callers size slots one byte over what they accept, so it is too
                    // long either way.
                    self.truncated[i] = len >= self.slot_len;
                    self.lens[i] = len;
                    self.froms[i] = from;
                    self.count += 1;
                }
                Err(e) if self.count > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(self.count)
    }
}

/// The `SO_RXQ_OVFL` count a received message carries, if any.
#[cfg(target_os = "linux")]
fn drop_count(header: &libc::msghdr) -> Option<u32> {
    // SAFETY: `header` was filled by `recvmmsg`: its control pointer and (updated) length
    // describe control bytes inside our buffer, which the CMSG_* macros walk without leaving
    // it. The value is read unaligned, as the kernel does not promise alignment for `u32`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL {
                return Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<u32>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}
