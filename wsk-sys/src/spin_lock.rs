//! The `KeInitializeSpinLock` routine, which `wdm.h` defines inline on x64.

use crate::PKSPIN_LOCK;

/// Initialises a spin lock to the released state. WDK: `KeInitializeSpinLock`.
///
/// # Safety
/// `lock` must be valid for writes and not held.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn KeInitializeSpinLock(lock: PKSPIN_LOCK) {
    // SAFETY: the caller guarantees `lock` is writable; a released spin lock is zero.
    unsafe { lock.write(0) };
}
