//! What every socket kind shares: the socket's core (its WSK socket, completion-block cache,
//! close machinery and event handlers), closing, socket options and addresses.

use core::cell::UnsafeCell;
use core::future::Future;
use core::net::SocketAddr;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use core::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use wsk_sys::*;
// With either kernel base, typed as the parameters that take them.
use wsk_sys::typed::{FALSE, IO_NO_INCREMENT, KernelMode};

use super::callback::CallbackScope;
use super::client::ClientCore;
use super::completion::{BlockPool, BlockRef, Held};
use super::op::Op;
use super::op::issue::Issue;
use super::retention::{RetainedList, RetainedLock};
use super::shared::{LastReference, Shared, Spare};
use crate::addr::AddressFamily;
use crate::events::Handlers;
use crate::irp::Irp;

use crate::{Error, Result};

/// The WSK category of a socket (`WSK_FLAG_*_SOCKET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    Listen,
    Connection,
    Datagram,
    Stream,
}

impl Category {
    pub(crate) fn flag(self) -> ULONG {
        match self {
            Category::Listen => WSK_FLAG_LISTEN_SOCKET,
            Category::Connection => WSK_FLAG_CONNECTION_SOCKET,
            Category::Datagram => WSK_FLAG_DATAGRAM_SOCKET,
            Category::Stream => WSK_FLAG_STREAM_SOCKET,
        }
    }
}

/// Counts the users of a socket's provider calls and retained data, and defers
/// `WskCloseSocket` until the last one is gone: no WSK function is ever called on a socket
/// after (or while) it is being closed.
struct Gate {
    state: AtomicUsize,
}

const CLOSE_REQUESTED: usize = 1 << (usize::BITS - 1);

impl Gate {
    const fn new() -> Gate {
        Gate {
            state: AtomicUsize::new(0),
        }
    }

    /// Counts a user; fails once the socket is being closed.
    #[inline]
    fn enter(&self) -> Result<()> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & CLOSE_REQUESTED != 0 {
                return Err(Error::SOCKET_CLOSED);
            }
            match self.state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Uncounts a user; returns whether the close must be issued now (it was the last user of
    /// a socket whose close was requested).
    #[inline]
    fn exit(&self) -> bool {
        self.state.fetch_sub(1, Ordering::AcqRel) == CLOSE_REQUESTED | 1
    }

    /// Requests the close; returns whether it must be issued now (no user), `None` when it
    /// was requested before.
    fn request_close(&self) -> Option<bool> {
        let previous = self.state.fetch_or(CLOSE_REQUESTED, Ordering::AcqRel);
        if previous & CLOSE_REQUESTED != 0 {
            None
        } else {
            Some(previous == 0)
        }
    }

    fn close_requested(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSE_REQUESTED != 0
    }
}

/// The most completion blocks a socket keeps when its core becomes a spare
/// ([`super::spare_sockets`]): its blocks beyond, grown by a burst or a reservation, are
/// freed then.
pub(crate) const MAX_SPARE_BLOCKS: usize = 4;

/// Links of a socket in its client's list of open sockets (guarded by the client's lock).
pub(crate) struct Links {
    pub(crate) prev: *const SocketCore,
    pub(crate) next: *const SocketCore,
    pub(crate) linked: bool,
}

/// The shared part of a socket: owned jointly by its handle, the provider (the socket
/// context, released when `WskCloseSocket` completes), operations in flight and retained
/// receive indications.
///
/// # Invariants
/// - `raw` is null until the provider created the socket, then the provider's socket until
///   the close completes; WSK functions are only called on it between a successful
///   [`SocketCore::enter`] and the matching exit.
/// - `close_irp` is allocated with the core, unused until `issue_close`, which the gate runs
///   exactly once.
/// - `this` is the core's own address with the provenance of its allocation
///   ([`Shared::as_ptr`]), set before the core is shared.
pub(crate) struct SocketCore {
    raw: AtomicPtr<WSK_SOCKET>,
    this: AtomicPtr<SocketCore>,
    pub(crate) category: Category,
    pub(crate) family: AddressFamily,
    /// The client: always there while references point to the core; a spare kept by its
    /// client for reuse has none (see [`super::spare_sockets`]).
    client: Option<Shared<ClientCore>>,
    blocks: BlockPool,
    gate: Gate,
    close_irp: UnsafeCell<Irp>,
    closed: AtomicBool,
    close_status: AtomicI32,
    closed_event: UnsafeCell<KEVENT>,
    closed_waker: AtomicWaker,
    pub(crate) handlers: Handlers,
    /// Set once something asked the provider to call this socket's callbacks without an
    /// installed handler's `SO_WSK_EVENT_CALLBACK` (conditional accept): the provider may
    /// then call them with this core as context, so the core may never be given up.
    callbacks_armed: AtomicBool,
    retained: RetainedLock,
    pub(crate) links: UnsafeCell<Links>,
}

// SAFETY: the raw pointers inside are the provider's socket (usable from any thread) and the
// client-list links, guarded by the client's spin lock; every other field is synchronised.
unsafe impl Send for SocketCore {}
// SAFETY: as above.
unsafe impl Sync for SocketCore {}

impl SocketCore {
    /// A core for a socket about to be created (or just accepted), with its close IRP
    /// reserved so that closing can never fail for lack of memory. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn new(
        client: &Shared<ClientCore>,
        category: Category,
        family: AddressFamily,
        handlers: Handlers,
    ) -> Result<Shared<SocketCore>> {
        handlers.check()?;
        if let Some(mut spare) = client.take_spare_socket() {
            // A core reset by the last reference of an earlier socket of this client: its
            // close IRP, event and blocks serve this one.
            let core = spare.value_mut();
            core.client = Some(client.clone());
            core.category = category;
            core.family = family;
            core.handlers = handlers;
            return Ok(spare.revive());
        }
        let close_irp = Irp::new()?;
        let core = Shared::try_new(SocketCore {
            raw: AtomicPtr::new(core::ptr::null_mut()),
            this: AtomicPtr::new(core::ptr::null_mut()),
            category,
            family,
            client: Some(client.clone()),
            blocks: BlockPool::new(),
            gate: Gate::new(),
            close_irp: UnsafeCell::new(close_irp),
            closed: AtomicBool::new(false),
            close_status: AtomicI32::new(STATUS_PENDING),
            closed_event: UnsafeCell::new(KEVENT::default()),
            closed_waker: AtomicWaker::new(),
            handlers,
            callbacks_armed: AtomicBool::new(false),
            retained: RetainedLock::new(RetainedList::new()),
            links: UnsafeCell::new(Links {
                prev: core::ptr::null(),
                next: core::ptr::null(),
                linked: false,
            }),
        })?;
        // SAFETY: the event lives in the core, in non-paged memory, for the core's life.
        unsafe { KeInitializeEvent(core.closed_event.get(), NotificationEvent, FALSE) };
        core.this.store(core.as_ptr().cast_mut(), Ordering::Relaxed);
        Ok(core)
    }

