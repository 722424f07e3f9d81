//! [`IoBuf`] and [`IoBufMut`]: the buffers an operation can send from or receive into, and
//! [`Slice`], a sub-range of one.
//!
//! WSK reads and writes data through a `WSK_BUF`: an MDL chain describing resident memory,
//! an offset into the chain and a length. Any owned type that can describe its memory that
//! way can be moved into a send or a receive and is handed back with the result, exactly
//! like [`Buf`] (which stays the easy default): a sub-range of a buffer ([`Slice`]), memory
//! the driver already has behind an MDL chain ([`MdlChain`](crate::MdlChain)), or a type of
//! the driver's own. Operations are generic over the buffer type and monomorphised: a `Buf`
//! goes through the same code as before, and no buffer type costs a copy or an allocation
//! per operation (the operation keeps the value inline in its completion block, or, waited
//! for with [`Op::wait`](crate::Op::wait) before it was ever polled, in itself: that wait's
//! frame outlives the completion).
//!
//! # Ownership
//! The value is **moved into** the operation and **handed back** with its result. While the
//! provider may use the memory, the operation owns the value, even if its future is dropped
//! (the value is then dropped when the completion arrives, at IRQL <= DISPATCH_LEVEL) or
//! forgotten (the value is leaked with the operation's completion block, never freed).

use core::ops::{Bound, RangeBounds};

use wsk_sys::*;

use crate::buf::Buf;
use crate::{Error, Result};

/// A buffer an operation can send from: owned memory described by an MDL chain.
///
/// The bytes of the buffer start [`mdl_offset`](IoBuf::mdl_offset) bytes into the chain
/// that starts at [`mdl`](IoBuf::mdl); [`bytes_total`](IoBuf::bytes_total) bytes are
/// described, of which the first [`bytes_init`](IoBuf::bytes_init) hold data (what a send
/// transmits; a receive writes after them).
///
/// # Safety
/// Implementing this trait promises, for every value:
/// - `mdl()` is the first MDL of a chain (linked by `Next`, ending with null) of valid MDLs
///   describing memory that is resident — built for non-paged pool
///   (`MmBuildMdlForNonPagedPool`) or locked (`MmProbeAndLockPages`) — and usable at
///   DISPATCH_LEVEL, with at least `mdl_offset() + bytes_total()` bytes in total
///   (`ByteCount` summed along the chain). It may be null only when `bytes_total()` is 0
///   (operations refuse such a value without reading the MDL);
/// - the MDLs and that memory stay valid and resident, and are neither freed nor (except
///   through the provider, for a receive) written, for as long as the value exists — also
///   after it is moved: the provider uses them while the operation owns the value, which
///   it moves;
/// - `bytes_init() <= bytes_total() <= u32::MAX`, and the methods' results change only
///   through `&mut self` methods;
/// - dropping the value is allowed at IRQL <= DISPATCH_LEVEL, from any thread (an operation
///   abandoned in flight drops it from its completion routine).
///
/// A type of at most 8 machine words (and word-aligned) is held inline by an operation;
/// a larger one is refused at compile time (box its contents).
pub unsafe trait IoBuf: Send + Unpin + 'static {
    /// The first MDL of the chain describing the buffer's memory.
    fn mdl(&self) -> PMDL;

    /// Where the buffer's bytes start, in bytes from the start of the chain (what the first
    /// MDL describes).
    fn mdl_offset(&self) -> usize;

    /// How many bytes, from the start, hold data: what a send transmits.
    fn bytes_init(&self) -> usize;

    /// How many bytes the buffer describes (its capacity).
    fn bytes_total(&self) -> usize;

    /// A memoryless value (`bytes_total() == 0`), handed back in place of the buffer by an
    /// operation that could not hand the buffer back: one waited for above APC_LEVEL while
    /// in flight is cancelled, and its buffer is dropped when the completion arrives (see
    /// [`Op::wait`](crate::Op::wait)). Operations refuse it.
    fn stand_in() -> Self
    where
        Self: Sized;

    /// The sub-range `range` of the buffer, owning it: [`Slice::into_inner`] gives the
    /// whole buffer back. The range is in bytes of the buffer; it must lie within
    /// `bytes_total()` and start no later than `bytes_init()` (so that what a receive into
    /// the slice writes extends the buffer's data without a gap). Otherwise it fails with
    /// [`Error::INVALID_BUFFER_SIZE`], handing the buffer back.
    ///
    /// A send from the slice transmits its data bytes (those of the range below
    /// `bytes_init()`); a receive into it writes after them, up to the range's end.
    fn slice(
        self,
        range: impl RangeBounds<usize>,
    ) -> core::result::Result<Slice<Self>, (Error, Self)>
    where
        Self: Sized,
    {
        let total = self.bytes_total();
        let begin = match range.start_bound() {
            Bound::Included(&n) => Some(n),
            Bound::Excluded(&n) => n.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.checked_add(1),
            Bound::Excluded(&n) => Some(n),
            Bound::Unbounded => Some(total),
        };
        match (begin, end) {
            (Some(begin), Some(end))
                if begin <= end
                    && end <= total
                    && end <= u32::MAX as usize
                    && begin <= self.bytes_init() =>
            {
                Ok(Slice {
                    buf: self,
                    begin: begin as u32,
                    end: end as u32,
                })
            }
            _ => Err((Error::INVALID_BUFFER_SIZE, self)),
        }
    }
}

