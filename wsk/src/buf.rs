//! [`Buf`] and [`BufList`]: owned data buffers with the MDLs WSK needs.

use alloc::vec::Vec;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use wsk_sys::*;
// With either kernel base, typed as the parameters that take them.
use wsk_sys::typed::{FALSE, KernelMode};

use crate::irql::{Irql, require_at_most};
use crate::{Error, Result};

/// Pool tag of the buffers this crate allocates (`WskB` in pool tools).
pub const BUF_POOL_TAG: u32 = u32::from_le_bytes(*b"WskB");

/// An owned, locked data buffer and the MDL that describes it to WSK.
///
/// A `Buf` has a length (the bytes it holds, what a send transmits) and a capacity (the
/// memory it owns; a receive appends into the space between them). It is **moved into** a
/// send or receive and **handed back** with the result, so no code can touch or free the
/// memory while the provider may read or write it: the operation keeps it until the IRP's
/// completion has arrived, even if the operation's future is dropped in the meantime.
///
/// Two kinds of memory back a `Buf`:
/// - [`Buf::with_capacity`]: zeroed non-paged pool (tag [`BUF_POOL_TAG`]) described by
///   `MmBuildMdlForNonPagedPool`; usable at DISPATCH_LEVEL. The pool comes from
///   `ExAllocatePool2` where the running system exports it (Windows 10 2004 and later, found
///   at run time, never imported), otherwise from `ExAllocatePoolWithTag` (`NonPagedPoolNx`
///   from Windows 8, `NonPagedPool` before): see `wsk_sys::pool`, whose `initialize` a driver
///   calls from `DriverEntry`.
/// - [`Buf::from_vec`]: a `Vec<u8>`'s own allocation, its pages locked with
///   `MmProbeAndLockPages` (no copy). Dropping such a `Buf` frees the `Vec` through the
///   global allocator, possibly at DISPATCH_LEVEL (a cancelled operation releases its buffer
///   when the completion arrives): the driver's global allocator must allow that, as
///   non-paged pool allocators do.
///
/// A `Buf` is two addresses — the data's and the MDL's, which also says how the memory was
/// obtained — and the length and capacity, 32 bits each (an MDL describes at most
/// `u32::MAX` bytes): 24 bytes on a 64-bit target, as is an `Option<Buf>`. Moving one into
/// an operation and back costs a few register moves.
///
/// # Invariants
/// `mdl` (its address with the `LOCKED_VEC` bit cleared) describes `capacity` bytes at
/// `data`, which stay allocated and resident until the `Buf` is dropped; the bit is set
/// when they are a `Vec<u8>`'s locked pages (`Storage::LockedVec`), clear for pool memory;
/// `len <= capacity`; the first `len` bytes are initialised. A `Storage::Released`
/// stand-in has no memory: `capacity == 0` (which no other buffer has), and `data` and `mdl`
/// are dangling and never used (every operation refuses an empty buffer).
pub struct Buf {
    data: NonNull<u8>,
    mdl: NonNull<MDL>,
    len: u32,
    capacity: u32,
}

const _: () = assert!(
    core::mem::size_of::<Buf>() == 2 * core::mem::size_of::<usize>() + 8
        && core::mem::size_of::<Option<Buf>>() == core::mem::size_of::<Buf>()
);

/// The bit of a [`Buf`]'s MDL address that marks a `Vec`'s locked pages: an MDL, allocated
/// by `IoAllocateMdl`, is aligned to at least its pointer fields' 8 bytes, so the bit is
/// otherwise clear.
const LOCKED_VEC: usize = 1;

/// How a [`Buf`]'s memory was obtained (read from its fields: see its invariants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storage {
    /// Non-paged pool (`wsk_sys::pool`) with [`BUF_POOL_TAG`], MDL built for non-paged pool.
    Pool,
    /// A `Vec<u8>`'s allocation (`len`, `capacity`), pages locked.
    LockedVec,
    /// No memory: stands for a buffer an operation could not hand back because the provider
    /// still owned it (see [`Buf::released`]).
    Released,
}

