//! Reserving ahead of I/O: `reserve_requests` on every socket kind and on the client.
//!
//! Every request this crate issues uses a completion block (its IRP, its event, the fields
//! the provider reads and writes) from the pool of its socket — or of its client, for socket
//! creation, connection and name resolution. A pool grows by one block when a request finds
//! all of them in use, and keeps its blocks until its owner goes: so steady-state I/O
//! allocates nothing, but the first time `n` requests are in flight at once costs `n`
//! allocations, at whatever IRQL and moment that happens — and can fail for lack of memory.
//!
//! A driver that knows how many requests it keeps in flight (a receive and a send per
//! connection, a window of 8 sends, 64 accepts posted) reserves them once, at set-up: from
//! then on up to that many requests in flight at once allocate no completion block and never
//! fail for lack of one. A request that creates a socket — an accept, a connect through the
//! client — also needs the new socket's own state (its core and the IRP reserved for its
//! close): it takes one of its client's spare sockets (the cores of its sockets closed
//! before, kept for reuse), and allocates one only when there is none. A reservation is a floor, not a limit: more requests still grow the
//! pool. Blocks reserved are freed with their owner (the socket when its last operation and
//! its close are done, the client at its teardown), never before.
//!
//! # What "in flight" counts
//!
//! A request holds its block from its issue until its completion routine has returned —
//! which can be a moment *after* its result was delivered: the routine wakes the waiter (or
//! the task) and only then lets the block go. A driver that issues the next request the
//! instant the last one completed may therefore find that block not back yet, and take
//! another. To never allocate whatever the timing, reserve two blocks per request kept in
//! flight and reissued at once (a window of 8 sends: `reserve_requests(16)`); requests issued
//! once (64 accepts posted at start) need one each.

use crate::client::WskClient;
use crate::socket::{SocketHandle, SocketKind};
use crate::{ConnectionSocket, DatagramSocket, Error, ListenSocket, Result, StreamSocket};

pub use crate::lifecycle::completion::MAX_RESERVED_REQUESTS;

/// Grows the pool of the socket behind `handle` to `count` blocks.
fn reserve_on(handle: &SocketHandle, count: usize) -> Result<()> {
    let core = &handle.core;
    // Blocks added to a closing socket could never serve a request (a close racing this
    // check is harmless: they are freed with the socket).
    if core.close_requested() {
        return Err(Error::SOCKET_CLOSED);
    }
    core.blocks().reserve(core.as_ptr(), count)
}

macro_rules! reserve_requests_method {
    ($kind:ident, $what:literal) => {
        impl $kind {
            #[doc = concat!(
                "Reserves completion blocks for `count` requests in flight at once on this ",
                $what,
                " socket: until the socket is closed, up to `count` of its requests in flight ",
                "together allocate no completion block (no IRP, no pool block) and never fail ",
                "for lack of one — except for the state of the socket an accept creates (its ",
                "core and close IRP), which is allocated when the accept is issued unless the ",
                "client has a spare one (a socket closed before). Each block missing is allocated now (non-paged pool and an IRP); blocks ",
                "the socket already has count, so reserving again costs nothing. A request ",
                "counts until its completion routine has returned, a moment after its result ",
                "is delivered: a request reissued the instant the last one completed may not ",
                "find that block back yet, so reserve two per request kept in flight that way ",
                "(a window of 8 sends reissued as each completes: `reserve_requests(16)`), one ",
                "per request issued once.\n\n",
                "Fails with [`Error::INVALID_PARAMETER`](crate::Error::INVALID_PARAMETER) ",
                "above [`MAX_RESERVED_REQUESTS`](crate::MAX_RESERVED_REQUESTS) and with ",
                "[`Error::SOCKET_CLOSED`](crate::Error::SOCKET_CLOSED) once the socket's close ",
                "was requested (nothing allocated), or with `STATUS_INSUFFICIENT_RESOURCES` when ",
                "memory runs out (the blocks added until then stay reserved). A forgotten ",
                "(`mem::forget`) operation of the socket keeps every block of its pool, ",
                "reserved ones included, allocated for good. IRQL <= DISPATCH_LEVEL; never ",
                "waits.",
            )]
            pub fn reserve_requests(&self, count: usize) -> Result<()> {
                reserve_on(self.handle(), count)
            }
        }
    };
}

reserve_requests_method!(ConnectionSocket, "connection");
reserve_requests_method!(ListenSocket, "listening");
reserve_requests_method!(DatagramSocket, "datagram");
reserve_requests_method!(StreamSocket, "stream");

impl WskClient {
    /// Reserves completion blocks for `count` client-level requests in flight at once:
    /// socket creation ([`connect`](WskClient::connect),
    /// [`bind_datagram`](WskClient::bind_datagram), `create`), name resolution and client
    /// controls. Until the client's teardown, up to `count` of them in flight together
    /// allocate no block (the sockets they create take the cores of sockets closed before,
    /// if the client keeps some, or allocate them). Errors and IRQL as for [`ConnectionSocket::reserve_requests`] (a client
    /// is never closed while it can be called).
    pub fn reserve_requests(&self, count: usize) -> Result<()> {
        self.core().blocks().reserve(core::ptr::null(), count)
    }
}
