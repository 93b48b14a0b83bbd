//! Many datagrams per system call: `recvmmsg` and `sendmmsg`.
//!
//! A UDP socket hands over one datagram per `recvfrom` and takes one per `sendto`, so a server
//! that answers each datagram makes two system calls per datagram, and on a busy socket the
//! crossings into the kernel cost more than the echo itself. Linux offers the batched pair:
//! `recvmmsg` fills up to N buffers in one call (stopping early when the socket is empty), and
//! `sendmmsg` sends up to N datagrams, each to its own address, in one call (stopping early when
//! the kernel refuses one). At 64 datagrams a batch a busy socket costs a few calls per hundred
//! datagrams instead of two per datagram.
//!
//! The arrays the kernel reads and writes (one `mmsghdr` per datagram, its `iovec`, its address
//! and its control bytes) and the buffers themselves are allocated once, when the batch is made,
//! and reused by every call: nothing is allocated per datagram. Each slot holds `slot_len` bytes;
//! a datagram longer than its slot is cut by the kernel, which says so (`MSG_TRUNC`), and
//! [`Received::truncated`] reports it, so the caller can drop it rather than answer half of it.
//!
//! Sending goes one step further where it can: a run of datagrams of one size to one destination
//! (an echo of a client's burst; the load generator's requests) goes out as one message marked
//! `UDP_SEGMENT`, which the kernel builds into one large packet and cuts into the datagrams at
//! the last moment, sparing most of its per-datagram work on the way out. The receiver still
//! gets ordinary datagrams. Where the kernel or the device cannot do that, the batch falls back
//! to one message per datagram, for good.
//!
//! The same receive also reports how many datagrams the kernel itself dropped on this socket
//! because its receive buffer was full (`SO_RXQ_OVFL`, a control message carried with each
//! datagram): see [`enable_drop_count`] and [`RecvBatch::kernel_drops`]. That is the loss nobody
//! sees otherwise, and the reason [`grow_receive_buffer`] asks for a larger buffer.
//!
//! Other systems get the same types over the one-at-a-time calls (`recv_from` until the batch is
//! full or the socket is empty; `send_to` each), so callers have one code path everywhere.
//!
//! Next: `server/sources/`, who judges each datagram's sender before it is answered.

use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;

/// Datagrams per system call: enough that a busy socket costs a few calls per hundred
/// datagrams; more gains little (the kernel's per-datagram work dominates).
pub const BATCH: usize = 64;

/// Control bytes per received datagram: room for the `SO_RXQ_OVFL` message (a `u32`).
#[cfg(target_os = "linux")]
const CONTROL_LEN: usize = 64;

/// `UDP_SEGMENT` (linux/udp.h; not in the libc crate): the size of the datagrams to cut a
/// message into.
#[cfg(target_os = "linux")]
const UDP_SEGMENT: libc::c_int = 103;
/// Control bytes per sent message: room for the `UDP_SEGMENT` message (a `u16`).
#[cfg(target_os = "linux")]
const SEGMENT_CONTROL_LEN: usize = 32;
/// Datagrams per segmented message (the kernel takes up to 64 on every version that has it).
#[cfg(target_os = "linux")]
const SEGMENTS_PER_MESSAGE: usize = 64;
/// Bytes of one segmented message: what one IPv4 or IPv6 UDP datagram may hold, with room.
#[cfg(target_os = "linux")]
const SEGMENTED_MAX_BYTES: usize = 65_000;
/// Only datagrams this small are sent segmented: the kernel refuses (`EINVAL`) a segment larger
/// than the route's MTU allows, and 1,232 bytes fit any IPv6 path (1,280 − 48) and most IPv4
/// ones (an IPv4 route may be as small as 576: a refusal sends that batch one by one).
pub const SEGMENT_MAX_BYTES: usize = 1232;
/// `EINVAL` refusals of segmented sends in a row before segmentation is turned off for the
/// socket; a single one (a peer behind a small MTU) only sends that batch one by one.
#[cfg(target_os = "linux")]
const SEGMENT_REFUSALS_BEFORE_OFF: u32 = 8;

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

/// What `recvmmsg`/`sendmmsg` read and write: one header, one `iovec`, one address and (for
/// receives) one control buffer per datagram. Their pointers are set again before each call,
/// so nothing here points into itself between calls.
#[cfg(target_os = "linux")]
struct LinuxArrays {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<u8>,
    /// Headers filled for the next send.
    messages: usize,
}

