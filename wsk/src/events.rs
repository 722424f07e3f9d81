//! Event-callback mode: safe handlers for the provider's receive, disconnect, send-backlog,
//! accept, inspect and abort (conditional accept, see `inspect`) and receive-from events.
//!
//! Handlers are trait objects stored with the socket. They run at IRQL <= DISPATCH_LEVEL
//! (usually DISPATCH_LEVEL), possibly on several processors at once: they must not wait —
//! every blocking wait of this crate refuses inside them with [`Error::IRQL_TOO_HIGH`],
//! whatever the IRQL — must not touch paged memory, and must be `Send + Sync`. No callback of a socket runs after its close has completed.
//!
//! The handler is dropped when the socket's close completes, in the close's completion
//! routine (usually at DISPATCH_LEVEL), whoever still references the socket: what it owns must be droppable there (a
//! [`WskClient`](crate::WskClient) is — its teardown moves to a work item; a
//! [`TaskSet`](crate::task::TaskSet) is — it cancels its tasks without waiting).
//!
//! A handler reaches its own socket through the callback's argument
//! ([`ReceivedData::socket`], [`ReceivedDatagrams::socket`]); it must not own it, or the
//! socket, which owns the handler, would never be closed.

use alloc::boxed::Box;
use core::marker::PhantomData;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicPtr, Ordering};

use wsk_sys::*;

use crate::addr::from_sockaddr;
use crate::connection::ConnectionSocket;
use crate::heap::try_box;
use crate::indication::{Brand, ReceiveDecision, ReceivedData, ReceivedDatagrams};
use crate::inspect::{InspectDecision, InspectId, Inspection, PendedList};
use crate::lifecycle::callback::CallbackScope;
use crate::shared::Shared;
use crate::socket::{BorrowedSocket, Category, SocketCore, context_of, core_of, enable_events};
use crate::{Error, Result};

/// Event handlers of a connection socket. Every method runs at IRQL <= DISPATCH_LEVEL.
pub trait ConnectionEvents: Send + Sync + 'static {
    /// Data arrived. Decide what happens to it with a method of [`ReceivedData`] and return
    /// that decision (it is branded with this call: `'a`). A pending
    /// [`receive`](ConnectionSocket::receive) takes data before this is called.
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a>;

    /// The peer disconnected: gracefully (`abortive == false`, no more data will come) or
    /// with a reset, or the connection failed (`abortive == true`).
    fn on_disconnect(&self, abortive: bool) {
        let _ = abortive;
    }

    /// The ideal amount of unacknowledged data to keep in flight changed (bytes).
    fn on_send_backlog(&self, ideal_bytes: usize) {
        let _ = ideal_bytes;
    }
}

/// Event handler of a listening socket. Runs at IRQL <= DISPATCH_LEVEL.
pub trait ListenEvents: Send + Sync + 'static {
    /// A connection arrived. Take it with [`Incoming::accept`] (keep the returned socket)
    /// or refuse it with [`Incoming::reject`].
    fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a>;

    /// The listening socket stopped working (the provider indicated no socket); close it.
    fn on_listen_failed(&self) {}

    /// Conditional accept only (a socket made with [`ListenSocket::create_with_events`]
    /// and `set_conditional_accept(true)` before binding): a connection arrived and waits
    /// for this decision before it can be accepted (`WskInspectEvent`). Let it through
    /// with [`Inspection::accept`], refuse it with [`Inspection::reject`] (the peer sees a
    /// reset), or decide later with [`Inspection::pend`]. The default lets every
    /// connection through.
    ///
    /// [`ListenSocket::create_with_events`]: crate::ListenSocket::create_with_events
    fn on_inspect<'a>(&self, inspection: Inspection<'a>) -> InspectDecision<'a> {
        inspection.accept()
    }

    /// Conditional accept only: the connection `id` went away while it was inspected or
    /// waited to be accepted (`WskAbortEvent`). A
    /// [`PendedInspection`](crate::PendedInspection) of it now fails to complete.
    fn on_inspect_abort(&self, id: InspectId) {
        let _ = id;
    }
}

