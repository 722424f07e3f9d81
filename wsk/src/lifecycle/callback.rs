//! Code the kernel or the provider calls into — completion routines, event callbacks, task
//! polls — runs inside a [`CallbackScope`], where no blocking wait of this crate is allowed,
//! whatever the IRQL.
//!
//! Windows calls a completion routine at the IRQL of whoever completes the request: usually
//! DISPATCH_LEVEL, but PASSIVE_LEVEL when a request issued from a PASSIVE_LEVEL thread
//! completes before the WSK function returns, or when the provider completes from one of its
//! worker threads (name resolution). If user code woken from there (a task, a handler) were
//! free to wait, it would wait in someone else's call stack — the provider's or the issuing
//! thread's — and could stall it for good, or wait for itself. So every wait of this crate
//! ([`require_wait_allowed`]) refuses inside a scope with
//! [`Error::IRQL_TOO_HIGH`](crate::Error::IRQL_TOO_HIGH), and above APC_LEVEL anyway.
//!
//! A scope entered at DISPATCH_LEVEL or above costs one IRQL read: waiting is refused there
//! already. Below, the thread is recorded (by `PsGetCurrentThreadId`) in a small table of the
//! threads inside a scope; when the table is full, the scope raises the IRQL to
//! DISPATCH_LEVEL instead, which refuses waits just as well.

use core::sync::atomic::{AtomicUsize, Ordering};

use wsk_sys::{
    DISPATCH_LEVEL, KIRQL, KeGetCurrentIrql, KeLowerIrql, KeRaiseIrqlToDpcLevel,
    PsGetCurrentThreadId,
};

use crate::irql::Irql;
use crate::{Error, Result};

/// How many threads below DISPATCH_LEVEL can be inside a scope at once before scopes fall
/// back to raising the IRQL.
const THREAD_SLOTS: usize = 64;

/// The threads inside a scope below DISPATCH_LEVEL (their `PsGetCurrentThreadId`; 0 = free).
static THREADS: [AtomicUsize; THREAD_SLOTS] = [const { AtomicUsize::new(0) }; THREAD_SLOTS];
/// Number of occupied slots: 0 makes the check of a wait one load.
static OCCUPIED: AtomicUsize = AtomicUsize::new(0);

fn current_thread() -> usize {
    // SAFETY: PsGetCurrentThreadId has no preconditions (any IRQL).
    unsafe { PsGetCurrentThreadId() as usize }
}

fn slot_of(thread: usize) -> Option<usize> {
    THREADS
        .iter()
        .position(|slot| slot.load(Ordering::Acquire) == thread)
}

/// Whether the calling thread is inside a scope below DISPATCH_LEVEL.
fn inside_scope() -> bool {
    OCCUPIED.load(Ordering::Acquire) != 0 && slot_of(current_thread()).is_some()
}

/// Fails with [`Error::IRQL_TOO_HIGH`] unless the caller may block: IRQL <= APC_LEVEL and
/// not inside a completion routine, event callback or task poll.
pub(crate) fn require_wait_allowed() -> Result<()> {
    if Irql::current() > Irql::APC || inside_scope() {
        Err(Error::IRQL_TOO_HIGH)
    } else {
        Ok(())
    }
}

/// A region of code called by the kernel or the provider (see the module documentation).
/// Not `Send`: it belongs to the thread (and processor) that entered it.
pub(crate) struct CallbackScope {
    exit: Exit,
    _not_send: core::marker::PhantomData<*mut ()>,
}

enum Exit {
    /// Entered at DISPATCH_LEVEL or above, or nested in another scope of the thread.
    Nothing,
    /// Free the thread's slot.
    Slot(usize),
    /// Lower the IRQL back to this level (the table was full).
    Lower(KIRQL),
}

impl CallbackScope {
    /// Enters the scope. Any IRQL <= DISPATCH_LEVEL.
    #[inline]
    pub(crate) fn enter() -> CallbackScope {
        let exit = if KeGetCurrentIrql() >= DISPATCH_LEVEL {
            Exit::Nothing
        } else {
            enter_below_dispatch()
        };
        CallbackScope {
            exit,
            _not_send: core::marker::PhantomData,
        }
    }
}

#[cold]
fn enter_below_dispatch() -> Exit {
    let thread = current_thread();
    if OCCUPIED.load(Ordering::Acquire) != 0 && slot_of(thread).is_some() {
        return Exit::Nothing;
    }
    for (index, slot) in THREADS.iter().enumerate() {
        if slot
            .compare_exchange(0, thread, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            OCCUPIED.fetch_add(1, Ordering::AcqRel);
            return Exit::Slot(index);
        }
    }
    Exit::Lower(KeRaiseIrqlToDpcLevel())
}

impl Drop for CallbackScope {
    #[inline]
    fn drop(&mut self) {
        match self.exit {
            Exit::Nothing => {}
            Exit::Slot(index) => {
                OCCUPIED.fetch_sub(1, Ordering::AcqRel);
                THREADS[index].store(0, Ordering::Release);
            }
            Exit::Lower(entry) => {
                // SAFETY: `entry` is the IRQL this scope raised from, on this processor (the
                // scope is not `Send`): lowering back to it undoes the raise.
                unsafe { KeLowerIrql(entry) };
            }
        }
    }
}
