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
//! already. Below, the thread's record ([`crate::per_thread`]) counts the scope; when the
//! table of records is full, the scope raises the IRQL to DISPATCH_LEVEL instead, which
//! refuses waits just as well.

use core::sync::atomic::Ordering;

use wsk_sys::typed::DISPATCH_LEVEL;
use wsk_sys::{KIRQL, KeGetCurrentIrql, KeLowerIrql, KeRaiseIrqlToDpcLevel};

use crate::irql::Irql;
use crate::per_thread::{self, ThreadRecord};
use crate::{Error, Result};

/// Whether the calling thread is inside a scope below DISPATCH_LEVEL.
#[inline]
fn inside_scope() -> bool {
    per_thread::find().is_some_and(|record| record.callback_depth.load(Ordering::Relaxed) > 0)
}

/// Fails with [`Error::IRQL_TOO_HIGH`] unless the caller may block: IRQL <= APC_LEVEL and
/// not inside a completion routine, event callback or task poll. Inlined: every blocking
/// wait starts with it.
#[inline]
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
    /// Entered at DISPATCH_LEVEL or above.
    Nothing,
    /// Uncount the scope in the thread's record.
    Record(&'static ThreadRecord),
    /// Lower the IRQL back to this level (no record was free).
    Lower(KIRQL),
}

impl CallbackScope {
    /// The thread's record that counts this scope: entered below DISPATCH_LEVEL with a record
    /// free (else the scope counts nothing, or raised the IRQL to DISPATCH_LEVEL).
    pub(crate) fn thread_record(&self) -> Option<&'static ThreadRecord> {
        match self.exit {
            Exit::Record(record) => Some(record),
            Exit::Nothing | Exit::Lower(_) => None,
        }
    }

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
    match per_thread::find_or_claim() {
        Some(record) => {
            record.callback_depth.fetch_add(1, Ordering::Relaxed);
            Exit::Record(record)
        }
        None => Exit::Lower(KeRaiseIrqlToDpcLevel()),
    }
}

impl Drop for CallbackScope {
    #[inline]
    fn drop(&mut self) {
        match self.exit {
            Exit::Nothing => {}
            Exit::Record(record) => {
                record.callback_depth.fetch_sub(1, Ordering::Relaxed);
                per_thread::release_if_unused(record);
            }
            Exit::Lower(entry) => {
                // SAFETY: `entry` is the IRQL this scope raised from, on this processor (the
                // scope is not `Send`): lowering back to it undoes the raise.
                unsafe { KeLowerIrql(entry) };
            }
        }
    }
}