/// Event handler of a datagram socket. Runs at IRQL <= DISPATCH_LEVEL.
pub trait DatagramEvents: Send + Sync + 'static {
    /// Datagrams arrived. A pending
    /// [`receive_from`](crate::DatagramSocket::receive_from) takes data before this is
    /// called.
    fn on_receive_from<'a>(&self, datagrams: ReceivedDatagrams<'a>) -> ReceiveDecision<'a>;
}

/// The handler stored with a socket.
pub(crate) enum Handler {
    Connection(Box<dyn ConnectionEvents>),
    Listen(Box<dyn ListenEvents>, PendedList),
    Datagram(Box<dyn DatagramEvents>),
}

impl Handler {
    fn mask(&self) -> ULONG {
        match self {
            Handler::Connection(_) => {
                WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG
            }
            Handler::Listen(..) => WSK_EVENT_ACCEPT,
            Handler::Datagram(_) => WSK_EVENT_RECEIVE_FROM,
        }
    }
}

/// A socket's handler slot: empty, or a handler installed once. Event callbacks only read
/// it.
pub(crate) struct Handlers {
    slot: AtomicPtr<Handler>,
}

impl Handlers {
    /// No handler (yet).
    pub(crate) fn none() -> Handlers {
        Handlers {
            slot: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    fn with(handler: Result<Handler>) -> Handlers {
        match handler.and_then(try_box) {
            Ok(boxed) => Handlers {
                slot: AtomicPtr::new(Box::into_raw(boxed)),
            },
            // Allocation failed: an empty slot whose installation below reports it.
            Err(_) => Handlers {
                slot: AtomicPtr::new(FAILED.cast_mut()),
            },
        }
    }

    pub(crate) fn connection(events: impl ConnectionEvents) -> Handlers {
        Handlers::with(try_box(events).map(|b| Handler::Connection(b)))
    }

    pub(crate) fn listen(events: impl ListenEvents) -> Handlers {
        Handlers::with(try_box(events).map(|b| Handler::Listen(b, PendedList::new())))
    }

    pub(crate) fn datagram(events: impl DatagramEvents) -> Handlers {
        Handlers::with(try_box(events).map(|b| Handler::Datagram(b)))
    }

    /// The slot of a socket adopted from a raw pointer: the provider calls the event
    /// callbacks its creator registered, with its creator's context, so no handler of this
    /// crate can ever be installed (`set_events` fails with `STATUS_INVALID_DEVICE_STATE`).
    pub(crate) fn foreign() -> Handlers {
        Handlers {
            slot: AtomicPtr::new(FOREIGN.cast_mut()),
        }
    }

    /// Whether a handler is installed (events of this crate may be enabled on the socket).
    pub(crate) fn installed(&self) -> bool {
        self.get().is_some()
    }

    /// Fails when building the handler ran out of memory.
    pub(crate) fn check(&self) -> Result<()> {
        if self.slot.load(Ordering::Relaxed).cast_const() == FAILED {
            Err(Error::INSUFFICIENT_RESOURCES)
        } else {
            Ok(())
        }
    }

    fn get(&self) -> Option<&Handler> {
        let ptr = self.slot.load(Ordering::Acquire);
        if is_marker(ptr) {
            return None;
        }
        // SAFETY: a non-null, non-marker pointer is a handler installed once and freed only
        // with the slot.
        unsafe { ptr.as_ref() }
    }

    fn install(&self, handlers: Handlers) -> Result<()> {
        handlers.check()?;
        let ptr = handlers.slot.swap(core::ptr::null_mut(), Ordering::AcqRel);
        match self.slot.compare_exchange(
            core::ptr::null_mut(),
            ptr,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(_) => {
                // SAFETY: `ptr` came from `Box::into_raw` and was not installed.
                drop(unsafe { Box::from_raw(ptr) });
                Err(Error::from_status(STATUS_INVALID_DEVICE_STATE))
            }
        }
    }

    /// The client dispatch table to give the provider for a socket of `category`.
    pub(crate) fn client_dispatch_for(category: Category) -> *const core::ffi::c_void {
        match category {
            Category::Connection => (&raw const CONNECTION_DISPATCH).cast(),
            Category::Listen => (&raw const LISTEN_DISPATCH).cast(),
            Category::Datagram => (&raw const DATAGRAM_DISPATCH).cast(),
            Category::Stream => (&raw const STREAM_DISPATCH).cast(),
        }
    }
}

impl Handlers {
    /// Takes the installed handler out, once the socket's close has completed (no callback
    /// runs any more), so the caller can drop it.
    pub(crate) fn take_after_close(&self) -> Option<Box<Handler>> {
        let ptr = self.slot.swap(FAILED.cast_mut(), Ordering::AcqRel);
        if ptr.is_null() || is_marker(ptr) {
            return None;
        }
        // SAFETY: an installed handler came from `Box::into_raw`; it was taken out of the
        // slot once (the slot now holds the marker), and no callback reads it any more.
        Some(unsafe { Box::from_raw(ptr) })
    }
}

impl Drop for Handlers {
    fn drop(&mut self) {
        let ptr = *self.slot.get_mut();
        if !ptr.is_null() && !is_marker(ptr) {
            // SAFETY: an installed handler came from `Box::into_raw`; no callback runs any
            // more (the slot is dropped with the socket, after its close completed).
            drop(unsafe { Box::from_raw(ptr) });
        }
    }
}

/// Marks a slot whose handler could not be allocated.
static FAILED_MARKER: u8 = 0;
const FAILED: *const Handler = (&raw const FAILED_MARKER).cast();
/// Marks the slot of an adopted socket ([`Handlers::foreign`]).
static FOREIGN_MARKER: u8 = 0;
const FOREIGN: *const Handler = (&raw const FOREIGN_MARKER).cast();

/// Whether a slot pointer is one of the markers rather than an installed handler.
fn is_marker(ptr: *mut Handler) -> bool {
    ptr.cast_const() == FAILED || ptr.cast_const() == FOREIGN
}

/// Installs `handlers` on an open socket and enables its events (`SO_WSK_EVENT_CALLBACK`).
pub(crate) fn set_events(core: &SocketCore, handlers: Handlers) -> Result<()> {
    core.handlers.install(handlers)?;
    let mask = core.handlers.get().map_or(0, Handler::mask);
    enable_events(core, mask)
}

/// Enables the events of a handler given at creation, once the socket may have them:
/// connection sockets after connecting, listening and datagram sockets after binding.
pub(crate) fn enable_installed(core: &SocketCore) -> Result<()> {
    core.handlers.check()?;
    match core.handlers.get() {
        Some(handler) => enable_events(core, handler.mask()),
        None => Ok(()),
    }
}

/// See [`enable_installed`]: for connection sockets, right after the connect.
pub(crate) fn enable_after_connect(core: &Shared<SocketCore>) -> Result<()> {
    enable_installed(core)
}

// ---- accept ----------------------------------------------------------------------------------

/// A connection arriving on a listening socket, in [`ListenEvents::on_accept`].
pub struct Incoming<'a> {
    listener: &'a SocketCore,
    local: PSOCKADDR,
    remote: PSOCKADDR,
    socket: PWSK_SOCKET,
    out_context: *mut PVOID,
    out_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
    _brand: Brand<'a>,
}

/// What [`ListenEvents::on_accept`] decided; made by [`Incoming`]'s methods only, and
/// branded with the callback it was made in, like [`ReceiveDecision`]: accepting one
/// connection cannot be answered with the decision about another.
///
/// ```compile_fail,E0521
/// use std::sync::Mutex;
/// use wsk::{AcceptDecision, Incoming};
/// struct Swapper(Mutex<Option<AcceptDecision<'static>>>);
/// impl wsk::ListenEvents for Swapper {
///     fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a> {
///         let previous = self.0.lock().unwrap().replace(incoming.reject());
///         previous.unwrap()
///     }
/// }
/// ```
#[derive(Debug)]
#[must_use = "return the decision from the callback"]
pub struct AcceptDecision<'a> {
    status: NTSTATUS,
    _brand: Brand<'a>,
}

