//! [`Shared`]: an atomically reference-counted pointer whose allocation may fail.

use alloc::boxed::Box;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering, fence};

use crate::Result;
use crate::heap::try_box;

/// Like `Arc<T>` without weak references, but created fallibly ([`Shared::try_new`]) and
/// convertible to a raw pointer that a WSK provider keeps as a socket context; the value may
/// keep its allocation for reuse when its last reference goes ([`LastReference`]).
///
/// # Invariants
/// `ptr` points to a live `SharedBox<T>` allocated by `try_box`, and `refs` counts the
/// `Shared` values and raw references (from [`Shared::into_raw`]) that point to it.
pub(crate) struct Shared<T: LastReference> {
    ptr: NonNull<SharedBox<T>>,
}

/// What becomes of a value and its allocation when its last [`Shared`] reference goes.
pub(crate) trait LastReference: Sized {
    /// Offered the allocation of a value whose last reference just went: returns it to be
    /// dropped and freed (the default), or `None` when it kept it for reuse
    /// ([`Spare::revive`]). Runs wherever the last reference goes: any IRQL <=
    /// DISPATCH_LEVEL.
    fn last_reference_gone(spare: Spare<Self>) -> Option<Spare<Self>> {
        Some(spare)
    }
}

/// The allocation of a value that no reference points to any more, the value still in it:
/// exclusively the holder's. Dropped, it drops the value and frees the allocation; revived,
/// it is the value's first reference again, at the same address.
///
/// # Invariants
/// `ptr` points to a live `SharedBox<T>` allocated by `try_box`, holding an initialised value,
/// with `refs` 0 and no raw reference or `Shared` pointing to it.
pub(crate) struct Spare<T> {
    ptr: NonNull<SharedBox<T>>,
}

// SAFETY: a spare is an exclusively owned box, like `Box<T>`.
unsafe impl<T: Send> Send for Spare<T> {}

impl<T> Spare<T> {
    /// The value, exclusively.
    pub(crate) fn value_mut(&mut self) -> &mut T {
        // SAFETY: the allocation is live and nobody else points to it (invariant).
        unsafe { &mut (*self.ptr.as_ptr()).value }
    }

    /// The value's address, with the provenance of the allocation (as [`Shared::as_ptr`]):
    /// what [`Spare::from_raw`] takes back.
    pub(crate) fn into_raw(self) -> *const T {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: the allocation is live; the projection is derived from its raw pointer.
        unsafe { core::ptr::addr_of!((*this.ptr.as_ptr()).value) }
    }

    /// Takes back a spare given up with [`Spare::into_raw`].
    ///
    /// # Safety
    /// `raw` must come from [`Spare::into_raw`] and be taken back once.
    pub(crate) unsafe fn from_raw(raw: *const T) -> Spare<T> {
        let offset = core::mem::offset_of!(SharedBox<T>, value);
        // SAFETY: `raw` points at the `value` field of a live box (caller's guarantee), with
        // the provenance of the whole allocation.
        let ptr = unsafe { raw.cast::<u8>().sub(offset).cast::<SharedBox<T>>() };
        // SAFETY: non-null, as `raw` points into a live box.
        let ptr = unsafe { NonNull::new_unchecked(ptr.cast_mut()) };
        Spare { ptr }
    }
}

impl<T: LastReference> Spare<T> {
    /// Makes the value shared again: its first reference, at the address it had.
    pub(crate) fn revive(self) -> Shared<T> {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: the allocation is live and exclusively ours; the count goes from 0 to 1
        // before anyone else can see it.
        unsafe { (*this.ptr.as_ptr()).refs.store(1, Ordering::Relaxed) };
        Shared { ptr: this.ptr }
    }
}

impl<T> Drop for Spare<T> {
    fn drop(&mut self) {
        // SAFETY: the box came from `try_box` and nobody else points to it.
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}

struct SharedBox<T> {
    refs: AtomicUsize,
    value: T,
}

// SAFETY: as for `Arc<T>`: shared access to `T` from several threads needs `T: Sync`, and
// the last reference may drop `T` on any thread, which needs `T: Send`.
unsafe impl<T: LastReference + Send + Sync> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: LastReference + Send + Sync> Sync for Shared<T> {}

impl<T: LastReference> Shared<T> {
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

impl<T: LastReference> Clone for Shared<T> {
    fn clone(&self) -> Self {
        // SAFETY: the box is live while `self` is.
        unsafe { (*self.ptr.as_ptr()).refs.fetch_add(1, Ordering::Relaxed) };
        Shared { ptr: self.ptr }
    }
}

impl<T: LastReference> core::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the box is live while `self` is.
        unsafe { &(*self.ptr.as_ptr()).value }
    }
}

