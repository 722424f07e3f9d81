//! Pool: `ExAllocatePool2`, `ExAllocatePoolWithTag`, `ExFreePoolWithTag`, with every live
//! allocation tracked (size and tag) for the leak check.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::Mutex;

use wsk_sys::*;

use crate::faults;
use crate::verifier::{Rule, bug_check, require_irql};

/// Pool blocks are aligned as on x64 Windows.
const POOL_ALIGNMENT: usize = 16;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Allocation {
    pub(crate) size: usize,
    pub(crate) tag: ULONG,
    pub(crate) paged: bool,
}

/// Live allocations by address.
pub(crate) static LIVE: Mutex<BTreeMap<usize, Allocation>> = Mutex::new(BTreeMap::new());

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(1), POOL_ALIGNMENT).expect("pool sizes fit a layout")
}

/// Allocates pool memory for the provider's own use (indications, address lists): tracked
/// like a driver's, so the provider's bookkeeping is checked too, but never failed by fault
/// injection.
pub(crate) fn allocate_internal(size: usize, tag: ULONG) -> *mut u8 {
    allocate(size, tag, false, true)
}

fn allocate(size: usize, tag: ULONG, paged: bool, zero: bool) -> *mut u8 {
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe {
        if zero {
            std::alloc::alloc_zeroed(layout(size))
        } else {
            std::alloc::alloc(layout(size))
        }
    };
    if !ptr.is_null() {
        crate::session::count(|c| c.pool_allocations += 1);
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ptr as usize, Allocation { size, tag, paged });
    }
    ptr
}

/// Frees pool memory; reports a double free or a tag mismatch (`tag` 0 skips the tag check).
pub(crate) fn free(ptr: *mut u8, tag: ULONG) {
    let allocation = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(ptr as usize));
    let Some(allocation) = allocation else {
        bug_check(
            Rule::PoolDoubleFree,
            format!("ExFreePoolWithTag({ptr:p}): not a live pool allocation"),
        );
        return;
    };
    if tag != 0 && tag != allocation.tag {
        bug_check(
            Rule::PoolTagMismatch,
            format!(
                "ExFreePoolWithTag({ptr:p}, '{}'): allocated with tag '{}'",
                tag_text(tag),
                tag_text(allocation.tag)
            ),
        );
    }
    // SAFETY: allocated by `allocate` with this size.
    unsafe { std::alloc::dealloc(ptr, layout(allocation.size)) };
}

/// A pool tag as its four characters.
pub(crate) fn tag_text(tag: ULONG) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect()
}

/// Whether `[ptr, ptr + len)` lies inside one live non-paged allocation.
pub(crate) fn is_nonpaged(ptr: usize, len: usize) -> bool {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.range(..=ptr)
        .next_back()
        .is_some_and(|(&start, a)| !a.paged && ptr + len <= start + a.size)
}

/// `ExAllocatePool2`.
#[unsafe(no_mangle)]
pub extern "system" fn ExAllocatePool2(
    Flags: POOL_FLAGS,
    NumberOfBytes: SIZE_T,
    Tag: ULONG,
) -> PVOID {
    let paged = Flags & POOL_FLAG_PAGED != 0;
    if !require_irql(
        "ExAllocatePool2",
        if paged { APC_LEVEL } else { DISPATCH_LEVEL },
    ) {
        return std::ptr::null_mut();
    }
    if Tag == 0 {
        bug_check(Rule::InvalidParameter, "ExAllocatePool2 with tag 0");
        return std::ptr::null_mut();
    }
    if faults::pool_allocation_fails() {
        return std::ptr::null_mut();
    }
    allocate(
        NumberOfBytes as usize,
        Tag,
        paged,
        Flags & POOL_FLAG_UNINITIALIZED == 0,
    )
    .cast()
}

/// `ExAllocatePoolWithTag`.
#[unsafe(no_mangle)]
pub extern "system" fn ExAllocatePoolWithTag(
    PoolType: POOL_TYPE,
    NumberOfBytes: SIZE_T,
    Tag: ULONG,
) -> PVOID {
    let paged = PoolType == PagedPool;
    if !require_irql(
        "ExAllocatePoolWithTag",
        if paged { APC_LEVEL } else { DISPATCH_LEVEL },
    ) {
        return std::ptr::null_mut();
    }
    if faults::pool_allocation_fails() {
        return std::ptr::null_mut();
    }
    // ExAllocatePoolWithTag does not zero; keep garbage visible to catch reads of it.
    let ptr = allocate(NumberOfBytes as usize, Tag, paged, false);
    if !ptr.is_null() {
        // SAFETY: fresh allocation of that size.
        unsafe { std::ptr::write_bytes(ptr, 0xcd, NumberOfBytes as usize) };
    }
    ptr.cast()
}

/// `ExFreePoolWithTag`.
#[unsafe(no_mangle)]
pub extern "system" fn ExFreePoolWithTag(P: PVOID, Tag: ULONG) {
    let paged = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(P as usize))
        .is_some_and(|a| a.paged);
    if !require_irql(
        "ExFreePoolWithTag",
        if paged { APC_LEVEL } else { DISPATCH_LEVEL },
    ) {
        return;
    }
    free(P.cast(), Tag);
}