impl<'a> AcceptDecision<'a> {
    fn new(status: NTSTATUS) -> AcceptDecision<'a> {
        AcceptDecision {
            status,
            _brand: PhantomData,
        }
    }
}

impl<'a> Incoming<'a> {
    /// The local address of the connection.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        // SAFETY: the provider gives null or an address of the listener's family.
        unsafe { from_sockaddr(self.local) }
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        // SAFETY: as above.
        unsafe { from_sockaddr(self.remote) }
    }

    /// Takes the connection: returns its socket (keep it; dropping it closes the
    /// connection). On failure (memory is short, or the listener is closing) the
    /// connection is refused and the error returned with the decision.
    #[allow(clippy::type_complexity)]
    pub fn accept(
        self,
    ) -> core::result::Result<(ConnectionSocket, AcceptDecision<'a>), (Error, AcceptDecision<'a>)>
    {
        match self.take() {
            Ok(socket) => Ok((socket, AcceptDecision::new(STATUS_SUCCESS))),
            Err(error) => Err((error, AcceptDecision::new(STATUS_REQUEST_NOT_ACCEPTED))),
        }
    }

    /// Refuses the connection (`STATUS_REQUEST_NOT_ACCEPTED`).
    pub fn reject(self) -> AcceptDecision<'a> {
        AcceptDecision::new(STATUS_REQUEST_NOT_ACCEPTED)
    }

    fn take(&self) -> Result<ConnectionSocket> {
        let _hold = self.listener.enter()?;
        let core = SocketCore::new(
            self.listener.client(),
            Category::Connection,
            self.listener.family,
            Handlers::none(),
        )?;
        // SAFETY: the provider takes the context reference made here when the callback returns
        // STATUS_SUCCESS, which `accept` does exactly when this succeeds; the socket is the
        // accepted one, created with that context.
        unsafe {
            *self.out_context = context_of(&core);
            *self.out_dispatch = (&raw const CONNECTION_DISPATCH).cast();
            SocketCore::attach(&core, self.socket);
        }
        Ok(ConnectionSocket::from_core(core))
    }
}