    /// The client the socket belongs to.
    pub(crate) fn client(&self) -> &Shared<ClientCore> {
        // Only a spare, which no reference points to, has no client.
        self.client
            .as_ref()
            .expect("a socket core has its client while it is referenced")
    }

    /// Readies the core of a socket whose last reference went for another socket of its
    /// client: everything of this socket's is dropped or reset (handler, retained list,
    /// waker, links, close state), the close IRP made reusable, the blocks trimmed; returns
    /// the client reference it held, or `None` (and changes nothing) when the core is not
    /// reusable: the provider's socket was created and its close never completed (which a
    /// last reference never sees, as the provider holds one until then).
    ///
    /// Exclusive access: no reference to the core, no request in flight, no block in use.
    /// IRQL <= DISPATCH_LEVEL.
    fn reset_for_reuse(&mut self) -> Option<Shared<ClientCore>> {
        // Every field named: one added to the core must be given its fate here too (the
        // values are those `new` starts a socket with).
        let SocketCore {
            raw,
            this: _,
            category: _,
            family: _,
            client,
            blocks,
            gate,
            close_irp,
            closed,
            close_status,
            closed_event,
            closed_waker,
            handlers,
            callbacks_armed,
            retained,
            links,
        } = self;
        if !raw.get_mut().is_null() && !*closed.get_mut() {
            return None;
        }
        let client = client.take()?;
        *raw.get_mut() = core::ptr::null_mut();
        *gate = Gate::new();
        *closed.get_mut() = false;
        *close_status.get_mut() = STATUS_PENDING;
        // SAFETY: the event lives in the core; nobody waits on it (no reference to the core).
        unsafe { KeClearEvent(closed_event.get()) };
        *closed_waker = AtomicWaker::new();
        *handlers = Handlers::none();
        *callbacks_armed.get_mut() = false;
        *retained = RetainedLock::new(RetainedList::new());
        *links.get_mut() = Links {
            prev: core::ptr::null(),
            next: core::ptr::null(),
            linked: false,
        };
        // Used by the close (or never): reset for the next one. Possibly from inside its own
        // completion routine (the close's completion drops the provider's reference, which
        // may be the last), which has returned nothing yet: it touches the IRP no more, and
        // returns `STATUS_MORE_PROCESSING_REQUIRED`, after which the I/O manager does not
        // either — as for an IRP freed there.
        close_irp.get_mut().reuse();
        blocks.trim(MAX_SPARE_BLOCKS);
        Some(client)
    }

