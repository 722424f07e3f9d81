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
//! at most [`MAX_SPARE_BLOCKS`](super::socket::MAX_SPARE_BLOCKS) completion blocks; what is
//! beyond is freed when the socket's last reference goes.

use core::sync::atomic::{AtomicPtr, Ordering};

use super::shared::Spare;
use super::socket::SocketCore;

/// The most spare sockets a client keeps.
pub(crate) const MAX_SPARE_SOCKETS: usize = 16;

/// A client's spare socket cores, one per slot: kept with a compare-exchange into an empty
/// slot, taken with a swap that empties one — so a spare is taken by exactly one thread, with
/// no lock and no ABA problem, at any IRQL <= DISPATCH_LEVEL.
///
/// # Invariants
/// Each slot is null or holds a spare given up with [`Spare::into_raw`], which nothing else
/// points to.
pub(crate) struct SpareSockets {
    slots: [AtomicPtr<SocketCore>; MAX_SPARE_SOCKETS],
}

impl SpareSockets {
    /// No spare.
    pub(crate) const fn new() -> SpareSockets {
        SpareSockets {
            slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_SPARE_SOCKETS],
        }
    }

    /// Keeps `spare` (reset for reuse by its last reference) in an empty slot; hands it back
    /// when there is none, to be freed.
    pub(crate) fn keep(&self, spare: Spare<SocketCore>) -> Option<Spare<SocketCore>> {
        let raw = spare.into_raw().cast_mut();
        for slot in &self.slots {
            // A plain load first: a full slot costs no read-modify-write. Release: the reset
            // of the core happens before its taker's Acquire.
            if slot.load(Ordering::Relaxed).is_null()
                && slot
                    .compare_exchange(
                        core::ptr::null_mut(),
                        raw,
                        Ordering::Release,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return None;
            }
        }
        // SAFETY: given up just above and stored nowhere: taken back once.
        Some(unsafe { Spare::from_raw(raw) })
    }

    /// A spare socket core, if one is kept.
    pub(crate) fn take(&self) -> Option<Spare<SocketCore>> {
        for slot in &self.slots {
            // A plain load first: an empty slot costs no read-modify-write.
            if slot.load(Ordering::Relaxed).is_null() {
                continue;
            }
            let raw = slot.swap(core::ptr::null_mut(), Ordering::Acquire);
            if !raw.is_null() {
                // SAFETY: a kept spare (invariant), which the swap took out of its slot:
                // this thread alone takes it back.
                return Some(unsafe { Spare::from_raw(raw) });
            }
        }
        None
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