// SAFETY: a `Buf` exclusively owns its memory and MDL; kernel memory is usable from any
// thread.
unsafe impl Send for Buf {}
// SAFETY: shared references only give shared access to the bytes.
unsafe impl Sync for Buf {}

impl Buf {
    /// A buffer of `capacity` bytes of non-paged pool, empty. `capacity` must be between 1
    /// and `u32::MAX` ([`Error::INVALID_BUFFER_SIZE`] otherwise). IRQL <= DISPATCH_LEVEL.
    pub fn with_capacity(capacity: usize) -> Result<Buf> {
        require_at_most(Irql::DISPATCH)?;
        check_capacity(capacity)?;
        // SAFETY: a non-zero size and tag; the IRQL was checked.
        let raw = unsafe { pool::allocate_non_paged_zeroed(capacity as SIZE_T, BUF_POOL_TAG) };
        let data = NonNull::new(raw.cast::<u8>()).ok_or(Error::INSUFFICIENT_RESOURCES)?;
        // SAFETY: `data` is a fresh allocation of `capacity` bytes.
        let mdl = unsafe { allocate_mdl(data, capacity) };
        let Some(mdl) = mdl else {
            // SAFETY: allocated above with this tag, not shared.
            unsafe { ExFreePoolWithTag(data.as_ptr().cast(), BUF_POOL_TAG) };
            return Err(Error::INSUFFICIENT_RESOURCES);
        };
        // SAFETY: the MDL describes non-paged pool just allocated.
        unsafe { MmBuildMdlForNonPagedPool(mdl.as_ptr()) };
        Ok(Buf {
            data,
            mdl,
            len: 0,
            // Checked above.
            capacity: capacity as u32,
        })
    }

    /// A stand-in with no memory (capacity 0), handed back by an operation that ended
    /// without its buffer: one waited for above APC_LEVEL while in flight is cancelled, and
    /// its buffer is released when the completion arrives, not handed back.
    pub(crate) fn released() -> Buf {
        Buf {
            data: NonNull::dangling(),
            mdl: NonNull::dangling(),
            len: 0,
            capacity: 0,
        }
    }

    /// A non-paged buffer holding a copy of `bytes` (which must not be empty).
    /// IRQL <= DISPATCH_LEVEL.
    pub fn from_slice(bytes: &[u8]) -> Result<Buf> {
        let mut buf = Buf::with_capacity(bytes.len())?;
        buf.extend_from_slice(bytes)?;
        Ok(buf)
    }

    /// Takes a `Vec<u8>` without copying: its pages are locked and described by an MDL. The
    /// buffer's length is the vector's length and its capacity the vector's capacity (which
    /// must be between 1 and `u32::MAX`). IRQL <= APC_LEVEL (locking may page in).
    ///
    /// If the pages cannot be made resident, `MmProbeAndLockPages` raises an exception, as it
    /// would for the same C code; kernel heap memory is resident or can be paged in.
    pub fn from_vec(vec: Vec<u8>) -> Result<Buf> {
        require_at_most(Irql::APC)?;
        check_capacity(vec.capacity())?;
        let mut vec = core::mem::ManuallyDrop::new(vec);
        let (len, capacity) = (vec.len(), vec.capacity());
        let data = NonNull::new(vec.as_mut_ptr()).expect("a Vec's pointer is never null");
        // SAFETY: `data` is the vector's allocation of `capacity` bytes.
        let Some(mdl) = (unsafe { allocate_mdl(data, capacity) }) else {
            // SAFETY: the parts come from the vector, which was not dropped.
            drop(unsafe { Vec::from_raw_parts(data.as_ptr(), len, capacity) });
            return Err(Error::INSUFFICIENT_RESOURCES);
        };
        // SAFETY: the MDL describes kernel memory the vector owns; the IRQL allows paging in.
        unsafe { MmProbeAndLockPages(mdl.as_ptr(), KernelMode, IoModifyAccess) };
        debug_assert_eq!(mdl.addr().get() & LOCKED_VEC, 0, "an MDL is 8-aligned");
        Ok(Buf {
            data,
            mdl: mdl.map_addr(|addr| addr | LOCKED_VEC),
            // `len <= capacity`, checked above.
            len: len as u32,
            capacity: capacity as u32,
        })
    }

