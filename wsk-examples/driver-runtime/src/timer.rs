//! Timers for tasks: [`Timers::sleep`] is a future that completes once a delay has passed,
//! and [`timeout`] races a future against one — what the example drivers need for backoff,
//! idle timeouts and deadlines, inside `wsk::task` tasks, where nothing may wait.
//!
//! The deadlines are kept in one list; a work item of the driver (`IoQueueWorkItemEx`) waits
//! at PASSIVE_LEVEL, on an event with a timeout (`KeWaitForSingleObject`), for the earliest
//! one and wakes the tasks whose deadline has passed. The work item runs only while a timer
//! is armed: it is queued when the first one is, and returns when the list is empty.
//! `IoQueueWorkItemEx` is looked up at run time (every Windows release from Vista exports
//! it); a kernel without it — Wine's `ntoskrnl.exe` 8.0, where calling the import aborts the
//! driver's process — gets the work item through `IoQueueWorkItem`, which Wine accepts for a
//! work item allocated for a driver object.
//!
//! The clock is the interrupt time (100 ns units since boot), read from the kernel's shared
//! user data page as `wdm.h`'s `KeQueryInterruptTime` does on x64 and ARM64: no import, any
//! IRQL, and implemented by every kernel that runs x64 drivers — Wine's `ntoskrnl.exe`
//! (8.0) has no `KeQueryPerformanceCounter`, and a driver importing it aborts there. It
//! advances by clock ticks (at most [`CLOCK_STEP`]), so deadlines are one step later than
//! asked: a sleep never ends early. With the `host` feature (on `wsk-host`) the clock is the
//! host's `KeQueryPerformanceCounter`.
//!
//! A kernel timer with a DPC (`KeSetTimer`) would spare the worker thread; `wsk-sys` binds no
//! `KTIMER`/`KDPC` routines yet, so the work item stands in for it.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use wsk::{DriverObject, Error, Result, SpinLock};
use wsk_sys::*;

pub use clock::CLOCK_STEP;

/// The timers' clock: 100 ns units since an arbitrary origin, readable at any IRQL.
#[cfg(not(feature = "host"))]
mod clock {
    /// The most the clock advances by at once, in 100 ns units: 15.625 ms, the longest clock
    /// interrupt interval of Windows (and the default one).
    pub const CLOCK_STEP: u64 = 156_250;

    /// `KUSER_SHARED_DATA.InterruptTime` in the kernel's mapping of the shared user data page
    /// (`KI_USER_SHARED_DATA + 0x8`, the same address on x64 and ARM64).
    const INTERRUPT_TIME: usize = 0xFFFF_F780_0000_0008;

    /// The interrupt time: `wdm.h`'s `KeQueryInterruptTime` on x64 and ARM64, one aligned
    /// 64-bit load.
    ///
    /// On x64 the load is a plain `mov` of its own: kernels that run drivers in user mode
    /// (Wine) emulate reads of this page instruction by instruction, and know `mov`, not an
    /// `add` the compiler could fold a volatile load into.
    #[cfg(target_arch = "x86_64")]
    pub fn now() -> u64 {
        let time: u64;
        // SAFETY: the shared user data page is mapped, readable at any IRQL, for the whole
        // life of the system; the field is 8-byte aligned and the kernel updates it with
        // single 64-bit stores on 64-bit systems, so one load reads a whole value. The
        // instruction only reads that memory and writes the output register.
        unsafe {
            core::arch::asm!(
                "mov {time}, qword ptr [{address}]",
                time = lateout(reg) time,
                address = in(reg) INTERRUPT_TIME,
                options(nostack, preserves_flags, readonly),
            );
        }
        time
    }

