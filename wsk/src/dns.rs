//! Name resolution through the provider (`WskGetAddressInfo` / `WskFreeAddressInfo`).

use alloc::vec::Vec;
use core::net::SocketAddr;

use wsk_sys::*;

use crate::addr::{AddressFamily, from_sockaddr};
use crate::client::{ClientCore, Feature, WskClient};
use crate::completion::{BlockRef, Held};
use crate::irql::{Irql, require_at_most};
use crate::op::Op;
use crate::op::issue::Issue;
use crate::shared::Shared;
use crate::{Error, Result};

/// What to resolve names to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolveHints {
    /// Only addresses of this family (`None`: both).
    pub family: Option<AddressFamily>,
    /// The name is a numeric address; do not query the DNS (`AI_NUMERICHOST`).
    pub numeric_host: bool,
}

/// The operation of [`WskClient::resolve`]: yields the addresses, in the provider's order.
pub type Resolve = Op<ResolveRequest>;

impl WskClient {
    /// Resolves `host` (a name or a numeric address) to socket addresses with `port`
    /// (`WskGetAddressInfo`, Windows 7). Issued at IRQL == PASSIVE_LEVEL (the first poll of a
    /// task spawned at PASSIVE_LEVEL qualifies). The provider's result list is freed
    /// (`WskFreeAddressInfo`) when the addresses are collected at PASSIVE_LEVEL; collected
    /// above (in a task woken at DISPATCH_LEVEL), it is freed at the next PASSIVE_LEVEL
    /// opportunity (the client's next resolution or its teardown), one list per resolution
    /// in flight at most;
    /// [`Error::NOT_SUPPORTED`] on systems without name resolution, [`Error::INVALID_PARAMETER`]
    /// for an empty or over-long name.
    pub fn resolve(&self, host: &str, port: u16) -> Resolve {
        self.resolve_with(host, port, ResolveHints::default())
    }

    /// [`resolve`](Self::resolve) with hints.
    pub fn resolve_with(&self, host: &str, port: u16, hints: ResolveHints) -> Resolve {
        Op::new(ResolveRequest::new(self.core(), host, port, hints))
    }
}

/// `WskGetAddressInfo`.
pub struct ResolveRequest {
    client: Shared<ClientCore>,
    text: Option<Result<Vec<u16>>>,
    host_units: usize,
    hints: ResolveHints,
}

/// Longest host name accepted, in UTF-16 units (a DNS name is at most 255 bytes; numeric
/// IPv6 addresses with a scope are shorter).
const MAX_HOST_UNITS: usize = 255;

impl ResolveRequest {
    fn new(
        client: &Shared<ClientCore>,
        host: &str,
        port: u16,
        hints: ResolveHints,
    ) -> ResolveRequest {
        let host_units = host.encode_utf16().count();
        let text = if host_units == 0 || host_units > MAX_HOST_UNITS || host.contains('\0') {
            Err(Error::INVALID_PARAMETER)
        } else {
            encode(host, port)
        };
        ResolveRequest {
            client: client.clone(),
            text: Some(text),
            host_units,
            hints,
        }
    }
}