    /// Gives back the `Vec<u8>` of a buffer made by [`Buf::from_vec`] (without copying), or
    /// the buffer itself when it is pool memory. IRQL <= DISPATCH_LEVEL.
    pub fn into_vec(self) -> core::result::Result<Vec<u8>, Buf> {
        if self.storage() != Storage::LockedVec {
            return Err(self);
        }
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: the MDL was locked by `from_vec` and is owned by this buffer, which is
        // consumed; the vector parts are those `from_vec` took apart.
        unsafe {
            MmUnlockPages(this.mdl_ptr());
            IoFreeMdl(this.mdl_ptr());
            Ok(Vec::from_raw_parts(
                this.data.as_ptr(),
                this.len(),
                this.capacity(),
            ))
        }
    }

    /// How the memory was obtained.
    fn storage(&self) -> Storage {
        if self.capacity == 0 {
            Storage::Released
        } else if self.mdl.addr().get() & LOCKED_VEC != 0 {
            Storage::LockedVec
        } else {
            Storage::Pool
        }
    }

    /// The MDL's address (the [`LOCKED_VEC`] bit cleared).
    #[inline]
    fn mdl_ptr(&self) -> PMDL {
        self.mdl.as_ptr().map_addr(|addr| addr & !LOCKED_VEC)
    }

    /// Number of bytes held.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the buffer holds no bytes.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of bytes the buffer can hold.
    #[must_use]
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Free space after the held bytes (what a receive can append).
    #[must_use]
    #[inline]
    pub fn spare_capacity(&self) -> usize {
        (self.capacity - self.len) as usize
    }

    /// Forgets the held bytes.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` bytes (no effect when `len` is not smaller).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            // Smaller than the current length, so it fits.
            self.len = len as u32;
        }
    }

    /// Appends `bytes`; fails with [`Error::INVALID_BUFFER_SIZE`] when they do not fit.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() > self.spare_capacity() {
            return Err(Error::INVALID_BUFFER_SIZE);
        }
        // SAFETY: the destination is inside the allocation (checked above) and does not
        // overlap `bytes`, which the caller borrows separately.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.data.as_ptr().add(self.len()),
                bytes.len(),
            );
        }
        // At most the spare capacity (checked above), so the sum fits.
        self.len += bytes.len() as u32;
        Ok(())
    }

    /// The free space after the held bytes, for filling in place; then [`Buf::set_len`].
    pub fn spare_capacity_mut(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: the range is inside the allocation, exclusively borrowed through `self`.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.data.as_ptr().add(self.len()).cast(),
                self.spare_capacity(),
            )
        }
    }

    /// Sets the number of bytes held.
    ///
    /// # Safety
    /// `len <= capacity`, and the first `len` bytes must be initialised.
    pub unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity());
        // At most the capacity (the caller's contract), which fits in 32 bits.
        self.len = len as u32;
    }

    /// The MDL describing the whole capacity (null for the memoryless stand-in an operation
    /// hands back when it could not return its buffer; see [`Op::wait`](crate::Op::wait)).
    #[must_use]
    pub fn mdl(&self) -> PMDL {
        if self.capacity == 0 {
            return core::ptr::null_mut();
        }
        self.mdl_ptr()
    }

    /// A `WSK_BUF` over the held bytes `[start, len)`.
    #[inline]
    pub(crate) fn wsk_buf_of_data(&self, start: usize) -> WSK_BUF {
        debug_assert!(start <= self.len());
        WSK_BUF {
            Mdl: self.mdl_ptr(),
            Offset: start as ULONG,
            Length: (self.len() - start) as SIZE_T,
        }
    }
}

impl core::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: by the invariant the first `len` bytes are initialised and owned.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), self.len()) }
    }
}

impl core::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, borrowed exclusively.
        unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr(), self.len()) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: by the invariant the buffer owns the MDL and memory, and no request uses
        // them (a request owns the `Buf` until its completion has arrived).
        unsafe {
            match self.storage() {
                Storage::Pool => {
                    IoFreeMdl(self.mdl_ptr());
                    ExFreePoolWithTag(self.data.as_ptr().cast(), BUF_POOL_TAG);
                }
                Storage::LockedVec => {
                    MmUnlockPages(self.mdl_ptr());
                    IoFreeMdl(self.mdl_ptr());
                    drop(Vec::from_raw_parts(
                        self.data.as_ptr(),
                        self.len(),
                        self.capacity(),
                    ));
                }
                Storage::Released => {}
            }
        }
    }
}

