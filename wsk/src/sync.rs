//! [`SpinLock`]: data guarded by an executive spin lock.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use wsk_sys::typed::DISPATCH_LEVEL;
use wsk_sys::{KIRQL, KSPIN_LOCK, KeAcquireSpinLockRaiseToDpc, KeLowerIrql, KeReleaseSpinLock};

use crate::per_processor::{self, ProcessorRecord};

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
    /// The IRQL goes back to what it was before the processor's *first* lock when its *last*
    /// guard is released, whatever the order the guards are dropped in: dropping an outer
    /// guard before an inner one never lowers the IRQL while a lock is still held. The count
    /// is kept per processor (`KeGetCurrentProcessorNumberEx`; a holder keeps its processor),
    /// in a table sized for the most processors Windows runs on: it never runs out.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        // SAFETY: the lock word is initialised and lives as long as `self`.
        let entry_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        // At DISPATCH_LEVEL now: this code keeps the processor until the IRQL is lowered,
        // which only the release of its last lock does (see `per_processor`).
        let record = per_processor::current();
        if let Some(record) = record {
            record.lock_taken(entry_irql);
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
    /// The record of the processor the lock was taken on (its count of held locks and IRQL
    /// to go back to); `None` only for a processor index Windows does not give (see
    /// `per_processor::current`).
    record: Option<&'static ProcessorRecord>,
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
            Some(record) => record.lock_released(),
            None => Some(self.entry_irql),
        };
        if let Some(irql) = lower_to.filter(|&irql| irql < DISPATCH_LEVEL) {
            // SAFETY: the processor's last lock (or, without a record, this one) is released:
            // back to the IRQL the first raised from, on this processor (the guard is not
            // `Send`, and its holder kept the processor).
            unsafe { KeLowerIrql(irql) };
        }
    }
}

/// Spin locks released out of order on several threads at once, under Miri too: the IRQL
/// is lowered only with each thread's last lock, back to where it was before its first.
#[cfg(test)]
mod tests {
    extern crate std;

    use std::thread;
    use std::vec::Vec;

    use wsk_host::Session;

    use super::*;
    use crate::irql::Irql;

    /// Rounds per thread: fewer under the interpreter.
    const ROUNDS: usize = if cfg!(miri) { 3 } else { 200 };

    #[test]
    fn guards_released_in_any_order_lower_the_irql_only_with_the_last() {
        let session = Session::start();
        let locks: Vec<SpinLock<u32>> = (0..3).map(SpinLock::new).collect();
        thread::scope(|scope| {
            for t in 0..4usize {
                let locks = &locks;
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        assert_eq!(Irql::current(), Irql::PASSIVE);
                        // Taken in one order (no deadlock between the threads), released in
                        // every order: the guards in the order of a permutation.
                        let mut guards: Vec<Option<SpinLockGuard<'_, u32>>> =
                            locks.iter().map(|lock| Some(lock.lock())).collect();
                        for guard in guards.iter_mut() {
                            **guard.as_mut().unwrap() += 1;
                        }
                        let order = [
                            [0, 1, 2],
                            [1, 0, 2],
                            [2, 1, 0],
                            [1, 2, 0],
                            [2, 0, 1],
                            [0, 2, 1],
                        ][(t + round) % 6];
                        for (released, &index) in order.iter().enumerate() {
                            drop(guards[index].take());
                            let expected = if released < 2 {
                                Irql::DISPATCH
                            } else {
                                Irql::PASSIVE
                            };
                            assert_eq!(Irql::current(), expected);
                        }
                    }
                });
            }
        });
        // Nested inside a section already at DISPATCH_LEVEL: the IRQL stays there.
        let entry = wsk_sys::KeRaiseIrqlToDpcLevel();
        let outer = locks[0].lock();
        let inner = locks[1].lock();
        drop(outer);
        drop(inner);
        assert_eq!(Irql::current(), Irql::DISPATCH);
        // SAFETY: back to the IRQL raised from, on this thread.
        unsafe { wsk_sys::KeLowerIrql(entry) };
        assert_eq!(
            locks.iter().map(|l| *l.lock()).sum::<u32>(),
            3 + 12 * ROUNDS as u32
        );
        session.finish();
    }
}
