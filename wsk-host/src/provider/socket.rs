//! A provider socket: its host socket, its queues of pending requests, and the engine that
//! completes them and delivers event callbacks.

use std::collections::{HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use mio::Interest;
use socket2::SockRef;
use wsk_sys::*;

use super::address::write_sockaddr;
use super::indication;
use super::reactor::{reactor, take_inline_allowance};
use super::{HostClient, status_of_io};
use crate::faults;
use crate::irp;
use crate::irql;
use crate::session::count;
use crate::verifier::{Rule, bug_check};

/// The WSK category of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    /// Control and close only (`WSK_FLAG_BASIC_SOCKET`): an unbound TCP socket underneath.
    Basic,
    Listen,
    Connection,
    Datagram,
    Stream,
}

/// The host socket behind a provider socket, by stage.
pub(crate) enum Io {
    /// Created (`WskSocket`), not bound.
    Unbound(socket2::Socket),
    /// Bound, not connected or listening (connection and stream sockets).
    Bound(socket2::Socket),
    /// Connecting.
    Connecting(mio::net::TcpStream),
    /// Connected.
    Stream(mio::net::TcpStream),
    /// Listening.
    Listener(mio::net::TcpListener),
    /// A bound datagram socket.
    Datagram(mio::net::UdpSocket),
    /// Gone: aborted, or the socket is closing.
    Gone,
}

/// A request waiting in a queue.
pub(crate) struct Pending {
    pub(crate) irp: PIRP,
    pub(crate) op: Op,
}

/// What a pending request does.
pub(crate) enum Op {
    Send {
        buf: WSK_BUF,
        done: usize,
        total: usize,
    },
    Disconnect {
        buf: Option<WSK_BUF>,
        done: usize,
        total: usize,
    },
    Receive {
        buf: WSK_BUF,
        flags: ULONG,
        filled: usize,
        total: usize,
    },
    Accept {
        local: PSOCKADDR,
        remote: PSOCKADDR,
        context: PVOID,
        dispatch: *const core::ffi::c_void,
    },
    /// `information_is_socket`: `WskSocketConnect` returns the socket in `Information`.
    Connect {
        information_is_socket: bool,
    },
    SendTo {
        buf: WSK_BUF,
        remote: SocketAddr,
    },
    SendMessages {
        list: PWSK_BUF_LIST,
        remote: SocketAddr,
    },
    ReceiveFrom {
        buf: WSK_BUF,
        remote: PSOCKADDR,
    },
}

impl Op {
    /// The bytes the request moved already: written to the host socket for a send (or a
    /// disconnect's final data), written into the buffer for a stream receive; 0 for the
    /// others, which move nothing until they complete.
    fn moved(&self) -> usize {
        match self {
            Op::Send { done, .. } | Op::Disconnect { done, .. } => *done,
            Op::Receive { filled, .. } => *filled,
            _ => 0,
        }
    }
}

/// Whether an attempt finished the request.
pub(crate) enum Outcome {
    Done(NTSTATUS, usize),
    Waiting,
}

/// The mutable part of a socket.
pub(crate) struct State {
    pub(crate) io: Io,
    pub(crate) context: PVOID,
    pub(crate) client_dispatch: *const core::ffi::c_void,
    pub(crate) events: ULONG,
    pub(crate) closing: bool,
    pub(crate) closed: bool,
    pub(crate) close_irp: Option<PIRP>,
    pub(crate) sends: VecDeque<Pending>,
    pub(crate) receives: VecDeque<Pending>,
    pub(crate) accepts: VecDeque<Pending>,
    pub(crate) connect: Option<Pending>,
    /// Received bytes not yet delivered (left by a receive event that did not take them).
    pub(crate) buffered: VecDeque<u8>,
    /// Receive events stop until the client calls `WskReceive`.
    pub(crate) suspended: bool,
    pub(crate) eof: bool,
    pub(crate) disconnect_reported: bool,
    pub(crate) error: Option<NTSTATUS>,
    /// Event callbacks running now (the close waits for them).
    pub(crate) callbacks: usize,
    /// A receive indication is running (a connection's receive indications run one at a
    /// time, so that its bytes are indicated in order, whatever the delivery threads).
    pub(crate) receive_indicating: bool,
    /// A thread is delivering completions of this socket's requests (they are delivered by
    /// one thread at a time, in order; another thread only looks for events meanwhile).
    pub(crate) completing: bool,
    pub(crate) sent_total: u64,
    /// Indications the client holds, by address: given to a callback now, or retained (the
    /// callback returned STATUS_PENDING) until `WskRelease`. An indication is recorded before
    /// its callback runs, so that a `WskRelease` from another thread may come at any time.
    pub(crate) retained: HashSet<usize>,
    /// `SIO_WSK_SET_REMOTE_ADDRESS` of a datagram socket.
    pub(crate) fixed_remote: Option<SocketAddr>,
    /// `SIO_WSK_SET_TCP_SILENT_MODE` of a connection: nothing more is sent.
    pub(crate) silent: bool,
    /// The ideal send backlog changed (send-backlog events enabled, send buffer resized):
    /// a send-backlog event is due.
    pub(crate) send_backlog_due: bool,
    /// `SO_CONDITIONAL_ACCEPT` of a listening socket.
    pub(crate) conditional: bool,
    /// Connections of a conditional-accept listener waiting for the client's inspection.
    pub(crate) inspecting: Vec<super::inspect::Inspecting>,
    /// Connections of a conditional-accept listener the inspection accepted.
    pub(crate) admitted: VecDeque<super::inspect::Admitted>,
    /// The inspect ID of a connection accepted through an inspection.
    pub(crate) inspect_id: Option<WSK_INSPECT_ID>,
    /// `WskConnectEx`'s data, sent once the connection is established.
    pub(crate) connect_data: Vec<u8>,
}