    /// The lock of this socket's retained indications.
    pub(crate) fn retained(&self) -> &RetainedLock {
        &self.retained
    }

    /// The completion blocks of this socket's requests.
    pub(crate) fn blocks(&self) -> &BlockPool {
        &self.blocks
    }

    /// The core's address, with the provenance of its allocation (for raw references and
    /// list links).
    pub(crate) fn as_ptr(&self) -> *const SocketCore {
        self.this.load(Ordering::Relaxed)
    }

    /// A new reference to this core.
    pub(crate) fn to_shared(&self) -> Shared<SocketCore> {
        // SAFETY: `as_ptr` has the allocation's provenance; `self` is borrowed from a live
        // reference, which the new one joins.
        unsafe { Shared::clone_from_raw(self.as_ptr()) }
    }

    /// Records the provider's socket and links the core into its client's list; from now on
    /// closing the socket (by its handle, or by the client when it shuts down) goes through
    /// `WskCloseSocket`. Takes over the provider's reference (`context`).
    ///
    /// # Safety
    /// `socket` must be the provider's socket created with `Shared::into_raw(core)` as
    /// context, which the provider now holds.
    pub(crate) unsafe fn attach(core: &Shared<SocketCore>, socket: PWSK_SOCKET) {
        core.raw.store(socket, Ordering::Release);
        if !core.client().link(core) {
            // The client is shutting down: the new socket is closed at once.
            core.request_close();
        }
    }

    /// Adopts a socket the provider created outside this crate (through the same client
    /// registration): a core with no handler of this crate's (the provider calls its
    /// creator's event callbacks with its creator's context), attached to its client like a
    /// created socket. A reference made here stands for the provider's, which the close's
    /// completion releases. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `socket` must be an open socket of `category` created through `client`'s
    /// registration, owned by nobody else (no other party closes it or calls it), with no
    /// request in flight.
    pub(crate) unsafe fn adopt(
        client: &Shared<ClientCore>,
        category: Category,
        family: AddressFamily,
        socket: PWSK_SOCKET,
    ) -> Result<Shared<SocketCore>> {
        if socket.is_null() {
            return Err(Error::INVALID_PARAMETER);
        }
        let core = SocketCore::new(client, category, family, Handlers::foreign())?;
        // The provider's reference, released by `close_complete`.
        let _provider = context_of(&core);
        // SAFETY: forwarded from the caller; the reference above stands for the provider's.
        unsafe { SocketCore::attach(&core, socket) };
        Ok(core)
    }