// ---- trampolines: the C callbacks the provider calls ------------------------------------------

static CONNECTION_DISPATCH: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(receive_event),
    WskDisconnectEvent: Some(disconnect_event),
    WskSendBacklogEvent: Some(send_backlog_event),
};

static LISTEN_DISPATCH: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(accept_event),
    WskInspectEvent: Some(crate::inspect::inspect_event),
    WskAbortEvent: Some(crate::inspect::abort_event),
};

static DATAGRAM_DISPATCH: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(receive_from_event),
};

/// The stream dispatch table: pointers to the two tables above.
#[repr(transparent)]
struct StreamDispatch(WSK_CLIENT_STREAM_DISPATCH);

// SAFETY: the table holds pointers to immutable statics only, never written.
unsafe impl Sync for StreamDispatch {}

static STREAM_DISPATCH: StreamDispatch = StreamDispatch(WSK_CLIENT_STREAM_DISPATCH {
    Listen: &raw const LISTEN_DISPATCH,
    Connect: &raw const CONNECTION_DISPATCH,
});

/// The listen handler of a socket and its pended inspections.
pub(crate) fn listen_handler(core: &SocketCore) -> Option<(&dyn ListenEvents, &PendedList)> {
    match core.handlers.get() {
        Some(Handler::Listen(handler, pended)) => Some((handler.as_ref(), pended)),
        _ => None,
    }
}

