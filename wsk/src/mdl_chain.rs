//! [`MdlChain`]: memory the driver already has, described by its own MDL or MDL chain, sent
//! or received into without a copy.

use core::marker::PhantomData;
use core::ptr::NonNull;

use wsk_sys::*;

use crate::Error;
use crate::io_buf::{IoBuf, IoBufMut};

/// A caller's MDL chain and the value that keeps its memory alive, as a buffer for a send or
/// a receive ([`IoBuf`], [`IoBufMut`]): the everyday case of a filter, NDIS or storage driver
/// forwarding data it was given, zero-copy.
///
/// The buffer is `len` bytes starting `offset` bytes into the chain (so it can start inside
/// the first MDL and span several). It holds data (what a send transmits) up to
/// [`filled`](MdlChain::filled), all of it when made; [`clear`](MdlChain::clear) empties it
/// so that a receive writes from its start.
///
/// # Ownership
/// This value does not own the MDLs or the memory: `owner` does, or stands for whoever does.
/// The chain is valid until `owner` is dropped, and this value drops it only when it is
/// dropped itself — which an operation holding the chain does only after its completion has
/// arrived (at IRQL <= DISPATCH_LEVEL, possibly from the completion routine, when the
/// operation was abandoned in flight); a forgotten operation never drops it. So the owner
/// is where the memory's lifetime ends: for instance the forwarded request whose
/// `MdlAddress` this is, completed by the owner's `Drop`, or the pool allocation and MDL the
/// owner frees. [`into_owner`](MdlChain::into_owner) gives it back once an operation has
/// handed the chain back.
///
/// IRQL: everything here at <= DISPATCH_LEVEL; the owner is dropped at <= DISPATCH_LEVEL.
///
/// Describing memory is `unsafe` (the chain's validity is the caller's promise), and the
/// owner must be `Send` (it may be dropped on the provider's thread):
///
/// ```compile_fail,E0133
/// # use core::ptr::NonNull;
/// # use wsk::MdlChain;
/// fn describe(first: NonNull<wsk_sys::MDL>) {
///     let _ = MdlChain::from_raw(first, 0, 100, ());
/// }
/// ```
///
/// ```compile_fail,E0277
/// # use core::ptr::NonNull;
/// # use std::rc::Rc;
/// # use wsk::{ConnectionSocket, MdlChain};
/// fn send(socket: &ConnectionSocket, first: NonNull<wsk_sys::MDL>, owner: Rc<Vec<u8>>) {
///     // SAFETY: (for the example) the chain describes `owner`'s memory.
///     let chain = unsafe { MdlChain::from_raw(first, 0, 100, owner) }.unwrap();
///     let _ = socket.send(chain);
/// }
/// ```
///
/// What the provider may do with the memory is in the type: a chain made with
/// [`from_raw`](MdlChain::from_raw) (memory the provider may write: [`WriteAccess`]) is a
/// buffer to send or to receive into; one made with
/// [`from_raw_read_only`](MdlChain::from_raw_read_only) (memory locked for read access
/// only: [`ReadAccess`]) can only be sent:
///
/// ```compile_fail,E0277
/// # use core::ptr::NonNull;
/// # use wsk::{ConnectionSocket, MdlChain};
/// fn receive(socket: &ConnectionSocket, first: NonNull<wsk_sys::MDL>) {
///     // SAFETY: (for the example) the chain describes memory locked for read access.
///     let chain = unsafe { MdlChain::from_raw_read_only(first, 0, 100, ()) }.unwrap();
///     let _ = socket.receive(chain);
/// }
/// ```
///
/// # Invariants
/// `first` is the first MDL of a chain describing at least `offset + len` bytes of resident
/// memory, valid while `owner` is `Some` (the constructor's contract), writable by the
/// provider when `A` is [`WriteAccess`]; `filled <= len <= u32::MAX`; the memoryless
/// stand-in has `owner == None` and `len == 0`.
pub struct MdlChain<O = (), A: Access = WriteAccess> {
    first: PMDL,
    offset: usize,
    // Both at most `u32::MAX` (checked when made): one word for the two.
    len: u32,
    filled: u32,
    owner: Option<O>,
    access: PhantomData<fn() -> A>,
}

