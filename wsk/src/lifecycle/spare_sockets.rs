//! Socket cores kept for reuse: a client's spare sockets.
//!
//! A socket's core costs allocations the raw code of a socket does not make: the core itself,
//! the IRP reserved for its close, the event its close sets. A server that accepts (or a
//! client that connects) one socket after another would pay them for every socket. So when a
//! socket's last reference goes — its close completed, no request of it in flight, nothing
//! of the provider's pointing at it — its core, with its close IRP, its event and a few of its
//! completion blocks, goes back to its client (reset: no handler, no client reference, not
//! linked), and the client's next socket of any kind takes it instead of allocating: accept
//! and connect then allocate nothing of this crate's in steady state.
//!
//! A spare holds no reference to its client (which holds the spares), so the spares never keep
//! a client alive; they are freed with it. At most [`MAX_SPARE_SOCKETS`] are kept, each with
//! at most [`MAX_SPARE_BLOCKS`] completion blocks; what is beyond is freed when the socket's
//! last reference goes.

use super::shared::Spare;
use super::socket::SocketCore;

/// The most spare sockets a client keeps.
pub(crate) const MAX_SPARE_SOCKETS: usize = 16;

/// The most completion blocks a spare socket keeps (a socket's blocks beyond, grown by a
/// burst or a reservation, are freed when it becomes a spare).
pub(crate) const MAX_SPARE_BLOCKS: usize = 4;

/// A client's spare socket cores: a list linked through the cores' own (unused) `links`,
/// guarded by the client's spin lock around it.
///
/// # Invariants
/// `head` is null or a spare given up with [`Spare::into_raw`], whose `links.next` is the
/// next one; `count` is the length of the list; nothing else points to a listed core.
pub(crate) struct SpareSockets {
    head: *const SocketCore,
    count: usize,
}

// SAFETY: the listed cores are exclusively the list's (like boxes it owns), and `SocketCore`
// is `Send`.
unsafe impl Send for SpareSockets {}

impl SpareSockets {
    /// An empty list.
    pub(crate) const fn new() -> SpareSockets {
        SpareSockets {
            head: core::ptr::null(),
            count: 0,
        }
    }

    /// Keeps `spare` (reset for reuse by its last reference) unless the list is full; hands
    /// it back then, to be freed.
    pub(crate) fn keep(&mut self, mut spare: Spare<SocketCore>) -> Option<Spare<SocketCore>> {
        if self.count >= MAX_SPARE_SOCKETS {
            return Some(spare);
        }
        spare.value_mut().links.get_mut().next = self.head;
        self.head = spare.into_raw();
        self.count += 1;
        None
    }

    /// A spare socket core, if one is kept.
    pub(crate) fn take(&mut self) -> Option<Spare<SocketCore>> {
        if self.head.is_null() {
            return None;
        }
        // SAFETY: a listed spare (invariant), taken off the list once here.
        let mut spare = unsafe { Spare::from_raw(self.head) };
        let links = spare.value_mut().links.get_mut();
        self.head = core::mem::replace(&mut links.next, core::ptr::null());
        self.count -= 1;
        Some(spare)
    }
}

impl Drop for SpareSockets {
    fn drop(&mut self) {
        // Freed with their client: each core, its close IRP and its blocks.
        while let Some(spare) = self.take() {
            drop(spare);
        }
    }
}