impl core::fmt::Debug for Buf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Buf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("storage", &self.storage())
            .finish()
    }
}

fn check_capacity(capacity: usize) -> Result<()> {
    if capacity == 0 || capacity > u32::MAX as usize {
        Err(Error::INVALID_BUFFER_SIZE)
    } else {
        Ok(())
    }
}

/// # Safety
/// `data` must point to an allocation of at least `length` bytes (`length <= u32::MAX`).
unsafe fn allocate_mdl(data: NonNull<u8>, length: usize) -> Option<NonNull<MDL>> {
    // SAFETY: forwarded from the caller; no IRP to attach to.
    let mdl = unsafe {
        IoAllocateMdl(
            data.as_ptr().cast(),
            length as ULONG,
            FALSE,
            FALSE,
            core::ptr::null_mut(),
        )
    };
    NonNull::new(mdl)
}

/// Several buffers sent as one: their held bytes, in order, for a vectored send on a
/// connection (one MDL chain), or one datagram each for
/// [`DatagramSocket::send_messages`](crate::DatagramSocket::send_messages).
///
/// The list keeps, for each buffer, a partial MDL (`IoBuildPartialMdl`) describing exactly
/// its held bytes, so the chain the provider walks has no gaps; they are allocated when a
/// buffer is pushed and rebuilt in place for every send.
///
/// A buffer replaced through [`BufList::bufs_mut`] gets a partial MDL of its own size at the
/// next send: a partial MDL is never built for a range larger than it was allocated for
/// (which Windows answers with bug check 0x40, TARGET_MDL_TOO_SMALL).
///
/// # Invariants
/// `partials[i]` is an MDL owned by the list, allocated for the range
/// `(partials[i].data, partials[i].capacity)`; `chain` checks it against `bufs[i]` before
/// building into it. `nodes` has capacity for `bufs.len()` entries.
pub struct BufList {
    bufs: Vec<Buf>,
    partials: Vec<Partial>,
    nodes: Vec<WSK_BUF_LIST>,
}

/// A partial MDL and the buffer range it was allocated to describe.
struct Partial {
    mdl: NonNull<MDL>,
    data: NonNull<u8>,
    capacity: usize,
}

impl Partial {
    /// A partial MDL able to describe any part of `buf`. IRQL <= DISPATCH_LEVEL.
    fn for_buf(buf: &Buf) -> Result<Partial> {
        // SAFETY: a partial MDL needs room for the source's pages; allocating it for the
        // source's own range gives that (a non-empty buffer: checked by the callers).
        let mdl = unsafe { allocate_mdl(buf.data, buf.capacity()) }
            .ok_or(Error::INSUFFICIENT_RESOURCES)?;
        Ok(Partial {
            mdl,
            data: buf.data,
            capacity: buf.capacity(),
        })
    }

    fn fits(&self, buf: &Buf) -> bool {
        self.data == buf.data && self.capacity == buf.capacity()
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        // SAFETY: the partial MDL is owned by the list and not in use (no request holds the
        // list while it is changed or dropped).
        unsafe {
            MmPrepareMdlForReuse(self.mdl.as_ptr());
            IoFreeMdl(self.mdl.as_ptr());
        }
    }
}

// SAFETY: the list exclusively owns its buffers and MDLs.
unsafe impl Send for BufList {}
// SAFETY: shared references only read the buffers.
unsafe impl Sync for BufList {}

