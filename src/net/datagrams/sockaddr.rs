//! Socket addresses as the kernel reads and writes them (`sockaddr_storage`), for the batches'
//! headers.

use std::net::SocketAddr;

/// The address the kernel wrote into `name` (IPv4 or IPv6).
pub(super) fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
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
pub(super) fn write_sockaddr(
    addr: SocketAddr,
    name: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
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
