//! The one path from an IRP's completion into Rust: completion blocks, their completion
//! routine, and the per-owner [`BlockPool`] that makes steady-state I/O allocation-free.
//!
//! A [`Block`] holds everything a request needs while the provider owns it: the IRP, the
//! `WSK_BUF` and addresses the provider reads or writes, the buffers the request moved in,
//! the waker of the future and an event for blocking waits. It is reference counted: the
//! issuing operation holds one reference, the in-flight IRP another, released by the
//! completion routine. Whoever releases last returns the block to its owner's pool, dropping
//! what the request still held. So memory the provider may touch is never freed before the
//! completion has arrived, whatever the order in which the future is dropped, the socket
//! closed, or the completion delivered.
//!
//! Every block belongs, for its whole life, to the pool of one owner — a socket (its
//! requests) or the client (socket creation, name resolution) — and is freed only with that
//! owner. So the owner can always find its requests in flight: closing a socket cancels them,
//! and the client's shutdown cancels its own and frees the results nobody collected.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, Ordering, fence};

use atomic_waker::AtomicWaker;
use wsk_sys::*;
// With either kernel base, typed as the parameters that take them.
use wsk_sys::typed::{FALSE, IO_NETWORK_INCREMENT, KernelMode};

use super::callback::CallbackScope;
use super::client::ClientCore;
use super::held_buf::HeldBuf;
use super::shared::Shared;
use super::socket::{NewSocket, SocketCore, complete_unissued};
use crate::Result;
use crate::addr::RawAddr;
use crate::buf::{Buf, BufList};
use crate::heap::try_box;
use crate::irp::Irp;

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
    /// A buffer of any [`IoBuf`](crate::IoBuf) type, stored inline (generic sends and
    /// receives): taken back as its type by the request that stored it.
    Io(HeldBuf),
    /// A socket being created or accepted: attached to its client by the completion routine
    /// (so the client's shutdown closes it even if nobody collects it), closed when dropped
    /// uncollected.
    NewSocket(NewSocket),
    /// The input then the output of a socket or client control (`WskControlSocket`,
    /// `WskControlClient`) or a reverse lookup (`WskGetNameInfo`): the provider reads and
    /// writes it until the completion.
    Bytes(Vec<u8>),
    /// A data buffer and control information (`WskSendEx`, `WskReceiveEx`).
    BufAndBytes(Buf, Vec<u8>),
    /// A name resolution: the UTF-16 names the provider reads. The result list goes to
    /// [`Block::address_list`] at completion.
    Resolution {
        /// Node and service names, read by the provider until the completion.
        _names: Vec<u16>,
    },
}

impl Held {
    /// Stores `value` in the slot. An empty slot (the usual case: a block comes out of its
    /// pool holding nothing) is overwritten without running the drop glue of what it held;
    /// anything else it still holds is dropped first.
    #[inline(always)]
    pub(crate) fn store(&mut self, value: Held) {
        if let Held::None = self {
            // SAFETY: `Held::None` owns nothing, so overwriting it without a drop leaks
            // nothing; `self` is a valid, exclusive place.
            unsafe { core::ptr::write(self, value) };
        } else {
            *self = value;
        }
    }

    /// Takes out the buffer a generic request stored ([`Held::Io`]), leaving [`Held::None`]:
    /// only the buffer's bytes are moved, not the whole slot. `None` if it holds no buffer.
    ///
    /// # Safety
    /// If it holds [`Held::Io`], the value must be a `T`.
    #[inline]
    pub(crate) unsafe fn take_io<T>(&mut self) -> Option<T> {
        let Held::Io(held) = self else {
            return None;
        };
        // SAFETY: a `T` by the caller's contract; the slot is then overwritten without being
        // dropped, so the value is moved out exactly once.
        unsafe {
            let value = held.read::<T>();
            core::ptr::write(self, Held::None);
            Some(value)
        }
    }
}

/// Who a block belongs to while a request uses it; the reference keeps the owner (and so the
/// pool the block lives in) alive.
#[derive(Default)]
pub(crate) enum Owner {
    /// Idle in its pool.
    #[default]
    Idle,
    /// A request on this socket.
    Socket {
        /// Keeps the socket, and its pool, alive.
        _home: Shared<SocketCore>,
    },
    /// A client-level request (socket creation, name resolution).
    Client(Shared<ClientCore>),
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
    /// The inspect ID of `WskInspectComplete`.
    pub(crate) inspect_id: WSK_INSPECT_ID,
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
            inspect_id: WSK_INSPECT_ID::default(),
        }
    }
}

/// A completion block; see the module documentation.
///
/// # Invariants
/// - The block lives in the [`BlockPool`] of one owner from its allocation until that pool is
///   dropped (or trims it, with exclusive access: [`BlockPool::trim`]); `next_in_pool` does
///   not change after it was published, except by that trim.
/// - `pool_state` is `OWNED` while a [`BlockRef`] exists; `owner` then holds a reference to the
///   pool's owner, so the pool (and the block) outlive every reference.
/// - Counted protocol (`frame` is [`FRAME_NONE`]): `refs` counts the [`BlockRef`]s plus one
///   while the IRP is in flight. While `refs > 1` and `done` is false, the provider may read
///   `scratch` and the memory `held` owns — or, for a request waited for in the frame that
///   issued it ([`Issue::start_waited`](crate::op::issue::Issue::start_waited)), the memory
///   the request kept in itself, which that frame holds until `done` — and the completion
///   routine may write `status`, `information` and `held`, and touch `event`/`waker`; the
///   issuing operation touches only the atomics. Once `done` is true (Acquire), the holder
///   of a [`BlockRef`] has exclusive access to every field except the atomics.
/// - Frame protocol ([`BlockRef::arm_in_frame`]; `frame` is not [`FRAME_NONE`]): `refs` is 1,
///   the one [`BlockRef`] held by the waiting frame. Until `frame` shows [`FRAME_DONE`]
///   (Acquire), the provider may read `scratch` and the memory the request kept in itself,
///   and the completion routine writes `in_flight`; `status` and `information` are not used
///   (the result stays in the IRP). After its swap of `frame` the routine touches nothing of
///   the block but the event, and that only when the swap showed
///   [`FRAME_WAITER`] — a waiter that sets that flag without finding [`FRAME_DONE`] lets the
///   block go only after its wait consumed the signal.
pub(crate) struct Block {
    refs: AtomicU32,
    pool_state: AtomicU8,
    in_flight: AtomicBool,
    done: AtomicBool,
    wait_signal: AtomicBool,
    /// Cancels running `IoCancelIrp` on the IRP in flight ([`Block::cancel_irp_in_flight`]):
    /// a caller's IRP leaves the block only once none can still be reading it.
    cancelling: AtomicU32,
    /// A blocking wait returned satisfied by the event, which (a synchronization event) that
    /// reset: the next arm has nothing to clear.
    signal_consumed: AtomicBool,
    client_request_open: AtomicBool,
    /// A waker was registered for the request in flight: the completion routine wakes
    /// `waker` only then (a blocking wait registers none, and pays no wake). Set before the
    /// registration, reset by `arm`; with `done`, both SeqCst: a registration that the
    /// routine does not see sees `done` (see [`BlockRef::register`]).
    waker_registered: AtomicBool,
    waker: AtomicWaker,
    /// The request in flight is waited for in the frame that issued it, under the frame
    /// protocol ([`BlockRef::arm_in_frame`]): [`FRAME_NONE`] for every other request; else
    /// [`FRAME_ISSUED`], with [`FRAME_WAITER`] or-ed in by the waiter about to block, and
    /// [`FRAME_DONE`] swapped in by the completion routine.
    frame: AtomicU8,
    event: UnsafeCell<KEVENT>,
    irp: UnsafeCell<Irp>,
    /// The block's own IRP while a caller's IRP is installed in `irp` for one request
    /// ([`BlockRef::install_irp`]); put back when the request is collected, or when the block
    /// is released (dropping the caller's IRP, whose operation was abandoned).
    parked_irp: UnsafeCell<Option<Irp>>,
    status: UnsafeCell<NTSTATUS>,
    information: UnsafeCell<usize>,
    pub(crate) scratch: UnsafeCell<Scratch>,
    pub(crate) held: UnsafeCell<Held>,
    /// A name-resolution result the provider returned and nobody has freed yet.
    address_list: AtomicPtr<ADDRINFOEXW>,
    owner: UnsafeCell<Owner>,
    /// The request's timer (a deadline, or a sleep's delay) and its DPC: see
    /// [`BlockRef::set_timer`].
    timer: UnsafeCell<Timer>,
    /// [`TIMER_IDLE`], or what the set timer does when it expires.
    timer_state: AtomicU8,
    /// The deadline's DPC ran before the completion: a cancelled request timed out.
    timed_out: AtomicBool,
    next_in_pool: *const Block,
    /// The socket whose pool this block is in (null in the client's pool): what
    /// [`BlockRef::keep_home_alive`] takes a reference to.
    home: *const SocketCore,
}

const IDLE: u8 = 0;
const OWNED: u8 = 1;

/// The request in flight uses the counted protocol (`refs`, `done`, `wait_signal`).
const FRAME_NONE: u8 = 0;
/// A request under the frame protocol was issued.
const FRAME_ISSUED: u8 = 1;
/// Its waiter is about to block on the event: the completion routine signals it.
const FRAME_WAITER: u8 = 2;
/// Its completion routine is finished with the block (but for the signal to a waiter).
const FRAME_DONE: u8 = 4;

/// No timer set for the request in flight.
const TIMER_IDLE: u8 = 0;
/// A deadline is set: its expiry cancels the IRP (`IoCancelIrp`).
const TIMER_CANCELS: u8 = 1;
/// A sleep's delay is set: its expiry completes the IRP, which no provider holds.
const TIMER_COMPLETES: u8 = 2;
/// A sleep's timer is being set (`KeSetTimer` in progress): a cancel now cannot stop it yet.
const TIMER_SLEEP_SETTING: u8 = 3;
/// A cancel came while the sleep's timer was being set: the setter carries it out.
const TIMER_SLEEP_SETTING_CANCELLED: u8 = 4;
/// The timer expired: its DPC runs (or ran) and does what it must; nobody stops the timer.
const TIMER_EXPIRED: u8 = 5;

/// What a timer does when it expires (see [`BlockRef::set_timer`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum TimerAction {
    /// Cancel the request in flight (`IoCancelIrp`): a deadline.
    Cancel,
    /// Complete the armed IRP, given to no provider, with `STATUS_SUCCESS`: a sleep.
    Complete,
}

