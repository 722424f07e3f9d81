//! [`SpinLock`]: data guarded by an executive spin lock.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use core::sync::atomic::Ordering;

use wsk_sys::typed::DISPATCH_LEVEL;
use wsk_sys::{KIRQL, KSPIN_LOCK, KeAcquireSpinLockRaiseToDpc, KeLowerIrql, KeReleaseSpinLock};

use crate::per_thread::{self, ThreadRecord};

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
    ///
    /// The IRQL goes back to what it was before the thread's *first* lock when its *last*
    /// guard is released, whatever the order the guards are dropped in: dropping an outer
    /// guard before an inner one never lowers the IRQL while a lock is still held.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        // SAFETY: the lock word is initialised and lives as long as `self`.
        let entry_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        // At DISPATCH_LEVEL now: the thread keeps its processor until the IRQL is lowered,
        // which only the last guard's release does. Without a free record (more threads than
        // the table holds are inside callbacks or holding locks) the guard falls back to
        // restoring its own entry IRQL, which is right for guards dropped in reverse order.
        let record = per_thread::find_or_claim();
        if let Some(record) = record {
            if record.spin_locks.fetch_add(1, Ordering::Relaxed) == 0 {
                record.base_irql.store(entry_irql, Ordering::Relaxed);
            }
        }
        SpinLockGuard {
            lock: self,
            record,
            entry_irql,
            _not_send: PhantomData,
        }
    }

    /// The data, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// Access to the data of a held [`SpinLock`]; releases it (restoring the IRQL) on drop.
///
/// A guard raised the IRQL *of the processor that took the lock* and must be released there,
/// so it is neither `Send` (like std's `MutexGuard` and the Rust-for-Linux `Guard`) nor kept
/// across an `.await` in a task: futures holding one are not `Send`, and [`TaskSet`] only
/// runs `Send` futures.
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>(_: T) {}
/// let lock = wsk::SpinLock::new(0u32);
/// assert_send(lock.lock()); // a guard cannot move to another thread
/// ```
///
/// ```compile_fail,E0277
/// // A guard over a `Cell` cannot be shared between threads either.
/// fn assert_sync<T: Sync>(_: &T) {}
/// let lock = wsk::SpinLock::new(core::cell::Cell::new(0u32));
/// assert_sync(&lock.lock());
/// ```
///
/// ```compile_fail
/// // Holding a guard across an await makes the future `!Send`: it cannot be spawned.
/// fn spawn_holding_guard(tasks: &wsk::task::TaskSet, lock: &'static wsk::SpinLock<u32>) {
///     let _ = tasks.spawn(async move {
///         let guard = lock.lock();
///         core::future::ready(()).await;
///         drop(guard);
///     });
/// }
/// ```
///
/// [`TaskSet`]: crate::task::TaskSet
pub struct SpinLockGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// The holding thread's record (its count of held locks and IRQL to go back to).
    record: Option<&'static ThreadRecord>,
    /// The IRQL this lock raised from (used without a record).
    entry_irql: KIRQL,
    /// Not `Send`: the IRQL it restores belongs to this processor and thread.
    _not_send: PhantomData<*mut ()>,
}

// SAFETY: sharing `&SpinLockGuard<T>` only gives `&T` to other threads, which is sound when
// `T: Sync` (as for std's `MutexGuard`).
unsafe impl<T: Sync> Sync for SpinLockGuard<'_, T> {}

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
        // SAFETY: the lock is held by this guard; releasing it "to" DISPATCH_LEVEL keeps the
        // IRQL where it is (the thread may hold other locks).
        unsafe { KeReleaseSpinLock(self.lock.lock.get(), DISPATCH_LEVEL) };
        let lower_to = match self.record {
            Some(record) if record.spin_locks.fetch_sub(1, Ordering::Relaxed) == 1 => {
                let base = per_thread::base_irql(record);
                per_thread::release_if_unused(record);
                Some(base)
            }
            Some(_) => None,
            None => Some(self.entry_irql),
        };
        if let Some(irql) = lower_to.filter(|&irql| irql < DISPATCH_LEVEL) {
            // SAFETY: the thread's last lock (or, without a record, this one) is released:
            // back to the IRQL it raised from, on this processor (the guard is not `Send`).
            unsafe { KeLowerIrql(irql) };
        }
    }
}