    /// The interrupt time: `wdm.h`'s `KeQueryInterruptTime` on x64 and ARM64, one aligned
    /// 64-bit load.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn now() -> u64 {
        // SAFETY: the shared user data page is mapped, readable at any IRQL, for the whole
        // life of the system; the field is 8-byte aligned and the kernel updates it with
        // single 64-bit stores on 64-bit systems, so one volatile load reads a whole value.
        unsafe { core::ptr::read_volatile(INTERRUPT_TIME as *const u64) }
    }
}

/// The timers' clock on `wsk-host`: its performance counter.
#[cfg(feature = "host")]
mod clock {
    use wsk_sys::{KeQueryPerformanceCounter, LARGE_INTEGER};

    /// The most the clock advances by at once, in 100 ns units: the host's counter is
    /// continuous.
    pub const CLOCK_STEP: u64 = 0;

    /// The performance counter in 100 ns units.
    pub fn now() -> u64 {
        let mut frequency = LARGE_INTEGER { QuadPart: 0 };
        // SAFETY: `frequency` is writable; `QuadPart` is the whole 64-bit value written and
        // returned; callable at any IRQL.
        let (ticks, frequency) = unsafe {
            let ticks = KeQueryPerformanceCounter(&raw mut frequency).QuadPart;
            (ticks, frequency.QuadPart)
        };
        (u128::from(ticks.max(0) as u64) * 10_000_000 / u128::from(frequency.max(1) as u64)) as u64
    }
}

/// How the worker is queued: `IoQueueWorkItemEx`, or `IoQueueWorkItem` on kernels without it.
#[cfg(not(feature = "host"))]
mod queue {
    use wsk_sys::{
        KeGetCurrentIrql, MmGetSystemRoutineAddress, PASSIVE_LEVEL, PIO_WORKITEM,
        PIO_WORKITEM_ROUTINE_EX, PVOID, UNICODE_STRING, WORK_QUEUE_TYPE,
    };

    /// `IoQueueWorkItemEx`'s signature.
    type QueueEx =
        unsafe extern "system" fn(PIO_WORKITEM, PIO_WORKITEM_ROUTINE_EX, WORK_QUEUE_TYPE, PVOID);
    /// `IoQueueWorkItem`'s routine: `(DeviceObject, Context)`.
    pub type LegacyRoutine = unsafe extern "system" fn(PVOID, PVOID);
    /// `IoQueueWorkItem`'s signature.
    type QueueLegacy =
        unsafe extern "system" fn(PIO_WORKITEM, Option<LegacyRoutine>, WORK_QUEUE_TYPE, PVOID);

    /// The routine the work item is queued with.
    #[derive(Clone, Copy)]
    pub enum Queue {
        /// `IoQueueWorkItemEx`.
        Ex(QueueEx),
        /// `IoQueueWorkItem`, on a kernel without `IoQueueWorkItemEx`.
        Legacy(QueueLegacy),
    }

    /// `name` (ASCII, NUL-terminated) as the kernel exports it, or null. PASSIVE_LEVEL.
    fn routine<const N: usize>(name: &[u8; N]) -> PVOID {
        let mut units = [0u16; N];
        for (unit, byte) in units.iter_mut().zip(name) {
            *unit = u16::from(*byte);
        }
        let name = UNICODE_STRING {
            Length: ((N - 1) * 2) as u16,
            MaximumLength: (N * 2) as u16,
            Buffer: units.as_mut_ptr(),
        };
        // SAFETY: PASSIVE_LEVEL (the caller's); the counted string is valid for the call.
        unsafe { MmGetSystemRoutineAddress(core::ptr::from_ref(&name).cast_mut()) }
    }

