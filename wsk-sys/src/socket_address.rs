//! `SOCKADDR_INET`, the layout of the socket addresses WSK reads and writes, to and from
//! `core::net::SocketAddr`: the conversions every WSK client needs.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::*;

impl From<SocketAddr> for SOCKADDR_INET {
    /// The WSK form of `address`: a `SOCKADDR_IN` or `SOCKADDR_IN6` (port and flow
    /// information in network byte order), the rest of the union zeroed.
    fn from(address: SocketAddr) -> SOCKADDR_INET {
        let mut raw = SOCKADDR_INET::default();
        match address {
            SocketAddr::V4(v4) => {
                raw.Ipv4 = SOCKADDR_IN {
                    sin_family: AF_INET,
                    sin_port: v4.port().to_be(),
                    sin_addr: IN_ADDR {
                        S_un: IN_ADDR_VIEWS {
                            S_addr: u32::from_ne_bytes(v4.ip().octets()),
                        },
                    },
                    sin_zero: [0; 8],
                };
            }
            SocketAddr::V6(v6) => {
                raw.Ipv6 = SOCKADDR_IN6 {
                    sin6_family: AF_INET6,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo().to_be(),
                    sin6_addr: IN6_ADDR {
                        u: IN6_ADDR_VIEWS {
                            Byte: v6.ip().octets(),
                        },
                    },
                    sin6_scope_id: v6.scope_id(),
                };
            }
        }
        raw
    }
}

impl SOCKADDR_INET {
    /// The address, when the family is `AF_INET` or `AF_INET6`; `None` for any other
    /// (`AF_UNSPEC`: storage nobody filled).
    #[must_use]
    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        // SAFETY: every view of the union starts with the family and is plain integers, so
        // reading the family, then the view it names, reads initialised memory.
        unsafe { socket_addr_at(core::ptr::from_ref(self).cast()) }
    }
}

/// The address a `SOCKADDR` of family `AF_INET` or `AF_INET6` holds; `None` for another
/// family or a null pointer.
///
/// # Safety
/// `address` must be null, or point to a `SOCKADDR_IN` when its family is `AF_INET` and to a
/// `SOCKADDR_IN6` when it is `AF_INET6` (a `SOCKADDR` of another family only needs its
/// family readable).
#[must_use]
#[inline]
pub unsafe fn socket_addr_at(address: *const SOCKADDR) -> Option<SocketAddr> {
    if address.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees the pointer is valid for the family it holds.
    unsafe {
        match (*address).sa_family {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_both_families_go_there_and_back() {
        let addresses: [SocketAddr; 3] = [
            "127.0.0.1:7".parse().unwrap(),
            "[::1]:443".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 0x1234, 5)),
        ];
        for address in addresses {
            let raw = SOCKADDR_INET::from(address);
            assert_eq!(raw.to_socket_addr(), Some(address));
        }
        // SAFETY: plain data.
        let v4 = unsafe { SOCKADDR_INET::from(addresses[0]).Ipv4 };
        assert_eq!(v4.sin_port, 7u16.to_be(), "the port in network byte order");
        assert_eq!(SOCKADDR_INET::default().to_socket_addr(), None);
        // SAFETY: a null address is allowed.
        assert_eq!(unsafe { socket_addr_at(core::ptr::null()) }, None);
    }
}