/// A block's kernel timer and DPC, initialised on first use (`KeInitializeTimerEx`,
/// `KeInitializeDpc`): a block never given a deadline costs neither call.
struct Timer {
    ktimer: KTIMER,
    dpc: KDPC,
    initialised: bool,
    /// What the DPC does: written when the timer is set, read by the DPC only.
    action: TimerAction,
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
    /// A block from `pool` (an idle one, or a new one added to it). IRQL <= DISPATCH_LEVEL.
    #[inline]
    fn from_pool(pool: &BlockPool, home: *const SocketCore, owner: Owner) -> Result<BlockRef> {
        let ptr = match pool.take() {
            Some(ptr) => ptr,
            None => pool.grow(home)?,
        };
        // SAFETY: taken from the pool (IDLE -> OWNED): no reference exists, so its request
        // fields are ours. The block is still in the pool's list, whose walkers read its link
        // and state at any moment: only the fields written here are touched, never the whole
        // block through one `&mut` (which would race with those reads). An idle block's owner
        // is `Owner::Idle` (`release` takes it before the block goes back), which owns
        // nothing: it is overwritten without drop glue.
        unsafe {
            let block = ptr.as_ptr();
            (*block).refs.store(1, Ordering::Relaxed);
            let owner_slot = (*block).owner.get();
            debug_assert!(matches!(*owner_slot, Owner::Idle));
            core::ptr::write(owner_slot, owner);
        }
        Ok(BlockRef { ptr })
    }

    /// A block for a request on `home`. IRQL <= DISPATCH_LEVEL.
    ///
    /// The block takes no reference to the socket: the operation using it holds one (every
    /// socket request keeps its socket) and releases the block first. Only an operation
    /// dropped with its request still in flight lends its reference to the block
    /// ([`BlockRef::keep_home_alive`]), for the completion routine's release.
    #[inline]
    pub(crate) fn for_socket(home: &Shared<SocketCore>) -> Result<BlockRef> {
        BlockRef::from_pool(home.blocks(), home.as_ptr(), Owner::Idle)
    }

    /// A block for a client-level request: counts the request as open on the client (its
    /// shutdown cancels it and waits for its completion); fails once the client is shutting
    /// down. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn for_client(client: &Shared<ClientCore>) -> Result<BlockRef> {
        client.begin_request()?;
        match BlockRef::from_pool(
            client.blocks(),
            core::ptr::null(),
            Owner::Client(client.clone()),
        ) {
            Ok(block) => {
                block
                    .get()
                    .client_request_open
                    .store(true, Ordering::Relaxed);
                Ok(block)
            }
            Err(error) => {
                client.end_request();
                Err(error)
            }
        }
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

    /// Makes the block keep its socket (and so its pool) alive until it is released: done
    /// when this reference goes while the completion routine still holds its own (the
    /// operation's reference to the socket may go right after).
    fn keep_home_alive(&mut self) {
        let block = self.get();
        // SAFETY: `home` is the socket whose pool holds the block, alive while the operation
        // holding this reference (which references it, and drops this reference first) is;
        // the new reference is made from the allocation's pointer. The owner field is this
        // reference holder's to write: the completion routine does not touch it for a socket
        // request, and the release that reads it comes after this reference is dropped
        // (Release/Acquire on `refs`).
        unsafe {
            let owner = block.owner.get();
            if matches!(*owner, Owner::Idle) {
                // `Owner::Idle` owns nothing: overwritten without drop glue.
                core::ptr::write(
                    owner,
                    Owner::Socket {
                        _home: Shared::clone_from_raw(block.home),
                    },
                );
            }
        }
    }

    /// Installs a caller's IRP for the next request on this block, parking the block's own;
    /// [`BlockRef::restore_irp`] puts it back. The caller's IRP then goes through `arm` and
    /// cancellation exactly as the block's own would.
    ///
    /// # Safety
    /// No request may be in flight on this block, and no caller's IRP installed already.
    pub(crate) unsafe fn install_irp(&mut self, irp: Irp) {
        let block = self.get();
        // SAFETY: exclusive access (no request in flight).
        unsafe {
            debug_assert!((*block.parked_irp.get()).is_none());
            let own = core::mem::replace(&mut *block.irp.get(), irp);
            *block.parked_irp.get() = Some(own);
        }
    }

    /// Whether a caller's IRP is installed for the request being started.
    pub(crate) fn has_caller_irp(&self) -> bool {
        // SAFETY: read by the holder of the reference between `start` and `arm`, when nothing
        // is in flight on the block and nobody else writes the field.
        unsafe { (*self.get().parked_irp.get()).is_some() }
    }

    /// Puts the block's own IRP back and returns the caller's one installed by
    /// [`BlockRef::install_irp`] (`None` if none was).
    ///
    /// # Safety
    /// No request may be in flight on this block, or it must be done.
    pub(crate) unsafe fn restore_irp(&mut self) -> Option<Irp> {
        // SAFETY: forwarded exclusivity.
        unsafe { self.get().restore_irp() }
    }

    /// Takes the name-resolution result the completion left, if nobody freed it.
    pub(crate) fn take_address_list(&self) -> PADDRINFOEXW {
        self.get()
            .address_list
            .swap(core::ptr::null_mut(), Ordering::AcqRel)
    }

    /// Gives back a result taken with [`BlockRef::take_address_list`] that could not be freed
    /// yet (above PASSIVE_LEVEL): it is freed at the next PASSIVE_LEVEL opportunity — the
    /// release of the block, its next resolution, or the client's teardown.
    pub(crate) fn return_address_list(&self, list: PADDRINFOEXW) {
        self.get().address_list.store(list, Ordering::Release);
    }

    /// Readies the block's IRP for a request: reuses it, points its next stack location at
    /// [`complete`] with this block as context, and counts the in-flight reference. Returns
    /// the IRP to pass to the WSK function, which **must** then be called exactly once.
    ///
    /// The event is signalled only for a waiter that announced itself
    /// ([`BlockRef::block_until_done`]): a request that completes before anyone blocks on it
    /// costs no `KeSetEvent`, and the next arm no `KeClearEvent`. The event is a
    /// synchronization event: the wait it satisfies resets it, so a wait that returned
    /// satisfied costs no `KeClearEvent` either; only a signal nobody consumed (the waiter saw
    /// the completion before waiting, or timed out) is cleared here.
    ///
    /// # Safety
    /// No request may be in flight on this block.
    pub(crate) unsafe fn arm(&mut self) -> PIRP {
        // SAFETY: forwarded.
        unsafe { self.arm_for(FRAME_NONE) }
    }

    /// [`BlockRef::arm`] for a request waited for in the frame that issues it, under the
    /// frame protocol: this reference is the only one, held by that frame until the
    /// completion routine is finished with the block ([`BlockRef::wait_in_frame`], then
    /// [`BlockRef::release_in_frame`]); the routine counts no reference of its own and sets
    /// neither `done` nor a waker. Its last access to the block is one swap of `frame` —
    /// and, if that swap shows a waiter, the event's signal, which the waiter consumes before
    /// it lets the block go: the kernel's pattern of an event on the waiter's stack. So the
    /// block may go back to its pool, and be armed again, the moment the waiter sees the
    /// completion. Returns the IRP to pass to the WSK function, which **must** then be called
    /// exactly once.
    ///
    /// # Safety
    /// No request may be in flight on this block. The request sets no timer on the block
    /// (no deadline), has no caller's IRP installed, and leaves nothing in `held` or `owner`
    /// for the completion routine or the release. The caller then calls `wait_in_frame` and
    /// `release_in_frame` on this reference, and does not unwind before `wait_in_frame`
    /// returned.
    #[inline]
    pub(crate) unsafe fn arm_in_frame(&mut self) -> PIRP {
        // SAFETY: forwarded.
        unsafe { self.arm_for(FRAME_ISSUED) }
    }

    /// The arm of either protocol: `FRAME_NONE` (the counted one, [`BlockRef::arm`]) or
    /// `FRAME_ISSUED` ([`BlockRef::arm_in_frame`]); inlined into each, the protocol a
    /// constant.
    ///
    /// # Safety
    /// As for the arm of that protocol.
    #[inline(always)]
    unsafe fn arm_for(&mut self, frame: u8) -> PIRP {
        let block = self.get();
        // SAFETY: exclusive access (no request in flight).
        unsafe {
            let irp = &mut *block.irp.get();
            irp.reuse();
            if block.wait_signal.load(Ordering::Relaxed)
                && !block.signal_consumed.load(Ordering::Relaxed)
            {
                // Only a blocking wait ever signals the event, and a satisfied wait resets it:
                // reset it only if a signal may be left over (a waiter of the frame protocol
                // always consumes the signal it asked for, and leaves `wait_signal` clear).
                KeClearEvent(block.event.get());
            }
            block.wait_signal.store(false, Ordering::Relaxed);
            block.frame.store(frame, Ordering::Relaxed);
            if frame == FRAME_NONE {
                // The frame protocol's result is read from the IRP ([`BlockRef::result_in_frame`]).
                *block.status.get() = STATUS_PENDING;
                *block.information.get() = 0;
                block.signal_consumed.store(false, Ordering::Relaxed);
                block.done.store(false, Ordering::Relaxed);
                block.waker_registered.store(false, Ordering::Relaxed);
                // The in-flight reference, released by the completion routine.
                block.refs.fetch_add(1, Ordering::Relaxed);
            }
            IoSetCompletionRoutine(
                irp.as_ptr(),
                wsk_sys::io_completion_routine!(complete),
                self.ptr.as_ptr().cast(),
                true,
                true,
                true,
            );
            // Published last: from here the owner's teardown may cancel the IRP.
            block.in_flight.store(true, Ordering::Release);
            irp.as_ptr()
        }
    }