// SAFETY: the raw pointers in the headers are set afresh before each call and point only into
// memory owned by the same batch; between calls nothing reads them. Moving the batch to another
// thread (a worker's reactor) moves that memory with it.
#[cfg(target_os = "linux")]
unsafe impl Send for LinuxArrays {}

#[cfg(target_os = "linux")]
impl std::fmt::Debug for LinuxArrays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxArrays")
            .field("capacity", &self.headers.len())
            .finish()
    }
}

#[cfg(target_os = "linux")]
impl LinuxArrays {
    fn new(capacity: usize, control_len: usize) -> Self {
        // SAFETY: these are plain C structs for which all-zero bytes are a valid value (null
        // pointers, zero lengths, family AF_UNSPEC).
        let zeroed_header: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zeroed_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        LinuxArrays {
            headers: vec![zeroed_header; capacity],
            iovecs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                capacity
            ],
            names: vec![zeroed_name; capacity],
            controls: vec![0; capacity * control_len],
            messages: 0,
        }
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
    /// the socket does not report drops: see [`enable_drop_count`]).
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

/// Datagrams waiting to be sent in one call, each with its destination (`None`: the socket's
/// connected peer). Each slot is a `Vec` kept between batches, so once warm no send allocates.
#[derive(Debug)]
pub struct SendBatch {
    slots: Vec<Vec<u8>>,
    destinations: Vec<Option<SocketAddr>>,
    /// Slots filled.
    filled: usize,
    /// Slots already sent (or skipped): the next send starts here.
    done: usize,
    #[cfg(target_os = "linux")]
    kernel: LinuxArrays,
    /// Runs of equal-sized datagrams to one destination go out as one message the kernel cuts
    /// (`UDP_SEGMENT`); off for good once the kernel or device says it cannot, or after
    /// `SEGMENT_REFUSALS_BEFORE_OFF` refusals in a row.
    #[cfg(target_os = "linux")]
    segmentation: bool,
    /// Segmented sends refused since the last one that went through.
    #[cfg(target_os = "linux")]
    segment_refusals: u32,
    /// How many datagrams each message of the last `sendmmsg` carried.
    #[cfg(target_os = "linux")]
    run_lengths: Vec<usize>,
}

impl SendBatch {
    /// Room for `capacity` datagrams.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SendBatch {
            slots: vec![Vec::new(); capacity],
            destinations: vec![None; capacity],
            filled: 0,
            done: 0,
            #[cfg(target_os = "linux")]
            kernel: LinuxArrays::new(capacity, SEGMENT_CONTROL_LEN),
            #[cfg(target_os = "linux")]
            segmentation: true,
            #[cfg(target_os = "linux")]
            segment_refusals: 0,
            #[cfg(target_os = "linux")]
            run_lengths: vec![0; capacity],
        }
    }

    /// Whether every slot is filled: send before adding more.
    pub fn is_full(&self) -> bool {
        self.filled == self.slots.len()
    }

    /// Datagrams added and not yet sent or skipped.
    pub fn waiting(&self) -> usize {
        self.filled - self.done
    }

    /// The next free slot, emptied, to write a datagram into; it joins the batch only once
    /// [`commit`](SendBatch::commit)ted. `None` if the batch is full.
    pub fn next_slot(&mut self) -> Option<&mut Vec<u8>> {
        let slot = self.slots.get_mut(self.filled)?;
        slot.clear();
        Some(slot)
    }

    /// Adds the datagram written into [`next_slot`](SendBatch::next_slot), for `to`.
    pub fn commit(&mut self, to: Option<SocketAddr>) {
        debug_assert!(self.filled < self.slots.len());
        self.destinations[self.filled] = to;
        self.filled += 1;
    }

    /// Datagrams not yet sent, oldest first, with their destinations.
    pub fn unsent(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> + '_ {
        (self.done..self.filled).map(|i| (self.slots[i].as_slice(), self.destinations[i]))
    }

    /// Gives up the oldest unsent datagram (the kernel refused it for good).
    pub fn skip_one(&mut self) {
        self.done = (self.done + 1).min(self.filled);
        self.reset_if_done();
    }

    /// Forgets every unsent datagram (after the caller has copied them elsewhere).
    pub fn clear(&mut self) {
        self.filled = 0;
        self.done = 0;
    }

    fn reset_if_done(&mut self) {
        if self.done == self.filled {
            self.clear();
        }
    }

    /// Sends the unsent datagrams, oldest first, in one call (Linux) or one each (elsewhere).
    /// `Ok(n)`: `n ≥ 1` were sent (maybe not all: call again). An error is about the oldest
    /// unsent datagram: `WouldBlock` (the kernel has no room now) or a refusal for good, after
    /// which the caller [`skip_one`](SendBatch::skip_one)s it.
    ///
    /// On Linux a run of datagrams of one size (up to [`SEGMENT_MAX_BYTES`] each) to one
    /// destination goes out as one message with `UDP_SEGMENT`: the kernel builds one large
    /// packet and cuts it into the datagrams, which saves its per-datagram work on the way out
    /// (the receiver still gets ordinary datagrams). If the kernel refuses that (an old kernel,
    /// a device without checksum offload), the batch goes on without it.
    #[cfg(target_os = "linux")]
    pub fn send(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut segment = self.segmentation;
        loop {
            self.prepare_messages(segment);
            // An error is about the first message: was it one the kernel had to cut?
            let segmented = self.run_lengths[0] > 1;
            match self.send_prepared(socket) {
                Err(e) if segmented && is_segmentation_refused(&e) => {
                    // This batch goes again, unsegmented. `EINVAL` may be about this one
                    // destination (a segment over its path's MTU), not the kernel: only a
                    // kernel or device that cannot, or refusal after refusal, turns it off.
                    segment = false;
                    self.segment_refusals += 1;
                    if e.raw_os_error() != Some(libc::EINVAL)
                        || self.segment_refusals >= SEGMENT_REFUSALS_BEFORE_OFF
                    {
                        log::info!("UDP segmentation offload refused ({e}): sending one by one");
                        self.segmentation = false;
                    }
                }
                Ok(sent) => {
                    if segmented {
                        self.segment_refusals = 0;
                    }
                    return Ok(sent);
                }
                result => return result,
            }
        }
    }

    /// Fills one header per message (a run of datagrams, or one) and notes each run's length.
    #[cfg(target_os = "linux")]
    fn prepare_messages(&mut self, segment: bool) {
        let count = self.waiting();
        let k = &mut self.kernel;
        // Every pointer a header holds derives from these, taken once (see `RecvBatch::receive`).
        let iovecs = k.iovecs.as_mut_ptr();
        let names = k.names.as_mut_ptr();
        let controls = k.controls.as_mut_ptr();
        for j in 0..count {
            let slot = &mut self.slots[self.done + j];
            // SAFETY: `j < count ≤ capacity`, the length of `iovecs`; the `iovec` written is a
            // plain value describing the slot's own heap bytes.
            unsafe {
                iovecs.add(j).write(libc::iovec {
                    iov_base: slot.as_mut_ptr().cast(),
                    iov_len: slot.len(),
                });
            }
        }
        let mut messages = 0;
        let mut j = 0;
        while j < count {
            let first = self.done + j;
            let len = self.slots[first].len();
            let mut run = 1;
            if segment && (1..=SEGMENT_MAX_BYTES).contains(&len) {
                while j + run < count
                    && run < SEGMENTS_PER_MESSAGE
                    && (run + 1) * len <= SEGMENTED_MAX_BYTES
                    && self.slots[first + run].len() == len
                    && self.destinations[first + run] == self.destinations[first]
                {
                    run += 1;
                }
            }
            // SAFETY: `messages ≤ j < capacity`: inside `controls` (`capacity *
            // SEGMENT_CONTROL_LEN` bytes) and `iovecs` (`capacity` entries).
            let (control, iovec) =
                unsafe { (controls.add(messages * SEGMENT_CONTROL_LEN), iovecs.add(j)) };
            let header = &mut k.headers[messages].msg_hdr;
            header.msg_iov = iovec;
            header.msg_iovlen = run as _;
            header.msg_flags = 0;
            if run > 1 {
                // SAFETY: `control` points at this message's `SEGMENT_CONTROL_LEN` bytes inside
                // `controls`, room for one aligned `cmsghdr` with a `u16` (CMSG_SPACE(2) ≤ 32);
                // the CMSG_* macros compute offsets within it, and the value is written
                // unaligned.
                unsafe {
                    let cmsg = control.cast::<libc::cmsghdr>();
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), len as u16);
                    header.msg_controllen = libc::CMSG_SPACE(2) as _;
                }
                header.msg_control = control.cast();
            } else {
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
            }
            match self.destinations[first] {
                Some(to) => {
                    // SAFETY: `messages < capacity`, the length of `names`; nothing else
                    // refers to this entry while it is written.
                    let name = unsafe { names.add(messages) };
                    header.msg_namelen = write_sockaddr(to, unsafe { &mut *name });
                    header.msg_name = name.cast();
                }
                None => {
                    header.msg_name = std::ptr::null_mut();
                    header.msg_namelen = 0;
                }
            }
            self.run_lengths[messages] = run;
            messages += 1;
            j += run;
        }
        self.kernel.messages = messages;
    }

    /// One `sendmmsg` of the messages [`prepare_messages`](Self::prepare_messages) made.
    #[cfg(target_os = "linux")]
    fn send_prepared(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let messages = self.kernel.messages;
        if messages == 0 {
            return Ok(0);
        }
        // Through `try_io`, as `receive`: a `WouldBlock` re-arms the socket on mio's poll(2).
        let headers = &mut self.kernel.headers;
        let sent = socket.try_io(|| {
            // SAFETY: `socket` is open for the borrow. The first `messages` headers each point at
            // `iovec`s describing live slots' bytes, at a filled `sockaddr_storage` with its true
            // length (if addressed) and at a control message inside `controls` (if segmented); all
            // are owned by this batch and outlive the call. The kernel only reads them, and writes
            // each header's `msg_len`.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers.as_mut_ptr(),
                    messages as libc::c_uint,
                    0,
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        })?;
        let datagrams: usize = self.run_lengths[..sent].iter().sum();
        self.done += datagrams;
        self.reset_if_done();
        Ok(datagrams)
    }

    /// Sends the unsent datagrams, oldest first, in one call (Linux) or one each (elsewhere).
    /// `Ok(n)`: `n ≥ 1` were sent (maybe not all: call again). An error is about the oldest
    /// unsent datagram: `WouldBlock` (the kernel has no room now) or a refusal for good, after
    /// which the caller [`skip_one`](SendBatch::skip_one)s it.
    #[cfg(not(target_os = "linux"))]
    pub fn send(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut sent = 0;
        while self.done < self.filled {
            let i = self.done;
            let result = match self.destinations[i] {
                Some(to) => socket.send_to(&self.slots[i], to),
                None => socket.send(&self.slots[i]),
            };
            match result {
                Ok(_) => {
                    self.done += 1;
                    sent += 1;
                }
                Err(e) if sent > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    if sent > 0 {
                        break; // reported by the next call, about this datagram
                    }
                    return Err(e);
                }
            }
        }
        self.reset_if_done();
        Ok(sent)
    }
}

