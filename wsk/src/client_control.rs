//! Client-level controls and reverse lookup: `WskControlClient` (transport list, its change
//! notification, and any other control code raw) and `WskGetNameInfo` (a socket address to
//! host and service names).
//!
//! All of them run at IRQL == PASSIVE_LEVEL, the provider's requirement for both functions;
//! called above it they fail with [`Error::IRQL_TOO_HIGH`]. Each keeps the provider NPI
//! captured for its duration (a client request, which the client's teardown waits for, and
//! cancels when it has an IRP).

use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;

use wsk_sys::*;

use crate::addr::RawAddr;
use crate::client::{ClientCore, Feature, WskClient};
use crate::completion::{BlockRef, Held};
use crate::irql::{Irql, require_at_most};
use crate::op::Op;
use crate::op::issue::Issue;
use crate::shared::Shared;
use crate::{Error, Result};

/// One transport of [`WskClient::transports`] (`WSK_TRANSPORT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    /// WSK version the transport supports (`MAKE_WSK_VERSION(major, minor)`).
    pub version: u16,
    /// Socket type (`SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_RAW`).
    pub socket_type: u16,
    /// Protocol (`IPPROTO_TCP`, `IPPROTO_UDP`...).
    pub protocol: u32,
    /// Address family (`AF_INET`, `AF_INET6`...).
    pub family: u16,
    /// The transport provider's identifier (`ProviderId`), as its 16 bytes in memory order.
    pub provider_id: [u8; 16],
}

/// Flags of [`WskClient::name_of`] (`NI_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameInfoFlags {
    /// The numeric address instead of a host name (`NI_NUMERICHOST`).
    pub numeric_host: bool,
    /// The numeric port instead of a service name (`NI_NUMERICSERV`).
    pub numeric_service: bool,
    /// Fail with [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) rather than give the
    /// numeric address when no name is found (`NI_NAMEREQD`).
    pub name_required: bool,
    /// Only the host part of a local host's name (`NI_NOFQDN`).
    pub no_fqdn: bool,
    /// The service is a datagram one (`NI_DGRAM`): UDP's service names.
    pub datagram: bool,
}

impl NameInfoFlags {
    fn raw(self) -> ULONG {
        let mut flags = 0;
        for (set, flag) in [
            (self.numeric_host, NI_NUMERICHOST),
            (self.numeric_service, NI_NUMERICSERV),
            (self.name_required, NI_NAMEREQD),
            (self.no_fqdn, NI_NOFQDN),
            (self.datagram, NI_DGRAM),
        ] {
            if set {
                flags |= flag;
            }
        }
        flags
    }
}

/// The names [`WskClient::name_of`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameInfo {
    /// The host's name (or its numeric address).
    pub host: String,
    /// The service's name (or the numeric port).
    pub service: String,
}

/// The operation of [`WskClient::name_of`].
pub type NameOf = Op<NameInfoRequest>;
/// The operation of [`WskClient::transport_list_change`].
pub type TransportListChange = Op<TransportChangeRequest>;