    /// Blocks until the completion routine of a request armed by [`BlockRef::arm_in_frame`]
    /// is finished with the block; at `timeout` (100 ns units, negative = relative) cancels
    /// the request and blocks on until then. Returns whether it timed out: cancelled at the
    /// timeout and completed as cancelled (a request the provider completed another way
    /// meanwhile keeps its result). Either way [`BlockRef::result`] may be read after.
    ///
    /// IRQL <= APC_LEVEL (checked by the callers).
    #[inline]
    pub(crate) fn wait_in_frame(&self, timeout: Option<i64>) -> bool {
        let block = self.get();
        // Already complete (inline, or while the caller did other work): no signal asked for.
        // Else announce the waiter; only the routine changes `frame` meanwhile, to
        // `FRAME_DONE`, so the exchange fails only when it did.
        if block.frame.load(Ordering::Acquire) & FRAME_DONE != 0
            || block
                .frame
                .compare_exchange(
                    FRAME_ISSUED,
                    FRAME_ISSUED | FRAME_WAITER,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
        {
            return false;
        }
        // The routine will see the waiter and signal the event, once; the waits below consume
        // that signal before the block can be let go.
        if wait_for_event(block, timeout) {
            let _ = block.frame.load(Ordering::Acquire);
            return false;
        }
        self.cancel();
        wait_for_event(block, None);
        let _ = block.frame.load(Ordering::Acquire);
        // SAFETY: the routine is finished with the block (its signal came after its swap).
        let (status, _) = unsafe { self.result_in_frame() };
        status == STATUS_CANCELLED
    }

    /// The final status and information of a request under the frame protocol, read from its
    /// IRP: the provider set them before completing it, and once the completion routine
    /// returned `STATUS_MORE_PROCESSING_REQUIRED` nobody else writes the IRP.
    ///
    /// # Safety
    /// [`BlockRef::wait_in_frame`] returned for the request.
    #[inline]
    pub(crate) unsafe fn result_in_frame(&self) -> (NTSTATUS, usize) {
        // SAFETY: the IRP is the block's own (no caller's IRP under the frame protocol), live
        // with the block; its request completed (the caller's contract).
        unsafe {
            let irp = (*self.get().irp.get()).as_ptr();
            (
                io_status::status(&raw const (*irp).IoStatus),
                (*irp).IoStatus.Information as usize,
            )
        }
    }

    /// Gives back the block of a request under the frame protocol, once
    /// [`BlockRef::wait_in_frame`] returned and its result was collected.
    #[inline]
    pub(crate) fn release_in_frame(self) {
        let this = core::mem::ManuallyDrop::new(self);
        let block = this.get();
        debug_assert_eq!(block.frame.load(Ordering::Relaxed) & FRAME_DONE, FRAME_DONE);
        debug_assert_eq!(block.refs.load(Ordering::Relaxed), 1);
        // SAFETY: the routine is finished with the block: exclusive access to its fields.
        debug_assert!(unsafe {
            matches!(*block.held.get(), Held::None)
                && matches!(*block.owner.get(), Owner::Idle)
                && (*block.parked_irp.get()).is_none()
        });
        debug_assert!(!block.client_request_open.load(Ordering::Relaxed));
        // What `release` leaves: no reference counted, holding nothing, idle.
        block.refs.store(0, Ordering::Relaxed);
        block.pool_state.store(IDLE, Ordering::Release);
    }

    /// Whether the completion has arrived.
    pub(crate) fn is_done(&self) -> bool {
        self.get().done.load(Ordering::Acquire)
    }

    /// Registers the waker to wake when the completion arrives; returns whether it already has.
    ///
    /// The routine stores `done` then loads `waker_registered`; this stores
    /// `waker_registered` then loads `done`, all SeqCst: either the routine sees the flag and
    /// wakes the waker (`AtomicWaker` orders that wake with this registration), or this sees
    /// `done` and the caller does not wait for a wake.
    pub(crate) fn register(&self, waker: &core::task::Waker) -> bool {
        let block = self.get();
        block.waker_registered.store(true, Ordering::SeqCst);
        block.waker.register(waker);
        block.done.load(Ordering::SeqCst)
    }

    /// Blocks the calling thread until the completion arrives, or until `timeout` (100 ns
    /// units, negative = relative) passes; returns whether it arrived.
    ///
    /// IRQL <= APC_LEVEL (checked by the callers).
    pub(crate) fn block_until_done(&self, timeout: Option<i64>) -> bool {
        let block = self.get();
        // Already complete (inline, or while the caller did other work): no signal asked for,
        // so the next request on this block needs no event reset.
        if block.done.load(Ordering::Acquire) {
            return true;
        }
        block.wait_signal.store(true, Ordering::SeqCst);
        if block.done.load(Ordering::SeqCst) {
            return true;
        }
        if wait_for_event(block, timeout) {
            // The wait consumed the signal (a synchronization event resets as it satisfies a
            // wait), and the signal follows `done`.
            block.signal_consumed.store(true, Ordering::Relaxed);
            return true;
        }
        block.done.load(Ordering::Acquire)
    }

    /// Requests cancellation of the in-flight IRP (`IoCancelIrp`; for a sleep, the cancel of
    /// its timer). Harmless when it has completed. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn cancel(&self) {
        cancel_if_in_flight(self.ptr);
    }

    /// Sets the block's timer to expire `due` from now (100 ns units, negative: relative)
    /// and then to do `action`. Called between [`BlockRef::arm`] and the WSK call (or, for a
    /// sleep, in place of it), so that the completion routine finds it set.
    ///
    /// The set timer holds a reference to the block, released by whichever of the completion
    /// routine (when its `KeCancelTimer` stops the timer), the DPC (when it ran) or the cancel
    /// of a sleep (when its `KeCancelTimer` stops the timer) is the one to stop it: so the
    /// block, and the socket or client it keeps, outlives the DPC, whatever the order. The
    /// completion routine always stops the timer or finds it expired: once every request has
    /// completed no timer is set, and a `KeFlushQueuedDpcs` then waits for every DPC still
    /// running (the client's teardown does both). IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// The request must be armed and not yet given to the provider, with no timer set.
    pub(crate) unsafe fn set_timer(&self, due: i64, action: TimerAction) {
        let block = self.get();
        // SAFETY: the request is not issued yet: the timer is this reference holder's.
        let timer = unsafe { &mut *block.timer.get() };
        if !timer.initialised {
            // SAFETY: the timer and DPC live in the block, in non-paged memory, for the
            // block's life; neither is in use (nothing set: a block is recycled only once its
            // timer's reference is released, after its DPC ran or it was cancelled). The
            // context is the block, with the provenance of its allocation.
            unsafe {
                KeInitializeTimerEx(&raw mut timer.ktimer, NotificationTimer);
                KeInitializeDpc(
                    &raw mut timer.dpc,
                    wsk_sys::deferred_routine!(timer_expired),
                    self.ptr.as_ptr().cast(),
                );
            }
            timer.initialised = true;
        }
        timer.action = action;
        block.timed_out.store(false, Ordering::Relaxed);
        block.refs.fetch_add(1, Ordering::Relaxed);
        // Published before the timer can expire, and before the WSK call. A deadline is
        // cancelled through its IRP, whatever this state; a sleep is cancelled through its
        // timer, which a cancel can stop only once `KeSetTimer` has returned: until then the
        // state says "being set", and a cancel meanwhile is left to this thread.
        let state = match action {
            TimerAction::Cancel => TIMER_CANCELS,
            TimerAction::Complete => TIMER_SLEEP_SETTING,
        };
        block.timer_state.store(state, Ordering::Release);
        let ktimer = &raw mut timer.ktimer;
        let dpc = &raw mut timer.dpc;
        // SAFETY: initialised above; not set (the previous request's timer was stopped or
        // expired before that request completed).
        unsafe { KeSetTimer(ktimer, LARGE_INTEGER { QuadPart: due }, dpc) };
        if action == TimerAction::Complete {
            match block.timer_state.compare_exchange(
                TIMER_SLEEP_SETTING,
                TIMER_COMPLETES,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {}
                Err(TIMER_SLEEP_SETTING_CANCELLED) => {
                    // Cancelled while being set: now that the timer is set, cancel it (unless
                    // it already expired and its DPC completed the sleep).
                    if block
                        .timer_state
                        .compare_exchange(
                            TIMER_SLEEP_SETTING_CANCELLED,
                            TIMER_COMPLETES,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        cancel_if_in_flight(self.ptr);
                    }
                }
                // Expired already: its DPC completed the sleep.
                Err(_) => {}
            }
        }
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

/// Waits on the block's event (a synchronization event: a satisfied wait resets it) for
/// `timeout` (100 ns units, negative = relative; `None`: no limit); returns whether the
/// event was signalled. IRQL <= APC_LEVEL (callers check).
#[inline]
fn wait_for_event(block: &Block, timeout: Option<i64>) -> bool {
    let mut interval = LARGE_INTEGER {
        QuadPart: timeout.unwrap_or(0),
    };
    let timeout_ptr = if timeout.is_some() {
        &raw mut interval
    } else {
        core::ptr::null_mut()
    };
    // SAFETY: the event lives in the block, which the caller's reference keeps alive; the
    // IRQL allows waiting (callers check).
    let status = unsafe {
        KeWaitForSingleObject(
            block.event.get().cast(),
            Executive,
            KernelMode,
            FALSE,
            timeout_ptr,
        )
    };
    // A kernel-mode, non-alertable wait ends signalled or timed out.
    debug_assert!(status == STATUS_SUCCESS || status == STATUS_TIMEOUT);
    status == STATUS_SUCCESS
}

/// Cancels the request in flight on the block, if any. IRQL <= DISPATCH_LEVEL. The caller
/// holds a reference to the block or to its pool's owner.
///
/// A sleep, whose IRP no provider holds, is cancelled by stopping its timer: when
/// `KeCancelTimer` stops it, the IRP is completed here with `STATUS_CANCELLED`; otherwise its
/// DPC is on its way and completes it.
fn cancel_if_in_flight(ptr: NonNull<Block>) {
    // SAFETY: the block is live (the caller's reference); shared access to its atomics.
    let block = unsafe { ptr.as_ref() };
    if !block.in_flight.load(Ordering::Acquire) {
        return;
    }
    let mut state = block.timer_state.load(Ordering::Acquire);
    loop {
        let next = match state {
            TIMER_COMPLETES => TIMER_IDLE,
            // `KeSetTimer` in progress: the setter cancels once it has returned.
            TIMER_SLEEP_SETTING => TIMER_SLEEP_SETTING_CANCELLED,
            // Already asked while being set.
            TIMER_SLEEP_SETTING_CANCELLED => return,
            // The DPC runs or ran: it completes a sleep, and cancels a request with a
            // deadline itself.
            TIMER_EXPIRED => return,
            _ => {
                // Not a sleep (or one already completed).
                block.cancel_irp_in_flight();
                return;
            }
        };
        match block
            .timer_state
            .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) if next == TIMER_SLEEP_SETTING_CANCELLED => return,
            Ok(_) => break,
            // Another cancel, the setter or the DPC's completion moved it: look again.
            Err(actual) => state = actual,
        }
    }
    // SAFETY: the timer was initialised when it was set; it lives in the block.
    if unsafe { stopped_before_expiry(block) } {
        // Stopped: no DPC will run. Complete the IRP in its place, then release the timer's
        // reference (the caller's keeps the block until both are done).
        // SAFETY: the sleep's IRP was armed and given to no provider; the timer state taken
        // above makes this the one completion.
        unsafe { complete_unissued((*block.irp.get()).as_ptr(), STATUS_CANCELLED) };
        // Not inside the IRP's completion routine: an uncollected caller's IRP released here
        // is freed or completed here.
        let _ = release::<false>(ptr);
    }
}

