//! Spin locks: `KeAcquireSpinLockRaiseToDpc`, `KeReleaseSpinLock`, over the lock word itself.

use std::sync::atomic::{AtomicUsize, Ordering};

use wsk_sys::*;

use crate::irql;
use crate::verifier::{Rule, bug_check, require_irql};

/// # Safety
/// `lock` must point to a live, aligned `KSPIN_LOCK`.
unsafe fn word<'a>(lock: PKSPIN_LOCK) -> &'a AtomicUsize {
    // SAFETY: a KSPIN_LOCK is a pointer-sized, pointer-aligned word (caller's guarantee).
    unsafe { AtomicUsize::from_ptr(lock.cast()) }
}

/// `KeAcquireSpinLockRaiseToDpc`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL {
    require_irql("KeAcquireSpinLockRaiseToDpc", DISPATCH_LEVEL);
    let previous = irql::set(irql::current().max(DISPATCH_LEVEL));
    // SAFETY: the caller gives a live lock.
    let word = unsafe { word(SpinLock) };
    let mut spins = 0u32;
    while word
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins % 64 == 0 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    previous
}

/// `KeReleaseSpinLock`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL) {
    // SAFETY: the caller gives a live lock.
    let word = unsafe { word(SpinLock) };
    if word.swap(0, Ordering::Release) == 0 {
        bug_check(
            Rule::InvalidParameter,
            format!("KeReleaseSpinLock({SpinLock:p}): the lock was not held"),
        );
    }
    irql::set(NewIrql);
}