/// What the provider may do with the memory of an [`MdlChain`]: [`ReadAccess`] or
/// [`WriteAccess`] (sealed).
pub trait Access: sealed::Sealed + 'static {}

/// The memory is locked for read access only (`IoReadAccess`): the chain can be sent, not
/// received into.
#[derive(Debug)]
pub enum ReadAccess {}

/// The provider may write the memory (non-paged pool, or locked with `IoWriteAccess` or
/// `IoModifyAccess`): the chain can be sent and received into.
#[derive(Debug)]
pub enum WriteAccess {}

impl Access for ReadAccess {}
impl Access for WriteAccess {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ReadAccess {}
    impl Sealed for super::WriteAccess {}
}

// SAFETY: the chain is plain kernel memory usable from any thread; the owner is `Send`.
unsafe impl<O: Send, A: Access> Send for MdlChain<O, A> {}

// Nothing is pinned through a chain: the owner is only ever moved and dropped.
impl<O, A: Access> Unpin for MdlChain<O, A> {}

impl<O: Send + 'static> MdlChain<O, ReadAccess> {
    /// As [`from_raw`](MdlChain::from_raw), for memory the provider may only read (locked
    /// with `IoReadAccess`, or not to be written for any other reason): the chain can be
    /// sent, not received into.
    ///
    /// # Safety
    /// As for [`from_raw`](MdlChain::from_raw), with read access to the memory enough.
    pub unsafe fn from_raw_read_only(
        first: NonNull<MDL>,
        offset: usize,
        len: usize,
        owner: O,
    ) -> core::result::Result<MdlChain<O, ReadAccess>, (Error, O)> {
        // SAFETY: forwarded.
        unsafe { describe(first, offset, len, owner) }
    }
}

impl<O: Send + 'static> MdlChain<O> {
    /// The `len` bytes at `offset` in the chain starting at `first`, kept alive by `owner`.
    /// Fails with [`Error::INVALID_BUFFER_SIZE`] (handing `owner` back) when `len` is 0 or
    /// above `u32::MAX`, or when the chain describes fewer than `offset + len` bytes (summed
    /// `ByteCount`s, walked here once). IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// - `first` and every MDL linked from it by `Next` (up to null) are valid MDLs, and the
    ///   memory they describe is resident, usable at DISPATCH_LEVEL and writable by the
    ///   provider: built for non-paged pool (`MmBuildMdlForNonPagedPool`) or locked
    ///   (`MmProbeAndLockPages`) with `IoWriteAccess` or `IoModifyAccess` — memory locked
    ///   for read access only is [`from_raw_read_only`](MdlChain::from_raw_read_only)'s;
    /// - the MDLs and the memory stay so, and are not freed, unlocked or (while an operation
    ///   holds the chain) written by anyone but the provider, until `owner` is dropped
    ///   (which this value does only when it is dropped itself) — also if the value is
    ///   moved into an operation and that operation is dropped or forgotten;
    /// - `owner` may be dropped at IRQL <= DISPATCH_LEVEL on any thread.
    pub unsafe fn from_raw(
        first: NonNull<MDL>,
        offset: usize,
        len: usize,
        owner: O,
    ) -> core::result::Result<MdlChain<O>, (Error, O)> {
        // SAFETY: forwarded.
        unsafe { describe(first, offset, len, owner) }
    }
}

