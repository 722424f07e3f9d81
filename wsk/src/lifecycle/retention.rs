//! Retained indications: data an event callback kept (`STATUS_PENDING`) and must give back
//! with `WskRelease` before the socket can be closed.
//!
//! Each [`Retention`] is linked in its socket's list and holds the socket's gate (so
//! `WskCloseSocket` waits for it). Its states, all changed under the socket's retention lock:
//!
//! ```text
//! InCallback ─callback returns─────────────────────> Held ─dropped / revoked─> Released
//!     │ dropped inside the callback: DroppedInCallback (the callback answers "consumed")
//!     │ revoked inside the callback: the callback answers "consumed" ──────────> Released
//! Held with readers ─revoked─> revoke pending ─last reader done────────────────> Released
//! ```
//!
//! Closing the socket (its handle dropped, `close()`, the client's teardown) **revokes** the
//! retentions: they are released at once (or when their current readers are done), and the
//! [`RetainedData`](crate::RetainedData) that held them reads nothing any more. So no user
//! object — a handler keeping retained data, a struct dropped in field order, a task that
//! holds it — can keep a close, and the client's teardown, waiting for good.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, Ordering};

use wsk_sys::*;

use super::shared::Shared;
use super::socket::{Category, SocketCore};
use crate::sync::SpinLock;
use crate::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// The callback that retained it is still running.
    InCallback,
    /// The callback returned `STATUS_PENDING`: ours to release.
    Held,
    /// Dropped inside its callback: the callback answers "consumed" instead.
    DroppedInCallback,
    /// Given back (or never kept): nothing to read or release.
    Released,
}

/// Fields guarded by the socket's retention lock.
struct Guarded {
    state: State,
    readers: usize,
    revoke_pending: bool,
    revoke_on_return: bool,
    prev: *const Retention,
    next: *const Retention,
}

/// One retained indication (list); see the module documentation.
///
/// # Invariants
/// `guarded` is only accessed under the owning socket's retention lock; `indication` is the
/// provider's indication list, valid until released; `this` is the retention's own address
/// with the provenance of its allocation.
pub(crate) struct Retention {
    guarded: UnsafeCell<Guarded>,
    indication: PVOID,
    this: AtomicPtr<Retention>,
}

// Freed with its last reference.
impl super::shared::LastReference for Retention {}

// SAFETY: the indication is provider memory usable from any thread until released; the
// mutable fields are guarded by the socket's lock.
unsafe impl Send for Retention {}
// SAFETY: as above.
unsafe impl Sync for Retention {}

/// A socket's retained indications: an intrusive list, each linked retention holding a
/// reference (given up with `into_raw`).
pub(crate) struct RetainedList {
    head: *const Retention,
}

// SAFETY: the pointers are retentions kept alive by the list's references; the list is only
// touched under its spin lock.
unsafe impl Send for RetainedList {}

impl RetainedList {
    pub(crate) const fn new() -> RetainedList {
        RetainedList {
            head: core::ptr::null(),
        }
    }
}

/// The lock of a socket's retained indications.
pub(crate) type RetainedLock = SpinLock<RetainedList>;

impl Retention {
    /// # Safety
    /// The caller holds the socket's retention lock.
    #[allow(clippy::mut_from_ref)]
    unsafe fn guarded(&self) -> &mut Guarded {
        // SAFETY: forwarded exclusivity (the lock).
        unsafe { &mut *self.guarded.get() }
    }

    /// The indication list, for reading while a read is open ([`begin_read`]).
    pub(crate) fn indication(&self) -> PVOID {
        self.indication
    }
}

/// Unlinks `retention`; returns the list's reference to it.
///
/// # Safety
/// The caller holds the socket's retention lock (`list` is its data) and `retention` is
/// linked in it.
unsafe fn unlink(list: &mut RetainedList, retention: &Retention) -> Shared<Retention> {
    // SAFETY: guarded by the lock; linked neighbours are alive (the list's references).
    unsafe {
        let guarded = retention.guarded();
        match guarded.prev.as_ref() {
            Some(prev) => prev.guarded().next = guarded.next,
            None => list.head = guarded.next,
        }
        if let Some(next) = guarded.next.as_ref() {
            next.guarded().prev = guarded.prev;
        }
        Shared::from_raw(retention.this.load(Ordering::Relaxed))
    }
}

/// Retains `indication` of `core` inside an event callback: takes a hold on the socket's
/// gate and links the retention. Fails when the socket is closing or memory is short.
pub(crate) fn retain(core: &SocketCore, indication: PVOID) -> Result<Shared<Retention>> {
    let retention = Shared::try_new(Retention {
        guarded: UnsafeCell::new(Guarded {
            state: State::InCallback,
            readers: 0,
            revoke_pending: false,
            revoke_on_return: false,
            prev: core::ptr::null(),
            next: core::ptr::null(),
        }),
        indication,
        this: AtomicPtr::new(core::ptr::null_mut()),
    })?;
    retention
        .this
        .store(retention.as_ptr().cast_mut(), Ordering::Relaxed);
    core.hold()?;
    let mut list = core.retained().lock();
    let raw = retention.clone().into_raw();
    // SAFETY: guarded by the lock held; the head, if any, is alive (the list's reference).
    unsafe {
        (*retention.guarded.get()).next = list.head;
        if let Some(head) = list.head.as_ref() {
            head.guarded().prev = raw;
        }
    }
    list.head = raw;
    Ok(retention)
}

