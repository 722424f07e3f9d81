//! The one path from an IRP's completion into Rust: completion blocks, their completion
//! routine, and the per-socket cache that makes steady-state I/O allocation-free.
//!
//! A [`Block`] holds everything a request needs while the provider owns it: the IRP, the
//! `WSK_BUF` and addresses the provider reads or writes, the buffers the request moved in,
//! the waker of the future and an event for blocking waits. It is reference counted: the
//! issuing operation holds one reference, the in-flight IRP another, released by the
//! completion routine. Whoever releases last recycles the block into its socket's
//! [`BlockCache`] (or frees it), dropping what the request still held. So memory the
//! provider may touch is never freed before the completion has arrived, whatever the order
//! in which the future is dropped, the socket closed, or the completion delivered.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering, fence};

use atomic_waker::AtomicWaker;
use wsk_sys::*;

use crate::Result;
use crate::addr::RawAddr;
use crate::buf::{Buf, BufList};
use crate::client::{ClientCore, ClientRequest};
use crate::heap::try_box;
use crate::irp::Irp;
use crate::shared::Shared;
use crate::socket::SocketCore;

/// What an in-flight request owns until its completion: released (dropped) when the block
/// is recycled unless the operation took it back.
#[derive(Default)]
pub(crate) enum Held {
    /// Nothing.
    #[default]
    None,
    /// A data buffer the provider reads or writes.
    Buf(Buf),
    /// Several buffers (vectored send, send-messages).
    List(BufList),
    /// The core of a socket being created or accepted; if the operation is dropped before
    /// the completion arrives, the new socket is closed when it does.
    NewSocket(Shared<SocketCore>),
    /// A name resolution: the client whose provider owns the result list (freed if the
    /// operation is dropped before it takes the list) and the UTF-16 names the provider reads.
    Resolution(Shared<ClientCore>, Vec<u16>),
}

/// Fields a request fills for the provider to read or write during the call.
pub(crate) struct Scratch {
    pub(crate) wsk_buf: WSK_BUF,
    pub(crate) local: RawAddr,
    pub(crate) remote: RawAddr,
    pub(crate) control_length: ULONG,
    pub(crate) control_flags: ULONG,
    pub(crate) option: [u8; 16],
    pub(crate) option_returned: SIZE_T,
    pub(crate) node_name: UNICODE_STRING,
    pub(crate) service_name: UNICODE_STRING,
    pub(crate) hints: ADDRINFOEXW,
    pub(crate) result: PADDRINFOEXW,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            wsk_buf: WSK_BUF::default(),
            local: RawAddr::empty(),
            remote: RawAddr::empty(),
            control_length: 0,
            control_flags: 0,
            option: [0; 16],
            option_returned: 0,
            node_name: UNICODE_STRING::default(),
            service_name: UNICODE_STRING::default(),
            hints: ADDRINFOEXW::default(),
            result: core::ptr::null_mut(),
        }
    }
}

/// A completion block; see the module documentation.
///
/// # Invariants
/// - `refs` counts the [`BlockRef`]s plus one while the IRP is in flight.
/// - While `refs > 1` and `done` is false, the provider may read `scratch` and the memory
///   `held` owns, and the completion routine may write `status`, `information` and touch
///   `event`/`waker`; the issuing operation touches only `done`, `waker`, `wait_signal`.
/// - Once `done` is true (Acquire), the holder of a [`BlockRef`] has exclusive access to every
///   field except `refs`.
pub(crate) struct Block {
    refs: AtomicU32,
    done: AtomicBool,
    wait_signal: AtomicBool,
    waker: AtomicWaker,
    event: UnsafeCell<KEVENT>,
    irp: UnsafeCell<Irp>,
    status: UnsafeCell<NTSTATUS>,
    information: UnsafeCell<usize>,
    pub(crate) scratch: UnsafeCell<Scratch>,
    pub(crate) held: UnsafeCell<Held>,
    home: UnsafeCell<Option<Shared<SocketCore>>>,
    client_request: UnsafeCell<Option<ClientRequest>>,
}

/// One counted reference to a [`Block`].
pub(crate) struct BlockRef {
    ptr: NonNull<Block>,
}

// SAFETY: a block is shared between the issuing thread and the completion routine under the
// protocol documented on `Block`; everything in it is `Send`.
unsafe impl Send for BlockRef {}
// SAFETY: shared references only use the atomics.
unsafe impl Sync for BlockRef {}

