//! Raw `wsk-sys` building blocks shared by wsk-host's tests and its benchmark, written as a C
//! driver writes them, with nothing from the `wsk` crate: a registration with its captured
//! provider NPI, a synchronous request (one IRP, reused, whose completion signals a KEVENT),
//! non-paged pool buffers with their MDLs, socket addresses, and the socket calls made with
//! them. The raw echo server is in [`echo`], its std clients in [`clients`].
//!
//! Everything here runs at PASSIVE_LEVEL except where a function says otherwise.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary (and the benchmark) uses a part of the helpers"
)]

pub mod clients;
pub mod echo;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ptr::null_mut;

use wsk_sys::*;

/// The pool tag of the buffers made here.
pub const TAG: ULONG = u32::from_le_bytes(*b"Tst ");

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

/// The unspecified address of `address`'s family, port 0.
pub fn unspecified_like(address: SocketAddr) -> SocketAddr {
    if address.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    }
}

/// A WSK client registration and its captured provider NPI. Dropping it releases the NPI
/// and deregisters (which waits for the client's sockets to be closed).
///
/// # Invariants
/// `registration` is registered and its provider NPI captured until the drop; the box keeps
/// its address stable, as `WskRegister` requires.
pub struct Registration {
    registration: Box<WSK_REGISTRATION>,
    provider: WSK_PROVIDER_NPI,
}

// SAFETY: the registration and the provider NPI are usable from any thread (the kernel has no
// thread affinity for them); the raw pointers are what makes the type `!Send` by default.
unsafe impl Send for Registration {}
// SAFETY: as for `Send`: every use goes through WSK functions that may be called concurrently.
unsafe impl Sync for Registration {}

impl Registration {
    /// `WskRegister` and `WskCaptureProviderNPI` (waiting for the provider). Panics if either
    /// fails.
    pub fn new() -> Registration {
        let mut registration = Box::new(WSK_REGISTRATION::default());
        let mut npi = WSK_CLIENT_NPI {
            ClientContext: null_mut(),
            Dispatch: &CLIENT_DISPATCH,
        };
        let mut provider = WSK_PROVIDER_NPI::default();
        // SAFETY: the NPI's dispatch is static; the registration stays in its box until the
        // drop deregisters it.
        unsafe {
            assert_eq!(WskRegister(&mut npi, &mut *registration), STATUS_SUCCESS);
            assert_eq!(
                WskCaptureProviderNPI(&mut *registration, WSK_INFINITE_WAIT, &mut provider),
                STATUS_SUCCESS
            );
        }
        Registration {
            registration,
            provider,
        }
    }

    /// The client handle for the provider's functions.
    pub fn client(&self) -> PWSK_CLIENT {
        self.provider.Client
    }

    /// The provider's client-level dispatch table.
    pub fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: the captured NPI's dispatch table is valid until the release (the drop).
        unsafe { &*self.provider.Dispatch }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: captured and registered (the type invariant); released and deregistered once.
        unsafe {
            WskReleaseProviderNPI(&mut *self.registration);
            WskDeregister(&mut *self.registration);
        }
    }
}

/// A synchronous request: one IRP, reused for each call, whose completion routine signals a
/// KEVENT the caller waits on — the documentation's way to make a blocking WSK call.
///
/// # Invariants
/// `irp` is an IRP allocated by `IoAllocateIrp` and owned by this value whenever no request
/// is in flight; `event` is boxed so that its address, given to the completion routine, stays
/// valid.
pub struct SyncRequest {
    irp: PIRP,
    event: Box<KEVENT>,
}

// SAFETY: an IRP and an event have no thread affinity.
unsafe impl Send for SyncRequest {}