impl<T: LastReference> Drop for Shared<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the box is live while `self` is.
        let previous = unsafe { (*self.ptr.as_ptr()).refs.fetch_sub(1, Ordering::Release) };
        if previous == 1 {
            // SAFETY: that was the last reference.
            unsafe { last_reference_gone::<T>(self.ptr) };
        }
    }
}

/// Hands the allocation of a value whose last reference just went to
/// [`LastReference::last_reference_gone`], and drops what that gives back (the value and the
/// allocation). Out of line: a reference that is not the last costs its caller a decrement
/// and a test.
///
/// # Safety
/// The last reference to `ptr`'s allocation was just released (its count reached 0).
#[cold]
#[inline(never)]
unsafe fn last_reference_gone<T: LastReference>(ptr: NonNull<SharedBox<T>>) {
    fence(Ordering::Acquire);
    // This was the last reference: the allocation, value inside, is nobody else's.
    let spare = Spare { ptr };
    // Dropped here (value and allocation) unless the value kept it.
    drop(T::last_reference_gone(spare));
}

/// The reuse of an allocation by its last reference, under Miri too: a value that keeps its
/// allocation in a list when its last reference goes, revived from there at the same address
/// with the provenance of the whole allocation (the count reached through it), and freed
/// from the list.
#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::vec::Vec;
    use core::cell::RefCell;
    use std::thread_local;

    use super::*;

    /// Keeps its allocation in the thread's list when its last reference goes, unless the
    /// list holds two already.
    struct Kept {
        value: u64,
    }

    thread_local! {
        static KEPT: RefCell<Vec<*const Kept>> = const { RefCell::new(Vec::new()) };
    }

    impl LastReference for Kept {
        fn last_reference_gone(mut spare: Spare<Kept>) -> Option<Spare<Kept>> {
            spare.value_mut().value = 0;
            KEPT.with(|kept| {
                let mut kept = kept.borrow_mut();
                if kept.len() >= 2 {
                    return Some(spare);
                }
                kept.push(spare.into_raw());
                None
            })
        }
    }

    fn take_kept() -> Option<Spare<Kept>> {
        let raw = KEPT.with(|kept| kept.borrow_mut().pop())?;
        // SAFETY: each pointer in the list came from `Spare::into_raw`, and is taken once.
        Some(unsafe { Spare::from_raw(raw) })
    }

    #[test]
    fn a_value_kept_by_its_last_reference_is_revived_at_its_address() {
        let first = Shared::try_new(Kept { value: 7 }).unwrap();
        let address = first.as_ptr();
        let other = first.clone();
        drop(first);
        assert_eq!(other.value, 7, "not the last reference: nothing happens");
        // A raw reference and back, as a provider context.
        let raw = other.into_raw();
        // SAFETY: from `into_raw` just above, taken back once.
        let other = unsafe { Shared::from_raw(raw) };
        drop(other);
        let mut spare = take_kept().expect("kept by its last reference");
        assert_eq!(spare.value_mut().value, 0, "reset when kept");
        spare.value_mut().value = 9;
        let revived = spare.revive();
        assert_eq!(revived.as_ptr(), address, "the same allocation");
        assert_eq!(revived.ref_count(), 1);
        let clone = revived.clone();
        assert_eq!(clone.value, 9);
        drop((revived, clone));
        // Three at once: two are kept, the third freed.
        let values: Vec<_> = (0..3)
            .map(|value| Shared::try_new(Kept { value }).unwrap())
            .collect();
        drop(values);
        let kept: Vec<_> = core::iter::from_fn(take_kept).collect();
        assert_eq!(kept.len(), 2);
        // Spares dropped: value and allocation freed (Miri reports a leak otherwise).
        drop(kept);
    }
}
