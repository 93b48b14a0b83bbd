//! The socket's side of batching: a receive buffer big enough for bursts, and the count of
//! datagrams the kernel dropped when it was not.
//!
//! Next: `sockaddr.rs`.

use std::io;

use mio::net::UdpSocket;

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
/// (`SO_RXQ_OVFL`). Linux only; elsewhere this does nothing and [`RecvBatch::kernel_drops`](super::RecvBatch::kernel_drops)
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