    /// Finds the routine to queue with. Above PASSIVE_LEVEL, where nothing can be looked up,
    /// `IoQueueWorkItemEx` (the import: every supported Windows release has it).
    pub fn find() -> Queue {
        if KeGetCurrentIrql() != PASSIVE_LEVEL as wsk_sys::KIRQL {
            return Queue::Ex(wsk_sys::IoQueueWorkItemEx);
        }
        let ex = routine(b"IoQueueWorkItemEx\0");
        if !ex.is_null() {
            // SAFETY: the kernel's `IoQueueWorkItemEx`, of this signature.
            return Queue::Ex(unsafe { core::mem::transmute::<PVOID, QueueEx>(ex) });
        }
        let legacy = routine(b"IoQueueWorkItem\0");
        if !legacy.is_null() {
            // SAFETY: the kernel's `IoQueueWorkItem`, of this signature.
            return Queue::Legacy(unsafe { core::mem::transmute::<PVOID, QueueLegacy>(legacy) });
        }
        Queue::Ex(wsk_sys::IoQueueWorkItemEx)
    }
}

/// How the worker is queued on `wsk-host`: its `IoQueueWorkItemEx`.
#[cfg(feature = "host")]
mod queue {
    use wsk_sys::{PIO_WORKITEM, PIO_WORKITEM_ROUTINE_EX, PVOID, WORK_QUEUE_TYPE};

    /// The routine the work item is queued with.
    #[derive(Clone, Copy)]
    pub enum Queue {
        /// `IoQueueWorkItemEx`.
        Ex(
            unsafe extern "system" fn(
                PIO_WORKITEM,
                PIO_WORKITEM_ROUTINE_EX,
                WORK_QUEUE_TYPE,
                PVOID,
            ),
        ),
    }

    /// `IoQueueWorkItemEx`.
    pub fn find() -> Queue {
        Queue::Ex(wsk_sys::IoQueueWorkItemEx)
    }
}

/// One armed deadline.
struct Entry {
    id: u64,
    /// 100 ns units of [`Core::now`].
    deadline: u64,
    waker: Option<Waker>,
}

struct State {
    entries: Vec<Entry>,
    next_id: u64,
    /// The work item is queued or running (and will look at the list again).
    worker_running: bool,
    /// The deadline the worker waits for (`u64::MAX`: none).
    worker_wakes_at: u64,
    /// The owner was dropped: timers complete at once, the worker returns.
    stopping: bool,
}

/// What the [`Timers`] handle, its futures and the worker share.
///
/// # Invariants
/// `work_item` is a work item from `IoAllocateWorkItem`, freed once, on drop; it is queued
/// only while `worker_running` was false, and the worker holds a reference to the core.
struct Core {
    state: SpinLock<State>,
    /// Signalled when the worker must look at the list again (a nearer deadline, the stop).
    wake: UnsafeCell<KEVENT>,
    work_item: PIO_WORKITEM,
    /// How `work_item` is queued.
    queue: queue::Queue,
}

// SAFETY: the event and the work item are kernel objects usable from any thread; the rest is
// behind the spin lock.
unsafe impl Send for Core {}
// SAFETY: as above.
unsafe impl Sync for Core {}

impl Core {
    /// The time in 100 ns units since an arbitrary origin. Any IRQL.
    fn now(&self) -> u64 {
        clock::now()
    }