/// The host, a NUL, the decimal port and a NUL, as UTF-16. The strings handed to the
/// provider are counted (the NULs are outside their `Length`), but each is also terminated
/// within its `MaximumLength`, as `RtlInitUnicodeString` leaves a string: a provider that
/// reads them as C strings (Wine's, which ignores `Length`) reads the same names.
fn encode(host: &str, port: u16) -> Result<Vec<u16>> {
    let mut text = Vec::new();
    text.try_reserve(host.len() + 7)
        .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
    text.extend(host.encode_utf16());
    text.push(0);
    let mut digits = [0u16; 5];
    let mut value = port;
    let mut count = 0;
    loop {
        digits[count] = u16::from(b'0') + value % 10;
        count += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    text.extend(digits[..count].iter().rev());
    text.push(0);
    Ok(text)
}

/// The counted string of `units` followed by a NUL: `Length` covers `units`, `MaximumLength`
/// the NUL too.
fn terminated(units_and_nul: &[u16]) -> UNICODE_STRING {
    debug_assert_eq!(units_and_nul.last(), Some(&0));
    let bytes = (units_and_nul.len() * 2) as USHORT;
    UNICODE_STRING {
        Length: bytes - 2,
        MaximumLength: bytes,
        Buffer: units_and_nul.as_ptr().cast_mut(),
    }
}

impl Issue for ResolveRequest {
    type Output = Result<Vec<SocketAddr>>;

    fn start(&mut self) -> Result<BlockRef> {
        require_at_most(Irql::PASSIVE)?;
        if !self.client.info().supports(Feature::NameResolution) {
            return Err(Error::NOT_SUPPORTED);
        }
        let text = self.text.take().expect("a resolution starts once")?;
        let mut block = BlockRef::for_client(&self.client)?;
        // A result an earlier user of this block left uncollected is freed now (PASSIVE_LEVEL,
        // with the request just opened keeping the NPI captured).
        // SAFETY: taken from its slot once; from this client's resolution.
        unsafe { self.client.free_address_list(block.take_address_list()) };
        // SAFETY: nothing in flight on the block yet. The strings point into the text the
        // block holds (its heap buffer does not move when the vector is moved in).
        unsafe {
            let scratch = block.scratch();
            scratch.node_name = terminated(&text[..=self.host_units]);
            scratch.service_name = terminated(&text[self.host_units + 1..]);
            scratch.hints = ADDRINFOEXW::default();
            scratch.hints.ai_family = self
                .hints
                .family
                .map_or(i32::from(AF_UNSPEC), |f| i32::from(f.raw()));
            scratch.hints.ai_socktype = i32::from(SOCK_STREAM);
            scratch.hints.ai_flags = if self.hints.numeric_host {
                AI_NUMERICHOST
            } else {
                0
            };
            scratch.result = core::ptr::null_mut();
            block.held().store(Held::Resolution { _names: text });
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        // SAFETY: the strings, hints and result slot live in the block until the completion;
        // the NPI is captured (the request references a client core from a live handle).
        unsafe {
            let scratch = block.scratch_ptr();
            let resolve = self
                .client
                .dispatch()
                .WskGetAddressInfo
                .expect("gated on Windows 7");
            resolve(
                self.client.npi().Client,
                &raw mut (*scratch).node_name,
                &raw mut (*scratch).service_name,
                NS_ALL,
                core::ptr::null_mut(),
                &raw mut (*scratch).hints,
                &raw mut (*scratch).result,
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
    ) -> Self::Output {
        // SAFETY: done: exclusive access.
        unsafe { block.held().store(Held::None) };
        Error::check(status)?;
        // Collecting the result is a client request of its own: it keeps the NPI captured
        // while the list is read and freed, and fails once the client is shutting down (its
        // teardown frees the list).
        self.client.begin_request()?;
        let list = block.take_address_list();
        let addresses = if list.is_null() {
            Err(Error::from_status(STATUS_DEVICE_NOT_READY))
        } else {
            // SAFETY: a successful resolution returns a valid list, freed once below.
            let addresses = unsafe { collect(list) };
            if Irql::current() == Irql::PASSIVE {
                // SAFETY: taken from its slot once; PASSIVE_LEVEL with a request open.
                unsafe { self.client.free_address_list(list) };
            } else {
                // `WskFreeAddressInfo` needs PASSIVE_LEVEL: the list goes back to the block,
                // to be freed at the next PASSIVE_LEVEL opportunity.
                block.return_address_list(list);
            }
            addresses
        };
        self.client.end_request();
        addresses
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}

/// The IPv4 and IPv6 addresses of an `ADDRINFOEXW` list.
///
/// # Safety
/// `list` must be null or a valid list from `WskGetAddressInfo`.
unsafe fn collect(list: PADDRINFOEXW) -> Result<Vec<SocketAddr>> {
    let mut addresses = Vec::new();
    let mut entry = list;
    // SAFETY: the list is valid (caller's guarantee).
    while let Some(info) = unsafe { entry.as_ref() } {
        if !info.ai_addr.is_null() {
            // SAFETY: `ai_addr` points to an address of the family it holds.
            if let Ok(address) = unsafe { from_sockaddr(info.ai_addr) } {
                addresses
                    .try_reserve(1)
                    .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
                addresses.push(address);
            }
        }
        entry = info.ai_next;
    }
    if addresses.is_empty() {
        return Err(Error::from_status(STATUS_NOT_FOUND));
    }
    Ok(addresses)
}
