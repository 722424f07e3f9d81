//! Pool: `ExAllocatePool2`, `ExAllocatePoolWithTag`, `ExFreePoolWithTag`, with every live
//! allocation tracked (size and tag) for the leak check; and `MmGetSystemRoutineAddress`,
//! which finds `ExAllocatePool2` only on the systems that export it.
//!
//! The emulated system's version (`ProviderConfig::os_version`) decides what exists:
//! `ExAllocatePool2` from Windows 10 2004 (build 19041), `NonPagedPoolNx` from Windows 8.
//! Calling the first, or asking for the second, on an older system is reported as
//! [`Rule::InvalidParameter`], naming the routine or pool type and the release that added
//! it: on Windows such a driver does not load, or bug-checks with `BAD_POOL_CALLER`.

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
    if !exports_allocate_pool2() {
        let (major, minor, build) = crate::session::config().os_version;
        bug_check(
            Rule::InvalidParameter,
            format!(
                "ExAllocatePool2 called on Windows {major}.{minor}.{build}, which does not \
                 export it (Windows 10 2004, build 19041, and later): a driver importing it \
                 does not load there; resolve it with MmGetSystemRoutineAddress and fall back \
                 to ExAllocatePoolWithTag"
            ),
        );
        return std::ptr::null_mut();
    }
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
    let (major, minor, build) = crate::session::config().os_version;
    if PoolType == NonPagedPoolNx && (major, minor) < (6, 2) {
        bug_check(
            Rule::InvalidParameter,
            format!(
                "ExAllocatePoolWithTag(NonPagedPoolNx) on Windows {major}.{minor}.{build} \
                 (BAD_POOL_CALLER): NonPagedPoolNx exists from Windows 8 (6.2)"
            ),
        );
        return std::ptr::null_mut();
    }
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

/// Whether the emulated system exports `ExAllocatePool2` (Windows 10 2004, build 19041, and
/// later).
fn exports_allocate_pool2() -> bool {
    crate::session::config().os_version >= (10, 0, 19041)
}

/// `MmGetSystemRoutineAddress`: the pool routines of this module by name, `ExAllocatePool2`
/// only when the emulated system exports it; NULL for any other name.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn MmGetSystemRoutineAddress(
    SystemRoutineName: PUNICODE_STRING,
) -> PVOID {
    if !require_irql("MmGetSystemRoutineAddress", PASSIVE_LEVEL) {
        return std::ptr::null_mut();
    }
    if SystemRoutineName.is_null() {
        bug_check(Rule::InvalidParameter, "MmGetSystemRoutineAddress(NULL)");
        return std::ptr::null_mut();
    }
    // SAFETY: the caller gives a valid counted string.
    let name = unsafe {
        let name = &*SystemRoutineName;
        if name.Buffer.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2)
        }
    };
    match String::from_utf16_lossy(name).as_str() {
        "ExAllocatePool2" if exports_allocate_pool2() => ExAllocatePool2 as *mut _,
        "ExAllocatePoolWithTag" => ExAllocatePoolWithTag as *mut _,
        "ExFreePoolWithTag" => ExFreePoolWithTag as *mut _,
        _ => std::ptr::null_mut(),
    }
}
