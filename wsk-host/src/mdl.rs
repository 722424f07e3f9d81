//! MDLs: allocation, building for non-paged pool, locking, partial MDLs and mappings. In user
//! mode a buffer's virtual address is its system address, so "mapping" records state only.

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::Mutex;

use wsk_sys::*;

use crate::faults;
use crate::verifier::{Rule, bug_check, require_irql};

/// Live MDLs allocated by `IoAllocateMdl`: address -> allocation size.
pub(crate) static LIVE: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).expect("MDL sizes fit a layout")
}

/// The longest buffer [`IoAllocateMdl`] describes: 4 GiB less a page.
const MAX_MDL_LENGTH: u64 = (1 << 32) - PAGE_SIZE as u64;

/// `IoAllocateMdl`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoAllocateMdl(
    VirtualAddress: PVOID,
    Length: ULONG,
    SecondaryBuffer: BOOLEAN,
    _ChargeQuota: BOOLEAN,
    Irp: PIRP,
) -> PMDL {
    if !require_irql("IoAllocateMdl", DISPATCH_LEVEL) || faults::mdl_allocation_fails() {
        return std::ptr::null_mut();
    }
    // The largest buffer one MDL describes since Windows 7: 4 GiB less a page (the WDK's
    // documentation of IoAllocateMdl); Windows fails a longer one.
    if u64::from(Length) > MAX_MDL_LENGTH {
        return std::ptr::null_mut();
    }
    let size = MmSizeOfMdl(VirtualAddress, Length as usize);
    // SAFETY: a non-zero size.
    let mdl = unsafe { std::alloc::alloc_zeroed(layout(size)) }.cast::<MDL>();
    if mdl.is_null() {
        return mdl;
    }
    // SAFETY: a fresh allocation of `size` bytes.
    unsafe {
        MmInitializeMdl(mdl, VirtualAddress, Length as usize);
        (*mdl).MdlFlags = MDL_ALLOCATED_FIXED_SIZE;
    }
    if !Irp.is_null() && crate::irp::check_usable(Irp, "IoAllocateMdl") {
        // SAFETY: a usable IRP; the MDL joins its chain as the WDK describes.
        unsafe {
            if SecondaryBuffer == 0 || (*Irp).MdlAddress.is_null() {
                (*Irp).MdlAddress = mdl;
            } else {
                let mut last = (*Irp).MdlAddress;
                while !(*last).Next.is_null() {
                    last = (*last).Next;
                }
                (*last).Next = mdl;
            }
        }
    }
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(mdl as usize, size);
    crate::session::count(|c| c.mdls_allocated += 1);
    mdl
}

/// `IoFreeMdl`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoFreeMdl(Mdl: PMDL) {
    if !require_irql("IoFreeMdl", DISPATCH_LEVEL) {
        return;
    }
    let size = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .remove(&(Mdl as usize));
    let Some(size) = size else {
        bug_check(
            Rule::MdlDoubleFree,
            format!("IoFreeMdl({Mdl:p}): not a live MDL from IoAllocateMdl"),
        );
        return;
    };
    // SAFETY: a live MDL from IoAllocateMdl.
    let flags = unsafe { (*Mdl).MdlFlags };
    if flags & MDL_PAGES_LOCKED != 0 {
        bug_check(
            Rule::MdlLockMismatch,
            format!("IoFreeMdl({Mdl:p}) with its pages still locked"),
        );
    }
    if flags & MDL_PARTIAL_HAS_BEEN_MAPPED != 0 {
        bug_check(
            Rule::MdlLockMismatch,
            format!("IoFreeMdl({Mdl:p}): a mapped partial MDL needs MmPrepareMdlForReuse"),
        );
    }
    crate::session::count(|c| c.mdls_freed += 1);
    // SAFETY: allocated with this size; poisoned to make stale use obvious.
    unsafe {
        std::ptr::write_bytes(Mdl.cast::<u8>(), 0xfe, size);
        std::alloc::dealloc(Mdl.cast(), layout(size));
    }
}

/// `MmBuildMdlForNonPagedPool`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: PMDL) {
    let mdl = MemoryDescriptorList;
    // SAFETY: the caller gives a valid MDL.
    let (va, count) = unsafe {
        (
            MmGetMdlVirtualAddress(mdl) as usize,
            (*mdl).ByteCount as usize,
        )
    };
    if !crate::pool::is_nonpaged(va, count) {
        bug_check(
            Rule::MdlNotNonPaged,
            format!(
                "MmBuildMdlForNonPagedPool({mdl:p}): {count} bytes at {va:#x} are not a live non-paged pool allocation"
            ),
        );
    }
    // SAFETY: as above.
    unsafe {
        (*mdl).MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
        (*mdl).MappedSystemVa = va as PVOID;
    }
}

