//! Fallible heap allocation: allocation failure in a driver is an error, not an abort.

use alloc::alloc::{Layout, alloc};
use alloc::boxed::Box;

use crate::{Error, Result};

/// `Box::new` that reports allocation failure as [`Error::INSUFFICIENT_RESOURCES`] instead of
/// aborting. The memory comes from the global allocator (non-paged pool in a driver).
pub(crate) fn try_box<T>(value: T) -> Result<Box<T>> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value));
    }
    // SAFETY: the layout has a non-zero size.
    let raw = unsafe { alloc(layout) }.cast::<T>();
    if raw.is_null() {
        return Err(Error::INSUFFICIENT_RESOURCES);
    }
    // SAFETY: `raw` is a fresh allocation with `T`'s layout, from the global allocator, as
    // `Box` requires; writing initialises it.
    unsafe {
        raw.write(value);
        Ok(Box::from_raw(raw))
    }
}
