//! The raw `wsk-sys` side of each comparison, written as the C of Microsoft's WSK
//! documentation with its best practice: a client registered once, one IRP per operation in
//! flight allocated once and reused (`IoReuseIrp`, `IoSetCompletionRoutine`), a completion
//! routine that signals a synchronization `KEVENT`, buffers with their MDL built once.

use std::net::SocketAddr;
use std::ptr::null_mut;

use wsk_sys::*;

/// The pool tag of the benchmark's allocations (`rBne`).
const TAG: ULONG = 0x6e65_4272;

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

/// A raw WSK client: registration and captured provider NPI.
pub struct RawClient {
    registration: Box<WSK_REGISTRATION>,
    provider: WSK_PROVIDER_NPI,
}

impl RawClient {
    /// Registers and captures the provider NPI (PASSIVE_LEVEL).
    pub fn register() -> RawClient {
        let mut registration = Box::new(WSK_REGISTRATION::default());
        let mut provider = WSK_PROVIDER_NPI::default();
        let mut npi = WSK_CLIENT_NPI {
            ClientContext: null_mut(),
            Dispatch: &CLIENT_DISPATCH,
        };
        // SAFETY: the registration lives in a box that outlives the registration; the NPI is
        // read during the call.
        unsafe {
            assert!(NT_SUCCESS(WskRegister(&mut npi, &mut *registration)));
            assert!(NT_SUCCESS(WskCaptureProviderNPI(
                &mut *registration,
                WSK_INFINITE_WAIT,
                &mut provider
            )));
        }
        RawClient {
            registration,
            provider,
        }
    }

