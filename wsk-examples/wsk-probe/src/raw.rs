//! Raw WSK requests with a deadline: what the `wsk` crate does not wrap (basic sockets), and
//! what it cannot survive when a provider breaks the IRP contract — a client-level request
//! (`WskSocketConnect`) that the provider neither completes nor pends. The safe client's
//! teardown waits for every client-level request it issued (the WSK contract says each one
//! completes), so a provider that returns `STATUS_NOT_IMPLEMENTED` without completing the
//! IRP (Wine's `WskSocketConnect`) would hang the unload; here the probe gives up instead.
//!
//! Each request has its own IRP (`IoAllocateIrp`, freed by whoever ends it) and a
//! reference-counted `Request` in non-paged pool, shared by the waiter and the completion
//! routine. The waiter waits for the completion until the deadline, cancels the IRP
//! (`IoCancelIrp`), waits a grace period, and then gives up: it marks the request abandoned
//! and returns. An abandoned request's IRP and `Request` stay allocated — the provider may
//! still hold the IRP, so neither can be freed — and if the completion ever comes, the
//! completion routine frees both (closing first a socket the request created). If it never
//! comes, they are leaked: one IRP and one small pool block per abandoned request. That is
//! the provider's bug: a WSK function that returns anything but `STATUS_PENDING` must have
//! completed the IRP, and one that returns `STATUS_PENDING` must complete it.
//!
//! A completion that came after the driver unloaded would run the completion routine in an
//! image that is gone; the probe cannot prevent that without keeping the image loaded
//! (a driver-object reference that `wsk-sys` does not bind yet). A provider that does not
//! complete within the deadline and the grace period, and then completes after the unload,
//! breaks the contract twice.

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::net::SocketAddr;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};

use wsk_sys::*;

/// How long the waiter waits for a cancelled request before giving up, in milliseconds.
pub const GRACE_MS: u32 = 500;

/// The request is in flight.
const PENDING: u8 = 0;
/// The completion routine ran; the waiter owns the IRP again.
const DONE: u8 = 1;
/// The waiter gave up; the completion routine, if it ever runs, owns and frees everything.
const ABANDONED: u8 = 2;

/// The client dispatch of the raw registration: WSK 1.0, no client event callback.
static RAW_CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

/// What a raw request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Completed: the IRP's status and information.
    Completed(NTSTATUS, usize),
    /// Given up after the deadline, the cancel and the grace period; what the WSK function
    /// returned. The IRP and the request are leaked unless the completion comes later.
    NotCompleted(NTSTATUS),
    /// Not issued: no IRP could be allocated (`STATUS_INSUFFICIENT_RESOURCES`).
    NotIssued(NTSTATUS),
}

/// What the waiter and the completion routine share.
///
/// # Invariants
/// The request's IRP is owned by the provider from the call until the completion routine
/// runs; then by the waiter if `state` went `PENDING → DONE`, or by the completion routine if
/// it found `ABANDONED`.
struct Request {
    state: AtomicU8,
    status: AtomicI32,
    information: AtomicUsize,
    done: UnsafeCell<KEVENT>,
    /// Addresses and option values the provider may read until the completion.
    local: UnsafeCell<SOCKADDR_INET>,
    remote: UnsafeCell<SOCKADDR_INET>,
    value: UnsafeCell<u32>,
    /// The request creates a socket (returned in `Information` on success), which the
    /// completion routine must close if the request was abandoned.
    creates_socket: bool,
}

// SAFETY: the event and the IRP are kernel objects usable from any thread; the addresses and
// value are written before the call and read by the provider only; the rest is atomic.
unsafe impl Send for Request {}
// SAFETY: as above.
unsafe impl Sync for Request {}