/// The chain of [`MdlChain::from_raw`] and [`MdlChain::from_raw_read_only`], checked.
///
/// # Safety
/// Their contract, with the access `A` stands for.
unsafe fn describe<O, A: Access>(
    first: NonNull<MDL>,
    offset: usize,
    len: usize,
    owner: O,
) -> core::result::Result<MdlChain<O, A>, (Error, O)> {
    if len == 0 || len > u32::MAX as usize {
        return Err((Error::INVALID_BUFFER_SIZE, owner));
    }
    let Some(needed) = offset.checked_add(len) else {
        return Err((Error::INVALID_BUFFER_SIZE, owner));
    };
    // SAFETY: the caller guarantees a valid chain.
    if unsafe { chain_length(first.as_ptr(), needed) } < needed {
        return Err((Error::INVALID_BUFFER_SIZE, owner));
    }
    Ok(MdlChain {
        first: first.as_ptr(),
        offset,
        len: len as u32,
        filled: len as u32,
        owner: Some(owner),
        access: PhantomData,
    })
}

impl<O: Send + 'static, A: Access> MdlChain<O, A> {
    /// The first MDL of the chain (null for the memoryless stand-in).
    #[must_use]
    pub fn first_mdl(&self) -> PMDL {
        self.first
    }

    /// Where the buffer starts, in bytes into the chain.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// How many bytes the buffer describes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the buffer describes no bytes (only the memoryless stand-in).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many bytes from the start hold data: what a send transmits, and how far a
    /// receive has filled it.
    #[must_use]
    pub fn filled(&self) -> usize {
        self.filled as usize
    }

    /// Forgets the data, so that a receive writes from the buffer's start.
    pub fn clear(&mut self) {
        self.filled = 0;
    }

    /// Keeps the first `count` bytes as data (no effect when `count` is not smaller).
    pub fn truncate(&mut self, count: usize) {
        self.filled = self.filled.min(u32::try_from(count).unwrap_or(u32::MAX));
    }

    /// The owner (`None` only for the memoryless stand-in an operation hands back when it
    /// could not hand the chain back).
    #[must_use]
    pub fn owner(&self) -> Option<&O> {
        self.owner.as_ref()
    }

    /// Gives the owner back, ending this description of the memory (`None` for the
    /// memoryless stand-in).
    pub fn into_owner(self) -> Option<O> {
        self.owner
    }
}

/// The bytes the chain from `mdl` describes, summed until `enough` is reached or the chain
/// ends.
///
/// # Safety
/// `mdl` is null or the first MDL of a chain of valid MDLs.
unsafe fn chain_length(mut mdl: PMDL, enough: usize) -> usize {
    let mut total = 0usize;
    // SAFETY: forwarded: every MDL of the chain is valid.
    while let Some(current) = unsafe { mdl.as_ref() } {
        total = total.saturating_add(current.ByteCount as usize);
        if total >= enough {
            break;
        }
        mdl = current.Next;
    }
    total
}

// SAFETY: by the constructor's contract the chain describes `offset + len` bytes of resident
// memory, valid while the owner (dropped only with this value) lives; `filled <= len <=
// u32::MAX`; the stand-in describes 0 bytes.
unsafe impl<O: Send + 'static, A: Access> IoBuf for MdlChain<O, A> {
    #[inline]
    fn mdl(&self) -> PMDL {
        self.first
    }

    #[inline]
    fn mdl_offset(&self) -> usize {
        self.offset
    }

    #[inline]
    fn bytes_init(&self) -> usize {
        self.filled as usize
    }

    #[inline]
    fn bytes_total(&self) -> usize {
        self.len as usize
    }

    fn stand_in() -> MdlChain<O, A> {
        MdlChain {
            first: core::ptr::null_mut(),
            offset: 0,
            len: 0,
            filled: 0,
            owner: None,
            access: PhantomData,
        }
    }
}

// SAFETY: `from_raw`'s contract (the only constructor of a `WriteAccess` chain) gives the
// provider write access to the memory while an operation holds the chain.
unsafe impl<O: Send + 'static> IoBufMut for MdlChain<O, WriteAccess> {
    #[inline]
    unsafe fn set_init(&mut self, count: usize) {
        // At most `len`, so it fits.
        self.filled = self.filled.max(count.min(self.len as usize) as u32);
    }
}

impl<O, A: Access> core::fmt::Debug for MdlChain<O, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MdlChain")
            .field("first", &self.first)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("filled", &self.filled)
            .finish_non_exhaustive()
    }
}
