//! Event callbacks: receive, disconnect, accept and receive-from indications, their memory
//! (provider-owned pool, released by `WskRelease` when retained), and their delivery at
//! DISPATCH_LEVEL outside the socket's lock — from the provider's thread, or from several
//! delivery threads at once (`FaultPlan::concurrent_events`).

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::sync::Arc;

use wsk_sys::*;

use super::address::write_sockaddr;
use super::socket::{Category, HostSocket, Io, State};
use crate::irql;
use crate::pool;
use crate::session::count;
use crate::verifier::{Rule, bug_check};

/// Pool tag of the provider's indications (`WskH`).
const INDICATION_TAG: ULONG = u32::from_le_bytes(*b"WskH");
/// Largest amount of data indicated at once.
const MAX_INDICATION: usize = 65_536;

/// An event to deliver.
pub(crate) enum Event {
    Receive(Vec<u8>),
    Disconnect {
        abortive: bool,
    },
    Accept(Arc<HostSocket>, SocketAddr, SocketAddr),
    ReceiveFrom(Vec<u8>, SocketAddr),
    /// The ideal send backlog (the host socket's send buffer size), in bytes.
    SendBacklog(usize),
    /// A connection to inspect (conditional accept).
    Inspect {
        serial: u32,
        local: SocketAddr,
        peer: SocketAddr,
    },
    /// An inspected connection went away (conditional accept).
    Abort {
        serial: u32,
    },
}

/// Decides the next event of a socket, taking its data out of the host socket (or the
/// buffered bytes), under the socket's lock.
pub(crate) fn next_event(socket: &Arc<HostSocket>, state: &mut State) -> Option<Event> {
    // No event enabled (and no conditional accept, whose inspection needs none): nothing to
    // indicate, whatever the socket's state.
    if state.closing || state.client_dispatch.is_null() || (state.events == 0 && !state.conditional)
    {
        return None;
    }
    match socket.category {
        Category::Connection | Category::Stream
            if matches!(state.io, Io::Stream(_)) || !state.buffered.is_empty() || state.eof =>
        {
            connection_event(state)
        }
        Category::Listen | Category::Stream if matches!(state.io, Io::Listener(_)) => {
            if state.conditional {
                if let Some(event) = super::inspect::next_event(socket, state) {
                    return Some(event);
                }
            }
            accept_event(socket, state)
        }
        Category::Datagram => datagram_event(state),
        _ => None,
    }
}

fn connection_event(state: &mut State) -> Option<Event> {
    if state.send_backlog_due && state.events & WSK_EVENT_SEND_BACKLOG != 0 {
        state.send_backlog_due = false;
        if let Io::Stream(stream) = &state.io {
            if let Ok(ideal) = socket2::SockRef::from(stream).send_buffer_size() {
                return Some(Event::SendBacklog(ideal));
            }
        }
    }
    if !state.receives.is_empty() {
        return None;
    }
    let receive_enabled = state.events & WSK_EVENT_RECEIVE != 0 && !state.suspended;
    if state.receive_indicating {
        // Another delivery thread indicates data now. The next data waits for it (a
        // connection's bytes are indicated in order), but the end of the stream right after
        // that data is indicated now, concurrently, as on Windows.
        if state.buffered.is_empty() && !state.eof {
            peek_end(state);
        }
    } else if receive_enabled && !state.buffered.is_empty() {
        let take = state.buffered.len().min(MAX_INDICATION);
        return Some(Event::Receive(state.buffered.drain(..take).collect()));
    }
    if receive_enabled && !state.eof {
        if let Io::Stream(stream) = &mut state.io {
            let mut data = vec![0u8; MAX_INDICATION];
            match stream.read(&mut data) {
                Ok(0) => state.eof = true,
                Ok(count) => {
                    data.truncate(count);
                    crate::session::count(|c| c.bytes_received += count as u64);
                    return Some(Event::Receive(data));
                }
                Err(error)
                    if error.kind() == ErrorKind::WouldBlock
                        || error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    state.error = Some(super::status_of_io(&error));
                    state.eof = true;
                }
            }
        }
    }
    if state.eof && !state.disconnect_reported && state.events & WSK_EVENT_DISCONNECT != 0 {
        state.disconnect_reported = true;
        return Some(Event::Disconnect {
            abortive: state.error.is_some(),
        });
    }
    None
}