/// Whether `e` says the kernel or the device cannot segment (`EIO`: no checksum offload;
/// `EINVAL`, `ENOPROTOOPT`: an older kernel), rather than something about the datagram.
#[cfg(target_os = "linux")]
fn is_segmentation_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::ENOPROTOOPT) | Some(libc::EOPNOTSUPP)
    )
}

/// What [`grow_receive_buffer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveBuffer {
    /// The socket's buffer already held at least what was asked (a socket from systemd with
    /// `ReceiveBuffer=`, say): left as it was, never made smaller.
    Kept {
        /// Its payload bytes.
        bytes: usize,
    },
    /// Asked for; the kernel granted `bytes` of payload.
    Set {
        /// Payload bytes granted.
        bytes: usize,
    },
}

/// Payload bytes of a receive buffer the kernel reports as `reported`: Linux reports twice
/// what it grants for payload (the other half is for its bookkeeping).
fn payload_bytes(reported: usize) -> usize {
    if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    }
}

/// Makes the socket's receive buffer at least `bytes` of payload, if the kernel lets it (Linux
/// caps a request at `net.core.rmem_max`); a buffer already that big is left alone.
pub fn grow_receive_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<ReceiveBuffer> {
    let socket = socket2::SockRef::from(socket);
    let now = payload_bytes(socket.recv_buffer_size()?);
    if now >= bytes {
        return Ok(ReceiveBuffer::Kept { bytes: now });
    }
    socket.set_recv_buffer_size(bytes)?;
    Ok(ReceiveBuffer::Set {
        bytes: payload_bytes(socket.recv_buffer_size()?),
    })
}

