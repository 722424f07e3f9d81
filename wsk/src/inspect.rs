//! Conditional accept: a listening socket with `SO_CONDITIONAL_ACCEPT` has each incoming
//! connection inspected by its [`ListenEvents`](crate::ListenEvents) handler before it can be accepted
//! (`WskInspectEvent`): accepted, rejected (the peer sees a reset), or pended and decided
//! later with [`PendedInspection`] (`WskInspectComplete`). `WskAbortEvent` tells of a
//! connection that went away while being inspected.
//!
//! A pended inspection does not outlive its listening socket: once the socket's close is
//! requested, completing it fails with [`Error::SOCKET_CLOSED`] and no WSK call is made
//! (the provider drops the connections of a closing listener itself). Dropped undecided, a
//! pended inspection rejects its connection.

use alloc::vec::Vec;
use core::cell::Cell;
use core::marker::PhantomData;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use wsk_sys::*;

use crate::addr::from_sockaddr;
use crate::completion::BlockRef;
use crate::events::listen_handler;
use crate::indication::Brand;
use crate::lifecycle::callback::CallbackScope;
use crate::op::Op;
use crate::op::issue::Issue;
use crate::shared::Shared;
use crate::socket::{SocketCore, core_of};
use crate::sync::SpinLock;
use crate::{Error, Result};

/// The identifier of an inspected connection (`WSK_INSPECT_ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InspectId {
    /// `Key`.
    pub key: usize,
    /// `SerialNumber`.
    pub serial: u32,
}

impl InspectId {
    pub(crate) fn from_raw(raw: &WSK_INSPECT_ID) -> InspectId {
        InspectId {
            key: raw.Key as usize,
            serial: raw.SerialNumber,
        }
    }

    fn raw(self) -> WSK_INSPECT_ID {
        WSK_INSPECT_ID {
            Key: self.key as ULONG_PTR,
            SerialNumber: self.serial,
        }
    }
}

/// Where a pended inspection stands with the provider.
const IN_CALLBACK: u8 = 0;
/// The callback returned `WskInspectPend`: `WskInspectComplete` decides.
const WITH_PROVIDER: u8 = 1;
/// Decided (accept) before the callback returned: the callback returns the decision itself.
const DECIDED_ACCEPT: u8 = 2;
/// Decided (reject, or dropped) before the callback returned.
const DECIDED_REJECT: u8 = 3;

/// A pended inspection's shared state: settled once, by its completion, its drop, or the
/// provider's abort; and whether its callback has returned yet (`WskInspectComplete` is only
/// valid once the provider has the pend: a completion requested earlier, from the callback
/// itself, becomes the callback's answer instead).
pub(crate) struct Pended {
    id: InspectId,
    settled: AtomicBool,
    phase: AtomicU8,
}

// Freed with its last reference.
impl crate::lifecycle::shared::LastReference for Pended {}

/// The pended inspections of a listening socket (kept with its handler), so that an abort
/// event settles the right one.
pub(crate) struct PendedList {
    list: SpinLock<Vec<Shared<Pended>>>,
}

impl PendedList {
    pub(crate) const fn new() -> PendedList {
        PendedList {
            list: SpinLock::new(Vec::new()),
        }
    }

    fn add(&self, id: InspectId) -> Result<Shared<Pended>> {
        let pended = Shared::try_new(Pended {
            id,
            settled: AtomicBool::new(false),
            phase: AtomicU8::new(IN_CALLBACK),
        })?;
        let mut list = self.list.lock();
        list.try_reserve(1)
            .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
        list.push(pended.clone());
        Ok(pended)
    }

    fn remove(&self, id: InspectId) -> Option<Shared<Pended>> {
        let mut list = self.list.lock();
        let position = list.iter().position(|p| p.id == id)?;
        Some(list.swap_remove(position))
    }
}