    /// `WskSocket` then `WskBind` to `local`: a datagram (`WSK_FLAG_DATAGRAM_SOCKET`) or
    /// listening (`WSK_FLAG_LISTEN_SOCKET`) socket, bound.
    pub fn bound_socket(&self, io: &mut RawIo, flags: ULONG, local: SocketAddr) -> PWSK_SOCKET {
        let (kind, protocol) = if flags == WSK_FLAG_DATAGRAM_SOCKET {
            (SOCK_DGRAM, IPPROTO_UDP)
        } else {
            (SOCK_STREAM, IPPROTO_TCP)
        };
        let mut local = SOCKADDR_INET::from(local);
        // SAFETY: the IRP is not in flight; the address lives across the waits.
        unsafe {
            let irp = io.arm();
            ((*self.provider.Dispatch).WskSocket.unwrap())(
                self.provider.Client,
                AF_INET,
                kind,
                protocol,
                flags,
                null_mut(),
                std::ptr::null(),
                null_mut(),
                null_mut(),
                null_mut(),
                irp,
            );
            let socket = io.wait_ok() as PWSK_SOCKET;
            let irp = io.arm();
            let dispatch = (*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>();
            ((*dispatch).WskBind.unwrap())(socket, (&raw mut local).cast(), 0, irp);
            io.wait_ok();
            socket
        }
    }

    /// `WskSocketConnect` to `remote`: the connected socket.
    pub fn connect(&self, io: &mut RawIo, remote: &mut SOCKADDR_INET) -> PWSK_SOCKET {
        let mut local = SOCKADDR_INET::from(SocketAddr::from(([0u8; 4], 0)));
        // SAFETY: the IRP is not in flight; the addresses live across the wait.
        unsafe {
            let irp = io.arm();
            ((*self.provider.Dispatch).WskSocketConnect.unwrap())(
                self.provider.Client,
                SOCK_STREAM,
                IPPROTO_TCP,
                (&raw mut local).cast(),
                (remote as *mut SOCKADDR_INET).cast(),
                0,
                null_mut(),
                std::ptr::null(),
                null_mut(),
                null_mut(),
                null_mut(),
                irp,
            );
            io.wait_ok() as PWSK_SOCKET
        }
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        // SAFETY: every socket of the client was closed; registered and captured once.
        unsafe {
            WskReleaseProviderNPI(&mut *self.registration);
            WskDeregister(&mut *self.registration);
        }
    }
}

unsafe extern "system" fn signal(_device: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the operation's KEVENT, alive while the IRP is in flight.
    unsafe { KeSetEvent(context.cast(), 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// One operation slot: an IRP reused for every request and the event its completion
/// routine sets.
pub struct RawIo {
    irp: PIRP,
    event: Box<KEVENT>,
}

impl RawIo {
    /// Allocates the IRP and initialises the event.
    pub fn new() -> RawIo {
        let mut event = Box::new(KEVENT::default());
        // SAFETY: PASSIVE_LEVEL; the event lives in its box as long as the slot.
        unsafe {
            KeInitializeEvent(&mut *event, SynchronizationEvent, FALSE);
            let irp = IoAllocateIrp(1, FALSE);
            assert!(!irp.is_null());
            RawIo { irp, event }
        }
    }

    /// Reuses the IRP and sets the completion routine; returns it for one WSK call.
    ///
    /// # Safety
    /// The IRP is not in flight.
    #[inline(always)]
    pub unsafe fn arm(&mut self) -> PIRP {
        // SAFETY: as the caller guarantees; the event outlives the request.
        unsafe {
            IoReuseIrp(self.irp, STATUS_UNSUCCESSFUL);
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

    /// Waits for the completion; returns the IRP's status and information.
    #[inline(always)]
    pub fn wait(&mut self) -> (NTSTATUS, usize) {
        // SAFETY: PASSIVE_LEVEL wait on the slot's event; once it is set the completion
        // routine has run and the IRP is ours again.
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

    /// [`wait`](Self::wait) with a deadline: panics if the request has not completed after
    /// `timeout` (the process ends; the IRP, still in flight, is never reused).
    pub fn wait_within(&mut self, timeout: std::time::Duration) -> (NTSTATUS, usize) {
        // Relative timeouts are negative, in 100 ns units.
        let mut relative = LARGE_INTEGER {
            QuadPart: -i64::try_from(timeout.as_nanos() / 100).unwrap_or(i64::MAX),
        };
        // SAFETY: as in `wait`; the timeout lives across the call.
        unsafe {
            let status = KeWaitForSingleObject(
                (&raw mut *self.event).cast(),
                Executive,
                KernelMode,
                FALSE,
                &mut relative,
            );
            assert_eq!(status, STATUS_SUCCESS, "no completion within {timeout:?}");
            (
                (*self.irp).IoStatus.u.Status,
                (*self.irp).IoStatus.Information as usize,
            )
        }
    }

    /// [`wait`](Self::wait), asserting success; returns the information.
    #[inline(always)]
    pub fn wait_ok(&mut self) -> usize {
        let (status, information) = self.wait();
        assert!(NT_SUCCESS(status), "raw request failed: {status:#010x}");
        information
    }
}

impl Drop for RawIo {
    fn drop(&mut self) {
        // SAFETY: not in flight; freed once.
        unsafe { IoFreeIrp(self.irp) };
    }
}

/// A non-paged buffer and its MDL, built once.
pub struct RawBuf {
    data: *mut u8,
    mdl: PMDL,
    size: usize,
}

impl RawBuf {
    /// `size` bytes of 0x5a.
    pub fn new(size: usize) -> RawBuf {
        // SAFETY: checked allocations; the MDL describes the whole block.
        unsafe {
            let data = ExAllocatePool2(POOL_FLAG_NON_PAGED, size as SIZE_T, TAG).cast::<u8>();
            assert!(!data.is_null());
            data.write_bytes(0x5a, size);
            let mdl = IoAllocateMdl(data.cast(), size as ULONG, FALSE, FALSE, null_mut());
            assert!(!mdl.is_null());
            MmBuildMdlForNonPagedPool(mdl);
            RawBuf { data, mdl, size }
        }
    }

    /// The buffer's size in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// `len` bytes from `offset` as a `WSK_BUF` (`offset + len <= self.len()`).
    #[inline(always)]
    pub fn wsk_buf_range(&self, offset: usize, len: usize) -> WSK_BUF {
        debug_assert!(offset + len <= self.size);
        WSK_BUF {
            Mdl: self.mdl,
            Offset: offset as ULONG,
            Length: len as SIZE_T,
        }
    }

    /// The whole buffer as a `WSK_BUF`.
    #[inline(always)]
    pub fn wsk_buf(&self) -> WSK_BUF {
        WSK_BUF {
            Mdl: self.mdl,
            Offset: 0,
            Length: self.size as SIZE_T,
        }
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // SAFETY: not in use by any request; each freed once.
        unsafe {
            IoFreeMdl(self.mdl);
            ExFreePoolWithTag(self.data.cast(), TAG);
        }
    }
}

/// Issues `WskSend` of the whole buffer on a connection socket.
///
/// # Safety
/// `socket` is a connected socket; the slot's IRP is not in flight; the buffer lives until
/// the completion.
#[inline(always)]
pub unsafe fn issue_send(socket: PWSK_SOCKET, io: &mut RawIo, buf: &RawBuf) {
    // SAFETY: as the caller guarantees; the WSK_BUF is read during the call.
    unsafe {
        let irp = io.arm();
        let mut b = buf.wsk_buf();
        let dispatch = (*socket)
            .Dispatch
            .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
        ((*dispatch).WskSend.unwrap())(socket, &mut b, 0, irp);
    }
}

/// Issues `WskReceive` into the whole buffer.
///
/// # Safety
/// As [`issue_send`].
#[inline(always)]
pub unsafe fn issue_receive(socket: PWSK_SOCKET, io: &mut RawIo, buf: &RawBuf) {
    // SAFETY: as the caller guarantees.
    unsafe {
        let irp = io.arm();
        let mut b = buf.wsk_buf();
        let dispatch = (*socket)
            .Dispatch
            .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
        ((*dispatch).WskReceive.unwrap())(socket, &mut b, 0, irp);
    }
}

/// Issues `WskSendTo` of the whole buffer to `remote`.
///
/// # Safety
/// `socket` is a bound datagram socket; otherwise as [`issue_send`]; `remote` lives until
/// the completion.
#[inline(always)]
pub unsafe fn issue_send_to(
    socket: PWSK_SOCKET,
    io: &mut RawIo,
    buf: &RawBuf,
    remote: *mut SOCKADDR_INET,
) {
    // SAFETY: as the caller guarantees.
    unsafe {
        let irp = io.arm();
        let mut b = buf.wsk_buf();
        let dispatch = (*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>();
        ((*dispatch).WskSendTo.unwrap())(socket, &mut b, 0, remote.cast(), 0, null_mut(), irp);
    }
}

/// Issues `WskReceiveFrom` into the whole buffer; the source address goes to `from`.
///
/// # Safety
/// As [`issue_send_to`].
#[inline(always)]
pub unsafe fn issue_receive_from(
    socket: PWSK_SOCKET,
    io: &mut RawIo,
    buf: &RawBuf,
    from: *mut SOCKADDR_INET,
) {
    // SAFETY: as the caller guarantees.
    unsafe {
        let irp = io.arm();
        let mut b = buf.wsk_buf();
        let dispatch = (*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>();
        ((*dispatch).WskReceiveFrom.unwrap())(
            socket,
            &mut b,
            0,
            from.cast(),
            null_mut(),
            null_mut(),
            null_mut(),
            irp,
        );
    }
}

/// `WskAccept` on a listening socket, waited for: the accepted socket.
///
/// # Safety
/// `listener` is a bound listening socket; the slot's IRP is not in flight.
#[inline(always)]
pub unsafe fn accept(
    listener: PWSK_SOCKET,
    io: &mut RawIo,
    local: &mut SOCKADDR_INET,
    remote: &mut SOCKADDR_INET,
) -> PWSK_SOCKET {
    // SAFETY: as the caller guarantees; the addresses live across the wait.
    unsafe {
        let irp = io.arm();
        let dispatch = (*listener).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>();
        ((*dispatch).WskAccept.unwrap())(
            listener,
            0,
            null_mut(),
            std::ptr::null(),
            (local as *mut SOCKADDR_INET).cast(),
            (remote as *mut SOCKADDR_INET).cast(),
            irp,
        );
        io.wait_ok() as PWSK_SOCKET
    }
}

/// `WskCloseSocket`, waited for.
///
/// # Safety
/// `socket` is open with nothing in flight; it is not used afterwards.
#[inline(always)]
pub unsafe fn close(socket: PWSK_SOCKET, io: &mut RawIo) {
    // SAFETY: as the caller guarantees.
    unsafe {
        let irp = io.arm();
        let dispatch = (*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
        ((*dispatch).WskCloseSocket.unwrap())(socket, irp);
        io.wait_ok();
    }
}

/// `WskGetLocalAddress` of a listening or datagram socket (IPv4).
///
/// # Safety
/// `socket` is a bound socket, a datagram one when `datagram`, else a listening one; the
/// slot's IRP is not in flight.
pub unsafe fn local_address(socket: PWSK_SOCKET, io: &mut RawIo, datagram: bool) -> SocketAddr {
    let mut raw = SOCKADDR_INET::default();
    // SAFETY: as the caller guarantees; the address lives across the wait; the dispatch
    // table is the socket's category's.
    unsafe {
        let irp = io.arm();
        let get = if datagram {
            (*(*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>()).WskGetLocalAddress
        } else {
            (*(*socket).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>()).WskGetLocalAddress
        };
        get.unwrap()(socket, (&raw mut raw).cast(), irp);
        io.wait_ok();
    }
    raw.to_socket_addr()
        .expect("the provider wrote an IP address")
}