/// How many datagrams the kernel has dropped on this socket in its whole life (the counter
/// that `SO_RXQ_OVFL` reports with each datagram). A socket from systemd outlives our process,
/// so this is where our own count starts. `None` where it cannot be read (not Linux).
pub fn kernel_drops_so_far(socket: &UdpSocket) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut info = [0u32; (libc::SK_MEMINFO_DROPS + 1) as usize];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: `socket` is open for the borrow; the pointer and length describe `info`, a
        // live array the kernel fills up to `len` bytes (it copies at most what we offer).
        let result = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let filled = len as usize / std::mem::size_of::<u32>();
        (result == 0 && filled > libc::SK_MEMINFO_DROPS as usize)
            .then(|| info[libc::SK_MEMINFO_DROPS as usize])
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        None
    }
}

/// Asks the kernel to report, with each datagram received, how many it dropped on this socket
/// (`SO_RXQ_OVFL`). Linux only; elsewhere this does nothing and [`RecvBatch::kernel_drops`]
/// stays `None`.
pub fn enable_drop_count(socket: &UdpSocket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: `socket` is open for the borrow; the pointer and length describe `on`, a live
        // `c_int`, which is what this option reads. No memory is written.
        let result = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RXQ_OVFL,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
    Ok(())
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

/// The address the kernel wrote into `name` (IPv4 or IPv6).
#[cfg(target_os = "linux")]
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, which it is large and
            // aligned enough for.
            let v4 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for `sockaddr_in6`.
            let v6 =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `name` as the kernel reads it; returns its length.
#[cfg(target_os = "linux")]
fn write_sockaddr(addr: SocketAddr, name: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let converted = socket2::SockAddr::from(addr);
    let len = converted.len();
    // SAFETY: `converted` holds `len` valid bytes of a sockaddr, and `len` is at most the size
    // of `sockaddr_storage`, which `name` is; the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            converted.as_ptr().cast::<u8>(),
            (name as *mut libc::sockaddr_storage).cast::<u8>(),
            len as usize,
        );
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn pair() -> (UdpSocket, std::net::UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        (server, client)
    }

    #[test]
    fn a_receive_buffer_is_grown_but_never_shrunk() {
        let (server, _client) = pair();
        socket2::SockRef::from(&server)
            .set_recv_buffer_size(1 << 20)
            .unwrap();
        let before = socket2::SockRef::from(&server).recv_buffer_size().unwrap();
        let kept = grow_receive_buffer(&server, 64 << 10).unwrap();
        assert!(
            matches!(kept, ReceiveBuffer::Kept { bytes } if bytes >= 64 << 10),
            "{kept:?}"
        );
        assert_eq!(
            socket2::SockRef::from(&server).recv_buffer_size().unwrap(),
            before
        );
        let grown = grow_receive_buffer(&server, 2 << 20).unwrap();
        assert!(matches!(grown, ReceiveBuffer::Set { .. }), "{grown:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_drops_before_us_are_read_from_the_socket() {
        let (server, client) = pair();
        assert_eq!(kernel_drops_so_far(&server), Some(0));
        // The smallest buffer the kernel allows, and nobody reading: loopback delivers within
        // `send_to`, so most of these are dropped at once.
        socket2::SockRef::from(&server)
            .set_recv_buffer_size(1)
            .unwrap();
        let to = server.local_addr().unwrap();
        for _ in 0..200 {
            client.send_to(&[7; 64], to).unwrap();
        }
        let drops = kernel_drops_so_far(&server).unwrap();
        assert!(drops > 0, "{drops}");
    }

    /// Receives until `count` datagrams have come (loopback may deliver a little later).
    #[cfg(target_os = "linux")]
    fn receive_all(batch: &mut RecvBatch, socket: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(20);
        while got.len() < count && Instant::now() < give_up {
            match batch.receive(socket) {
                Ok(n) => (0..n).for_each(|i| got.push(batch.get(i).bytes.to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    #[test]
    fn a_batch_receives_several_datagrams_with_their_senders_and_marks_the_cut_one() {
        let (server, client) = pair();
        let to = server.local_addr().unwrap();
        for request in [&b"one"[..], b"far too long", b"", b"four"] {
            client.send_to(request, to).unwrap();
        }
        let mut batch = RecvBatch::new(8, 5);
        let mut seen = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(20);
        while seen.len() < 4 && Instant::now() < give_up {
            if let Ok(n) = batch.receive(&server) {
                for i in 0..n {
                    let d = batch.get(i);
                    assert_eq!(d.from, client.local_addr().unwrap());
                    seen.push((d.bytes.to_vec(), d.truncated));
                }
            }
        }
        assert_eq!(
            seen,
            vec![
                (b"one".to_vec(), false),
                (b"far t".to_vec(), true),
                (Vec::new(), false),
                (b"four".to_vec(), false),
            ]
        );
    }

    #[test]
    fn a_send_batch_reaches_each_destination_in_order() {
        let (server, client) = pair();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut batch = SendBatch::new(4);
        for (text, to) in [
            (&b"a"[..], client.local_addr().unwrap()),
            (b"bb", other.local_addr().unwrap()),
            (b"ccc", client.local_addr().unwrap()),
        ] {
            batch.next_slot().unwrap().extend_from_slice(text);
            batch.commit(Some(to));
        }
        assert_eq!(batch.waiting(), 3);
        let mut sent = 0;
        while sent < 3 {
            sent += batch.send(&server).unwrap();
        }
        assert_eq!(batch.waiting(), 0);
        let mut buf = [0u8; 8];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"a");
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ccc");
        let n = other.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"bb");
    }

    #[test]
    fn a_run_of_equal_datagrams_to_one_peer_is_cut_by_the_kernel_into_the_same_datagrams() {
        let (server, client) = pair();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (to_client, to_other) = (client.local_addr().unwrap(), other.local_addr().unwrap());
        let mut batch = SendBatch::new(BATCH);
        // 40 of 10 bytes to one peer (a run), then one of 3 bytes, one to another peer, and
        // 20 more of 10 bytes: three runs of one size and two single datagrams.
        let mut expected = Vec::new();
        for i in 0..62u8 {
            let (bytes, to) = match i {
                40 => (b"odd".to_vec(), to_client),
                41 => (b"elsewhere".to_vec(), to_other),
                _ => (vec![b'a' + i % 26; 10], to_client),
            };
            batch.next_slot().unwrap().extend_from_slice(&bytes);
            batch.commit(Some(to));
            if to == to_client {
                expected.push(bytes);
            }
        }
        let mut sent = batch.send(&server).unwrap();
        #[cfg(target_os = "linux")]
        {
            assert!(
                batch.segmentation,
                "loopback takes UDP_SEGMENT (Linux ≥ 4.18)"
            );
            assert_eq!(
                &batch.run_lengths[..4],
                &[40, 1, 1, 20],
                "runs of one size, one peer"
            );
        }
        while sent < 62 {
            sent += batch.send(&server).unwrap();
        }
        let mut buf = [0u8; 64];
        for want in &expected {
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &want[..], "one datagram each, in order");
        }
        let n = other.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"elsewhere");
    }

    #[test]
    fn a_full_batch_takes_no_more_until_sent() {
        let mut batch = SendBatch::new(2);
        for _ in 0..2 {
            batch.next_slot().unwrap().push(1);
            batch.commit(None);
        }
        assert!(batch.is_full());
        assert!(batch.next_slot().is_none());
        batch.skip_one();
        assert_eq!(batch.unsent().count(), 1);
        batch.skip_one();
        assert_eq!(batch.waiting(), 0);
        assert!(batch.next_slot().is_some(), "emptied: room again");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_kernel_reports_its_drops_with_the_next_datagram() {
        let (server, client) = pair();
        enable_drop_count(&server).unwrap();
        socket2::SockRef::from(&server)
            .set_recv_buffer_size(4096)
            .unwrap();
        let to = server.local_addr().unwrap();
        // Far more than a 4 KiB buffer holds (each small datagram costs ~1 KiB of it).
        for _ in 0..200 {
            client.send_to(b"x", to).unwrap();
        }
        let mut batch = RecvBatch::new(BATCH, 16);
        let mut held = receive_all(&mut batch, &server, 1).len();
        while let Ok(n) = batch.receive(&server) {
            held += n;
        }
        // The count rides on datagrams queued after the drops: one more brings it.
        client.send_to(b"y", to).unwrap();
        let last = receive_all(&mut batch, &server, 1);
        assert_eq!(last, vec![b"y".to_vec()]);
        let drops = batch.kernel_drops().expect("SO_RXQ_OVFL is reported");
        let total = held;
        assert_eq!(
            total as u64 + u64::from(drops),
            200,
            "each datagram held or counted"
        );
    }
}