/// A connection being inspected, in [`ListenEvents::on_inspect`](crate::ListenEvents::on_inspect).
pub struct Inspection<'a> {
    listener: &'a SocketCore,
    pended: &'a PendedList,
    /// The pended inspection made in this callback, for the trampoline.
    made: &'a Cell<Option<Shared<Pended>>>,
    local: PSOCKADDR,
    remote: PSOCKADDR,
    id: InspectId,
    _brand: Brand<'a>,
}

/// What [`ListenEvents::on_inspect`](crate::ListenEvents::on_inspect) decided; made by [`Inspection`]'s methods only, and
/// branded with the callback it was made in: one connection's inspection cannot be answered
/// with the decision about another.
///
/// ```compile_fail,E0521
/// use std::sync::Mutex;
/// use wsk::{AcceptDecision, Incoming, InspectDecision, Inspection};
/// struct Swapper(Mutex<Option<InspectDecision<'static>>>);
/// impl wsk::ListenEvents for Swapper {
///     fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a> {
///         incoming.reject()
///     }
///     fn on_inspect<'a>(&self, inspection: Inspection<'a>) -> InspectDecision<'a> {
///         let previous = self.0.lock().unwrap().replace(inspection.reject());
///         previous.unwrap()
///     }
/// }
/// ```
#[derive(Debug)]
#[must_use = "return the decision from the callback"]
pub struct InspectDecision<'a> {
    action: WSK_INSPECT_ACTION,
    _brand: Brand<'a>,
}

impl<'a> InspectDecision<'a> {
    fn new(action: WSK_INSPECT_ACTION) -> InspectDecision<'a> {
        InspectDecision {
            action,
            _brand: PhantomData,
        }
    }
}

impl<'a> Inspection<'a> {
    /// The local address of the connection.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        // SAFETY: the provider gives null or an address of the listener's family, valid
        // for the callback.
        unsafe { from_sockaddr(self.local) }
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        // SAFETY: as above.
        unsafe { from_sockaddr(self.remote) }
    }

    /// The connection's inspect identifier.
    pub fn id(&self) -> InspectId {
        self.id
    }

    /// Lets the connection through (`WskInspectAccept`): it is then accepted like any
    /// other ([`ListenEvents::on_accept`](crate::ListenEvents::on_accept), or a pending
    /// [`accept`](crate::ListenSocket::accept)).
    pub fn accept(self) -> InspectDecision<'a> {
        InspectDecision::new(WskInspectAccept)
    }

    /// Refuses the connection (`WskInspectReject`): the peer sees it reset.
    pub fn reject(self) -> InspectDecision<'a> {
        InspectDecision::new(WskInspectReject)
    }

    /// Decides later (`WskInspectPend`) with the returned [`PendedInspection`]. Completed
    /// (or dropped) before this callback returns — from a task it spawned, say — the
    /// decision becomes this callback's answer, with no `WskInspectComplete` (which is only
    /// valid once the provider has the pend). When memory is short or the listener is
    /// closing, the connection is rejected instead and the error returned with that
    /// decision.
    pub fn pend(self) -> (Result<PendedInspection>, InspectDecision<'a>) {
        if self.listener.close_requested() {
            return (Err(Error::SOCKET_CLOSED), self.reject());
        }
        match self.pended.add(self.id) {
            Ok(pended) => {
                self.made.set(Some(pended.clone()));
                (
                    Ok(PendedInspection {
                        listener: self.listener.to_shared(),
                        pended: Some(pended),
                    }),
                    InspectDecision::new(WskInspectPend),
                )
            }
            Err(error) => (Err(error), self.reject()),
        }
    }
}

/// An inspection decided later: [`accept`](Self::accept) or [`reject`](Self::reject) it
/// (`WskInspectComplete`, IRQL <= DISPATCH_LEVEL). Dropped undecided, it rejects the
/// connection (in the background). It holds its listening socket's memory, not the socket:
/// once the socket's close is requested, completing fails with [`Error::SOCKET_CLOSED`]
/// without a WSK call. `Send`: it may be moved to a task or another thread.
pub struct PendedInspection {
    listener: Shared<SocketCore>,
    pended: Option<Shared<Pended>>,
}