    /// Wakes or starts the worker for a deadline armed at `deadline`. Under the lock.
    fn kick(self: &Arc<Core>, state: &mut State, deadline: u64) {
        if state.worker_running {
            if deadline < state.worker_wakes_at {
                state.worker_wakes_at = deadline;
                // SAFETY: the event lives in the core; KeSetEvent is callable at
                // DISPATCH_LEVEL, the lock's.
                unsafe { KeSetEvent(self.wake.get(), IO_NO_INCREMENT.into(), FALSE) };
            }
            return;
        }
        state.worker_running = true;
        state.worker_wakes_at = deadline;
        let context = Arc::into_raw(Arc::clone(self));
        // SAFETY: the work item is not queued (`worker_running` was false; a routine that set
        // it false queues nothing after); the routine takes back the reference given up here.
        unsafe {
            match self.queue {
                queue::Queue::Ex(queue) => queue(
                    self.work_item,
                    Some(worker),
                    DelayedWorkQueue,
                    context.cast_mut().cast(),
                ),
                #[cfg(not(feature = "host"))]
                queue::Queue::Legacy(queue) => queue(
                    self.work_item,
                    Some(legacy_worker),
                    DelayedWorkQueue,
                    context.cast_mut().cast(),
                ),
            }
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // SAFETY: allocated in `Timers::new`, freed once; no routine is queued (the worker
        // holds a reference while it is queued or running, and drops it last).
        unsafe { IoFreeWorkItem(self.work_item) };
    }
}

/// The worker as `IoQueueWorkItem` calls it (`DeviceObject`, `Context`). PASSIVE_LEVEL.
#[cfg(not(feature = "host"))]
unsafe extern "system" fn legacy_worker(io_object: PVOID, context: PVOID) {
    // SAFETY: the same run, with the reference `Core::kick` gave up for it; the worker does
    // not use the work item argument.
    unsafe { worker(io_object, context, core::ptr::null_mut()) }
}

/// The work item's routine: wakes the tasks whose deadline has passed, waits for the next
/// one; returns when no timer is armed or the owner is gone. PASSIVE_LEVEL.
unsafe extern "system" fn worker(_io_object: PVOID, context: PVOID, _item: PIO_WORKITEM) {
    // SAFETY: the reference `Core::kick` gave up for this run.
    let core = unsafe { Arc::from_raw(context.cast_const().cast::<Core>()) };
    let mut due: Vec<Waker> = Vec::new();
    loop {
        let wait_until = {
            let mut state = core.state.lock();
            let now = core.now();
            // Room for every waker first: nothing below allocates under the lock.
            if due.try_reserve(state.entries.len()).is_ok() {
                state.entries.retain_mut(|entry| {
                    if entry.deadline > now {
                        return true;
                    }
                    if let Some(waker) = entry.waker.take() {
                        due.push(waker);
                    }
                    false
                });
            }
            if state.stopping || (state.entries.is_empty() && due.is_empty()) {
                state.worker_running = false;
                state.worker_wakes_at = u64::MAX;
                None
            } else {
                let next = state
                    .entries
                    .iter()
                    .map(|e| e.deadline)
                    .min()
                    .unwrap_or(u64::MAX);
                state.worker_wakes_at = next;
                Some(next)
            }
        };
        // Woken outside the lock: the tasks run here, at PASSIVE_LEVEL.
        let woke = !due.is_empty();
        for waker in due.drain(..) {
            waker.wake();
        }
        let Some(wait_until) = wait_until else {
            return;
        };
        if woke {
            // The woken tasks may have armed nearer deadlines: look again.
            continue;
        }
        let now = core.now();
        if wait_until <= now {
            continue;
        }
        // Relative, in 100 ns units; at most a minute, then the list is looked at again.
        let mut interval = LARGE_INTEGER {
            QuadPart: -((wait_until - now).min(600_000_000) as i64),
        };
        // SAFETY: PASSIVE_LEVEL (a work item); the event lives in the core, which this
        // reference keeps alive.
        unsafe {
            KeWaitForSingleObject(
                core.wake.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                &raw mut interval,
            );
        }
    }
}

/// The timers of a driver (share it with an `Arc`). Dropping it completes every timer still armed (their tasks are
/// woken as if the delay had passed, so a task being torn down is not kept waiting) and lets
/// the work item return; the work item keeps the driver loaded until it has.
pub struct Timers {
    core: Arc<Core>,
}

impl Timers {
    /// The timers of `driver` (whose object the work item is allocated for). IRQL <=
    /// DISPATCH_LEVEL.
    ///
    /// # Errors
    /// `STATUS_INSUFFICIENT_RESOURCES` when the work item or memory cannot be had.
    pub fn new(driver: DriverObject) -> Result<Timers> {
        // SAFETY: the driver object is valid (a `DriverObject`); a driver object is accepted
        // in place of a device object for work items queued with `IoQueueWorkItemEx`.
        let work_item = unsafe { IoAllocateWorkItem(driver.as_ptr().cast()) };
        if work_item.is_null() {
            return Err(Error::INSUFFICIENT_RESOURCES);
        }
        let core = Core {
            state: SpinLock::new(State {
                entries: Vec::new(),
                next_id: 0,
                worker_running: false,
                worker_wakes_at: u64::MAX,
                stopping: false,
            }),
            wake: UnsafeCell::new(KEVENT::default()),
            work_item,
            queue: queue::find(),
        };
        let core = Arc::new(core);
        // SAFETY: the event lives in the core, in non-paged memory, and is not in use yet.
        unsafe { KeInitializeEvent(core.wake.get(), SynchronizationEvent, FALSE) };
        Ok(Timers { core })
    }