/// Stops the block's timer (`KeCancelTimer`); whether that stopped it before it expired, so
/// that its DPC will not run. Windows answers TRUE only then. Wine's kernel also answers TRUE
/// for a timer that has expired, once its DPC has returned (it waits for it): the DPC's mark
/// (`timed_out`, set first thing) tells that case, so a DPC that ran is never taken for one
/// that will not. IRQL <= DISPATCH_LEVEL; never from the timer's own DPC.
///
/// # Safety
/// The timer was initialised (it was set for the block's current request).
unsafe fn stopped_before_expiry(block: &Block) -> bool {
    // SAFETY: forwarded; the timer lives in the block.
    let stopped = unsafe { KeCancelTimer(&raw mut (*block.timer.get()).ktimer) } != 0;
    stopped && !block.timed_out.load(Ordering::SeqCst)
}

/// The DPC of a block's timer, at DISPATCH_LEVEL: a deadline cancels the request in flight,
/// a sleep's delay completes its IRP; then the timer's reference to the block is released.
unsafe extern "system" fn timer_expired(
    _dpc: PKDPC,
    context: PVOID,
    _argument1: PVOID,
    _argument2: PVOID,
) {
    let _scope = CallbackScope::enter();
    // SAFETY: the context is the block `set_timer` registered, kept alive by the timer's
    // reference until the release below.
    let ptr = unsafe { NonNull::new_unchecked(context.cast::<Block>()) };
    // SAFETY: as above; shared access to the atomics.
    let block = unsafe { ptr.as_ref() };
    block.timed_out.store(true, Ordering::SeqCst);
    // The timer has expired: nobody is to stop it any more. A completion that this routine
    // causes runs inside it (a sleep's, or a provider completing a cancelled request at
    // once) and must not call `KeCancelTimer` on the timer whose DPC is running: Windows
    // answers FALSE, but Wine's kernel waits there for the timer's callbacks to end — this
    // one, on this thread — and never returns. Its reference is released below, whatever a
    // racing cancel or completion routine saw. A request that completed first (its
    // completion routine found the timer no longer stoppable) left the state idle: it stays
    // so, for the block's next request.
    let _ = block
        .timer_state
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
            (state != TIMER_IDLE).then_some(TIMER_EXPIRED)
        });
    // SAFETY: the action was written when the timer was set, before it could expire, and is
    // not written again before the block is recycled (after the release below).
    let action = unsafe { (*block.timer.get()).action };
    if action == TimerAction::Complete {
        // A sleep: its IRP is completed here — a cancel racing this expiry saw its
        // `KeCancelTimer` fail and left the completion to this routine.
        // SAFETY: armed, given to no provider; this routine is its one completion.
        unsafe { complete_unissued((*block.irp.get()).as_ptr(), STATUS_SUCCESS) };
    } else {
        // The timer's reference keeps the block.
        block.cancel_irp_in_flight();
    }
    // In the DPC, not in a completion routine: as in `cancel_if_in_flight`.
    let _ = release::<false>(ptr);
}

impl Block {
    /// The completion routine's part of the timer protocol: stops a timer still set (and
    /// releases its reference when that stopped it), and reports a request cancelled after
    /// its deadline expired as timed out (`STATUS_IO_TIMEOUT`). Whatever else the provider
    /// completed with — data received after the deadline, say — stands.
    ///
    /// # Safety
    /// Called by the completion routine, which still holds the in-flight reference.
    unsafe fn finish_timer(&self, status: NTSTATUS) -> NTSTATUS {
        let state = self.timer_state.swap(TIMER_IDLE, Ordering::AcqRel);
        // An expired timer is not stopped: this may run inside its DPC (see
        // `timer_expired`).
        if state != TIMER_IDLE
            && state != TIMER_EXPIRED
            // SAFETY: set (so initialised) by `set_timer`; it lives in the block.
            && unsafe { stopped_before_expiry(self) }
        {
            // Stopped before its expiry: no DPC will run; its reference goes now (never the
            // last: the in-flight reference is still held).
            self.refs.fetch_sub(1, Ordering::Release);
        }
        if status == STATUS_CANCELLED && self.timed_out.load(Ordering::SeqCst) {
            STATUS_IO_TIMEOUT
        } else {
            status
        }
    }

    /// `IoCancelIrp` on the IRP of the request in flight, if one is. IRQL <= DISPATCH_LEVEL.
    /// The caller holds a reference to the block or to its pool's owner.
    ///
    /// Counted in `cancelling` from before it looks at `in_flight` until `IoCancelIrp`
    /// returns, so that [`Block::restore_irp`], which waits for the count to drop, never hands
    /// a caller's IRP back (to be freed, or completed to its originator) while a cancel that
    /// saw the request in flight still uses it.
    fn cancel_irp_in_flight(&self) {
        self.cancelling.fetch_add(1, Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) {
            // SAFETY: the IRP field is not written while a cancel is counted and the request
            // was seen in flight: the completion routine clears `in_flight` (SeqCst) before
            // the request can be collected, and `restore_irp` swaps the field only once the
            // count is zero; a cancel that counts itself after that reads `in_flight` false.
            // The IRP is the block's own (it lives as long as the block) or a caller's, which
            // stays in the block until `restore_irp`. On an IRP completed meanwhile the cancel
            // only sets its flag, which the next `IoReuseIrp` clears.
            unsafe { IoCancelIrp((*self.irp.get()).as_ptr()) };
        }
        self.cancelling.fetch_sub(1, Ordering::Release);
    }

    /// See [`BlockRef::restore_irp`].
    ///
    /// # Safety
    /// Exclusive access to the IRP fields: no request in flight, or it is done.
    #[inline]
    unsafe fn restore_irp(&self) -> Option<Irp> {
        // SAFETY: forwarded exclusivity.
        let parked = unsafe { &mut *self.parked_irp.get() };
        // A plain test first: the usual request has no caller's IRP (no write for it).
        if parked.is_none() {
            return None;
        }
        let own = parked.take()?;
        // A cancel that saw the request in flight may still be in `IoCancelIrp` on the
        // caller's IRP: it leaves the block once that is done (a bounded wait: no cancel
        // counts itself after `in_flight` was cleared, see `cancel_irp_in_flight`).
        while self.cancelling.load(Ordering::SeqCst) != 0 {
            core::hint::spin_loop();
        }
        // SAFETY: forwarded exclusivity.
        Some(core::mem::replace(unsafe { &mut *self.irp.get() }, own))
    }

    /// Closes the client-level request this block counted, once.
    fn end_client_request(&self) {
        // A plain load first: socket requests never open one (no read-modify-write for them).
        if self.client_request_open.load(Ordering::Relaxed)
            && self.client_request_open.swap(false, Ordering::AcqRel)
        {
            // SAFETY: a client request is open only while `owner` is the client (set before
            // the flag, cleared after it), and the owner field is not written meanwhile.
            if let Owner::Client(client) = unsafe { &*self.owner.get() } {
                client.end_request();
            }
        }
    }
}

impl Drop for BlockRef {
    fn drop(&mut self) {
        let block = self.get();
        // A socket request's block references no socket while it is in use (see
        // `for_socket`); if the completion routine has not released its reference yet, the
        // block must keep the socket — whose pool it lives in — for that release.
        if !block.home.is_null() && block.refs.load(Ordering::Acquire) > 1 {
            self.keep_home_alive();
        }
        // Not from a completion routine: a caller's IRP released here (its operation let go
        // after the routine ran) is freed or completed to its originator here.
        let _ = release::<false>(self.ptr);
    }
}

/// Drops one reference; the last one returns the block to its pool, dropping what the
/// request still held, and disposing of the caller's IRP of an uncollected request (see
/// [`dispose_of_caller_irp`]). Returns whether the completion routine that calls it
/// (`COMPLETING`) must let the completion of its IRP go on (a forwarded IRP released there).
#[must_use]
#[inline(always)]
fn release<const COMPLETING: bool>(ptr: NonNull<Block>) -> bool {
    // SAFETY: the caller held a reference, so the block is live.
    let previous = unsafe { ptr.as_ref() }.refs.fetch_sub(1, Ordering::Release);
    if previous != 1 {
        return false;
    }
    fence(Ordering::Acquire);
    // SAFETY: that was the last reference: exclusive access to the request's fields. The
    // IRP is not in flight (the in-flight reference is released only by the completion
    // routine). A shared reference, not `&mut Block`: other threads may be walking the pool
    // at this moment, reading this block's link and state (`BlockPool::take`).
    let (holds, continue_completion, owner) = unsafe {
        let block = ptr.as_ref();
        // A request that never reached the provider ends here.
        block.end_client_request();
        // A caller's IRP nobody collected (its operation was abandoned): the block gets its
        // own back before it is idle again. A plain test first: the usual request has none.
        let continue_completion =
            (*block.parked_irp.get()).is_some() && dispose_of_caller_irp(block, COMPLETING);
        if let Owner::Client(client) = &*block.owner.get() {
            client.free_address_list_now(&block.address_list);
        }
        let holds = !matches!(&*block.held.get(), Held::None);
        // A socket request's block has no owner to drop (see `for_socket`): a plain test
        // first, no drop glue for `Owner::Idle`.
        let owner = if matches!(&*block.owner.get(), Owner::Idle) {
            None
        } else {
            Some(core::mem::take(&mut *block.owner.get()))
        };
        (holds, continue_completion, owner)
    };
    // The block goes back to its pool; what the request held (a buffer, an uncollected new
    // socket, which is closed) and the reference to the owner are dropped after, in that
    // order: the owner, and with it the pool, may go with the last reference. A request
    // whose holdings were collected (the usual case) moves nothing.
    let held = if holds {
        // SAFETY: exclusive access still (the block is not idle yet).
        core::mem::take(unsafe { &mut *(*ptr.as_ptr()).held.get() })
    } else {
        Held::None
    };
    // SAFETY: the block is live until its pool is dropped, which the owner reference delays.
    unsafe { ptr.as_ref() }
        .pool_state
        .store(IDLE, Ordering::Release);
    if holds {
        drop(held);
    } else {
        core::mem::forget(held);
    }
    drop(owner);
    continue_completion
}

/// Puts a block's own IRP back in place of the caller's of an uncollected request, and
/// disposes of the caller's: one the driver allocated is freed (`IoFreeIrp`, allowed in its
/// own completion routine, which then returns `STATUS_MORE_PROCESSING_REQUIRED`); a
/// forwarded one is completed to its originator with WSK's result — by `IoCompleteRequest`
/// outside its completion routine, and inside it (`completing`) by letting the completion go
/// on (returns `true`: never a nested `IoCompleteRequest` of the IRP being completed).
///
/// # Safety
/// Exclusive access to the block (its last reference is being released).
#[cold]
#[inline(never)]
unsafe fn dispose_of_caller_irp(block: &Block, completing: bool) -> bool {
    // SAFETY: forwarded exclusivity.
    let Some(caller_irp) = (unsafe { block.restore_irp() }) else {
        return false;
    };
    if completing && caller_irp.is_forwarded() {
        let irp = caller_irp.into_raw().as_ptr();
        // SAFETY: the IRP whose completion routine is running: what a routine that lets the
        // completion go on must do for the location above.
        unsafe {
            if (*irp).PendingReturned != 0 {
                IoMarkIrpPending(irp);
            }
        }
        return true;
    }
    drop(caller_irp);
    false
}