    /// Gives the provider's socket up: unlinked from its client, never closed by this crate.
    /// Succeeds only for an open socket with no handler, no callbacks armed otherwise
    /// (conditional accept), no close requested, no provider
    /// call in progress and no other reference than `core` and the provider's (no request
    /// in flight, no retained indication, no borrowed view): the caller then drops `core`
    /// and the provider's reference with [`release_context`], releasing the core (kept by
    /// the client as a spare, or freed). Nothing
    /// changes on failure. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn detach(core: &Shared<SocketCore>) -> Result<PWSK_SOCKET> {
        if core.raw.load(Ordering::Acquire).is_null() {
            return Err(Error::SOCKET_CLOSED);
        }
        if core.handlers.installed()
            || core.callbacks_armed.load(Ordering::Acquire)
            || core.ref_count() != 2
        {
            return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
        }
        // Claims the close for good: no user, no close requested; from now on nothing of
        // this crate calls the socket (the client's teardown finds its close requested).
        if core
            .gate
            .state
            .compare_exchange(0, CLOSE_REQUESTED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
        }
        core.client().unlink(core);
        let socket = core.raw.swap(core::ptr::null_mut(), Ordering::AcqRel);
        core.mark_closed(STATUS_SUCCESS);
        Ok(socket)
    }

    /// Records that the provider may call this socket's event callbacks whatever its handler
    /// (set before the request that arms them is issued). IRQL <= DISPATCH_LEVEL.
    pub(crate) fn arm_callbacks(&self) {
        self.callbacks_armed.store(true, Ordering::Release);
    }

    /// Takes a hold that keeps the socket open (retained data); `Err` once closing. Release
    /// it with [`SocketCore::release_hold`].
    pub(crate) fn hold(&self) -> Result<()> {
        self.gate.enter()
    }

    /// Releases a hold taken with [`SocketCore::hold`]; the last one of a closing socket
    /// issues the close.
    #[inline]
    pub(crate) fn release_hold(&self) {
        if self.gate.exit() {
            self.issue_close();
        }
    }

    /// Enters a provider call (or takes a hold, for retained data); `Err` once closing.
    #[inline]
    pub(crate) fn enter(&self) -> Result<SocketGuard<'_>> {
        self.gate.enter()?;
        Ok(SocketGuard { core: self })
    }

    /// The provider's socket and its dispatch table.
    ///
    /// # Safety
    /// Only while a [`SocketGuard`] is held (the socket is not being closed).
    #[inline]
    pub(crate) unsafe fn raw(&self) -> PWSK_SOCKET {
        self.raw.load(Ordering::Acquire)
    }

    /// Requests the close of the socket: `WskCloseSocket` is issued now, or by the last user
    /// still in a provider call. Requests in flight are cancelled and retained indications
    /// revoked at once (given back to the provider), so nothing of the user's — a handler or a
    /// task keeping retained data, a struct dropped in field order — holds the close.
    /// Idempotent; IRQL <= DISPATCH_LEVEL.
    pub(crate) fn request_close(&self) {
        if self.raw.load(Ordering::Acquire).is_null() {
            // Never created: nothing to close.
            self.mark_closed(STATUS_SUCCESS);
            return;
        }
        match self.gate.request_close() {
            Some(true) => self.issue_close(),
            Some(false) => {
                self.blocks.cancel_in_flight();
                super::retention::revoke_all(self);
            }
            None => {}
        }
    }

    pub(crate) fn close_requested(&self) -> bool {
        self.gate.close_requested()
    }

    fn issue_close(&self) {
        // SAFETY: reached exactly once (the gate hands the close to one caller), so the IRP
        // is taken once; the socket is open and no provider call is in progress on it.
        unsafe {
            // The IRP stays owned by the core: reused if the core is, freed with it.
            let irp_ptr = (*self.close_irp.get()).as_ptr();
            IoSetCompletionRoutine(
                irp_ptr,
                wsk_sys::io_completion_routine!(close_complete),
                self.as_ptr().cast_mut().cast(),
                true,
                true,
                true,
            );
            let socket = self.raw.load(Ordering::Acquire);
            let basic = (*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
            let close = (*basic)
                .WskCloseSocket
                .expect("every socket has WskCloseSocket");
            let _ = close(socket, irp_ptr);
        }
    }

    fn mark_closed(&self, status: NTSTATUS) {
        self.close_status.store(status, Ordering::Relaxed);
        self.closed.store(true, Ordering::SeqCst);
        // SAFETY: the event lives in the core, alive while `self` is.
        unsafe { KeSetEvent(self.closed_event.get(), IO_NO_INCREMENT.into(), FALSE) };
        self.closed_waker.wake();
    }

    /// Whether the close has completed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Issues a request on this socket: counts it as a user for the duration of the call.
    ///
    /// # Safety
    /// `call` must pass the IRP to exactly one WSK function of this socket.
    #[inline]
    pub(crate) unsafe fn call(
        &self,
        irp: PIRP,
        call: impl FnOnce(PWSK_SOCKET) -> NTSTATUS,
    ) -> NTSTATUS {
        match self.enter() {
            // SAFETY: the guard keeps the socket open for the call.
            Ok(_guard) => call(unsafe { self.raw() }),
            Err(error) => {
                // The socket closed between the request's start and its issue: complete the
                // IRP ourselves so its completion routine runs as for a provider failure.
                // SAFETY: the IRP was armed by the caller and not given to any WSK call; the
                // completion routine registered in its next stack location takes it back.
                unsafe { complete_unissued(irp, error.status()) };
                error.status()
            }
        }
    }
}

impl LastReference for SocketCore {
    /// Goes back to its client for reuse ([`super::spare_sockets`]) unless the client keeps
    /// enough spares already.
    fn last_reference_gone(mut spare: Spare<SocketCore>) -> Option<Spare<SocketCore>> {
        let Some(client) = spare.value_mut().reset_for_reuse() else {
            return Some(spare);
        };
        let unkept = client.keep_spare_socket(spare);
        // Last: this may be the client's last reference, which frees its spares (this one
        // included, if kept), and what was not kept is freed by the caller; neither is
        // touched here any more.
        drop(client);
        unkept
    }
}

impl Drop for SocketCore {
    fn drop(&mut self) {
        debug_assert!(
            self.raw.load(Ordering::Relaxed).is_null() || self.is_closed(),
            "a socket core is dropped only after its close completed"
        );
    }
}

/// A counted user of a socket (see [`SocketCore::enter`]); releasing the last one of a socket
/// being closed issues the close.
pub(crate) struct SocketGuard<'a> {
    core: &'a SocketCore,
}

impl Drop for SocketGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.core.release_hold();
    }
}

/// Completes an armed IRP that never reached the provider, the way the I/O manager would:
/// moves to the stack location the completion routine was registered in and calls it.
///
/// # Safety
/// `irp` must be armed (completion routine in its next stack location) and not in flight.
pub(crate) unsafe fn complete_unissued(irp: PIRP, status: NTSTATUS) {
    // SAFETY: forwarded from the caller.
    unsafe {
        io_status::set_status(&raw mut (*irp).IoStatus, status);
        (*irp).IoStatus.Information = 0;
        let location = IoGetNextIrpStackLocation(irp);
        if let Some(routine) = (*location).CompletionRoutine {
            let _ = routine(core::ptr::null_mut(), irp, (*location).Context);
        }
    }
}

