//! Socket addresses between WSK structures and `std::net`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use wsk_sys::*;

/// Reads an IPv4 or IPv6 socket address.
///
/// # Safety
/// `address` must be null or point to a `SOCKADDR_IN`/`SOCKADDR_IN6` of the family it holds.
pub(crate) unsafe fn read_sockaddr(address: *const SOCKADDR) -> Option<SocketAddr> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let family = address.as_ref()?.sa_family;
        match family {
            AF_INET => {
                let v4 = &*address.cast::<SOCKADDR_IN>();
                let ip = Ipv4Addr::from(v4.sin_addr.S_un.S_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(v4.sin_port),
                )))
            }
            AF_INET6 => {
                let v6 = &*address.cast::<SOCKADDR_IN6>();
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(v6.sin6_addr.u.Byte),
                    u16::from_be(v6.sin6_port),
                    u32::from_be(v6.sin6_flowinfo),
                    v6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// Writes an address in the layout of its family.
///
/// # Safety
/// `out` must be writable for a `SOCKADDR_IN6` (28 bytes) for IPv6, a `SOCKADDR_IN` (16)
/// for IPv4.
pub(crate) unsafe fn write_sockaddr(out: PSOCKADDR, address: &SocketAddr) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match address {
            SocketAddr::V4(v4) => out.cast::<SOCKADDR_IN>().write(SOCKADDR_IN {
                sin_family: AF_INET,
                sin_port: v4.port().to_be(),
                sin_addr: IN_ADDR {
                    S_un: IN_ADDR_VIEWS {
                        S_addr: u32::from_ne_bytes(v4.ip().octets()),
                    },
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(v6) => out.cast::<SOCKADDR_IN6>().write(SOCKADDR_IN6 {
                sin6_family: AF_INET6,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: IN6_ADDR {
                    u: IN6_ADDR_VIEWS {
                        Byte: v6.ip().octets(),
                    },
                },
                sin6_scope_id: v6.scope_id(),
            }),
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