/// Gives an indication back to the provider (`WskRelease`), then the retention's hold on the
/// gate (which may issue a deferred close).
fn release_to_provider(core: &SocketCore, indication: PVOID) {
    // SAFETY: the retention's hold keeps the socket open, so its release function may be
    // called; the indication was retained from this socket and its callback has returned
    // STATUS_PENDING for it.
    unsafe {
        let socket = core.raw();
        let release = match core.category {
            Category::Datagram => (*(*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>())
                .WskRelease
                .map(|release| release(socket, indication.cast())),
            Category::Stream => (*(*socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>())
                .WskRelease
                .map(|release| release(socket, indication.cast())),
            Category::Connection | Category::Listen => (*(*socket)
                .Dispatch
                .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>(
            ))
            .WskRelease
            .map(|release| release(socket, indication.cast())),
        };
        let _ = release;
    }
    core.release_hold();
}

/// Called by the event callback once the handler returned a retaining decision: whether the
/// indication stays retained (`STATUS_PENDING`); `false` when its `RetainedData` was dropped
/// or revoked meanwhile — the callback then answers that the data was consumed, and the
/// provider keeps its memory.
pub(crate) fn settle(core: &SocketCore, retention: &Retention) -> bool {
    let mut list = core.retained().lock();
    // SAFETY: under the lock.
    let guarded = unsafe { retention.guarded() };
    match guarded.state {
        State::InCallback if !guarded.revoke_on_return => {
            guarded.state = State::Held;
            true
        }
        State::InCallback if guarded.readers > 0 => {
            // Revoked while a view (opened during the callback) is still reading: the data
            // stays retained, and the last reader releases it.
            guarded.state = State::Held;
            guarded.revoke_pending = true;
            true
        }
        State::InCallback => {
            guarded.state = State::Released;
            // SAFETY: under the lock; an in-callback retention is linked.
            let reference = unsafe { unlink(&mut list, retention) };
            drop(list);
            drop(reference);
            core.release_hold();
            false
        }
        _ => false,
    }
}

/// Called when a [`RetainedData`](crate::RetainedData) is dropped.
pub(crate) fn drop_retained(core: &SocketCore, retention: &Retention) {
    let mut list = core.retained().lock();
    // SAFETY: under the lock.
    let guarded = unsafe { retention.guarded() };
    let release = match guarded.state {
        State::InCallback => {
            guarded.state = State::DroppedInCallback;
            false
        }
        State::Held => {
            guarded.state = State::Released;
            true
        }
        State::DroppedInCallback | State::Released => return,
    };
    // SAFETY: under the lock; in-callback and held retentions are linked.
    let reference = unsafe { unlink(&mut list, retention) };
    drop(list);
    drop(reference);
    if release {
        release_to_provider(core, retention.indication);
    } else {
        core.release_hold();
    }
}

/// Opens a read of the retained data: fails once it was revoked, or its revocation was
/// requested ([`Error::SOCKET_CLOSED`]).
pub(crate) fn begin_read(core: &SocketCore, retention: &Retention) -> Result<()> {
    let _list = core.retained().lock();
    // SAFETY: under the lock.
    let guarded = unsafe { retention.guarded() };
    if guarded.revoke_on_return || guarded.revoke_pending {
        return Err(Error::SOCKET_CLOSED);
    }
    match guarded.state {
        State::InCallback | State::Held => {
            guarded.readers += 1;
            Ok(())
        }
        _ => Err(Error::SOCKET_CLOSED),
    }
}

/// Closes a read opened with [`begin_read`]; the last reader of a revoked retention releases it.
pub(crate) fn end_read(core: &SocketCore, retention: &Retention) {
    let mut list = core.retained().lock();
    // SAFETY: under the lock.
    let guarded = unsafe { retention.guarded() };
    guarded.readers -= 1;
    if guarded.readers == 0 && guarded.revoke_pending && guarded.state == State::Held {
        guarded.state = State::Released;
        // SAFETY: under the lock; a held retention is linked.
        let reference = unsafe { unlink(&mut list, retention) };
        drop(list);
        drop(reference);
        release_to_provider(core, retention.indication);
    }
}

/// Revokes every retention of a socket being closed: held ones nobody is reading are released
/// now; those being read, when their readers are done; those whose callback is still running,
/// by that callback (it answers "consumed"). IRQL <= DISPATCH_LEVEL.
pub(crate) fn revoke_all(core: &SocketCore) {
    loop {
        let released = {
            let mut list = core.retained().lock();
            let mut cursor = list.head;
            let mut found = None;
            // SAFETY: linked retentions are alive (the list's references) and guarded by the
            // lock held.
            unsafe {
                while let Some(retention) = cursor.as_ref() {
                    let guarded = retention.guarded();
                    cursor = guarded.next;
                    match guarded.state {
                        State::InCallback => guarded.revoke_on_return = true,
                        State::Held if guarded.readers > 0 => guarded.revoke_pending = true,
                        State::Held => {
                            guarded.state = State::Released;
                            found = Some(unlink(&mut list, retention));
                            break;
                        }
                        State::DroppedInCallback | State::Released => {}
                    }
                }
            }
            found
        };
        // Released outside the lock, one at a time (the release may issue the close).
        match released {
            Some(retention) => release_to_provider(core, retention.indication),
            None => break,
        }
    }
}
