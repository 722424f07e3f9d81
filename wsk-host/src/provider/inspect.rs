//! Conditional accept (`SO_CONDITIONAL_ACCEPT`): a listening socket's incoming connections
//! are accepted by the host, then inspected by the client (`WskInspectEvent`) before they
//! can be accepted (`WskAcceptEvent` or `WskAccept`). A pended inspection waits for
//! `WskInspectComplete`; a rejected connection is reset; the inspections and admitted
//! connections of a listening socket that closes are reset.
//!
//! An inspection is recorded before its callback runs, so that a `WskInspectComplete` from
//! another thread may come at any time after the client decided to pend it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::SockRef;
use wsk_sys::*;

use super::address::write_sockaddr;
use super::indication::Event;
use super::reactor::reactor;
use super::socket::{Category, HostSocket, Io, State};
use crate::verifier::{Rule, bug_check};

/// A connection the host accepted, waiting for the client's inspection.
pub(crate) struct Inspecting {
    pub(crate) serial: u32,
    pub(crate) stream: mio::net::TcpStream,
    pub(crate) peer: SocketAddr,
    /// Its `WskInspectEvent` has returned `WskInspectPend`: `WskInspectComplete` may come.
    pub(crate) pended: bool,
    /// The thread running its `WskInspectEvent`, while it runs.
    pub(crate) callback_thread: Option<std::thread::ThreadId>,
    /// A decision another thread completed while the callback was still returning
    /// `WskInspectPend` (a client hands the inspect ID to another thread before it returns:
    /// that thread may be faster than the return). Applied when the callback returns
    /// `WskInspectPend`; any other answer is the client's error.
    pub(crate) early: Option<bool>,
}

/// A connection the client's inspection accepted, waiting for `WskAccept` or an accept
/// event.
pub(crate) struct Admitted {
    pub(crate) stream: mio::net::TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) id: WSK_INSPECT_ID,
}

/// Serial numbers of inspect IDs.
static NEXT_SERIAL: AtomicU32 = AtomicU32::new(1);

/// The inspect ID of a listening socket's inspection.
pub(crate) fn id_of(listener: &HostSocket, serial: u32) -> WSK_INSPECT_ID {
    WSK_INSPECT_ID {
        Key: std::ptr::from_ref(listener) as ULONG_PTR,
        SerialNumber: serial,
    }
}

/// The next event of a conditional-accept listener: an inspected connection whose peer went
/// away (`WskAbortEvent`), or a new connection from the host listener to inspect. Under the
/// socket's lock.
pub(crate) fn next_event(socket: &HostSocket, state: &mut State) -> Option<Event> {
    if let Some(position) = state.inspecting.iter().position(|i| peer_gone(&i.stream)) {
        let mut gone = state.inspecting.swap_remove(position);
        reactor().deregister(&mut gone.stream);
        return Some(Event::Abort {
            serial: gone.serial,
        });
    }
    let Io::Listener(listener) = &mut state.io else {
        return None;
    };
    let (mut stream, peer) = listener.accept().ok()?;
    let local = stream.local_addr().ok()?;
    // Watched under the listener's token: its peer going away progresses the listener.
    reactor().register(
        &mut stream,
        std::ptr::from_ref(socket) as usize,
        mio::Interest::READABLE,
    );
    let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
    state.inspecting.push(Inspecting {
        serial,
        stream,
        peer,
        pended: false,
        callback_thread: None,
        early: None,
    });
    Some(Event::Inspect {
        serial,
        local,
        peer,
    })
}

/// Whether the peer of a connection closed or reset it (data waiting is not that).
fn peer_gone(stream: &mio::net::TcpStream) -> bool {
    match stream.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}

/// Calls the client's `WskAbortEvent` for an inspection whose peer went away.
pub(crate) fn deliver_abort(
    listener: &Arc<HostSocket>,
    context: PVOID,
    dispatch: *const core::ffi::c_void,
    serial: u32,
) {
    // SAFETY: as in `deliver_inspect`.
    let table = unsafe { listen_table(listener, dispatch) };
    if let Some(callback) = table.and_then(|t| t.WskAbortEvent) {
        let mut id = id_of(listener, serial);
        // SAFETY: the client's callback with its context.
        unsafe { callback(context, &mut id) };
    }
}

/// The listen members of a listening socket's client dispatch table (a stream socket's are
/// its table's `Listen` member), if it gave any.
///
/// # Safety
/// `dispatch` must be the client dispatch table given for `listener`.
pub(crate) unsafe fn listen_table<'a>(
    listener: &HostSocket,
    dispatch: *const core::ffi::c_void,
) -> Option<&'a WSK_CLIENT_LISTEN_DISPATCH> {
    // SAFETY: a listening socket's client dispatch table is a WSK_CLIENT_LISTEN_DISPATCH (or
    // a stream table's `Listen` member).
    unsafe {
        if listener.category == Category::Stream {
            dispatch
                .cast::<WSK_CLIENT_STREAM_DISPATCH>()
                .as_ref()
                .and_then(|t| t.Listen.as_ref())
        } else {
            dispatch.cast::<WSK_CLIENT_LISTEN_DISPATCH>().as_ref()
        }
    }
}

/// Resets a connection (the peer sees a reset, not a graceful close).
pub(crate) fn reset(stream: mio::net::TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}