/// `MmProbeAndLockPages`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn MmProbeAndLockPages(
    MemoryDescriptorList: PMDL,
    _AccessMode: KPROCESSOR_MODE,
    _Operation: LOCK_OPERATION,
) {
    require_irql("MmProbeAndLockPages", APC_LEVEL);
    // SAFETY: the caller gives a valid MDL.
    unsafe {
        if (*MemoryDescriptorList).MdlFlags & MDL_PAGES_LOCKED != 0 {
            bug_check(
                Rule::MdlLockMismatch,
                format!("MmProbeAndLockPages({MemoryDescriptorList:p}): already locked"),
            );
        }
        (*MemoryDescriptorList).MdlFlags |= MDL_PAGES_LOCKED;
    }
}

/// `MmUnlockPages`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn MmUnlockPages(MemoryDescriptorList: PMDL) {
    require_irql("MmUnlockPages", DISPATCH_LEVEL);
    // SAFETY: the caller gives a valid MDL.
    unsafe {
        if (*MemoryDescriptorList).MdlFlags & MDL_PAGES_LOCKED == 0 {
            bug_check(
                Rule::MdlLockMismatch,
                format!("MmUnlockPages({MemoryDescriptorList:p}): pages not locked"),
            );
        }
        (*MemoryDescriptorList).MdlFlags &= !(MDL_PAGES_LOCKED | MDL_MAPPED_TO_SYSTEM_VA);
    }
}

/// `IoBuildPartialMdl`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoBuildPartialMdl(
    SourceMdl: PMDL,
    TargetMdl: PMDL,
    VirtualAddress: PVOID,
    Length: ULONG,
) {
    // SAFETY: the caller gives valid MDLs; the range lies in the source's buffer (checked).
    unsafe {
        let start = MmGetMdlVirtualAddress(SourceMdl) as usize;
        let end = start + (*SourceMdl).ByteCount as usize;
        let va = VirtualAddress as usize;
        if va < start || va + Length as usize > end {
            bug_check(
                Rule::InvalidParameter,
                format!("IoBuildPartialMdl: range {va:#x}+{Length} outside the source MDL"),
            );
            return;
        }
        let needed = ADDRESS_AND_SIZE_TO_SPAN_PAGES(VirtualAddress, Length as usize);
        let capacity = page_capacity(TargetMdl);
        if needed > capacity {
            bug_check(
                Rule::TargetMdlTooSmall,
                format!(
                    "IoBuildPartialMdl: target MDL {TargetMdl:p} has room for {capacity} page(s), \
                     the range {va:#x}+{Length} spans {needed} (bug check 0x40)"
                ),
            );
            return;
        }
        if (*TargetMdl).MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED != 0 {
            bug_check(
                Rule::MdlLockMismatch,
                "IoBuildPartialMdl on a mapped partial MDL: call MmPrepareMdlForReuse first",
            );
        }
        let fixed = (*TargetMdl).MdlFlags & MDL_ALLOCATED_FIXED_SIZE;
        (*TargetMdl).Next = std::ptr::null_mut();
        (*TargetMdl).StartVa = PAGE_ALIGN(VirtualAddress);
        (*TargetMdl).ByteOffset = BYTE_OFFSET(VirtualAddress);
        (*TargetMdl).ByteCount = Length;
        (*TargetMdl).Process = (*SourceMdl).Process;
        (*TargetMdl).MdlFlags =
            fixed | MDL_PARTIAL | ((*SourceMdl).MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL);
        (*TargetMdl).MappedSystemVa = if (*SourceMdl).MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL != 0 {
            VirtualAddress
        } else {
            std::ptr::null_mut()
        };
    }
}

/// How many page frame numbers an MDL's page array holds: what its `Size` (the header and
/// the array, as `IoAllocateMdl` and `MmInitializeMdl` set it) leaves room for, and no more
/// than its allocation holds when `IoAllocateMdl` made it.
///
/// # Safety
/// `mdl` must point to a valid MDL.
unsafe fn page_capacity(mdl: PMDL) -> usize {
    let header = std::mem::size_of::<MDL>();
    let slot = std::mem::size_of::<PFN_NUMBER>();
    // SAFETY: the caller guarantees `mdl` is valid. `Size` is a CSHORT holding an unsigned
    // byte count.
    let declared = usize::from(unsafe { (*mdl).Size } as u16);
    let allocated = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|live| live.get(&(mdl as usize)).copied());
    let bytes = allocated.map_or(declared, |allocated| declared.min(allocated));
    bytes.saturating_sub(header) / slot
}

