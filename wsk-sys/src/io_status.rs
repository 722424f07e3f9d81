//! The status member of an [`IO_STATUS_BLOCK`], whichever base the crate uses: `u.Status` in
//! this crate's own base, the anonymous member `__bindgen_anon_1.Status` in `wdk-sys`'s (feature
//! `wdk-sys`). Not WDK items: code that reads or writes a request's status through these
//! compiles with either base.

use crate::{IO_STATUS_BLOCK, NTSTATUS};

/// The address of the `Status` member of the status block `block` points to.
///
/// # Safety
/// `block` must point into a live allocation large enough for an [`IO_STATUS_BLOCK`].
#[inline]
unsafe fn member(block: *mut IO_STATUS_BLOCK) -> *mut NTSTATUS {
    // SAFETY: the caller guarantees `block` points into a live allocation; only the member's
    // address is computed.
    unsafe {
        #[cfg(not(all(windows, feature = "wdk-sys")))]
        let status = core::ptr::addr_of_mut!((*block).u.Status);
        #[cfg(all(windows, feature = "wdk-sys"))]
        let status = core::ptr::addr_of_mut!((*block).__bindgen_anon_1.Status);
        status
    }
}

/// Reads the status of a status block (an IRP's `IoStatus` once it has completed).
///
/// # Safety
/// `block` must be valid for reads, and no one may write it concurrently.
#[inline]
#[must_use]
pub unsafe fn status(block: *const IO_STATUS_BLOCK) -> NTSTATUS {
    // SAFETY: the caller guarantees `block` is valid for reads; any bit pattern is an NTSTATUS.
    unsafe { member(block.cast_mut()).read() }
}

/// Writes the status of a status block.
///
/// # Safety
/// `block` must be valid for writes, and no one may access it concurrently.
#[inline]
pub unsafe fn set_status(block: *mut IO_STATUS_BLOCK, status: NTSTATUS) {
    // SAFETY: the caller guarantees `block` is valid for writes.
    unsafe { member(block).write(status) }
}
