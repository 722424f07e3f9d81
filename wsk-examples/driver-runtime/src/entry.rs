//! The part of `DriverEntry` every example driver shares: run the driver's start, keep what
//! it returns until `DriverUnload`, set the unload routine — or print why the driver did not
//! start and return that status.

use wsk::SpinLock;
use wsk_sys::*;

use crate::kprint;

/// Runs `start`; on success keeps its value in `running` (until the driver's unload routine
/// takes it) and sets `unload` as the driver's unload routine, then returns `STATUS_SUCCESS`;
/// on failure prints "`name`: not started: error" and returns the error's status (the I/O
/// manager then unloads the image without calling `unload`). PASSIVE_LEVEL.
///
/// # Safety
/// `driver` is the driver object `DriverEntry` was given.
pub unsafe fn enter<R: Send>(
    driver: PDRIVER_OBJECT,
    name: &str,
    running: &SpinLock<Option<R>>,
    unload: PDRIVER_UNLOAD,
    start: impl FnOnce() -> wsk::Result<R>,
) -> NTSTATUS {
    match start() {
        Ok(value) => {
            // Replaced in a statement of its own: whatever it held (nothing, after a proper
            // unload) is dropped after the lock is released, at PASSIVE_LEVEL.
            let previous = running.lock().replace(value);
            drop(previous);
            // SAFETY: the driver object is valid for the driver's lifetime (the caller's
            // contract).
            unsafe { (*driver).DriverUnload = unload };
            STATUS_SUCCESS
        }
        Err(error) => {
            kprint!("{name}: not started: {error}\n");
            error.status()
        }
    }
}