/// A provider socket. `wsk` comes first: a `PWSK_SOCKET` is a pointer to the `HostSocket`.
#[repr(C)]
pub(crate) struct HostSocket {
    pub(crate) wsk: WSK_SOCKET,
    pub(crate) category: Category,
    pub(crate) family: ADDRESS_FAMILY,
    pub(crate) client: *const HostClient,
    pub(crate) state: Mutex<State>,
    /// Queued for the provider's thread (it is queued once, however often it is kicked).
    pub(crate) kicked: AtomicBool,
}

/// Rounds of completions and events one pass of [`HostSocket::progress`] delivers before it
/// queues the socket again behind the others (fairness: a socket whose completion routines
/// keep issuing requests that can finish at once would otherwise hold the provider's thread).
pub(crate) const ROUNDS_PER_PASS: usize = 16;

// SAFETY: the raw pointers are the client's (contexts, dispatch tables, IRPs) and the
// provider's own indications, all usable from any thread; the state is behind a mutex.
unsafe impl Send for HostSocket {}
// SAFETY: as above.
unsafe impl Sync for HostSocket {}

/// Where a request's completion is delivered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// In the thread that called the WSK function, before it returns (at DISPATCH_LEVEL, or
    /// at the caller's IRQL when the fault plan says so).
    Inline,
    /// From the provider's thread, after the WSK function returned `STATUS_PENDING`.
    Pending,
}

/// A completion to deliver once the socket's lock is released.
pub(crate) struct Completion {
    irp: PIRP,
    status: NTSTATUS,
    information: usize,
}

/// Whether a failed request leaves behind a socket the client never saw (a failed
/// `WskSocketConnect`), which the provider must discard.
fn orphans_socket(op: &Op, status: NTSTATUS) -> bool {
    matches!(
        op,
        Op::Connect {
            information_is_socket: true
        }
    ) && !NT_SUCCESS(status)
}

impl HostSocket {
    pub(crate) fn new(
        category: Category,
        family: ADDRESS_FAMILY,
        client: *const HostClient,
        io: Io,
        context: PVOID,
        client_dispatch: *const core::ffi::c_void,
    ) -> Arc<HostSocket> {
        let dispatch = super::dispatch::table_for(category);
        let static_events = if client.is_null() {
            0
        } else {
            // SAFETY: a registered client outlives its sockets.
            unsafe { (*client).static_events(category) }
        };
        let socket = Arc::new(HostSocket {
            wsk: WSK_SOCKET { Dispatch: dispatch },
            category,
            family,
            client,
            kicked: AtomicBool::new(false),
            state: Mutex::new(State {
                io,
                context,
                client_dispatch,
                events: static_events,
                closing: false,
                closed: false,
                close_irp: None,
                sends: VecDeque::new(),
                receives: VecDeque::new(),
                accepts: VecDeque::new(),
                connect: None,
                buffered: VecDeque::new(),
                suspended: false,
                eof: false,
                disconnect_reported: false,
                error: None,
                callbacks: 0,
                receive_indicating: false,
                completing: false,
                sent_total: 0,
                retained: HashSet::new(),
                fixed_remote: None,
                silent: false,
                send_backlog_due: false,
                conditional: false,
                inspecting: Vec::new(),
                admitted: VecDeque::new(),
                inspect_id: None,
                connect_data: Vec::new(),
            }),
        });
        super::add_socket(&socket);
        count(|c| c.sockets_created += 1);
        socket
    }