impl BufList {
    /// An empty list.
    #[must_use]
    pub fn new() -> BufList {
        BufList {
            bufs: Vec::new(),
            partials: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Appends a buffer (with memory: [`Error::INVALID_BUFFER_SIZE`] for the memoryless
    /// stand-in). Fails with [`Error::INSUFFICIENT_RESOURCES`] when memory is short; the
    /// list is unchanged then. IRQL <= DISPATCH_LEVEL.
    pub fn push(&mut self, buf: Buf) -> Result<()> {
        require_at_most(Irql::DISPATCH)?;
        if buf.capacity == 0 {
            return Err(Error::INVALID_BUFFER_SIZE);
        }
        // Room first: once the MDL is allocated nothing can fail, so nothing can leak.
        let oom = |_| Error::INSUFFICIENT_RESOURCES;
        self.bufs.try_reserve(1).map_err(oom)?;
        self.partials.try_reserve(1).map_err(oom)?;
        self.nodes
            .try_reserve(self.bufs.len() + 1 - self.nodes.len())
            .map_err(oom)?;
        let partial = Partial::for_buf(&buf)?;
        self.bufs.push(buf);
        self.partials.push(partial);
        Ok(())
    }

    /// The buffers.
    #[must_use]
    pub fn bufs(&self) -> &[Buf] {
        &self.bufs
    }

    /// The buffers, mutably (to refill them between sends, or to replace them: a replaced
    /// buffer gets a partial MDL of its own size at the next send).
    pub fn bufs_mut(&mut self) -> &mut [Buf] {
        &mut self.bufs
    }

    /// Takes the buffers back, freeing the list's MDLs.
    pub fn into_bufs(self) -> Vec<Buf> {
        self.bufs
    }

    /// Total held bytes.
    #[must_use]
    pub fn total_len(&self) -> usize {
        self.bufs.iter().map(|b| b.len()).sum()
    }

    /// Builds the chain of partial MDLs over the non-empty buffers and returns a `WSK_BUF`
    /// describing all held bytes; `Ok(None)` when there are none. A buffer replaced since its
    /// partial MDL was allocated gets a new one (which can fail when memory is short).
    pub(crate) fn chain(&mut self) -> Result<Option<WSK_BUF>> {
        let mut first: Option<NonNull<MDL>> = None;
        let mut last: Option<NonNull<MDL>> = None;
        let mut total = 0usize;
        for (buf, partial) in self.bufs.iter().zip(&mut self.partials) {
            if buf.is_empty() {
                continue;
            }
            if !partial.fits(buf) {
                *partial = Partial::for_buf(buf)?;
            }
            let partial = partial.mdl;
            // SAFETY: the partial MDL was allocated for this buffer's range (checked just
            // above), which its own MDL describes and keeps resident; no request is using
            // either (the list is borrowed mutably).
            unsafe {
                MmPrepareMdlForReuse(partial.as_ptr());
                IoBuildPartialMdl(
                    buf.mdl_ptr(),
                    partial.as_ptr(),
                    buf.data.as_ptr().cast(),
                    buf.len,
                );
                (*partial.as_ptr()).Next = core::ptr::null_mut();
                if let Some(prev) = last {
                    (*prev.as_ptr()).Next = partial.as_ptr();
                }
            }
            first.get_or_insert(partial);
            last = Some(partial);
            total += buf.len();
        }
        Ok(first.map(|mdl| WSK_BUF {
            Mdl: mdl.as_ptr(),
            Offset: 0,
            Length: total as SIZE_T,
        }))
    }

    /// Builds the `WSK_BUF_LIST` nodes, one per non-empty buffer, and returns the head;
    /// `None` when there are none.
    pub(crate) fn datagram_list(&mut self) -> Option<*mut WSK_BUF_LIST> {
        self.nodes.clear();
        for buf in self.bufs.iter().filter(|b| !b.is_empty()) {
            // Capacity was reserved in `push`, so this does not allocate.
            self.nodes.push(WSK_BUF_LIST {
                Next: core::ptr::null_mut(),
                Buffer: buf.wsk_buf_of_data(0),
            });
        }
        let count = self.nodes.len();
        let base = self.nodes.as_mut_ptr();
        for i in 1..count {
            // SAFETY: both indices are within the vector, which is not resized below.
            unsafe { (*base.add(i - 1)).Next = base.add(i) };
        }
        (count > 0).then_some(base)
    }
}

impl Default for BufList {
    fn default() -> Self {
        BufList::new()
    }
}

impl core::fmt::Debug for BufList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BufList").field("bufs", &self.bufs).finish()
    }
}