fn connection_handler(core: &SocketCore) -> Option<&dyn ConnectionEvents> {
    match core.handlers.get() {
        Some(Handler::Connection(handler)) => Some(handler.as_ref()),
        _ => None,
    }
}

unsafe extern "system" fn receive_event(
    context: PVOID,
    flags: ULONG,
    indication: PWSK_DATA_INDICATION,
    bytes_indicated: SIZE_T,
    bytes_accepted: *mut SIZE_T,
) -> NTSTATUS {
    let _scope = CallbackScope::enter();
    // SAFETY: the provider calls event callbacks with the context it was given, which it
    // holds until the close completes.
    let core = unsafe { core_of(context) };
    let Some(handler) = connection_handler(core) else {
        return STATUS_DATA_NOT_ACCEPTED;
    };
    if indication.is_null() {
        // The socket is no longer functional.
        handler.on_disconnect(true);
        return STATUS_SUCCESS;
    }
    let data = ReceivedData {
        core,
        // SAFETY: the context of a connection (or stream) socket, held by the provider for
        // the callback.
        socket: unsafe { BorrowedSocket::new(context) },
        indication,
        len: bytes_indicated as usize,
        flags,
        _brand: PhantomData,
    };
    let decision = handler.on_receive(data);
    if let Some(accepted) = decision.accepted {
        if !bytes_accepted.is_null() {
            // SAFETY: the provider gives a writable count.
            unsafe { *bytes_accepted = accepted as SIZE_T };
        }
    }
    decision.settle(core)
}

unsafe extern "system" fn disconnect_event(context: PVOID, flags: ULONG) -> NTSTATUS {
    let _scope = CallbackScope::enter();
    // SAFETY: as in `receive_event`.
    let core = unsafe { core_of(context) };
    if let Some(handler) = connection_handler(core) {
        handler.on_disconnect(flags & WSK_FLAG_ABORTIVE != 0);
    }
    STATUS_SUCCESS
}

unsafe extern "system" fn send_backlog_event(context: PVOID, ideal: SIZE_T) -> NTSTATUS {
    let _scope = CallbackScope::enter();
    // SAFETY: as in `receive_event`.
    let core = unsafe { core_of(context) };
    if let Some(handler) = connection_handler(core) {
        handler.on_send_backlog(ideal as usize);
    }
    STATUS_SUCCESS
}

unsafe extern "system" fn accept_event(
    context: PVOID,
    _flags: ULONG,
    local: PSOCKADDR,
    remote: PSOCKADDR,
    socket: PWSK_SOCKET,
    out_context: *mut PVOID,
    out_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    let _scope = CallbackScope::enter();
    // SAFETY: as in `receive_event`.
    let core = unsafe { core_of(context) };
    let Some((handler, _)) = listen_handler(core) else {
        return STATUS_REQUEST_NOT_ACCEPTED;
    };
    if socket.is_null() {
        handler.on_listen_failed();
        return STATUS_SUCCESS;
    }
    let incoming = Incoming {
        listener: core,
        local,
        remote,
        socket,
        out_context,
        out_dispatch,
        _brand: PhantomData,
    };
    handler.on_accept(incoming).status
}

unsafe extern "system" fn receive_from_event(
    context: PVOID,
    _flags: ULONG,
    indication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    let _scope = CallbackScope::enter();
    // SAFETY: as in `receive_event`.
    let core = unsafe { core_of(context) };
    let Some(Handler::Datagram(handler)) = core.handlers.get() else {
        return STATUS_DATA_NOT_ACCEPTED;
    };
    if indication.is_null() {
        return STATUS_SUCCESS;
    }
    let datagrams = ReceivedDatagrams {
        core,
        // SAFETY: the context of a datagram socket, held by the provider for the callback.
        socket: unsafe { BorrowedSocket::new(context) },
        indication,
        _brand: PhantomData,
    };
    handler.on_receive_from(datagrams).settle(core)
}