/// The operation of [`PendedInspection::accept`] and [`PendedInspection::reject`].
pub type InspectComplete = Op<InspectCompleteRequest>;

impl PendedInspection {
    /// The connection's inspect identifier.
    pub fn id(&self) -> InspectId {
        self.pended
            .as_ref()
            .map_or(InspectId { key: 0, serial: 0 }, |p| p.id)
    }

    /// Lets the connection through (`WskInspectComplete` with `WskInspectAccept`). Fails
    /// with [`ErrorKind::ConnectionAborted`](crate::ErrorKind::ConnectionAborted) when the
    /// provider aborted the inspection first
    /// ([`ListenEvents::on_inspect_abort`](crate::ListenEvents::on_inspect_abort)).
    pub fn accept(mut self) -> InspectComplete {
        Op::new(self.request(WskInspectAccept))
    }

    /// Refuses the connection (`WskInspectComplete` with `WskInspectReject`).
    pub fn reject(mut self) -> InspectComplete {
        Op::new(self.request(WskInspectReject))
    }

    fn request(&mut self, action: WSK_INSPECT_ACTION) -> InspectCompleteRequest {
        InspectCompleteRequest {
            listener: self.listener.clone(),
            pended: self.pended.take(),
            action,
            decided_in_callback: false,
            in_background: false,
        }
    }
}

impl Drop for PendedInspection {
    fn drop(&mut self) {
        if self.pended.is_none() {
            return;
        }
        // Undecided: rejected in the background. The request is issued here and its block
        // let go; the completion routine returns the block to the listener's pool.
        let mut request = self.request(WskInspectReject);
        request.in_background = true;
        if let Ok(mut block) = request.start() {
            // SAFETY: a fresh block, armed once and given to exactly one WSK call.
            unsafe {
                let irp = block.arm();
                let _ = request.issue(&block, irp);
            }
            drop(block);
        }
    }
}

impl core::fmt::Debug for PendedInspection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PendedInspection")
            .field("id", &self.id())
            .finish()
    }
}

/// `WskInspectComplete`.
pub struct InspectCompleteRequest {
    listener: Shared<SocketCore>,
    pended: Option<Shared<Pended>>,
    action: WSK_INSPECT_ACTION,
    /// Decided before the inspect callback returned: its answer, no WSK call.
    decided_in_callback: bool,
    /// The background rejection of a [`PendedInspection`] dropped undecided: if it cannot
    /// start, the inspection stays listed, and the listener's close rejects it.
    in_background: bool,
}

/// A decision dropped before it was issued (its operation dropped unpolled, or refused to
/// wait) is not lost: the inspection is rejected in the background, as a [`PendedInspection`]
/// dropped undecided is.
impl Drop for InspectCompleteRequest {
    fn drop(&mut self) {
        if self.in_background {
            return;
        }
        if let Some(pended) = self.pended.take() {
            drop(PendedInspection {
                listener: self.listener.clone(),
                pended: Some(pended),
            });
        }
    }
}

impl Issue for InspectCompleteRequest {
    type Output = Result<()>;