/// Sets `eof` (and the error of a reset) when the host socket has nothing left to read
/// but the end of the stream, without taking data.
fn peek_end(state: &mut State) {
    let Io::Stream(stream) = &state.io else {
        return;
    };
    match stream.peek(&mut [0u8; 1]) {
        Ok(0) => state.eof = true,
        Ok(_) => {}
        Err(error)
            if error.kind() == ErrorKind::WouldBlock || error.kind() == ErrorKind::Interrupted => {}
        Err(error) => {
            state.error = Some(super::status_of_io(&error));
            state.eof = true;
        }
    }
}

fn accept_event(socket: &Arc<HostSocket>, state: &mut State) -> Option<Event> {
    if state.events & WSK_EVENT_ACCEPT == 0 || !state.accepts.is_empty() {
        return None;
    }
    let Io::Listener(listener) = &mut state.io else {
        return None;
    };
    let (stream, peer, inspect_id) = if state.conditional {
        let admitted = state.admitted.pop_front()?;
        (admitted.stream, admitted.peer, Some(admitted.id))
    } else {
        let (stream, peer) = listener.accept().ok()?;
        (stream, peer, None)
    };
    let local = stream.local_addr().ok()?;
    let accepted = HostSocket::new(
        Category::Connection,
        socket.family,
        socket.client,
        Io::Stream(stream),
        std::ptr::null_mut(),
        std::ptr::null(),
    );
    accepted.lock().inspect_id = inspect_id;
    Some(Event::Accept(accepted, local, peer))
}

fn datagram_event(state: &mut State) -> Option<Event> {
    if state.events & WSK_EVENT_RECEIVE_FROM == 0 || !state.receives.is_empty() {
        return None;
    }
    let Io::Datagram(udp) = &mut state.io else {
        return None;
    };
    let mut data = vec![0u8; 65_536];
    let (count, source) = udp.recv_from(&mut data).ok()?;
    data.truncate(count);
    crate::session::count(|c| c.bytes_received += count as u64);
    Some(Event::ReceiveFrom(data, source))
}

/// A provider-owned block: an indication header, its MDL, then the data.
#[repr(C)]
struct DataBlock {
    indication: WSK_DATA_INDICATION,
}

#[repr(C)]
struct DatagramBlock {
    indication: WSK_DATAGRAM_INDICATION,
    remote: SOCKADDR_INET,
}

/// Allocates `header` bytes, an MDL for `data`, and the data, in one pool block; returns the
/// block and the MDL.
fn allocate_block(header: usize, data: &[u8]) -> (*mut u8, PMDL) {
    let mdl_offset = header.next_multiple_of(16);
    let mdl_size = 0x30 + 8 * (data.len() / PAGE_SIZE + 2);
    let data_offset = (mdl_offset + mdl_size).next_multiple_of(16);
    let block = pool::allocate_internal(data_offset + data.len().max(1), INDICATION_TAG);
    // SAFETY: the block holds the header, the MDL and the data at the offsets computed above.
    unsafe {
        let data_ptr = block.add(data_offset);
        std::ptr::copy_nonoverlapping(data.as_ptr(), data_ptr, data.len());
        let mdl = block.add(mdl_offset).cast::<MDL>();
        MmInitializeMdl(mdl, data_ptr.cast(), data.len());
        (*mdl).MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
        (*mdl).MappedSystemVa = data_ptr.cast();
        (block, mdl)
    }
}

/// Frees an indication block (connection data or datagram).
pub(crate) fn free_any(block: usize) {
    pool::free(block as *mut u8, INDICATION_TAG);
}