/// Completion routine of `WskCloseSocket`: records the close, unlinks the socket from its
/// client, and releases the provider's reference to the core. Returns
/// `STATUS_MORE_PROCESSING_REQUIRED`: the close IRP belongs to the core.
unsafe extern "system" fn close_complete(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    let _scope = CallbackScope::enter();
    // SAFETY: `context` is the provider's reference to the core (`SocketCore::as_ptr`, the
    // pointer `context_of` gave the provider), released just below: the core is alive until
    // then.
    unsafe {
        let core = Shared::<SocketCore>::from_raw(context.cast::<SocketCore>());
        core.client().unlink(&core);
        core.mark_closed(io_status::status(&raw const (*irp).IoStatus));
        // No callback runs after the close: the handler goes now, not with the core's last
        // reference — what it owns (an operation on this very socket, say) would otherwise
        // keep the core, and so the handler, alive for good.
        let handler = core.handlers.take_after_close();
        drop(core);
        drop(handler);
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A handle's ownership of a socket core: requests the close when dropped.
pub(crate) struct SocketHandle {
    pub(crate) core: Shared<SocketCore>,
}

impl SocketHandle {
    /// Closes the socket; see [`Close`].
    pub(crate) fn close(self) -> Close {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is not dropped; its core is moved out once.
        let core = unsafe { core::ptr::read(&this.core) };
        core.request_close();
        Close { core }
    }
}

impl Drop for SocketHandle {
    fn drop(&mut self) {
        self.core.request_close();
    }
}

/// The closing of a socket (`WskCloseSocket`): the provider cancels the socket's pending
/// requests, and no event callback of the socket runs after the close has completed.
///
/// Await it, or [`wait`](Close::wait) for it at IRQL <= APC_LEVEL. Dropping it does not
/// stop the close; a socket dropped without `close` is closed the same way, in the
/// background.
#[must_use = "the close proceeds anyway; await or wait for it to know it completed"]
pub struct Close {
    core: Shared<SocketCore>,
}

impl Close {
    /// Blocks until the close has completed and returns its status. IRQL <= APC_LEVEL
    /// ([`Error::IRQL_TOO_HIGH`] otherwise; the close still proceeds).
    pub fn wait(self) -> Result<()> {
        super::callback::require_wait_allowed()?;
        // SAFETY: the event lives in the core, which `self` keeps alive; waiting is allowed.
        unsafe {
            KeWaitForSingleObject(
                self.core.closed_event.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                core::ptr::null_mut(),
            );
        }
        Error::check(self.core.close_status.load(Ordering::Relaxed))
    }
}

impl Future for Close {
    type Output = Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.core.is_closed() {
            self.core.closed_waker.register(cx.waker());
            if !self.core.is_closed() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Error::check(self.core.close_status.load(Ordering::Relaxed)))
    }
}

impl core::fmt::Debug for Close {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Close")
            .field("closed", &self.core.is_closed())
            .finish()
    }
}

// ---- requests shared by several socket kinds ------------------------------------------------

/// Which address of a socket to query.
#[derive(Clone, Copy)]
pub(crate) enum WhichAddress {
    Local,
    Remote,
}

/// `WskGetLocalAddress` / `WskGetRemoteAddress`: yields the address.
pub struct AddressRequest {
    pub(crate) core: Shared<SocketCore>,
    pub(crate) which: WhichAddress,
}

impl Issue for AddressRequest {
    type Output = Result<SocketAddr>;

