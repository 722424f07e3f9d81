//! [`HeldBuf`]: a buffer of any [`IoBuf`](crate::IoBuf) type, kept inside a completion block
//! while the provider uses it, without an allocation.
//!
//! A completion block is not generic (it lives in its owner's pool and serves requests of
//! every kind), so the buffer a generic request moves in is stored by value in a fixed inline
//! slot, with the function that drops it: an operation abandoned in flight drops it from the
//! completion routine, whatever its type. The request that stored it is the one that takes it
//! back, as the type it stored.

use core::mem::{ManuallyDrop, MaybeUninit};

/// Room for a held buffer, in machine words: enough for every buffer type of this crate
/// (a [`Buf`](crate::Buf) is five words, a [`Slice`](crate::Slice) two more, a
/// [`MdlChain`](crate::MdlChain) four plus its owner).
pub(crate) const HELD_WORDS: usize = 10;

/// A value of some `Send + 'static` type stored inline; see the module documentation.
///
/// # Invariants
/// `bytes` holds a valid value of the type `drop` was instantiated with, owned by this
/// `HeldBuf` and dropped exactly once (by `Drop`, unless [`HeldBuf::take`] moved it out).
pub(crate) struct HeldBuf {
    bytes: MaybeUninit<[usize; HELD_WORDS]>,
    drop: unsafe fn(*mut u8),
}

// SAFETY: only `Send` values are stored (`new` requires it).
unsafe impl Send for HeldBuf {}

/// Drops the `T` at `value`.
///
/// # Safety
/// `value` must point to a valid `T` that is not used afterwards.
unsafe fn drop_as<T>(value: *mut u8) {
    // SAFETY: forwarded.
    unsafe { core::ptr::drop_in_place(value.cast::<T>()) }
}

impl HeldBuf {
    /// Stores `value`. A type larger than [`HELD_WORDS`] words, or aligned more than a
    /// word, is refused at compile time (no fallback allocation: holding a buffer never
    /// allocates).
    pub(crate) fn new<T: Send + 'static>(value: T) -> HeldBuf {
        const {
            assert!(
                size_of::<T>() <= HELD_WORDS * size_of::<usize>(),
                "a buffer type held by an operation must fit in 10 machine words: box it"
            );
            assert!(
                align_of::<T>() <= align_of::<usize>(),
                "a buffer type held by an operation must be aligned to at most a word"
            );
        }
        let mut bytes = MaybeUninit::<[usize; HELD_WORDS]>::uninit();
        // SAFETY: the slot is large and aligned enough for a `T` (checked above).
        unsafe { bytes.as_mut_ptr().cast::<T>().write(value) };
        HeldBuf {
            bytes,
            drop: drop_as::<T>,
        }
    }

    /// Takes the stored value out.
    ///
    /// # Safety
    /// `T` must be the type the value was stored as.
    pub(crate) unsafe fn take<T>(self) -> T {
        let this = ManuallyDrop::new(self);
        // SAFETY: by the invariant and the caller, a valid `T` is stored; `this` is never
        // dropped, so the value is moved out exactly once.
        unsafe { this.bytes.as_ptr().cast::<T>().read() }
    }
}

impl Drop for HeldBuf {
    fn drop(&mut self) {
        // SAFETY: by the invariant a valid value of the type `drop` was made for is stored,
        // and this is its one drop.
        unsafe { (self.drop)(self.bytes.as_mut_ptr().cast()) }
    }
}
