//! Stand-in for `wdk-alloc` 0.4: `WdkAllocator`, a `GlobalAlloc` (non-paged pool in the real
//! crate). Type-checked only: this one allocates nothing.
#![no_std]

use core::alloc::{GlobalAlloc, Layout};

/// The kernel's pool as the global allocator.
pub struct WdkAllocator;

// SAFETY: never hands out memory (every allocation fails with null), which `GlobalAlloc`
// allows.
unsafe impl GlobalAlloc for WdkAllocator {
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}