/// A buffer an operation can receive into: the provider writes after its data bytes.
///
/// # Safety
/// As for [`IoBuf`], and: the memory the chain describes from `mdl_offset() + bytes_init()`
/// to `mdl_offset() + bytes_total()` may be written by the provider while an operation
/// holds the value (locked for write access, not read or written by anyone else meanwhile).
pub unsafe trait IoBufMut: IoBuf {
    /// Records that the first `count` bytes hold data (no effect when it is not more than
    /// [`bytes_init`](IoBuf::bytes_init)).
    ///
    /// # Safety
    /// `count <= bytes_total()`, and the first `count` bytes must have been written.
    unsafe fn set_init(&mut self, count: usize);
}

// SAFETY: a `Buf`'s MDL describes its whole capacity of non-paged pool or locked pages, which
// it owns and which do not move with it; `len <= capacity <= u32::MAX`; the memoryless
// stand-in has capacity 0; a `Buf` may be dropped at DISPATCH_LEVEL (see its documentation).
unsafe impl IoBuf for Buf {
    #[inline]
    fn mdl(&self) -> PMDL {
        Buf::mdl(self)
    }

    #[inline]
    fn mdl_offset(&self) -> usize {
        0
    }

    #[inline]
    fn bytes_init(&self) -> usize {
        self.len()
    }

    #[inline]
    fn bytes_total(&self) -> usize {
        self.capacity()
    }

    fn stand_in() -> Buf {
        Buf::released()
    }
}

// SAFETY: the spare capacity is owned by the buffer and written by nobody else.
unsafe impl IoBufMut for Buf {
    #[inline]
    unsafe fn set_init(&mut self, count: usize) {
        if count > self.len() {
            // SAFETY: forwarded from the caller.
            unsafe { self.set_len(count) };
        }
    }
}

/// A sub-range of a buffer, made by [`IoBuf::slice`], owning the buffer.
///
/// Sent, it transmits the buffer's data bytes within the range; received into, it writes
/// after them up to the range's end, and the buffer's data grows accordingly. Its bytes are
/// reachable through `Deref` when the buffer's are (for a [`Buf`]: `&buf[begin..]` up to
/// the data's end or the range's end). [`into_inner`](Slice::into_inner) gives the whole
/// buffer back. Ownership, IRQL and pool are the buffer's.
///
/// ```
/// # use wsk::{Buf, ConnectionSocket, IoBuf};
/// async fn send_header(socket: &ConnectionSocket, packet: Buf) -> wsk::Result<Buf> {
///     let header = packet.slice(0..20).map_err(|(error, _)| error)?;
///     let (sent, header) = socket.send(header).await;
///     sent?;
///     Ok(header.into_inner())
/// }
/// ```
///
/// A slice owns its buffer, so neither can be touched while an operation holds the slice:
///
/// ```compile_fail,E0382
/// # use wsk::{Buf, ConnectionSocket, IoBuf};
/// fn send_half(socket: &ConnectionSocket, buf: Buf) {
///     let op = socket.send(buf.slice(0..4).unwrap());
///     let first = buf[0]; // the buffer went into the slice, and the slice into the operation
///     drop(op);
/// }
/// ```
///
/// ```compile_fail,E0382
/// # use wsk::{Buf, ConnectionSocket, IoBuf};
/// fn receive_into_part(socket: &ConnectionSocket, buf: Buf) {
///     let slice = buf.slice(0..4).unwrap();
///     let op = socket.receive(slice);
///     let first = slice[0]; // the provider may be writing it
///     drop(op);
/// }
/// ```
///
/// # Invariants
/// `begin <= end <= buf.bytes_total()` and `begin <= buf.bytes_init()` (data bytes only
/// grow while the slice owns the buffer). Both fit a `u32` (a buffer describes at most
/// `u32::MAX` bytes), which keeps a slice one word larger than its buffer.
#[derive(Debug)]
pub struct Slice<T> {
    buf: T,
    begin: u32,
    end: u32,
}

impl<T> Slice<T> {
    /// Where the range starts in the buffer.
    #[must_use]
    pub fn begin(&self) -> usize {
        self.begin as usize
    }