/// `MmMapLockedPagesSpecifyCache` (kernel mappings).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn MmMapLockedPagesSpecifyCache(
    MemoryDescriptorList: PMDL,
    AccessMode: KPROCESSOR_MODE,
    _CacheType: MEMORY_CACHING_TYPE,
    _RequestedAddress: PVOID,
    _BugCheckOnFailure: ULONG,
    _Priority: ULONG,
) -> PVOID {
    if AccessMode != KernelMode {
        bug_check(
            Rule::InvalidParameter,
            "MmMapLockedPagesSpecifyCache: only kernel mappings are modelled",
        );
        return std::ptr::null_mut();
    }
    require_irql("MmMapLockedPagesSpecifyCache", DISPATCH_LEVEL);
    let mdl = MemoryDescriptorList;
    // SAFETY: the caller gives a valid MDL describing resident memory.
    unsafe {
        let va = MmGetMdlVirtualAddress(mdl);
        (*mdl).MappedSystemVa = va;
        (*mdl).MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
        if (*mdl).MdlFlags & MDL_PARTIAL != 0 {
            (*mdl).MdlFlags |= MDL_PARTIAL_HAS_BEEN_MAPPED;
        }
        va
    }
}

/// `MmUnmapLockedPages`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn MmUnmapLockedPages(_BaseAddress: PVOID, MemoryDescriptorList: PMDL) {
    // SAFETY: the caller gives a valid MDL.
    unsafe {
        (*MemoryDescriptorList).MdlFlags &=
            !(MDL_MAPPED_TO_SYSTEM_VA | MDL_PARTIAL_HAS_BEEN_MAPPED);
        if (*MemoryDescriptorList).MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL == 0 {
            (*MemoryDescriptorList).MappedSystemVa = std::ptr::null_mut();
        }
    }
}

/// Checks a client's `WSK_BUF` against its MDL chain: `Offset + Length` bytes must lie
/// within what the chain describes (`ByteCount` summed along `Next`), and a non-empty buffer
/// needs an MDL. A violation is reported (`Rule::InvalidParameter`: on Windows the provider
/// would walk past the chain) and the buffer refused.
///
/// # Safety
/// `buf.Mdl` must be null or the first MDL of a chain of valid MDLs.
pub(crate) unsafe fn check_chain(function: &str, buf: &WSK_BUF) -> bool {
    let needed = buf.Offset as usize + buf.Length as usize;
    if buf.Length == 0 {
        return true;
    }
    let mut described = 0usize;
    let mut count = 0usize;
    let mut mdl = buf.Mdl;
    // SAFETY: forwarded from the caller.
    while let Some(current) = unsafe { mdl.as_ref() } {
        described += current.ByteCount as usize;
        count += 1;
        if described >= needed {
            return true;
        }
        mdl = current.Next;
    }
    bug_check(
        Rule::InvalidParameter,
        format!(
            "{function}: WSK_BUF offset {} + length {} exceeds the {described} bytes its chain of {count} MDL(s) describes",
            buf.Offset, buf.Length
        ),
    );
    false
}

/// The memory a `WSK_BUF` describes, as (address, length) ranges in order.
///
/// # Safety
/// `buf` must describe valid MDLs of resident memory, which stay so while the ranges are
/// walked.
pub(crate) unsafe fn ranges(buf: &WSK_BUF) -> Ranges {
    Ranges {
        mdl: buf.Mdl,
        offset: buf.Offset as usize,
        remaining: buf.Length as usize,
    }
}

/// The ranges of a `WSK_BUF` (see [`ranges`]), walked without allocating: a request's
/// buffer is read or written where it lies.
pub(crate) struct Ranges {
    mdl: PMDL,
    offset: usize,
    remaining: usize,
}

impl Iterator for Ranges {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        while self.remaining > 0 && !self.mdl.is_null() {
            // SAFETY: `ranges`' caller guarantees the chain is valid while it is walked.
            let (va, count, next) = unsafe {
                (
                    MmGetMdlVirtualAddress(self.mdl) as usize,
                    (*self.mdl).ByteCount as usize,
                    (*self.mdl).Next,
                )
            };
            self.mdl = next;
            if self.offset < count {
                let take = (count - self.offset).min(self.remaining);
                let range = (va + self.offset, take);
                self.remaining -= take;
                self.offset = 0;
                return Some(range);
            }
            self.offset -= count;
        }
        None
    }
}
