//! Socket addresses between WSK structures and `std::net`.

use std::net::SocketAddr;

use wsk_sys::*;

/// Writes an address in the layout of its family.
///
/// # Safety
/// `out` must be writable for a `SOCKADDR_IN6` (28 bytes) for IPv6, a `SOCKADDR_IN` (16)
/// for IPv4.
pub(crate) unsafe fn write_sockaddr(out: PSOCKADDR, address: &SocketAddr) {
    let raw = SOCKADDR_INET::from(*address);
    // SAFETY: forwarded from the caller; only the family's view is written, and `raw` holds
    // that view (built from the address).
    unsafe {
        match address {
            SocketAddr::V4(_) => out.cast::<SOCKADDR_IN>().write(raw.Ipv4),
            SocketAddr::V6(_) => out.cast::<SOCKADDR_IN6>().write(raw.Ipv6),
        }
    }
}

/// The `socket2` domain of an address family.
pub(crate) fn domain(family: ADDRESS_FAMILY) -> Option<socket2::Domain> {
    match family {
        AF_INET => Some(socket2::Domain::IPV4),
        AF_INET6 => Some(socket2::Domain::IPV6),
        _ => None,
    }
}