/// The completion routine of every raw request. IRQL <= DISPATCH_LEVEL.
unsafe extern "system" fn request_completed(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the reference `issue` gave up for this routine.
    let request = unsafe { Arc::from_raw(context.cast_const().cast::<Request>()) };
    // SAFETY: the IRP is back from the provider.
    let (status, information) = unsafe {
        (
            (*irp).IoStatus.u.Status,
            (*irp).IoStatus.Information as usize,
        )
    };
    request.status.store(status, Ordering::Release);
    request.information.store(information, Ordering::Release);
    if request
        .state
        .compare_exchange(PENDING, DONE, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        // SAFETY: the event lives in the request, which this reference keeps alive;
        // KeSetEvent is callable at DISPATCH_LEVEL.
        unsafe { KeSetEvent(request.done.get(), IO_NO_INCREMENT.into(), FALSE) };
        return STATUS_MORE_PROCESSING_REQUIRED;
    }
    // Abandoned: this routine owns the IRP. A socket the late completion created is closed
    // with the same IRP; everything is freed when that close completes.
    let socket = information as PWSK_SOCKET;
    if request.creates_socket && NT_SUCCESS(status) && !socket.is_null() {
        // SAFETY: the socket was just handed over by the provider; its dispatch begins with
        // the basic table; the IRP is ours and not in flight.
        unsafe {
            let basic = (*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
            if let Some(close) = (*basic).WskCloseSocket {
                IoReuseIrp(irp, STATUS_UNSUCCESSFUL);
                IoSetCompletionRoutine(
                    irp,
                    Some(late_close_completed),
                    Arc::into_raw(request).cast_mut().cast(),
                    true,
                    true,
                    true,
                );
                close(socket, irp);
                return STATUS_MORE_PROCESSING_REQUIRED;
            }
        }
    }
    // SAFETY: the IRP is ours (abandoned), not in flight; freed once.
    unsafe { IoFreeIrp(irp) };
    drop(request);
    STATUS_MORE_PROCESSING_REQUIRED
}

/// The completion of the close of a socket that an abandoned request created late: frees the
/// IRP and the request. IRQL <= DISPATCH_LEVEL.
unsafe extern "system" fn late_close_completed(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the reference `request_completed` gave up for this routine.
    drop(unsafe { Arc::from_raw(context.cast_const().cast::<Request>()) });
    // SAFETY: the IRP is back and ours; freed once.
    unsafe { IoFreeIrp(irp) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Waits on `event` for at most `milliseconds`; whether it was signalled. PASSIVE_LEVEL.
///
/// # Safety
/// `event` is an initialised event that stays valid for the call.
unsafe fn wait_ms(event: *mut KEVENT, milliseconds: u32) -> bool {
    let mut timeout = LARGE_INTEGER {
        QuadPart: -(i64::from(milliseconds) * 10_000),
    };
    // SAFETY: as the caller guarantees; PASSIVE_LEVEL (the probe runs in DriverEntry).
    let status = unsafe {
        KeWaitForSingleObject(event.cast(), Executive, KernelMode, FALSE, &raw mut timeout)
    };
    status == STATUS_SUCCESS
}

/// The addresses and value a request hands the provider.
#[derive(Clone, Copy, Debug, Default)]
pub struct Arguments {
    /// The local address, if the call takes one.
    pub local: Option<SocketAddr>,
    /// The remote address, if the call takes one.
    pub remote: Option<SocketAddr>,
    /// A 4-byte option value.
    pub value: u32,
    /// Whether the request creates a socket, which the completion routine of an abandoned
    /// request closes.
    pub creates_socket: bool,
}

/// Pointers into the request's own storage, valid until the completion.
#[derive(Clone, Copy, Debug)]
pub struct Storage {
    /// The local address.
    pub local: PSOCKADDR,
    /// The remote address.
    pub remote: PSOCKADDR,
    /// The 4-byte value.
    pub value: *mut u32,
}

/// Issues one raw request with `call` (given the armed IRP and the request's storage; it
/// returns what the WSK function returned), waits for its completion until `deadline_ms`,
/// then cancels it and waits [`GRACE_MS`] more, then gives up (see the module documentation).
/// PASSIVE_LEVEL.
///
/// # Safety
/// `call` must pass the IRP to exactly one WSK function, and only hand the provider pointers
/// from the storage it is given (or memory that outlives the driver).
pub unsafe fn issue(
    deadline_ms: u32,
    arguments: Arguments,
    call: impl FnOnce(PIRP, Storage) -> NTSTATUS,
) -> Outcome {
    // SAFETY: one stack location suffices for a WSK request; no quota.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    if irp.is_null() {
        return Outcome::NotIssued(STATUS_INSUFFICIENT_RESOURCES);
    }
    let request = Arc::new(Request {
        state: AtomicU8::new(PENDING),
        status: AtomicI32::new(STATUS_PENDING),
        information: AtomicUsize::new(0),
        done: UnsafeCell::new(KEVENT::default()),
        local: UnsafeCell::new(arguments.local.map(SOCKADDR_INET::from).unwrap_or_default()),
        remote: UnsafeCell::new(
            arguments
                .remote
                .map(SOCKADDR_INET::from)
                .unwrap_or_default(),
        ),
        value: UnsafeCell::new(arguments.value),
        creates_socket: arguments.creates_socket,
    });
    // SAFETY: the event lives in the request, in non-paged pool, not in use yet; the IRP is
    // ours and not in flight; the completion routine takes the reference given up here.
    unsafe {
        KeInitializeEvent(request.done.get(), NotificationEvent, FALSE);
        IoSetCompletionRoutine(
            irp,
            Some(request_completed),
            Arc::into_raw(Arc::clone(&request)).cast_mut().cast(),
            true,
            true,
            true,
        );
    }
    let storage = Storage {
        local: request.local.get().cast(),
        remote: request.remote.get().cast(),
        value: request.value.get(),
    };
    let returned = call(irp, storage);
    // SAFETY: the event lives in the request, which `request` keeps alive.
    let mut completed = unsafe { wait_ms(request.done.get(), deadline_ms) };
    if !completed {
        // SAFETY: the IRP is not freed while the state is PENDING (the waiter frees it only
        // after DONE; the routine only after ABANDONED, which only the waiter sets).
        unsafe { IoCancelIrp(irp) };
        // SAFETY: as above.
        completed = unsafe { wait_ms(request.done.get(), GRACE_MS) };
    }
    if !completed
        && request
            .state
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        return Outcome::NotCompleted(returned);
    }
    // DONE: the routine is signalling, or has signalled, the event.
    // SAFETY: as above; the routine signals the event right after setting DONE.
    unsafe { while !wait_ms(request.done.get(), 1000) {} }
    // SAFETY: the IRP is back and ours (DONE); freed once.
    unsafe { IoFreeIrp(irp) };
    Outcome::Completed(
        request.status.load(Ordering::Acquire),
        request.information.load(Ordering::Acquire),
    )
}

/// The raw registration: `WskRegister` + `WskCaptureProviderNPI` of its own, next to the
/// safe client's (a driver may register several clients).
///
/// # Invariants
/// `registration` is registered and its provider NPI captured until drop, which releases and
/// deregisters once — unless [`RawClient::leak`] was called.
/// `registration` comes from `Box::into_raw` and is freed on drop, after the deregistration.
pub struct RawClient {
    registration: *mut WSK_REGISTRATION,
    provider: WSK_PROVIDER_NPI,
    leaked: bool,
}

impl RawClient {
    /// Registers and captures the provider NPI, waiting at most `wait_ms`. PASSIVE_LEVEL.
    ///
    /// # Errors
    /// The status of `WskRegister` or `WskCaptureProviderNPI`.
    pub fn register(wait_ms: u32) -> Result<RawClient, NTSTATUS> {
        let registration =
            alloc::boxed::Box::into_raw(alloc::boxed::Box::new(WSK_REGISTRATION::default()));
        let mut npi = WSK_CLIENT_NPI {
            ClientContext: null_mut(),
            Dispatch: &RAW_CLIENT_DISPATCH,
        };
        // SAFETY: the NPI is read during the call; the registration lives in pool until it
        // is deregistered (drop); the client dispatch is a static.
        let status = unsafe { WskRegister(&mut npi, registration) };
        if !NT_SUCCESS(status) {
            // SAFETY: from `Box::into_raw` above, not registered.
            drop(unsafe { alloc::boxed::Box::from_raw(registration) });
            return Err(status);
        }
        let mut provider = WSK_PROVIDER_NPI::default();
        // SAFETY: registered just above; PASSIVE_LEVEL.
        let status = unsafe { WskCaptureProviderNPI(registration, wait_ms, &mut provider) };
        if !NT_SUCCESS(status) {
            // SAFETY: registered once, nothing captured; then freed once.
            unsafe {
                WskDeregister(registration);
                drop(alloc::boxed::Box::from_raw(registration));
            }
            return Err(status);
        }
        Ok(RawClient {
            registration,
            provider,
            leaked: false,
        })
    }

    /// The captured provider NPI.
    pub fn provider(&self) -> &WSK_PROVIDER_NPI {
        &self.provider
    }

    /// The provider's dispatch table.
    pub fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: valid while the NPI is captured (invariant).
        unsafe { &*self.provider.Dispatch }
    }

    /// Gives up the deregistration: for a client with a socket whose close never completed,
    /// which `WskDeregister` would wait for. The registration and its pool block are leaked.
    pub fn leak(mut self) {
        self.leaked = true;
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: captured and registered once (invariant); released and deregistered once,
        // then freed once.
        unsafe {
            WskReleaseProviderNPI(self.registration);
            WskDeregister(self.registration);
            drop(alloc::boxed::Box::from_raw(self.registration));
        }
    }
}