/// Delivers an event to the client's callback, at DISPATCH_LEVEL, outside the socket's lock.
pub(crate) fn deliver(socket: &Arc<HostSocket>, event: Event) {
    let (context, dispatch, closed) = {
        let state = socket.lock();
        (state.context, state.client_dispatch, state.closed)
    };
    if closed {
        bug_check(
            Rule::EventAfterClose,
            "an event was about to be delivered to a closed socket",
        );
        return;
    }
    count(|c| c.events_delivered += 1);
    irql::at_dispatch(|| match event {
        Event::Receive(data) => deliver_receive(socket, context, dispatch, data),
        Event::Disconnect { abortive } => {
            // SAFETY: a connection socket's client dispatch table is a
            // WSK_CLIENT_CONNECTION_DISPATCH (or a stream table's `Connect` member).
            let table = unsafe { connection_table(socket.category, dispatch) };
            if let Some(callback) = table.and_then(|t| t.WskDisconnectEvent) {
                // SAFETY: the client's callback with its context.
                unsafe { callback(context, if abortive { WSK_FLAG_ABORTIVE } else { 0 }) };
            }
        }
        Event::Accept(accepted, local, remote) => {
            deliver_accept(socket, context, dispatch, accepted, local, remote)
        }
        Event::ReceiveFrom(data, source) => {
            deliver_datagram(socket, context, dispatch, data, source)
        }
        Event::Inspect {
            serial,
            local,
            peer,
        } => super::inspect::deliver_inspect(socket, context, dispatch, serial, local, peer),
        Event::Abort { serial } => super::inspect::deliver_abort(socket, context, dispatch, serial),
        Event::SendBacklog(ideal) => {
            // SAFETY: as for the disconnect event.
            let table = unsafe { connection_table(socket.category, dispatch) };
            if let Some(callback) = table.and_then(|t| t.WskSendBacklogEvent) {
                // SAFETY: the client's callback with its context.
                unsafe { callback(context, ideal as SIZE_T) };
            }
        }
    });
}

/// # Safety
/// `dispatch` must be the client dispatch table given for a socket of `category`.
unsafe fn connection_table<'a>(
    category: Category,
    dispatch: *const core::ffi::c_void,
) -> Option<&'a WSK_CLIENT_CONNECTION_DISPATCH> {
    // SAFETY: forwarded from the caller.
    unsafe {
        if category == Category::Stream {
            dispatch
                .cast::<WSK_CLIENT_STREAM_DISPATCH>()
                .as_ref()?
                .Connect
                .as_ref()
        } else {
            dispatch.cast::<WSK_CLIENT_CONNECTION_DISPATCH>().as_ref()
        }
    }
}

fn deliver_receive(
    socket: &Arc<HostSocket>,
    context: PVOID,
    dispatch: *const core::ffi::c_void,
    data: Vec<u8>,
) {
    // SAFETY: as in `deliver`.
    let Some(callback) =
        (unsafe { connection_table(socket.category, dispatch) }).and_then(|t| t.WskReceiveEvent)
    else {
        socket.lock().buffered.extend(data);
        return;
    };
    let (block, mdl) = allocate_block(std::mem::size_of::<DataBlock>(), &data);
    let indication = block.cast::<WSK_DATA_INDICATION>();
    // SAFETY: the block was just allocated with room for the indication.
    unsafe {
        indication.write(WSK_DATA_INDICATION {
            Next: std::ptr::null_mut(),
            Buffer: WSK_BUF {
                Mdl: mdl,
                Offset: 0,
                Length: data.len() as SIZE_T,
            },
        });
    }
    let mut accepted: SIZE_T = data.len() as SIZE_T;
    socket.lock().retained.insert(block as usize);
    // SAFETY: the client's callback with its context and a valid indication.
    let status = unsafe {
        callback(
            context,
            WSK_FLAG_AT_DISPATCH_LEVEL,
            indication,
            data.len() as SIZE_T,
            &mut accepted,
        )
    };
    let mut state = socket.lock();
    if status == STATUS_PENDING {
        // Retained until WskRelease (which may have come already, from another thread).
        return;
    }
    let held = state.retained.remove(&(block as usize));
    match status {
        STATUS_SUCCESS if (accepted as usize) < data.len() => {
            for &byte in data[accepted as usize..].iter().rev() {
                state.buffered.push_front(byte);
            }
            state.suspended = true;
        }
        STATUS_SUCCESS => {}
        STATUS_DATA_NOT_ACCEPTED => {
            for &byte in data.iter().rev() {
                state.buffered.push_front(byte);
            }
            state.suspended = true;
        }
        other => {
            drop(state);
            bug_check(
                Rule::InvalidParameter,
                format!("WskReceiveEvent returned {other:#010x}"),
            );
            release_after_callback(block, held);
            return;
        }
    }
    drop(state);
    release_after_callback(block, held);
}