impl BlockRef {
    /// A new block with its own IRP. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn allocate() -> Result<BlockRef> {
        let irp = Irp::new()?;
        let block = try_box(Block {
            refs: AtomicU32::new(1),
            done: AtomicBool::new(false),
            wait_signal: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            event: UnsafeCell::new(KEVENT::default()),
            irp: UnsafeCell::new(irp),
            status: UnsafeCell::new(STATUS_PENDING),
            information: UnsafeCell::new(0),
            scratch: UnsafeCell::new(Scratch::new()),
            held: UnsafeCell::new(Held::None),
            home: UnsafeCell::new(None),
            client_request: UnsafeCell::new(None),
        })?;
        let ptr = NonNull::from(Box::leak(block));
        // SAFETY: the event lives in the block, in non-paged memory, for the block's life.
        unsafe { KeInitializeEvent((*ptr.as_ptr()).event.get(), NotificationEvent, FALSE) };
        Ok(BlockRef { ptr })
    }

    /// A block from `home`'s cache, or a new one; recycled into `home` when released.
    pub(crate) fn for_socket(home: &Shared<SocketCore>) -> Result<BlockRef> {
        let block = match home.cache().take() {
            Some(block) => block,
            None => BlockRef::allocate()?,
        };
        // SAFETY: a fresh or cached block has a single reference: exclusive access.
        unsafe { *block.get().home.get() = Some(home.clone()) };
        Ok(block)
    }

    fn get(&self) -> &Block {
        // SAFETY: the block is live while a reference is held.
        unsafe { self.ptr.as_ref() }
    }

    /// The scratch fields, for filling before the request is issued.
    ///
    /// # Safety
    /// No request may be in flight on this block (exclusive access).
    pub(crate) unsafe fn scratch(&mut self) -> &mut Scratch {
        // SAFETY: forwarded exclusivity.
        unsafe { &mut *self.get().scratch.get() }
    }

    /// Pointer to the scratch fields, valid while the block is.
    pub(crate) fn scratch_ptr(&self) -> *mut Scratch {
        self.get().scratch.get()
    }

    /// Counts the request as in flight on its client until the block is recycled, so the
    /// client's shutdown waits for it.
    ///
    /// # Safety
    /// No request may be in flight on this block.
    pub(crate) unsafe fn set_client_request(&mut self, request: ClientRequest) {
        // SAFETY: forwarded exclusivity.
        unsafe { *self.get().client_request.get() = Some(request) };
    }

    /// Pointer to what the request holds, valid while the block is.
    pub(crate) fn held_ptr(&self) -> *mut Held {
        self.get().held.get()
    }

    /// What the request holds.
    ///
    /// # Safety
    /// No request may be in flight on this block, or it must be done.
    pub(crate) unsafe fn held(&mut self) -> &mut Held {
        // SAFETY: forwarded exclusivity.
        unsafe { &mut *self.get().held.get() }
    }

    /// Readies the block's IRP for a request: reuses it, points its next stack location at
    /// [`complete`] with this block as context, and counts the in-flight reference. Returns
    /// the IRP to pass to the WSK function, which **must** then be called exactly once.
    ///
    /// # Safety
    /// No request may be in flight on this block.
    pub(crate) unsafe fn arm(&mut self, wait_signal: bool) -> PIRP {
        let block = self.get();
        // SAFETY: exclusive access (no request in flight).
        unsafe {
            let irp = &mut *block.irp.get();
            irp.reuse();
            KeClearEvent(block.event.get());
            *block.status.get() = STATUS_PENDING;
            *block.information.get() = 0;
            block.done.store(false, Ordering::Relaxed);
            block.wait_signal.store(wait_signal, Ordering::Relaxed);
            block.refs.fetch_add(1, Ordering::Relaxed);
            IoSetCompletionRoutine(
                irp.as_ptr(),
                Some(complete),
                self.ptr.as_ptr().cast(),
                true,
                true,
                true,
            );
            irp.as_ptr()
        }
    }

    /// Whether the completion has arrived.
    pub(crate) fn is_done(&self) -> bool {
        self.get().done.load(Ordering::Acquire)
    }

    /// Registers the waker to wake when the completion arrives; returns whether it already has.
    pub(crate) fn register(&self, waker: &core::task::Waker) -> bool {
        self.get().waker.register(waker);
        self.is_done()
    }

    /// Blocks the calling thread until the completion arrives, or until `timeout` (100 ns
    /// units, negative = relative) passes; returns whether it arrived.
    ///
    /// IRQL <= APC_LEVEL (checked by the callers).
    pub(crate) fn block_until_done(&self, timeout: Option<i64>) -> bool {
        let block = self.get();
        block.wait_signal.store(true, Ordering::SeqCst);
        if block.done.load(Ordering::SeqCst) {
            return true;
        }
        let mut interval = LARGE_INTEGER {
            QuadPart: timeout.unwrap_or(0),
        };
        let timeout_ptr = if timeout.is_some() {
            &raw mut interval
        } else {
            core::ptr::null_mut()
        };
        // SAFETY: the event lives in the block, which this reference keeps alive; the IRQL
        // allows waiting (callers check).
        let status = unsafe {
            KeWaitForSingleObject(
                block.event.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                timeout_ptr,
            )
        };
        status == STATUS_SUCCESS || block.done.load(Ordering::Acquire)
    }

    /// Requests cancellation of the in-flight IRP (`IoCancelIrp`). Harmless when it has
    /// completed. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn cancel(&self) {
        // SAFETY: the IRP lives as long as the block, which this reference keeps alive; the
        // IRP is either in flight or completed and not yet reused (reuse needs exclusivity).
        unsafe { IoCancelIrp((*self.get().irp.get()).as_ptr()) };
    }

    /// The final status and information of the completed request.
    ///
    /// # Safety
    /// The request must be done ([`BlockRef::is_done`]).
    pub(crate) unsafe fn result(&self) -> (NTSTATUS, usize) {
        // SAFETY: after `done`, the completion routine no longer writes these.
        unsafe { (*self.get().status.get(), *self.get().information.get()) }
    }
}

