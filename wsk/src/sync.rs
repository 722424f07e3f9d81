//! [`SpinLock`]: data guarded by an executive spin lock.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

use wsk_sys::{KIRQL, KSPIN_LOCK, KeAcquireSpinLockRaiseToDpc, KeReleaseSpinLock};

/// Data guarded by a kernel spin lock (`KSPIN_LOCK`). Taking the lock raises the IRQL to
/// DISPATCH_LEVEL until the guard is dropped, so the lock may be shared between threads at
/// PASSIVE_LEVEL and completion routines or event callbacks at DISPATCH_LEVEL.
///
/// Hold it briefly: nothing that waits or touches paged memory may run under it.
/// Callable at IRQL <= DISPATCH_LEVEL.
pub struct SpinLock<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `data`; `T: Send` lets it move between the
// threads that take the lock.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A released lock guarding `data`.
    pub const fn new(data: T) -> SpinLock<T> {
        // A released KSPIN_LOCK is zero (what `KeInitializeSpinLock` writes).
        SpinLock {
            lock: UnsafeCell::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock, raising the IRQL to DISPATCH_LEVEL. IRQL <= DISPATCH_LEVEL.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        // SAFETY: the lock word is initialised and lives as long as `self`.
        let old_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        SpinLockGuard {
            lock: self,
            old_irql,
        }
    }

    /// The data, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// Access to the data of a held [`SpinLock`]; releases it (restoring the IRQL) on drop.
pub struct SpinLockGuard<'a, T> {
    lock: &'a SpinLock<T>,
    old_irql: KIRQL,
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, and is borrowed exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the lock is held by this guard; `old_irql` is what acquiring returned.
        unsafe { KeReleaseSpinLock(self.lock.lock.get(), self.old_irql) };
    }
}