/// Frees an indication whose callback did not retain it — unless the client released it
/// with `WskRelease` although the callback did not return `STATUS_PENDING` (reported).
fn release_after_callback(block: *mut u8, held: bool) {
    if held {
        free_any(block as usize);
    } else {
        bug_check(
            Rule::InvalidParameter,
            "WskRelease of an indication whose event callback did not return STATUS_PENDING",
        );
    }
}

fn deliver_accept(
    listener: &Arc<HostSocket>,
    context: PVOID,
    dispatch: *const core::ffi::c_void,
    accepted: Arc<HostSocket>,
    local: SocketAddr,
    remote: SocketAddr,
) {
    // SAFETY: the client dispatch table given for this listening socket.
    let table = unsafe { super::inspect::listen_table(listener, dispatch) };
    let Some(callback) = table.and_then(|t| t.WskAcceptEvent) else {
        accepted.discard();
        return;
    };
    let mut local_storage = SOCKADDR_INET::default();
    let mut remote_storage = SOCKADDR_INET::default();
    let mut accept_context: PVOID = std::ptr::null_mut();
    let mut accept_dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH = std::ptr::null();
    // SAFETY: the storages fit either family; the client's callback with its context.
    let status = unsafe {
        write_sockaddr((&raw mut local_storage).cast(), &local);
        write_sockaddr((&raw mut remote_storage).cast(), &remote);
        callback(
            context,
            WSK_FLAG_AT_DISPATCH_LEVEL,
            (&raw mut local_storage).cast(),
            (&raw mut remote_storage).cast(),
            accepted.as_wsk(),
            &mut accept_context,
            &mut accept_dispatch,
        )
    };
    if status == STATUS_SUCCESS {
        let mut state = accepted.lock();
        state.context = accept_context;
        state.client_dispatch = accept_dispatch.cast();
        accepted.watch(&mut state);
    } else {
        accepted.discard();
    }
}

fn deliver_datagram(
    socket: &Arc<HostSocket>,
    context: PVOID,
    dispatch: *const core::ffi::c_void,
    data: Vec<u8>,
    source: SocketAddr,
) {
    // SAFETY: a datagram socket's client dispatch table is a WSK_CLIENT_DATAGRAM_DISPATCH.
    let Some(callback) = (unsafe { dispatch.cast::<WSK_CLIENT_DATAGRAM_DISPATCH>().as_ref() })
        .and_then(|t| t.WskReceiveFromEvent)
    else {
        return;
    };
    let (block, mdl) = allocate_block(std::mem::size_of::<DatagramBlock>(), &data);
    let datagram = block.cast::<DatagramBlock>();
    // SAFETY: the block was just allocated with room for the header and the address.
    unsafe {
        write_sockaddr((&raw mut (*datagram).remote).cast(), &source);
        (&raw mut (*datagram).indication).write(WSK_DATAGRAM_INDICATION {
            Next: std::ptr::null_mut(),
            Buffer: WSK_BUF {
                Mdl: mdl,
                Offset: 0,
                Length: data.len() as SIZE_T,
            },
            ControlInfo: std::ptr::null_mut(),
            ControlInfoLength: 0,
            RemoteAddress: (&raw mut (*datagram).remote).cast(),
        });
    }
    socket.lock().retained.insert(block as usize);
    // SAFETY: the client's callback with its context and a valid indication.
    let status = unsafe { callback(context, WSK_FLAG_AT_DISPATCH_LEVEL, block.cast()) };
    if status != STATUS_PENDING {
        // (When it is, the indication is retained until WskRelease, which may have come
        // already, from another thread.)
        let held = socket.lock().retained.remove(&(block as usize));
        release_after_callback(block, held);
    }
}

/// `WskRelease` of indications the client retained.
pub(crate) fn release(socket: &Arc<HostSocket>, first: usize, datagram: bool) -> NTSTATUS {
    let mut next = first;
    while next != 0 {
        let following = if datagram {
            // SAFETY: a retained datagram indication of this socket is provider memory.
            unsafe { (*(next as *const WSK_DATAGRAM_INDICATION)).Next as usize }
        } else {
            // SAFETY: as above, for connection data.
            unsafe { (*(next as *const WSK_DATA_INDICATION)).Next as usize }
        };
        let known = socket.lock().retained.remove(&next);
        if !known {
            bug_check(
                Rule::InvalidParameter,
                format!("WskRelease({next:#x}): not an indication this socket's client retained"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        free_any(next);
        next = following;
    }
    STATUS_SUCCESS
}
