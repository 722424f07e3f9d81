//! [`Shared`]: an atomically reference-counted pointer whose allocation may fail.

use alloc::boxed::Box;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering, fence};

use crate::Result;
use crate::heap::try_box;

/// Like `Arc<T>` without weak references, but created fallibly ([`Shared::try_new`]) and
/// convertible to a raw pointer that a WSK provider keeps as a socket context.
///
/// # Invariants
/// `ptr` points to a live `SharedBox<T>` allocated by `try_box`, and `refs` counts the
/// `Shared` values and raw references (from [`Shared::into_raw`]) that point to it.
pub(crate) struct Shared<T> {
    ptr: NonNull<SharedBox<T>>,
}

struct SharedBox<T> {
    refs: AtomicUsize,
    value: T,
}

// SAFETY: as for `Arc<T>`: shared access to `T` from several threads needs `T: Sync`, and
// the last reference may drop `T` on any thread, which needs `T: Send`.
unsafe impl<T: Send + Sync> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// Allocates `value` with one reference.
    pub(crate) fn try_new(value: T) -> Result<Shared<T>> {
        let boxed = try_box(SharedBox {
            refs: AtomicUsize::new(1),
            value,
        })?;
        Ok(Shared {
            ptr: NonNull::from(Box::leak(boxed)),
        })
    }

    /// Gives up this reference as a raw pointer (for a provider context); take it back with
    /// [`Shared::from_raw`].
    pub(crate) fn into_raw(self) -> *const T {
        let this = core::mem::ManuallyDrop::new(self);
        this.as_ptr()
    }

    /// A raw pointer to the value that keeps the provenance of the whole allocation, so that
    /// [`Shared::from_raw`] and [`Shared::clone_from_raw`] may reach the reference count from
    /// it. Pointers made from a `&T` (`ptr::from_ref(&*shared)`) do not have it: under Stacked
    /// Borrows they cover only the value, and stepping back to the count is undefined
    /// behaviour. Every raw pointer this crate gives the provider or keeps in a list is made
    /// here.
    pub(crate) fn as_ptr(&self) -> *const T {
        // SAFETY: the box is live while `self` is; the projection is derived from the raw
        // allocation pointer, not from a reference.
        unsafe { core::ptr::addr_of!((*self.ptr.as_ptr()).value) }
    }

    /// The number of references to the value now. Meaningful only where no other thread can
    /// add one concurrently (only fewer, as other references go).
    pub(crate) fn ref_count(&self) -> usize {
        // SAFETY: the box is live while `self` is.
        unsafe { (*self.ptr.as_ptr()).refs.load(Ordering::Acquire) }
    }

    /// Takes back a reference given up with [`Shared::into_raw`].
    ///
    /// # Safety
    /// `raw` must come from [`Shared::into_raw`] or [`Shared::as_ptr`] of a `Shared<T>` (so
    /// that its provenance covers the whole allocation), it must stand for a reference held
    /// by the caller (given up with `into_raw`), and that reference must not have been taken
    /// back already.
    pub(crate) unsafe fn from_raw(raw: *const T) -> Shared<T> {
        let offset = core::mem::offset_of!(SharedBox<T>, value);
        // SAFETY: `raw` points at the `value` field of a live box (caller's guarantee).
        let ptr = unsafe { raw.cast::<u8>().sub(offset).cast::<SharedBox<T>>() };
        // SAFETY: `raw` is non-null (it points into a live box), so the box pointer is too.
        let ptr = unsafe { NonNull::new_unchecked(ptr.cast_mut()) };
        Shared { ptr }
    }

    /// A new reference from a raw reference that stays held, as in `Arc::increment_strong_count`
    /// followed by `from_raw`.
    ///
    /// # Safety
    /// `raw` must come from `into_raw` and its reference must still be held.
    pub(crate) unsafe fn clone_from_raw(raw: *const T) -> Shared<T> {
        // SAFETY: forwarded; the held raw reference keeps the box alive.
        let borrowed = core::mem::ManuallyDrop::new(unsafe { Shared::from_raw(raw) });
        Shared::clone(&borrowed)
    }

    /// Borrows the value behind a raw reference that stays held.
    ///
    /// # Safety
    /// `raw` must come from `into_raw` and its reference must be held for `'a`.
    pub(crate) unsafe fn borrow_raw<'a>(raw: *const T) -> &'a T {
        // SAFETY: forwarded from the caller.
        unsafe { &*raw }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        // SAFETY: the box is live while `self` is.
        unsafe { (*self.ptr.as_ptr()).refs.fetch_add(1, Ordering::Relaxed) };
        Shared { ptr: self.ptr }
    }
}

impl<T> core::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the box is live while `self` is.
        unsafe { &(*self.ptr.as_ptr()).value }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // SAFETY: the box is live while `self` is.
        let previous = unsafe { (*self.ptr.as_ptr()).refs.fetch_sub(1, Ordering::Release) };
        if previous == 1 {
            fence(Ordering::Acquire);
            // SAFETY: this was the last reference; the box came from `try_box`.
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
        }
    }
}