    /// Where the range ends in the buffer (exclusive).
    #[must_use]
    pub fn end(&self) -> usize {
        self.end as usize
    }

    /// The whole buffer.
    #[must_use]
    pub fn get_ref(&self) -> &T {
        &self.buf
    }

    /// Gives the whole buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

// SAFETY: the range lies within the buffer's described bytes (invariant), so the chain
// describes `mdl_offset() + bytes_total()` bytes; the memory is the buffer's, which the
// slice owns; `bytes_init() <= bytes_total()` by the clamp below.
unsafe impl<T: IoBuf> IoBuf for Slice<T> {
    #[inline]
    fn mdl(&self) -> PMDL {
        self.buf.mdl()
    }

    #[inline]
    fn mdl_offset(&self) -> usize {
        self.buf.mdl_offset() + self.begin as usize
    }

    #[inline]
    fn bytes_init(&self) -> usize {
        self.buf
            .bytes_init()
            .clamp(self.begin as usize, self.end as usize)
            - self.begin as usize
    }

    #[inline]
    fn bytes_total(&self) -> usize {
        self.end as usize - self.begin as usize
    }

    fn stand_in() -> Slice<T> {
        Slice {
            buf: T::stand_in(),
            begin: 0,
            end: 0,
        }
    }
}

// SAFETY: the slice's spare bytes are the buffer's spare bytes within the range (data starts
// no later than `begin`), which the buffer lets the provider write.
unsafe impl<T: IoBufMut> IoBufMut for Slice<T> {
    #[inline]
    unsafe fn set_init(&mut self, count: usize) {
        // SAFETY: `begin <= buf.bytes_init()` (invariant), so the buffer's first
        // `begin + count` bytes are its data and the `count` bytes written after `begin`;
        // `count <= end - begin` keeps it within the buffer.
        unsafe { self.buf.set_init(self.begin as usize + count) };
    }
}

impl<T: core::ops::Deref<Target = [u8]>> core::ops::Deref for Slice<T> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let data = &*self.buf;
        let end = (self.end as usize).min(data.len());
        data.get(self.begin as usize..end).unwrap_or(&[])
    }
}

impl<T: core::ops::DerefMut<Target = [u8]>> core::ops::DerefMut for Slice<T> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let (begin, end) = (self.begin as usize, self.end as usize);
        let data = &mut *self.buf;
        let end = end.min(data.len());
        data.get_mut(begin..end).unwrap_or(&mut [])
    }
}

/// A `WSK_BUF` over the data bytes of `buf` from `start` (what a send transmits). Fails with
/// [`Error::INVALID_BUFFER_SIZE`] when there are none, or the offset does not fit a `ULONG`.
#[inline]
pub(crate) fn wsk_buf_of_data<B: IoBuf>(buf: &B, start: usize) -> Result<WSK_BUF> {
    let init = buf.bytes_init();
    if init <= start || buf.bytes_total() == 0 {
        return Err(Error::INVALID_BUFFER_SIZE);
    }
    Ok(WSK_BUF {
        Mdl: buf.mdl(),
        Offset: offset_of(buf, start)?,
        Length: (init - start) as SIZE_T,
    })
}

/// A `WSK_BUF` over all the data bytes of `buf`, empty ones included (a datagram may be
/// empty); fails only for the memoryless stand-in or an offset beyond a `ULONG`.
#[inline]
pub(crate) fn wsk_buf_of_datagram<B: IoBuf>(buf: &B) -> Result<WSK_BUF> {
    if buf.bytes_total() == 0 {
        return Err(Error::INVALID_BUFFER_SIZE);
    }
    Ok(WSK_BUF {
        Mdl: buf.mdl(),
        Offset: offset_of(buf, 0)?,
        Length: buf.bytes_init() as SIZE_T,
    })
}

/// A `WSK_BUF` over at most `max` bytes after the data of `buf` (what a receive fills).
/// Fails with [`Error::INVALID_BUFFER_SIZE`] when there is no room.
#[inline]
pub(crate) fn wsk_buf_of_spare<B: IoBufMut>(buf: &B, max: usize) -> Result<WSK_BUF> {
    let init = buf.bytes_init();
    let spare = buf.bytes_total() - init;
    if spare == 0 {
        return Err(Error::INVALID_BUFFER_SIZE);
    }
    Ok(WSK_BUF {
        Mdl: buf.mdl(),
        Offset: offset_of(buf, init)?,
        Length: spare.min(max) as SIZE_T,
    })
}

#[inline]
fn offset_of<B: IoBuf>(buf: &B, start: usize) -> Result<ULONG> {
    ULONG::try_from(buf.mdl_offset() + start).map_err(|_| Error::INVALID_BUFFER_SIZE)
}