/// What a completion routine returns to let the I/O manager go on completing the IRP up its
/// stack (`STATUS_CONTINUE_COMPLETION` in wdm.h, an alias of `STATUS_SUCCESS`).
const STATUS_CONTINUE_COMPLETION: NTSTATUS = STATUS_SUCCESS;

/// The completion routine of every request this crate issues. Runs at IRQL <= DISPATCH_LEVEL
/// and returns `STATUS_MORE_PROCESSING_REQUIRED`: the IRP belongs to the block (or to the
/// caller who lent it), and the I/O manager must stop processing it — except for a forwarded
/// IRP ([`Irp::from_forwarded`]) whose operation was abandoned in flight: its completion goes
/// on to its originator (`STATUS_CONTINUE_COMPLETION`). A request under the frame protocol is
/// completed by [`complete_in_frame`]; any other inside a [`CallbackScope`] (at
/// DISPATCH_LEVEL from the first line), since it may wake a task or drop what the request
/// held.
unsafe extern "system" fn complete(_device: PDEVICE_OBJECT, irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the block the arm registered, kept alive until the routine is
    // done with it: by the in-flight reference until `release` below, or by the frame waiting
    // for it (the frame protocol).
    let ptr = unsafe { NonNull::new_unchecked(context.cast::<Block>()) };
    // Written by the arm, before the provider had the IRP.
    // SAFETY: as above.
    if unsafe { ptr.as_ref() }.frame.load(Ordering::Relaxed) != FRAME_NONE {
        // SAFETY: the IRP and block of a request under the frame protocol, completing.
        return unsafe { complete_in_frame(ptr, irp) };
    }
    // SAFETY: the IRP and block of a request under the counted protocol, completing.
    unsafe { complete_counted(ptr, irp) }
}