unsafe extern "system" fn signal(_device: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the `KEVENT` of a `SyncRequest`, which waits for this signal
    // before it is reused or dropped.
    unsafe { KeSetEvent(context.cast(), 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

impl SyncRequest {
    /// Allocates the IRP; `None` when `IoAllocateIrp` fails.
    pub fn new() -> Option<SyncRequest> {
        // SAFETY: IoAllocateIrp has no preconditions at PASSIVE_LEVEL.
        let irp = unsafe { IoAllocateIrp(1, FALSE) };
        if irp.is_null() {
            return None;
        }
        Some(SyncRequest {
            irp,
            event: Box::new(KEVENT::default()),
        })
    }

    /// Readies the IRP for one call and returns it: reset, completion routine set, event
    /// cleared. The caller passes it to exactly one WSK function, then calls [`wait`].
    ///
    /// [`wait`]: SyncRequest::wait
    pub fn irp(&mut self) -> PIRP {
        // SAFETY: the IRP is owned here (no request in flight, the invariant); the event is
        // boxed and outlives the call, which `wait` waits for.
        unsafe {
            IoReuseIrp(self.irp, STATUS_UNSUCCESSFUL);
            KeInitializeEvent(&mut *self.event, NotificationEvent, FALSE);
            IoSetCompletionRoutine(
                self.irp,
                Some(signal),
                (&raw mut *self.event).cast(),
                true,
                true,
                true,
            );
        }
        self.irp
    }

    /// Waits for the call made with [`irp`](SyncRequest::irp) to complete; returns its status
    /// and information.
    pub fn wait(&mut self) -> (NTSTATUS, usize) {
        // SAFETY: the event is initialized and signalled by the completion; after it, the IRP
        // is the caller's again and its status block is final.
        unsafe {
            KeWaitForSingleObject(
                (&raw mut *self.event).cast(),
                Executive,
                KernelMode,
                FALSE,
                null_mut(),
            );
            (
                (*self.irp).IoStatus.u.Status,
                (*self.irp).IoStatus.Information as usize,
            )
        }
    }
}

impl SyncRequest {
    /// [`wait`](SyncRequest::wait) for a call that returns a socket in the information
    /// (`WskSocket`, `WskSocketConnect`, `WskAccept`): the socket, or the failure status.
    pub fn wait_for_socket(&mut self) -> Result<PWSK_SOCKET, NTSTATUS> {
        match self.wait() {
            (STATUS_SUCCESS, socket) => Ok(socket as PWSK_SOCKET),
            (status, _) => Err(status),
        }
    }
}

impl Drop for SyncRequest {
    fn drop(&mut self) {
        // SAFETY: no request owns the IRP (every call was waited for).
        unsafe { IoFreeIrp(self.irp) };
    }
}

/// A non-paged pool buffer and the MDL that describes it.
///
/// # Invariants
/// `data` is a live pool allocation of `len` bytes with tag [`TAG`]; `mdl` describes exactly
/// it, built with `MmBuildMdlForNonPagedPool`.
pub struct PoolBuffer {
    data: *mut u8,
    len: usize,
    mdl: PMDL,
}

// SAFETY: pool memory and MDLs have no thread affinity.
unsafe impl Send for PoolBuffer {}

impl PoolBuffer {
    /// Allocates `len` zeroed bytes (non-zero, at most `u32::MAX`) and builds their MDL.
    /// `None` when an allocation fails.
    pub fn new(len: usize) -> Option<PoolBuffer> {
        assert!(len > 0 && u32::try_from(len).is_ok());
        // SAFETY: a plain allocation; the MDL describes the whole of it and is freed first.
        unsafe {
            let data = ExAllocatePoolWithTag(NonPagedPoolNx, len as SIZE_T, TAG).cast::<u8>();
            if data.is_null() {
                return None;
            }
            std::ptr::write_bytes(data, 0, len);
            let mdl = IoAllocateMdl(data.cast(), len as ULONG, FALSE, FALSE, null_mut());
            if mdl.is_null() {
                ExFreePoolWithTag(data.cast(), TAG);
                return None;
            }
            MmBuildMdlForNonPagedPool(mdl);
            Some(PoolBuffer { data, len, mdl })
        }
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Option<PoolBuffer> {
        let mut buffer = PoolBuffer::new(bytes.len())?;
        buffer.as_mut_slice().copy_from_slice(bytes);
        Some(buffer)
    }

    /// The `WSK_BUF` for `length` bytes at `offset` (within the buffer).
    pub fn wsk_buf(&self, offset: usize, length: usize) -> WSK_BUF {
        assert!(offset + length <= self.len);
        WSK_BUF {
            Mdl: self.mdl,
            Offset: offset as ULONG,
            Length: length as SIZE_T,
        }
    }

    /// The bytes. Not while a request that writes them is in flight.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` initialized bytes (zeroed at allocation), live until the drop.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    /// The bytes, mutably. Not while a request uses them.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

impl Drop for PoolBuffer {
    fn drop(&mut self) {
        // SAFETY: the MDL and the allocation are this value's (the invariant), freed once, the
        // MDL first.
        unsafe {
            IoFreeMdl(self.mdl);
            ExFreePoolWithTag(self.data.cast(), TAG);
        }
    }
}

/// The connection dispatch table of a connection socket.
///
/// # Safety
/// `socket` is an open connection socket.
pub unsafe fn connection_dispatch(
    socket: PWSK_SOCKET,
) -> &'static WSK_PROVIDER_CONNECTION_DISPATCH {
    // SAFETY: a connection socket's dispatch table is its provider's, valid while it is open
    // (the caller's promise; `'static` is as long as the tests use it).
    unsafe {
        &*(*socket)
            .Dispatch
            .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>()
    }
}

/// The listen dispatch table of a listening socket.
///
/// # Safety
/// `socket` is an open listening socket.
pub unsafe fn listen_dispatch(socket: PWSK_SOCKET) -> &'static WSK_PROVIDER_LISTEN_DISPATCH {
    // SAFETY: as for `connection_dispatch`.
    unsafe { &*(*socket).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>() }
}

/// `WskSocketConnect`: a connection socket bound to the unspecified address of `remote`'s
/// family and connected to `remote`.
pub fn connect(
    registration: &Registration,
    request: &mut SyncRequest,
    remote: SocketAddr,
) -> Result<PWSK_SOCKET, NTSTATUS> {
    let mut local = SOCKADDR_INET::from(unspecified_like(remote));
    let mut remote = SOCKADDR_INET::from(remote);
    let irp = request.irp();
    // SAFETY: the addresses live until the wait below; the IRP is readied for this call.
    unsafe {
        (registration.dispatch().WskSocketConnect.unwrap())(
            registration.client(),
            SOCK_STREAM,
            IPPROTO_TCP,
            (&raw mut local).cast(),
            (&raw mut remote).cast(),
            0,
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            irp,
        );
    }
    request.wait_for_socket()
}

/// `WskSocket` (a listening socket) and `WskBind` to `local`; returns the socket and the
/// address it is bound to (`WskGetLocalAddress`).
pub fn listen(
    registration: &Registration,
    request: &mut SyncRequest,
    local: SocketAddr,
) -> (PWSK_SOCKET, SocketAddr) {
    let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
    let irp = request.irp();
    // SAFETY: the IRP is readied for this call; no context or dispatch (no events).
    unsafe {
        (registration.dispatch().WskSocket.unwrap())(
            registration.client(),
            family,
            SOCK_STREAM,
            IPPROTO_TCP,
            WSK_FLAG_LISTEN_SOCKET,
            null_mut(),
            std::ptr::null(),
            null_mut(),
            null_mut(),
            null_mut(),
            irp,
        );
    }
    let socket = request.wait_for_socket().expect("WskSocket");
    let mut address = SOCKADDR_INET::from(local);
    // SAFETY: `socket` is the open listening socket just made; the address lives until the
    // waits below.
    let dispatch = unsafe { listen_dispatch(socket) };
    let irp = request.irp();
    // SAFETY: as above.
    unsafe { (dispatch.WskBind.unwrap())(socket, (&raw mut address).cast(), 0, irp) };
    assert_eq!(request.wait().0, STATUS_SUCCESS, "WskBind");
    let irp = request.irp();
    // SAFETY: as above.
    unsafe { (dispatch.WskGetLocalAddress.unwrap())(socket, (&raw mut address).cast(), irp) };
    assert_eq!(request.wait().0, STATUS_SUCCESS, "WskGetLocalAddress");
    (socket, address.to_socket_addr().expect("an IP address"))
}

/// `WskAccept` on a listening socket; returns the accepted connection socket.
///
/// # Safety
/// `listener` is an open listening socket.
pub unsafe fn accept(
    listener: PWSK_SOCKET,
    request: &mut SyncRequest,
) -> Result<PWSK_SOCKET, NTSTATUS> {
    let irp = request.irp();
    // SAFETY: an open listening socket (the caller's promise); no context, no addresses.
    unsafe {
        (listen_dispatch(listener).WskAccept.unwrap())(
            listener,
            0,
            null_mut(),
            std::ptr::null(),
            null_mut(),
            null_mut(),
            irp,
        );
    }
    request.wait_for_socket()
}

/// `WskCloseSocket`; returns its status.
///
/// # Safety
/// `socket` is an open socket with no request in flight that the caller still needs; it is
/// closed afterwards and must not be used again.
pub unsafe fn close(socket: PWSK_SOCKET, request: &mut SyncRequest) -> NTSTATUS {
    let irp = request.irp();
    // SAFETY: every socket's dispatch table starts with the basic one; the socket is open.
    unsafe {
        let basic = &*(*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
        (basic.WskCloseSocket.unwrap())(socket, irp);
    }
    request.wait().0
}