    fn start(&mut self) -> Result<BlockRef> {
        BlockRef::for_socket(&self.core)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let which = self.which;
        let category = self.core.category;
        // SAFETY: the scratch address lives in the block, alive until the completion; the
        // dispatch table is the one of the socket's category.
        unsafe {
            let addr = (*block.scratch_ptr()).local.as_mut_ptr();
            self.core.call(irp, |socket| {
                let get = match (category, which) {
                    (_, WhichAddress::Local) => basic_local_address(socket, category),
                    (Category::Connection, WhichAddress::Remote) => {
                        (*(*socket)
                            .Dispatch
                            .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>())
                        .WskGetRemoteAddress
                    }
                    (Category::Stream, WhichAddress::Remote) => {
                        (*(*socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>())
                            .WskGetRemoteAddress
                    }
                    (_, WhichAddress::Remote) => None,
                };
                match get {
                    Some(get) => get(socket, addr, irp),
                    None => {
                        complete_unissued(irp, STATUS_NOT_SUPPORTED);
                        STATUS_NOT_SUPPORTED
                    }
                }
            })
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Self::Output {
        Error::check(status)?;
        // SAFETY: the request is done: exclusive access to the scratch fields.
        unsafe { block.scratch().local.to_socket_addr() }
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}

/// # Safety
/// `socket` must be an open socket of `category`.
unsafe fn basic_local_address(
    socket: PWSK_SOCKET,
    category: Category,
) -> PFN_WSK_GET_LOCAL_ADDRESS {
    // SAFETY: the dispatch table of the socket is the one of its category.
    unsafe {
        match category {
            Category::Listen => {
                (*(*socket).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>()).WskGetLocalAddress
            }
            Category::Connection => {
                (*(*socket)
                    .Dispatch
                    .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>())
                .WskGetLocalAddress
            }
            Category::Datagram => {
                (*(*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>()).WskGetLocalAddress
            }
            Category::Stream => {
                (*(*socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>()).WskGetLocalAddress
            }
        }
    }
}

/// `WskBind`.
pub struct BindRequest {
    pub(crate) core: Shared<SocketCore>,
    pub(crate) address: SocketAddr,
}

impl Issue for BindRequest {
    type Output = Result<()>;

    fn start(&mut self) -> Result<BlockRef> {
        crate::addr::require_family(&self.address, self.core.family)?;
        let mut block = BlockRef::for_socket(&self.core)?;
        // SAFETY: no request in flight on a fresh block.
        unsafe { block.scratch().local = crate::addr::RawAddr::from_socket_addr(&self.address) };
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let category = self.core.category;
        // SAFETY: as for `AddressRequest::issue`.
        unsafe {
            let addr = (*block.scratch_ptr()).local.as_mut_ptr();
            self.core.call(irp, |socket| {
                let bind = match category {
                    Category::Listen => {
                        (*(*socket).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>()).WskBind
                    }
                    Category::Connection => {
                        (*(*socket)
                            .Dispatch
                            .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>())
                        .WskBind
                    }
                    Category::Datagram => {
                        (*(*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>()).WskBind
                    }
                    Category::Stream => {
                        (*(*socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>()).WskBind
                    }
                };
                bind.expect("every socket but a basic one has WskBind")(socket, addr, 0, irp)
            })
        }
    }

    fn finish(
        &mut self,
        _block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Self::Output {
        Error::check(status)?;
        // Listening and datagram sockets may have events once bound: those of a handler
        // given at creation are enabled now.
        match self.core.category {
            Category::Listen | Category::Datagram => crate::events::enable_installed(&self.core),
            Category::Connection | Category::Stream => Ok(()),
        }
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}

/// A socket option value: what the typed option requests send and receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OptionValue {
    Ulong(ULONG),
    Linger { enabled: bool, seconds: u16 },
}

impl OptionValue {
    fn encode(self, out: &mut [u8; 16]) -> usize {
        match self {
            OptionValue::Ulong(v) => {
                out[..4].copy_from_slice(&v.to_ne_bytes());
                4
            }
            OptionValue::Linger { enabled, seconds } => {
                out[..2].copy_from_slice(&u16::from(enabled).to_ne_bytes());
                out[2..4].copy_from_slice(&seconds.to_ne_bytes());
                4
            }
        }
    }
}

/// `WskControlSocket` with `WskSetOption` / `WskGetOption`.
pub struct OptionRequest {
    pub(crate) core: Shared<SocketCore>,
    pub(crate) level: ULONG,
    pub(crate) name: ULONG,
    /// `Some` to set, `None` to get (a 4-byte value).
    pub(crate) value: Option<OptionValue>,
}

impl Issue for OptionRequest {
    type Output = Result<u32>;

    fn start(&mut self) -> Result<BlockRef> {
        // Options whose value is a pointer (a security descriptor, event callbacks) go
        // through `SocketOptions::control`, whose caller vouches for the pointer: not from
        // safe code with a 4-byte value.
        if crate::control::carries_pointer(self.level, self.name) {
            return Err(Error::INVALID_PARAMETER);
        }
        let mut block = BlockRef::for_socket(&self.core)?;
        // SAFETY: no request in flight on a fresh block.
        let scratch = unsafe { block.scratch() };
        scratch.option = [0; 16];
        scratch.option_returned = 0;
        if let Some(value) = self.value {
            value.encode(&mut scratch.option);
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let (level, name, value) = (self.level, self.name, self.value);
        // SAFETY: the option buffer lives in the block until the completion.
        unsafe {
            let scratch = block.scratch_ptr();
            let buffer = (*scratch).option.as_mut_ptr().cast::<core::ffi::c_void>();
            self.core.call(irp, |socket| {
                let basic = (*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
                let control = (*basic)
                    .WskControlSocket
                    .expect("every socket has WskControlSocket");
                match value {
                    Some(_) => control(
                        socket,
                        WskSetOption,
                        name,
                        level,
                        4,
                        buffer,
                        0,
                        core::ptr::null_mut(),
                        core::ptr::null_mut(),
                        irp,
                    ),
                    None => control(
                        socket,
                        WskGetOption,
                        name,
                        level,
                        0,
                        core::ptr::null_mut(),
                        4,
                        buffer,
                        core::ptr::null_mut(),
                        irp,
                    ),
                }
            })
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Self::Output {
        Error::check(status)?;
        // SAFETY: the request is done: exclusive access to the scratch fields.
        let bytes = unsafe { block.scratch().option };
        Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}

/// The operation returned by the option setters of every socket kind.
pub type SetOption = Op<OptionRequest>;

/// Enables event callbacks on a socket (`SO_WSK_EVENT_CALLBACK`, no IRP: it completes at
/// once). IRQL <= DISPATCH_LEVEL.
pub(crate) fn enable_events(core: &SocketCore, mask: ULONG) -> Result<()> {
    let guard = core.enter()?;
    let mut control = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: core::ptr::from_ref(&wsk_sys::NPI_WSK_INTERFACE_ID).cast_mut(),
        EventMask: mask,
    };
    // SAFETY: the guard keeps the socket open; the control structure is read during the call
    // (no IRP: the option completes synchronously).
    let status = unsafe {
        let socket = core.raw();
        let basic = (*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
        let control_socket = (*basic)
            .WskControlSocket
            .expect("every socket has WskControlSocket");
        control_socket(
            socket,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>() as SIZE_T,
            (&raw mut control).cast(),
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    drop(guard);
    Error::check(status)
}

/// The raw pointer form of a core kept by the provider as socket context.
pub(crate) fn context_of(core: &Shared<SocketCore>) -> PVOID {
    core.clone().into_raw().cast_mut().cast()
}

/// Takes back a provider reference that the provider did not keep (the socket was not
/// created).
///
/// # Safety
/// `context` must come from [`context_of`] and not be held by the provider.
pub(crate) unsafe fn release_context(context: PVOID) {
    // SAFETY: forwarded from the caller.
    drop(unsafe { Shared::<SocketCore>::from_raw(context.cast::<SocketCore>()) });
}

/// A socket handle made from the provider's reference for the length of an event callback
/// (the socket context), without a count of its own: it is never dropped, so it neither
/// closes the socket nor releases the provider's reference. Handlers reach their socket
/// through it instead of owning it (which would be a cycle: the socket owns its handler).
pub(crate) struct BorrowedSocket<K> {
    socket: core::mem::ManuallyDrop<K>,
}

impl<K: SocketKind> BorrowedSocket<K> {
    /// # Safety
    /// `context` must be a socket context from [`context_of`] of a socket of kind `K`, held by
    /// the provider for as long as the view lives (true inside an event callback).
    pub(crate) unsafe fn new(context: PVOID) -> BorrowedSocket<K> {
        // SAFETY: the context has the provenance of the core's allocation and stands for the
        // provider's reference, which the view borrows and never gives back (ManuallyDrop).
        let core = unsafe { Shared::from_raw(context.cast::<SocketCore>()) };
        BorrowedSocket {
            socket: core::mem::ManuallyDrop::new(K::from_handle(SocketHandle { core })),
        }
    }

    pub(crate) fn get(&self) -> &K {
        &self.socket
    }
}

/// The core behind a socket context given to an event callback.
///
/// # Safety
/// `context` must be a socket context from [`context_of`] still held by the provider (true
/// inside an event callback: none runs after the close completes).
pub(crate) unsafe fn core_of<'a>(context: PVOID) -> &'a SocketCore {
    // SAFETY: forwarded from the caller.
    unsafe { Shared::borrow_raw(context.cast::<SocketCore>()) }
}

// ---- socket creation -----------------------------------------------------------------------

/// A socket kind: its WSK category and how to wrap a created socket.
pub(crate) trait SocketKind: Sized {
    /// The WSK category.
    const CATEGORY: Category;
    /// Wraps the handle of a socket of this kind.
    fn from_handle(handle: SocketHandle) -> Self;
    /// The handle of the socket.
    fn handle(&self) -> &SocketHandle;
    /// Unwraps the handle (which still closes the socket when dropped).
    fn into_handle(self) -> SocketHandle;
}

/// The socket type and protocol of a category (`SOCK_STREAM`/TCP or `SOCK_DGRAM`/UDP).
pub(crate) fn type_and_protocol(category: Category) -> (USHORT, ULONG) {
    match category {
        Category::Datagram => (SOCK_DGRAM, IPPROTO_UDP),
        _ => (SOCK_STREAM, IPPROTO_TCP),
    }
}

/// A socket being created (`WskSocket`, `WskSocketConnect`) or accepted (`WskAccept`), held
/// by its request's completion block.
///
/// The completion routine settles it ([`NewSocket::complete`]): a created socket is attached
/// to its client at once — linked in its list of open sockets, so the client's shutdown closes
/// it even if the operation is never collected — and a failed creation gives back the
/// reference made for the provider. The operation then collects it with
/// [`NewSocket::into_handle`]; dropped uncollected, it closes the socket.
pub(crate) struct NewSocket {
    core: Option<Shared<SocketCore>>,
    /// Set by `complete`: whether the provider created the socket.
    created: bool,
}

impl NewSocket {
    /// A socket about to be created with `core`'s context ([`context_of`]).
    pub(crate) fn new(core: Shared<SocketCore>) -> NewSocket {
        NewSocket {
            core: Some(core),
            created: false,
        }
    }

    /// Settles the creation with the request's final status and information (the new
    /// `PWSK_SOCKET`). Called once, by the completion routine. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn complete(&mut self, status: NTSTATUS, information: usize) {
        let Some(core) = &self.core else { return };
        if NT_SUCCESS(status) && information != 0 {
            // SAFETY: on success the provider returned its new socket, created with this
            // core's context, and holds that reference.
            unsafe { SocketCore::attach(core, information as PWSK_SOCKET) };
            self.created = true;
        } else {
            // SAFETY: on failure the provider did not keep the context reference made for it.
            unsafe { release_context(core.as_ptr().cast_mut().cast()) };
        }
    }

    /// The socket's handle, once the completion has settled it; the request's error
    /// otherwise.
    pub(crate) fn into_handle(mut self, status: NTSTATUS) -> Result<SocketHandle> {
        Error::check(status)?;
        match (self.core.take(), self.created) {
            (Some(core), true) => Ok(SocketHandle { core }),
            _ => Err(Error::from_status(STATUS_UNSUCCESSFUL)),
        }
    }
}

impl Drop for NewSocket {
    fn drop(&mut self) {
        if let (Some(core), true) = (&self.core, self.created) {
            // Nobody collected the socket: it is closed (it cannot leak and hang
            // `WskDeregister`).
            core.request_close();
        }
    }
}

/// `WskSocket`: creates an unbound socket of kind `K`.
pub struct CreateRequest<K: SocketKind> {
    pub(crate) client: Shared<ClientCore>,
    pub(crate) family: AddressFamily,
    pub(crate) handlers: Option<Handlers>,
    pub(crate) core: Option<Shared<SocketCore>>,
    pub(crate) kind: core::marker::PhantomData<fn() -> K>,
}

impl<K: SocketKind> CreateRequest<K> {
    pub(crate) fn new(
        client: &Shared<ClientCore>,
        family: AddressFamily,
        handlers: Handlers,
    ) -> CreateRequest<K> {
        CreateRequest {
            client: client.clone(),
            family,
            handlers: Some(handlers),
            core: None,
            kind: core::marker::PhantomData,
        }
    }
}

impl<K: SocketKind> Issue for CreateRequest<K> {
    type Output = Result<K>;

    fn start(&mut self) -> Result<BlockRef> {
        let handlers = self.handlers.take().unwrap_or_else(Handlers::none);
        let core = SocketCore::new(&self.client, K::CATEGORY, self.family, handlers)?;
        let mut block = BlockRef::for_client(&self.client)?;
        // SAFETY: fresh block, nothing in flight.
        unsafe {
            block
                .held()
                .store(Held::NewSocket(NewSocket::new(core.clone())))
        };
        self.core = Some(core);
        Ok(block)
    }

    unsafe fn issue(&mut self, _block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let core = self.core.as_ref().expect("started");
        let (socket_type, protocol) = type_and_protocol(K::CATEGORY);
        let dispatch = Handlers::client_dispatch_for(K::CATEGORY);
        let context = context_of(core);
        let client = &self.client;
        // SAFETY: the NPI is captured while the client's handle exists or sockets are open
        // (this request holds a reference to the client core, created from a live handle).
        unsafe {
            let create = client
                .dispatch()
                .WskSocket
                .expect("WskSocket is in every provider");
            create(
                client.npi().Client,
                self.family.raw(),
                socket_type,
                protocol,
                K::CATEGORY.flag(),
                context,
                dispatch,
                core::ptr::null_mut(),
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
        information: usize,
    ) -> Self::Output {
        let _ = information;
        self.core = None;
        // SAFETY: done: exclusive access; the request collects the socket.
        match unsafe { core::mem::take(block.held()) } {
            Held::NewSocket(socket) => socket.into_handle(status).map(K::from_handle),
            _ => Err(Error::from_status(STATUS_UNSUCCESSFUL)),
        }
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}