/// The completion of a request under the counted protocol (see [`complete`]). Out of line:
/// the frame protocol's completion, in [`complete`] itself, saves and restores none of the
/// registers this one needs.
///
/// # Safety
/// `ptr` is the block of a request under the counted protocol whose IRP `irp` is
/// completing; the in-flight reference is the routine's to release.
#[inline(never)]
unsafe fn complete_counted(ptr: NonNull<Block>, irp: PIRP) -> NTSTATUS {
    let _scope = CallbackScope::enter();
    // SAFETY: the invariant gives the routine the status fields and `held` until it sets
    // `done`; the provider is finished with the scratch fields.
    unsafe {
        let block = ptr.as_ref();
        let mut status = io_status::status(&raw const (*irp).IoStatus);
        // One load and branch for a request without a timer.
        if block.timer_state.load(Ordering::Relaxed) != TIMER_IDLE {
            status = block.finish_timer(status);
        }
        let information = (*irp).IoStatus.Information as usize;
        *block.status.get() = status;
        *block.information.get() = information;
        match &mut *block.held.get() {
            // The new socket joins its client now, whether or not anyone collects it.
            Held::NewSocket(socket) => socket.complete(status, information),
            Held::Resolution { .. } => {
                let scratch = &mut *block.scratch.get();
                let list = core::mem::replace(&mut scratch.result, core::ptr::null_mut());
                // A request that returns no list (`WskGetNameInfo`) leaves in place a list an
                // earlier resolution on this block could not free yet (collected above
                // PASSIVE_LEVEL), to be freed at the next PASSIVE_LEVEL opportunity.
                if NT_SUCCESS(status) && !list.is_null() {
                    block.address_list.store(list, Ordering::Release);
                }
            }
            _ => {}
        }
        // SeqCst: ordered with the counted cancels (see `Block::cancel_irp_in_flight`).
        block.in_flight.store(false, Ordering::SeqCst);
        // A client request ends only once the in-flight reference is gone (below), so that
        // the client's teardown, which waits for it, never returns while this routine still
        // holds the block — and with it a block of the client's pool.
        let ending_client_request = if block.client_request_open.load(Ordering::Relaxed)
            && block.client_request_open.swap(false, Ordering::AcqRel)
        {
            match &*block.owner.get() {
                Owner::Client(client) => Some(client.clone()),
                _ => None,
            }
        } else {
            None
        };
        block.done.store(true, Ordering::SeqCst);
        if block.wait_signal.load(Ordering::SeqCst) {
            KeSetEvent(block.event.get(), IO_NETWORK_INCREMENT, FALSE);
        }
        if block.waker_registered.load(Ordering::SeqCst) {
            if let Some(waker) = block.waker.take() {
                // A task waiting for this request continues here, in its completion routine.
                crate::task::wake_from_completion(waker);
            }
        }
        // A forwarded IRP of an operation abandoned in flight, released with its block just
        // now, goes on up to its originator with WSK's result.
        let continue_completion = release::<true>(ptr);
        if let Some(client) = ending_client_request {
            client.end_request();
        }
        if continue_completion {
            return STATUS_CONTINUE_COMPLETION;
        }
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// The completion of a request under the frame protocol ([`BlockRef::arm_in_frame`]): one
/// swap of `frame` — the last access to the block, which the waiter may take back at once —
/// and the signal to a waiter that swap shows, which blocks until then. The result stays in
/// the IRP, where the waiter reads it ([`BlockRef::result_in_frame`]). It runs no code of the
/// user's (no waker, nothing held to drop), so it enters no [`CallbackScope`].
///
/// # Safety
/// `ptr` is the block of a request under the frame protocol whose IRP `irp` is completing.
#[inline(always)]
unsafe fn complete_in_frame(ptr: NonNull<Block>, irp: PIRP) -> NTSTATUS {
    // SAFETY: the invariant (frame protocol) gives the routine the status fields until its
    // swap; the frame waiting for the request keeps the block alive until then, and until
    // the signal to a waiter the swap shows.
    unsafe {
        let block = ptr.as_ref();
        // No deadline's timer under the frame protocol, and no caller's IRP.
        debug_assert_eq!(block.timer_state.load(Ordering::Relaxed), TIMER_IDLE);
        debug_assert_eq!((*block.irp.get()).as_ptr(), irp);
        // SeqCst: ordered with the counted cancels (see `Block::cancel_irp_in_flight`).
        block.in_flight.store(false, Ordering::SeqCst);
        let event = block.event.get();
        if block.frame.swap(FRAME_DONE, Ordering::AcqRel) & FRAME_WAITER != 0 {
            KeSetEvent(event, IO_NETWORK_INCREMENT, FALSE);
        }
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// The most requests one socket or client may reserve completion blocks for
/// (`reserve_requests`): each block is a few hundred bytes of non-paged memory plus its IRP,
/// so 4096 of them pin a few MiB — more than any one socket or client should.
pub const MAX_RESERVED_REQUESTS: usize = 4096;

/// The completion blocks of one owner (a socket or the client): every block ever allocated
/// for it, idle or in use, as a push-only lock-free list. Taking an idle block is a walk and
/// one compare-exchange, at any IRQL <= DISPATCH_LEVEL; a block is allocated only when all
/// are in use, so steady-state I/O allocates nothing whatever the number of requests in
/// flight. The blocks are freed with the pool, when its owner is dropped.
pub(crate) struct BlockPool {
    head: AtomicPtr<Block>,
}

// SAFETY: the blocks are reached only through the atomics and the block protocol.
unsafe impl Send for BlockPool {}
// SAFETY: as above.
unsafe impl Sync for BlockPool {}

impl BlockPool {
    pub(crate) const fn new() -> BlockPool {
        BlockPool {
            head: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The pool's blocks, as the raw pointers the pool owns them by (with the provenance of
    /// their allocation: a block taken from here is written through).
    #[inline]
    fn raw_blocks(&self) -> impl Iterator<Item = NonNull<Block>> + '_ {
        let mut next = self.head.load(Ordering::Acquire);
        core::iter::from_fn(move || {
            let block = NonNull::new(next)?;
            // SAFETY: blocks in the pool live as long as the pool; `next_in_pool` is
            // immutable once published.
            next = unsafe { (*block.as_ptr()).next_in_pool.cast_mut() };
            Some(block)
        })
    }

    fn blocks(&self) -> impl Iterator<Item = &Block> + '_ {
        // SAFETY: blocks in the pool live as long as the pool; shared references are only
        // used for their atomics and interior-mutable fields.
        self.raw_blocks().map(|block| unsafe { &*block.as_ptr() })
    }

    #[inline]
    fn take(&self) -> Option<NonNull<Block>> {
        self.raw_blocks().find(|block| {
            // SAFETY: as in `blocks`; the state is an atomic.
            unsafe { &(*block.as_ptr()).pool_state }
                .compare_exchange(IDLE, OWNED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Allocates a block (with its IRP) for the pool, already taken. IRQL <= DISPATCH_LEVEL.
    fn grow(&self, home: *const SocketCore) -> Result<NonNull<Block>> {
        let irp = Irp::new()?;
        let block = try_box(Block {
            refs: AtomicU32::new(0),
            pool_state: AtomicU8::new(OWNED),
            in_flight: AtomicBool::new(false),
            done: AtomicBool::new(false),
            wait_signal: AtomicBool::new(false),
            cancelling: AtomicU32::new(0),
            signal_consumed: AtomicBool::new(false),
            client_request_open: AtomicBool::new(false),
            waker_registered: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            frame: AtomicU8::new(FRAME_NONE),
            event: UnsafeCell::new(KEVENT::default()),
            irp: UnsafeCell::new(irp),
            parked_irp: UnsafeCell::new(None),
            status: UnsafeCell::new(STATUS_PENDING),
            information: UnsafeCell::new(0),
            scratch: UnsafeCell::new(Scratch::new()),
            held: UnsafeCell::new(Held::None),
            address_list: AtomicPtr::new(core::ptr::null_mut()),
            owner: UnsafeCell::new(Owner::Idle),
            timer: UnsafeCell::new(Timer {
                ktimer: KTIMER::default(),
                dpc: KDPC::default(),
                initialised: false,
                action: TimerAction::Cancel,
            }),
            timer_state: AtomicU8::new(TIMER_IDLE),
            timed_out: AtomicBool::new(false),
            next_in_pool: core::ptr::null(),
            home,
        })?;
        let ptr = Box::into_raw(block);
        // SAFETY: the event lives in the block, in non-paged memory, for the block's life.
        unsafe { KeInitializeEvent((*ptr).event.get(), SynchronizationEvent, FALSE) };
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is not published yet: exclusive access.
            unsafe { (*ptr).next_in_pool = head };
            match self
                .head
                .compare_exchange_weak(head, ptr, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => head = actual,
            }
        }
        // SAFETY: `Box::into_raw` is never null.
        Ok(unsafe { NonNull::new_unchecked(ptr) })
    }

    /// Grows the pool to at least `count` blocks, idle or in use, so that as many requests
    /// can be in flight on the owner at once without allocating: each block added costs its
    /// allocations (the block in non-paged memory, its IRP, and the event the kernel
    /// initialises) now instead of on the request that would have needed it. Blocks are never
    /// given back before the owner goes, so a reservation lasts. Fails with
    /// [`Error::INVALID_PARAMETER`](crate::Error::INVALID_PARAMETER) above
    /// [`MAX_RESERVED_REQUESTS`] (nothing allocated), or with the allocation's error (the
    /// blocks added until then stay). IRQL <= DISPATCH_LEVEL.
    pub(crate) fn reserve(&self, home: *const SocketCore, count: usize) -> Result<()> {
        if count > MAX_RESERVED_REQUESTS {
            return Err(crate::Error::INVALID_PARAMETER);
        }
        // Concurrent reservations may both add blocks: the pool ends with at least `count`.
        let mut blocks = self.raw_blocks().count();
        while blocks < count {
            let block = self.grow(home)?;
            // SAFETY: `grow` published the block taken (`OWNED`) and nobody holds a reference
            // to it: it is in the state `release` leaves a block in (no reference counted,
            // owner `Idle`, holding nothing, no request in flight), so making it idle hands it
            // to the next `take`.
            unsafe { block.as_ref() }
                .pool_state
                .store(IDLE, Ordering::Release);
            blocks += 1;
        }
        Ok(())
    }

    /// Frees the blocks beyond the first `keep`: for a pool whose owner is kept for reuse,
    /// which should not pin what a past reservation or burst grew (and all of them, with 0,
    /// when the pool is dropped).
    ///
    /// Exclusive access (`&mut`): no reference to any block exists, none is in flight.
    pub(crate) fn trim(&mut self, keep: usize) {
        let mut link: *mut *const Block = core::ptr::from_mut(self.head.get_mut()).cast();
        for _ in 0..keep {
            // SAFETY: `link` is the pool's head or the link of a block the pool owns; blocks
            // live as long as the pool.
            let Some(block) = NonNull::new(unsafe { *link }.cast_mut()) else {
                return;
            };
            // SAFETY: as above; exclusive access, so the link may be written below.
            link = unsafe { &raw mut (*block.as_ptr()).next_in_pool };
        }
        // SAFETY: exclusive access; the rest of the list is cut off, then freed.
        let mut next = unsafe { core::mem::replace(&mut *link, core::ptr::null()) }.cast_mut();
        while let Some(ptr) = NonNull::new(next) {
            // SAFETY: a block of the pool, from `Box::into_raw`, unreferenced (exclusive
            // access) and now out of the list.
            let block = unsafe { Box::from_raw(ptr.as_ptr()) };
            debug_assert_eq!(block.pool_state.load(Ordering::Relaxed), IDLE);
            next = block.next_in_pool.cast_mut();
        }
    }

    /// Cancels every request in flight on the pool's blocks (`IoCancelIrp`). The caller must
    /// keep the pool's owner alive. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn cancel_in_flight(&self) {
        for block in self.raw_blocks() {
            cancel_if_in_flight(block);
        }
    }

    /// Takes, one by one, the name-resolution results that completed and were not collected.
    pub(crate) fn uncollected_address_lists(&self) -> impl Iterator<Item = PADDRINFOEXW> + '_ {
        self.blocks().filter_map(|block| {
            let list = block
                .address_list
                .swap(core::ptr::null_mut(), Ordering::AcqRel);
            (!list.is_null()).then_some(list)
        })
    }
}

impl Drop for BlockPool {
    fn drop(&mut self) {
        // The pool's owner is being dropped: no block is referenced any more (a reference
        // holds the owner).
        self.trim(0);
    }
}

/// The completion-block state machine driven from several threads, on wsk-host's IRPs: the
/// completion routine racing the drop of the operation, the registration of its waker and a
/// cancellation. The suite also runs these under Miri (Stacked Borrows).
#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::sync::Arc;
    use alloc::task::Wake;
    use core::sync::atomic::AtomicUsize;
    use core::task::Waker;
    use std::thread;

    use wsk_host::Session;

    use super::*;
    use crate::held_buf::HeldBuf;
    use crate::socket::complete_unissued;

    /// Rounds of each race: fewer under the interpreter.
    const ROUNDS: usize = if cfg!(miri) { 8 } else { 500 };

    /// An armed IRP handed to the thread that completes it (as the provider would).
    struct InFlight(PIRP);
    // SAFETY: an IRP is kernel memory usable from any thread; the completing thread is the
    // only one that touches it until the completion routine has run.
    unsafe impl Send for InFlight {}

    impl InFlight {
        /// Completes the IRP the way the I/O manager would.
        fn complete(self, status: NTSTATUS) {
            // SAFETY: armed by `BlockRef::arm` and given to no provider: this thread owns it
            // until the completion routine runs.
            unsafe { complete_unissued(self.0, status) };
        }
    }

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn armed(pool: &BlockPool, buf: Option<Buf>) -> (BlockRef, InFlight) {
        let mut block = BlockRef::from_pool(pool, core::ptr::null(), Owner::Idle).unwrap();
        if let Some(buf) = buf {
            // SAFETY: nothing in flight on a fresh block.
            unsafe { block.held().store(Held::Buf(buf)) };
        }
        // SAFETY: nothing in flight on the block.
        let irp = unsafe { block.arm() };
        (block, InFlight(irp))
    }

    #[test]
    fn the_completion_races_the_drop_of_the_operation() {
        let session = Session::start();
        let pool = BlockPool::new();
        for round in 0..ROUNDS {
            let buf = Buf::from_slice(b"held until the completion").unwrap();
            let (block, irp) = armed(&pool, Some(buf));
            let completer = thread::spawn(move || irp.complete(STATUS_SUCCESS));
            if round % 2 == 0 {
                // The operation goes first: the in-flight reference keeps the block and its
                // buffer until the routine has run.
                block.cancel();
                drop(block);
                completer.join().unwrap();
            } else {
                completer.join().unwrap();
                assert!(block.is_done());
                // SAFETY: done.
                assert_eq!(unsafe { block.result() }.0, STATUS_SUCCESS);
                drop(block);
            }
        }
        // Every block is idle again: the pool reuses one or two, and frees them.
        assert!(pool.blocks().count() <= 2);
        drop(pool);
        session.finish();
    }

    /// Counts its drops; held inline by a block, as a generic request holds its buffer.
    struct CountDrop(Arc<AtomicUsize>, Buf);

    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_caller_irp_and_an_inline_buffer_race_the_drop_of_the_operation() {
        let session = Session::start();
        let pool = BlockPool::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut own_irp = None;
        for round in 0..ROUNDS {
            let caller = Irp::new().unwrap();
            let caller_ptr = caller.as_ptr();
            let mut block = BlockRef::from_pool(&pool, core::ptr::null(), Owner::Idle).unwrap();
            let held = CountDrop(Arc::clone(&drops), Buf::from_slice(b"inline").unwrap());
            // SAFETY: nothing in flight on a fresh block.
            unsafe {
                block.held().store(Held::Io(HeldBuf::new(held)));
                block.install_irp(caller);
            }
            // SAFETY: nothing in flight on the block.
            let irp = unsafe { block.arm() };
            assert_eq!(irp, caller_ptr, "the request goes out on the caller's IRP");
            let irp = InFlight(irp);
            let completer = thread::spawn(move || irp.complete(STATUS_SUCCESS));
            if round % 2 == 0 {
                // Abandoned: the release frees the caller's IRP and drops the buffer.
                block.cancel();
                drop(block);
                completer.join().unwrap();
            } else {
                completer.join().unwrap();
                assert!(block.is_done());
                // SAFETY: done: the request's own again.
                let irp = unsafe { block.restore_irp() };
                assert_eq!(irp.as_ref().map(Irp::as_ptr), Some(caller_ptr));
                // SAFETY: done, and stored as a `CountDrop` above.
                let held = unsafe { block.held().take_io::<CountDrop>() }.unwrap();
                // SAFETY: done.
                assert!(matches!(unsafe { block.held() }, Held::None));
                assert_eq!(&held.1[..], b"inline");
                drop((held, irp, block));
            }
            assert_eq!(drops.load(Ordering::SeqCst), round + 1);
            // The block has its own IRP back, whichever way the request ended.
            let block = pool.blocks().next().unwrap();
            // SAFETY: the block is idle; its IRP is only read.
            let own = unsafe { (*block.irp.get()).as_ptr() };
            assert_eq!(*own_irp.get_or_insert(own), own);
        }
        assert_eq!(pool.blocks().count(), 1);
        drop(pool);
        session.finish();
    }

    /// A request that needs no provider: its block comes from a local pool, and its IRP is
    /// completed at once, as an inline completion would be.
    struct CompletedAtOnce<'a> {
        pool: &'a BlockPool,
    }

    impl crate::op::issue::Issue for CompletedAtOnce<'_> {
        type Output = NTSTATUS;

        fn start(&mut self) -> Result<BlockRef> {
            BlockRef::from_pool(self.pool, core::ptr::null(), Owner::Idle)
        }

        unsafe fn issue(&mut self, _block: &BlockRef, irp: PIRP) -> NTSTATUS {
            // SAFETY: armed, and given to no provider.
            unsafe { complete_unissued(irp, STATUS_SUCCESS) };
            STATUS_SUCCESS
        }

        fn finish(&mut self, _block: &mut BlockRef, status: NTSTATUS, _: usize) -> NTSTATUS {
            status
        }

        fn fail(&mut self, error: crate::Error) -> NTSTATUS {
            error.status()
        }
    }

    #[test]
    fn an_operation_with_a_caller_irp_hands_it_back_however_it_ends() {
        let session = Session::start();
        let pool = BlockPool::new();
        for _ in 0..ROUNDS / 4 + 1 {
            // Issued on the caller's IRP, waited for: the same IRP back, completed.
            let irp = Irp::new().unwrap();
            let raw = irp.as_ptr();
            let op = crate::op::Op::new(CompletedAtOnce { pool: &pool });
            let (status, irp) = op.with_irp(irp).wait();
            assert_eq!(status, STATUS_SUCCESS);
            let irp = irp.unwrap();
            assert_eq!((irp.as_ptr(), irp.status()), (raw, STATUS_SUCCESS));
            // Given to an operation that already finished: not used, handed back as given.
            let mut op = crate::op::Op::new(CompletedAtOnce { pool: &pool });
            let mut cx = core::task::Context::from_waker(Waker::noop());
            assert!(core::pin::Pin::new(&mut op).poll(&mut cx).is_ready());
            let (status, irp) = op.with_irp(irp).wait();
            assert_eq!(status, STATUS_INVALID_DEVICE_REQUEST);
            assert_eq!(irp.map(|irp| irp.as_ptr()), Some(raw));
        }
        // The pool's one block has its own IRP back: the caller's were all handed back.
        assert_eq!(pool.blocks().count(), 1);
        drop(pool);
        session.finish();
    }

    /// A request that needs no provider and stays in flight: its IRP is left for the test to
    /// complete.
    struct LeftInFlight {
        pool: Arc<BlockPool>,
        irp: Arc<AtomicPtr<IRP>>,
    }

    impl crate::op::issue::Issue for LeftInFlight {
        type Output = NTSTATUS;

        fn start(&mut self) -> Result<BlockRef> {
            BlockRef::from_pool(&self.pool, core::ptr::null(), Owner::Idle)
        }

        unsafe fn issue(&mut self, _block: &BlockRef, irp: PIRP) -> NTSTATUS {
            self.irp.store(irp, Ordering::SeqCst);
            STATUS_PENDING
        }

        fn finish(&mut self, _block: &mut BlockRef, status: NTSTATUS, _: usize) -> NTSTATUS {
            status
        }

        fn fail(&mut self, error: crate::Error) -> NTSTATUS {
            error.status()
        }
    }

    /// The bytes a request lets the provider write, and where they are.
    struct Bytes(Box<[u8; 64]>);

    /// The address the "provider" thread writes through, as an MDL would describe it.
    struct Target(*mut u8, PIRP);

    // SAFETY: the pointers are used by one thread at a time, under the request protocol.
    unsafe impl Send for Target {}

    /// A request whose "provider" is another thread: it fills the request's bytes through
    /// their address, then completes the IRP — or, given `stall`, does both only once it is
    /// cancelled. Started by `start_waited`, it keeps its bytes in itself; by `start`,
    /// the block holds them. Given `panic_after_issue`, its issue panics once the "provider"
    /// has the request.
    struct FilledByAnotherThread {
        pool: Arc<BlockPool>,
        bytes: Option<Bytes>,
        stall: bool,
        panic_after_issue: bool,
        provider: Option<thread::JoinHandle<()>>,
        started_waited: bool,
    }

    impl FilledByAnotherThread {
        fn new(pool: &Arc<BlockPool>, stall: bool) -> Self {
            FilledByAnotherThread {
                pool: Arc::clone(pool),
                bytes: Some(Bytes(Box::new([0; 64]))),
                stall,
                panic_after_issue: false,
                provider: None,
                started_waited: false,
            }
        }
    }

    impl crate::op::issue::Issue for FilledByAnotherThread {
        type Output = (NTSTATUS, usize, Bytes);

        fn start(&mut self) -> Result<BlockRef> {
            let mut block = BlockRef::from_pool(&self.pool, core::ptr::null(), Owner::Idle)?;
            let bytes = self.bytes.take().unwrap();
            // SAFETY: nothing in flight on the block yet.
            unsafe { block.held().store(Held::Io(HeldBuf::new(bytes))) };
            Ok(block)
        }

        const COMPLETES_IN_FRAME: bool = true;

        fn start_waited(&mut self) -> Result<BlockRef> {
            self.started_waited = true;
            BlockRef::from_pool(&self.pool, core::ptr::null(), Owner::Idle)
        }

        unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
            let data = if self.started_waited {
                self.bytes.as_mut().unwrap().0.as_mut_ptr()
            } else {
                // SAFETY: stored as `Bytes` by `start`, nothing else touches the block until
                // the completion; only the address of the bytes is taken (the provider's
                // view, as an MDL's).
                unsafe {
                    match &mut *block.held_ptr() {
                        Held::Io(held) => (*held.value_ptr::<Bytes>()).0.as_mut_ptr(),
                        _ => unreachable!(),
                    }
                }
            };
            let target = Target(data, irp);
            let stall = self.stall;
            if stall {
                // The block's IRP is reused: forget the cancel of an earlier round.
                STALLED_CANCELLED.store(core::ptr::null_mut(), Ordering::SeqCst);
                // SAFETY: the IRP is armed and given to this "provider" alone.
                unsafe { IoSetCancelRoutine(irp, Some(stalled_cancelled)) };
            }
            self.provider = Some(thread::spawn(move || {
                let target = target;
                // SAFETY: the request's bytes live until its completion: that is what the
                // test checks; the IRP is armed and given to this "provider" alone.
                unsafe {
                    // A stalled one writes only once cancelled, as data arriving then would
                    // be: a wait that gave the bytes back at its timeout, before the
                    // completion, would race these writes.
                    while stall && STALLED_CANCELLED.load(Ordering::SeqCst) != target.1 {
                        thread::yield_now();
                    }
                    for i in 0..64 {
                        target.0.add(i).write(i as u8 + 1);
                    }
                    if stall {
                        run_completion_routine(target.1, STATUS_CANCELLED);
                    } else {
                        (*target.1).IoStatus.Information = 64;
                        let location = IoGetNextIrpStackLocation(target.1);
                        let routine = (*location).CompletionRoutine.unwrap();
                        (*target.1).IoStatus.u.Status = STATUS_SUCCESS;
                        routine(core::ptr::null_mut(), target.1, (*location).Context);
                    }
                }
            }));
            if self.panic_after_issue {
                panic!("the provider has the request");
            }
            STATUS_PENDING
        }

        fn finish(&mut self, block: &mut BlockRef, status: NTSTATUS, info: usize) -> Self::Output {
            // SAFETY: done; stored as `Bytes` by `start`.
            let bytes = unsafe { block.held().take_io::<Bytes>() }.unwrap();
            (status, info, bytes)
        }

        fn finish_waited(
            &mut self,
            _: &mut BlockRef,
            status: NTSTATUS,
            info: usize,
        ) -> Self::Output {
            (status, info, self.bytes.take().unwrap())
        }

        fn fail(&mut self, error: crate::Error) -> Self::Output {
            (error.status(), 0, Bytes(Box::new([0; 64])))
        }
    }

    /// Set in the child process of the test below.
    const UNWIND_CHILD: &str = "WSK_TEST_UNWIND_WHILE_THE_PROVIDER_HAS_IT";

    #[test]
    #[cfg(unix)]
    #[cfg_attr(miri, ignore = "runs itself as a child process")]
    fn a_waited_request_unwinding_while_the_provider_has_it_aborts_the_process() {
        const NAME: &str = "lifecycle::completion::tests::\
            a_waited_request_unwinding_while_the_provider_has_it_aborts_the_process";
        if std::env::var_os(UNWIND_CHILD).is_some() {
            // The child: a request waited for unstarted panics once the provider (a thread
            // that writes its bytes, then completes it) has it. Unwinding would free the
            // bytes under the writer; the wait aborts the process instead.
            let session = Session::start();
            let pool = Arc::new(BlockPool::new());
            let mut request = FilledByAnotherThread::new(&pool, false);
            request.panic_after_issue = true;
            let _ = crate::op::Op::new(request).wait();
            drop(session);
            return;
        }
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(UNWIND_CHILD, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the child neither aborted nor ended within 30 s");
            }
            thread::sleep(std::time::Duration::from_millis(10));
        }
        let child = child.wait_with_output().unwrap();
        let stderr = alloc::string::String::from_utf8_lossy(&child.stderr);
        assert!(
            stderr.contains("the provider has the request"),
            "the child did not run the request: {stderr}"
        );
        // Aborted (SIGABRT), not a test failure (exit code 101) after unwinding the frame.
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            child.status.signal(),
            Some(6),
            "{:?}: {stderr}",
            child.status
        );
        assert!(
            stderr.contains("a request waited for unwound while the provider could still use"),
            "{stderr}"
        );
    }

    /// The IRP of the stalled request last cancelled.
    static STALLED_CANCELLED: AtomicPtr<IRP> = AtomicPtr::new(core::ptr::null_mut());

    /// The stalled request's cancel routine: tells its "provider".
    unsafe extern "system" fn stalled_cancelled(_device: PDEVICE_OBJECT, irp: PIRP) {
        // SAFETY: called by `IoCancelIrp` with the cancel spin lock held, which a cancel
        // routine releases.
        unsafe { IoReleaseCancelSpinLock((*irp).CancelIrql) };
        STALLED_CANCELLED.store(irp, Ordering::SeqCst);
    }

    impl Drop for FilledByAnotherThread {
        fn drop(&mut self) {
            if let Some(provider) = self.provider.take() {
                provider.join().unwrap();
            }
        }
    }

    #[test]
    fn a_request_waited_for_in_its_frame_keeps_its_bytes_in_itself_until_the_completion() {
        let session = Session::start();
        let pool = Arc::new(BlockPool::new());
        let filled: [u8; 64] = core::array::from_fn(|i| i as u8 + 1);
        for _ in 0..ROUNDS / 8 + 1 {
            // Waited for unstarted: the bytes stay in the request, written in place.
            let (status, info, bytes) =
                crate::op::Op::new(FilledByAnotherThread::new(&pool, false)).wait();
            assert_eq!((status, info, *bytes.0), (STATUS_SUCCESS, 64, filled));
            // Polled first, then waited for: the block holds them meanwhile.
            let mut op = crate::op::Op::new(FilledByAnotherThread::new(&pool, false));
            let mut cx = core::task::Context::from_waker(Waker::noop());
            // (Done already if the "provider" was quick: the block held them all the same.)
            let (status, info, bytes) = match core::pin::Pin::new(&mut op).poll(&mut cx) {
                core::task::Poll::Ready(output) => output,
                core::task::Poll::Pending => op.wait(),
            };
            assert_eq!((status, info, *bytes.0), (STATUS_SUCCESS, 64, filled));
            // Waited for with a timeout the provider outlasts: cancelled, timed out, and the
            // bytes back only once the provider is done with them.
            let (status, _, bytes) =
                crate::op::Op::new(FilledByAnotherThread::new(&pool, true)).wait_timeout(1);
            assert_eq!((status, *bytes.0), (STATUS_IO_TIMEOUT, filled));
        }
        // Every block idle again: each request joined its "provider" thread when dropped.
        assert!(
            pool.blocks()
                .all(|b| b.pool_state.load(Ordering::Acquire) == IDLE)
        );
        drop(pool);
        session.finish();
    }

    /// Runs the completion routine registered in the IRP's next stack location, as the I/O
    /// manager would, and returns what it returned.
    ///
    /// # Safety
    /// The IRP must be armed and given to no provider.
    unsafe fn run_completion_routine(irp: PIRP, status: NTSTATUS) -> NTSTATUS {
        // SAFETY: forwarded.
        unsafe {
            (*irp).IoStatus.u.Status = status;
            (*irp).IoStatus.Information = 0;
            let location = IoGetNextIrpStackLocation(irp);
            let routine = (*location).CompletionRoutine.expect("armed");
            routine(core::ptr::null_mut(), irp, (*location).Context)
        }
    }

    #[test]
    fn an_operation_abandoned_with_a_callers_irp_frees_or_hands_it_on_in_its_routine() {
        let session = Session::start();
        let pool = Arc::new(BlockPool::new());
        for forwarded in [false, true] {
            let seen = Arc::new(AtomicPtr::new(core::ptr::null_mut()));
            // The forwarded request's own IRP: its originator's location, then the driver's
            // (current), and one below for the request.
            let originators = forwarded.then(|| {
                // SAFETY: IRQL PASSIVE_LEVEL; the driver's location becomes current.
                unsafe {
                    let raw = IoAllocateIrp(2, FALSE);
                    IoSetNextIrpStackLocation(raw);
                    (*raw).PendingReturned = 1;
                    raw
                }
            });
            let irp = match originators {
                // SAFETY: a request "dispatched" to this driver just above.
                Some(raw) => unsafe { Irp::from_forwarded(NonNull::new(raw).unwrap()) }.unwrap(),
                None => Irp::new().unwrap(),
            };
            let request = LeftInFlight {
                pool: Arc::clone(&pool),
                irp: Arc::clone(&seen),
            };
            let mut op = crate::op::Op::new(request).with_irp(irp);
            let mut cx = core::task::Context::from_waker(Waker::noop());
            assert!(core::pin::Pin::new(&mut op).poll(&mut cx).is_pending());
            // Abandoned: the completion routine's release is the last one.
            drop(op);
            let irp = InFlight(seen.load(Ordering::SeqCst));
            let result = thread::spawn(move || {
                let irp = irp;
                // SAFETY: armed, given to no provider; this thread completes it.
                unsafe { run_completion_routine(irp.0, STATUS_CANCELLED) }
            })
            .join()
            .unwrap();
            match originators {
                Some(raw) => {
                    // Its completion goes on up to the originator, marked pending for it.
                    assert_eq!(result, STATUS_CONTINUE_COMPLETION);
                    // SAFETY: the test's IRP, back with its originator.
                    unsafe {
                        let control = (*IoGetCurrentIrpStackLocation(raw)).Control;
                        assert_ne!(control & SL_PENDING_RETURNED, 0);
                        IoFreeIrp(raw);
                    }
                }
                // Freed by the routine (the session's leak check sees it).
                None => assert_eq!(result, STATUS_MORE_PROCESSING_REQUIRED),
            }
        }
        assert_eq!(pool.blocks().count(), 1);
        drop(pool);
        session.finish();
    }

    #[test]
    fn a_waker_registered_while_the_completion_arrives_is_woken_or_sees_it() {
        let session = Session::start();
        let pool = BlockPool::new();
        for _ in 0..ROUNDS {
            let (block, irp) = armed(&pool, None);
            let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
            let waker = Waker::from(Arc::clone(&counter));
            let completer = thread::spawn(move || irp.complete(STATUS_SUCCESS));
            let seen_done = block.register(&waker);
            completer.join().unwrap();
            // Either the registration saw the completion, or the completion woke the waker.
            assert!(seen_done || counter.0.load(Ordering::SeqCst) == 1);
            assert!(block.is_done());
        }
        drop(pool);
        session.finish();
    }

    /// Waits until every DPC taken so far has run (the teardown's `KeFlushQueuedDpcs`).
    fn flush_dpcs() {
        // SAFETY: PASSIVE_LEVEL (a test thread).
        unsafe { KeFlushQueuedDpcs() };
    }

    #[test]
    fn a_deadline_races_the_completion_and_the_drop() {
        let session = Session::start();
        let pool = BlockPool::new();
        for round in 0..ROUNDS {
            let buf = Buf::from_slice(b"held until the completion").unwrap();
            let (block, irp) = armed(&pool, Some(buf));
            // SAFETY: armed, not issued, no timer set.
            unsafe { block.set_timer(-((round % 4) as i64) - 1, TimerAction::Cancel) };
            let status = if round % 3 == 0 {
                STATUS_SUCCESS
            } else {
                STATUS_CANCELLED
            };
            let completer = thread::spawn(move || irp.complete(status));
            if round % 2 == 0 {
                // The operation goes first: the in-flight and timer references keep the block.
                drop(block);
                completer.join().unwrap();
            } else {
                completer.join().unwrap();
                assert!(block.is_done());
                // SAFETY: done.
                let (result, _) = unsafe { block.result() };
                // A cancelled request whose deadline fired reports a timeout; a success stands.
                match status {
                    STATUS_SUCCESS => assert_eq!(result, STATUS_SUCCESS),
                    _ => assert!(result == STATUS_CANCELLED || result == STATUS_IO_TIMEOUT),
                }
                drop(block);
            }
        }
        flush_dpcs();
        // Every block is idle again (the pool's drop asserts it), reused by the next round.
        assert!(pool.blocks().count() <= 3);
        drop(pool);
        session.finish();
    }

    #[test]
    fn a_sleep_cancel_races_its_expiry() {
        let session = Session::start();
        let pool = BlockPool::new();
        for round in 0..ROUNDS {
            let (block, _irp) = armed(&pool, None);
            // SAFETY: armed, given to no provider, no timer set: the timer completes it.
            unsafe { block.set_timer(-((round % 5) as i64) - 1, TimerAction::Complete) };
            if round % 3 != 0 {
                block.cancel();
            }
            if round % 2 == 0 {
                assert!(block.block_until_done(None));
                // SAFETY: done.
                let (result, _) = unsafe { block.result() };
                assert!(result == STATUS_SUCCESS || result == STATUS_CANCELLED);
            }
            drop(block);
        }
        flush_dpcs();
        assert!(pool.blocks().count() <= 3);
        drop(pool);
        session.finish();
    }

    #[test]
    fn a_cancel_while_a_sleep_is_being_set_is_not_lost() {
        let session = Session::start();
        let pool = Arc::new(BlockPool::new());
        for _ in 0..ROUNDS {
            let (block, _irp) = armed(&pool, None);
            // The owner's teardown cancels whatever is in flight, as the timer is being set.
            let canceller = {
                let pool = Arc::clone(&pool);
                thread::spawn(move || pool.cancel_in_flight())
            };
            // SAFETY: armed, given to no provider, no timer set; a delay far longer than the
            // test.
            unsafe { block.set_timer(-36_000_000_000, TimerAction::Complete) };
            canceller.join().unwrap();
            // A cancel that found the block armed but its timer not set yet is the teardown's
            // shutdown check's to catch (`SleepRequest::issue`); here, cancel again as it does.
            block.cancel();
            assert!(
                block.block_until_done(Some(-100_000_000)),
                "the sleep was cancelled"
            );
            // SAFETY: done.
            assert_eq!(unsafe { block.result() }.0, STATUS_CANCELLED);
            drop(block);
        }
        flush_dpcs();
        let pool = Arc::into_inner(pool).unwrap();
        assert_eq!(pool.blocks().count(), 1);
        drop(pool);
        session.finish();
    }

    #[test]
    fn a_cancel_races_the_completion_and_a_reuse_of_the_block() {
        let session = Session::start();
        let pool = BlockPool::new();
        for _ in 0..ROUNDS {
            let (block, irp) = armed(&pool, None);
            let completer = thread::spawn(move || irp.complete(STATUS_CANCELLED));
            // The owner's teardown walks the pool and cancels whatever is in flight.
            pool.cancel_in_flight();
            completer.join().unwrap();
            // SAFETY: the completion has run (joined).
            assert_eq!(unsafe { block.result() }.0, STATUS_CANCELLED);
            drop(block);
        }
        // Every request reused the one idle block: no allocation after the first.
        assert_eq!(pool.blocks().count(), 1);
        drop(pool);
        session.finish();
    }

    #[test]
    fn reserved_blocks_are_idle_and_taken_before_any_is_grown() {
        let session = Session::start();
        let pool = BlockPool::new();
        pool.reserve(core::ptr::null(), 3).unwrap();
        assert_eq!(pool.blocks().count(), 3);
        // Met already: nothing added.
        pool.reserve(core::ptr::null(), 2).unwrap();
        assert_eq!(
            pool.reserve(core::ptr::null(), MAX_RESERVED_REQUESTS + 1),
            Err(crate::Error::INVALID_PARAMETER)
        );
        assert_eq!(pool.blocks().count(), 3);
        // Three requests in flight at once, completed from another thread, each holding a
        // buffer: they take the three reserved blocks, and the pool does not grow.
        let in_flight: Vec<_> = (0..3)
            .map(|_| armed(&pool, Some(Buf::from_slice(b"reserved").unwrap())))
            .collect();
        assert_eq!(pool.blocks().count(), 3);
        let (blocks, irps): (Vec<_>, Vec<_>) = in_flight.into_iter().unzip();
        let completer = thread::spawn(move || {
            for irp in irps {
                irp.complete(STATUS_SUCCESS);
            }
        });
        completer.join().unwrap();
        for block in &blocks {
            assert!(block.is_done());
        }
        drop(blocks);
        // A fourth at once grows it.
        let more: Vec<_> = (0..4).map(|_| armed(&pool, None)).collect();
        assert_eq!(pool.blocks().count(), 4);
        for (block, irp) in more {
            irp.complete(STATUS_SUCCESS);
            drop(block);
        }
        drop(pool);
        session.finish();
    }

    #[test]
    fn a_trimmed_pool_keeps_its_first_blocks_and_frees_the_rest() {
        let session = Session::start();
        let mut pool = BlockPool::new();
        pool.trim(2);
        pool.reserve(core::ptr::null(), 6).unwrap();
        let first: Vec<_> = pool.raw_blocks().take(4).collect();
        pool.trim(4);
        assert_eq!(pool.raw_blocks().collect::<Vec<_>>(), first);
        // Still a working pool: a request takes a kept block.
        let (block, irp) = armed(&pool, None);
        irp.complete(STATUS_SUCCESS);
        drop(block);
        assert_eq!(pool.blocks().count(), 4);
        pool.trim(4);
        assert_eq!(pool.blocks().count(), 4);
        pool.trim(0);
        assert_eq!(pool.blocks().count(), 0);
        drop(pool);
        // Every IRP of the trimmed blocks was freed.
        session.finish();
    }

    #[test]
    fn threads_taking_blocks_while_others_walk_the_pool() {
        // A block taken from the pool stays in its list: other threads walk through it (its
        // link) looking for an idle one while its taker fills it in. Under Miri, writing the
        // taken block through a reference to the whole of it races with those reads.
        let session = Session::start();
        let pool = Arc::new(BlockPool::new());
        let rounds = if cfg!(miri) { 4 } else { 200 };
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    for _ in 0..rounds {
                        let (block, irp) = armed(&pool, None);
                        irp.complete(STATUS_SUCCESS);
                        assert!(block.is_done());
                        drop(block);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let pool = Arc::into_inner(pool).unwrap();
        assert!(pool.blocks().count() <= 3, "a block per thread at most");
        drop(pool);
        session.finish();
    }
}
