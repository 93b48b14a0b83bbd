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
//! The parts: `receive.rs` (`RecvBatch`), `send.rs` (`SendBatch`, `UDP_SEGMENT`), `options.rs`
//! (the receive buffer, the kernel's drop count), `sockaddr.rs` (addresses as the kernel writes
//! them); `LinuxArrays`, the C arrays both batches hand the kernel, is here.
//!
//! Next: `server/sources/`, who judges each datagram's sender before it is answered.

mod options;
mod receive;
mod send;
#[cfg(target_os = "linux")]
mod sockaddr;

pub use options::{ReceiveBuffer, enable_drop_count, grow_receive_buffer, kernel_drops_so_far};
pub use receive::{Received, RecvBatch};
pub use send::{SEGMENT_MAX_BYTES, SendBatch};

/// Datagrams per system call: enough that a busy socket costs a few calls per hundred
/// datagrams; more gains little (the kernel's per-datagram work dominates).
pub const BATCH: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::UdpSocket;
    #[cfg(target_os = "linux")]
    use std::io;
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
