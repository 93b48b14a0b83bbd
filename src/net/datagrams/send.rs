//! Sending a batch: `sendmmsg` of slots kept between batches (Linux), runs of one size to one
//! peer as one `UDP_SEGMENT` message; `send_to` each elsewhere.
//!
//! Next: `options.rs`.

use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;

#[cfg(target_os = "linux")]
use super::LinuxArrays;
#[cfg(target_os = "linux")]
use super::sockaddr::write_sockaddr;

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
    pub(super) segmentation: bool,
    /// Segmented sends refused since the last one that went through.
    #[cfg(target_os = "linux")]
    segment_refusals: u32,
    /// How many datagrams each message of the last `sendmmsg` carried.
    #[cfg(target_os = "linux")]
    pub(super) run_lengths: Vec<usize>,
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