/// Settles an inspection: admitted (`accept`) or reset. `false` when it is not (or no
/// longer) pending.
pub(crate) fn settle(listener: &Arc<HostSocket>, serial: u32, accept: bool) -> bool {
    let taken = {
        let mut state = listener.lock();
        let position = state.inspecting.iter().position(|i| i.serial == serial);
        let mut taken = position.map(|p| state.inspecting.swap_remove(p));
        if let Some(inspecting) = taken.as_mut() {
            // No longer watched under the listener's token.
            reactor().deregister(&mut inspecting.stream);
        }
        match taken {
            Some(inspecting) if accept => {
                state.admitted.push_back(Admitted {
                    stream: inspecting.stream,
                    peer: inspecting.peer,
                    id: id_of(listener, serial),
                });
                None
            }
            Some(inspecting) => Some(Some(inspecting)),
            None => Some(None),
        }
    };
    match taken {
        None => {
            // Admitted: a pending WskAccept or the accept event takes it.
            reactor().kick(Arc::clone(listener));
            true
        }
        Some(Some(rejected)) => {
            reset(rejected.stream);
            true
        }
        Some(None) => false,
    }
}

/// Resets every inspection and admitted connection of a closing listener. Under its lock.
pub(crate) fn abandon_all(state: &mut State) {
    for inspecting in state.inspecting.drain(..) {
        reset(inspecting.stream);
    }
    for admitted in state.admitted.drain(..) {
        reset(admitted.stream);
    }
}

/// Calls the client's `WskInspectEvent` (outside the socket's lock, at DISPATCH_LEVEL) and
/// acts on its answer.
pub(crate) fn deliver_inspect(
    listener: &Arc<HostSocket>,
    context: PVOID,
    dispatch: *const core::ffi::c_void,
    serial: u32,
    local: SocketAddr,
    peer: SocketAddr,
) {
    // SAFETY: the listener's client dispatch table.
    let table = unsafe { listen_table(listener, dispatch) };
    let Some(callback) = table.and_then(|t| t.WskInspectEvent) else {
        bug_check(
            Rule::InvalidParameter,
            "SO_CONDITIONAL_ACCEPT on a listening socket whose client has no WskInspectEvent",
        );
        settle(listener, serial, false);
        return;
    };
    let mut local_storage = SOCKADDR_INET::default();
    let mut remote_storage = SOCKADDR_INET::default();
    let mut id = id_of(listener, serial);
    if let Some(inspecting) = listener
        .lock()
        .inspecting
        .iter_mut()
        .find(|i| i.serial == serial)
    {
        inspecting.callback_thread = Some(std::thread::current().id());
    }
    // SAFETY: the storages fit either family; the client's callback with its context.
    let action = unsafe {
        write_sockaddr((&raw mut local_storage).cast(), &local);
        write_sockaddr((&raw mut remote_storage).cast(), &peer);
        callback(
            context,
            (&raw mut local_storage).cast(),
            (&raw mut remote_storage).cast(),
            &mut id,
        )
    };
    let early = {
        let mut state = listener.lock();
        state
            .inspecting
            .iter_mut()
            .find(|i| i.serial == serial)
            .and_then(|inspecting| {
                // In the same lock as the end of the callback: a WskInspectComplete from
                // another thread finds the inspection either still in its callback (and
                // deferred) or pended.
                inspecting.callback_thread = None;
                if action == WskInspectPend && inspecting.early.is_none() {
                    inspecting.pended = true;
                }
                inspecting.early
            })
    };
    if early.is_some() && action != WskInspectPend {
        bug_check(
            Rule::InvalidParameter,
            "WskInspectComplete for an inspection whose WskInspectEvent did not return WskInspectPend",
        );
    }
    match action {
        WskInspectAccept => {
            settle(listener, serial, true);
        }
        WskInspectReject => {
            settle(listener, serial, false);
        }
        WskInspectPend => {
            // Pended above; a decision that came during the callback is applied now.
            if let Some(accept) = early {
                settle(listener, serial, accept);
            }
        }
        other => {
            bug_check(
                Rule::InvalidParameter,
                format!("WskInspectEvent returned {other}, not a WSK_INSPECT_ACTION"),
            );
            settle(listener, serial, false);
        }
    }
}

/// `WskInspectComplete`: the decision on a pended inspection. Returns the status.
pub(crate) fn complete(
    listener: &Arc<HostSocket>,
    id: PWSK_INSPECT_ID,
    action: WSK_INSPECT_ACTION,
) -> NTSTATUS {
    // SAFETY: the client's inspect ID, read during the call.
    let Some(id) = (unsafe { id.as_ref() }) else {
        return STATUS_INVALID_PARAMETER;
    };
    if id.Key != std::ptr::from_ref(&**listener) as ULONG_PTR {
        return STATUS_INVALID_PARAMETER;
    }
    let accept = match action {
        WskInspectAccept => true,
        WskInspectReject => false,
        _ => return STATUS_INVALID_PARAMETER,
    };
    // Before the callback returned `WskInspectPend`: from inside the callback (its own
    // thread), the client's error; from another thread, the decision of a hand-off that beat
    // the callback's return — applied when it returns.
    let this_thread = std::thread::current().id();
    let early = {
        let mut state = listener.lock();
        match state
            .inspecting
            .iter_mut()
            .find(|i| i.serial == id.SerialNumber && !i.pended)
        {
            None => None,
            Some(inspecting)
                if inspecting.callback_thread.is_some()
                    && inspecting.callback_thread != Some(this_thread)
                    && inspecting.early.is_none() =>
            {
                inspecting.early = Some(accept);
                Some(true)
            }
            Some(_) => Some(false),
        }
    };
    match early {
        Some(true) => return STATUS_SUCCESS,
        Some(false) => {
            bug_check(
                Rule::InvalidParameter,
                "WskInspectComplete before its WskInspectEvent returned WskInspectPend",
            );
            return STATUS_INVALID_PARAMETER;
        }
        None => {}
    }
    if settle(listener, id.SerialNumber, accept) {
        STATUS_SUCCESS
    } else {
        // Not pending: completed already, or its listener closed.
        STATUS_INVALID_PARAMETER
    }
}
