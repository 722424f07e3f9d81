//! [`HeldBuf`]: a buffer of any [`IoBuf`](crate::IoBuf) type, kept inside a completion block
//! while the provider uses it, without an allocation.
//!
//! A completion block is not generic (it lives in its owner's pool and serves requests of
//! every kind), so the buffer a generic request moves in is stored by value in a fixed inline
//! slot, with the function that drops it: an operation abandoned in flight drops it from the
//! completion routine, whatever its type. The request that stored it is the one that takes it
//! back, as the type it stored.

use core::mem::MaybeUninit;

/// Room for a held buffer, in machine words: enough for every buffer type of this crate
/// (a [`Buf`](crate::Buf) is five words, a [`Slice`](crate::Slice) one more than its
/// buffer, a [`MdlChain`](crate::MdlChain) three plus its owner), and no more than the
/// largest of the block's other holdings (a [`BufList`](crate::BufList)'s three vectors):
/// holding a buffer this way makes no block larger.
pub(crate) const HELD_WORDS: usize = 8;

/// A value of some `Send + 'static` type stored inline; see the module documentation.
///
/// # Invariants
/// `bytes` holds a valid value of the type `drop` was instantiated with, owned by this
/// `HeldBuf` and dropped exactly once (by `Drop`, unless [`HeldBuf::read`] moved it out and
/// the holder was then forgotten or overwritten).
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
    #[inline]
    pub(crate) fn new<T: Send + 'static>(value: T) -> HeldBuf {
        const {
            assert!(
                size_of::<T>() <= HELD_WORDS * size_of::<usize>(),
                "a buffer type held by an operation must fit in 8 machine words: box its contents"
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

    /// Moves the stored value out, leaving this `HeldBuf` logically empty.
    ///
    /// # Safety
    /// `T` must be the type the value was stored as, and this `HeldBuf` must then be
    /// forgotten or overwritten without being dropped (as
    /// [`Held::take_io`](super::completion::Held::take_io) does).
    /// Where the stored value lies (for tests that write through it as a provider would).
    #[cfg(test)]
    pub(crate) fn value_ptr<T>(&mut self) -> *mut T {
        self.bytes.as_mut_ptr().cast()
    }

    #[inline]
    pub(crate) unsafe fn read<T>(&self) -> T {
        // SAFETY: by the invariant and the caller, a valid `T` is stored and moved out once.
        unsafe { self.bytes.as_ptr().cast::<T>().read() }
    }
}

impl Drop for HeldBuf {
    fn drop(&mut self) {
        // SAFETY: by the invariant a valid value of the type `drop` was made for is stored,
        // and this is its one drop.
        unsafe { (self.drop)(self.bytes.as_mut_ptr().cast()) }
    }
}

/// Values stored and taken back or dropped in place. The suite also runs these under Miri.
#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counted(Arc<AtomicUsize>, Vec<u8>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_value_is_taken_back_whole_or_dropped_once_in_place() {
        let drops = Arc::new(AtomicUsize::new(0));
        let held = HeldBuf::new(Counted(Arc::clone(&drops), b"bytes".to_vec()));
        // SAFETY: stored as a `Counted`; the holder is forgotten right after.
        let back = unsafe { held.read::<Counted>() };
        core::mem::forget(held);
        assert_eq!(back.1, b"bytes");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "taking is a move, not a drop"
        );
        drop(back);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(HeldBuf::new(Counted(Arc::clone(&drops), Vec::new())));
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2,
            "dropped once, through its own drop"
        );
    }

    #[test]
    fn a_value_of_the_full_size_survives_moves_of_its_holder() {
        let words: [usize; HELD_WORDS] = core::array::from_fn(|i| i * 3 + 1);
        let held = HeldBuf::new(words);
        // Moved around, as a block's `Held` is when it is taken out and put back.
        let moved = [held];
        let [held] = moved;
        let boxed = alloc::boxed::Box::new(held);
        // SAFETY: stored as the array; plain data, so dropping the holder after is harmless.
        let back = unsafe { boxed.read::<[usize; HELD_WORDS]>() };
        assert_eq!(back, words);
        // A zero-sized value.
        // SAFETY: stored as `()`.
        unsafe { HeldBuf::new(()).read::<()>() };
    }
}