    /// The socket as WSK sees it.
    pub(crate) fn as_wsk(self: &Arc<Self>) -> PWSK_SOCKET {
        Arc::as_ptr(self).cast_mut().cast()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the socket's I/O with the provider's poll.
    pub(crate) fn watch(&self, state: &mut State) {
        let reactor = reactor();
        // A socket's poll token is its address.
        let token = std::ptr::from_ref(self) as usize;
        let both = Interest::READABLE | Interest::WRITABLE;
        match &mut state.io {
            Io::Connecting(stream) | Io::Stream(stream) => reactor.register(stream, token, both),
            Io::Listener(listener) => reactor.register(listener, token, Interest::READABLE),
            Io::Datagram(udp) => reactor.register(udp, token, both),
            _ => {}
        }
    }

    fn unwatch(state: &mut State) {
        let reactor = reactor();
        match &mut state.io {
            Io::Connecting(stream) | Io::Stream(stream) => reactor.deregister(stream),
            Io::Listener(listener) => reactor.deregister(listener),
            Io::Datagram(udp) => reactor.deregister(udp),
            _ => {}
        }
    }

    /// Hands a request to the socket: completes it in the calling thread if it can finish at
    /// once and the fault plan says so, else queues it (cancellable) and returns
    /// `STATUS_PENDING`. `irp::begin_request` must have accepted the IRP.
    pub(crate) fn submit(self: &Arc<Self>, irp: PIRP, mut op: Op) -> NTSTATUS {
        let inline = faults::complete_inline();
        let mut state = self.lock();
        if state.closing {
            drop(state);
            return finish(irp, STATUS_FILE_FORCED_CLOSED, 0, Delivery::Inline);
        }
        if inline && queue_is_empty(&state, &op) && take_inline_allowance() {
            if let Outcome::Done(status, information) = attempt(self, &mut state, &mut op) {
                drop(state);
                let orphan = orphans_socket(&op, status);
                let status = finish(irp, status, information, Delivery::Inline);
                if orphan {
                    self.discard();
                }
                return status;
            }
        }
        enqueue(self, &mut state, Pending { irp, op });
        drop(state);
        reactor().kick(Arc::clone(self));
        STATUS_PENDING
    }

    /// Completes what can be completed and delivers what events are due; called by the
    /// provider's thread on readiness and when kicked — or, when events are delivered
    /// concurrently, by the delivery threads, several at once on one socket: each event taken
    /// hands the socket to another delivery thread, which looks for the next event while this
    /// one's callback runs.
    ///
    /// A pass delivers at most [`ROUNDS_PER_PASS`] rounds (each a batch of completions or one
    /// event); a socket with more to do is queued again, behind the other sockets.
    pub(crate) fn progress(self: &Arc<Self>) {
        let threads = faults::event_threads();
        // One list for every round of the pass, kept by the thread between passes: steady
        // completions allocate nothing (a nested pass starts with an empty one).
        let mut completions = CompletionList::take();
        for _ in 0..ROUNDS_PER_PASS {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            // The thread completing requests looks at the queues again before it stops, so
            // another one may skip them.
            let orphan = !state.completing && progress_queues(self, &mut state, &mut completions.0);
            let had_completions = !completions.0.is_empty();
            state.completing |= had_completions;
            let event = if had_completions {
                None
            } else {
                indication::next_event(self, &mut state)
            };
            let receive = matches!(event, Some(indication::Event::Receive(_)));
            if event.is_some() {
                state.callbacks += 1;
                state.receive_indicating |= receive;
            }
            drop(state);
            deliver_all(completions.0.drain(..));
            if had_completions {
                self.lock().completing = false;
            }
            if orphan {
                self.discard();
                return;
            }
            match event {
                Some(event) => {
                    if threads > 1 {
                        reactor().deliver_concurrently(Arc::clone(self), threads);
                    }
                    indication::deliver(self, event);
                    let mut state = self.lock();
                    state.callbacks -= 1;
                    if receive {
                        state.receive_indicating = false;
                    }
                    let close = if state.callbacks == 0 {
                        state.close_irp.take()
                    } else {
                        None
                    };
                    drop(state);
                    if let Some(close_irp) = close {
                        self.finish_close(close_irp);
                        return;
                    }
                }
                None if !had_completions => return,
                None => {}
            }
        }
        // The pass's rounds are spent and there may be more: the rest waits for the next
        // pass, behind the other sockets.
        reactor().kick(Arc::clone(self));
    }

    /// Requests queued on this socket, waiting for the network.
    pub(crate) fn queued_requests(&self) -> usize {
        let state = self.lock();
        state.sends.len()
            + state.receives.len()
            + state.accepts.len()
            + usize::from(state.connect.is_some())
    }

    /// `WskCloseSocket`: cancels the pending requests, releases the host socket, and
    /// completes the close once no event callback is running.
    pub(crate) fn close(self: &Arc<Self>, irp: PIRP) -> NTSTATUS {
        let mut state = self.lock();
        if state.closing {
            drop(state);
            bug_check(
                Rule::SocketUseAfterClose,
                "WskCloseSocket called twice on one socket",
            );
            return finish(irp, STATUS_INVALID_DEVICE_STATE, 0, Delivery::Inline);
        }
        state.closing = true;
        // Each with the bytes it had moved (see `Op::moved`).
        let mut cancelled: Vec<(PIRP, usize)> = Vec::new();
        let queues = &mut *state;
        let connect = queues.connect.take();
        for pending in queues
            .sends
            .drain(..)
            .chain(queues.receives.drain(..))
            .chain(queues.accepts.drain(..))
            .chain(connect)
        {
            // SAFETY: a queued IRP; taking its cancel routine makes this thread its completer.
            unsafe { IoSetCancelRoutine(pending.irp, None) };
            cancelled.push((pending.irp, pending.op.moved()));
        }
        Self::unwatch(&mut state);
        state.io = Io::Gone;
        state.buffered.clear();
        super::inspect::abandon_all(&mut state);
        let now = state.callbacks == 0;
        if !now {
            state.close_irp = Some(irp);
        }
        drop(state);
        for (irp, moved) in cancelled {
            count(|c| c.cancelled += 1);
            finish(irp, STATUS_CANCELLED, moved, Delivery::Pending);
        }
        if now {
            self.finish_close(irp);
        }
        STATUS_PENDING
    }

    fn finish_close(self: &Arc<Self>, irp: PIRP) {
        let retained: Vec<usize> = {
            let mut state = self.lock();
            state.closed = true;
            state.retained.drain().collect()
        };
        for indication in retained {
            // The client closed without releasing indications it retained: they are freed
            // with the socket (the pool leak check does not blame the client for them, but the
            // verifier reports the contract breach).
            bug_check(
                Rule::InvalidParameter,
                "WskCloseSocket with retained indications not released by WskRelease",
            );
            indication::free_any(indication);
        }
        super::retire_socket(self);
        count(|c| c.sockets_closed += 1);
        finish(irp, STATUS_SUCCESS, 0, Delivery::Pending);
        crate::netio::notify();
    }

    /// Completes a connect that failed before it started; a `WskSocketConnect` socket is
    /// discarded (the client never sees it).
    pub(crate) fn fail_connect(
        self: &Arc<Self>,
        irp: PIRP,
        status: NTSTATUS,
        information_is_socket: bool,
    ) -> NTSTATUS {
        let returned = finish(irp, status, 0, Delivery::Inline);
        if information_is_socket {
            self.discard();
        }
        returned
    }

    /// Discards a socket the client never saw (an accepted connection it refused, a
    /// `WskSocketConnect` that failed).
    pub(crate) fn discard(self: &Arc<Self>) {
        let mut state = self.lock();
        state.closing = true;
        state.closed = true;
        Self::unwatch(&mut state);
        state.io = Io::Gone;
        drop(state);
        super::retire_socket(self);
        count(|c| c.sockets_closed += 1);
    }

    /// Aborts the connection: the host socket is closed with a reset; pending requests fail
    /// with `status`.
    pub(crate) fn abort(
        self: &Arc<Self>,
        state: &mut State,
        status: NTSTATUS,
        completions: &mut Vec<Completion>,
    ) {
        let state = &mut *state;
        if let Io::Stream(stream) = &state.io {
            let _ = SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
        }
        Self::unwatch(state);
        state.io = Io::Gone;
        state.error = Some(status);
        for pending in state.sends.drain(..).chain(state.receives.drain(..)) {
            // SAFETY: a queued IRP; taking its cancel routine makes this thread its completer.
            unsafe { IoSetCancelRoutine(pending.irp, None) };
            completions.push(Completion {
                irp: pending.irp,
                status,
                information: 0,
            });
        }
    }
}

fn queue_is_empty(state: &State, op: &Op) -> bool {
    match op {
        Op::Send { .. } | Op::Disconnect { .. } | Op::SendTo { .. } | Op::SendMessages { .. } => {
            state.sends.is_empty()
        }
        Op::Receive { .. } | Op::ReceiveFrom { .. } => state.receives.is_empty(),
        Op::Accept { .. } => state.accepts.is_empty(),
        Op::Connect { .. } => state.connect.is_none(),
    }
}

fn enqueue(socket: &Arc<HostSocket>, state: &mut State, pending: Pending) {
    let irp = pending.irp;
    // SAFETY: the IRP is owned by this request; its current stack location is the provider's.
    unsafe {
        IoMarkIrpPending(irp);
        // The socket goes in the IRP's driver context, which the cancel routine can read
        // whatever happened to the IRP meanwhile (its stack location is past the end once the
        // provider has completed it).
        (*irp).Tail.Overlay.Context.DriverContext[0] = Arc::as_ptr(socket).cast_mut().cast();
        IoSetCancelRoutine(irp, Some(cancel_routine));
        if (*irp).Cancel != 0 && IoSetCancelRoutine(irp, None).is_some() {
            // Cancelled before it was queued: complete it now, from the provider's thread,
            // with what its first attempt moved.
            if orphans_socket(&pending.op, STATUS_CANCELLED) {
                let socket = Arc::clone(socket);
                reactor().defer(
                    std::time::Duration::ZERO,
                    Box::new(move || socket.discard()),
                );
            }
            let (irp, moved) = (irp as usize, pending.op.moved());
            reactor().defer(
                std::time::Duration::ZERO,
                Box::new(move || {
                    count(|c| c.cancelled += 1);
                    finish(irp as PIRP, STATUS_CANCELLED, moved, Delivery::Pending);
                }),
            );
            return;
        }
    }
    match pending.op {
        Op::Send { .. } | Op::Disconnect { .. } | Op::SendTo { .. } | Op::SendMessages { .. } => {
            state.sends.push_back(pending)
        }
        Op::Receive { .. } | Op::ReceiveFrom { .. } => {
            state.suspended = false;
            state.receives.push_back(pending)
        }
        Op::Accept { .. } => state.accepts.push_back(pending),
        Op::Connect { .. } => state.connect = Some(pending),
    }
}

/// The cancel routine of every queued request: removes it from its socket's queue and
/// completes it with `STATUS_CANCELLED` (if the provider has not taken it already).
unsafe extern "system" fn cancel_routine(_device: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: called by IoCancelIrp with the cancel lock held, on an IRP its caller keeps
    // alive for the call, whose driver context records the socket it was queued on (the
    // socket is only looked up by address below: the provider may have completed the IRP
    // meanwhile, and then the queues no longer hold it).
    let socket = unsafe {
        IoReleaseCancelSpinLock((*irp).CancelIrql);
        (*irp).Tail.Overlay.Context.DriverContext[0].cast::<HostSocket>()
    };
    let Some(socket) = super::socket_by_address(socket as usize) else {
        return;
    };
    // Whether the IRP was queued here, the bytes it had moved already (a send partly written
    // to the host socket, a receive partly filled: the count a cancelled request reports, as
    // for any other failure), and whether its cancel orphans a socket.
    let removed = {
        let mut guard = socket.lock();
        let state = &mut *guard;
        let mut removed = None;
        for queue in [&mut state.sends, &mut state.receives, &mut state.accepts] {
            if let Some(index) = queue.iter().position(|p| p.irp == irp) {
                removed = queue.remove(index).map(|pending| pending.op.moved());
            }
        }
        let mut orphan = false;
        if state.connect.as_ref().is_some_and(|p| p.irp == irp) {
            orphan = state
                .connect
                .take()
                .is_some_and(|p| orphans_socket(&p.op, STATUS_CANCELLED));
            removed = Some(0);
        }
        (removed, orphan)
    };
    if let Some(moved) = removed.0 {
        count(|c| c.cancelled += 1);
        finish(irp, STATUS_CANCELLED, moved, Delivery::Pending);
    }
    if removed.1 {
        // A cancelled `WskSocketConnect` returns no socket: the one made for it is discarded.
        socket.discard();
    }
}

/// Delivers a completion: counts it, applies the completion delay of the fault plan to
/// completions from the provider's thread, and completes the IRP. Returns what the WSK
/// function returns (the status when inline, else `STATUS_PENDING`).
pub(crate) fn finish(
    irp: PIRP,
    status: NTSTATUS,
    information: usize,
    delivery: Delivery,
) -> NTSTATUS {
    match delivery {
        Delivery::Inline => {
            count(|c| c.completed_inline += 1);
            if faults::inline_at_caller_irql() {
                irp::complete_at_current_irql(irp, status, information);
            } else {
                irp::complete(irp, status, information);
            }
            status
        }
        Delivery::Pending => {
            count(|c| c.completed_pending += 1);
            match faults::completion_delay() {
                Some(delay) => {
                    let irp = irp as usize;
                    reactor().defer(
                        delay,
                        Box::new(move || irp::complete(irp as PIRP, status, information)),
                    );
                }
                None => irql::at_dispatch(|| irp::complete(irp, status, information)),
            }
            STATUS_PENDING
        }
    }
}

thread_local! {
    /// The completion list of the passes this thread runs ([`CompletionList`]).
    static COMPLETIONS: std::cell::Cell<Vec<Completion>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The completions one pass of [`HostSocket::progress`] collects under the socket's lock
/// and delivers after it: the thread's list, taken for the pass and given back (emptied,
/// with its capacity) when the pass ends however it ends, so that steady completions
/// allocate nothing. A nested pass takes an empty list.
struct CompletionList(Vec<Completion>);

impl CompletionList {
    fn take() -> CompletionList {
        CompletionList(COMPLETIONS.take())
    }
}

impl Drop for CompletionList {
    fn drop(&mut self) {
        self.0.clear();
        let list = std::mem::take(&mut self.0);
        // At thread exit the list may be gone already: then this one is simply dropped.
        let _ = COMPLETIONS.try_with(|cell| cell.set(list));
    }
}

/// Delivers completions collected under a socket's lock, from the provider's side.
pub(crate) fn deliver_all(completions: impl IntoIterator<Item = Completion>) {
    for completion in completions {
        finish(
            completion.irp,
            completion.status,
            completion.information,
            Delivery::Pending,
        );
    }
}

/// Progresses every queue of a socket, collecting the completions; returns whether a failed
/// `WskSocketConnect` orphaned the socket.
fn progress_queues(
    socket: &Arc<HostSocket>,
    state: &mut State,
    completions: &mut Vec<Completion>,
) -> bool {
    let mut orphan = false;
    if let Some(mut pending) = state.connect.take() {
        match attempt(socket, state, &mut pending.op) {
            Outcome::Done(status, information) => {
                orphan = orphans_socket(&pending.op, status);
                take(pending.irp, status, information, completions);
            }
            Outcome::Waiting => state.connect = Some(pending),
        }
    }
    for queue in [Queue::Sends, Queue::Receives, Queue::Accepts] {
        while let Some(mut pending) = queue.of(state).pop_front() {
            match attempt(socket, state, &mut pending.op) {
                Outcome::Done(status, information) => {
                    take(pending.irp, status, information, completions)
                }
                Outcome::Waiting => {
                    queue.of(state).push_front(pending);
                    break;
                }
            }
        }
    }
    orphan
}

#[derive(Clone, Copy)]
enum Queue {
    Sends,
    Receives,
    Accepts,
}

impl Queue {
    fn of(self, state: &mut State) -> &mut VecDeque<Pending> {
        match self {
            Queue::Sends => &mut state.sends,
            Queue::Receives => &mut state.receives,
            Queue::Accepts => &mut state.accepts,
        }
    }
}

/// Takes a request out of its queue for completion: the provider becomes its completer (a
/// cancel routine that runs now finds nothing to remove).
fn take(irp: PIRP, status: NTSTATUS, information: usize, completions: &mut Vec<Completion>) {
    // SAFETY: a queued IRP, just removed from its queue.
    unsafe { IoSetCancelRoutine(irp, None) };
    completions.push(Completion {
        irp,
        status,
        information,
    });
}

/// Tries to finish a request now.
pub(crate) fn attempt(socket: &Arc<HostSocket>, state: &mut State, op: &mut Op) -> Outcome {
    if let Some(error) = state.error {
        if !matches!(op, Op::Receive { .. }) || state.buffered.is_empty() {
            return Outcome::Done(error, 0);
        }
    }
    match op {
        Op::Send { buf, done, total } => send(state, buf, done, *total, false),
        Op::Disconnect { buf, done, total } => {
            if let Some(buf) = buf {
                if let Outcome::Waiting = send(state, buf, done, *total, true) {
                    return Outcome::Waiting;
                }
            }
            match &state.io {
                Io::Stream(stream) => match stream.shutdown(Shutdown::Write) {
                    Ok(()) => Outcome::Done(STATUS_SUCCESS, *done),
                    Err(error) => Outcome::Done(status_of_io(&error), 0),
                },
                _ => Outcome::Done(STATUS_CONNECTION_INVALID, 0),
            }
        }
        Op::Receive {
            buf,
            flags,
            filled,
            total,
        } => receive(state, buf, *flags, filled, *total),
        Op::Accept {
            local,
            remote,
            context,
            dispatch,
        } => accept(socket, state, *local, *remote, *context, *dispatch),
        Op::Connect {
            information_is_socket,
        } => connect_result(socket, state, *information_is_socket),
        Op::SendTo { buf, remote } => {
            // SAFETY: the WSK_BUF describes the client's locked buffer, which only the
            // provider reads until the completion.
            match unsafe { single_range(buf) } {
                // Read only: the memory may be locked for reading and sent by others at once.
                // SAFETY: the range lies in the client's buffer, as above.
                Some((address, length)) => send_datagram(
                    state,
                    unsafe { std::slice::from_raw_parts(address as *const u8, length) },
                    *remote,
                ),
                // SAFETY: as above.
                None => send_datagram(state, &unsafe { gather(buf) }, *remote),
            }
        }
        Op::SendMessages { list, remote } => {
            let mut sent = 0;
            let mut node = *list;
            // SAFETY: the list and its buffers are the client's, valid until completion.
            while let Some(element) = unsafe { node.as_ref() } {
                // SAFETY: each element's WSK_BUF describes a locked buffer of the client's.
                let data = unsafe { gather(&element.Buffer) };
                match send_datagram(state, &data, *remote) {
                    Outcome::Done(status, count) if NT_SUCCESS(status) => sent += count,
                    other => return other,
                }
                node = element.Next;
            }
            Outcome::Done(STATUS_SUCCESS, sent)
        }
        Op::ReceiveFrom { buf, remote } => receive_datagram(state, buf, *remote),
    }
}

/// Copies what a `WSK_BUF` describes.
///
/// # Safety
/// The buffer must describe valid, resident memory.
pub(crate) unsafe fn gather(buf: &WSK_BUF) -> Vec<u8> {
    let mut data = Vec::with_capacity(buf.Length as usize);
    // SAFETY: forwarded.
    for (address, length) in unsafe { crate::mdl::ranges(buf) } {
        // SAFETY: each range lies in the described memory.
        data.extend_from_slice(unsafe { std::slice::from_raw_parts(address as *const u8, length) });
    }
    data
}

/// The writable ranges of a `WSK_BUF` from `skip` bytes in, as slices.
///
/// # Safety
/// The buffer must describe valid, resident, writable memory not aliased for the duration.
unsafe fn spare_slices(buf: &WSK_BUF, mut skip: usize) -> impl Iterator<Item = &'static mut [u8]> {
    // SAFETY: forwarded.
    unsafe { crate::mdl::ranges(buf) }.filter_map(move |(address, length)| {
        if skip >= length {
            skip -= length;
            return None;
        }
        // SAFETY: inside the described memory, which the caller guarantees.
        let slice =
            unsafe { std::slice::from_raw_parts_mut((address + skip) as *mut u8, length - skip) };
        skip = 0;
        Some(slice)
    })
}

/// The (address, length) of a `WSK_BUF` that lies in one range (the usual buffer: one
/// MDL), which a datagram is sent from or received into where it lies; `None` for a buffer
/// in several, or an empty one.
///
/// # Safety
/// The buffer must describe valid, resident memory.
unsafe fn single_range(buf: &WSK_BUF) -> Option<(usize, usize)> {
    // SAFETY: forwarded.
    let mut ranges = unsafe { crate::mdl::ranges(buf) };
    let range = ranges.next()?;
    ranges.next().is_none().then_some(range)
}

fn send(
    state: &mut State,
    buf: &WSK_BUF,
    done: &mut usize,
    total: usize,
    disconnecting: bool,
) -> Outcome {
    if state.silent {
        // Silent mode: the connection sends nothing more; only closing is left.
        return Outcome::Done(STATUS_INVALID_DEVICE_STATE, 0);
    }
    let Io::Stream(stream) = &mut state.io else {
        return Outcome::Done(STATUS_CONNECTION_INVALID, 0);
    };
    if let Some(limit) = faults::reset_after() {
        if state.sent_total + (total - *done) as u64 > limit {
            let _ = SockRef::from(&*stream).set_linger(Some(std::time::Duration::ZERO));
            let _ = stream.shutdown(Shutdown::Both);
            state.error = Some(STATUS_CONNECTION_RESET);
            return Outcome::Done(STATUS_CONNECTION_RESET, 0);
        }
    }
    let limit = if disconnecting {
        None
    } else {
        faults::partial_send_limit()
    };
    // SAFETY: the WSK_BUF describes the client's locked buffer, valid until completion.
    let ranges = unsafe { crate::mdl::ranges(buf) };
    let mut position = 0usize;
    for (address, length) in ranges {
        if position + length <= *done {
            position += length;
            continue;
        }
        let skip = *done - position;
        // SAFETY: inside the described memory.
        let mut chunk =
            unsafe { std::slice::from_raw_parts((address + skip) as *const u8, length - skip) };
        if let Some(limit) = limit {
            chunk = &chunk[..chunk.len().min(limit.saturating_sub(*done))];
        }
        while !chunk.is_empty() {
            match stream.write(chunk) {
                Ok(0) => return Outcome::Done(STATUS_CONNECTION_ABORTED, *done),
                Ok(count) => {
                    *done += count;
                    state.sent_total += count as u64;
                    crate::session::count(|c| c.bytes_sent += count as u64);
                    chunk = &chunk[count..];
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Outcome::Waiting,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Outcome::Done(status_of_io(&error), *done),
            }
        }
        if limit.is_some_and(|limit| *done >= limit) {
            return Outcome::Done(STATUS_SUCCESS, *done);
        }
        position += length;
    }
    Outcome::Done(STATUS_SUCCESS, total)
}

fn receive(
    state: &mut State,
    buf: &WSK_BUF,
    flags: ULONG,
    filled: &mut usize,
    total: usize,
) -> Outcome {
    let wait_all = flags & WSK_FLAG_WAITALL != 0;
    if flags & WSK_FLAG_DRAIN != 0 {
        state.buffered.clear();
        let mut scratch = [0u8; 4096];
        loop {
            let Io::Stream(stream) = &mut state.io else {
                return Outcome::Done(STATUS_SUCCESS, 0);
            };
            match stream.read(&mut scratch) {
                Ok(0) => return Outcome::Done(STATUS_SUCCESS, 0),
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Outcome::Waiting,
                Err(error) => return Outcome::Done(status_of_io(&error), 0),
            }
        }
    }
    if total == 0 {
        // A zero-length receive re-enables receive events.
        state.suspended = false;
        return Outcome::Done(STATUS_SUCCESS, 0);
    }
    // SAFETY: the WSK_BUF describes the client's locked buffer, exclusively the provider's
    // until completion.
    let slices = unsafe { spare_slices(buf, *filled) };
    for slice in slices {
        let mut offset = 0;
        while offset < slice.len() {
            if let Some(byte) = state.buffered.pop_front() {
                slice[offset] = byte;
                offset += 1;
                *filled += 1;
                continue;
            }
            if state.eof {
                return Outcome::Done(STATUS_SUCCESS, *filled);
            }
            let Io::Stream(stream) = &mut state.io else {
                let status = state.error.unwrap_or(STATUS_CONNECTION_INVALID);
                return if *filled > 0 {
                    Outcome::Done(STATUS_SUCCESS, *filled)
                } else {
                    Outcome::Done(status, 0)
                };
            };
            match stream.read(&mut slice[offset..]) {
                Ok(0) => {
                    state.eof = true;
                    return Outcome::Done(STATUS_SUCCESS, *filled);
                }
                Ok(count) => {
                    offset += count;
                    *filled += count;
                    crate::session::count(|c| c.bytes_received += count as u64);
                    if !wait_all {
                        return Outcome::Done(STATUS_SUCCESS, *filled);
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    return if *filled > 0 && !wait_all {
                        Outcome::Done(STATUS_SUCCESS, *filled)
                    } else {
                        Outcome::Waiting
                    };
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    let status = status_of_io(&error);
                    state.error = Some(status);
                    return if *filled > 0 {
                        Outcome::Done(STATUS_SUCCESS, *filled)
                    } else {
                        Outcome::Done(status, 0)
                    };
                }
            }
        }
        if !wait_all && *filled > 0 {
            return Outcome::Done(STATUS_SUCCESS, *filled);
        }
    }
    Outcome::Done(STATUS_SUCCESS, *filled)
}

fn accept(
    listener: &Arc<HostSocket>,
    state: &mut State,
    local: PSOCKADDR,
    remote: PSOCKADDR,
    context: PVOID,
    dispatch: *const core::ffi::c_void,
) -> Outcome {
    let Io::Listener(host) = &mut state.io else {
        return Outcome::Done(STATUS_INVALID_DEVICE_STATE, 0);
    };
    let next = if state.conditional {
        // Only connections the client's inspection accepted.
        match state.admitted.pop_front() {
            Some(admitted) => Ok((admitted.stream, admitted.peer, Some(admitted.id))),
            None => Err(std::io::Error::from(ErrorKind::WouldBlock)),
        }
    } else {
        host.accept().map(|(stream, peer)| (stream, peer, None))
    };
    match next {
        Ok((stream, peer, inspect_id)) => {
            let local_addr = stream.local_addr().ok();
            let socket = HostSocket::new(
                Category::Connection,
                listener.family,
                listener.client,
                Io::Stream(stream),
                context,
                dispatch,
            );
            {
                let mut accepted = socket.lock();
                accepted.inspect_id = inspect_id;
                socket.watch(&mut accepted);
            }
            // SAFETY: non-null address pointers are the client's, large enough for the family.
            unsafe {
                if !remote.is_null() {
                    write_sockaddr(remote, &peer);
                }
                if let (false, Some(local_addr)) = (local.is_null(), local_addr) {
                    write_sockaddr(local, &local_addr);
                }
            }
            Outcome::Done(STATUS_SUCCESS, socket.as_wsk() as usize)
        }
        Err(error) if error.kind() == ErrorKind::WouldBlock => Outcome::Waiting,
        Err(error) => Outcome::Done(status_of_io(&error), 0),
    }
}

/// Sends `WskConnectEx`'s data on a connection just established. The host's new connection
/// takes it at once (it is at most 64 KiB, within a fresh loopback connection's buffers);
/// what it cannot take fails the connect rather than being dropped.
fn send_connect_data(state: &mut State, data: &[u8]) -> Result<(), NTSTATUS> {
    let Io::Stream(stream) = &mut state.io else {
        return Err(STATUS_CONNECTION_INVALID);
    };
    let mut sent = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while sent < data.len() {
        match stream.write(&data[sent..]) {
            Ok(count) => sent += count,
            Err(error)
                if (error.kind() == ErrorKind::WouldBlock
                    || error.kind() == ErrorKind::Interrupted)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            Err(error) => return Err(status_of_io(&error)),
        }
    }
    count(|c| c.bytes_sent += sent as u64);
    state.sent_total += sent as u64;
    Ok(())
}

fn connect_result(
    socket: &Arc<HostSocket>,
    state: &mut State,
    information_is_socket: bool,
) -> Outcome {
    let Io::Connecting(stream) = &mut state.io else {
        return match state.io {
            Io::Stream(_) => Outcome::Done(
                STATUS_SUCCESS,
                if information_is_socket {
                    socket.as_wsk() as usize
                } else {
                    0
                },
            ),
            _ => Outcome::Done(state.error.unwrap_or(STATUS_CONNECTION_INVALID), 0),
        };
    };
    match stream.take_error() {
        Ok(Some(error)) | Err(error) => {
            let status = status_of_io(&error);
            HostSocket::unwatch(state);
            state.io = Io::Gone;
            state.error = Some(status);
            return Outcome::Done(status, 0);
        }
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => {
            let Io::Connecting(stream) = std::mem::replace(&mut state.io, Io::Gone) else {
                unreachable!()
            };
            state.io = Io::Stream(stream);
            if !state.connect_data.is_empty() {
                let data = std::mem::take(&mut state.connect_data);
                if let Err(status) = send_connect_data(state, &data) {
                    return Outcome::Done(status, 0);
                }
            }
            Outcome::Done(
                STATUS_SUCCESS,
                if information_is_socket {
                    socket.as_wsk() as usize
                } else {
                    0
                },
            )
        }
        Err(error)
            if error.kind() == ErrorKind::NotConnected || error.kind() == ErrorKind::WouldBlock =>
        {
            Outcome::Waiting
        }
        Err(error) => {
            let status = status_of_io(&error);
            state.error = Some(status);
            Outcome::Done(status, 0)
        }
    }
}

fn send_datagram(state: &mut State, data: &[u8], remote: SocketAddr) -> Outcome {
    let Io::Datagram(udp) = &mut state.io else {
        return Outcome::Done(STATUS_INVALID_DEVICE_STATE, 0);
    };
    match udp.send_to(data, remote) {
        Ok(count) => {
            crate::session::count(|c| c.bytes_sent += count as u64);
            Outcome::Done(STATUS_SUCCESS, count)
        }
        Err(error) if error.kind() == ErrorKind::WouldBlock => Outcome::Waiting,
        Err(error) => Outcome::Done(status_of_io(&error), 0),
    }
}

fn receive_datagram(state: &mut State, buf: &WSK_BUF, remote: PSOCKADDR) -> Outcome {
    let Io::Datagram(udp) = &mut state.io else {
        return Outcome::Done(STATUS_INVALID_DEVICE_STATE, 0);
    };
    // The usual buffer (one range) takes the datagram where it lies; a buffer in several
    // ranges takes it through a copy (a datagram is received in one call). Either way, what
    // the client's buffer took is counted and completed.
    // SAFETY: the WSK_BUF describes the client's buffer, the provider's until completion.
    let received = match unsafe { single_range(buf) } {
        Some((address, length)) => {
            // SAFETY: the range lies in the client's buffer, written only by the provider
            // until the completion.
            let slice = unsafe { std::slice::from_raw_parts_mut(address as *mut u8, length) };
            udp.recv_from(slice)
        }
        None => {
            let mut datagram = vec![0u8; 65_536];
            udp.recv_from(&mut datagram).map(|(count, source)| {
                let mut copied = 0;
                // SAFETY: as above.
                for slice in unsafe { spare_slices(buf, 0) } {
                    let take = slice.len().min(count - copied);
                    slice[..take].copy_from_slice(&datagram[copied..copied + take]);
                    copied += take;
                    if copied == count.min(buf.Length as usize) {
                        break;
                    }
                }
                (copied, source)
            })
        }
    };
    match received {
        Ok((taken, source)) => {
            crate::session::count(|c| c.bytes_received += taken as u64);
            if !remote.is_null() {
                // SAFETY: `remote` is the client's storage for the source.
                unsafe { write_sockaddr(remote, &source) };
            }
            Outcome::Done(STATUS_SUCCESS, taken)
        }
        Err(error) if error.kind() == ErrorKind::WouldBlock => Outcome::Waiting,
        Err(error) => Outcome::Done(status_of_io(&error), 0),
    }
}

/// Reads a destination the client gave, refusing non-loopback addresses (a test must never
/// reach the network).
///
/// # Safety
/// `address` must be null or a socket address of its family.
pub(crate) unsafe fn destination(address: PSOCKADDR) -> Result<SocketAddr, NTSTATUS> {
    // SAFETY: forwarded.
    let address = unsafe { socket_addr_at(address) }.ok_or(STATUS_INVALID_ADDRESS)?;
    let loopback = match address {
        SocketAddr::V4(v4) => v4.ip().is_loopback(),
        SocketAddr::V6(v6) => {
            v6.ip().is_loopback() || v6.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if !loopback {
        eprintln!("wsk-host: refusing traffic to {address}: only loopback addresses are reachable");
        return Err(STATUS_INVALID_ADDRESS);
    }
    Ok(address)
}