impl Drop for BlockRef {
    fn drop(&mut self) {
        release(self.ptr);
    }
}

/// Drops one reference; the last one recycles or frees the block.
fn release(ptr: NonNull<Block>) {
    // SAFETY: the caller held a reference, so the block is live.
    let previous = unsafe { ptr.as_ref() }.refs.fetch_sub(1, Ordering::Release);
    if previous != 1 {
        return;
    }
    fence(Ordering::Acquire);
    // SAFETY: that was the last reference: exclusive access. The IRP is not in flight (the
    // in-flight reference is released only by the completion routine).
    let home = unsafe {
        let block = &mut *ptr.as_ptr();
        let (status, information) = (*block.status.get_mut(), *block.information.get_mut());
        match core::mem::take(block.held.get_mut()) {
            Held::NewSocket(core) => crate::socket::adopt_orphan(core, status, information),
            Held::Resolution(client, _names) => {
                let list =
                    core::mem::replace(&mut block.scratch.get_mut().result, core::ptr::null_mut());
                if NT_SUCCESS(status) {
                    crate::dns::free_address_info(&client, list);
                }
            }
            _ => {}
        }
        drop(block.client_request.get_mut().take());
        block.home.get_mut().take()
    };
    let orphan = match home {
        Some(home) => {
            let rejected = home.cache().put(BlockRef { ptr });
            drop(home);
            rejected
        }
        None => Some(BlockRef { ptr }),
    };
    if let Some(block) = orphan {
        let block = core::mem::ManuallyDrop::new(block);
        // SAFETY: the block came from `try_box` and nothing references it any more.
        drop(unsafe { Box::from_raw(block.ptr.as_ptr()) });
    }
}

/// The completion routine of every request this crate issues. Runs at IRQL <= DISPATCH_LEVEL
/// and always returns `STATUS_MORE_PROCESSING_REQUIRED`: the IRP belongs to the block, and
/// the I/O manager must stop processing it.
unsafe extern "system" fn complete(_device: PDEVICE_OBJECT, irp: PIRP, context: PVOID) -> NTSTATUS {
    let ptr = NonNull::new(context.cast::<Block>()).expect("completion context is the block");
    // SAFETY: the in-flight reference keeps the block alive until `release` below; the
    // invariant gives the routine the status fields until it sets `done`.
    unsafe {
        let block = ptr.as_ref();
        *block.status.get() = (*irp).IoStatus.u.Status;
        *block.information.get() = (*irp).IoStatus.Information as usize;
        block.done.store(true, Ordering::SeqCst);
        if block.wait_signal.load(Ordering::SeqCst) {
            KeSetEvent(block.event.get(), IO_NETWORK_INCREMENT, FALSE);
        }
        block.waker.wake();
    }
    release(ptr);
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Idle blocks of one socket, reused by its next requests.
///
/// A fixed number of lock-free slots: taking or returning a block is one atomic exchange, at
/// any IRQL <= DISPATCH_LEVEL. Blocks in the cache hold no reference to the socket (that
/// would be a cycle); they are freed with it.
pub(crate) struct BlockCache {
    slots: [AtomicPtr<Block>; CACHED_BLOCKS],
}

/// How many idle blocks a socket keeps: enough for a send and a receive in flight at once,
/// plus a close, with room to spare.
const CACHED_BLOCKS: usize = 4;

impl BlockCache {
    pub(crate) const fn new() -> BlockCache {
        BlockCache {
            slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; CACHED_BLOCKS],
        }
    }

    fn take(&self) -> Option<BlockRef> {
        self.slots.iter().find_map(|slot| {
            let ptr = slot.swap(core::ptr::null_mut(), Ordering::Acquire);
            NonNull::new(ptr).map(|ptr| {
                // SAFETY: cached blocks have no references; this one is ours now.
                unsafe { ptr.as_ref() }.refs.store(1, Ordering::Relaxed);
                BlockRef { ptr }
            })
        })
    }

    /// Stores an unreferenced block; gives it back when the cache is full.
    fn put(&self, block: BlockRef) -> Option<BlockRef> {
        let block = core::mem::ManuallyDrop::new(block);
        for slot in &self.slots {
            if slot
                .compare_exchange(
                    core::ptr::null_mut(),
                    block.ptr.as_ptr(),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return None;
            }
        }
        Some(core::mem::ManuallyDrop::into_inner(block))
    }
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some(ptr) = NonNull::new(*slot.get_mut()) {
                // SAFETY: a cached block has no references and came from `try_box`.
                drop(unsafe { Box::from_raw(ptr.as_ptr()) });
            }
        }
    }
}
