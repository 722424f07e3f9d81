//! The global allocator of a driver: non-paged, no-execute pool.
//!
//! Every allocation is non-paged pool with the pool tag [`POOL_TAG`], so it may be touched,
//! allocated and freed at any IRQL up to DISPATCH_LEVEL — where WSK completion routines and
//! event callbacks run. It comes from `wsk_sys::pool`: `ExAllocatePool2(POOL_FLAG_NON_PAGED)`
//! where the running system exports it (Windows 10 2004 and later; looked up at run time, so
//! the image does not import it and loads on older systems), otherwise
//! `ExAllocatePoolWithTag` with `NonPagedPoolNx` (Windows 8 and later) or `NonPagedPool`
//! (Windows 7), zeroed for `alloc_zeroed`.
//! Allocation failure is reported to the caller as a null pointer (`wsk` turns it into
//! `STATUS_INSUFFICIENT_RESOURCES`), never a bug check.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;

use wsk_sys::{ExFreePoolWithTag, SIZE_T, pool};

/// The pool tag of every allocation (`'Rsk '` as `!pool` and PoolMon show it: the tag is
/// stored little-endian).
pub const POOL_TAG: u32 = u32::from_le_bytes(*b"Rsk ");

/// The alignment the pool guarantees (`MEMORY_ALLOCATION_ALIGNMENT`: 16 bytes on 64-bit
/// Windows). Larger alignments are served by over-allocating.
const POOL_ALIGNMENT: usize = 16;

/// A [`GlobalAlloc`] over non-paged pool. Drivers built from the examples use it as the
/// `#[global_allocator]`; it is usable at IRQL <= DISPATCH_LEVEL.
#[derive(Clone, Copy, Debug, Default)]
pub struct NonPagedPool;

impl NonPagedPool {
    /// Allocates `bytes` (not zero) bytes of non-paged pool, zeroed when `zeroed`.
    fn pool_block(bytes: usize, zeroed: bool) -> *mut u8 {
        let bytes = bytes as SIZE_T;
        // SAFETY: non-paged pool may be allocated at IRQL <= DISPATCH_LEVEL, the rule of this
        // allocator's callers; the tag and the size are not zero.
        let block = unsafe {
            if zeroed {
                pool::allocate_non_paged_zeroed(bytes, POOL_TAG)
            } else {
                pool::allocate_non_paged_uninitialized(bytes, POOL_TAG)
            }
        };
        block.cast()
    }

    /// Allocates `layout` from non-paged pool, zeroed when `zeroed`.
    fn allocate(layout: Layout, zeroed: bool) -> *mut u8 {
        if layout.align() <= POOL_ALIGNMENT {
            return Self::pool_block(layout.size().max(1), zeroed);
        }
        // Over-aligned: room for the alignment and for the pool block's address, stored
        // just below the pointer handed out.
        let Some(total) = layout
            .size()
            .checked_add(layout.align())
            .and_then(|n| n.checked_add(size_of::<usize>()))
        else {
            return null_mut();
        };
        let base = Self::pool_block(total, zeroed);
        if base.is_null() {
            return null_mut();
        }
        let start = base as usize + size_of::<usize>();
        let aligned = (start + layout.align() - 1) & !(layout.align() - 1);
        let offset = aligned - base as usize;
        // SAFETY: `offset >= size_of::<usize>()` and `offset + size <= total`: the aligned
        // pointer and the slot below it are inside the block; the slot is `usize`-aligned
        // because `aligned` is aligned to more than 16 bytes.
        unsafe {
            let aligned = base.add(offset);
            aligned.cast::<usize>().sub(1).write(base as usize);
            aligned
        }
    }
}

// SAFETY: allocations are pool blocks (or aligned pointers into them) of at least the
// requested size and alignment, freed exactly once by `dealloc` with the same tag; a null
// pointer reports failure.
unsafe impl GlobalAlloc for NonPagedPool {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::allocate(layout, false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::allocate(layout, true)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let block = if layout.align() <= POOL_ALIGNMENT {
            ptr
        } else {
            // SAFETY: an over-aligned allocation stored its block's address just below it.
            unsafe { ptr.cast::<usize>().sub(1).read() as *mut u8 }
        };
        // SAFETY: `block` came from `wsk_sys::pool` with this tag and is freed once (the
        // `GlobalAlloc` contract); non-paged pool is freed at IRQL <= DISPATCH_LEVEL.
        unsafe { ExFreePoolWithTag(block.cast(), POOL_TAG) };
    }
}

/// The allocator of a driver image.
#[cfg(not(feature = "host"))]
#[global_allocator]
static ALLOCATOR: NonPagedPool = NonPagedPool;