    fn start(&mut self) -> Result<BlockRef> {
        let Some(pended) = self.pended.as_ref() else {
            return Err(Error::INVALID_PARAMETER);
        };
        // The block first (unless the callback is still running: its answer needs none): a
        // failure leaves the inspection undecided and listed — rejected by this request's
        // drop, or by the listener's close.
        let early_block = if pended.phase.load(Ordering::Acquire) == IN_CALLBACK {
            None
        } else {
            if self.listener.close_requested() {
                return Err(Error::SOCKET_CLOSED);
            }
            Some(BlockRef::for_socket(&self.listener)?)
        };
        let pended = self.pended.take().expect("checked above");
        if pended.settled.swap(true, Ordering::AcqRel) {
            // The provider aborted the connection: its inspect ID is no longer valid.
            return Err(Error::from_status(STATUS_CONNECTION_ABORTED));
        }
        if let Some((_, list)) = listen_handler(&self.listener) {
            let _ = list.remove(pended.id);
        }
        let decided = if self.action == WskInspectAccept {
            DECIDED_ACCEPT
        } else {
            DECIDED_REJECT
        };
        if pended
            .phase
            .compare_exchange(IN_CALLBACK, decided, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // The callback has not returned: it answers with this decision.
            self.decided_in_callback = true;
            return Err(Error::CANCELLED);
        }
        if self.listener.close_requested() {
            return Err(Error::SOCKET_CLOSED);
        }
        // The callback returned between the two looks: a block now (should this fail, the
        // listener's close — which resets what is pending — still ends the connection).
        let mut block = match early_block {
            Some(block) => block,
            None => BlockRef::for_socket(&self.listener)?,
        };
        // SAFETY: nothing in flight on a fresh block.
        unsafe { block.scratch().inspect_id = pended.id.raw() };
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let action = self.action;
        // SAFETY: the inspect ID lives in the block until the completion; a listening
        // socket's dispatch table is the listen table.
        unsafe {
            let id = &raw mut (*block.scratch_ptr()).inspect_id;
            self.listener.call(irp, |socket| {
                let table = &*(*socket).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>();
                table
                    .WskInspectComplete
                    .expect("listening sockets have WskInspectComplete")(
                    socket, id, action, irp
                )
            })
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
        if self.decided_in_callback {
            Ok(())
        } else {
            Err(error)
        }
    }
}

// ---- trampolines --------------------------------------------------------------------------

/// `WskInspectEvent`.
pub(crate) unsafe extern "system" fn inspect_event(
    context: PVOID,
    local: PSOCKADDR,
    remote: PSOCKADDR,
    id: PWSK_INSPECT_ID,
) -> WSK_INSPECT_ACTION {
    let _scope = CallbackScope::enter();
    // SAFETY: the provider calls event callbacks with the context it was given, which it
    // holds until the close completes.
    let core = unsafe { core_of(context) };
    let Some((handler, pended)) = listen_handler(core) else {
        return WskInspectReject;
    };
    // SAFETY: the provider's inspect ID, valid for the callback.
    let Some(id) = (unsafe { id.as_ref() }) else {
        return WskInspectReject;
    };
    let made = Cell::new(None);
    let inspection = Inspection {
        listener: core,
        pended,
        made: &made,
        local,
        remote,
        id: InspectId::from_raw(id),
        _brand: PhantomData,
    };
    let action = handler.on_inspect(inspection).action;
    let Some(pended) = made.take().filter(|_| action == WskInspectPend) else {
        return action;
    };
    match pended.phase.compare_exchange(
        IN_CALLBACK,
        WITH_PROVIDER,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => WskInspectPend,
        // Completed or dropped before the callback returned: that decision stands.
        Err(DECIDED_ACCEPT) => WskInspectAccept,
        Err(_) => WskInspectReject,
    }
}

/// `WskAbortEvent`.
pub(crate) unsafe extern "system" fn abort_event(context: PVOID, id: PWSK_INSPECT_ID) -> NTSTATUS {
    let _scope = CallbackScope::enter();
    // SAFETY: as in `inspect_event`.
    let core = unsafe { core_of(context) };
    // SAFETY: the provider's inspect ID, valid for the callback.
    let (Some((handler, pended)), Some(id)) = (listen_handler(core), unsafe { id.as_ref() }) else {
        return STATUS_SUCCESS;
    };
    let id = InspectId::from_raw(id);
    if let Some(aborted) = pended.remove(id) {
        aborted.settled.store(true, Ordering::Release);
    }
    handler.on_inspect_abort(id);
    STATUS_SUCCESS
}