    /// A future that completes `milliseconds` from now (at the earliest). Any IRQL <=
    /// DISPATCH_LEVEL; usable inside tasks. It completes at once when memory is too short to
    /// arm it, or once the [`Timers`] are dropped.
    #[must_use]
    pub fn sleep(&self, milliseconds: u32) -> Sleep {
        Sleep {
            core: Arc::clone(&self.core),
            deadline: self
                .core
                .now()
                .saturating_add(u64::from(milliseconds) * 10_000 + CLOCK_STEP),
            id: None,
        }
    }

    /// Number of timers armed now.
    #[must_use]
    pub fn armed(&self) -> usize {
        self.core.state.lock().entries.len()
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        let wakers: Vec<Waker> = {
            let mut state = self.core.state.lock();
            state.stopping = true;
            let mut wakers = Vec::new();
            if wakers.try_reserve(state.entries.len()).is_ok() {
                wakers.extend(state.entries.iter_mut().filter_map(|e| e.waker.take()));
            }
            // SAFETY: the event lives in the core; DISPATCH_LEVEL allows KeSetEvent.
            unsafe { KeSetEvent(self.core.wake.get(), IO_NO_INCREMENT.into(), FALSE) };
            wakers
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl core::fmt::Debug for Timers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Timers")
            .field("armed", &self.armed())
            .finish()
    }
}

/// A delay ([`Timers::sleep`]); disarmed when dropped.
pub struct Sleep {
    core: Arc<Core>,
    deadline: u64,
    /// Set once armed.
    id: Option<u64>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let core = Arc::clone(&this.core);
        let mut state = core.state.lock();
        if state.stopping {
            return Poll::Ready(());
        }
        match this.id {
            Some(id) => match state.entries.iter_mut().find(|e| e.id == id) {
                // Fired: the worker took it out of the list.
                None => Poll::Ready(()),
                Some(entry) => {
                    if !entry
                        .waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        entry.waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            },
            None => {
                if this.deadline <= core.now() || state.entries.try_reserve(1).is_err() {
                    return Poll::Ready(());
                }
                let id = state.next_id;
                state.next_id += 1;
                state.entries.push(Entry {
                    id,
                    deadline: this.deadline,
                    waker: Some(cx.waker().clone()),
                });
                this.id = Some(id);
                core.kick(&mut state, this.deadline);
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let waker = {
                let mut state = self.core.state.lock();
                let position = state.entries.iter().position(|e| e.id == id);
                position.map(|i| state.entries.swap_remove(i))
            };
            // The waker is dropped outside the lock.
            drop(waker);
        }
    }
}

/// Races `future` against `sleep`: `Some(output)` when the future completes first, `None`
/// once the delay has passed (the future is dropped with the returned [`Timeout`], which
/// cancels a request it carries).
pub fn timeout<F: Future + Unpin>(sleep: Sleep, future: F) -> Timeout<F> {
    Timeout { future, sleep }
}

/// See [`timeout`].
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F: Future + Unpin> Future for Timeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = self.get_mut();
        if let Poll::Ready(output) = Pin::new(&mut this.future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
