//! Conversions between `core::net::SocketAddr` and the WSK socket address structures.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use wsk_sys::*;

use crate::{Error, Result};

/// An IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl AddressFamily {
    /// The family of an address.
    #[must_use]
    pub fn of(addr: &SocketAddr) -> AddressFamily {
        match addr {
            SocketAddr::V4(_) => AddressFamily::V4,
            SocketAddr::V6(_) => AddressFamily::V6,
        }
    }

    /// The `AF_*` value.
    #[must_use]
    pub fn raw(self) -> ADDRESS_FAMILY {
        match self {
            AddressFamily::V4 => AF_INET,
            AddressFamily::V6 => AF_INET6,
        }
    }

    /// The wildcard address of the family with port 0 (bind to any address, any port).
    #[must_use]
    pub fn unspecified(self) -> SocketAddr {
        match self {
            AddressFamily::V4 => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            AddressFamily::V6 => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        }
    }
}

/// Storage for one IPv4 or IPv6 socket address in the layout WSK reads and writes
/// (`SOCKADDR_INET`).
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct RawAddr(pub(crate) SOCKADDR_INET);

impl RawAddr {
    /// Zeroed storage (family `AF_UNSPEC`), for the provider to fill.
    pub(crate) fn empty() -> RawAddr {
        RawAddr(SOCKADDR_INET::default())
    }

    /// The WSK form of `addr`.
    pub(crate) fn from_socket_addr(addr: &SocketAddr) -> RawAddr {
        RawAddr(SOCKADDR_INET::from(*addr))
    }

    /// The address, when the storage holds an IPv4 or IPv6 one.
    #[inline]
    pub(crate) fn to_socket_addr(self) -> Result<SocketAddr> {
        // SAFETY: every view of the union starts with the family; a zeroed or filled storage
        // is valid for each view (plain integers).
        unsafe { from_sockaddr(core::ptr::from_ref(&self.0).cast()) }
    }

    /// Pointer for WSK calls.
    /// The address's bytes as the provider reads them (`SOCKADDR_IN` or `SOCKADDR_IN6`,
    /// in a `SOCKADDR_INET`).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: SOCKADDR_INET is plain data with no padding the provider could not read:
        // every byte of it is initialised (built from zeroed memory).
        unsafe {
            core::slice::from_raw_parts(
                core::ptr::from_ref(&self.0).cast::<u8>(),
                core::mem::size_of::<SOCKADDR_INET>(),
            )
        }
    }

    pub(crate) fn as_mut_ptr(&mut self) -> PSOCKADDR {
        core::ptr::from_mut(&mut self.0).cast()
    }
}

/// Reads a socket address written by the provider; a null address (one the provider did not
/// give) is `STATUS_INVALID_ADDRESS`.
///
/// # Safety
/// `sa` must be null, or point to a `SOCKADDR_IN` when its family is `AF_INET` and to a
/// `SOCKADDR_IN6` when it is `AF_INET6`.
#[inline]
pub(crate) unsafe fn from_sockaddr(sa: *const SOCKADDR) -> Result<SocketAddr> {
    // SAFETY: forwarded from the caller.
    unsafe { socket_addr_at(sa) }.ok_or_else(|| Error::from_status(STATUS_INVALID_ADDRESS))
}

/// Fails with [`Error::ADDRESS_FAMILY_MISMATCH`] unless `addr` is of `family`.
pub(crate) fn require_family(addr: &SocketAddr, family: AddressFamily) -> Result<()> {
    if AddressFamily::of(addr) == family {
        Ok(())
    } else {
        Err(Error::ADDRESS_FAMILY_MISMATCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for text in ["127.0.0.1:80", "[::1]:8080", "[fe80::1%3]:1", "0.0.0.0:0"] {
            let addr: SocketAddr = text.parse().unwrap();
            let raw = RawAddr::from_socket_addr(&addr);
            assert_eq!(raw.to_socket_addr().unwrap(), addr);
        }
    }

    #[test]
    fn network_byte_order() {
        let raw = RawAddr::from_socket_addr(&"1.2.3.4:258".parse().unwrap());
        // SAFETY: written as IPv4 just above.
        let v4 = unsafe { raw.0.Ipv4 };
        assert_eq!(v4.sin_port.to_ne_bytes(), [1, 2]);
        // SAFETY: plain integer view.
        assert_eq!(unsafe { v4.sin_addr.S_un.S_un_b.s_b1 }, 1);
    }

    #[test]
    fn empty_storage_is_not_an_address() {
        assert_eq!(
            RawAddr::empty().to_socket_addr().unwrap_err().kind(),
            crate::ErrorKind::InvalidAddress
        );
    }
}
