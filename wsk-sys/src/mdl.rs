//! The MDL macros of `wdm.h` that bindgen cannot produce.

use crate::{
    CSHORT, KPROCESSOR_MODE, KernelMode, MDL, MDL_MAPPED_TO_SYSTEM_VA, MDL_SOURCE_IS_NONPAGED_POOL,
    MmCached, MmMapLockedPagesSpecifyCache, PMDL, PVOID, ULONG,
};

/// Size of a page on x64 and ARM64. WDK: `PAGE_SIZE`.
#[cfg(not(all(windows, feature = "wdk-sys")))]
pub const PAGE_SIZE: usize = 4096;
/// Log2 of [`PAGE_SIZE`]. WDK: `PAGE_SHIFT`.
#[cfg(not(all(windows, feature = "wdk-sys")))]
pub const PAGE_SHIFT: u32 = 12;

/// A page frame number, as stored after an MDL. WDK: `PFN_NUMBER`.
#[cfg(not(all(windows, feature = "wdk-sys")))]
#[allow(non_camel_case_types)]
pub type PFN_NUMBER = crate::ULONG_PTR;
#[cfg(all(windows, feature = "wdk-sys"))]
use crate::{PAGE_SHIFT, PFN_NUMBER};

/// [`PAGE_SIZE`] as a `usize`.
#[cfg(not(all(windows, feature = "wdk-sys")))]
const PAGE_BYTES: usize = PAGE_SIZE;
/// [`PAGE_SIZE`] as a `usize`: `wdk-sys` types the WDK's `#define` as `u32`.
#[cfg(all(windows, feature = "wdk-sys"))]
const PAGE_BYTES: usize = crate::PAGE_SIZE as usize;

/// Offset of an address within its page. WDK: `BYTE_OFFSET`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub fn BYTE_OFFSET(va: *const core::ffi::c_void) -> ULONG {
    (va as usize & (PAGE_BYTES - 1)) as ULONG
}

/// The start of the page holding an address. WDK: `PAGE_ALIGN`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub fn PAGE_ALIGN(va: *const core::ffi::c_void) -> PVOID {
    (va as usize & !(PAGE_BYTES - 1)) as PVOID
}

/// Number of pages a buffer spans. WDK: `ADDRESS_AND_SIZE_TO_SPAN_PAGES`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub fn ADDRESS_AND_SIZE_TO_SPAN_PAGES(va: *const core::ffi::c_void, size: usize) -> usize {
    (BYTE_OFFSET(va) as usize + size + PAGE_BYTES - 1) >> PAGE_SHIFT
}

/// Size in bytes of an MDL describing a buffer, with its page array. WDK: the size that
/// `MmSizeOfMdl` returns (with the `wdk-sys` feature, `MmSizeOfMdl` is the kernel export
/// `wdk-sys` binds).
#[cfg(not(all(windows, feature = "wdk-sys")))]
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub fn MmSizeOfMdl(base: *const core::ffi::c_void, length: usize) -> usize {
    mdl_size(base, length)
}

/// The size `MmSizeOfMdl` returns, computed inline.
#[inline]
fn mdl_size(base: *const core::ffi::c_void, length: usize) -> usize {
    core::mem::size_of::<MDL>()
        + core::mem::size_of::<PFN_NUMBER>() * ADDRESS_AND_SIZE_TO_SPAN_PAGES(base, length)
}

/// Initialises an MDL the caller allocated (at least [`MmSizeOfMdl`] bytes) to describe a
/// buffer. WDK: `MmInitializeMdl`.
///
/// # Safety
/// `mdl` must be valid for writes of `MmSizeOfMdl(base, length)` bytes.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn MmInitializeMdl(mdl: PMDL, base: *mut core::ffi::c_void, length: usize) {
    // SAFETY: the caller guarantees `mdl` is writable.
    unsafe {
        mdl.write(MDL {
            Next: core::ptr::null_mut(),
            Size: mdl_size(base, length) as i16,
            MdlFlags: 0,
            Process: core::ptr::null_mut(),
            MappedSystemVa: core::ptr::null_mut(),
            StartVa: PAGE_ALIGN(base),
            ByteCount: length as ULONG,
            ByteOffset: BYTE_OFFSET(base),
        });
    }
}