impl WskClient {
    /// The transports the WSK subsystem offers (`WskControlClient`,
    /// `WSK_TRANSPORT_LIST_QUERY`). Synchronous (no IRP); IRQL == PASSIVE_LEVEL.
    pub fn transports(&self) -> Result<Vec<Transport>> {
        let mut capacity = 8;
        loop {
            let size = capacity * core::mem::size_of::<WSK_TRANSPORT>();
            // SAFETY: WSK_TRANSPORT_LIST_QUERY takes no input and writes plain structures.
            match unsafe { control_client_now(self.core(), WSK_TRANSPORT_LIST_QUERY, &[], size) } {
                Ok(bytes) => return transports_of(&bytes),
                Err(error) if error.needed_size().is_some_and(|n| n > size) && capacity < 4096 => {
                    capacity = error
                        .needed_size()
                        .unwrap_or(0)
                        .div_ceil(core::mem::size_of::<WSK_TRANSPORT>());
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Completes when the list of transports changes (`WskControlClient`,
    /// `WSK_TRANSPORT_LIST_CHANGE`, with an IRP): then read the new list with
    /// [`transports`](Self::transports). Pending until then; dropping the operation cancels
    /// it, and so does the client's teardown. Issued at IRQL == PASSIVE_LEVEL.
    pub fn transport_list_change(&self) -> TransportListChange {
        Op::new(TransportChangeRequest {
            client: self.core().clone(),
        })
    }

    /// Any `WskControlClient` control without an IRP, raw: `code`, the input bytes (read
    /// during the call) and the size of the output buffer; yields the output bytes written.
    /// A buffer too small fails with [`Error::needed_size`] set when the provider tells the
    /// size. Use it for `WSK_CACHE_SD` / `WSK_RELEASE_SD` (a security descriptor for
    /// `SO_WSK_SECURITY`), `WSK_TDI_DEVICENAME_MAPPING`, `WSK_TDI_BEHAVIOR` and
    /// `WSK_SET_STATIC_EVENT_CALLBACKS`; `WSK_TRANSPORT_LIST_CHANGE` needs an IRP and is
    /// refused here ([`Error::INVALID_PARAMETER`]: see
    /// [`transport_list_change`](Self::transport_list_change)). IRQL == PASSIVE_LEVEL.
    ///
    /// # Safety
    /// The provider reads the input as the structure `code` defines and follows the pointers
    /// in it: each must be valid for what the control does with it (a security descriptor
    /// for `WSK_CACHE_SD`; a cached one, released once, for `WSK_RELEASE_SD`). Static event
    /// callbacks (`WSK_SET_STATIC_EVENT_CALLBACKS`) must be set before any socket is created
    /// and enable only events every socket of the client has a handler for: this crate's
    /// callbacks refuse events of sockets without one (an accept event of a listening
    /// socket without a [`ListenEvents`](crate::ListenEvents) handler rejects the
    /// connection), and [`into_raw`](crate::ConnectionSocket::into_raw) is no longer
    /// allowed.
    pub unsafe fn control_client(
        &self,
        code: u32,
        input: &[u8],
        output_capacity: usize,
    ) -> Result<Vec<u8>> {
        if code == WSK_TRANSPORT_LIST_CHANGE {
            return Err(Error::INVALID_PARAMETER);
        }
        // SAFETY: forwarded from the caller.
        unsafe { control_client_now(self.core(), code, input, output_capacity) }
    }

    /// The host and service names of `address` (`WskGetNameInfo`, Windows 7): the reverse
    /// of [`resolve`](Self::resolve). Issued at IRQL == PASSIVE_LEVEL;
    /// [`Error::NOT_SUPPORTED`] on systems without name resolution.
    pub fn name_of(&self, address: SocketAddr, flags: NameInfoFlags) -> NameOf {
        Op::new(NameInfoRequest {
            client: self.core().clone(),
            address,
            flags,
        })
    }
}

/// The transports in the provider's output; the list is allocated fallibly (no memory: an
/// error, never an abort).
fn transports_of(bytes: &[u8]) -> Result<Vec<Transport>> {
    let chunks = bytes.chunks_exact(core::mem::size_of::<WSK_TRANSPORT>());
    let mut transports = Vec::new();
    transports
        .try_reserve_exact(chunks.len())
        .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
    for chunk in chunks {
        // SAFETY: a chunk holds one WSK_TRANSPORT the provider wrote (plain data).
        let raw = unsafe { chunk.as_ptr().cast::<WSK_TRANSPORT>().read_unaligned() };
        transports.push(Transport {
            version: raw.Version,
            socket_type: raw.SocketType,
            protocol: raw.Protocol,
            family: raw.AddressFamily,
            // SAFETY: a GUID is 16 bytes of plain data.
            provider_id: unsafe { core::mem::transmute::<GUID, [u8; 16]>(raw.ProviderId) },
        });
    }
    Ok(transports)
}

/// `WskControlClient` without an IRP, with the NPI captured for the call (a client request).
///
/// # Safety
/// As for [`WskClient::control_client`].
unsafe fn control_client_now(
    client: &Shared<ClientCore>,
    code: ULONG,
    input: &[u8],
    output_capacity: usize,
) -> Result<Vec<u8>> {
    require_at_most(Irql::PASSIVE)?;
    let mut output = Vec::new();
    output
        .try_reserve_exact(output_capacity)
        .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
    output.resize(output_capacity, 0);
    client.begin_request()?;
    let mut returned: SIZE_T = 0;
    // SAFETY: the NPI is captured while the request is open; the buffers live across the
    // synchronous call; the input's pointers are the caller's responsibility.
    let status = unsafe {
        let control = client
            .dispatch()
            .WskControlClient
            .expect("WskControlClient is in every provider");
        control(
            client.npi().Client,
            code,
            input.len() as SIZE_T,
            if input.is_empty() {
                core::ptr::null_mut()
            } else {
                input.as_ptr().cast_mut().cast()
            },
            output_capacity as SIZE_T,
            if output_capacity == 0 {
                core::ptr::null_mut()
            } else {
                output.as_mut_ptr().cast()
            },
            &mut returned,
            core::ptr::null_mut(),
        )
    };
    client.end_request();
    let returned = returned as usize;
    if status == STATUS_BUFFER_TOO_SMALL || status == STATUS_BUFFER_OVERFLOW {
        return Err(if returned > output_capacity {
            Error::buffer_too_small(returned)
        } else {
            Error::from_status(status)
        });
    }
    Error::check(status)?;
    output.truncate(returned.min(output_capacity));
    Ok(output)
}

/// `WskControlClient` with `WSK_TRANSPORT_LIST_CHANGE`: completes on a change.
pub struct TransportChangeRequest {
    client: Shared<ClientCore>,
}

impl Issue for TransportChangeRequest {
    type Output = Result<()>;

    fn start(&mut self) -> Result<BlockRef> {
        require_at_most(Irql::PASSIVE)?;
        BlockRef::for_client(&self.client)
    }

    unsafe fn issue(&mut self, _block: &BlockRef, irp: PIRP) -> NTSTATUS {
        // SAFETY: the NPI is captured (the request is a client request).
        unsafe {
            let control = self
                .client
                .dispatch()
                .WskControlClient
                .expect("WskControlClient is in every provider");
            control(
                self.client.npi().Client,
                WSK_TRANSPORT_LIST_CHANGE,
                0,
                core::ptr::null_mut(),
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        }
    }

    fn finish(
        &mut self,
        _block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Result<()> {
        Error::check(status)
    }

    fn fail(&mut self, error: Error) -> Result<()> {
        Err(error)
    }
}

/// `WskGetNameInfo`: the names are written into UTF-16 buffers the completion block holds.
pub struct NameInfoRequest {
    client: Shared<ClientCore>,
    address: SocketAddr,
    flags: NameInfoFlags,
}

const HOST_UNITS: usize = NI_MAXHOST as usize;
const SERVICE_UNITS: usize = NI_MAXSERV as usize;

impl Issue for NameInfoRequest {
    type Output = Result<NameInfo>;

    fn start(&mut self) -> Result<BlockRef> {
        require_at_most(Irql::PASSIVE)?;
        if !self.client.info().supports(Feature::NameResolution) {
            return Err(Error::NOT_SUPPORTED);
        }
        let mut names = Vec::new();
        names
            .try_reserve_exact(HOST_UNITS + SERVICE_UNITS)
            .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
        names.resize(HOST_UNITS + SERVICE_UNITS, 0u16);
        let mut block = BlockRef::for_client(&self.client)?;
        // SAFETY: nothing in flight on the block yet. The strings point into the buffer the
        // block holds (its heap storage does not move when the vector is moved in).
        unsafe {
            let base = names.as_mut_ptr();
            let scratch = block.scratch();
            scratch.local = RawAddr::from_socket_addr(&self.address);
            scratch.node_name = UNICODE_STRING {
                Length: 0,
                MaximumLength: (HOST_UNITS * 2) as USHORT,
                Buffer: base,
            };
            scratch.service_name = UNICODE_STRING {
                Length: 0,
                MaximumLength: (SERVICE_UNITS * 2) as USHORT,
                Buffer: base.add(HOST_UNITS),
            };
            block.held().store(Held::Resolution { _names: names });
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let length = if self.address.is_ipv4() {
            core::mem::size_of::<SOCKADDR_IN>()
        } else {
            core::mem::size_of::<SOCKADDR_IN6>()
        } as ULONG;
        let flags = self.flags.raw();
        // SAFETY: the address, strings and buffers live in the block until the completion;
        // the NPI is captured (the request is a client request); gated on Windows 7.
        unsafe {
            let scratch = block.scratch_ptr();
            let name_info = self
                .client
                .dispatch()
                .WskGetNameInfo
                .expect("gated on Windows 7");
            name_info(
                self.client.npi().Client,
                (*scratch).local.as_mut_ptr(),
                length,
                &raw mut (*scratch).node_name,
                &raw mut (*scratch).service_name,
                flags,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Result<NameInfo> {
        // SAFETY: done: exclusive access to the block's fields.
        let (host_len, service_len) = unsafe {
            let scratch = block.scratch();
            (
                scratch.node_name.Length as usize / 2,
                scratch.service_name.Length as usize / 2,
            )
        };
        // SAFETY: as above.
        let held = core::mem::take(unsafe { block.held() });
        Error::check(status)?;
        let Held::Resolution { _names: names } = held else {
            return Err(Error::from_status(STATUS_UNSUCCESSFUL));
        };
        let host = &names[..host_len.min(HOST_UNITS)];
        let service = &names[HOST_UNITS..HOST_UNITS + service_len.min(SERVICE_UNITS)];
        Ok(NameInfo {
            host: utf16(host)?,
            service: utf16(service)?,
        })
    }

    fn fail(&mut self, error: Error) -> Result<NameInfo> {
        Err(error)
    }
}

fn utf16(units: &[u16]) -> Result<String> {
    let mut text = String::new();
    // At most three UTF-8 bytes per UTF-16 unit (a surrogate pair: four for two), so no push
    // below grows the string.
    text.try_reserve(units.len().saturating_mul(3))
        .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
    for c in char::decode_utf16(units.iter().copied()) {
        text.push(c.unwrap_or(char::REPLACEMENT_CHARACTER));
    }
    Ok(text)
}
