//! Code the kernel or the provider calls into: completion routines, event callbacks and task
//! polls run inside a [`CallbackScope`], at DISPATCH_LEVEL whatever IRQL they were called at.
//!
//! Windows calls a completion routine at the IRQL of whoever completes the request: usually
//! DISPATCH_LEVEL, but PASSIVE_LEVEL when a request issued from a PASSIVE_LEVEL thread
//! completes before the WSK function returns. If user code woken from there (a task, a
//! handler) were free to wait, it would wait in someone else's call stack — the provider's
//! or the issuing thread's — and could stall it for good. Raising the IRQL for the scope makes
//! every wait of this crate refuse with [`Error::IRQL_TOO_HIGH`](crate::Error::IRQL_TOO_HIGH)
//! there, always, and makes "runs at DISPATCH_LEVEL" true of every callback, whatever path
//! delivered it.

use wsk_sys::{DISPATCH_LEVEL, KIRQL, KeGetCurrentIrql, KeLowerIrql, KeRaiseIrqlToDpcLevel};

/// Runs its owner at DISPATCH_LEVEL: raises the IRQL on entry when it was lower, and lowers it
/// back to the entry level on drop (which also restores the level a callback that leaked a
/// [`SpinLockGuard`](crate::SpinLockGuard) would have left raised).
///
/// Not `Send`: it restores the IRQL of the processor it was made on.
pub(crate) struct CallbackScope {
    entry: Option<KIRQL>,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl CallbackScope {
    /// Enters the scope. IRQL <= DISPATCH_LEVEL.
    #[inline]
    pub(crate) fn enter() -> CallbackScope {
        let entry = if KeGetCurrentIrql() < DISPATCH_LEVEL {
            Some(KeRaiseIrqlToDpcLevel())
        } else {
            None
        };
        CallbackScope {
            entry,
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for CallbackScope {
    #[inline]
    fn drop(&mut self) {
        if let Some(entry) = self.entry {
            // SAFETY: `entry` is the IRQL this scope raised from, on this processor (the
            // scope is not `Send`): lowering back to it undoes the raise.
            unsafe { KeLowerIrql(entry) };
        }
    }
}