/// The virtual address of the buffer an MDL describes. WDK: `MmGetMdlVirtualAddress`.
///
/// # Safety
/// `mdl` must point to a valid MDL.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub unsafe fn MmGetMdlVirtualAddress(mdl: PMDL) -> PVOID {
    // `StartVa` is a page address (`PAGE_ALIGN`), usually before the buffer's allocation:
    // the offset is integer arithmetic on an address, not a step inside one allocation, so
    // it wraps instead of claiming in-bounds arithmetic (`add`) it cannot promise.
    // SAFETY: the caller guarantees `mdl` is valid for reads.
    unsafe {
        (*mdl)
            .StartVa
            .cast::<u8>()
            .wrapping_add((*mdl).ByteOffset as usize)
            .cast()
    }
}

/// Length in bytes of the buffer an MDL describes. WDK: `MmGetMdlByteCount`.
///
/// # Safety
/// `mdl` must point to a valid MDL.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub unsafe fn MmGetMdlByteCount(mdl: PMDL) -> ULONG {
    // SAFETY: the caller guarantees `mdl` is valid.
    unsafe { (*mdl).ByteCount }
}

/// Offset of the buffer in the MDL's first page. WDK: `MmGetMdlByteOffset`.
///
/// # Safety
/// `mdl` must point to a valid MDL.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub unsafe fn MmGetMdlByteOffset(mdl: PMDL) -> ULONG {
    // SAFETY: the caller guarantees `mdl` is valid.
    unsafe { (*mdl).ByteOffset }
}

/// The page frame array that follows an MDL. WDK: `MmGetMdlPfnArray`.
///
/// # Safety
/// `mdl` must point to a valid MDL.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub unsafe fn MmGetMdlPfnArray(mdl: PMDL) -> *mut PFN_NUMBER {
    // SAFETY: the page array starts right after the MDL header, inside its allocation.
    unsafe { mdl.add(1).cast() }
}

/// A system-space address of the buffer an MDL describes: the existing mapping for
/// non-paged pool or an already-mapped MDL, else a new mapping (NULL on failure).
/// IRQL <= DISPATCH_LEVEL. WDK: `MmGetSystemAddressForMdlSafe`.
///
/// # Safety
/// `mdl` must point to a valid MDL whose pages are locked or in non-paged pool.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub unsafe fn MmGetSystemAddressForMdlSafe(mdl: PMDL, priority: ULONG) -> PVOID {
    // SAFETY: the caller guarantees `mdl` is valid and its pages are resident.
    unsafe {
        if (*mdl).MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) as CSHORT != 0
        {
            (*mdl).MappedSystemVa
        } else {
            MmMapLockedPagesSpecifyCache(
                mdl,
                KernelMode as KPROCESSOR_MODE,
                MmCached,
                core::ptr::null_mut(),
                0,
                priority,
            )
        }
    }
}

/// Makes a partial MDL built by [`IoBuildPartialMdl`](crate::IoBuildPartialMdl) ready to be
/// built again or freed: releases the system mapping made for it, if any. WDK:
/// `MmPrepareMdlForReuse`.
///
/// # Safety
/// `mdl` must point to a valid MDL that no request is using.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn MmPrepareMdlForReuse(mdl: PMDL) {
    // SAFETY: the caller guarantees `mdl` is valid and idle; a partial MDL that has been
    // mapped owns the mapping recorded in `MappedSystemVa`.
    unsafe {
        if (*mdl).MdlFlags & crate::MDL_PARTIAL_HAS_BEEN_MAPPED as CSHORT != 0 {
            crate::MmUnmapLockedPages((*mdl).MappedSystemVa, mdl);
        }
    }
}
